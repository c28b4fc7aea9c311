//! `aivideo thumbnail`: decode a frame of a job's MP4 (or any H.264 MP4) into an image.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{Context, check_output_target, output_refused};
use crate::cli::ThumbnailArgs;
use crate::error::{CliError, ErrorCode};
use crate::media::{self, FrameSelector, ImageMetadata, MAX_RESIZED_SIDE, WriteOptions};

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
    let width = check_width(args.width, info.width, info.height)?;
    if let Some(at) = args.at.filter(|t| !t.is_finite() || *t < 0.0) {
        return Err(CliError::new(
            ErrorCode::ValidationError,
            format!("invalid --at {at}: the time must be a number of seconds, 0 or more"),
        )
        .with_details(json!({ "field": "at", "value": at.to_string() }))
        .into());
    }
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
    if let Some(w) = width {
        img = media::resize_to_width(&img, w)?;
    }
    // Where the image goes, checked once the frame is known to exist: an explicit -o is never replaced
    // without --overwrite; the default (the video's name with .jpg) may replace the job's
    // own recorded thumbnail, nothing else. Never the video itself.
    let (out, replace) = match &args.output {
        Some(o) => (o.clone(), args.overwrite),
        None => {
            let default = std::path::absolute(video.with_extension("jpg"))
                .unwrap_or_else(|_| video.with_extension("jpg"));
            let recorded = job
                .as_ref()
                .and_then(|(_, j)| j.thumbnail_path.as_deref())
                .is_some_and(|t| media::same_file(Path::new(t), &default));
            (default, args.overwrite || recorded)
        }
    };
    let out = std::path::absolute(&out).unwrap_or(out);
    if media::same_file(&out, &video) {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!(
                "the thumbnail would replace its own video {}; choose another file with -o",
                video.display()
            ),
        )
        .into());
    }
    check_output_target(&out, replace, "the thumbnail")?;
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
        &WriteOptions {
            overwrite: replace,
            owner: None,
        },
    )
    .map_err(|e| output_refused(e, "the thumbnail"))
    .context("cannot write the thumbnail")?;
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

/// `--width`: 16 to 4096 pixels, and the height it implies for a `vw`×`vh` video at most 4096.
fn check_width(width: Option<i64>, vw: u32, vh: u32) -> Result<Option<u32>> {
    let Some(w) = width else { return Ok(None) };
    let max = i64::from(MAX_RESIZED_SIDE);
    // The widest thumbnail whose height stays within the limit, for this video's shape.
    let fit = (max * i64::from(vw.max(1)) / i64::from(vh.max(1))).min(max);
    let (rule, fix) = if !(16..=max).contains(&w) {
        (
            format!("the width must be between 16 and {max} pixels"),
            format!("use --width between 16 and {}", fit.max(16)),
        )
    } else if w > fit {
        (
            format!(
                "a {vw}x{vh} video scaled to {w} pixels wide would be taller than {max} pixels"
            ),
            format!("use --width {fit} or less"),
        )
    } else {
        return Ok(Some(w as u32));
    };
    Err(CliError::new(
        ErrorCode::ValidationError,
        format!("invalid --width {w}: {rule}; {fix}"),
    )
    .with_details(json!({ "field": "width", "value": w.to_string(), "rule": rule, "fix": fix }))
    .into())
}
