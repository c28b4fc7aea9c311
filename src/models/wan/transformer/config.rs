//! `WanTransformerConfig`: the transformer's `config.json` as diffusers 0.42.1 writes it,
//! with the checks that keep out what this port does not run.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The only transformer class this port runs.
pub const TRANSFORMER_CLASS: &str = "WanTransformer3DModel";
/// The only query/key normalisation Wan2.1 uses (RMS over all heads' channels at once).
pub const QK_NORM: &str = "rms_norm_across_heads";

/// Largest size (width, count, length) a config may give: far above Wan2.1 14B's (5120 wide,
/// 40 layers), low enough that products of a few sizes cannot overflow.
pub const MAX_SIZE: usize = 1 << 20;

/// Why a transformer config was refused.
#[derive(Debug, thiserror::Error)]
pub enum TransformerConfigError {
    #[error("cannot read transformer config {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid transformer config: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported transformer config: {0}")]
    Unsupported(String),
}

/// `WanTransformer3DModel`'s constructor arguments. Missing fields take diffusers'
/// defaults; fields diffusers does not know are ignored, as diffusers ignores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WanTransformerConfig {
    /// `_class_name`; when present it must be [`TRANSFORMER_CLASS`].
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// `[frames, height, width]` of a patch.
    pub patch_size: Vec<usize>,
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub in_channels: usize,
    /// `null` (or 0) means `in_channels`, as in diffusers.
    pub out_channels: Option<usize>,
    pub text_dim: usize,
    /// Width of the sinusoidal timestep embedding.
    pub freq_dim: usize,
    pub ffn_dim: usize,
    pub num_layers: usize,
    /// Whether the blocks layer-normalise (with affine weights) before cross-attention.
    pub cross_attn_norm: bool,
    pub qk_norm: Option<String>,
    pub eps: f64,
    /// Image-conditioning width (Wan I2V); must be `null`.
    pub image_dim: Option<usize>,
    /// Image key/value width (Wan I2V); must be `null`.
    pub added_kv_proj_dim: Option<usize>,
    /// Longest patch-grid axis the rotary tables cover.
    pub rope_max_seq_len: usize,
    /// Image position embedding length (Wan FLF2V); must be `null`.
    pub pos_embed_seq_len: Option<usize>,
}

impl Default for WanTransformerConfig {
    /// diffusers 0.42.1's defaults (those of Wan2.1 14B).
    fn default() -> Self {
        Self {
            class_name: None,
            patch_size: vec![1, 2, 2],
            num_attention_heads: 40,
            attention_head_dim: 128,
            in_channels: 16,
            out_channels: Some(16),
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim: 13824,
            num_layers: 40,
            cross_attn_norm: true,
            qk_norm: Some(QK_NORM.to_string()),
            eps: 1e-6,
            image_dim: None,
            added_kv_proj_dim: None,
            rope_max_seq_len: 1024,
            pos_embed_seq_len: None,
        }
    }
}

impl WanTransformerConfig {
    /// Parses and [validates](Self::validate) a `config.json`'s bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TransformerConfigError> {
        let cfg: Self = serde_json::from_slice(bytes)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates `path` (the checkpoint's `transformer/config.json`).
    pub fn from_file(path: &Path) -> Result<Self, TransformerConfigError> {
        let bytes = std::fs::read(path).map_err(|source| TransformerConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&bytes)
    }

    /// Refuses what this port does not run: other classes, image conditioning (I2V,
    /// FLF2V), another query/key norm, patches that are not 3D, and degenerate sizes.
    pub fn validate(&self) -> Result<(), TransformerConfigError> {
        let unsupported = |m: String| Err(TransformerConfigError::Unsupported(m));
        if let Some(class) = &self.class_name
            && class != TRANSFORMER_CLASS
        {
            return unsupported(format!("class {class}; only {TRANSFORMER_CLASS} runs"));
        }
        if self.image_dim.is_some() || self.added_kv_proj_dim.is_some() {
            return unsupported(
                "image_dim / added_kv_proj_dim are set (image-to-video); only text-to-video runs"
                    .into(),
            );
        }
        if self.pos_embed_seq_len.is_some() {
            return unsupported(
                "pos_embed_seq_len is set (first/last-frame-to-video); only text-to-video runs"
                    .into(),
            );
        }
        if self.qk_norm.as_deref() != Some(QK_NORM) {
            return unsupported(format!("qk_norm {:?}; only {QK_NORM:?} runs", self.qk_norm));
        }
        if self.patch_size.len() != 3 || self.patch_size.contains(&0) {
            return unsupported(format!(
                "patch_size {:?}; expected 3 non-zero entries [frames, height, width]",
                self.patch_size
            ));
        }
        let sizes = [
            ("num_attention_heads", self.num_attention_heads),
            ("in_channels", self.in_channels),
            ("text_dim", self.text_dim),
            ("freq_dim", self.freq_dim),
            ("ffn_dim", self.ffn_dim),
            ("rope_max_seq_len", self.rope_max_seq_len),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return unsupported(format!("{name} is 0"));
        }
        let all_sizes = sizes.iter().copied().chain([
            ("attention_head_dim", self.attention_head_dim),
            ("out_channels", self.out_channels.unwrap_or(0)),
            ("num_layers", self.num_layers),
        ]);
        for (name, v) in all_sizes.chain(self.patch_size.iter().map(|&p| ("patch_size", p))) {
            if v > MAX_SIZE {
                return unsupported(format!("{name} {v} is above {MAX_SIZE}"));
            }
        }
        if self.attention_head_dim == 0 || !self.attention_head_dim.is_multiple_of(2) {
            return unsupported(format!(
                "attention_head_dim {} (rotary embeddings need an even head dim)",
                self.attention_head_dim
            ));
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return unsupported(format!("eps {}", self.eps));
        }
        Ok(())
    }

    /// Model width: heads × head dim.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Output channels (`in_channels` when the config leaves them unset or 0).
    pub fn out_channels(&self) -> usize {
        match self.out_channels {
            Some(c) if c > 0 => c,
            _ => self.in_channels,
        }
    }

    /// `[frames, height, width]` of a patch (meaningful after [`Self::validate`]).
    pub fn patch(&self) -> [usize; 3] {
        [0, 1, 2].map(|i| self.patch_size.get(i).copied().unwrap_or(1))
    }
}
