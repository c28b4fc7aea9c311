//! Euler sampler for flow matching, as diffusers' `FlowMatchEulerDiscreteScheduler` with a
//! static `shift`: `x <- x + (sigma_next - sigma) * v` with the model's velocity `v`.
//!
//! The schedule reproduces a diffusers quirk: the end points of the timestep `linspace` come
//! from the already shifted training sigmas, and `set_timesteps` applies the shift again.

use super::{UnsupportedOption, check_step, linspace, scale, stretch_to_terminal, to_f32};
use candle_core::Tensor;
use serde::Deserialize;

/// The fields of diffusers' `FlowMatchEulerDiscreteScheduler` config that matter here.
/// `base_shift`, `max_shift`, `base_image_seq_len`, `max_image_seq_len` and `time_shift_type`
/// only act with `use_dynamic_shifting`, which is rejected, and are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FlowMatchEulerConfig {
    pub num_train_timesteps: usize,
    pub shift: f64,
    pub use_dynamic_shifting: bool,
    pub invert_sigmas: bool,
    pub shift_terminal: Option<f64>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub stochastic_sampling: bool,
}

impl Default for FlowMatchEulerConfig {
    /// diffusers' defaults.
    fn default() -> Self {
        FlowMatchEulerConfig {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            stochastic_sampling: false,
        }
    }
}

#[derive(Debug)]
pub struct FlowMatchEulerDiscreteScheduler {
    config: FlowMatchEulerConfig,
    /// The largest and smallest shifted training sigmas (f32 values, as diffusers keeps them).
    sigma_max: f32,
    sigma_min: f32,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    step_index: usize,
}

impl FlowMatchEulerDiscreteScheduler {
    /// Checks `config` and builds the scheduler; call `set_timesteps` before stepping.
    pub fn new(config: FlowMatchEulerConfig) -> Result<Self, UnsupportedOption> {
        validate(&config)?;
        // diffusers' constructor: training sigmas t / N for t = N..1, shifted, in f32 torch
        // arithmetic (the Python scalars rounded to f32).
        let train = config.num_train_timesteps as f32;
        let shift = config.shift as f32;
        let shift_minus_one = (config.shift - 1.0) as f32;
        let shifted = |s: f32| shift * s / (1.0 + shift_minus_one * s);
        Ok(FlowMatchEulerDiscreteScheduler {
            // N / N is exactly 1.
            sigma_max: shifted(1.0),
            sigma_min: shifted(1.0 / train),
            config,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            step_index: 0,
        })
    }

    pub fn config(&self) -> &FlowMatchEulerConfig {
        &self.config
    }
}

fn validate(c: &FlowMatchEulerConfig) -> Result<(), UnsupportedOption> {
    if c.use_dynamic_shifting {
        return Err(UnsupportedOption::new(
            "use_dynamic_shifting",
            true,
            "dynamic shifting needs a per-call `mu`, which is not implemented; use a static shift",
        ));
    }
    for (field, on, reason) in [
        (
            "invert_sigmas",
            c.invert_sigmas,
            "inverted sigmas are not implemented",
        ),
        (
            "use_karras_sigmas",
            c.use_karras_sigmas,
            "only shifted linear sigmas are implemented",
        ),
        (
            "use_exponential_sigmas",
            c.use_exponential_sigmas,
            "only shifted linear sigmas are implemented",
        ),
        (
            "use_beta_sigmas",
            c.use_beta_sigmas,
            "only shifted linear sigmas are implemented",
        ),
        (
            "stochastic_sampling",
            c.stochastic_sampling,
            "only the deterministic Euler step is implemented",
        ),
    ] {
        if on {
            return Err(UnsupportedOption::new(field, on, reason));
        }
    }
    // The constructor computes the training sigmas in f32, so the shift must be a positive
    // f32 (a shift that rounds to 0 or infinity makes them 0/0 or inf/inf).
    let shift32 = c.shift as f32;
    if !(shift32.is_normal() && shift32 > 0.0) {
        return Err(UnsupportedOption::new(
            "shift",
            c.shift,
            "the shift must be positive and within f32's normal range",
        ));
    }
    super::check_shift_terminal(c.shift_terminal)?;
    if c.num_train_timesteps == 0 {
        return Err(UnsupportedOption::new(
            "num_train_timesteps",
            0,
            "must be at least 1",
        ));
    }
    Ok(())
}

impl super::Scheduler for FlowMatchEulerDiscreteScheduler {
    fn set_timesteps(&mut self, steps: usize) {
        let c = &self.config;
        let train = c.num_train_timesteps as f64;
        let ends = (self.sigma_max as f64 * train, self.sigma_min as f64 * train);
        let mut sigmas: Vec<f64> = linspace(ends.0, ends.1, steps)
            .into_iter()
            .map(|t| t / train)
            .collect();
        let shift = c.shift;
        for s in sigmas.iter_mut() {
            *s = shift * *s / (1.0 + (shift - 1.0) * *s);
        }
        if let Some(terminal) = c.shift_terminal.filter(|&t| t != 0.0) {
            stretch_to_terminal(&mut sigmas, terminal);
        }
        let sigmas: Vec<f32> = sigmas.iter().map(|&s| s as f32).collect();
        let train_f32 = c.num_train_timesteps as f32;
        self.timesteps = sigmas.iter().map(|&s| (s * train_f32) as f64).collect();
        self.sigmas = sigmas;
        self.sigmas.push(0.0);
        self.step_index = 0;
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Returns the new sample in `model_output`'s dtype, as diffusers does (the arithmetic is
    /// f32).
    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor> {
        check_step("FlowMatchEuler", &self.timesteps, self.step_index, timestep)?;
        let i = self.step_index;
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        let prev = (to_f32(sample)? + scale(&to_f32(model_output)?, dt)?)?;
        self.step_index += 1;
        prev.to_dtype(model_output.dtype())
    }
}

#[cfg(test)]
#[path = "flow_match_euler_tests.rs"]
mod tests;
