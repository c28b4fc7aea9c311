//! The job record: its status enum, its fields, its timestamp format, and the one row mapping.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Row;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a job is in its life: `pending` → `processing` → `completed` | `failed` | `canceled`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Canceled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Processing,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Processing => "processing",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    /// True once the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Canceled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job status `{s}` (expected pending, processing, completed, failed or canceled)"
                )
            })
    }
}

/// One job as stored. Serialises with the SPEC's field names (pid and host stay internal).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub video_id: String,
    pub prompt: String,
    pub status: JobStatus,
    #[serde(serialize_with = "ser_ts")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "ser_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "ser_opt_ts")]
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    /// Seconds, fractional.
    #[schema(required = true)]
    pub processing_time: Option<f64>,
    #[schema(required = true)]
    pub video_path: Option<String>,
    #[schema(required = true)]
    pub thumbnail_path: Option<String>,
    #[schema(required = true)]
    pub error_code: Option<String>,
    #[schema(required = true)]
    pub error_message: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Frames generated (copied from `metadata.frames` so totals are cheap).
    #[serde(skip)]
    pub frames: Option<u64>,
    /// Process id of the process that owns (created or is running) the job.
    #[serde(skip)]
    pub pid: Option<u32>,
    /// Host name of that process.
    #[serde(skip)]
    pub host: Option<String>,
    /// The last progress a running job reported (kept once it ends).
    #[schema(required = true)]
    pub progress: Option<super::JobProgress>,
    /// How many times a process started running the job (more than 1 after retries).
    pub attempts: u32,
}

impl Job {
    /// The first 8 characters of the id, as shown in tables.
    pub fn short_id(&self) -> &str {
        self.video_id.get(..8).unwrap_or(&self.video_id)
    }
}

/// Timestamps are stored as RFC3339 UTC text with exactly 6 fractional digits and a `Z`,
/// so that text order is time order (and indexes on the text serve time ordering).
pub fn format_ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_ts(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
}

/// The current time, truncated to the stored precision (so a returned job equals a re-read one).
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    parse_ts(&format_ts(&t)).unwrap_or(t)
}

fn ser_ts<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(t))
}

fn ser_opt_ts<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_ts(t)),
        None => s.serialize_none(),
    }
}

/// The column list every job query selects, in the order [`job_from_row`] reads.
pub const JOB_COLUMNS: &str = "video_id, prompt, status, created_at, started_at, completed_at, \
     processing_time, video_path, thumbnail_path, error_code, error_message, metadata, frames, pid, host, progress, attempts";

fn conversion_error(idx: usize, msg: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, msg.into())
}

fn ts_col(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get::<_, Option<String>>(idx)? {
        None => Ok(None),
        Some(s) => parse_ts(&s)
            .map(Some)
            .map_err(|e| conversion_error(idx, format!("bad timestamp `{s}`: {e}"))),
    }
}

/// The one place a row becomes a [`Job`]; the row must come from `SELECT {JOB_COLUMNS}`.
pub fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = row.get(2)?;
    let status = status
        .parse::<JobStatus>()
        .map_err(|e| conversion_error(2, e))?;
    let metadata: Option<String> = row.get(11)?;
    let metadata = match metadata {
        None => Value::Object(Default::default()),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| conversion_error(11, format!("metadata is not JSON: {e}")))?,
    };
    Ok(Job {
        video_id: row.get(0)?,
        prompt: row.get(1)?,
        status,
        created_at: ts_col(row, 3)?
            .ok_or_else(|| conversion_error(3, "created_at is NULL".into()))?,
        started_at: ts_col(row, 4)?,
        completed_at: ts_col(row, 5)?,
        processing_time: row.get(6)?,
        video_path: row.get(7)?,
        thumbnail_path: row.get(8)?,
        error_code: row.get(9)?,
        error_message: row.get(10)?,
        metadata,
        frames: row.get::<_, Option<i64>>(12)?.map(|f| f.max(0) as u64),
        pid: row
            .get::<_, Option<i64>>(13)?
            .and_then(|p| u32::try_from(p).ok()),
        host: row.get(14)?,
        progress: match row.get::<_, Option<String>>(15)? {
            None => None,
            // Progress is advisory: an unreadable record is shown as none.
            Some(text) => serde_json::from_str(&text).ok(),
        },
        attempts: row.get::<_, i64>(16)?.clamp(0, i64::from(u32::MAX)) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_text() {
        for st in JobStatus::ALL {
            assert_eq!(st.as_str().parse::<JobStatus>().unwrap(), st);
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        assert!("done".parse::<JobStatus>().is_err());
    }

    #[test]
    fn timestamp_text_order_is_time_order() {
        let a = parse_ts("2024-01-01T00:00:09.999999Z").unwrap();
        let b = parse_ts("2024-01-01T00:00:10Z").unwrap();
        assert!(a < b);
        assert!(format_ts(&a) < format_ts(&b));
        assert_eq!(format_ts(&b), "2024-01-01T00:00:10.000000Z");
        let n = now();
        assert_eq!(parse_ts(&format_ts(&n)).unwrap(), n);
    }
}
