//! The one validation module for generation requests: raw flag values + a model's limits in,
//! a [`ValidatedRequest`] or a [`ValidationError`] naming the field, the rule and a fix out.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::models::{Bound, GenerationParams, Limits, Quality};

/// Longest prompt (and negative prompt) accepted, in characters after trimming.
pub const MAX_PROMPT_CHARS: usize = 1000;
/// Step counts allowed by the product whatever the model declares.
pub const MIN_STEPS: i64 = 1;
pub const MAX_STEPS: i64 = 100;
/// Largest seed: seeds are 32-bit.
pub const MAX_SEED: i64 = u32::MAX as i64;
/// Allowed aspect ratio (width / height), inclusive.
pub const MIN_ASPECT: f64 = 0.5;
pub const MAX_ASPECT: f64 = 2.0;

/// A request exactly as it comes from flags (or a prompts file): every field optional, numbers
/// signed and wide so that out-of-range values reach validation and get a precise message.
/// As JSON (the HTTP API's body) it is an object of these fields, each optional; other
/// fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    pub prompt: Option<String>,
    pub negative_prompt: Option<String>,
    /// `low`, `medium` or `high` (any case).
    pub quality: Option<String>,
    pub steps: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub seed: Option<i64>,
    pub frames: Option<i64>,
    pub fps: Option<i64>,
    pub guidance: Option<f64>,
}

/// A request that passed every rule, with all defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidatedRequest {
    pub quality: Quality,
    pub params: GenerationParams,
    /// True when no seed was given and one was drawn at random (it is in `params.seed`).
    pub seed_was_random: bool,
}

impl ValidatedRequest {
    /// The validated request as job metadata (the generate command adds model, device, timings).
    pub fn to_metadata(&self) -> Value {
        let p = &self.params;
        json!({
            "prompt": p.prompt,
            "negative_prompt": p.negative_prompt,
            "quality": self.quality,
            "num_steps": p.steps,
            "guidance": p.guidance,
            "seed": p.seed,
            "seed_was_random": self.seed_was_random,
            "width": p.width,
            "height": p.height,
            "frames": p.frames,
            "fps": p.fps,
        })
    }
}

/// Why a request was rejected: which field, which rule, how to fix it, and the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The flag name without dashes (`steps`, `width`, ...), `prompt`, or `size` for the aspect ratio.
    pub field: &'static str,
    pub rule: String,
    pub fix: String,
    /// The rejected value as the user wrote it (for prompts: their length).
    pub value: Option<String>,
}

impl ValidationError {
    fn new(
        field: &'static str,
        value: Option<String>,
        rule: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ValidationError {
            field,
            rule: rule.into(),
            fix: fix.into(),
            value,
        }
    }

    /// Whether a rule across fields was broken (the quality preset's step range, the
    /// aspect ratio) rather than a field's own rule; the HTTP API answers 400 for these
    /// and 422 for the others, as the original service did.
    pub fn is_cross_field(&self) -> bool {
        match self.field {
            "size" => true,
            "steps" => self
                .value
                .as_deref()
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| (MIN_STEPS..=MAX_STEPS).contains(&v)),
            _ => false,
        }
    }

    /// The `details` object of the JSON error.
    pub fn details(&self) -> Value {
        json!({
            "field": self.field,
            "rule": self.rule,
            "fix": self.fix,
            "value": self.value,
        })
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.field, &self.value) {
            ("prompt", Some(v)) => write!(f, "invalid prompt ({v})")?,
            ("prompt", None) => write!(f, "invalid prompt")?,
            ("size", Some(v)) => write!(f, "invalid size {v}")?,
            (field, Some(v)) => write!(f, "invalid --{field} {v}")?,
            (field, None) => write!(f, "invalid --{field}")?,
        }
        write!(f, ": {}; {}", self.rule, self.fix)
    }
}

/// Validates `raw` against the product rules and the model's `limits`.
pub fn validate(raw: &RawRequest, limits: &Limits) -> Result<ValidatedRequest, ValidationError> {
    let prompt = validate_prompt(raw.prompt.as_deref())?;
    let quality = validate_quality(raw.quality.as_deref())?;
    let steps = validate_steps(raw.steps, quality, limits.preset(quality).steps)?;
    let width = validate_size("width", raw.width, limits.width, limits.size_multiple)?;
    let height = validate_size("height", raw.height, limits.height, limits.size_multiple)?;
    validate_aspect(width, height, limits)?;
    let (seed, seed_was_random) = match raw.seed {
        Some(s) if (0..=MAX_SEED).contains(&s) => (s as u64, false),
        Some(s) => {
            return Err(ValidationError::new(
                "seed",
                Some(s.to_string()),
                format!("seed must be between 0 and {MAX_SEED} (2^32 - 1)"),
                "use a seed in that range, or drop --seed for a random one (it is recorded)",
            ));
        }
        None => (random_seed(), true),
    };
    let frames = validate_frames(raw.frames, limits.frames, limits.frame_step)?;
    let fps = validate_count("fps", raw.fps, limits.fps)?;
    let guidance = validate_guidance(raw.guidance, limits.guidance)?;
    let negative_prompt = validate_negative_prompt(raw.negative_prompt.as_deref())?;
    Ok(ValidatedRequest {
        quality,
        params: GenerationParams {
            prompt,
            negative_prompt,
            steps,
            guidance,
            seed,
            width,
            height,
            frames,
            fps,
        },
        seed_was_random,
    })
}

fn validate_prompt(prompt: Option<&str>) -> Result<String, ValidationError> {
    let Some(prompt) = prompt else {
        return Err(ValidationError::new(
            "prompt",
            None,
            "a prompt is required",
            "pass the prompt as the first argument, e.g. `aivideo generate \"a lighthouse at dusk\"`",
        ));
    };
    let trimmed = prompt.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(ValidationError::new(
            "prompt",
            Some("empty".into()),
            "the prompt is empty after removing surrounding whitespace",
            "describe the video in 1 to 1000 characters",
        ));
    }
    check_control_chars("prompt", trimmed)?;
    if chars > MAX_PROMPT_CHARS {
        return Err(ValidationError::new(
            "prompt",
            Some(format!("{chars} characters")),
            format!("a prompt may have at most {MAX_PROMPT_CHARS} characters"),
            format!(
                "shorten the prompt by {} characters",
                chars - MAX_PROMPT_CHARS
            ),
        ));
    }
    Ok(trimmed.to_string())
}

/// Control characters other than tab and newline (a NUL cuts C strings such as the MP4's
/// title tag short; escape sequences would reach terminals) are refused.
fn check_control_chars(field: &'static str, text: &str) -> Result<(), ValidationError> {
    let Some((index, c)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && *c != '\t' && *c != '\n')
    else {
        return Ok(());
    };
    Err(ValidationError::new(
        field,
        Some(format!("U+{:04X} at character {}", c as u32, index + 1)),
        format!("the {field} contains a control character"),
        "remove it; only tabs and newlines are allowed besides printable text",
    ))
}

fn validate_negative_prompt(negative: Option<&str>) -> Result<Option<String>, ValidationError> {
    let Some(trimmed) = negative.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    check_control_chars("negative-prompt", trimmed)?;
    let chars = trimmed.chars().count();
    if chars > MAX_PROMPT_CHARS {
        return Err(ValidationError::new(
            "negative-prompt",
            Some(format!("({chars} characters)")),
            format!("a negative prompt may have at most {MAX_PROMPT_CHARS} characters"),
            format!(
                "shorten the negative prompt by {} characters",
                chars - MAX_PROMPT_CHARS
            ),
        ));
    }
    Ok(Some(trimmed.to_string()))
}

fn validate_quality(quality: Option<&str>) -> Result<Quality, ValidationError> {
    match quality {
        None => Ok(Quality::Medium),
        Some(q) => q.trim().parse::<Quality>().map_err(|_| {
            ValidationError::new(
                "quality",
                Some(q.to_string()),
                "quality must be one of low, medium, high",
                "use --quality low, --quality medium or --quality high, or drop --quality for medium",
            )
        }),
    }
}

fn validate_steps(
    steps: Option<i64>,
    quality: Quality,
    preset: Bound<u32>,
) -> Result<u32, ValidationError> {
    let lo = MIN_STEPS.max(i64::from(preset.min));
    let hi = MAX_STEPS.min(i64::from(preset.max));
    let Some(steps) = steps else {
        let product = Bound {
            min: lo,
            max: hi,
            default: i64::from(preset.default),
        };
        return model_default("steps", product).map(|_| preset.default);
    };
    let drop = format!(
        "or drop --steps to use the preset's default ({})",
        preset.default
    );
    let err = |rule: String, fix: String| {
        Err(ValidationError::new(
            "steps",
            Some(steps.to_string()),
            rule,
            fix,
        ))
    };
    if !(MIN_STEPS..=MAX_STEPS).contains(&steps) {
        return err(
            format!("steps must be between {MIN_STEPS} and {MAX_STEPS}"),
            format!("use --steps between {lo} and {hi} for {quality} quality, {drop}"),
        );
    }
    if steps < lo {
        return err(
            format!("{quality} quality needs at least {lo} steps"),
            format!("use --steps {lo} or more, {drop}"),
        );
    }
    if steps > hi {
        return err(
            format!("{quality} quality allows at most {hi} steps"),
            format!("use --steps {hi} or fewer, or a higher --quality, {drop}"),
        );
    }
    Ok(steps as u32)
}

fn validate_size(
    field: &'static str,
    value: Option<i64>,
    bound: Bound<u32>,
    multiple: u32,
) -> Result<u32, ValidationError> {
    let m = i64::from(multiple.max(1));
    let v = match value {
        Some(v) => v,
        None if i64::from(bound.default) % m == 0 => return model_default(field, bound),
        None => {
            return Err(inconsistent_default(
                field,
                bound,
                format!("not a multiple of {m}"),
            ));
        }
    };
    let (min, max) = (i64::from(bound.min), i64::from(bound.max));
    if !(min..=max).contains(&v) {
        return Err(ValidationError::new(
            field,
            Some(v.to_string()),
            format!("{field} must be between {min} and {max} pixels"),
            format!(
                "use --{field} between {min} and {max}, or drop --{field} to use the default ({})",
                bound.default
            ),
        ));
    }
    if v % m != 0 {
        let below = (v / m) * m;
        let above = below + m;
        let choices: Vec<String> = [below, above]
            .into_iter()
            .filter(|c| (min..=max).contains(c))
            .map(|c| format!("--{field} {c}"))
            .collect();
        return Err(ValidationError::new(
            field,
            Some(v.to_string()),
            format!("{field} must be divisible by {m}"),
            use_one_of(&choices),
        ));
    }
    Ok(v as u32)
}

fn validate_aspect(width: u32, height: u32, limits: &Limits) -> Result<(), ValidationError> {
    let (w, h) = (u64::from(width), u64::from(height));
    // width / height in [0.5, 2.0], in integers: 2w >= h and w <= 2h.
    if 2 * w >= h && w <= 2 * h {
        return Ok(());
    }
    let m = u64::from(limits.size_multiple.max(1));
    let round_up = |x: u64| x.div_ceil(m) * m;
    let round_down = |x: u64| (x / m) * m;
    let hmin = round_up(w.div_ceil(2)).max(u64::from(limits.height.min));
    let hmax = round_down(2 * w).min(u64::from(limits.height.max));
    let fix = if hmin <= hmax {
        format!("for --width {width} use a --height between {hmin} and {hmax}")
    } else {
        let wmin = round_up(h.div_ceil(2)).max(u64::from(limits.width.min));
        let wmax = round_down(2 * h).min(u64::from(limits.width.max));
        format!("for --height {height} use a --width between {wmin} and {wmax}")
    };
    Err(ValidationError::new(
        "size",
        Some(format!("{width}x{height}")),
        format!(
            "the aspect ratio width/height must be between {MIN_ASPECT} and {MAX_ASPECT} (it is {:.2})",
            w as f64 / h as f64
        ),
        fix,
    ))
}

fn validate_count(
    field: &'static str,
    value: Option<i64>,
    bound: Bound<u32>,
) -> Result<u32, ValidationError> {
    let Some(v) = value else {
        return model_default(field, bound);
    };
    if (i64::from(bound.min)..=i64::from(bound.max)).contains(&v) {
        return Ok(v as u32);
    }
    let (rule, fix) = if bound.min == bound.max {
        (
            format!("this model supports only {field} {}", bound.min),
            format!("use --{field} {} or drop --{field}", bound.min),
        )
    } else {
        (
            format!("{field} must be between {} and {}", bound.min, bound.max),
            format!(
                "use --{field} between {} and {}, or drop --{field} to use the default ({})",
                bound.min, bound.max, bound.default
            ),
        )
    };
    Err(ValidationError::new(field, Some(v.to_string()), rule, fix))
}

/// Frames within the model's range and of the form `1 + k · step` (Wan's VAE turns each
/// latent frame after the first into `step` frames).
fn validate_frames(
    value: Option<i64>,
    bound: Bound<u32>,
    step: u32,
) -> Result<u32, ValidationError> {
    let frames = validate_count("frames", value, bound)?;
    if frames == 0 {
        return Err(ValidationError::new(
            "frames",
            Some("0".into()),
            "a video needs at least 1 frame",
            "use --frames within the model's range",
        ));
    }
    let step = step.max(1);
    if (frames - 1).is_multiple_of(step) {
        return Ok(frames);
    }
    let below = 1 + (frames - 1) / step * step;
    let above = below + step;
    let choices: Vec<String> = [below, above]
        .into_iter()
        .filter(|c| bound.contains(*c))
        .map(|c| format!("--frames {c}"))
        .collect();
    Err(ValidationError::new(
        "frames",
        Some(frames.to_string()),
        format!(
            "this model makes 1 + {step}·k frames (its video decoder turns every latent frame \
             after the first into {step} frames)"
        ),
        use_one_of(&choices),
    ))
}

fn validate_guidance(value: Option<f64>, bound: Bound<f32>) -> Result<f32, ValidationError> {
    let Some(v) = value else {
        return model_default("guidance", bound);
    };
    let (min, max) = (f64::from(bound.min), f64::from(bound.max));
    if v.is_finite() && v >= min && v <= max {
        return Ok(v as f32);
    }
    Err(ValidationError::new(
        "guidance",
        Some(v.to_string()),
        format!("guidance must be a number between {min} and {max}"),
        format!(
            "use --guidance between {min} and {max}, or drop --guidance to use the default ({})",
            bound.default
        ),
    ))
}

/// The model's default for `field` when it obeys the model's own `bound`: a model whose
/// limits give a default outside their range gets an error naming it, not a request that
/// breaks the rules.
fn model_default<T: PartialOrd + Copy + fmt::Display>(
    field: &'static str,
    bound: Bound<T>,
) -> Result<T, ValidationError> {
    if bound.contains(bound.default) {
        return Ok(bound.default);
    }
    Err(inconsistent_default(
        field,
        bound,
        format!("outside its range {} to {}", bound.min, bound.max),
    ))
}

fn inconsistent_default<T: fmt::Display>(
    field: &'static str,
    bound: Bound<T>,
    why: String,
) -> ValidationError {
    ValidationError::new(
        field,
        Some(bound.default.to_string()),
        format!("the model's default {field} {} is {why}", bound.default),
        format!("pass --{field} explicitly; the model's limits are inconsistent"),
    )
}

/// The fix that lists `choices`, or says there is none.
fn use_one_of(choices: &[String]) -> String {
    if choices.is_empty() {
        "no nearby value fits this model's range".to_string()
    } else {
        format!("use {}", choices.join(" or "))
    }
}

/// A random 32-bit seed from the operating system's generator (via uuid's v4 randomness).
fn random_seed() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits as u64 ^ (bits >> 64) as u64) & u64::from(u32::MAX)
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
