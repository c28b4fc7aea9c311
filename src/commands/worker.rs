//! `aivideo worker`: runs queued jobs from the job history, `--workers N` at a time, each
//! worker keeping its model loaded between jobs. The first SIGINT/SIGTERM stops claiming and
//! lets running jobs finish (or cancels them with `--cancel-on-shutdown`); jobs still queued
//! stay queued for the next worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::Context;
use super::runner::{Runner, report};
use crate::cancel::CancelFlag;
use crate::cli::WorkerArgs;
use crate::error::{CliError, ErrorCode, exit};
use crate::models::{DeviceChoice, ModelSource, Precision, Provenance, VideoModel, inspect, load};
use crate::output::Printer;
use crate::store::{Job, JobSpec, JobStatus, Store, StoreError};

/// How often a worker looks for jobs of dead workers to recover (or re-queue).
const RECOVERY_INTERVAL: Duration = Duration::from_secs(2);

/// Poll intervals a long-running worker waits after a failed claim.
const RETRY_PAUSES: u32 = 8;

pub fn run(ctx: &Context, args: &WorkerArgs) -> Result<u8> {
    let shutdown = CancelFlag::install().context("cannot install the signal handlers")?;
    let pool = WorkerPool {
        db: ctx.global.db_path(),
        printer: ctx.printer.clone(),
        workers: args.workers.unwrap_or(1) as usize,
        drain: args.drain,
        poll: Duration::from_millis(args.poll_ms),
        shutdown: shutdown.clone(),
        job_cancel: if args.cancel_on_shutdown {
            shutdown
        } else {
            CancelFlag::new()
        },
    };
    // Open (migrate, recover) once up front, so that a bad database fails before any thread.
    ctx.open_store()?;
    ctx.printer.info(&format!(
        "worker: {} worker{} on {}{}",
        pool.workers,
        if pool.workers == 1 { "" } else { "s" },
        pool.db.display(),
        if pool.drain {
            "; exits when the queue is empty"
        } else {
            "; Ctrl-C stops"
        }
    ));
    let tally = pool.run()?;
    ctx.printer.info(&format!(
        "worker: {} completed, {} failed, {} canceled",
        tally.completed.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
        tally.canceled.load(Ordering::Relaxed),
    ));
    if args.drain && tally.failed.load(Ordering::Relaxed) > 0 {
        return Ok(exit::JOB_FAILED);
    }
    Ok(exit::SUCCESS)
}

/// Jobs finished by this process, by outcome.
#[derive(Default)]
pub(crate) struct Tally {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub canceled: AtomicU64,
}

impl Tally {
    fn count(&self, job: &Job) {
        let slot = match job.status {
            JobStatus::Completed => &self.completed,
            JobStatus::Canceled => &self.canceled,
            _ => &self.failed,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// Worker threads over one job history.
#[derive(Clone)]
pub(crate) struct WorkerPool {
    pub db: PathBuf,
    pub printer: Printer,
    pub workers: usize,
    /// Exit when the queue is empty.
    pub drain: bool,
    pub poll: Duration,
    /// Set on shutdown: stop claiming jobs.
    pub shutdown: CancelFlag,
    /// Set to cancel the running jobs.
    pub job_cancel: CancelFlag,
}

impl WorkerPool {
    /// Runs the workers until they stop (shutdown, or an empty queue with `drain`); the
    /// first worker error is returned once every worker has stopped.
    pub fn run(&self) -> Result<Arc<Tally>> {
        let tally = Arc::new(Tally::default());
        let handles: Vec<_> = (0..self.workers)
            .map(|n| {
                let pool = self.clone();
                let tally = Arc::clone(&tally);
                std::thread::Builder::new()
                    .name(format!("aivideo-worker-{n}"))
                    .spawn(move || pool.work(n, &tally))
            })
            .collect::<std::io::Result<_>>()
            .context("cannot start the worker threads")?;
        let mut told = false;
        loop {
            let finished = handles.iter().all(|h| h.is_finished());
            if self.shutdown.is_canceled() && !told {
                told = true;
                let what = if self.job_cancel.is_canceled() {
                    "canceling the running jobs"
                } else {
                    "letting the running jobs finish"
                };
                self.printer.info(&format!(
                    "worker: stopping, {what}; queued jobs stay queued (Ctrl-C again stops at once)"
                ));
            }
            if finished {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut first_error = None;
        for h in handles {
            let result = h
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker thread panicked")));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(tally),
        }
    }

    /// One worker: claims jobs one at a time and runs them with the model it keeps loaded.
    fn work(&self, n: usize, tally: &Tally) -> Result<()> {
        let mut store = Store::open(&self.db).context("cannot open the job history")?;
        let mut loaded: Option<Loaded> = None;
        let mut last_recovery = Instant::now();
        while !self.shutdown.is_canceled() {
            if last_recovery.elapsed() >= RECOVERY_INTERVAL {
                if let Err(e) = store.recover_interrupted() {
                    self.printer
                        .warn(&format!("worker {n}: cannot recover interrupted jobs: {e}"));
                }
                last_recovery = Instant::now();
            }
            let (job, spec) = match store.claim_next() {
                Ok(Some(claimed)) => claimed,
                Ok(None) if self.drain => break,
                Ok(None) => {
                    self.idle();
                    continue;
                }
                // The job is recorded as failed; go on with the next.
                Err(e @ StoreError::BadSpec { .. }) => {
                    self.printer.warn(&format!("worker {n}: {e}"));
                    continue;
                }
                // A draining worker reports it; a long-running one says so and tries again
                // (the history may be locked or its disk full for a while).
                Err(e) if self.drain => {
                    return Err(anyhow::Error::new(e).context("cannot claim a job"));
                }
                Err(e) => {
                    self.printer
                        .warn(&format!("worker {n}: cannot claim a job (retrying): {e}"));
                    for _ in 0..RETRY_PAUSES {
                        self.idle();
                    }
                    continue;
                }
            };
            self.printer
                .debug(&format!("worker {n}: running {}", job.video_id));
            let done = match ensure_loaded(&mut loaded, &spec) {
                Ok(model) => {
                    let runner = Runner {
                        store: &store,
                        model: model.model.as_ref(),
                        hub: model.hub.as_ref(),
                        printer: &self.printer,
                        cancel: &self.job_cancel,
                        foreground: false,
                    };
                    runner.run(&job.video_id, &spec, job.metadata)
                }
                Err(err) => {
                    let message = CliError::from_anyhow(&err).full_message();
                    store
                        .mark_failed(
                            &job.video_id,
                            ErrorCode::AiVideoError.as_str(),
                            &message,
                            None,
                        )
                        .map_err(anyhow::Error::from)
                }
            };
            match done {
                Ok(job) => {
                    tally.count(&job);
                    report(&self.printer, &job, true)?;
                }
                // The history could not record the outcome: the job shows as interrupted
                // once this process ends; other jobs may still work.
                Err(e) => {
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    self.printer.warn(&format!(
                        "worker {n}: {}",
                        CliError::from_anyhow(&e).full_message()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits one poll interval, waking early on shutdown.
    fn idle(&self) {
        let until = Instant::now() + self.poll;
        while Instant::now() < until && !self.shutdown.is_canceled() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }
}

/// A worker's loaded model and what it was loaded for.
struct Loaded {
    key: (Option<String>, DeviceChoice, Precision),
    model: Box<dyn VideoModel>,
    hub: Option<Provenance>,
}

/// The model `spec` names: the one already loaded when it matches, else loaded now (replacing
/// the previous one, so a worker holds one model at a time).
fn ensure_loaded<'a>(loaded: &'a mut Option<Loaded>, spec: &JobSpec) -> Result<&'a Loaded> {
    let key = (spec.model.clone(), spec.device, spec.precision);
    if loaded.as_ref().is_none_or(|l| l.key != key) {
        *loaded = None;
        let source =
            ModelSource::from_arg(spec.model.as_deref()).context("cannot load the model")?;
        let manifest = inspect(&source).context("cannot load the model")?;
        let model = load(&manifest, spec.device, spec.precision.dtype())
            .context("cannot load the model")?;
        *loaded = Some(Loaded {
            key,
            model,
            hub: manifest.hub.clone(),
        });
    }
    Ok(loaded.as_ref().expect("loaded above"))
}
