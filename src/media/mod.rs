//! Media output and input: H.264 MP4 writing/probing/decoding and still images.
//!
//! The module knows nothing about jobs: callers pass frames and generic metadata.
//! Every writer is atomic (temporary file in the destination folder, fsync, rename).

mod atomic;
mod error;
mod h264;
mod images;
mod mux;
mod reader;
mod tags;
mod writer;
mod yuv;

pub use error::MediaError;
pub use images::{ImageMetadata, frame_file_name, resize_to_width, write_image, write_png_frames};
pub use reader::{
    FrameSelector, Mp4Info, decode_frame, decode_frame_bytes, probe_mp4, probe_mp4_bytes,
};
pub use writer::{Mp4Summary, VideoMetadata, write_mp4};
