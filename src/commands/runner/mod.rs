//! Runs one job that is already `processing` to its end (`completed`, `failed` or
//! `canceled`): generation, the MP4, the thumbnail and optional frames, progress recorded in
//! the job history, cancel requests honoured between steps, and nothing left behind on failure.
//! `generate`, `worker` and `serve` all run jobs through [`Runner`].

pub(crate) mod files;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::output_refused;
use crate::cancel::CancelFlag;
use crate::error::{CliError, ErrorCode};
use crate::media::{self, ImageMetadata, VideoMetadata, WriteOptions};
use crate::models::{Control, Phase, PipelineError, Progress, Provenance, Video, VideoModel};
use crate::output::Printer;
use crate::store::{Job, JobProgress, JobSpec, Store};
pub(crate) use files::db_failure;
use files::{Outputs, Owned, abort_hook, own, remove_outputs};

/// How often a running job writes its progress to the job history (and reads whether
/// someone asked it to stop).
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// What every job run by one process shares.
pub(crate) struct Runner<'a> {
    pub store: &'a Store,
    pub model: &'a dyn VideoModel,
    /// The Hub repository and commit the model came from.
    pub hub: Option<&'a Provenance>,
    pub printer: &'a Printer,
    /// Local stop requests (Ctrl-C for `generate`; shutdown with `--cancel-on-shutdown`
    /// for workers).
    pub cancel: &'a CancelFlag,
    /// Whether to register the second-Ctrl-C abort hook and draw a progress bar: only for a
    /// process running one job at a time in the foreground.
    pub foreground: bool,
}

impl Runner<'_> {
    /// Runs job `id` (already `processing`) as `spec` says, starting from its recorded
    /// `metadata`. When the job history cannot record the outcome, the job's files are
    /// removed (no record would own them), the failure is recorded if the freed space allows,
    /// and the database error is returned.
    pub fn run(&self, id: &str, spec: &JobSpec, metadata: Value) -> Result<Job> {
        let store = self.store;
        let mut meta = metadata;
        meta["model"] = json!(self.model.info());
        if let Some(hub) = self.hub {
            meta["model"]["hub"] = json!(hub);
        }
        meta["device"] = json!(self.model.info().device);
        let mut work_dirs: Vec<PathBuf> = spec
            .video_path
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .collect();
        work_dirs.extend(spec.frames_dir.clone());
        let owned: Owned = Arc::default();
        if self.foreground {
            self.cancel.on_abort(abort_hook(
                store.path().to_path_buf(),
                id.to_string(),
                Arc::clone(&owned),
                work_dirs.clone(),
                self.printer.is_json() || self.printer.is_quiet(),
            ));
        }
        if let Err(e) = store.set_work_dirs(id, &work_dirs) {
            self.cancel.clear_abort();
            return Err(db_failure(store, id, e.into(), &[], &work_dirs));
        }
        let start = Instant::now();
        let mut written: Vec<PathBuf> = Vec::new();
        let files = Outputs {
            video: &spec.video_path,
            thumb: &spec.thumbnail_path,
            frames_dir: spec.frames_dir.as_deref(),
            owned: &owned,
        };
        let outcome = self.produce(id, spec, &mut meta, &mut written, &files);
        // The job's tensors are gone; a worker waiting for the next job holds no more.
        crate::allocator::release_free_memory();
        let total = start.elapsed().as_secs_f64();
        meta["timings"]["total_s"] = json!(total);
        crate::faults::point("before-record");
        let recorded = match outcome {
            Ok(()) => store.mark_completed(
                id,
                &spec.video_path,
                Some(&spec.thumbnail_path),
                total,
                &meta,
            ),
            Err(err) => {
                remove_outputs(id, &written, &work_dirs);
                written.clear();
                let message = CliError::from_anyhow(&err).full_message();
                if matches!(
                    err.downcast_ref::<PipelineError>(),
                    Some(PipelineError::Canceled { .. })
                ) {
                    store.mark_canceled(id, &message)
                } else {
                    let code = match CliError::from_anyhow(&err).code {
                        ErrorCode::InternalError => ErrorCode::AiVideoError,
                        code => code,
                    };
                    store.mark_failed(id, code.as_str(), &message, Some(&meta))
                }
            }
        };
        self.cancel.clear_abort();
        recorded.map_err(|e| db_failure(store, id, e.into(), &written, &work_dirs))
    }

    /// Generates the frames and writes the files; records what it wrote in `written`.
    fn produce(
        &self,
        id: &str,
        spec: &JobSpec,
        meta: &mut Value,
        written: &mut Vec<PathBuf>,
        files: &Outputs,
    ) -> Result<()> {
        let params = &spec.params;
        let mut reporter = Reporter::new(self.store, id, self.cancel);
        if let Some(dir) = files.video.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
        }
        let short = &id[..8.min(id.len())];
        let bar = if self.foreground {
            self.printer
                .progress_bar(params.steps as u64, &format!("generating {short}"))
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut decoding = false;
        let started = reporter.report(Phase::Denoising, 0, params.steps, true);
        let video: Video = if started == Control::Cancel {
            Err(PipelineError::Canceled {
                step: 0,
                total: params.steps,
            })
        } else {
            self.model.generate(params, &mut |progress| {
                if progress.phase == Phase::Decoding && !decoding {
                    decoding = true;
                    bar.set_length(progress.total_steps as u64);
                    bar.set_message(format!("decoding {short}"));
                }
                bar.set_position(progress.step as u64);
                reporter.on_step(progress)
            })
        }
        .context("video generation failed")?;
        bar.finish_and_clear();
        meta["ignored_words"] = json!(video.ignored_words);
        meta["timings"] = json!(video.timings);
        reporter.writing();

        let t = Instant::now();
        let params_json = serde_json::to_string(&meta_for_files(meta, id))?;
        let info = self.model.info();
        let mut extra = vec![
            ("video_id".into(), id.to_string()),
            ("seed".into(), params.seed.to_string()),
            ("model".into(), info.name.clone()),
            ("steps".into(), params.steps.to_string()),
            ("quality".into(), spec.quality.to_string()),
        ];
        // Which Hub repository and commit made the video, readable with ffprobe.
        let hub = &meta["model"]["hub"];
        for (tag, field) in [("model_repo", "repo"), ("model_commit", "commit")] {
            if let Some(v) = hub[field].as_str() {
                extra.push((tag.into(), v.to_string()));
            }
        }
        let vmeta = VideoMetadata {
            title: params.prompt.clone(),
            comment_json: params_json.clone(),
            extra,
        };
        let canceled = |reporter: &mut Reporter| -> Result<()> {
            if reporter.stop_requested() {
                bail!(PipelineError::Canceled {
                    step: params.steps,
                    total: params.steps
                });
            }
            Ok(())
        };
        canceled(&mut reporter)?;
        crate::faults::point("before-video");
        let opts = WriteOptions {
            overwrite: spec.overwrite,
            owner: Some(id.to_string()),
        };
        // A new path is the job's before it is written (a second Ctrl-C mid-write removes it);
        // a replaced file only once it holds the new content.
        let write = |path: &Path, written: &mut Vec<PathBuf>, f: &mut dyn FnMut() -> Result<()>| {
            if !opts.overwrite {
                own(files.owned, path);
            }
            f()?;
            if opts.overwrite {
                own(files.owned, path);
            }
            written.push(path.to_path_buf());
            Ok::<(), anyhow::Error>(())
        };
        let mut summary = None;
        write(files.video, written, &mut || {
            summary = Some(
                media::write_mp4(files.video, &video.frames, video.fps, &vmeta, &opts)
                    .map_err(|e| output_refused(e, "-o"))
                    .context("cannot write the video")?,
            );
            Ok(())
        })?;
        meta["timings"]["encoding_s"] = json!(t.elapsed().as_secs_f64());
        meta["mp4"] = json!(summary);
        crate::faults::point("after-video");

        let t = Instant::now();
        let middle = &video.frames[video.frames.len() / 2];
        let imeta = ImageMetadata {
            title: params.prompt.clone(),
            comment_json: params_json,
        };
        write(files.thumb, written, &mut || {
            media::write_image(files.thumb, middle, &imeta, &opts)
                .map_err(|e| output_refused(e, "the thumbnail"))
                .context("cannot write the thumbnail")
        })?;
        meta["timings"]["thumbnail_s"] = json!(t.elapsed().as_secs_f64());
        if let Some(dir) = files.frames_dir {
            for i in 0..video.frames.len() {
                own(files.owned, &dir.join(media::frame_file_name(i)));
            }
            let frames = media::write_png_frames(dir, &video.frames, &imeta, Some(id))
                .with_context(|| format!("cannot write the frames to {}", dir.display()))?;
            written.extend(frames);
            meta["frames_dir"] = json!(dir);
        }
        canceled(&mut reporter)
    }
}

/// Records a running job's progress in the job history at most every
/// [`PROGRESS_INTERVAL`] (and at every phase change), and turns a recorded cancel request or
/// a local stop into [`Control::Cancel`].
struct Reporter<'a> {
    store: &'a Store,
    id: &'a str,
    cancel: &'a CancelFlag,
    start: Instant,
    last_write: Option<Instant>,
    phase: Option<Phase>,
    requested: bool,
}

impl<'a> Reporter<'a> {
    fn new(store: &'a Store, id: &'a str, cancel: &'a CancelFlag) -> Reporter<'a> {
        Reporter {
            store,
            id,
            cancel,
            start: Instant::now(),
            last_write: None,
            phase: None,
            requested: false,
        }
    }

    fn on_step(&mut self, p: Progress) -> Control {
        if p.phase == Phase::Denoising && p.step == 1 {
            crate::faults::point("after-first-step");
        }
        let force = self.phase != Some(p.phase) || p.step >= p.total_steps;
        self.report(p.phase, p.step, p.total_steps, force)
    }

    fn report(&mut self, phase: Phase, step: u32, total: u32, force: bool) -> Control {
        let name = match phase {
            Phase::Denoising => "denoising",
            Phase::Decoding => "decoding",
        };
        self.phase = Some(phase);
        self.write(name, step, total, force);
        if self.stop_requested() {
            Control::Cancel
        } else {
            Control::Continue
        }
    }

    /// The files are being written (one record, whatever the interval).
    fn writing(&mut self) {
        self.write("writing", 0, 1, true);
    }

    fn write(&mut self, phase: &str, step: u32, total: u32, force: bool) {
        let due = self
            .last_write
            .is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL);
        if !(force || due) {
            return;
        }
        let elapsed = self.start.elapsed().as_secs_f64();
        let eta_s = (step > 0 && total >= step && phase != "writing")
            .then(|| elapsed / f64::from(step) * f64::from(total - step));
        let progress = JobProgress {
            phase: phase.to_string(),
            step,
            total,
            elapsed_s: elapsed,
            eta_s,
            updated_at: crate::store::now(),
        };
        // Progress is advisory: a busy or failing history must not stop the generation
        // (the final record reports any real database failure).
        if let Ok(requested) = self.store.record_progress(self.id, &progress) {
            self.requested |= requested;
        }
        self.last_write = Some(Instant::now());
    }

    /// A cancel request was recorded (as of the last write), or a local stop was asked.
    fn stop_requested(&mut self) -> bool {
        if !self.requested
            && self
                .last_write
                .is_none_or(|t| t.elapsed() >= PROGRESS_INTERVAL)
        {
            self.requested = self.store.cancel_requested(self.id).unwrap_or(false);
        }
        self.requested || self.cancel.is_canceled()
    }
}

/// The generation parameters embedded in the MP4 and the thumbnail.
fn meta_for_files(meta: &Value, id: &str) -> Value {
    let mut m = meta.clone();
    if let Some(obj) = m.as_object_mut() {
        obj.remove("timings");
        obj.insert("video_id".into(), json!(id));
    }
    m
}

/// Prints a finished job: its record as JSON (one line each when several jobs print), or
/// its outcome and files as text.
pub(crate) fn report(p: &Printer, job: &Job, batch: bool) -> Result<()> {
    if p.is_json() {
        if batch {
            p.json_line(job)?;
        } else {
            p.json(job)?;
        }
        return Ok(());
    }
    let text = match job.status {
        crate::store::JobStatus::Completed => format!(
            "{}  completed in {:.1} s\n  video:     {}\n  thumbnail: {}\n",
            job.video_id,
            job.processing_time.unwrap_or_default(),
            job.video_path.as_deref().unwrap_or("-"),
            job.thumbnail_path.as_deref().unwrap_or("-"),
        ),
        _ => format!(
            "{}  {}: {}\n",
            job.video_id,
            job.status.as_str(),
            job.error_message.as_deref().unwrap_or("")
        ),
    };
    p.result(&text)?;
    Ok(())
}
