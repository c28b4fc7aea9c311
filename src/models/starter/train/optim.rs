//! AdamW with global-norm clipping and an exponential moving average of the weights,
//! with state that can be saved to and restored from a checkpoint.

use std::collections::HashMap;

use candle_core::{Result, Tensor, Var, backprop::GradStore};

/// Optimiser state for one variable.
struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    ema: Tensor,
}

pub struct AdamW {
    slots: Vec<Slot>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub ema_decay: f64,
    /// Updates done so far.
    pub t: u64,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, weight_decay: f64, ema_decay: f64) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let z = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    ema: var.as_tensor().copy()?.detach(),
                    m: z.clone(),
                    v: z,
                    name,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            slots,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay,
            clip_norm: 1.0,
            ema_decay,
            t: 0,
        })
    }

    /// One update with learning rate `lr`; returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        let mut sq = 0.0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        let clip = if norm > self.clip_norm {
            self.clip_norm / norm
        } else {
            1.0
        };
        self.t += 1;
        let t = self.t as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        // EMA warm-up: average over roughly the steps seen so far early on.
        let decay = self
            .ema_decay
            .min((1.0 + self.t as f64) / (10.0 + self.t as f64));
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            let g = (g.detach() * clip)?;
            s.m = ((&s.m * self.beta1)? + (&g * (1.0 - self.beta1))?)?.detach();
            s.v = ((&s.v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?.detach();
            let mhat = (&s.m / bc1)?;
            let vhat = (&s.v / bc2)?;
            let update = (mhat / (vhat.sqrt()? + self.eps)?)?;
            let theta = s.var.as_tensor().detach();
            let decayed = (&theta * (1.0 - lr * self.weight_decay))?;
            let next = (decayed - (update * lr)?)?;
            s.var.set(&next)?;
            s.ema = ((&s.ema * decay)? + (&next * (1.0 - decay))?)?.detach();
        }
        Ok(norm)
    }

    /// The averaged weights, which are what gets shipped.
    pub fn ema_tensors(&self) -> HashMap<String, Tensor> {
        self.slots
            .iter()
            .map(|s| (s.name.clone(), s.ema.clone()))
            .collect()
    }

    /// Moments and averages, under `m.*`, `v.*` and `ema.*` names.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for s in &self.slots {
            out.insert(format!("m.{}", s.name), s.m.clone());
            out.insert(format!("v.{}", s.name), s.v.clone());
            out.insert(format!("ema.{}", s.name), s.ema.clone());
        }
        out
    }

    /// Restores what [`Self::state`] saved.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>, t: u64) -> Result<()> {
        let get = |k: String| {
            state
                .get(&k)
                .cloned()
                .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks `{k}`")))
        };
        for s in &mut self.slots {
            s.m = get(format!("m.{}", s.name))?;
            s.v = get(format!("v.{}", s.name))?;
            s.ema = get(format!("ema.{}", s.name))?;
        }
        self.t = t;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn minimises_a_quadratic_and_state_round_trips() {
        let x = Var::new(&[3.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], 0.0, 0.9).unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap(), 0.05).unwrap();
        }
        let v: Vec<f32> = x.as_tensor().to_vec1().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.1), "{v:?}");
        let state = opt.state();
        let mut other = AdamW::new(vec![("x".into(), x.clone())], 0.0, 0.9).unwrap();
        other.load_state(&state, opt.t).unwrap();
        assert_eq!(other.t, 300);
        let e1: Vec<f32> = opt.ema_tensors()["x"].to_vec1().unwrap();
        let e2: Vec<f32> = other.ema_tensors()["x"].to_vec1().unwrap();
        assert_eq!(e1, e2);
    }
}
