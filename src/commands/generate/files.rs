//! Where `generate` writes: output paths and the rules they follow.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::super::check_output_target;
use crate::cli::GenerateArgs;
use crate::error::{CliError, ErrorCode};
use crate::media;

/// Where this job's files go: `-o FILE.mp4`, else `<output-dir>/<video_id>.mp4`; the
/// thumbnail beside the video with the thumbnail format's extension. Absolute.
pub(super) fn output_paths(args: &GenerateArgs, video_id: &str) -> (PathBuf, PathBuf) {
    let video = match &args.output {
        Some(f) => f.clone(),
        None => args.output_dir.join(format!("{video_id}.mp4")),
    };
    let video = std::path::absolute(&video).unwrap_or(video);
    let thumb = video.with_extension(args.thumbnail_format.extension());
    (video, thumb)
}

/// The output rules, checked before any job exists (see README, "Files"): `-o` names a new
/// file or, with `--overwrite`, an existing regular file, and so does its thumbnail; the two
/// are never the same file; `--output-dir` is a folder or a new path.
pub(super) fn check_outputs(args: &GenerateArgs) -> Result<()> {
    let Some(out) = &args.output else {
        let dir = &args.output_dir;
        if dir.exists() && !dir.is_dir() {
            return Err(CliError::new(
                ErrorCode::UsageError,
                format!("--output-dir {}: not a folder", dir.display()),
            )
            .into());
        }
        return Ok(());
    };
    check_output_target(out, args.overwrite, "-o")?;
    let (video, thumb) = output_paths(args, "");
    let ext = |p: &Path| p.extension().map(|e| e.to_ascii_lowercase());
    if ext(&video) == ext(&thumb) || media::same_file(&video, &thumb) {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!(
                "-o {}: the video and its thumbnail would be the same file; name the video FILE.mp4, or choose another --thumbnail-format",
                out.display()
            ),
        )
        .into());
    }
    check_output_target(&thumb, args.overwrite, "the thumbnail")
}
