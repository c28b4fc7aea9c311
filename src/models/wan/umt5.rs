//! UMT5 text encoder (transformers' `UMT5EncoderModel`) that turns Wan2.1 prompts into the
//! `prompt_embeds` the transformer attends to, and the pipeline's prompt-encoding step.
//!
//! UMT5 differs from T5 in ways that matter here: every layer owns its relative position
//! bias table, the attention scores are not scaled by `1/sqrt(d_kv)`, and padded keys are
//! masked by replacing the bias with the most negative value of the score dtype. The norms
//! are T5's RMS norms without bias, computed in f32 whatever the weights' dtype.
//!
//! The encoder is a list of independent [`Umt5Layer`]s run by [`forward_layers`], so a caller
//! can also load and run the layers one at a time: [`Umt5Streamer`] and
//! [`encode_prompt_streaming`] do, straight from the checkpoint files, so that encoding a
//! prompt with UMT5-XXL needs one block in memory, not the 5.7 B parameters.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Result, Tensor};
use candle_nn::{Embedding, Linear, Module, VarBuilder};
use serde::Deserialize;

use super::tokenizer::{WanTokenizer, prompt_clean};
use crate::nn::norm::rms_norm;

/// Largest width, count or distance a config may give (umt5-xxl's vocabulary is 256,384),
/// so that products of a few cannot overflow.
pub const MAX_SIZE: usize = 1 << 20;

/// Errors from reading or validating a UMT5 `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum Umt5ConfigError {
    /// The file could not be read.
    #[error("cannot read UMT5 config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a UMT5 config.
    #[error("cannot parse UMT5 config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The config asks for something this encoder does not implement.
    #[error("unsupported UMT5 config: {0}")]
    Unsupported(String),
}

/// The fields of transformers' `UMT5Config` that the encoder uses, parsed from the
/// checkpoint's `text_encoder/config.json` (other fields are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Umt5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// `"gated-gelu"` (umt5-xxl), `"gated-{act}"` or `"{act}"`.
    #[serde(default = "default_feed_forward_proj")]
    pub feed_forward_proj: String,
    /// When present it overrides the activation derived from `feed_forward_proj`, as in
    /// transformers (which writes `"gelu_new"` for `"gated-gelu"`).
    #[serde(default)]
    pub dense_act_fn: Option<String>,
}

fn default_num_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_feed_forward_proj() -> String {
    "gated-gelu".to_string()
}

/// Activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Umt5Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: GELU with the tanh approximation.
    GeluTanh,
    /// `gelu`: exact (erf) GELU.
    Gelu,
    Relu,
    /// `silu` / `swish`.
    Silu,
}

impl Umt5Activation {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            "gelu" => Some(Self::Gelu),
            "relu" => Some(Self::Relu),
            "silu" | "swish" => Some(Self::Silu),
            _ => None,
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::GeluTanh => crate::nn::activation::gelu_tanh(x),
            Self::Gelu => x.gelu_erf(),
            Self::Relu => x.relu(),
            Self::Silu => x.silu(),
        }
    }
}

/// The feed-forward block's shape: gated (`wi_0`, `wi_1`) or not (`wi`), and its activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Umt5FeedForward {
    pub gated: bool,
    pub activation: Umt5Activation,
}

impl Umt5Config {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> std::result::Result<Self, Umt5ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Umt5ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(text.as_bytes(), path)
    }

    /// Parses and validates the bytes of a `config.json`; `path` only names the file in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> std::result::Result<Self, Umt5ConfigError> {
        let cfg: Self = serde_json::from_slice(bytes).map_err(|source| Umt5ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the fields that change the math and returns the feed-forward kind.
    pub fn validate(&self) -> std::result::Result<Umt5FeedForward, Umt5ConfigError> {
        let unsupported = |m: String| Err(Umt5ConfigError::Unsupported(m));
        let parts: Vec<&str> = self.feed_forward_proj.split('-').collect();
        let (gated, act_name) = match parts.as_slice() {
            [act] => (false, *act),
            ["gated", act] => (true, *act),
            _ => {
                return unsupported(format!(
                    "feed_forward_proj {:?} is not of the form \"gated-{{act}}\" or \"{{act}}\"",
                    self.feed_forward_proj
                ));
            }
        };
        let derived = if self.feed_forward_proj == "gated-gelu" {
            "gelu_new"
        } else {
            act_name
        };
        let name = self.dense_act_fn.as_deref().unwrap_or(derived);
        let Some(activation) = Umt5Activation::from_name(name) else {
            return unsupported(format!(
                "activation {name:?} (feed_forward_proj {:?}); supported: gelu_new, \
                 gelu_pytorch_tanh, gelu, relu, silu",
                self.feed_forward_proj
            ));
        };
        if self.relative_attention_num_buckets < 4 {
            return unsupported(format!(
                "relative_attention_num_buckets {} (need at least 4)",
                self.relative_attention_num_buckets
            ));
        }
        if self.d_model == 0 || self.d_kv == 0 || self.num_heads == 0 || self.vocab_size == 0 {
            return unsupported("a zero model dimension".to_string());
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            (
                "relative_attention_num_buckets",
                self.relative_attention_num_buckets,
            ),
            (
                "relative_attention_max_distance",
                self.relative_attention_max_distance,
            ),
        ];
        if let Some((name, v)) = sizes.into_iter().find(|&(_, v)| v > MAX_SIZE) {
            return unsupported(format!("{name} {v} is above {MAX_SIZE}"));
        }
        // Distances beyond a quarter of the buckets are placed on a log scale up to the max
        // distance; with a max distance at or below that quarter the scale divides by zero.
        let exact = self.relative_attention_num_buckets / 4;
        if self.relative_attention_max_distance <= exact {
            return unsupported(format!(
                "relative_attention_max_distance {} must be above a quarter of the {} buckets",
                self.relative_attention_max_distance, self.relative_attention_num_buckets
            ));
        }
        Ok(Umt5FeedForward { gated, activation })
    }
}

/// Bucket of the relative position `memory - query` for the bidirectional (encoder) case,
/// computed in f32 exactly as transformers' `_relative_position_bucket` does.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> u32 {
    let half = num_buckets / 2;
    let base = if relative > 0 { half } else { 0 };
    let distance = relative.unsigned_abs() as usize;
    let max_exact = half / 2;
    let offset = if distance < max_exact {
        distance
    } else {
        let log_ratio = (distance as f32 / max_exact as f32).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32);
        // `as usize` truncates toward zero like torch's `.to(torch.long)` (the value is >= 0).
        let large = max_exact + (log_ratio * (half - max_exact) as f32) as usize;
        large.min(half - 1)
    };
    (base + offset) as u32
}

/// What every layer of one forward pass shares: the relative-position buckets of the
/// sequence length and the padding mask of the keys.
#[derive(Debug, Clone)]
pub struct Umt5AttentionInputs {
    /// `[L*L]` u32, row-major over (query, key).
    buckets: Tensor,
    /// `[B, 1, 1, L]` u8: 1 where the key is a real token.
    key_mask: Tensor,
    seq_len: usize,
}

impl Umt5AttentionInputs {
    /// Builds the buckets and key mask for an `attention_mask` `[B, L]` of any dtype
    /// (non-zero means "attend"), on the mask's device.
    pub fn new(cfg: &Umt5Config, attention_mask: &Tensor) -> Result<Self> {
        let (b, l) = attention_mask.dims2()?;
        let buckets: Vec<u32> = (0..l as i64)
            .flat_map(|q| {
                (0..l as i64).map(move |k| {
                    relative_position_bucket(
                        k - q,
                        cfg.relative_attention_num_buckets,
                        cfg.relative_attention_max_distance,
                    )
                })
            })
            .collect();
        let buckets = Tensor::from_vec(buckets, l * l, attention_mask.device())?;
        let key_mask = attention_mask
            .to_dtype(DType::F32)?
            .ne(0f32)?
            .reshape((b, 1, 1, l))?;
        Ok(Self {
            buckets,
            key_mask,
            seq_len: l,
        })
    }
}

fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear::new(vb.get((out_dim, in_dim), "weight")?, None))
}

/// A T5 layer norm weight, kept in f32.
fn norm_weight(dim: usize, vb: VarBuilder) -> Result<Tensor> {
    vb.get_with_hints_dtype(dim, "weight", Default::default(), DType::F32)
}

/// One encoder block (`encoder.block.{i}`): self-attention with its own relative position
/// bias, then the feed-forward block, each pre-normed and residual.
#[derive(Debug, Clone)]
pub struct Umt5Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// `[num_buckets, num_heads]`.
    relative_bias: Embedding,
    ff_norm: Tensor,
    /// `wi` or `wi_0` (through the activation), then `wi_1` when gated.
    wi_0: Linear,
    wi_1: Option<Linear>,
    wo: Linear,
    activation: Umt5Activation,
    num_heads: usize,
    d_kv: usize,
    eps: f64,
    dtype: DType,
}

impl Umt5Layer {
    /// Loads one block from `vb` rooted at `encoder.block.{i}`.
    pub fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        let ff = cfg.validate().map_err(candle_core::Error::wrap)?;
        let inner = cfg.num_heads * cfg.d_kv;
        let sa = vb.pp("layer.0");
        let att = sa.pp("SelfAttention");
        let relative_bias = Embedding::new(
            att.pp("relative_attention_bias").get(
                (cfg.relative_attention_num_buckets, cfg.num_heads),
                "weight",
            )?,
            cfg.num_heads,
        );
        let fb = vb.pp("layer.1");
        let dense = fb.pp("DenseReluDense");
        let (wi_0, wi_1) = if ff.gated {
            (
                linear(cfg.d_model, cfg.d_ff, dense.pp("wi_0"))?,
                Some(linear(cfg.d_model, cfg.d_ff, dense.pp("wi_1"))?),
            )
        } else {
            (linear(cfg.d_model, cfg.d_ff, dense.pp("wi"))?, None)
        };
        Ok(Self {
            attn_norm: norm_weight(cfg.d_model, sa.pp("layer_norm"))?,
            q: linear(cfg.d_model, inner, att.pp("q"))?,
            k: linear(cfg.d_model, inner, att.pp("k"))?,
            v: linear(cfg.d_model, inner, att.pp("v"))?,
            o: linear(inner, cfg.d_model, att.pp("o"))?,
            relative_bias,
            ff_norm: norm_weight(cfg.d_model, fb.pp("layer_norm"))?,
            wi_0,
            wi_1,
            wo: linear(cfg.d_ff, cfg.d_model, dense.pp("wo"))?,
            activation: ff.activation,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
            eps: cfg.layer_norm_epsilon,
            dtype: vb.dtype(),
        })
    }

    /// The norm in f32, cast to the weights' dtype for the projections that follow.
    fn norm(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        rms_norm(x, Some(weight), self.eps)?.to_dtype(self.dtype)
    }

    /// Position bias plus padding mask, `[B, H, L, L]` in f32: the bias where the key is a
    /// real token, `f32::MIN` (torch's `finfo(float32).min`) where it is padding.
    fn attention_bias(&self, inputs: &Umt5AttentionInputs) -> Result<Tensor> {
        let l = inputs.seq_len;
        let bias = self
            .relative_bias
            .forward(&inputs.buckets)?
            .to_dtype(DType::F32)?
            .reshape((l, l, self.num_heads))?
            .permute((2, 0, 1))?
            .unsqueeze(0)?;
        let b = inputs.key_mask.dim(0)?;
        let shape = (b, self.num_heads, l, l);
        let masked = Tensor::full(f32::MIN, shape, bias.device())?;
        inputs
            .key_mask
            .broadcast_as(shape)?
            .where_cond(&bias.broadcast_as(shape)?, &masked)
    }

    fn self_attention(&self, x: &Tensor, inputs: &Umt5AttentionInputs) -> Result<Tensor> {
        let (b, l, _) = x.dims3()?;
        let heads = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, l, self.num_heads, self.d_kv))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.q.forward(x)?)?;
        let k = heads(self.k.forward(x)?)?;
        let v = heads(self.v.forward(x)?)?;
        // No 1/sqrt(d_kv) scaling in UMT5; the softmax runs in f32.
        let scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        let scores = (scores + self.attention_bias(inputs)?)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
        let out = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b, l, self.num_heads * self.d_kv))?;
        self.o.forward(&out)
    }

    fn feed_forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.activation.apply(&self.wi_0.forward(x)?)?;
        if let Some(wi_1) = &self.wi_1 {
            h = (h * wi_1.forward(x)?)?;
        }
        self.wo.forward(&h)
    }

    /// Runs the block on `hidden` `[B, L, d_model]` (in the weights' dtype).
    pub fn forward(&self, hidden: &Tensor, inputs: &Umt5AttentionInputs) -> Result<Tensor> {
        let normed = self.norm(hidden, &self.attn_norm)?;
        let hidden = (hidden + self.self_attention(&normed, inputs)?)?;
        let normed = self.norm(&hidden, &self.ff_norm)?;
        hidden + self.feed_forward(&normed)?
    }
}

/// Runs `hidden` through `layers` in order.
pub fn forward_layers<'a>(
    hidden: Tensor,
    inputs: &Umt5AttentionInputs,
    layers: impl IntoIterator<Item = &'a Umt5Layer>,
) -> Result<Tensor> {
    layers
        .into_iter()
        .try_fold(hidden, |h, layer| layer.forward(&h, inputs))
}

/// transformers' `UMT5EncoderModel`: token embedding, the blocks, the final norm.
#[derive(Debug, Clone)]
pub struct Umt5Encoder {
    embed: Embedding,
    layers: Vec<Umt5Layer>,
    final_norm: Tensor,
    cfg: Umt5Config,
    dtype: DType,
}

impl Umt5Encoder {
    /// Loads the encoder from a `VarBuilder` rooted at the checkpoint's top level
    /// (`shared.weight`, `encoder.block.{i}...`, `encoder.final_layer_norm.weight`). The
    /// embedding is `shared.weight`, or `encoder.embed_tokens.weight` when a checkpoint only
    /// has that. Weights use the builder's dtype (f32 or bf16); the norm weights are f32.
    pub fn new(cfg: &Umt5Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::wrap)?;
        let embed_vb = if vb.contains_tensor("shared.weight")
            || !vb.contains_tensor("encoder.embed_tokens.weight")
        {
            vb.pp("shared")
        } else {
            vb.pp("encoder.embed_tokens")
        };
        let embed = Embedding::new(
            embed_vb.get((cfg.vocab_size, cfg.d_model), "weight")?,
            cfg.d_model,
        );
        let enc = vb.pp("encoder");
        let layers = (0..cfg.num_layers)
            .map(|i| Umt5Layer::new(cfg, enc.pp(format!("block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = norm_weight(cfg.d_model, enc.pp("final_layer_norm"))?;
        Ok(Self {
            embed,
            layers,
            final_norm,
            cfg: cfg.clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &Umt5Config {
        &self.cfg
    }

    /// The weights' dtype (the dtype of the activations and of the output).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        self.final_norm.device()
    }

    pub fn layers(&self) -> &[Umt5Layer] {
        &self.layers
    }

    /// Token embeddings `[B, L, d_model]` of `input_ids` (u8, u32 or i64).
    pub fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.embed.forward(input_ids)
    }

    /// The final RMS norm, in the weights' dtype.
    pub fn final_norm(&self, hidden: &Tensor) -> Result<Tensor> {
        rms_norm(hidden, Some(&self.final_norm), self.cfg.layer_norm_epsilon)?.to_dtype(self.dtype)
    }

    /// `last_hidden_state` `[B, L, d_model]` for `input_ids` (u32 or i64) `[B, L]` and
    /// `attention_mask` `[B, L]` (non-zero = real token), in the weights' dtype.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        if input_ids.dims2()? != attention_mask.dims2()? {
            candle_core::bail!(
                "UMT5: input_ids {:?} and attention_mask {:?} differ in shape",
                input_ids.shape(),
                attention_mask.shape()
            );
        }
        let inputs = Umt5AttentionInputs::new(&self.cfg, attention_mask)?;
        let hidden = forward_layers(self.embed(input_ids)?, &inputs, &self.layers)?;
        self.final_norm(&hidden)
    }
}

/// The pipeline's `prompt_embeds` `[B, max_len, d_model]` for `prompts`, as
/// `WanPipeline._get_t5_prompt_embeds` computes them: clean each prompt
/// ([`prompt_clean`]), tokenize to `max_len`, encode, keep each prompt's first
/// `sum(mask)` rows and zero the rest. The result is in the encoder's dtype on `device`.
pub fn encode_prompt(
    encoder: &Umt5Encoder,
    tokenizer: &WanTokenizer,
    prompts: &[String],
    max_len: usize,
    device: &Device,
) -> Result<Tensor> {
    let tokens = PromptTokens::new(tokenizer, prompts, max_len, encoder.device())?;
    let hidden = encoder.forward(&tokens.ids, &tokens.mask)?;
    tokens.trim(&hidden)?.to_device(device)
}

/// Cleaned, tokenized prompts: ids and mask `[B, max_len]` (u32) and each prompt's length.
struct PromptTokens {
    ids: Tensor,
    mask: Tensor,
    lens: Vec<usize>,
    max_len: usize,
}

impl PromptTokens {
    fn new(
        tokenizer: &WanTokenizer,
        prompts: &[String],
        max_len: usize,
        device: &Device,
    ) -> Result<Self> {
        if prompts.is_empty() {
            candle_core::bail!("UMT5: encode_prompt needs at least one prompt");
        }
        let cleaned: Vec<String> = prompts.iter().map(|p| prompt_clean(p)).collect();
        let (ids, mask) = tokenizer
            .encode(&cleaned, max_len)
            .map_err(candle_core::Error::wrap)?;
        let b = ids.len();
        let lens = mask
            .iter()
            .map(|m| m.iter().filter(|&&v| v > 0).count())
            .collect();
        let flat = |rows: Vec<Vec<u32>>| -> Result<Tensor> {
            Tensor::from_vec(rows.concat(), (b, max_len), device)
        };
        Ok(Self {
            ids: flat(ids)?,
            mask: flat(mask)?,
            lens,
            max_len,
        })
    }

    /// Keeps each prompt's first `len` rows of `hidden` `[B, max_len, d]` and zeroes the rest.
    fn trim(&self, hidden: &Tensor) -> Result<Tensor> {
        let rows = self
            .lens
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                hidden
                    .i(i)?
                    .narrow(0, 0, len)?
                    .pad_with_zeros(0, 0, self.max_len - len)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&rows, 0)
    }
}

mod stream;
pub use stream::{Umt5Streamer, encode_prompt_streaming};

#[cfg(test)]
#[path = "umt5_tests.rs"]
mod tests;
