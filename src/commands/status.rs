//! `aivideo status [ID]`: one job's record, or the system status (database, job counts,
//! jobs in progress, version, devices, model) when no id is given.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Context;
use crate::cli::StatusArgs;
use crate::models::{Manifest, ModelSource, inspect};
use crate::output::{human_bytes, human_duration, sanitize, truncate};
use crate::store::{Job, StatusCounts, Store};

pub fn run(ctx: &Context, args: &StatusArgs) -> Result<u8> {
    let store = ctx.open_store_for_reading()?;
    match &args.id {
        Some(id) => {
            let job = store.get(id)?;
            if ctx.printer.is_json() {
                ctx.printer.json(&job)?;
            } else {
                ctx.printer.result(&render_job(&job))?;
            }
        }
        None => {
            let model = model_in_use(ctx);
            let status =
                system_status(&store, model.as_ref()).context("cannot read the job history")?;
            if ctx.printer.is_json() {
                ctx.printer.json(&status)?;
            } else {
                ctx.printer.result(&render_system_status(&status))?;
            }
        }
    }
    Ok(crate::error::exit::SUCCESS)
}

/// The model `generate` would use ($AIVIDEO_MODEL, else the bundled one), from its metadata
/// alone (no weights read, no device opened), or `None` with a warning when it cannot be
/// inspected.
pub fn model_in_use(ctx: &Context) -> Option<Manifest> {
    let arg = std::env::var("AIVIDEO_MODEL")
        .ok()
        .filter(|s| !s.is_empty());
    match ModelSource::from_arg(arg.as_deref()).and_then(|source| inspect(&source)) {
        Ok(m) => Some(m),
        Err(e) => {
            ctx.printer.warn(&format!("cannot read the model: {e}"));
            None
        }
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// One job as aligned `label: value` lines.
pub fn render_job(job: &Job) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("Job", job.video_id.clone()),
        ("Status", job.status.to_string()),
        ("Prompt", sanitize(&job.prompt)),
        ("Created", ts(&job.created_at)),
        ("Started", opt(job.started_at.as_ref(), ts)),
        ("Completed", opt(job.completed_at.as_ref(), ts)),
        ("Processing time", opt(job.processing_time, human_duration)),
        ("Video", opt(job.video_path.as_deref(), sanitize)),
        ("Thumbnail", opt(job.thumbnail_path.as_deref(), sanitize)),
    ];
    if job.error_code.is_some() || job.error_message.is_some() {
        let code = job.error_code.as_deref().unwrap_or("ERROR");
        let msg = job.error_message.as_deref().unwrap_or("");
        rows.push(("Error", sanitize(&format!("{code}: {msg}"))));
    }
    if let (Some(pid), Some(host)) = (job.pid, job.host.as_deref()) {
        rows.push(("Process", sanitize(&format!("pid {pid} on {host}"))));
    }
    if job.metadata.as_object().is_some_and(|m| !m.is_empty()) {
        rows.push(("Metadata", sanitize(&job.metadata.to_string())));
    }
    render_rows(&rows, JOB_LABEL_WIDTH)
}

/// Label column width of one job (`Processing time:`).
const JOB_LABEL_WIDTH: usize = 16;

/// `label: value` lines with the values aligned at column `width`.
fn render_rows(rows: &[(&str, String)], width: usize) -> String {
    rows.iter()
        .map(|(label, value)| format!("{:<width$} {value}\n", format!("{label}:")))
        .collect()
}

/// What `aivideo status` (no id) reports; serialised as is for `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct SystemStatus {
    pub version: String,
    pub database: DatabaseStatus,
    pub jobs: JobCounts,
    pub in_progress: Vec<Job>,
    pub devices: Vec<String>,
    /// The model `generate` would use, as inspected (not loaded).
    pub model: Option<Manifest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub schema_version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobCounts {
    #[serde(flatten)]
    pub by_status: StatusCounts,
    pub total: u64,
}

/// Gathers the system status from the store; `model` is the inspected model, if any.
pub fn system_status(store: &Store, model: Option<&Manifest>) -> Result<SystemStatus> {
    let counts = store.counts_by_status()?;
    Ok(SystemStatus {
        version: env!("CARGO_PKG_VERSION").to_string(),
        database: DatabaseStatus {
            path: std::path::absolute(store.path()).unwrap_or_else(|_| store.path().into()),
            size_bytes: store.db_size_bytes()?,
            schema_version: store.schema_version()?,
        },
        jobs: JobCounts {
            by_status: counts,
            total: counts.total(),
        },
        in_progress: store.in_progress()?,
        devices: crate::models::device::available(),
        model: model.cloned(),
    })
}

/// The human line for the model in use.
pub fn describe_model(model: Option<&Manifest>) -> String {
    match model {
        None => "none available (see the warning above)".into(),
        Some(m) => {
            let sha = match &m.weights_sha256 {
                Some(sha) => format!(", weights sha256 {}…", sha.get(..12).unwrap_or(sha)),
                None => String::new(),
            };
            sanitize(&format!(
                "{} ({}, {} family) from {}, {} in {} files{sha}",
                m.name,
                m.kind,
                m.family.as_str(),
                m.source,
                human_bytes(m.bytes),
                m.files.len()
            ))
        }
    }
}

pub fn render_system_status(s: &SystemStatus) -> String {
    let c = &s.jobs.by_status;
    let head: Vec<(&str, String)> = vec![
        ("Version", format!("aivideo {}", s.version)),
        (
            "Database",
            format!(
                "{} ({}, schema v{})",
                sanitize(&s.database.path.display().to_string()),
                human_bytes(s.database.size_bytes),
                s.database.schema_version
            ),
        ),
        (
            "Jobs",
            format!(
                "{} total: {} pending, {} processing, {} completed, {} failed, {} canceled",
                s.jobs.total, c.pending, c.processing, c.completed, c.failed, c.canceled
            ),
        ),
        (
            "In progress",
            if s.in_progress.is_empty() {
                "none".into()
            } else {
                s.in_progress.len().to_string()
            },
        ),
    ];
    let tail: Vec<(&str, String)> = vec![
        ("Devices", s.devices.join(", ")),
        ("Model", describe_model(s.model.as_ref())),
    ];
    let mut out = render_rows(&head, STATUS_LABEL_WIDTH);
    for job in &s.in_progress {
        let owner = match (job.pid, job.host.as_deref()) {
            (Some(pid), Some(host)) => format!("pid {pid} on {host}"),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "  {}  {:<10}  since {}  {}  {}\n",
            job.short_id(),
            job.status.as_str(),
            ts(job.started_at.as_ref().unwrap_or(&job.created_at)),
            sanitize(&owner),
            truncate(&sanitize(&job.prompt), 40),
        ));
    }
    out.push_str(&render_rows(&tail, STATUS_LABEL_WIDTH));
    out
}

/// Label column width of the system status (`In progress:`).
const STATUS_LABEL_WIDTH: usize = 12;
