//! Wan's attention layers: self-attention with 3D RoPE and cross-attention to the text.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::linear::{Linear, linear};

use crate::nn::attention::attention;

use crate::nn::norm::rms_norm;
use crate::nn::rope::Rope3d;

/// The rotary tables of one forward pass: the keys' own, and the queries' scaled by
/// attention's `1/√head_dim` (so the queries need no separate scaling pass).
#[derive(Debug, Clone)]
pub struct SelfAttnRope {
    pub queries: Rope3d,
    pub keys: Rope3d,
}

impl SelfAttnRope {
    /// Derives the query tables from `rope` (built for `head_dim`).
    pub fn new(rope: Rope3d, head_dim: usize) -> Result<Self> {
        Ok(Self {
            queries: rope.scaled(1.0 / (head_dim as f64).sqrt())?,
            keys: rope,
        })
    }
}

/// One `WanAttention` (`attn1` or `attn2` of a block): q/k/v projections, RMS norm of the
/// queries and keys across all heads, attention, output projection `to_out.0`.
#[derive(Debug, Clone)]
pub struct WanAttention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
    heads: usize,
    head_dim: usize,
    eps: f64,
}

impl WanAttention {
    /// Loads the layer's weights from `vb` (`attn1` or `attn2`).
    pub fn new(dim: usize, heads: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            to_q: linear(dim, dim, vb.pp("to_q"))?,
            to_k: linear(dim, dim, vb.pp("to_k"))?,
            to_v: linear(dim, dim, vb.pp("to_v"))?,
            to_out: linear(dim, dim, vb.pp("to_out.0"))?,
            norm_q: vb.pp("norm_q").get(dim, "weight")?,
            norm_k: vb.pp("norm_k").get(dim, "weight")?,
            heads,
            head_dim: dim / heads,
            eps,
        })
    }

    /// `[B, S, H·D]` viewed as `[B, H, S, D]` (no copy).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, self.heads, self.head_dim))?
            .transpose(1, 2)
    }

    /// Self-attention over the video tokens `x` (`[B, N, dim]`) with rotary positions.
    pub fn forward_self(&self, x: &Tensor, rope: &SelfAttnRope) -> Result<Tensor> {
        let q = rope
            .queries
            .rms_norm_apply(&self.to_q.forward(x)?, &self.norm_q, self.eps)?;
        let k = rope
            .keys
            .rms_norm_apply(&self.to_k.forward(x)?, &self.norm_k, self.eps)?;
        let v = self.split_heads(&self.to_v.forward(x)?)?;
        // The queries' rotation is scaled by 1/√D already.
        self.to_out.forward(&attention(&q, &k, &v, 1.0)?)
    }

    /// Cross-attention from the video tokens `x` (`[B, N, dim]`) to `context` (`[B, L, dim]`).
    pub fn forward_cross(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let q = rms_norm(&self.to_q.forward(x)?, Some(&self.norm_q), self.eps)?;
        let k = rms_norm(&self.to_k.forward(context)?, Some(&self.norm_k), self.eps)?;
        let v = self.to_v.forward(context)?;
        let (q, k, v) = (
            self.split_heads(&q)?,
            self.split_heads(&k)?,
            self.split_heads(&v)?,
        );
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        self.to_out.forward(&attention(&q, &k, &v, scale)?)
    }
}
