//! The starter model's text side: a word-level tokenizer over a closed vocabulary and a
//! small transformer that turns token ids into conditioning vectors.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::layers::{Activation, LayerNorm, Mlp, SelfAttention, mask_bias, sincos};

/// Token 0 pads sequences; token 1 stands for "no prompt" (the unconditional branch).
pub const PAD: u32 = 0;
pub const EMPTY: u32 = 1;

/// The words the model knows: canonical tokens plus synonyms and two-word phrases that
/// map onto them. Serialised into the model's config so a model carries its own vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// Canonical tokens; index = token id. Ids 0 and 1 are `<pad>` and `<empty>`.
    pub tokens: Vec<String>,
    /// Surface word → canonical token.
    pub synonyms: Vec<(String, String)>,
    /// Two-word phrase → canonical token (matched before single words).
    pub phrases: Vec<(String, String)>,
}

/// A prompt turned into token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// Words not in the vocabulary, in order of appearance (they are ignored).
    pub unknown: Vec<String>,
}

impl Vocabulary {
    /// The starter model's vocabulary (see `synth::vocab` for the world it describes).
    pub fn starter() -> Self {
        let words = [
            "<pad>",
            "<empty>", // special
            "red",
            "orange",
            "yellow",
            "green",
            "blue",
            "purple",
            "pink",
            "white", // objects
            "black",
            "gray",
            "navy", // backgrounds (white is shared)
            "circle",
            "square",
            "triangle", // shapes
            "left",
            "right",
            "up",
            "down",
            "bouncing",
            "growing",
            "shrinking", // motions
            "moving",
            "background",
            "a",
            "the",
            "small",
            "on",
            "is",
            "with",
            "to",
            "against",
            "plain",
            "and",
            "in",
        ];
        let syn = [
            ("grey", "gray"),
            ("ball", "circle"),
            ("dot", "circle"),
            ("disc", "circle"),
            ("disk", "circle"),
            ("box", "square"),
            ("block", "square"),
            ("moves", "moving"),
            ("move", "moving"),
            ("going", "moving"),
            ("goes", "moving"),
            ("sliding", "moving"),
            ("slides", "moving"),
            ("drifting", "moving"),
            ("drifts", "moving"),
            ("bounces", "bouncing"),
            ("bounce", "bouncing"),
            ("grows", "growing"),
            ("grow", "growing"),
            ("shrinks", "shrinking"),
            ("shrink", "shrinking"),
            ("an", "a"),
            ("one", "a"),
            ("little", "small"),
            ("tiny", "small"),
            ("upward", "up"),
            ("upwards", "up"),
            ("downward", "down"),
            ("downwards", "down"),
        ];
        let phrases = [
            ("dark blue", "navy"),
            ("getting bigger", "growing"),
            ("getting larger", "growing"),
            ("getting smaller", "shrinking"),
        ];
        let own = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        Vocabulary {
            tokens: words.iter().map(|s| s.to_string()).collect(),
            synonyms: own(&syn),
            phrases: own(&phrases),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn id(&self, canonical: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == canonical)
            .filter(|&i| i > 1)
            .map(|i| i as u32)
    }

    /// Lower-cases, splits on anything that is not a letter or digit, merges phrases and
    /// synonyms, and keeps at most `max_tokens` ids. A prompt with no known word encodes
    /// as `<empty>`.
    pub fn tokenize(&self, text: &str, max_tokens: usize) -> Tokens {
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut ids = Vec::new();
        let mut unknown = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if i + 1 < words.len() {
                let pair = format!("{} {}", words[i], words[i + 1]);
                if let Some((_, c)) = self.phrases.iter().find(|(p, _)| *p == pair) {
                    ids.extend(self.id(c));
                    i += 2;
                    continue;
                }
            }
            let w = words[i];
            let canonical = self
                .synonyms
                .iter()
                .find(|(s, _)| s == w)
                .map(|(_, c)| c.as_str())
                .unwrap_or(w);
            match self.id(canonical) {
                Some(id) => ids.push(id),
                None => unknown.push(w.to_string()),
            }
            i += 1;
        }
        ids.truncate(max_tokens);
        if ids.is_empty() {
            ids.push(EMPTY);
        }
        Tokens { ids, unknown }
    }
}

/// A batch of token sequences padded to one length, as tensors.
pub struct TokenBatch {
    /// `(B, L)` u32 ids.
    pub ids: Tensor,
    /// `(B, L)` f32, 1 for real tokens.
    pub mask: Tensor,
}

impl TokenBatch {
    pub fn new(seqs: &[Vec<u32>], max_tokens: usize, device: &Device) -> Result<Self> {
        let l = seqs
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(1)
            .clamp(1, max_tokens);
        let mut ids = Vec::with_capacity(seqs.len() * l);
        let mut mask = Vec::with_capacity(seqs.len() * l);
        for s in seqs {
            for j in 0..l {
                ids.push(s.get(j).copied().unwrap_or(PAD));
                mask.push(if j < s.len() { 1f32 } else { 0.0 });
            }
        }
        Ok(TokenBatch {
            ids: Tensor::from_vec(ids, (seqs.len(), l), device)?,
            mask: Tensor::from_vec(mask, (seqs.len(), l), device)?,
        })
    }
}

/// What the denoiser is conditioned on.
pub struct TextEmbedding {
    /// `(B, L, D)` per-token features for cross-attention.
    pub tokens: Tensor,
    /// `(B, 1, 1, L)` additive attention bias that hides padding.
    pub bias: Tensor,
    /// `(B, D)` masked mean of the token features.
    pub pooled: Tensor,
}

impl TextEmbedding {
    /// The embeddings of sequences `start..start + len` of the batch.
    pub fn narrow(&self, start: usize, len: usize) -> Result<TextEmbedding> {
        Ok(TextEmbedding {
            tokens: self.tokens.narrow(0, start, len)?,
            bias: self.bias.narrow(0, start, len)?,
            pooled: self.pooled.narrow(0, start, len)?,
        })
    }
}

struct EncoderLayer {
    norm1: LayerNorm,
    attn: SelfAttention,
    norm2: LayerNorm,
    mlp: Mlp,
}

/// Token embedding, fixed positions and a few pre-norm transformer layers.
pub struct TextEncoder {
    embed: Tensor,
    layers: Vec<EncoderLayer>,
    norm: LayerNorm,
    dim: usize,
}

impl TextEncoder {
    pub fn new(
        vocab: usize,
        dim: usize,
        layers: usize,
        heads: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let embed = vb.get_with_hints(
            (vocab, dim),
            "embed",
            Init::Randn {
                mean: 0.0,
                stdev: 0.5,
            },
        )?;
        let layers = (0..layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(EncoderLayer {
                    norm1: LayerNorm::new(dim, vb.pp("norm1"))?,
                    attn: SelfAttention::new(dim, heads, vb.pp("attn"))?,
                    norm2: LayerNorm::new(dim, vb.pp("norm2"))?,
                    mlp: Mlp::new(dim, 2 * dim, Activation::Gelu, vb.pp("mlp"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TextEncoder {
            embed,
            layers,
            norm: LayerNorm::new(dim, vb.pp("norm"))?,
            dim,
        })
    }

    pub fn forward(&self, batch: &TokenBatch, training: bool) -> Result<TextEmbedding> {
        let (b, l) = batch.ids.dims2()?;
        let positions: Vec<f32> = (0..l).map(|i| i as f32).collect();
        let pos = Tensor::from_vec(
            sincos(&positions, self.dim, 100.0),
            (1, l, self.dim),
            batch.ids.device(),
        )?;
        let mut x = self
            .embed
            .index_select(&batch.ids.flatten_all()?, 0)?
            .reshape((b, l, self.dim))?
            .broadcast_add(&pos)?;
        let bias = mask_bias(&batch.mask)?;
        for layer in &self.layers {
            x = (&x
                + layer
                    .attn
                    .forward(&layer.norm1.forward(&x)?, Some(&bias), training)?)?;
            x = (&x + layer.mlp.forward(&layer.norm2.forward(&x)?)?)?;
        }
        let x = self.norm.forward(&x)?;
        let m = batch.mask.unsqueeze(D::Minus1)?;
        let pooled = x
            .broadcast_mul(&m)?
            .sum(1)?
            .broadcast_div(&m.sum(1)?.to_dtype(DType::F32)?)?;
        Ok(TextEmbedding {
            tokens: x,
            bias,
            pooled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synonyms_and_phrases_share_tokens_and_unknown_words_are_reported() {
        let v = Vocabulary::starter();
        let a = v.tokenize("A red ball drifting left, dark blue background", 16);
        let b = v.tokenize("a red circle moving left on navy background", 16);
        assert_eq!(a.unknown, Vec::<String>::new());
        assert!(a.ids.contains(&v.id("navy").unwrap()));
        assert!(b.ids.contains(&v.id("circle").unwrap()));
        let c = v.tokenize("a majestic red ball getting bigger", 16);
        assert_eq!(c.unknown, vec!["majestic".to_string()]);
        assert!(c.ids.contains(&v.id("growing").unwrap()));
        assert_eq!(v.tokenize("zebra!", 16).ids, vec![EMPTY]);
    }

    #[test]
    fn padding_mask_marks_real_tokens() {
        let batch = TokenBatch::new(&[vec![5, 6, 7], vec![8]], 16, &Device::Cpu).unwrap();
        assert_eq!(batch.ids.dims(), &[2, 3]);
        let m: Vec<Vec<f32>> = batch.mask.to_vec2().unwrap();
        assert_eq!(m, vec![vec![1.0, 1.0, 1.0], vec![1.0, 0.0, 0.0]]);
    }
}
