//! `aivideo generate`: validate, record the job, run the model, write the MP4 and thumbnail.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use candle_core::DType;
use serde_json::{Value, json};

mod files;
mod input;

use super::{Context, output_refused};
use crate::cancel::CancelFlag;
use crate::cli::{Device, GenerateArgs, Precision};
use crate::error::{CliError, ErrorCode, exit};
use crate::media::{self, ImageMetadata, VideoMetadata, WriteOptions};
use crate::models::{
    DeviceChoice, ModelSource, Phase, PipelineError, Provenance, Video, VideoModel, inspect, load,
};
use crate::request::ValidatedRequest;
use crate::store::{Job, Store};
use files::{
    Outputs, Owned, abort_hook, check_outputs, db_failure, output_paths, own, remove_outputs,
};
use input::{check_frames_dir, read_prompts, validate_prompt};

pub fn run(ctx: &Context, args: &GenerateArgs) -> Result<u8> {
    let p = &ctx.printer;
    let prompts = read_prompts(args)?;
    if args.output.is_some() && prompts.len() > 1 {
        return Err(CliError::new(
            ErrorCode::UsageError,
            "-o/--output names a single file; with several prompts use --output-dir",
        )
        .into());
    }
    let source = ModelSource::from_arg(args.model.as_deref()).context("cannot load the model")?;
    super::models::ensure_local(ctx, &source)?;
    let manifest = inspect(&source).context("cannot load the model")?;

    // Validate every request before any job exists or any weight is read: a bad line
    // rejects the whole batch.
    let requests = prompts
        .iter()
        .map(|prompt| validate_prompt(args, prompt, &manifest.limits))
        .collect::<Result<Vec<_>>>()?;
    // Refuse what cannot fit in memory, still before any job exists.
    let params = requests.iter().map(|r| &r.params);
    crate::models::memory::check_requests(
        &manifest,
        params,
        device_choice(args.device),
        dtype(args.dtype),
    )
    .map_err(|e| {
        CliError::new(ErrorCode::ValidationError, e.to_string()).with_details(e.details())
    })?;
    check_outputs(args)?;
    if let Some(dir) = &args.save_frames {
        check_frames_dir(dir, requests.len())?;
    }

    let spinner = p.spinner("loading model");
    let model = load(&manifest, device_choice(args.device), dtype(args.dtype))
        .context("cannot load the model")?;
    spinner.finish_and_clear();

    let store = ctx.open_store()?;
    let cancel = CancelFlag::install().context("cannot install the Ctrl-C handler")?;
    let mut code = exit::SUCCESS;
    for req in &requests {
        let unknown = model.unknown_words(&req.params.prompt);
        if !model.understands_any(&req.params.prompt) {
            p.warn(&format!(
                "the model understands none of the words of \"{}\"; the video will not follow the prompt",
                req.params.prompt
            ));
        } else if !unknown.is_empty() {
            p.warn(&format!(
                "the model does not know these words and ignores them: {}",
                unknown.join(", ")
            ));
        }
        let batch = requests.len() > 1;
        let run = Batch {
            ctx,
            args,
            store: &store,
            model: model.as_ref(),
            hub: manifest.hub.as_ref(),
            cancel: &cancel,
            batch,
        };
        let job = run_one(&run, req)?;
        report(ctx, &job, batch)?;
        match job.status {
            crate::store::JobStatus::Canceled => return Ok(exit::CANCELED),
            crate::store::JobStatus::Failed => code = exit::JOB_FAILED,
            _ => {}
        }
    }
    Ok(code)
}

fn device_choice(d: Device) -> DeviceChoice {
    match d {
        Device::Auto => DeviceChoice::Auto,
        Device::Cpu => DeviceChoice::Cpu,
        Device::Cuda => DeviceChoice::Cuda,
        Device::Metal => DeviceChoice::Metal,
    }
}

fn dtype(p: Precision) -> Option<DType> {
    match p {
        Precision::Auto => None,
        Precision::F32 => Some(DType::F32),
        Precision::Bf16 => Some(DType::BF16),
        Precision::F16 => Some(DType::F16),
    }
}

/// What every job of one `generate` shares.
#[derive(Clone, Copy)]
struct Batch<'a> {
    ctx: &'a Context,
    args: &'a GenerateArgs,
    store: &'a Store,
    model: &'a dyn VideoModel,
    /// The Hub repository and commit the model came from.
    hub: Option<&'a Provenance>,
    cancel: &'a CancelFlag,
    /// More than one prompt: frames go to `DIR/<video_id>/`, results are JSON lines.
    batch: bool,
}

/// Runs one accepted request as a job; the job ends `completed`, `failed` or `canceled`.
/// When the job history cannot record the outcome, the job's files are removed (no record
/// would own them), the failure is recorded if the freed space allows, and the database
/// error is returned (exit 4).
fn run_one(run: &Batch, req: &ValidatedRequest) -> Result<Job> {
    let Batch {
        ctx,
        args,
        store,
        model,
        hub,
        cancel,
        batch,
    } = *run;
    let mut meta = req.to_metadata();
    meta["model"] = json!(model.info());
    if let Some(hub) = hub {
        meta["model"]["hub"] = json!(hub);
    }
    meta["device"] = json!(model.info().device);
    let job = store.create_job(&req.params.prompt, &meta)?;
    let id = job.video_id.clone();
    let (video_path, thumb_path) = output_paths(args, &id);
    let frames_dir = args.save_frames.as_ref().map(|dir| {
        let dir = if batch { dir.join(&id) } else { dir.clone() };
        std::path::absolute(&dir).unwrap_or(dir)
    });
    let mut work_dirs: Vec<PathBuf> = video_path
        .parent()
        .map(Path::to_path_buf)
        .into_iter()
        .collect();
    work_dirs.extend(frames_dir.clone());
    let owned: Owned = Arc::default();
    let quiet = ctx.printer.is_json() || ctx.global.quiet;
    cancel.on_abort(abort_hook(
        store.path().to_path_buf(),
        id.clone(),
        Arc::clone(&owned),
        work_dirs.clone(),
        quiet,
    ));
    let started = store
        .set_work_dirs(&id, &work_dirs)
        .and_then(|()| store.mark_processing(&id));
    if let Err(e) = started {
        cancel.clear_abort();
        return Err(db_failure(store, &id, e.into(), &[], &work_dirs));
    }
    let start = Instant::now();
    let mut written: Vec<PathBuf> = Vec::new();
    let files = Outputs {
        video: &video_path,
        thumb: &thumb_path,
        frames_dir: frames_dir.as_deref(),
        owned: &owned,
    };
    let outcome = produce(
        ctx,
        args,
        model,
        req,
        &id,
        cancel,
        &mut meta,
        &mut written,
        &files,
    );
    let total = start.elapsed().as_secs_f64();
    meta["timings"]["total_s"] = json!(total);
    crate::faults::point("before-record");
    let recorded = match outcome {
        Ok(()) => store.mark_completed(&id, &video_path, Some(&thumb_path), total, &meta),
        Err(err) => {
            remove_outputs(&id, &written, &work_dirs);
            written.clear();
            let message = CliError::from_anyhow(&err).full_message();
            if matches!(
                err.downcast_ref::<PipelineError>(),
                Some(PipelineError::Canceled { .. })
            ) {
                store.mark_canceled(&id, &message)
            } else {
                let code = CliError::from_anyhow(&err).code;
                let code = if code == ErrorCode::InternalError {
                    ErrorCode::AiVideoError
                } else {
                    code
                };
                store.mark_failed(&id, code.as_str(), &message, Some(&meta))
            }
        }
    };
    cancel.clear_abort();
    recorded.map_err(|e| db_failure(store, &id, e.into(), &written, &work_dirs))
}

/// Generates the frames and writes the files; records what it wrote in `written`.
#[allow(clippy::too_many_arguments)]
fn produce(
    ctx: &Context,
    args: &GenerateArgs,
    model: &dyn VideoModel,
    req: &ValidatedRequest,
    id: &str,
    cancel: &CancelFlag,
    meta: &mut Value,
    written: &mut Vec<PathBuf>,
    files: &Outputs,
) -> Result<()> {
    if let Some(dir) = files.video.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    }
    let bar = ctx
        .printer
        .progress_bar(req.params.steps as u64, &format!("generating {}", &id[..8]));
    let mut decoding = false;
    let video: Video = model
        .generate(&req.params, &mut |progress| {
            if progress.phase == Phase::Decoding && !decoding {
                decoding = true;
                bar.set_length(progress.total_steps as u64);
                bar.set_message(format!("decoding {}", &id[..8]));
            }
            bar.set_position(progress.step as u64);
            cancel.control()
        })
        .context("video generation failed")?;
    bar.finish_and_clear();
    meta["ignored_words"] = json!(video.ignored_words);
    meta["timings"] = json!(video.timings);

    let t = Instant::now();
    let params_json = serde_json::to_string(&meta_for_files(meta, id))?;
    let info = model.info();
    let mut extra = vec![
        ("video_id".into(), id.to_string()),
        ("seed".into(), req.params.seed.to_string()),
        ("model".into(), info.name.clone()),
        ("steps".into(), req.params.steps.to_string()),
        ("quality".into(), req.quality.to_string()),
    ];
    // Which Hub repository and commit made the video, readable with ffprobe.
    let hub = &meta["model"]["hub"];
    for (tag, field) in [("model_repo", "repo"), ("model_commit", "commit")] {
        if let Some(v) = hub[field].as_str() {
            extra.push((tag.into(), v.to_string()));
        }
    }
    let vmeta = VideoMetadata {
        title: req.params.prompt.clone(),
        comment_json: params_json.clone(),
        extra,
    };
    let canceled = || -> Result<()> {
        if cancel.is_canceled() {
            bail!(PipelineError::Canceled {
                step: req.params.steps,
                total: req.params.steps
            });
        }
        Ok(())
    };
    canceled()?;
    crate::faults::point("before-video");
    // Only -o can name an existing file; generated names are always new.
    let opts = WriteOptions {
        overwrite: args.overwrite && args.output.is_some(),
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
        title: req.params.prompt.clone(),
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
    canceled()
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

fn report(ctx: &Context, job: &Job, batch: bool) -> Result<()> {
    let p = &ctx.printer;
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
