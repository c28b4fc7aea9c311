//! `aivideo thumbnail`: decode a frame of a job's MP4 (or any H.264 MP4) into an image.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Context;
use crate::cli::ThumbnailArgs;
use crate::error::{CliError, ErrorCode};
use crate::media::{self, FrameSelector, ImageMetadata};

pub fn run(ctx: &Context, args: &ThumbnailArgs) -> Result<u8> {
    let p = &ctx.printer;
    let as_file = Path::new(&args.target);
    let is_file = as_file.is_file() || args.target.to_ascii_lowercase().ends_with(".mp4");
    // A job id resolves through the store; a path is used as is.
    let (job, video) = if is_file {
        if !as_file.is_file() {
            return Err(CliError::new(
                ErrorCode::NotFound,
                format!("no such video file: {}", as_file.display()),
            )
            .into());
        }
        (None, as_file.to_path_buf())
    } else {
        let store = ctx.open_store()?;
        let job = store.get(&args.target)?;
        let Some(path) = job.video_path.clone() else {
            return Err(CliError::new(
                ErrorCode::NotFound,
                format!(
                    "job {} has no video (status {})",
                    job.video_id,
                    job.status.as_str()
                ),
            )
            .into());
        };
        (Some((store, job)), PathBuf::from(path))
    };

    let info =
        media::probe_mp4(&video).with_context(|| format!("cannot read {}", video.display()))?;
    let selector = match (args.frame, args.at) {
        (Some(n), _) => FrameSelector::Index(n),
        (None, Some(t)) => FrameSelector::Time(t),
        (None, None) => FrameSelector::Index(info.frame_count / 2),
    };
    let mut img = match media::decode_frame(&video, selector) {
        Ok(img) => img,
        // Asking for a frame the video does not have is a request error, not a crash.
        Err(e @ media::MediaError::OutOfRange { .. }) => {
            return Err(CliError::new(ErrorCode::ValidationError, e.to_string())
                .with_details(json!({ "field": if args.at.is_some() { "at" } else { "frame" } }))
                .into());
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot decode a frame of {}", video.display())));
        }
    };
    if let Some(w) = args.width {
        img = media::resize_to_width(&img, w)?;
    }
    let out = match &args.output {
        Some(o) => o.clone(),
        None => video.with_extension("jpg"),
    };
    let out = std::path::absolute(&out).unwrap_or(out);
    let title = info
        .tags
        .iter()
        .find(|(k, _)| k == "title")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let comment_json = info
        .tags
        .iter()
        .find(|(k, _)| k == "comment")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    media::write_image(
        &out,
        &img,
        &ImageMetadata {
            title,
            comment_json,
        },
    )
    .with_context(|| format!("cannot write {}", out.display()))?;
    let video_id = match job {
        Some((store, job)) => {
            store.set_thumbnail_path(&job.video_id, &out)?;
            Some(job.video_id)
        }
        None => None,
    };
    let frame = match selector {
        FrameSelector::Index(n) => json!(n),
        FrameSelector::Time(_) => serde_json::Value::Null,
    };
    if p.is_json() {
        p.json(&json!({
            "video_id": video_id,
            "video_path": video,
            "thumbnail_path": out,
            "frame": frame,
            "at": args.at,
            "width": img.width(),
            "height": img.height(),
        }))?;
    } else {
        p.result(&format!("{}\n", out.display()))?;
    }
    Ok(0)
}
