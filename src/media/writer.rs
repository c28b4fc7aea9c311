//! `write_mp4`: validate frames, encode them with OpenH264, mux, and write atomically.

use std::path::Path;

use image::RgbImage;
use serde::Serialize;

use super::MediaError;
use super::atomic::write_atomically;
use super::h264::encode;
use super::mux::{Tags, mux};
use super::target::{WriteOptions, check_target};

/// Smallest and largest accepted frame side, in pixels.
pub(crate) const MIN_SIDE: u32 = 256;
pub(crate) const MAX_SIDE: u32 = 1024;
/// Highest accepted frame rate.
pub(crate) const MAX_FPS: u32 = 120;

/// Metadata embedded in the MP4. ffprobe shows `title` and `comment` as format
/// tags, `encoder` as "aivideo <version>", and each `extra` pair under its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VideoMetadata {
    /// Human title, e.g. the prompt.
    pub title: String,
    /// Free text, conventionally the generation parameters as JSON.
    pub comment_json: String,
    /// Further key/value tags (keys: ASCII letters, digits, `_`, `-`, `.`).
    pub extra: Vec<(String, String)>,
}

/// What `write_mp4` wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mp4Summary {
    pub frames: u32,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// File size in bytes.
    pub bytes: u64,
    pub duration_s: f64,
}

/// The `encoder` tag written into every file.
pub(crate) fn encoder_tag() -> String {
    format!("aivideo {}", env!("CARGO_PKG_VERSION"))
}

fn validate(
    path: &Path,
    frames: &[RgbImage],
    fps: u32,
    meta: &VideoMetadata,
) -> Result<(u32, u32), MediaError> {
    let first = frames
        .first()
        .ok_or_else(|| MediaError::invalid(path, "no frames to encode"))?;
    let (w, h) = first.dimensions();
    for (name, side) in [("width", w), ("height", h)] {
        if !(MIN_SIDE..=MAX_SIDE).contains(&side) || side % 8 != 0 {
            return Err(MediaError::invalid(
                path,
                format!(
                    "frame {name} {side} is not a multiple of 8 between {MIN_SIDE} and {MAX_SIDE}"
                ),
            ));
        }
    }
    if let Some((i, f)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| f.dimensions() != (w, h))
    {
        return Err(MediaError::invalid(
            path,
            format!(
                "frame {i} is {}x{}, but frame 0 is {w}x{h}",
                f.width(),
                f.height()
            ),
        ));
    }
    if fps == 0 || fps > MAX_FPS {
        return Err(MediaError::invalid(
            path,
            format!("fps {fps} is not between 1 and {MAX_FPS}"),
        ));
    }
    for (key, _) in &meta.extra {
        let ok = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !ok {
            return Err(MediaError::invalid(
                path,
                format!("metadata key {key:?} must be 1-64 ASCII letters, digits, '_', '-' or '.'"),
            ));
        }
    }
    Ok((w, h))
}

/// Encodes `frames` as H.264 (yuv420p, constrained baseline) at a constant `fps`
/// and writes an MP4 with moov before mdat. The file appears complete or not at all.
pub fn write_mp4(
    path: &Path,
    frames: &[RgbImage],
    fps: u32,
    meta: &VideoMetadata,
    opts: &WriteOptions,
) -> Result<Mp4Summary, MediaError> {
    let (width, height) = validate(path, frames, fps, meta)?;
    check_target(path, opts.overwrite)?;
    let stream = encode(path, frames, fps)?;
    let encoder = encoder_tag();
    let tags = Tags {
        title: &meta.title,
        comment: &meta.comment_json,
        encoder: &encoder,
        extra: &meta.extra,
    };
    let bytes =
        mux(width, height, fps, &stream, &tags).map_err(|e| MediaError::invalid(path, e))?;
    write_atomically(path, &bytes, opts)?;
    Ok(Mp4Summary {
        frames: frames.len() as u32,
        width,
        height,
        fps,
        bytes: bytes.len() as u64,
        duration_s: frames.len() as f64 / fps as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(w: u32, h: u32, n: usize) -> Vec<RgbImage> {
        (0..n)
            .map(|_| RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30])))
            .collect()
    }

    fn err(path: &Path, f: &[RgbImage], fps: u32) -> String {
        let e = write_mp4(
            path,
            f,
            fps,
            &VideoMetadata::default(),
            &WriteOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, MediaError::InvalidInput { .. }), "{e}");
        assert!(!path.exists());
        e.to_string()
    }

    #[test]
    fn rejects_bad_input_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.mp4");
        assert!(err(&p, &[], 8).contains("no frames"));
        assert!(err(&p, &frames(257, 256, 2), 8).contains("width 257"));
        assert!(err(&p, &frames(256, 250, 2), 8).contains("height 250"));
        assert!(err(&p, &frames(1032, 256, 2), 8).contains("width 1032"));
        assert!(err(&p, &frames(256, 256, 2), 0).contains("fps 0"));
        let mut mixed = frames(256, 256, 2);
        mixed.push(RgbImage::new(264, 256));
        assert!(err(&p, &mixed, 8).contains("frame 2 is 264x256"));
        let meta = VideoMetadata {
            extra: vec![("bad key".into(), "v".into())],
            ..Default::default()
        };
        let e =
            write_mp4(&p, &frames(256, 256, 1), 8, &meta, &WriteOptions::default()).unwrap_err();
        assert!(e.to_string().contains("bad key"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn summary_matches_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.mp4");
        let s = write_mp4(
            &p,
            &frames(264, 256, 5),
            10,
            &VideoMetadata::default(),
            &WriteOptions::default(),
        )
        .unwrap();
        assert_eq!((s.frames, s.width, s.height, s.fps), (5, 264, 256, 10));
        assert_eq!(s.bytes, std::fs::metadata(&p).unwrap().len());
        assert!((s.duration_s - 0.5).abs() < 1e-9);
    }
}
