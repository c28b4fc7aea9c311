//! What `generate` runs: the prompt or the prompts file, each validated (naming its line),
//! and the `--save-frames` folder check.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::cli::GenerateArgs;
use crate::error::{CliError, ErrorCode};
use crate::media;
use crate::models::Limits;
use crate::prompts::{self, PromptsError};
use crate::request::{RawRequest, ValidatedRequest, validate};

/// `--save-frames DIR` never replaces a file: with one prompt DIR must hold no frame
/// files yet (each job with several prompts gets its own new `DIR/<video_id>/`).
pub(super) fn check_frames_dir(dir: &Path, jobs: usize) -> Result<()> {
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
pub(super) struct Prompt {
    line: Option<usize>,
    text: String,
}

/// The prompt argument, or the prompts of `--prompts FILE` (see [`crate::prompts`]). A file
/// that cannot be opened, is a folder, or breaks the file rules is a usage error (exit 2).
pub(super) fn read_prompts(args: &GenerateArgs) -> Result<Vec<Prompt>> {
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
pub(super) fn validate_prompt(
    args: &GenerateArgs,
    prompt: &Prompt,
    limits: &Limits,
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
