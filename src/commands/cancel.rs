//! `aivideo cancel ID`: a queued job is canceled at once; a running one is asked to stop and
//! stops at its next step boundary, in whichever process runs it.

use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::Context;
use crate::cli::CancelArgs;
use crate::error::{CliError, ErrorCode, exit};
use crate::store::{CancelOutcome, Job, JobStatus};

/// What the job record says when a person canceled it.
pub(crate) const CANCELED_BY_USER: &str = "canceled: a cancel was requested";

pub fn run(ctx: &Context, args: &CancelArgs) -> Result<u8> {
    let p = &ctx.printer;
    let mut store = ctx.open_store()?;
    let id = store.get(&args.id)?.video_id;
    let outcome = store
        .request_cancel(&id, CANCELED_BY_USER)
        .context("cannot cancel the job")?;
    let job = match outcome {
        CancelOutcome::Canceled(job) => job,
        CancelOutcome::AlreadyEnded(job) => return Err(already_ended(&job).into()),
        CancelOutcome::Requested(job) if !args.wait => {
            if p.is_json() {
                p.json(&job)?;
            } else {
                p.result(&format!(
                    "{id}  cancel requested; the job stops at its next step (`aivideo status {}` shows when)\n",
                    job.short_id()
                ))?;
            }
            return Ok(exit::SUCCESS);
        }
        CancelOutcome::Requested(_) => wait_for_end(&store, &id)?,
    };
    if p.is_json() {
        p.json(&job)?;
    } else {
        let text = match job.status {
            JobStatus::Canceled => format!("{id}  canceled\n"),
            other => format!("{id}  {other} before the cancel took effect\n"),
        };
        p.result(&text)?;
    }
    Ok(exit::SUCCESS)
}

/// The refusal for a job that can no longer be canceled (exit 2).
pub fn already_ended(job: &Job) -> CliError {
    CliError::new(
        ErrorCode::Conflict,
        format!(
            "job {} has already ended ({}); there is nothing to cancel",
            job.video_id, job.status
        ),
    )
    .with_details(json!({ "id": job.video_id, "status": job.status }))
}

/// Polls the job until it ends, recovering it if the process running it dies meanwhile.
fn wait_for_end(store: &crate::store::Store, id: &str) -> Result<Job> {
    let mut polls = 0u32;
    loop {
        let job = store.get(id)?;
        if job.status.is_terminal() {
            return Ok(job);
        }
        polls += 1;
        if polls.is_multiple_of(10) {
            store.recover_interrupted()?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
