//! The transformer's input embeddings: 3D patches, sinusoidal timesteps with their MLP
//! and modulation projection, and the text projection.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::linear::{Linear, linear};

/// Sinusoidal embedding of `timesteps` as diffusers' `Timesteps(dim, flip_sin_to_cos=True,
/// downscale_freq_shift=0)`: `[cos(t·fⱼ) …, sin(t·fⱼ) …]` with `fⱼ = 10000^(−j/(dim/2))`,
/// zero-padded to `dim` when odd. Returns `[len, dim]` f32.
///
/// The exponents and products are rounded to f32 where PyTorch rounds them; `exp`, `sin` and
/// `cos` are evaluated in f64 and rounded once, so each value is the correctly rounded f32.
pub fn timestep_sinusoids(timesteps: &[f32], dim: usize, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let log_period = -(10_000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|j| {
            let exponent = log_period * j as f32 / half as f32;
            (exponent as f64).exp() as f32
        })
        .collect();
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f64> = freqs.iter().map(|&f| (t * f) as f64).collect();
        out.extend(args.iter().map(|a| a.cos() as f32));
        out.extend(args.iter().map(|a| a.sin() as f32));
        if dim % 2 == 1 {
            out.push(0.0);
        }
    }
    Tensor::from_vec(out, (timesteps.len(), dim), device)
}

/// `patch_embedding`: a Conv3d whose kernel equals its stride, computed as one matmul over
/// the flattened patches.
#[derive(Debug, Clone)]
pub struct PatchEmbed {
    proj: Linear,
    in_channels: usize,
    patch: [usize; 3],
}

impl PatchEmbed {
    /// Loads `weight` `[dim, in_channels, pt, ph, pw]` and `bias` `[dim]`.
    pub fn new(in_channels: usize, dim: usize, patch: [usize; 3], vb: VarBuilder) -> Result<Self> {
        let [pt, ph, pw] = patch;
        let weight = vb.get((dim, in_channels, pt, ph, pw), "weight")?;
        let weight = weight.reshape((dim, in_channels * pt * ph * pw))?;
        let bias = vb.get(dim, "bias")?;
        Ok(Self {
            proj: Linear::new(weight, Some(bias))?,
            in_channels,
            patch,
        })
    }

    /// `[B, C, F, H, W]` (each of F, H, W a multiple of the patch) to
    /// `[B, F/pt · H/ph · W/pw, dim]`, tokens frame-major then row then column.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, h, w) = x.dims5()?;
        let [pt, ph, pw] = self.patch;
        if c != self.in_channels {
            candle_core::bail!(
                "patch embedding expects {} channels, got {c}",
                self.in_channels
            );
        }
        let (gf, gh, gw) = (f / pt, h / ph, w / pw);
        let patches = x
            .reshape(vec![b, c, gf, pt, gh, ph, gw, pw])?
            .permute(vec![0, 2, 4, 6, 1, 3, 5, 7])?
            .contiguous()?
            .reshape((b, gf * gh * gw, c * pt * ph * pw))?;
        self.proj.forward(&patches)
    }
}

/// `condition_embedder`: the timestep MLP (kept in f32, as diffusers keeps `time_embedder`),
/// the projection to the blocks' six modulation vectors, and the text projection.
#[derive(Debug, Clone)]
pub struct ConditionEmbedder {
    freq_dim: usize,
    time_linear_1: Linear,
    time_linear_2: Linear,
    time_proj: Linear,
    text_linear_1: Linear,
    text_linear_2: Linear,
}

/// What the condition embedder gives the blocks.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// `[B, dim]` in the model dtype: the timestep embedding (for the output modulation).
    pub temb: Tensor,
    /// `[B, 6, dim]` in the model dtype: the blocks' modulation before their own tables.
    pub timestep_proj: Tensor,
    /// `[B, L, dim]` in the model dtype: the projected text.
    pub text: Tensor,
}

impl ConditionEmbedder {
    /// Loads `time_embedder.linear_{1,2}` (f32), `time_proj` and `text_embedder.linear_{1,2}`.
    pub fn new(freq_dim: usize, dim: usize, text_dim: usize, vb: VarBuilder) -> Result<Self> {
        let te = vb.pp("time_embedder").to_dtype(DType::F32);
        let tx = vb.pp("text_embedder");
        Ok(Self {
            freq_dim,
            time_linear_1: linear(freq_dim, dim, te.pp("linear_1"))?,
            time_linear_2: linear(dim, dim, te.pp("linear_2"))?,
            time_proj: linear(dim, 6 * dim, vb.pp("time_proj"))?,
            text_linear_1: linear(text_dim, dim, tx.pp("linear_1"))?,
            text_linear_2: linear(dim, dim, tx.pp("linear_2"))?,
        })
    }

    /// Embeds `timestep` (`[B]`, any float dtype) and `text` (`[B, L, text_dim]`, already in
    /// the model dtype `dtype`).
    pub fn forward(&self, timestep: &Tensor, text: &Tensor, dtype: DType) -> Result<Conditions> {
        let b = timestep.dims1()?;
        let t: Vec<f32> = timestep.to_dtype(DType::F32)?.to_vec1()?;
        let sinus = timestep_sinusoids(&t, self.freq_dim, timestep.device())?;
        let temb = self
            .time_linear_2
            .forward(&self.time_linear_1.forward(&sinus)?.silu()?)?
            .to_dtype(dtype)?;
        let timestep_proj = self.time_proj.forward(&temb.silu()?)?;
        let dim = temb.dim(1)?;
        let timestep_proj = timestep_proj.reshape((b, 6, dim))?;
        let text = self
            .text_linear_2
            .forward(&crate::nn::activation::gelu_tanh(
                &self.text_linear_1.forward(text)?,
            )?)?;
        Ok(Conditions {
            temb,
            timestep_proj,
            text,
        })
    }
}
