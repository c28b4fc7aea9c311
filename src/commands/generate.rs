//! `aivideo generate`: validate, record the job, run the model, write the MP4 and thumbnail.

use std::path::Path;

use anyhow::{Context as _, Result};
use candle_core::DType;

mod files;
mod input;

use super::Context;
use super::runner::{Runner, db_failure, report};
use crate::cancel::CancelFlag;
use crate::cli::{Device, GenerateArgs, Precision};
use crate::error::{CliError, ErrorCode, exit};
use crate::models::{DeviceChoice, ModelSource, inspect, load};
use crate::request::ValidatedRequest;
use crate::store::{Job, JobSpec, NewJob, new_job_id};
use files::{check_outputs, output_paths};
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
    if args.queue {
        return enqueue(ctx, args, &requests);
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
        let runner = Runner {
            store: &store,
            model: model.as_ref(),
            hub: manifest.hub.as_ref(),
            printer: p,
            cancel: &cancel,
            foreground: true,
        };
        let job = run_one(&runner, args, req, batch)?;
        report(&ctx.printer, &job, batch)?;
        match job.status {
            crate::store::JobStatus::Canceled => return Ok(exit::CANCELED),
            crate::store::JobStatus::Failed => code = exit::JOB_FAILED,
            _ => {}
        }
    }
    Ok(code)
}

pub(crate) fn device_choice(d: Device) -> DeviceChoice {
    match d {
        Device::Auto => DeviceChoice::Auto,
        Device::Cpu => DeviceChoice::Cpu,
        Device::Cuda => DeviceChoice::Cuda,
        Device::Metal => DeviceChoice::Metal,
    }
}

pub(crate) fn precision(p: Precision) -> crate::models::Precision {
    match p {
        Precision::Auto => crate::models::Precision::Auto,
        Precision::F32 => crate::models::Precision::F32,
        Precision::Bf16 => crate::models::Precision::Bf16,
        Precision::F16 => crate::models::Precision::F16,
    }
}

fn dtype(p: Precision) -> Option<DType> {
    precision(p).dtype()
}

/// The job spec of one accepted request: its output paths (named after `id`) and how the
/// model runs. With several prompts, frames go to `DIR/<video_id>/`.
fn spec_for(args: &GenerateArgs, req: &ValidatedRequest, id: &str, batch: bool) -> JobSpec {
    let (video_path, thumbnail_path) = output_paths(args, id);
    let frames_dir = args.save_frames.as_ref().map(|dir| {
        let dir = if batch { dir.join(id) } else { dir.clone() };
        std::path::absolute(&dir).unwrap_or(dir)
    });
    JobSpec {
        quality: req.quality,
        params: req.params.clone(),
        seed_was_random: req.seed_was_random,
        model: args.model.as_deref().map(absolute_model_arg),
        device: device_choice(args.device),
        precision: precision(args.dtype),
        video_path,
        thumbnail_path,
        // Only -o can name an existing file; generated names are always new.
        overwrite: args.overwrite && args.output.is_some(),
        frames_dir,
    }
}

/// A `--model` value that names an existing folder, made absolute (a queued job may run in
/// another working folder); Hub references and aliases as given.
pub(crate) fn absolute_model_arg(model: &str) -> String {
    let path = Path::new(model);
    if path.is_dir()
        && let Ok(abs) = std::path::absolute(path)
    {
        return abs.to_string_lossy().into_owned();
    }
    model.to_string()
}

/// Records and runs one accepted request as a job; the job ends `completed`, `failed` or
/// `canceled`.
fn run_one(
    runner: &Runner,
    args: &GenerateArgs,
    req: &ValidatedRequest,
    batch: bool,
) -> Result<Job> {
    let store = runner.store;
    let id = new_job_id();
    let spec = spec_for(args, req, &id, batch);
    let job = store.create_job_as(&id, &req.params.prompt, &req.to_metadata())?;
    if let Err(e) = store.mark_processing(&id) {
        return Err(db_failure(store, &id, e.into(), &[], &[]));
    }
    runner.run(&id, &spec, job.metadata)
}

/// `--queue`: records every request as a queued job (all or none) for a worker to run and
/// prints the ids (with `--json`, the job records).
fn enqueue(ctx: &Context, args: &GenerateArgs, requests: &[ValidatedRequest]) -> Result<u8> {
    let batch = requests.len() > 1;
    let jobs: Vec<NewJob> = requests
        .iter()
        .map(|req| {
            let id = new_job_id();
            NewJob {
                spec: spec_for(args, req, &id, batch),
                prompt: req.params.prompt.clone(),
                metadata: req.to_metadata(),
                max_retries: args.retries,
                video_id: id,
            }
        })
        .collect();
    let mut store = ctx.open_store()?;
    let queued = store
        .enqueue(&jobs)
        .context("cannot add the jobs to the queue")?;
    let p = &ctx.printer;
    for job in &queued {
        if !p.is_json() {
            p.result(&format!("{}\n", job.video_id))?;
        } else if batch {
            p.json_line(job)?;
        } else {
            p.json(job)?;
        }
    }
    p.info(&format!(
        "queued {} job{}; `aivideo worker` runs them",
        queued.len(),
        if queued.len() == 1 { "" } else { "s" }
    ));
    Ok(exit::SUCCESS)
}
