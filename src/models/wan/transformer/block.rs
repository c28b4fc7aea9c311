//! One `WanTransformerBlock`: modulated self-attention, cross-attention to the text, and a
//! modulated GELU feed-forward, with the f32 islands diffusers keeps in a bf16 model.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::linear::{Linear, linear};

use super::attention::{SelfAttnRope, WanAttention};
use crate::nn::activation::gelu_tanh;
use crate::nn::norm::{layer_norm, layer_norm_modulate};
use crate::nn::residual::add_gated;

/// `ffn`: `net.0.proj`, GELU (tanh approximation), `net.2`.
#[derive(Debug, Clone)]
struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    fn new(dim: usize, inner: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            proj_in: linear(dim, inner, vb.pp("net.0.proj"))?,
            proj_out: linear(inner, dim, vb.pp("net.2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj_out
            .forward(&gelu_tanh(&self.proj_in.forward(x)?)?)
    }
}

/// `norm2`: an f32 layer norm with affine weights.
#[derive(Debug, Clone)]
struct AffineNorm {
    weight: Tensor,
    bias: Tensor,
}

/// One transformer block (`blocks.{i}`).
#[derive(Debug, Clone)]
pub struct WanBlock {
    attn1: WanAttention,
    attn2: WanAttention,
    norm2: Option<AffineNorm>,
    ffn: FeedForward,
    /// `[1, 6, dim]` f32: shift, scale, gate of the self-attention, then of the feed-forward.
    scale_shift_table: Tensor,
    eps: f64,
}

impl WanBlock {
    /// Loads `blocks.{i}` from `vb`; `scale_shift_table` and `norm2` are kept in f32.
    pub fn new(
        dim: usize,
        ffn_dim: usize,
        heads: usize,
        cross_attn_norm: bool,
        eps: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb32 = vb.to_dtype(DType::F32);
        let norm2 = if cross_attn_norm {
            Some(AffineNorm {
                weight: vb32.pp("norm2").get(dim, "weight")?,
                bias: vb32.pp("norm2").get(dim, "bias")?,
            })
        } else {
            None
        };
        Ok(Self {
            attn1: WanAttention::new(dim, heads, eps, vb.pp("attn1"))?,
            attn2: WanAttention::new(dim, heads, eps, vb.pp("attn2"))?,
            norm2,
            ffn: FeedForward::new(dim, ffn_dim, vb.pp("ffn"))?,
            scale_shift_table: vb32.get((1, 6, dim), "scale_shift_table")?,
            eps,
        })
    }

    /// `x` `[B, N, dim]` and `text` `[B, L, dim]` in the model dtype, `timestep_proj`
    /// `[B, 6, dim]` (any dtype), `rope` for the N tokens. Returns `[B, N, dim]`.
    pub fn forward(
        &self,
        x: &Tensor,
        text: &Tensor,
        timestep_proj: &Tensor,
        rope: &SelfAttnRope,
    ) -> Result<Tensor> {
        let dtype = x.dtype();
        let m = self
            .scale_shift_table
            .broadcast_add(&timestep_proj.to_dtype(DType::F32)?)?;
        let chunk = |i: usize| m.narrow(1, i, 1);
        let (shift, scale, gate) = (chunk(0)?, (chunk(1)? + 1.0)?, chunk(2)?);
        let (c_shift, c_scale, c_gate) = (chunk(3)?, (chunk(4)? + 1.0)?, chunk(5)?);

        // Self-attention; the residual sum is taken in f32.
        let xf = x.to_dtype(DType::F32)?;
        let h = layer_norm_modulate(&xf, &scale, &shift, self.eps)?.to_dtype(dtype)?;
        let attn = self.attn1.forward_self(&h, rope)?.to_dtype(DType::F32)?;
        let x = add_gated(&xf, &attn, &gate)?.to_dtype(dtype)?;

        // Cross-attention; the residual sum is taken in the model dtype.
        let h = match &self.norm2 {
            Some(n) => layer_norm(
                &x.to_dtype(DType::F32)?,
                Some(&n.weight),
                Some(&n.bias),
                self.eps,
            )?
            .to_dtype(dtype)?,
            None => x.clone(),
        };
        let x = (&x + self.attn2.forward_cross(&h, text)?)?;

        // Feed-forward; the residual sum is taken in f32.
        let xf = x.to_dtype(DType::F32)?;
        let h = layer_norm_modulate(&xf, &c_scale, &c_shift, self.eps)?.to_dtype(dtype)?;
        let ff = self.ffn.forward(&h)?.to_dtype(DType::F32)?;
        add_gated(&xf, &ff, &c_gate)?.to_dtype(dtype)
    }
}
