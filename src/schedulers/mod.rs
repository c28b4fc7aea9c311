//! Diffusion schedulers (the update rule of the denoising loop) and their configs, read from a
//! checkpoint's own `scheduler/scheduler_config.json` and checked against what is implemented.
//!
//! Two diffusers schedulers are ported, in flow-matching form only:
//! [`UniPcMultistepScheduler`] (`UniPCMultistepScheduler` with `use_flow_sigmas`) and
//! [`FlowMatchEulerDiscreteScheduler`]. A config that names another class, or sets an option
//! that would change the math and is not implemented, is rejected with a [`SchedulerError`]
//! naming the file, the field and the value.
//!
//! Precision follows diffusers: the schedule is computed in f64 (numpy) and stored as f32
//! sigmas; per-step coefficients are computed in f32 from those sigmas, as torch computes them
//! on 0-dim float32 tensors (log and expm1 correctly rounded, small linear systems solved like
//! LAPACK); tensors are updated in f32 with one rounding per torch operation. Measured against
//! diffusers on CPU this is bit-identical for Euler and for UniPC up to order 2; order 3 differs
//! by a few 1e-7 (LAPACK's 3x3 solve).

pub mod flow_match_euler;
pub mod unipc;

pub use flow_match_euler::{FlowMatchEulerConfig, FlowMatchEulerDiscreteScheduler};
pub use unipc::{UniPcConfig, UniPcMultistepScheduler};

use candle_core::{DType, Tensor};
use std::path::{Path, PathBuf};

/// The denoising update rule of a sampler, driven by the pipeline's loop:
/// `set_timesteps(n)`, then for each `t` in `timesteps()` one model evaluation (two with
/// classifier-free guidance, combined before the call) and one `step(model_output, t, sample)`.
pub trait Scheduler: Send + std::fmt::Debug {
    /// Computes the schedule for `steps` inference steps and resets the multistep state; the
    /// next `step` is step 0.
    fn set_timesteps(&mut self, steps: usize);

    /// The timesteps to give the model, one per step, largest first. UniPC's are whole numbers
    /// (diffusers keeps them as int64); Euler's are the f32 values diffusers holds.
    fn timesteps(&self) -> &[f64];

    /// The noise levels, one per step plus the final one (f32, as diffusers stores them).
    fn sigmas(&self) -> &[f32];

    /// Advances `sample` by one step given the model's prediction at `timestep`, which must be
    /// `timesteps()[i]` for the i-th call since `set_timesteps`.
    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor>;

    /// Scale of the initial noise (`latents = noise * init_noise_sigma`).
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// diffusers' `scheduler.order`: model evaluations per step in its loop bookkeeping.
    fn order(&self) -> usize {
        1
    }
}

/// Why a scheduler config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot read scheduler config {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid scheduler config {}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: no `_class_name` string naming the scheduler class", path.display())]
    MissingClass { path: PathBuf },
    #[error(
        "{}: `_class_name` = {class:?} is not a supported scheduler \
         (supported: UniPCMultistepScheduler, FlowMatchEulerDiscreteScheduler)",
        path.display()
    )]
    UnknownClass { path: PathBuf, class: String },
    #[error("{}: {source}", path.display())]
    Unsupported {
        path: PathBuf,
        source: UnsupportedOption,
    },
}

/// A config field whose value is valid for diffusers but not implemented (or not meaningful)
/// here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}` = {value} is not supported: {reason}")]
pub struct UnsupportedOption {
    pub field: &'static str,
    /// The value as it appears in JSON.
    pub value: String,
    pub reason: &'static str,
}

impl UnsupportedOption {
    pub(crate) fn new(
        field: &'static str,
        value: impl Into<serde_json::Value>,
        reason: &'static str,
    ) -> Self {
        UnsupportedOption {
            field,
            value: value.into().to_string(),
            reason,
        }
    }
}

/// Reads `scheduler_config.json` and builds the scheduler its `_class_name` names.
pub fn load_scheduler(path: &Path) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let text = std::fs::read_to_string(path).map_err(|source| SchedulerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    scheduler_from_json(&text, path)
}

/// Builds the scheduler described by the JSON text of a `scheduler_config.json`; `origin` is
/// only used in error messages.
pub fn scheduler_from_json(
    json: &str,
    origin: &Path,
) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let json_err = |source| SchedulerError::Json {
        path: origin.to_path_buf(),
        source,
    };
    let unsupported = |source| SchedulerError::Unsupported {
        path: origin.to_path_buf(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(json).map_err(json_err)?;
    let class = value
        .get("_class_name")
        .and_then(|c| c.as_str())
        .ok_or_else(|| SchedulerError::MissingClass {
            path: origin.to_path_buf(),
        })?
        .to_string();
    match class.as_str() {
        "UniPCMultistepScheduler" => {
            let config: UniPcConfig = serde_json::from_value(value).map_err(json_err)?;
            let scheduler = UniPcMultistepScheduler::new(config).map_err(unsupported)?;
            Ok(Box::new(scheduler))
        }
        "FlowMatchEulerDiscreteScheduler" => {
            let config: FlowMatchEulerConfig = serde_json::from_value(value).map_err(json_err)?;
            let scheduler = FlowMatchEulerDiscreteScheduler::new(config).map_err(unsupported)?;
            Ok(Box::new(scheduler))
        }
        _ => Err(SchedulerError::UnknownClass {
            path: origin.to_path_buf(),
            class,
        }),
    }
}

/// `shift_terminal`, when set and non-zero, is the last sigma of the stretched schedule: a
/// noise level strictly between 0 and 1.
pub(crate) fn check_shift_terminal(terminal: Option<f64>) -> Result<(), UnsupportedOption> {
    match terminal {
        Some(t) if t != 0.0 && !(t > 0.0 && t < 1.0) => Err(UnsupportedOption::new(
            "shift_terminal",
            t,
            "the terminal sigma must be between 0 and 1 (exclusive), or 0 / null for none",
        )),
        _ => Ok(()),
    }
}

/// `np.linspace(start, stop, num)` (endpoint included), rounding as numpy does:
/// `i * step + start`, with the last value set to `stop`.
pub(crate) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    values[num - 1] = stop;
    values
}

/// diffusers' `stretch_shift_to_terminal`: rescales `1 - sigma` so that the last sigma
/// becomes `terminal`. A schedule that ends at 1 (one step from pure noise) is left as it
/// is: the formula would divide 0 by 0 there (diffusers returns NaN), and a sigma of 1 is a
/// fixed point of the stretch.
pub(crate) fn stretch_to_terminal(sigmas: &mut [f64], terminal: f64) {
    let Some(&last) = sigmas.last() else {
        return;
    };
    if last >= 1.0 {
        return;
    }
    let scale = (1.0 - last) / (1.0 - terminal);
    for s in sigmas.iter_mut() {
        *s = 1.0 - (1.0 - *s) / scale;
    }
}

/// Checks that the scheduler's `step_index`-th call passes the matching timestep.
pub(crate) fn check_step(
    name: &str,
    timesteps: &[f64],
    step_index: usize,
    timestep: f64,
) -> candle_core::Result<()> {
    match timesteps.get(step_index) {
        None if timesteps.is_empty() => {
            candle_core::bail!("{name}: step called before set_timesteps (or with 0 steps)")
        }
        None => candle_core::bail!(
            "{name}: step called {} times but the schedule has {} steps",
            step_index + 1,
            timesteps.len()
        ),
        Some(&expected) if expected != timestep => candle_core::bail!(
            "{name}: step {step_index} expects timestep {expected}, got {timestep}"
        ),
        Some(_) => Ok(()),
    }
}

/// `t * s` for an f32 scalar `s`, one rounding per element (torch's tensor-times-0-dim-tensor).
pub(crate) fn scale(t: &Tensor, s: f32) -> candle_core::Result<Tensor> {
    t.affine(s as f64, 0.0)
}

/// `t / s` for an f32 scalar `s`, true division per element like torch (not `t * (1/s)`).
pub(crate) fn divide(t: &Tensor, s: f32) -> candle_core::Result<Tensor> {
    let divisor = Tensor::new(s, t.device())?.to_dtype(t.dtype())?;
    t.broadcast_div(&divisor)
}

/// `t` as f32 (the scheduler math is done in f32 whatever the model's dtype).
pub(crate) fn to_f32(t: &Tensor) -> candle_core::Result<Tensor> {
    t.to_dtype(DType::F32)
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
