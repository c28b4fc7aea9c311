//! The metrics page of `aivideo serve-metrics`: a [`Snapshot`] of the job history (read-only),
//! the database and the GPUs, encoded with `prometheus-client` as OpenMetrics text, or as the
//! classic Prometheus text format for scrapers and tools that do not ask for OpenMetrics.
//!
//! Metric families (all prefixed `aivideo_`):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `aivideo_jobs` | gauge | `status` (every status, also when 0) |
//! | `aivideo_jobs_in_progress` | gauge | |
//! | `aivideo_job_processing_seconds` | histogram | (`le`) |
//! | `aivideo_frames_generated_total` | counter | |
//! | `aivideo_job_completion_ratio` | gauge | |
//! | `aivideo_database_up` | gauge | |
//! | `aivideo_database_size_bytes` | gauge | |
//! | `aivideo_build_info` | info (a gauge of 1 in the classic format) | `version` |
//! | `aivideo_gpu_utilization_ratio` | gauge | `gpu`, `name` |
//! | `aivideo_gpu_memory_used_bytes` | gauge | `gpu`, `name` |
//! | `aivideo_gpu_memory_total_bytes` | gauge | `gpu`, `name` |
//!
//! The job metrics are absent while the database is unreadable (`aivideo_database_up 0`); the
//! GPU metrics are absent without an NVIDIA driver.

mod classic;
mod encode;
mod gpu;

use std::path::Path;

pub use classic::openmetrics_to_classic;
pub use encode::{encode_openmetrics, encode_openmetrics_with};
pub use gpu::{GpuMonitor, GpuStats};

use crate::store::{Store, StoreError, StoreStats};

/// What can go wrong while producing the metrics page.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode the metrics page")]
    Encode(#[from] std::fmt::Error),
    #[error(
        "cannot convert line {line} of the OpenMetrics page to the Prometheus text format: {reason}"
    )]
    Convert { line: usize, reason: String },
}

/// Upper bounds (seconds) of the processing-time histogram buckets; `+Inf` is implied.
pub const PROCESSING_TIME_BUCKETS: [f64; 11] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// `Content-Type` of the OpenMetrics text that `prometheus-client` writes.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `Content-Type` of the classic Prometheus text format.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition formats the metrics page is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, exactly as `prometheus-client` encodes it.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (what `promtool check metrics` reads).
    PrometheusText,
}

impl Format {
    /// Picks the format from an HTTP `Accept` header: OpenMetrics when the client accepts
    /// `application/openmetrics-text` at least as much as `text/plain` (as Prometheus does),
    /// otherwise the classic format (curl, promtool, browsers, no header).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::PrometheusText;
        };
        let mut openmetrics_q: f64 = 0.0;
        let mut text_q: f64 = 0.0;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics_q = openmetrics_q.max(q),
                "text/plain" => text_q = text_q.max(q),
                _ => {}
            }
        }
        if openmetrics_q > 0.0 && openmetrics_q >= text_q {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

/// The job database as one scrape saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseSnapshot {
    /// The database answered; its aggregates.
    Up(StoreStats),
    /// It could not be read (missing, corrupt, unreadable, too new...); why, in one line.
    Down { reason: String },
}

/// Everything one scrape reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The aivideo version (`aivideo_build_info`).
    pub version: String,
    pub database: DatabaseSnapshot,
    pub gpus: Vec<GpuStats>,
}

impl Snapshot {
    /// Reads the job history at `db_path` (read-only, never creating it) and samples the GPUs.
    pub fn collect(db_path: &Path, gpus: &GpuMonitor) -> Snapshot {
        let database =
            match open_checked(db_path).and_then(|store| store.stats(&PROCESSING_TIME_BUCKETS)) {
                Ok(stats) => DatabaseSnapshot::Up(stats),
                Err(e) => DatabaseSnapshot::Down {
                    reason: error_chain(&e),
                },
            };
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_string(),
            database,
            gpus: gpus.sample(),
        }
    }

    /// The page in `format`.
    pub fn render(&self, format: Format) -> Result<String, MetricsError> {
        self.render_with(format, |_| {})
    }

    /// The page in `format`, with the metrics `extra` registers.
    pub fn render_with(
        &self,
        format: Format,
        extra: impl FnOnce(&mut prometheus_client::registry::Registry),
    ) -> Result<String, MetricsError> {
        let page = encode_openmetrics_with(self, extra)?;
        match format {
            Format::OpenMetrics => Ok(page),
            Format::PrometheusText => openmetrics_to_classic(&page),
        }
    }
}

/// Opens the job history read-only and checks that it answers a trivial query: the health
/// check. Never creates the file and never takes a write lock.
pub fn open_checked(db_path: &Path) -> Result<Store, StoreError> {
    let store = Store::open_read_only(db_path)?;
    store.count(None)?;
    Ok(store)
}

/// An error and its causes on one line, joined with `: ` (causes that only restate the
/// previous message are left out).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut last = out.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !last.contains(&text) && !text.ends_with(last.as_str()) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_accept_header_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
    }

    #[test]
    fn other_clients_get_the_classic_format() {
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(Some("text/plain, application/openmetrics-text;q=0.5")),
            Format::PrometheusText
        );
    }

    #[test]
    fn a_missing_database_is_down_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite3");
        let snap = Snapshot::collect(&path, &GpuMonitor::disabled());
        match &snap.database {
            DatabaseSnapshot::Down { reason } => {
                assert!(reason.contains("does not exist"), "{reason}")
            }
            other => panic!("expected down, got {other:?}"),
        }
        assert!(!path.exists());
        assert_eq!(snap.version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn error_chain_keeps_distinct_causes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.sqlite3");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        let err = open_checked(&path).err().expect("garbage must not open");
        let line = error_chain(&err);
        assert!(line.contains("not a usable aivideo job database"), "{line}");
        assert!(line.contains("file is not a database"), "{line}");
        assert_eq!(line.matches("file is not a database").count(), 1, "{line}");
    }
}
