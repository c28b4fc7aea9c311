//! The SQLite job history: opening (with migrations and crash recovery), job state changes,
//! lookups by id prefix, listing and the aggregates that `status` and the metrics page read.
//!
//! One [`Store`] wraps one connection. Every process (and every thread) opens its own; SQLite's
//! WAL mode and a busy timeout let them write concurrently. Timestamps are RFC3339 UTC text with
//! microsecond precision (see [`job::format_ts`]), so text order is time order.

mod error;
mod job;
mod process;
mod queue;
mod recovery;
mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

pub use error::StoreError;
pub use job::{JOB_COLUMNS, Job, JobStatus, format_ts, job_from_row, now, parse_ts};
pub use process::{identity_of, own_identity, owner_alive, pid_alive, this_host};
pub use queue::{CancelOutcome, JobProgress, JobSpec, NewJob, new_job_id};
pub use stats::{ProcessingTimeStats, StatusCounts, StoreStats};

use crate::error::ErrorCode;

/// How long a connection waits for another process's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Error code recorded on jobs whose process died while running them.
pub const INTERRUPTED: &str = "INTERRUPTED";

/// Schema migrations, applied in order and tracked with `PRAGMA user_version`.
/// Append only: never edit or reorder an entry that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the jobs table and the indexes that keep listing and prefix lookup fast.
    "CREATE TABLE jobs (
        video_id        TEXT PRIMARY KEY NOT NULL,
        prompt          TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN
                            ('pending', 'processing', 'completed', 'failed', 'canceled')),
        created_at      TEXT NOT NULL,
        started_at      TEXT,
        completed_at    TEXT,
        processing_time REAL,
        video_path      TEXT,
        thumbnail_path  TEXT,
        error_code      TEXT,
        error_message   TEXT,
        metadata        TEXT NOT NULL DEFAULT '{}',
        frames          INTEGER,
        pid             INTEGER,
        host            TEXT
    );
    CREATE INDEX jobs_by_created ON jobs (created_at);
    CREATE INDEX jobs_by_status_created ON jobs (status, created_at);",
    // 2: what identifies the owning process beyond its pid (boot id and start time), and the
    // folders a job writes into, so that recovery can remove a dead job's temporary files.
    "ALTER TABLE jobs ADD COLUMN proc_start TEXT;
    ALTER TABLE jobs ADD COLUMN work_dirs TEXT;",
    // 3: the persistent queue. `queued` jobs wait for any worker with what running them
    // needs (`spec`, JSON); `attempts` counts claims and `max_retries` bounds re-runs after a
    // worker died; `cancel_requested` is how another process stops a running job; `progress`
    // (JSON) is the running job's last reported step.
    "ALTER TABLE jobs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN spec TEXT;
    ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN progress TEXT;
    CREATE INDEX jobs_queue ON jobs (created_at) WHERE status = 'pending' AND queued = 1;",
];

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The job history database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    host: String,
}

impl Store {
    /// Opens (creating if needed) the database for reading and writing, applies pending
    /// migrations and recovers jobs whose process died (see [`Store::recover_interrupted`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(&path).map_err(|e| StoreError::from_sqlite(&path, e))?;
        let mut store = Store {
            conn,
            path,
            host: this_host(),
        };
        // Switching a fresh file to WAL can fail with SQLITE_BUSY at once, without SQLite's
        // busy handler, while another process is doing the same: retry the whole set-up
        // (every step is idempotent) until the usual busy timeout runs out.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = std::time::Duration::from_millis(2);
        loop {
            match store.prepare_for_write() {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_millis(100));
                }
                Err(StoreError::Open { path, source }) if !folder_writable(&path) => {
                    return Err(StoreError::ReadOnlyFolder { path, source });
                }
                done => return done.map(|()| store),
            }
        }
    }

    /// Journal mode and pragmas, pending migrations, then recovery of dead jobs.
    fn prepare_for_write(&mut self) -> Result<()> {
        self.configure_for_write()?;
        self.migrate()?;
        self.recover_interrupted()?;
        Ok(())
    }

    /// Opens an existing database for monitoring: never creates the file, never writes,
    /// never takes a write lock, and never runs migrations or recovery. Where its folder
    /// cannot be written (a read-only file system or folder), SQLite cannot make the shared
    /// memory file WAL readers need; then, and only then, the file is opened as immutable,
    /// since nothing can be writing to it there either.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(StoreError::Missing { path });
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(&path, flags).and_then(|c| {
            // Opening is lazy: read the schema version to find out whether reading works.
            c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) if !folder_writable(&path) => {
                let uri = immutable_uri(&path);
                Connection::open_with_flags(&uri, flags | OpenFlags::SQLITE_OPEN_URI)
                    .map_err(|_| StoreError::from_sqlite(&path, e))?
            }
            Err(e) => return Err(StoreError::from_sqlite(&path, e)),
        };
        let store = Store {
            conn,
            path,
            host: this_host(),
        };
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store.err(e))?;
        let found = store.schema_version()?;
        let supported = MIGRATIONS.len() as i64;
        if found > supported {
            return Err(StoreError::TooNew {
                path: store.path,
                found,
                supported,
            });
        }
        if found < supported {
            return Err(StoreError::TooOld {
                path: store.path,
                found,
                supported,
            });
        }
        Ok(store)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version recorded in the file (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(&self.path, e)
    }

    /// A transaction holding the write lock from its start (`BEGIN IMMEDIATE`: the busy
    /// handler waits for other writers, and nothing read in it can go stale), and the
    /// database path for its errors.
    fn write_tx(&mut self) -> Result<(rusqlite::Transaction<'_>, PathBuf)> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::from_sqlite(&path, e))?;
        Ok((tx, path))
    }

    fn configure_for_write(&self) -> Result<()> {
        let c = &self.conn;
        c.busy_timeout(BUSY_TIMEOUT).map_err(|e| self.err(e))?;
        // Reading the journal mode reads the file header: garbage files fail here.
        let mode: String = c
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            // Some file systems cannot do WAL; the rollback journal still works, only slower.
            c.pragma_update(None, "journal_mode", "DELETE")
                .map_err(|e| self.err(e))?;
        }
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.err(e))?;
        c.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Applies pending migrations in one `BEGIN IMMEDIATE` transaction, so that processes
    /// opening a fresh database at the same moment apply each migration exactly once.
    fn migrate(&mut self) -> Result<()> {
        let supported = MIGRATIONS.len() as i64;
        let check = |found: i64, path: &Path| {
            if found > supported {
                Err(StoreError::TooNew {
                    path: path.to_path_buf(),
                    found,
                    supported,
                })
            } else {
                Ok(found)
            }
        };
        if check(self.schema_version()?, &self.path)? == supported {
            return Ok(());
        }
        let (tx, path) = self.write_tx()?;
        let e = |e| StoreError::from_sqlite(&path, e);
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(e)?;
        let found = check(found, &path)?;
        for sql in &MIGRATIONS[found as usize..] {
            tx.execute_batch(sql).map_err(e)?;
        }
        tx.pragma_update(None, "user_version", supported)
            .map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Records a new `pending` job owned by this process.
    pub fn create_job(&self, prompt: &str, metadata: &Value) -> Result<Job> {
        self.create_job_as(&new_job_id(), prompt, metadata)
    }

    /// Records a new `pending` job with id `video_id` (see [`new_job_id`]), owned by this
    /// process.
    pub fn create_job_as(&self, video_id: &str, prompt: &str, metadata: &Value) -> Result<Job> {
        let job = Job {
            video_id: video_id.to_string(),
            prompt: prompt.to_string(),
            status: JobStatus::Pending,
            created_at: now(),
            started_at: None,
            completed_at: None,
            processing_time: None,
            video_path: None,
            thumbnail_path: None,
            error_code: None,
            error_message: None,
            metadata: metadata.clone(),
            frames: frames_of(metadata),
            pid: Some(std::process::id()),
            host: Some(self.host.clone()),
            progress: None,
            attempts: 0,
        };
        self.conn
            .execute(
                "INSERT INTO jobs (video_id, prompt, status, created_at, metadata, frames, pid,
                                   host, proc_start)
                 VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    job.video_id,
                    job.prompt,
                    format_ts(&job.created_at),
                    metadata.to_string(),
                    job.frames.map(|f| f as i64),
                    job.pid,
                    job.host,
                    own_identity(),
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(job)
    }

    /// `pending` → `processing`, owned by this process (its pid and host are recorded).
    pub fn mark_processing(&self, id: &str) -> Result<Job> {
        self.mark_processing_as(id, std::process::id(), &self.host)
    }

    /// `pending` → `processing`, owned by process `pid` on `host` (for workers and tests).
    pub fn mark_processing_as(&self, id: &str, pid: u32, host: &str) -> Result<Job> {
        let sql = "UPDATE jobs SET status = 'processing', started_at = ?1, pid = ?2, host = ?3,
                   proc_start = ?4, attempts = attempts + 1 WHERE video_id = ?5 AND status = 'pending'";
        let now = format_ts(&now());
        let identity = if pid == std::process::id() && host == self.host {
            own_identity()
        } else if host == self.host {
            identity_of(pid)
        } else {
            None
        };
        let args = params![now, pid, host, identity, id];
        self.transition(id, JobStatus::Processing, sql, args)
    }

    /// `processing` → `completed`, with the files written and the final metadata.
    pub fn mark_completed(
        &self,
        id: &str,
        video_path: &Path,
        thumbnail_path: Option<&Path>,
        processing_time: f64,
        metadata: &Value,
    ) -> Result<Job> {
        let sql = "UPDATE jobs SET status = 'completed', completed_at = ?1, video_path = ?2,
                   thumbnail_path = ?3, processing_time = ?4, metadata = ?5, frames = ?6
                   WHERE video_id = ?7 AND status = 'processing'";
        let now = format_ts(&now());
        let video = video_path.to_string_lossy();
        let thumb = thumbnail_path.map(|p| p.to_string_lossy().into_owned());
        let meta = metadata.to_string();
        let frames = frames_of(metadata).map(|f| f as i64);
        let args = params![now, video, thumb, processing_time, meta, frames, id];
        self.transition(id, JobStatus::Completed, sql, args)
    }

    /// `pending` or `processing` → `failed` with an error code and message; `metadata`, when
    /// given, replaces the stored metadata.
    pub fn mark_failed(
        &self,
        id: &str,
        error_code: &str,
        message: &str,
        metadata: Option<&Value>,
    ) -> Result<Job> {
        let sql = format!(
            "UPDATE jobs SET status = 'failed', completed_at = ?1, error_code = ?2,
             error_message = ?3, metadata = COALESCE(?4, metadata),
             frames = COALESCE(?5, frames), processing_time = {ELAPSED}
             WHERE video_id = ?6 AND status IN ('pending', 'processing')"
        );
        let now = format_ts(&now());
        let meta = metadata.map(|m| m.to_string());
        let frames = metadata.and_then(frames_of).map(|f| f as i64);
        let args = params![now, error_code, message, meta, frames, id];
        self.transition(id, JobStatus::Failed, &sql, args)
    }

    /// `pending` or `processing` → `canceled` (error code `CANCELED`).
    pub fn mark_canceled(&self, id: &str, message: &str) -> Result<Job> {
        let sql = format!(
            "UPDATE jobs SET status = 'canceled', completed_at = ?1, error_code = ?2,
             error_message = ?3, processing_time = {ELAPSED}
             WHERE video_id = ?4 AND status IN ('pending', 'processing')"
        );
        let now = format_ts(&now());
        let args = params![now, ErrorCode::Canceled.as_str(), message, id];
        self.transition(id, JobStatus::Canceled, &sql, args)
    }

    /// Records (or replaces) the thumbnail of a job in any status.
    pub fn set_thumbnail_path(&self, id: &str, path: &Path) -> Result<Job> {
        let changed = self
            .conn
            .execute(
                "UPDATE jobs SET thumbnail_path = ?1 WHERE video_id = ?2",
                params![path.to_string_lossy(), id],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(StoreError::NotFound { id: id.to_string() });
        }
        self.get_exact(id)
    }

    /// Runs a guarded status update; when it changes nothing, explains why.
    fn transition(
        &self,
        id: &str,
        to: JobStatus,
        sql: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Job> {
        let changed = self.conn.execute(sql, args).map_err(|e| self.err(e))?;
        if changed == 0 {
            let from: Option<String> = self
                .conn
                .query_row("SELECT status FROM jobs WHERE video_id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| self.err(e))?;
            return Err(match from.and_then(|s| s.parse().ok()) {
                None => StoreError::NotFound { id: id.to_string() },
                Some(from) => StoreError::InvalidTransition {
                    id: id.to_string(),
                    from,
                    to,
                },
            });
        }
        self.get_exact(id)
    }

    fn get_exact(&self, id: &str) -> Result<Job> {
        self.conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE video_id = ?1"),
                [id],
                job_from_row,
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NotFound { id: id.to_string() })
    }

    /// The job whose id is `id_or_prefix` or starts with it (case-insensitive, at least 1 char).
    pub fn get(&self, id_or_prefix: &str) -> Result<Job> {
        let prefix = id_or_prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() {
            return Err(StoreError::InvalidId {
                id: id_or_prefix.to_string(),
                reason: "it is empty; give at least one character of the id".into(),
            });
        }
        if !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(StoreError::NotFound {
                id: id_or_prefix.to_string(),
            });
        }
        // All-ASCII, so the next prefix is the last byte plus one: an index range scan.
        let mut upper = prefix.clone().into_bytes();
        if let Some(last) = upper.last_mut() {
            *last += 1;
        }
        let upper = String::from_utf8(upper).unwrap_or_default();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE video_id >= ?1 AND video_id < ?2
                 ORDER BY video_id LIMIT 11"
            ))
            .map_err(|e| self.err(e))?;
        let mut jobs: Vec<Job> = stmt
            .query_map([&prefix, &upper], job_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))?;
        match jobs.len() {
            0 => Err(StoreError::NotFound {
                id: id_or_prefix.to_string(),
            }),
            1 => Ok(jobs.remove(0)),
            n => Err(StoreError::Ambiguous {
                prefix: id_or_prefix.to_string(),
                candidates: jobs.into_iter().take(10).map(|j| j.video_id).collect(),
                more: n > 10,
            }),
        }
    }

    /// Jobs newest first, optionally only those in `status`.
    pub fn list(&self, limit: u32, offset: u64, status: Option<JobStatus>) -> Result<Vec<Job>> {
        let filter = if status.is_some() {
            "WHERE status = ?3"
        } else {
            ""
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs {filter}
                 ORDER BY created_at DESC, rowid DESC LIMIT ?1 OFFSET ?2"
            ))
            .map_err(|e| self.err(e))?;
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let rows = match status {
            Some(s) => stmt.query_map(params![limit, offset, s.as_str()], job_from_row),
            None => stmt.query_map(params![limit, offset], job_from_row),
        };
        rows.and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// Unfinished jobs (`pending` or `processing`), oldest first.
    pub fn in_progress(&self) -> Result<Vec<Job>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('pending', 'processing')
                 ORDER BY created_at, rowid"
            ))
            .map_err(|e| self.err(e))?;
        stmt.query_map([], job_from_row)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }
}

/// SQL for the seconds between `started_at` and `?1` (NULL when the job never started).
const ELAPSED: &str = "CASE WHEN started_at IS NULL THEN NULL
     ELSE MAX(0.0, (julianday(?1) - julianday(started_at)) * 86400.0) END";

fn frames_of(metadata: &Value) -> Option<u64> {
    metadata.get("frames").and_then(Value::as_u64)
}

/// Whether files can be created in `path`'s folder (`access(W_OK)`: false on a read-only
/// file system even for root).
#[cfg(unix)]
fn folder_writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return true;
    };
    // SAFETY: a valid NUL-terminated path; access only inspects it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(not(unix))]
fn folder_writable(_path: &Path) -> bool {
    true
}

/// `file:<path>?immutable=1`, with the characters URIs reserve and non-ASCII bytes
/// percent-encoded.
fn immutable_uri(path: &Path) -> String {
    let mut out = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' | 0x80.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(char::from(*b)),
        }
    }
    out.push_str("?immutable=1");
    out
}

#[cfg(test)]
mod tests;
