//! The persistent queue in the job history: jobs enqueued as `pending` for any worker, with
//! what running them needs ([`JobSpec`]); atomic claims; cancel requests; live progress.
//!
//! A queued job has no owner until a worker claims it, so crash recovery leaves it alone
//! while it waits. Claims take SQLite's write lock first (`BEGIN IMMEDIATE`), so two
//! workers, in one process or many, never claim the same job.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JOB_COLUMNS, Job, JobStatus, Result, Store, StoreError, format_ts, job_from_row, now};
use super::{frames_of, own_identity};
use crate::models::{DeviceChoice, GenerationParams, Precision, Quality};

/// Everything a worker needs to run a queued job, fixed when it is enqueued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub quality: Quality,
    pub params: GenerationParams,
    pub seed_was_random: bool,
    /// The `--model` value (a folder as an absolute path); `None` is the bundled model.
    pub model: Option<String>,
    #[serde(default)]
    pub device: DeviceChoice,
    #[serde(default)]
    pub precision: Precision,
    /// Absolute paths of the MP4 and its thumbnail.
    pub video_path: PathBuf,
    pub thumbnail_path: PathBuf,
    /// Whether an existing regular file at those paths may be replaced (`-o` with `-f`).
    #[serde(default)]
    pub overwrite: bool,
    /// Where to write every frame as PNG too (`--save-frames`).
    #[serde(default)]
    pub frames_dir: Option<PathBuf>,
}

/// A job to enqueue; the caller picks the id (see [`new_job_id`]) because output paths
/// are named after it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub video_id: String,
    pub prompt: String,
    pub metadata: Value,
    pub spec: JobSpec,
    /// How often the job is run again when the process running it dies.
    pub max_retries: u32,
}

/// A fresh job id (a UUID v4).
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Where a running job is, as recorded after its steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobProgress {
    /// `denoising`, `decoding` or `writing`.
    pub phase: String,
    pub step: u32,
    pub total: u32,
    /// Seconds since the job started.
    pub elapsed_s: f64,
    /// Estimated seconds left in this phase, once a step has finished.
    #[schema(required = true)]
    pub eta_s: Option<f64>,
    #[serde(with = "ts_serde")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

mod ts_serde {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ts(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        super::super::parse_ts(&text).map_err(serde::de::Error::custom)
    }
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job had not started: it is `canceled` now.
    Canceled(Job),
    /// The job is running: its worker stops it at the next step boundary.
    Requested(Job),
    /// The job had already ended; nothing changed.
    AlreadyEnded(Job),
}

impl Store {
    /// Enqueues every job in one transaction (all or none), as `pending` with no owner.
    pub fn enqueue(&mut self, jobs: &[NewJob]) -> Result<Vec<Job>> {
        let (tx, path) = self.write_tx()?;
        let e = |e| StoreError::from_sqlite(&path, e);
        let created = format_ts(&now());
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO jobs (video_id, prompt, status, created_at, metadata, frames,
                                       queued, spec, max_retries)
                     VALUES (?1, ?2, 'pending', ?3, ?4, ?5, 1, ?6, ?7)",
                )
                .map_err(e)?;
            for job in jobs {
                let spec = serde_json::to_string(&job.spec).unwrap_or_default();
                insert
                    .execute(params![
                        job.video_id,
                        job.prompt,
                        created,
                        job.metadata.to_string(),
                        frames_of(&job.metadata).map(|f| f as i64),
                        spec,
                        job.max_retries,
                    ])
                    .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        jobs.iter().map(|j| self.get_exact(&j.video_id)).collect()
    }

    /// Claims the oldest queued `pending` job for this process (`processing`, owned by this
    /// pid), or `None` when the queue is empty.
    pub fn claim_next(&mut self) -> Result<Option<(Job, JobSpec)>> {
        let host = self.host.clone();
        let (tx, path) = self.write_tx()?;
        let e = |e| StoreError::from_sqlite(&path, e);
        let claimed: Option<(String, Option<String>)> = tx
            .query_row(
                "UPDATE jobs SET status = 'processing', started_at = ?1, pid = ?2, host = ?3,
                        proc_start = ?4, attempts = attempts + 1, progress = NULL
                 WHERE video_id = (SELECT video_id FROM jobs
                                   WHERE status = 'pending' AND queued = 1
                                   ORDER BY created_at, rowid LIMIT 1)
                   AND status = 'pending'
                 RETURNING video_id, spec",
                params![format_ts(&now()), std::process::id(), host, own_identity()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(e)?;
        tx.commit().map_err(e)?;
        let Some((id, spec)) = claimed else {
            return Ok(None);
        };
        let job = self.get_exact(&id)?;
        match spec.as_deref().map(serde_json::from_str::<JobSpec>) {
            Some(Ok(spec)) => Ok(Some((job, spec))),
            other => {
                let reason = match other {
                    Some(Err(err)) => format!("its stored request cannot be read: {err}"),
                    _ => "it has no stored request".to_string(),
                };
                let message = format!("the queued job cannot run: {reason}");
                self.mark_failed(&id, "INTERNAL_ERROR", &message, None)?;
                Err(StoreError::BadSpec { id, reason })
            }
        }
    }

    /// Cancels job `id` (an exact id): a pending job at once, a running one by asking its
    /// worker to stop between steps.
    pub fn request_cancel(&mut self, id: &str, message: &str) -> Result<CancelOutcome> {
        let (tx, path) = self.write_tx()?;
        let e = |e| StoreError::from_sqlite(&path, e);
        let status: Option<String> = tx
            .query_row("SELECT status FROM jobs WHERE video_id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(e)?;
        let status: JobStatus = match status.map(|s| s.parse()) {
            Some(Ok(s)) => s,
            _ => return Err(StoreError::NotFound { id: id.to_string() }),
        };
        match status {
            JobStatus::Pending => {
                tx.execute(
                    "UPDATE jobs SET status = 'canceled', completed_at = ?1, error_code = 'CANCELED',
                            error_message = ?2, cancel_requested = 1
                     WHERE video_id = ?3 AND status = 'pending'",
                    params![format_ts(&now()), message, id],
                )
                .map_err(e)?;
            }
            JobStatus::Processing => {
                tx.execute(
                    "UPDATE jobs SET cancel_requested = 1 WHERE video_id = ?1",
                    [id],
                )
                .map_err(e)?;
            }
            _ => {}
        }
        tx.commit().map_err(e)?;
        let job = self.get_exact(id)?;
        Ok(match status {
            JobStatus::Pending => CancelOutcome::Canceled(job),
            JobStatus::Processing => CancelOutcome::Requested(job),
            _ => CancelOutcome::AlreadyEnded(job),
        })
    }

    /// Records a running job's progress; answers whether a cancel was requested.
    pub fn record_progress(&self, id: &str, progress: &JobProgress) -> Result<bool> {
        let json = serde_json::to_string(progress).unwrap_or_default();
        let requested: Option<bool> = self
            .conn
            .query_row(
                "UPDATE jobs SET progress = ?1 WHERE video_id = ?2 AND status = 'processing'
                 RETURNING cancel_requested",
                params![json, id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(requested.unwrap_or(false))
    }

    /// Whether someone asked job `id` to stop.
    pub fn cancel_requested(&self, id: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT cancel_requested FROM jobs WHERE video_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .ok_or_else(|| StoreError::NotFound { id: id.to_string() })
    }

    /// Queued jobs waiting for a worker.
    pub fn queue_depth(&self) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND queued = 1",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// The jobs of `ids` that still exist, in no particular order (for followers that watch
    /// several jobs).
    pub fn jobs_by_id(&self, ids: &[String]) -> Result<Vec<Job>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE video_id = ?1"
            ))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(job) = stmt
                .query_row([id], job_from_row)
                .optional()
                .map_err(|e| self.err(e))?
            {
                out.push(job);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
