//! Trainable parameters: deterministic initialisation by name, and safetensors save/load.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder, var_builder::SimpleBackend};

use crate::rng::Rng;

/// Named trainable variables. Each is initialised from a generator seeded by the run's
/// seed and the variable's name, so initial weights never depend on construction order.
#[derive(Clone)]
pub struct Params {
    inner: Arc<Inner>,
}

struct Inner {
    seed: u64,
    /// Draw zero-initialised weight matrices at random too (test fixtures only: a
    /// zero output head would make an untrained model ignore its input).
    randomize_zero_weights: bool,
    vars: Mutex<BTreeMap<String, Var>>,
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Params {
    pub fn new(seed: u64) -> Self {
        Self::with_options(seed, false)
    }

    /// Like [`Self::new`]; with `randomize_zero_weights` every weight matrix is random.
    pub fn with_options(seed: u64, randomize_zero_weights: bool) -> Self {
        Params {
            inner: Arc::new(Inner {
                seed,
                randomize_zero_weights,
                vars: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// A `VarBuilder` that creates (or reuses) variables in this store.
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// All variables, sorted by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let vars = self.inner.vars.lock().unwrap();
        vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Current values, for saving.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect()
    }

    /// Overwrites variables with values from `tensors` (every variable must be present).
    pub fn load(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.vars() {
            let t = tensors
                .get(&name)
                .ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks `{name}`")))?;
            var.set(t)?;
        }
        Ok(())
    }
}

/// Saves tensors as safetensors atomically (temporary file, then rename).
pub fn save_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

impl SimpleBackend for Params {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut vars = self.inner.vars.lock().unwrap();
        if let Some(v) = vars.get(name) {
            if v.shape() != &s {
                candle_core::bail!("shape mismatch for {name}: {:?} vs {s:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let n = s.elem_count();
        let mut rng = Rng::derive(self.inner.seed, &[name_hash(name)]);
        let h = match h {
            Init::Const(c)
                if c == 0.0 && self.inner.randomize_zero_weights && name.ends_with("weight") =>
            {
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                }
            }
            h => h,
        };
        let data: Vec<f32> = match h {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => rng
                .normals(n)
                .into_iter()
                .map(|x| mean as f32 + stdev as f32 * x)
                .collect(),
            Init::Uniform { lo, up } => (0..n).map(|_| rng.range(lo as f32, up as f32)).collect(),
            Init::Kaiming { .. } => candle_core::bail!("Kaiming init is not used by this model"),
        };
        let t = Tensor::from_vec(data, s, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        vars.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let vars = self.inner.vars.lock().unwrap();
        vars.get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::Msg(format!("no variable `{name}`")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.vars.lock().unwrap().contains_key(name)
    }
}
