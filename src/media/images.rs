//! Still images (thumbnails): JPEG, PNG or WebP chosen by extension, with metadata
//! where the format allows, written atomically; plus a resize helper.
//!
//! Metadata: JPEG gets one COM segment holding `comment_json`; PNG gets `Title`,
//! `Comment` and `Software` text chunks (tEXt when Latin-1, iTXt otherwise). WebP
//! (lossless, via the image crate) carries no metadata.

use std::io::Cursor;
use std::path::Path;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::imageops::FilterType;
use image::{ExtendedColorType, ImageEncoder, RgbImage};

use super::MediaError;
use super::atomic::write_atomically;
use super::target::{WriteOptions, check_target};
use super::writer::encoder_tag;

/// JPEG quality used for thumbnails.
const JPEG_QUALITY: u8 = 90;

/// Metadata embedded into a still image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMetadata {
    /// PNG `Title`, e.g. the prompt.
    pub title: String,
    /// JPEG COM segment and PNG `Comment`, conventionally the parameters as JSON.
    pub comment_json: String,
}

enum Format {
    Jpeg,
    Png,
    WebP,
}

fn format_of(path: &Path) -> Result<Format, MediaError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => Ok(Format::Jpeg),
        "png" => Ok(Format::Png),
        "webp" => Ok(Format::WebP),
        _ => Err(MediaError::UnsupportedFormat {
            path: path.to_path_buf(),
            extension: ext,
        }),
    }
}

/// Writes `img` to `path` in the format its extension names (jpg, jpeg, png, webp).
pub fn write_image(
    path: &Path,
    img: &RgbImage,
    meta: &ImageMetadata,
    opts: &WriteOptions,
) -> Result<(), MediaError> {
    let format = format_of(path)?;
    check_target(path, opts.overwrite)?;
    if img.width() == 0 || img.height() == 0 {
        return Err(MediaError::invalid(path, "the image is empty"));
    }
    let fail = |reason: String| MediaError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match format {
        Format::Jpeg => {
            let mut out = Vec::new();
            JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
                .encode_image(img)
                .map_err(|e| fail(e.to_string()))?;
            insert_jpeg_comment(out, meta.comment_json.as_bytes()).map_err(fail)?
        }
        Format::Png => encode_png(img, meta).map_err(|e| fail(e.to_string()))?,
        Format::WebP => {
            let mut out = Vec::new();
            WebPEncoder::new_lossless(Cursor::new(&mut out))
                .write_image(
                    img.as_raw(),
                    img.width(),
                    img.height(),
                    ExtendedColorType::Rgb8,
                )
                .map_err(|e| fail(e.to_string()))?;
            out
        }
    };
    write_atomically(path, &bytes, opts)
}

/// The file name of frame `index` (0-based) in a `--save-frames` folder: `frame_0001.png` on.
pub fn frame_file_name(index: usize) -> String {
    format!("frame_{:04}.png", index + 1)
}

/// Writes every frame as a lossless RGB PNG, `dir/frame_0001.png` onwards, each atomically;
/// creates `dir`. Refuses, before writing anything, when any of those files already exists.
/// Returns the paths written.
pub fn write_png_frames(
    dir: &Path,
    frames: &[RgbImage],
    meta: &ImageMetadata,
    owner: Option<&str>,
) -> Result<Vec<std::path::PathBuf>, MediaError> {
    let opts = WriteOptions {
        overwrite: false,
        owner: owner.map(str::to_string),
    };
    std::fs::create_dir_all(dir).map_err(|e| MediaError::io(dir, e))?;
    let paths: Vec<_> = (0..frames.len())
        .map(|i| dir.join(frame_file_name(i)))
        .collect();
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(MediaError::invalid(
            existing,
            "the file already exists; choose an empty folder for the frames",
        ));
    }
    let mut written = Vec::with_capacity(frames.len());
    for (path, frame) in paths.iter().zip(frames) {
        if let Err(e) = write_image(path, frame, meta, &opts) {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(e);
        }
        written.push(path.clone());
    }
    Ok(written)
}

/// Inserts a COM segment after SOI and any APP segments (which must come first).
fn insert_jpeg_comment(jpeg: Vec<u8>, comment: &[u8]) -> Result<Vec<u8>, String> {
    if comment.is_empty() {
        return Ok(jpeg);
    }
    if comment.len() > 65533 {
        return Err(format!(
            "comment of {} bytes exceeds the JPEG COM limit of 65533",
            comment.len()
        ));
    }
    if jpeg.len() < 4 || jpeg[..2] != [0xff, 0xd8] {
        return Err("encoder output is not a JPEG".into());
    }
    let mut pos = 2;
    while pos + 4 <= jpeg.len() && jpeg[pos] == 0xff && (0xe0..=0xef).contains(&jpeg[pos + 1]) {
        pos += 2 + u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
    }
    let mut out = Vec::with_capacity(jpeg.len() + comment.len() + 4);
    out.extend_from_slice(&jpeg[..pos]);
    out.extend_from_slice(&[0xff, 0xfe]);
    out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(comment);
    out.extend_from_slice(&jpeg[pos..]);
    Ok(out)
}

fn encode_png(img: &RgbImage, meta: &ImageMetadata) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    for (key, value) in [
        ("Title", meta.title.clone()),
        ("Comment", meta.comment_json.clone()),
        ("Software", encoder_tag()),
    ] {
        if value.is_empty() {
            continue;
        }
        if value.chars().all(|c| (c as u32) < 256 && c != '\0') {
            enc.add_text_chunk(key.to_string(), value)?;
        } else {
            enc.add_itxt_chunk(key.to_string(), value)?;
        }
    }
    let mut writer = enc.write_header()?;
    writer.write_image_data(img.as_raw())?;
    writer.finish()?;
    Ok(out)
}

/// Longest side [`resize_to_width`] makes: 4096 pixels (a 48 MiB RGB image at most).
pub const MAX_RESIZED_SIDE: u32 = 4096;

/// Scales `img` to `width` pixels wide with a Lanczos filter, keeping the aspect ratio (the
/// height rounded to an even number, at least 2); neither side of the result may exceed
/// [`MAX_RESIZED_SIDE`].
pub fn resize_to_width(img: &RgbImage, width: u32) -> Result<RgbImage, MediaError> {
    let too_big = u64::from(img.height()) * u64::from(width)
        > u64::from(MAX_RESIZED_SIDE) * u64::from(img.width().max(1));
    if width == 0 || width > MAX_RESIZED_SIDE || too_big || img.width() == 0 || img.height() == 0 {
        return Err(MediaError::invalid(
            Path::new("<image>"),
            format!(
                "cannot resize a {}x{} image to width {width}",
                img.width(),
                img.height()
            ),
        ));
    }
    let exact = img.height() as f64 * width as f64 / img.width() as f64;
    let height = ((exact / 2.0).round() as u32 * 2).max(2);
    Ok(image::imageops::resize(
        img,
        width,
        height,
        FilterType::Lanczos3,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_extension_lists_supported_ones() {
        let e = write_image(
            Path::new("/tmp/x.gif"),
            &RgbImage::new(8, 8),
            &ImageMetadata::default(),
            &WriteOptions::default(),
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("\"gif\"") && s.contains("jpg, jpeg, png, webp"),
            "{s}"
        );
        assert!(s.contains("/tmp/x.gif"), "{s}");
    }

    #[test]
    fn comment_goes_after_app_segments() {
        let jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2, 0xff, 0xdb, 0, 2];
        let out = insert_jpeg_comment(jpeg, b"hi").unwrap();
        assert_eq!(
            out,
            vec![
                0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2, 0xff, 0xfe, 0, 4, b'h', b'i', 0xff, 0xdb, 0, 2
            ]
        );
        assert!(insert_jpeg_comment(vec![0xff, 0xd8, 0, 0], &vec![b'x'; 70000]).is_err());
    }

    #[test]
    fn resize_keeps_aspect_with_even_height() {
        let img = RgbImage::from_pixel(512, 300, image::Rgb([50, 100, 150]));
        let r = resize_to_width(&img, 256).unwrap();
        assert_eq!(r.dimensions(), (256, 150));
        let r = resize_to_width(&img, 100).unwrap(); // 58.6 -> 58
        assert_eq!(r.dimensions(), (100, 58));
        assert_eq!(*r.get_pixel(50, 29), image::Rgb([50, 100, 150]));
        assert!(resize_to_width(&img, 0).is_err());
        assert!(resize_to_width(&img, MAX_RESIZED_SIDE + 1).is_err());
        let tall = RgbImage::new(16, 256);
        assert!(resize_to_width(&tall, 256).is_ok());
        assert!(
            resize_to_width(&tall, 257).is_err(),
            "the height would pass 4096"
        );
    }
}
