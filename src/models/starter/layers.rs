//! Building blocks shared by the text encoder and the denoiser: linear, norms, attention, MLP.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// A dense layer `y = x·Wᵀ + b` over the last dimension of any-rank input.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// Weights ~ N(0, 1/in), bias 0 (checkpoint keys `weight` and `bias`).
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let std = (1.0 / in_dim as f64).sqrt();
        Self::with_init(
            in_dim,
            out_dim,
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
            vb,
        )
    }

    /// All-zero weights: the layer starts as a no-op (adaLN-Zero and output heads).
    pub fn zeros(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_init(in_dim, out_dim, Init::Const(0.0), vb)
    }

    fn with_init(in_dim: usize, out_dim: usize, init: Init, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
        let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
        Ok(Linear { weight, bias })
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().unwrap();
        let rows = x.elem_count() / in_dim;
        let y = x
            .reshape((rows, in_dim))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
        let mut out = dims;
        *out.last_mut().unwrap() = self.weight.dim(0)?;
        y.reshape(out)
    }
}

/// Layer norm over the last dimension, without learned parameters.
pub fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)
}

/// Layer norm with a learned scale and shift (checkpoint keys `weight` and `bias`).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(LayerNorm {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, 1e-5)?
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension; the fused kernel has no gradient, so training
/// uses the composed one.
pub fn softmax(x: &Tensor, training: bool) -> Result<Tensor> {
    if training {
        candle_nn::ops::softmax(x, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(x)
    }
}

/// Splits `(B, L, H·hd)` into heads `(B, H, L, hd)`.
fn heads(x: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (b, l, d) = x.dims3()?;
    x.reshape((b, l, n_heads, d / n_heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// Scaled dot-product attention on `(B, L, D)` inputs; `bias` is added to the scores
/// (use a large negative value to mask keys).
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    n_heads: usize,
    bias: Option<&Tensor>,
    training: bool,
) -> Result<Tensor> {
    let (b, l, d) = q.dims3()?;
    let scale = 1.0 / ((d / n_heads) as f64).sqrt();
    let (q, k, v) = (heads(q, n_heads)?, heads(k, n_heads)?, heads(v, n_heads)?);
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(bias) = bias {
        scores = scores.broadcast_add(bias)?;
    }
    let probs = softmax(&scores, training)?;
    probs.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))
}

/// Multi-head self-attention (`qkv` and `out` projections).
#[derive(Debug, Clone)]
pub struct SelfAttention {
    qkv: Linear,
    out: Linear,
    heads: usize,
}

impl SelfAttention {
    pub fn new(dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(SelfAttention {
            qkv: Linear::new(dim, 3 * dim, vb.pp("qkv"))?,
            out: Linear::new(dim, dim, vb.pp("out"))?,
            heads,
        })
    }

    pub fn forward(&self, x: &Tensor, bias: Option<&Tensor>, training: bool) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let qkv = self.qkv.forward(x)?;
        let q = qkv.narrow(D::Minus1, 0, d)?;
        let k = qkv.narrow(D::Minus1, d, d)?;
        let v = qkv.narrow(D::Minus1, 2 * d, d)?;
        let y = attend(&q, &k, &v, self.heads, bias, training)?;
        self.out.forward(&y)
    }
}

/// Multi-head attention from `x` to a context sequence (the text tokens).
#[derive(Debug, Clone)]
pub struct CrossAttention {
    q: Linear,
    kv: Linear,
    out: Linear,
    heads: usize,
}

impl CrossAttention {
    pub fn new(dim: usize, ctx_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(CrossAttention {
            q: Linear::new(dim, dim, vb.pp("q"))?,
            kv: Linear::new(ctx_dim, 2 * dim, vb.pp("kv"))?,
            out: Linear::new(dim, dim, vb.pp("out"))?,
            heads,
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        ctx: &Tensor,
        bias: Option<&Tensor>,
        training: bool,
    ) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let q = self.q.forward(x)?;
        let kv = self.kv.forward(ctx)?;
        let k = kv.narrow(D::Minus1, 0, d)?;
        let v = kv.narrow(D::Minus1, d, d)?;
        let y = attend(&q, &k, &v, self.heads, bias, training)?;
        self.out.forward(&y)
    }
}

/// The nonlinearity inside the feed-forward blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// GELU (tanh approximation).
    #[default]
    Gelu,
    /// ReLU: far cheaper on the CPU, forward and backward.
    Relu,
}

/// Two-layer feed-forward block with a nonlinearity in between.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl Mlp {
    pub fn new(dim: usize, hidden: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp {
            fc1: Linear::new(dim, hidden, vb.pp("fc1"))?,
            fc2: Linear::new(hidden, dim, vb.pp("fc2"))?,
            act,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match self.act {
            Activation::Gelu => h.gelu()?,
            Activation::Relu => h.relu()?,
        };
        self.fc2.forward(&h)
    }
}

/// Fixed sinusoidal embedding of positions (or timesteps) `pos`, shape `(n, dim)`.
pub fn sincos(pos: &[f32], dim: usize, max_period: f32) -> Vec<f32> {
    let half = dim / 2;
    let mut out = Vec::with_capacity(pos.len() * dim);
    for &p in pos {
        for i in 0..half {
            let f = (-(max_period.ln()) * i as f32 / half as f32).exp();
            out.push((p * f).cos());
        }
        for i in 0..half {
            let f = (-(max_period.ln()) * i as f32 / half as f32).exp();
            out.push((p * f).sin());
        }
    }
    out
}

/// Converts a mask of valid positions `(B, L)` (1 = keep) to an additive attention bias
/// `(B, 1, 1, L)`.
pub fn mask_bias(mask: &Tensor) -> Result<Tensor> {
    let (b, l) = mask.dims2()?;
    ((mask.to_dtype(DType::F32)? - 1.0)? * 1e4)?.reshape((b, 1, 1, l))
}
