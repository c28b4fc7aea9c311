//! `aivideo generate`: validate, record the job, run the model, write the MP4 and thumbnail.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use candle_core::DType;
use serde_json::{Value, json};

use super::{Context, check_output_target, output_refused};
use crate::cancel::CancelFlag;
use crate::cli::{Device, GenerateArgs, Precision};
use crate::error::{CliError, ErrorCode, exit};
use crate::media::{self, ImageMetadata, VideoMetadata, WriteOptions};
use crate::models::{
    DeviceChoice, ModelSource, Phase, PipelineError, Video, VideoModel, inspect, load,
};
use crate::prompts::{self, PromptsError};
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
        .map(|prompt| validate_prompt(args, prompt, &manifest.limits))
        .collect::<Result<Vec<_>>>()?;
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

/// A prompt to run, with its line in the prompts file (`None` for the command-line argument).
struct Prompt {
    line: Option<usize>,
    text: String,
}

/// The prompt argument, or the prompts of `--prompts FILE` (see [`crate::prompts`]). A file
/// that cannot be opened, is a folder, or breaks the file rules is a usage error (exit 2).
fn read_prompts(args: &GenerateArgs) -> Result<Vec<Prompt>> {
    let Some(file) = &args.prompts else {
        return Ok(vec![Prompt {
            line: None,
            text: args.prompt.clone().unwrap_or_default(),
        }]);
    };
    let shown = file.display();
    let read = if file.as_os_str() == "-" {
        prompts::read_prompts(std::io::stdin().lock())
    } else {
        if file.is_dir() {
            return Err(CliError::new(
                ErrorCode::UsageError,
                format!("--prompts {shown} is a folder; give a text file with one prompt per line"),
            )
            .into());
        }
        let f = std::fs::File::open(file).map_err(|e| {
            CliError::new(
                ErrorCode::UsageError,
                format!("cannot open the prompts file {shown}: {}", io_reason(&e)),
            )
        })?;
        prompts::read_prompts(f)
    };
    let name = if file.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        shown.to_string()
    };
    match read {
        Ok(lines) => Ok(lines
            .into_iter()
            .map(|p| Prompt {
                line: Some(p.line),
                text: p.text,
            })
            .collect()),
        Err(e @ PromptsError::Io { .. }) => {
            Err(anyhow::Error::new(e).context(format!("cannot read the prompts file {name}")))
        }
        Err(e) => Err(CliError::new(
            ErrorCode::ValidationError,
            format!("the prompts file {name}: {e}"),
        )
        .with_details(json!({ "field": "prompts", "line": e.line(), "file": name }))
        .into()),
    }
}

/// An I/O error's reason without Rust's ` (os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Validates one prompt; a prompts file's line number goes into the message and details.
fn validate_prompt(
    args: &GenerateArgs,
    prompt: &Prompt,
    limits: &crate::models::Limits,
) -> Result<ValidatedRequest> {
    validate(&raw_request(args, &prompt.text), limits).map_err(|e| match prompt.line {
        None => e.into(),
        Some(line) => {
            let mut details = e.details();
            details["line"] = json!(line);
            CliError::new(
                ErrorCode::ValidationError,
                format!("line {line} of the prompts file: {e}"),
            )
            .with_details(details)
            .into()
        }
    })
}

/// Where this job's files go: `-o FILE.mp4`, else `<output-dir>/<video_id>.mp4`; the
/// thumbnail beside the video with the thumbnail format's extension. Absolute.
fn output_paths(args: &GenerateArgs, video_id: &str) -> (PathBuf, PathBuf) {
    let video = match &args.output {
        Some(f) => f.clone(),
        None => args.output_dir.join(format!("{video_id}.mp4")),
    };
    let video = std::path::absolute(&video).unwrap_or(video);
    let thumb = video.with_extension(args.thumbnail_format.extension());
    (video, thumb)
}

/// The output rules, checked before any job exists (see README, "Files"): `-o` names a new
/// file or, with `--overwrite`, an existing regular file, and so does its thumbnail; the two
/// are never the same file; `--output-dir` is a folder or a new path.
fn check_outputs(args: &GenerateArgs) -> Result<()> {
    let Some(out) = &args.output else {
        let dir = &args.output_dir;
        if dir.exists() && !dir.is_dir() {
            return Err(CliError::new(
                ErrorCode::UsageError,
                format!("--output-dir {}: not a folder", dir.display()),
            )
            .into());
        }
        return Ok(());
    };
    check_output_target(out, args.overwrite, "-o")?;
    let (video, thumb) = output_paths(args, "");
    let ext = |p: &Path| p.extension().map(|e| e.to_ascii_lowercase());
    if ext(&video) == ext(&thumb) || media::same_file(&video, &thumb) {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!(
                "-o {}: the video and its thumbnail would be the same file; name the video FILE.mp4, or choose another --thumbnail-format",
                out.display()
            ),
        )
        .into());
    }
    check_output_target(&thumb, args.overwrite, "the thumbnail")
}

/// Files a job creates, shared with the abort hook: removed unless the job completes.
type Owned = Arc<Mutex<Vec<PathBuf>>>;

fn own(owned: &Owned, path: &Path) {
    owned
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(path.to_path_buf());
}

/// What a second Ctrl-C runs before the process exits: records the job `canceled` and
/// removes its files and temporary files. A job that completed meanwhile is left alone.
fn abort_hook(
    db: PathBuf,
    id: String,
    owned: Owned,
    work_dirs: Vec<PathBuf>,
    quiet: bool,
) -> impl FnOnce() + Send + 'static {
    move || {
        let recorded = Store::open(&db).and_then(|s| {
            s.mark_canceled(&id, "canceled: interrupted twice (Ctrl-C); stopped at once")
        });
        if let Err(crate::store::StoreError::InvalidTransition { .. }) = recorded {
            return;
        }
        for f in owned.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = std::fs::remove_file(f);
        }
        for dir in &work_dirs {
            let _ = media::remove_temp_files(dir, &id);
        }
        if !quiet {
            let state = match recorded {
                Ok(_) => "recorded as canceled",
                Err(_) => "could not be recorded (the job history was unavailable)",
            };
            eprintln!("\naivideo: stopped at once; job {id} {state}, its files removed");
        }
    }
}

/// Removes what a job that will not complete wrote: its files and its temporary files.
fn remove_outputs(id: &str, written: &[PathBuf], work_dirs: &[PathBuf]) {
    for f in written {
        let _ = std::fs::remove_file(f);
    }
    for dir in work_dirs {
        let _ = media::remove_temp_files(dir, id);
    }
}

/// Runs one accepted request as a job; the job ends `completed`, `failed` or `canceled`.
/// When the job history cannot record the outcome, the job's files are removed (no record
/// would own them), the failure is recorded if the freed space allows, and the database
/// error is returned (exit 4).
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

/// The job history refused a write for job `id`: remove the job's files, try to record the
/// failure (removing them may have freed the space), and return the error to report.
fn db_failure(
    store: &Store,
    id: &str,
    err: anyhow::Error,
    written: &[PathBuf],
    work_dirs: &[PathBuf],
) -> anyhow::Error {
    remove_outputs(id, written, work_dirs);
    let cause = CliError::from_anyhow(&err).full_message();
    let message = format!("the job history could not record this job: {cause}");
    let noted = store.mark_failed(id, ErrorCode::DatabaseError.as_str(), &message, None);
    let what = if written.is_empty() {
        ""
    } else {
        ", so its files were removed"
    };
    let after = match noted {
        Ok(_) => "; the job is recorded as failed",
        Err(_) => "; the job will show as interrupted",
    };
    err.context(format!(
        "job {id}: the job history could not be written{what}{after}"
    ))
}

/// Where one job writes, and the list shared with the abort hook.
struct Outputs<'a> {
    video: &'a Path,
    thumb: &'a Path,
    frames_dir: Option<&'a Path>,
    owned: &'a Owned,
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
