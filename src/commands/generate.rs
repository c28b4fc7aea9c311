//! `aivideo generate`: validate, record the job, run the model, write the MP4 and thumbnail.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use candle_core::DType;
use serde_json::{Value, json};

use super::Context;
use crate::cancel::CancelFlag;
use crate::cli::{Device, GenerateArgs, Precision};
use crate::error::{CliError, ErrorCode, exit};
use crate::media::{self, ImageMetadata, VideoMetadata};
use crate::models::{
    DeviceChoice, ModelSource, Phase, PipelineError, Video, VideoModel, inspect, load,
};
use crate::request::{RawRequest, ValidatedRequest, validate};
use crate::store::{Job, Store};

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
    let source = ModelSource::from_option(args.model.clone());
    let manifest = inspect(&source).context("cannot load the model")?;

    // Validate every request before any job exists or any weight is read: a bad line
    // rejects the whole batch.
    let requests = prompts
        .iter()
        .map(|prompt| validate(&raw_request(args, prompt), &manifest.limits))
        .collect::<Result<Vec<_>, _>>()?;
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
        if !unknown.is_empty() {
            p.warn(&format!(
                "the model does not know these words and ignores them: {}",
                unknown.join(", ")
            ));
        }
        let batch = requests.len() > 1;
        let job = run_one(ctx, args, &store, model.as_ref(), req, &cancel, batch)?;
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

/// `--save-frames DIR` never replaces a file: with one prompt DIR must hold no frame
/// files yet (each job with several prompts gets its own new `DIR/<video_id>/`).
fn check_frames_dir(dir: &Path, jobs: usize) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!("--save-frames {}: not a folder", dir.display()),
        )
        .into());
    }
    if jobs == 1 && dir.join(media::frame_file_name(0)).exists() {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!(
                "--save-frames {}: the folder already holds frames; choose an empty or new folder",
                dir.display()
            ),
        )
        .into());
    }
    Ok(())
}

fn raw_request(args: &GenerateArgs, prompt: &str) -> RawRequest {
    RawRequest {
        prompt: Some(prompt.to_string()),
        negative_prompt: args.negative_prompt.clone(),
        quality: args.quality.clone(),
        steps: args.steps,
        width: args.width,
        height: args.height,
        seed: args.seed,
        frames: args.frames,
        fps: args.fps,
        guidance: args.guidance,
    }
}

/// The prompt argument, or the lines of `--prompts` (blank lines and `#` comments skipped).
fn read_prompts(args: &GenerateArgs) -> Result<Vec<String>> {
    let Some(file) = &args.prompts else {
        return Ok(vec![args.prompt.clone().unwrap_or_default()]);
    };
    let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file)
            .with_context(|| format!("cannot read prompts from {}", file.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut out = Vec::new();
    for line in reader.lines() {
        let line = line.context("cannot read the prompts file")?;
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') {
            out.push(t.to_string());
        }
    }
    if out.is_empty() {
        return Err(CliError::new(
            ErrorCode::ValidationError,
            "the prompts file has no prompts (blank lines and # comments are skipped)",
        )
        .into());
    }
    Ok(out)
}

/// Where this job's files go: `-o FILE.mp4`, else `<output-dir>/<video_id>.mp4`.
fn output_paths(args: &GenerateArgs, video_id: &str) -> Result<(PathBuf, PathBuf)> {
    let video = match &args.output {
        Some(f) => f.clone(),
        None => args.output_dir.join(format!("{video_id}.mp4")),
    };
    let video = std::path::absolute(&video).unwrap_or(video);
    if let Some(dir) = video.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    }
    let thumb = video.with_extension(args.thumbnail_format.extension());
    Ok((video, thumb))
}

/// Runs one accepted request as a job; the job ends `completed`, `failed` or `canceled`.
fn run_one(
    ctx: &Context,
    args: &GenerateArgs,
    store: &Store,
    model: &dyn VideoModel,
    req: &ValidatedRequest,
    cancel: &CancelFlag,
    batch: bool,
) -> Result<Job> {
    let mut meta = req.to_metadata();
    meta["model"] = json!(model.info());
    meta["device"] = json!(model.info().device);
    let job = store.create_job(&req.params.prompt, &meta)?;
    let id = job.video_id.clone();
    store.mark_processing(&id)?;
    let start = Instant::now();
    let mut written: Vec<PathBuf> = Vec::new();
    let outcome = produce(
        ctx,
        args,
        model,
        req,
        &id,
        cancel,
        &mut meta,
        &mut written,
        batch,
    );
    let total = start.elapsed().as_secs_f64();
    meta["timings"]["total_s"] = json!(total);
    match outcome {
        Ok((video, thumb)) => Ok(store.mark_completed(&id, &video, Some(&thumb), total, &meta)?),
        Err(err) => {
            for f in &written {
                let _ = std::fs::remove_file(f);
            }
            if matches!(
                err.downcast_ref::<PipelineError>(),
                Some(PipelineError::Canceled { .. })
            ) {
                Ok(store.mark_canceled(&id, &format!("{err:#}"))?)
            } else {
                let code = CliError::from_anyhow(&err).code;
                let code = if code == ErrorCode::InternalError {
                    ErrorCode::AiVideoError
                } else {
                    code
                };
                Ok(store.mark_failed(&id, code.as_str(), &format!("{err:#}"), Some(&meta))?)
            }
        }
    }
}

/// Generates the frames and writes both files; records what it wrote in `written`.
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
    batch: bool,
) -> Result<(PathBuf, PathBuf)> {
    let (video_path, thumb_path) = output_paths(args, id)?;
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
    let vmeta = VideoMetadata {
        title: req.params.prompt.clone(),
        comment_json: params_json.clone(),
        extra: vec![
            ("video_id".into(), id.to_string()),
            ("seed".into(), req.params.seed.to_string()),
            ("model".into(), info.name.clone()),
            ("steps".into(), req.params.steps.to_string()),
            ("quality".into(), req.quality.to_string()),
        ],
    };
    if cancel.is_canceled() {
        return Err(PipelineError::Canceled {
            step: req.params.steps,
            total: req.params.steps,
        }
        .into());
    }
    let summary = media::write_mp4(&video_path, &video.frames, video.fps, &vmeta)
        .with_context(|| format!("cannot write {}", video_path.display()))?;
    written.push(video_path.clone());
    meta["timings"]["encoding_s"] = json!(t.elapsed().as_secs_f64());
    meta["mp4"] = json!(summary);

    let t = Instant::now();
    let middle = &video.frames[video.frames.len() / 2];
    let imeta = ImageMetadata {
        title: req.params.prompt.clone(),
        comment_json: params_json,
    };
    media::write_image(&thumb_path, middle, &imeta)
        .with_context(|| format!("cannot write {}", thumb_path.display()))?;
    written.push(thumb_path.clone());
    meta["timings"]["thumbnail_s"] = json!(t.elapsed().as_secs_f64());
    if let Some(dir) = &args.save_frames {
        let dir = if batch { dir.join(id) } else { dir.clone() };
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let frames = media::write_png_frames(&dir, &video.frames, &imeta)
            .with_context(|| format!("cannot write the frames to {}", dir.display()))?;
        written.extend(frames);
        meta["frames_dir"] = json!(dir);
    }
    if cancel.is_canceled() {
        bail!(PipelineError::Canceled {
            step: req.params.steps,
            total: req.params.steps
        });
    }
    Ok((video_path, thumb_path))
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
