//! The store's error type: what failed (open, corrupt, locked, lookup, transition), with the
//! machine-readable code and details each maps to.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{BUSY_TIMEOUT, JobStatus};
use crate::error::ErrorCode;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder {} for the job database", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the job database {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{} is not a usable aivideo job database (corrupt, or not SQLite); move it aside to start a new history, or pass another --db",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the job database {} stayed locked by another process for {}s", path.display(), BUSY_TIMEOUT.as_secs())]
    Locked {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the job database {} cannot be written: its folder is read-only; pass --db (or AIVIDEO_DB) with a writable path",
        path.display()
    )]
    ReadOnlyFolder {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("queued job {id} cannot run: {reason}")]
    BadSpec { id: String, reason: String },
    #[error("the job database {} does not exist yet", path.display())]
    Missing { path: PathBuf },
    #[error(
        "the job database {} has schema version {found}, newer than this aivideo supports ({supported}); upgrade aivideo",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error(
        "the job database {} has schema version {found}, older than this aivideo ({supported}); run `aivideo status` once to upgrade it",
        path.display()
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database error on {}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("no job matches id `{id}`")]
    NotFound { id: String },
    #[error(
        "id prefix `{prefix}` matches {}{} jobs ({}); give more characters of the id",
        if *more { "more than " } else { "" },
        candidates.len(),
        candidates.iter().take(5).map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
    )]
    Ambiguous {
        prefix: String,
        /// Up to ten matching ids, in id order.
        candidates: Vec<String>,
        /// True when more jobs match than are listed.
        more: bool,
    },
    #[error("`{id}` is not a job id: {reason}")]
    InvalidId { id: String, reason: String },
    #[error("job {id} is {from}; it cannot become {to}")]
    InvalidTransition {
        id: String,
        from: JobStatus,
        to: JobStatus,
    },
}

impl StoreError {
    /// The machine-readable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound { .. } => ErrorCode::NotFound,
            StoreError::Ambiguous { .. } => ErrorCode::AmbiguousId,
            StoreError::InvalidId { .. } => ErrorCode::ValidationError,
            StoreError::InvalidTransition { .. } | StoreError::BadSpec { .. } => {
                ErrorCode::InternalError
            }
            _ => ErrorCode::DatabaseError,
        }
    }

    /// The `details` object of the JSON error.
    pub fn details(&self) -> Value {
        match self {
            StoreError::NotFound { id }
            | StoreError::InvalidId { id, .. }
            | StoreError::BadSpec { id, .. } => json!({ "id": id }),
            StoreError::Ambiguous {
                prefix,
                candidates,
                more,
            } => json!({ "id": prefix, "candidates": candidates, "more": more }),
            StoreError::InvalidTransition { id, from, to } => {
                json!({ "id": id, "from": from, "to": to })
            }
            StoreError::CreateDir { path, .. }
            | StoreError::Open { path, .. }
            | StoreError::ReadOnlyFolder { path, .. }
            | StoreError::Corrupt { path, .. }
            | StoreError::Locked { path, .. }
            | StoreError::Missing { path }
            | StoreError::TooNew { path, .. }
            | StoreError::TooOld { path, .. }
            | StoreError::Sqlite { path, .. } => json!({ "path": path }),
        }
    }

    /// Sorts an SQLite error into corrupt / locked / other, for the file at `path`.
    pub(super) fn from_sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode as C;
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(C::NotADatabase | C::DatabaseCorrupt) => StoreError::Corrupt { path, source },
            Some(C::DatabaseBusy | C::DatabaseLocked) => StoreError::Locked { path, source },
            Some(C::CannotOpen | C::PermissionDenied | C::ReadOnly) => {
                StoreError::Open { path, source }
            }
            _ => StoreError::Sqlite { path, source },
        }
    }
}
