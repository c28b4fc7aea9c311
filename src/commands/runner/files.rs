//! How a job leaves nothing behind: the files it owns, the second-Ctrl-C abort hook, and the
//! clean-up when the job history cannot record it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{CliError, ErrorCode};
use crate::media;
use crate::store::Store;

/// Files a job creates, shared with the abort hook: removed unless the job completes.
pub(crate) type Owned = Arc<Mutex<Vec<PathBuf>>>;

pub(crate) fn own(owned: &Owned, path: &Path) {
    owned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(path.to_path_buf());
}

/// What a second Ctrl-C runs before the process exits: records the job `canceled` and
/// removes its files and temporary files. A job that completed meanwhile is left alone.
pub(crate) fn abort_hook(
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
pub(crate) fn remove_outputs(id: &str, written: &[PathBuf], work_dirs: &[PathBuf]) {
    for f in written {
        let _ = std::fs::remove_file(f);
    }
    for dir in work_dirs {
        let _ = media::remove_temp_files(dir, id);
    }
}

/// The job history refused a write for job `id`: remove the job's files, try to record the
/// failure (removing them may have freed the space), and return the error to report.
pub(crate) fn db_failure(
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
pub(crate) struct Outputs<'a> {
    pub video: &'a Path,
    pub thumb: &'a Path,
    pub frames_dir: Option<&'a Path>,
    pub owned: &'a Owned,
}
