//! Where `generate` writes and how nothing is left behind: output paths and their rules, the
//! files a job owns, the second-Ctrl-C abort hook, and the clean-up when the job history
//! cannot record a job.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Result;

use super::super::check_output_target;
use crate::cli::GenerateArgs;
use crate::error::{CliError, ErrorCode};
use crate::media;
use crate::store::Store;

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

/// Files a job creates, shared with the abort hook: removed unless the job completes.
pub(super) type Owned = Arc<Mutex<Vec<PathBuf>>>;

pub(super) fn own(owned: &Owned, path: &Path) {
    owned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(path.to_path_buf());
}

/// What a second Ctrl-C runs before the process exits: records the job `canceled` and
/// removes its files and temporary files. A job that completed meanwhile is left alone.
pub(super) fn abort_hook(
    db: PathBuf,
    id: String,
    owned: Owned,
    work_dirs: Vec<PathBuf>,
    quiet: bool,
) -> impl FnOnce() + Send + 'static {
    move || {
        let recorded = Store::open(&db).and_then(|s| {
            s.mark_canceled(&id, "canceled: interrupted twice (Ctrl-C); stopped at once")
        });
        if let Err(crate::store::StoreError::InvalidTransition { .. }) = recorded {
            return;
        }
        for f in owned.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = std::fs::remove_file(f);
        }
        for dir in &work_dirs {
            let _ = media::remove_temp_files(dir, &id);
        }
        if !quiet {
            let state = match recorded {
                Ok(_) => "recorded as canceled",
                Err(_) => "could not be recorded (the job history was unavailable)",
            };
            eprintln!("\naivideo: stopped at once; job {id} {state}, its files removed");
        }
    }
}

/// Removes what a job that will not complete wrote: its files and its temporary files.
pub(super) fn remove_outputs(id: &str, written: &[PathBuf], work_dirs: &[PathBuf]) {
    for f in written {
        let _ = std::fs::remove_file(f);
    }
    for dir in work_dirs {
        let _ = media::remove_temp_files(dir, id);
    }
}

/// The job history refused a write for job `id`: remove the job's files, try to record the
/// failure (removing them may have freed the space), and return the error to report.
pub(super) fn db_failure(
    store: &Store,
    id: &str,
    err: anyhow::Error,
    written: &[PathBuf],
    work_dirs: &[PathBuf],
) -> anyhow::Error {
    remove_outputs(id, written, work_dirs);
    let cause = CliError::from_anyhow(&err).full_message();
    let message = format!("the job history could not record this job: {cause}");
    let noted = store.mark_failed(id, ErrorCode::DatabaseError.as_str(), &message, None);
    let what = if written.is_empty() {
        ""
    } else {
        ", so its files were removed"
    };
    let after = match noted {
        Ok(_) => "; the job is recorded as failed",
        Err(_) => "; the job will show as interrupted",
    };
    err.context(format!(
        "job {id}: the job history could not be written{what}{after}"
    ))
}

/// Where one job writes, and the list shared with the abort hook.
pub(super) struct Outputs<'a> {
    pub video: &'a Path,
    pub thumb: &'a Path,
    pub frames_dir: Option<&'a Path>,
    pub owned: &'a Owned,
}
