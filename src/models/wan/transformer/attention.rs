//! Wan's attention layers (self-attention with 3D RoPE, cross-attention to the text) and
//! the query-chunked softmax attention they share.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder, linear};

use crate::nn::norm::rms_norm;
use crate::nn::rope::Rope3d;

/// Most attention scores (batch × heads × query rows × keys) materialised at once: queries
/// are processed in chunks of `ATTENTION_CHUNK_SCORES / (batch · heads · keys)` rows (at least
/// one), so a chunk's scores take at most 256 MiB in f32 whatever the video length.
pub const ATTENTION_CHUNK_SCORES: usize = 1 << 26;

/// `softmax(q·kᵀ)·v` for `q` `[B, H, Sq, D]` already scaled by `1/√D`, `k` and `v`
/// `[B, H, Sk, D]` (contiguous); returns `[B, Sq, H·D]`. See [`ATTENTION_CHUNK_SCORES`].
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    attention_chunked(q, k, v, ATTENTION_CHUNK_SCORES)
}

/// [`attention`] with at most `max_scores` scores per query chunk.
///
/// The scores are taken in the inputs' dtype. Where the softmax kernel would accumulate in
/// a 16-bit dtype (candle's CPU kernel does; its CUDA kernel accumulates in f32), the
/// scores are widened to f32 for the softmax and the probabilities rounded back.
pub fn attention_chunked(q: &Tensor, k: &Tensor, v: &Tensor, max_scores: usize) -> Result<Tensor> {
    let (b, h, sq, d) = q.dims4()?;
    let sk = k.dim(2)?;
    let dtype = q.dtype();
    let widen = dtype != DType::F32 && !q.device().is_cuda();
    let kt = k.transpose(2, 3)?;
    let chunk = (max_scores / (b * h * sk).max(1)).clamp(1, sq.max(1));
    let mut outs = Vec::with_capacity(sq.div_ceil(chunk));
    for start in (0..sq).step_by(chunk) {
        let len = chunk.min(sq - start);
        let scores = q.narrow(2, start, len)?.matmul(&kt)?;
        let probs = if widen {
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        // [B, H, len, D] viewed as [B, len, H, D]; the concatenation makes it contiguous.
        outs.push(probs.matmul(v)?.transpose(1, 2)?);
    }
    let out = match outs.as_slice() {
        [one] => one.contiguous()?,
        _ => Tensor::cat(&outs, 1)?,
    };
    out.reshape((b, sq, h * d))
}

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

    /// `[B, S, H·D]` to `[B, H, S, D]` (contiguous).
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, _) = x.dims3()?;
        x.reshape((b, s, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Self-attention over the video tokens `x` (`[B, N, dim]`) with rotary positions.
    pub fn forward_self(&self, x: &Tensor, rope: &SelfAttnRope) -> Result<Tensor> {
        let q = rms_norm(&self.to_q.forward(x)?, Some(&self.norm_q), self.eps)?;
        let k = rms_norm(&self.to_k.forward(x)?, Some(&self.norm_k), self.eps)?;
        let v = self.split_heads(&self.to_v.forward(x)?)?;
        let (b, n, _) = q.dims3()?;
        let heads = |t: Tensor| {
            t.reshape((b, n, self.heads, self.head_dim))?
                .transpose(1, 2)
        };
        let q = rope.queries.apply(&heads(q)?)?;
        let k = rope.keys.apply(&heads(k)?)?;
        self.to_out.forward(&attention(&q, &k, &v)?)
    }

    /// Cross-attention from the video tokens `x` (`[B, N, dim]`) to `context` (`[B, L, dim]`).
    pub fn forward_cross(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let q = rms_norm(&self.to_q.forward(x)?, Some(&self.norm_q), self.eps)?;
        let k = rms_norm(&self.to_k.forward(context)?, Some(&self.norm_k), self.eps)?;
        let v = self.to_v.forward(context)?;
        let dtype = q.dtype();
        let q = (q.to_dtype(DType::F32)? / (self.head_dim as f64).sqrt())?.to_dtype(dtype)?;
        let (q, k, v) = (
            self.split_heads(&q)?,
            self.split_heads(&k)?,
            self.split_heads(&v)?,
        );
        self.to_out.forward(&attention(&q, &k, &v)?)
    }
}

/// `softmax` over the last dimension without chunking, for tests of [`attention_chunked`].
#[cfg(test)]
pub fn attention_reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, h, sq, d) = q.dims4()?;
    let scores = q.matmul(&k.transpose(2, 3)?)?;
    let probs = candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?;
    probs
        .matmul(v)?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, sq, h * d))
}
