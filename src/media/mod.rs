//! Media output and input: H.264 MP4 writing/probing/decoding and still images.
//!
//! The module knows nothing about jobs: callers pass frames and generic metadata.
//! Every writer is atomic (temporary file in the destination folder, fsync, rename) and
//! replaces an existing file only when its caller says so (see [`WriteOptions`]).

mod atomic;
mod error;
mod h264;
mod images;
mod mux;
mod reader;
mod tags;
mod target;
mod writer;
mod yuv;

pub use error::MediaError;
pub use images::{
    ImageMetadata, MAX_RESIZED_SIDE, frame_file_name, resize_to_width, write_image,
    write_png_frames,
};
pub use reader::{
    FrameSelector, Mp4Info, decode_frame, decode_frame_bytes, probe_mp4, probe_mp4_bytes,
};
pub use target::{WriteOptions, check_target, remove_temp_files, same_file};
pub use writer::{Mp4Summary, VideoMetadata, write_mp4};
