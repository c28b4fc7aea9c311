//! UniPC multistep sampler (predictor UniP + corrector UniC, B(h) variants) in the flow-matching
//! form of diffusers' `UniPCMultistepScheduler` (`use_flow_sigmas`, `flow_prediction`,
//! `predict_x0`), the sampler Wan2.1 ships with.
//!
//! Per step (one model evaluation): the model's velocity `v` gives the data estimate
//! `x0 = x - sigma v`; unless disabled for this step, UniC corrects the sample the previous
//! step produced using this new estimate; UniP then predicts the next sample from the last
//! `order` estimates. With `lower_order_final` the last step is first order, and with a final
//! sigma of zero it returns `x0` itself.

use super::{UnsupportedOption, check_step, divide, linspace, scale, stretch_to_terminal, to_f32};
use candle_core::Tensor;
use serde::Deserialize;

/// The fields of diffusers' `UniPCMultistepScheduler` config that matter here. Fields that only
/// act outside flow mode (betas, `steps_offset`, `sigma_min`/`sigma_max`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UniPcConfig {
    pub num_train_timesteps: usize,
    pub solver_order: usize,
    pub prediction_type: String,
    pub thresholding: bool,
    pub predict_x0: bool,
    pub solver_type: String,
    pub lower_order_final: bool,
    pub disable_corrector: Vec<usize>,
    pub solver_p: Option<serde_json::Value>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub use_flow_sigmas: bool,
    pub flow_shift: f64,
    pub timestep_spacing: String,
    pub final_sigmas_type: String,
    pub use_dynamic_shifting: bool,
    pub shift_terminal: Option<f64>,
}

impl Default for UniPcConfig {
    /// diffusers' defaults (which are not flow mode: a usable config sets
    /// `use_flow_sigmas` and `prediction_type` itself).
    fn default() -> Self {
        UniPcConfig {
            num_train_timesteps: 1000,
            solver_order: 2,
            prediction_type: "epsilon".into(),
            thresholding: false,
            predict_x0: true,
            solver_type: "bh2".into(),
            lower_order_final: true,
            disable_corrector: Vec::new(),
            solver_p: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_flow_sigmas: false,
            flow_shift: 1.0,
            timestep_spacing: "linspace".into(),
            final_sigmas_type: "zero".into(),
            use_dynamic_shifting: false,
            shift_terminal: None,
        }
    }
}

impl UniPcConfig {
    /// The config Wan2.1-T2V-1.3B-Diffusers ships, for tests and defaults.
    pub fn wan() -> Self {
        UniPcConfig {
            prediction_type: "flow_prediction".into(),
            use_flow_sigmas: true,
            flow_shift: 3.0,
            ..UniPcConfig::default()
        }
    }
}

/// B(h) of UniPC: `bh1` is `B(h) = h`, `bh2` is `B(h) = e^h - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SolverType {
    Bh1,
    Bh2,
}

#[derive(Debug)]
pub struct UniPcMultistepScheduler {
    config: UniPcConfig,
    solver_type: SolverType,
    final_sigma_min: bool,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    step_index: usize,
    /// Data estimates of the last `solver_order` steps, newest last.
    model_outputs: Vec<Option<Tensor>>,
    /// The sample the last predictor started from (what the corrector corrects).
    last_sample: Option<Tensor>,
    lower_order_nums: usize,
    this_order: usize,
}

impl UniPcMultistepScheduler {
    /// Checks `config` and builds the scheduler; call `set_timesteps` before stepping.
    pub fn new(config: UniPcConfig) -> Result<Self, UnsupportedOption> {
        let solver_type = validate(&config)?;
        let final_sigma_min = config.final_sigmas_type == "sigma_min";
        Ok(UniPcMultistepScheduler {
            solver_type,
            final_sigma_min,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            step_index: 0,
            model_outputs: vec![None; config.solver_order],
            last_sample: None,
            lower_order_nums: 0,
            this_order: 0,
            config,
        })
    }

    pub fn config(&self) -> &UniPcConfig {
        &self.config
    }

    /// The corrector (UniC): refines `this_sample`, which the previous predictor produced from
    /// `last_sample`, with the data estimate `model_t` made at `this_sample`.
    fn correct(
        &self,
        model_t: &Tensor,
        last_sample: &Tensor,
        this_sample: &Tensor,
        order: usize,
    ) -> candle_core::Result<Tensor> {
        let i = self.step_index;
        let history = self.history(order)?;
        let coefficients = Coefficients::new(
            &self.sigmas,
            i,
            i - 1,
            &(2..=order).map(|k| i - k).collect::<Vec<_>>(),
            self.solver_type,
        );
        let rhos = if order == 1 {
            vec![0.5]
        } else {
            solve(coefficients.r.clone(), coefficients.b.clone())
        };
        let m0 = history[0];
        let base = coefficients.base(last_sample, m0)?;
        let d1_t = (model_t - m0)?;
        let mut update = scale(&d1_t, rhos[order - 1])?;
        if order > 1 {
            let corr = coefficients.combine(&history, &rhos[..order - 1])?;
            update = (corr + update)?;
        }
        let coeff = coefficients.alpha_t * coefficients.b_h;
        let corrected = (base - scale(&update, coeff)?)?;
        corrected.to_dtype(this_sample.dtype())
    }

    /// The predictor (UniP) of the given order, from `sample` at step `step_index`.
    fn predict(&self, sample: &Tensor, order: usize) -> candle_core::Result<Tensor> {
        let i = self.step_index;
        let history = self.history(order)?;
        let coefficients = Coefficients::new(
            &self.sigmas,
            i + 1,
            i,
            &(1..order).map(|k| i - k).collect::<Vec<_>>(),
            self.solver_type,
        );
        let m0 = history[0];
        let base = coefficients.base(sample, m0)?;
        if order == 1 {
            return Ok(base);
        }
        let rhos = if order == 2 {
            vec![0.5]
        } else {
            let n = order - 1;
            let r = coefficients.r[..n]
                .iter()
                .map(|row| row[..n].to_vec())
                .collect();
            solve(r, coefficients.b[..n].to_vec())
        };
        let pred = coefficients.combine(&history, &rhos)?;
        let coeff = coefficients.alpha_t * coefficients.b_h;
        base - scale(&pred, coeff)?
    }

    /// The `order` newest data estimates, newest first.
    fn history(&self, order: usize) -> candle_core::Result<Vec<&Tensor>> {
        (0..order)
            .map(|k| {
                let slot = self.model_outputs.len().checked_sub(k + 1);
                match slot.and_then(|s| self.model_outputs[s].as_ref()) {
                    Some(t) => Ok(t),
                    None => candle_core::bail!("UniPC: missing model output {k} steps back"),
                }
            })
            .collect()
    }
}

/// The f32 scalars of one UniP/UniC update between the noise levels `sigmas[s0]` (start) and
/// `sigmas[t]` (target), with earlier levels `sigmas[si]` for the higher-order terms.
struct Coefficients {
    alpha_t: f32,
    /// `sigma_t / sigma_s0`.
    ratio: f32,
    /// `e^{-h} - 1`.
    h_phi_1: f32,
    b_h: f32,
    /// `r_k` per earlier level, then 1.
    rks: Vec<f32>,
    r: Vec<Vec<f32>>,
    b: Vec<f32>,
}

/// Log-SNR of a flow sigma: `alpha = 1 - sigma`, `lambda = log(alpha) - log(sigma)`.
fn lambda(sigma: f32) -> f32 {
    ln(1.0 - sigma) - ln(sigma)
}

/// `torch.log` on an f32 value: correctly rounded in practice (libm's `logf` is off by one
/// ulp for a few of the arguments met here, torch's kernel is not).
fn ln(x: f32) -> f32 {
    (x as f64).ln() as f32
}

impl Coefficients {
    fn new(sigmas: &[f32], t: usize, s0: usize, earlier: &[usize], solver: SolverType) -> Self {
        let (sigma_t, sigma_s0) = (sigmas[t], sigmas[s0]);
        let alpha_t = 1.0 - sigma_t;
        let lambda_s0 = lambda(sigma_s0);
        let h = lambda(sigma_t) - lambda_s0;
        let mut rks: Vec<f32> = earlier
            .iter()
            .map(|&si| (lambda(sigmas[si]) - lambda_s0) / h)
            .collect();
        rks.push(1.0);
        let order = rks.len();
        let hh = -h;
        let h_phi_1 = expm1(hh);
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let b_h = match solver {
            SolverType::Bh1 => hh,
            SolverType::Bh2 => expm1(hh),
        };
        let mut factorial: u64 = 1;
        let mut r = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            r.push(rks.iter().map(|&rk| power(rk, i - 1)).collect());
            b.push(h_phi_k * factorial as f32 / b_h);
            factorial *= i as u64 + 1;
            h_phi_k = h_phi_k / hh - (1.0 / factorial as f64) as f32;
        }
        Coefficients {
            alpha_t,
            ratio: sigma_t / sigma_s0,
            h_phi_1,
            b_h,
            rks,
            r,
            b,
        }
    }

    /// `sigma_t / sigma_s0 * x - alpha_t * h_phi_1 * m0`.
    fn base(&self, x: &Tensor, m0: &Tensor) -> candle_core::Result<Tensor> {
        scale(x, self.ratio)? - scale(m0, self.alpha_t * self.h_phi_1)?
    }

    /// `sum_k rhos[k] * D1_k` with `D1_k = (m_k - m0) / r_k`, `history` newest first.
    fn combine(&self, history: &[&Tensor], rhos: &[f32]) -> candle_core::Result<Tensor> {
        let m0 = history[0];
        let mut total: Option<Tensor> = None;
        for (k, &rho) in rhos.iter().enumerate() {
            let d1 = divide(&(history[k + 1] - m0)?, self.rks[k])?;
            let term = scale(&d1, rho)?;
            total = Some(match total {
                None => term,
                Some(t) => (t + term)?,
            });
        }
        match total {
            Some(t) => Ok(t),
            None => m0.zeros_like(),
        }
    }
}

/// `torch.expm1` on an f32 value, correctly rounded in practice like `ln`.
fn expm1(x: f32) -> f32 {
    (x as f64).exp_m1() as f32
}

/// `torch.pow(x, n)` for small whole `n` (torch multiplies for 2 and 3).
fn power(x: f32, n: usize) -> f32 {
    match n {
        0 => 1.0,
        1 => x,
        2 => x * x,
        3 => x * x * x,
        _ => x.powi(n as i32),
    }
}

/// Solves the small system `a x = b` by LU with partial pivoting in f32, the way LAPACK's
/// `getrf`/`getrs` under `torch.linalg.solve` does: multipliers and divisions through the
/// pivot's reciprocal, fused multiply-add updates, column-oriented back substitution. This is
/// bit-identical to torch for the 2x2 systems of order-2 UniPC and within rounding otherwise.
fn solve(mut a: Vec<Vec<f32>>, mut b: Vec<f32>) -> Vec<f32> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        let inv = 1.0 / a[col][col];
        let (done, rest) = a.split_at_mut(col + 1);
        let pivot_row = &done[col];
        for (i, target) in rest.iter_mut().enumerate() {
            let l = target[col] * inv;
            for (t, &p) in target[col + 1..].iter_mut().zip(&pivot_row[col + 1..]) {
                *t = (-l).mul_add(p, *t);
            }
            b[col + 1 + i] = (-l).mul_add(b[col], b[col + 1 + i]);
        }
    }
    for k in (0..n).rev() {
        b[k] *= 1.0 / a[k][k];
        for i in 0..k {
            b[i] = (-b[k]).mul_add(a[i][k], b[i]);
        }
    }
    b
}

/// Highest solver order accepted.
pub const MAX_SOLVER_ORDER: usize = 3;

fn validate(c: &UniPcConfig) -> Result<SolverType, UnsupportedOption> {
    if c.prediction_type != "flow_prediction" {
        return Err(UnsupportedOption::new(
            "prediction_type",
            c.prediction_type.as_str(),
            "only the flow-matching form (\"flow_prediction\") is implemented",
        ));
    }
    if !c.use_flow_sigmas {
        return Err(UnsupportedOption::new(
            "use_flow_sigmas",
            c.use_flow_sigmas,
            "only flow sigmas are implemented",
        ));
    }
    for (field, on) in [
        ("use_karras_sigmas", c.use_karras_sigmas),
        ("use_exponential_sigmas", c.use_exponential_sigmas),
        ("use_beta_sigmas", c.use_beta_sigmas),
    ] {
        if on {
            return Err(UnsupportedOption::new(
                field,
                on,
                "only flow sigmas are implemented",
            ));
        }
    }
    if c.use_dynamic_shifting {
        return Err(UnsupportedOption::new(
            "use_dynamic_shifting",
            true,
            "dynamic shifting needs a per-call `mu`, which is not implemented; use flow_shift",
        ));
    }
    if c.thresholding {
        return Err(UnsupportedOption::new(
            "thresholding",
            true,
            "dynamic thresholding is not implemented",
        ));
    }
    if !c.predict_x0 {
        return Err(UnsupportedOption::new(
            "predict_x0",
            false,
            "flow prediction requires the data-prediction (predict_x0) form",
        ));
    }
    if let Some(p) = c.solver_p.as_ref().filter(|p| !p.is_null()) {
        return Err(UnsupportedOption::new(
            "solver_p",
            p.clone(),
            "an external predictor is not implemented",
        ));
    }
    if c.solver_order == 0 {
        return Err(UnsupportedOption::new(
            "solver_order",
            0,
            "the order must be at least 1",
        ));
    }
    if c.solver_order > MAX_SOLVER_ORDER {
        return Err(UnsupportedOption::new(
            "solver_order",
            c.solver_order,
            "orders above 3 are not supported (diffusers recommends 2 for guided sampling, \
             3 for unguided)",
        ));
    }
    super::check_shift_terminal(c.shift_terminal)?;
    if !(c.flow_shift.is_finite() && c.flow_shift > 0.0) {
        return Err(UnsupportedOption::new(
            "flow_shift",
            c.flow_shift,
            "the shift must be positive",
        ));
    }
    if c.num_train_timesteps == 0 {
        return Err(UnsupportedOption::new(
            "num_train_timesteps",
            0,
            "must be at least 1",
        ));
    }
    if !["linspace", "leading", "trailing"].contains(&c.timestep_spacing.as_str()) {
        return Err(UnsupportedOption::new(
            "timestep_spacing",
            c.timestep_spacing.as_str(),
            "must be \"linspace\", \"leading\" or \"trailing\"",
        ));
    }
    match c.final_sigmas_type.as_str() {
        "zero" if !c.lower_order_final && c.solver_order > 1 => {
            return Err(UnsupportedOption::new(
                "lower_order_final",
                false,
                "with final_sigmas_type \"zero\" a higher-order last step divides by zero \
                 (diffusers returns non-finite samples)",
            ));
        }
        "zero" | "sigma_min" => {}
        other => {
            return Err(UnsupportedOption::new(
                "final_sigmas_type",
                other,
                "must be \"zero\" or \"sigma_min\"",
            ));
        }
    }
    match c.solver_type.as_str() {
        "bh1" if c.final_sigmas_type == "zero" => Err(UnsupportedOption::new(
            "solver_type",
            "bh1",
            "with final_sigmas_type \"zero\" the last step multiplies B(h) = -inf by zero \
             (diffusers returns NaN); use \"bh2\" or final_sigmas_type \"sigma_min\"",
        )),
        "bh1" => Ok(SolverType::Bh1),
        // diffusers maps these legacy names to bh2.
        "bh2" | "midpoint" | "heun" | "logrho" => Ok(SolverType::Bh2),
        other => Err(UnsupportedOption::new(
            "solver_type",
            other,
            "must be \"bh1\" or \"bh2\"",
        )),
    }
}

impl super::Scheduler for UniPcMultistepScheduler {
    fn set_timesteps(&mut self, steps: usize) {
        let c = &self.config;
        let train = c.num_train_timesteps as f64;
        let mut sigmas = linspace(1.0, 1.0 / train, steps + 1);
        sigmas.pop();
        let shift = c.flow_shift;
        for s in sigmas.iter_mut() {
            *s = shift * *s / (1.0 + (shift - 1.0) * *s);
        }
        if let Some(terminal) = c.shift_terminal.filter(|&t| t != 0.0) {
            stretch_to_terminal(&mut sigmas, terminal);
        }
        if let Some(first) = sigmas.first_mut()
            && (*first - 1.0).abs() < 1e-6
        {
            *first -= 1e-6;
        }
        // diffusers casts `sigmas * num_train_timesteps` to int64 (truncation).
        self.timesteps = sigmas.iter().map(|s| (s * train) as i64 as f64).collect();
        let last = match (self.final_sigma_min, sigmas.last()) {
            (true, Some(&s)) => s,
            _ => 0.0,
        };
        self.sigmas = sigmas
            .iter()
            .chain(std::iter::once(&last))
            .map(|&s| s as f32)
            .collect();
        self.step_index = 0;
        self.model_outputs = vec![None; c.solver_order];
        self.last_sample = None;
        self.lower_order_nums = 0;
        self.this_order = 0;
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    fn step(
        &mut self,
        model_output: &Tensor,
        timestep: f64,
        sample: &Tensor,
    ) -> candle_core::Result<Tensor> {
        check_step("UniPC", &self.timesteps, self.step_index, timestep)?;
        let i = self.step_index;
        let order = self.config.solver_order;
        let mut x = to_f32(sample)?;
        // Data estimate from the flow (velocity) prediction: x0 = x - sigma * v.
        let x0 = (&x - scale(&to_f32(model_output)?, self.sigmas[i])?)?;
        let use_corrector = i > 0 && !self.config.disable_corrector.contains(&(i - 1));
        if use_corrector && let Some(last) = self.last_sample.as_ref() {
            x = self.correct(&x0, last, &x, self.this_order)?;
        }
        self.model_outputs.rotate_left(1);
        self.model_outputs[order - 1] = Some(x0);
        let remaining = self.timesteps.len() - i;
        let wanted = if self.config.lower_order_final {
            order.min(remaining)
        } else {
            order
        };
        self.this_order = wanted.min(self.lower_order_nums + 1);
        let prev = self.predict(&x, self.this_order)?;
        self.last_sample = Some(x);
        if self.lower_order_nums < order {
            self.lower_order_nums += 1;
        }
        self.step_index += 1;
        prev.to_dtype(sample.dtype())
    }
}

#[cfg(test)]
#[path = "unipc_tests.rs"]
mod tests;
