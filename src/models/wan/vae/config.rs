//! `WanVaeConfig`: the checkpoint's `vae/config.json` for diffusers' `AutoencoderKLWan`, with
//! the Wan2.1 variant checked (the Wan2.2 residual/patchified variants are rejected).

use std::path::Path;

use serde::Deserialize;

/// Most resolution stages (`dim_mult` entries) supported: 8 gives up to 128 pixels and
/// 128 frames per latent cell.
pub const MAX_STAGES: usize = 8;
/// Largest width or count a config may give, so that products of a few cannot overflow.
pub const MAX_SIZE: usize = 1 << 20;

/// Why a VAE config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VaeConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid VAE config: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("unsupported VAE config: {0}")]
    Unsupported(String),
    #[error("inconsistent VAE config: {0}")]
    Invalid(String),
}

/// The fields of `AutoencoderKLWan`'s config that this port reads. Missing fields take
/// diffusers 0.42.1's defaults; unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WanVaeConfig {
    #[serde(default = "defaults::base_dim")]
    pub base_dim: usize,
    /// The decoder's base width when it differs from `base_dim`.
    #[serde(default)]
    pub decoder_base_dim: Option<usize>,
    #[serde(default = "defaults::z_dim")]
    pub z_dim: usize,
    #[serde(default = "defaults::dim_mult")]
    pub dim_mult: Vec<usize>,
    #[serde(default = "defaults::num_res_blocks")]
    pub num_res_blocks: usize,
    /// Encoder resolutions with extra attention blocks; only `[]` (Wan2.1) is supported.
    #[serde(default)]
    pub attn_scales: Vec<f64>,
    /// Per down stage, whether it also halves time (the decoder mirrors it). Diffusers' spelling.
    #[serde(default = "defaults::temperal_downsample")]
    pub temperal_downsample: Vec<bool>,
    /// Training-only; inference ignores it.
    #[serde(default)]
    pub dropout: f64,
    #[serde(default = "defaults::latents_mean")]
    pub latents_mean: Vec<f64>,
    #[serde(default = "defaults::latents_std")]
    pub latents_std: Vec<f64>,
    #[serde(default)]
    pub is_residual: bool,
    #[serde(default = "defaults::channels")]
    pub in_channels: usize,
    #[serde(default = "defaults::channels")]
    pub out_channels: usize,
    #[serde(default)]
    pub patch_size: Option<usize>,
    /// Used by the pipeline for frame counts; the architecture fixes the real factor.
    #[serde(default = "defaults::scale_factor_temporal")]
    pub scale_factor_temporal: Option<usize>,
    #[serde(default = "defaults::scale_factor_spatial")]
    pub scale_factor_spatial: Option<usize>,
}

mod defaults {
    pub fn base_dim() -> usize {
        96
    }
    pub fn z_dim() -> usize {
        16
    }
    pub fn dim_mult() -> Vec<usize> {
        vec![1, 2, 4, 4]
    }
    pub fn num_res_blocks() -> usize {
        2
    }
    pub fn temperal_downsample() -> Vec<bool> {
        vec![false, true, true]
    }
    pub fn scale_factor_temporal() -> Option<usize> {
        Some(4)
    }
    pub fn scale_factor_spatial() -> Option<usize> {
        Some(8)
    }
    pub fn channels() -> usize {
        3
    }
    pub fn latents_mean() -> Vec<f64> {
        vec![
            -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134, -0.0715,
            0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
        ]
    }
    pub fn latents_std() -> Vec<f64> {
        vec![
            2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526, 2.8652,
            1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
        ]
    }
}

impl Default for WanVaeConfig {
    /// diffusers' defaults, which are Wan2.1's VAE.
    fn default() -> Self {
        Self {
            base_dim: defaults::base_dim(),
            decoder_base_dim: None,
            z_dim: defaults::z_dim(),
            dim_mult: defaults::dim_mult(),
            num_res_blocks: defaults::num_res_blocks(),
            attn_scales: Vec::new(),
            temperal_downsample: defaults::temperal_downsample(),
            dropout: 0.0,
            latents_mean: defaults::latents_mean(),
            latents_std: defaults::latents_std(),
            is_residual: false,
            in_channels: 3,
            out_channels: 3,
            patch_size: None,
            scale_factor_temporal: Some(4),
            scale_factor_spatial: Some(8),
        }
    }
}

impl WanVaeConfig {
    /// Parses and validates a `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, VaeConfigError> {
        let cfg: Self = serde_json::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self, VaeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| VaeConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Rejects what diffusers supports but this port does not, and inconsistent sizes.
    pub fn validate(&self) -> Result<(), VaeConfigError> {
        let unsupported = |m: String| Err(VaeConfigError::Unsupported(m));
        let invalid = |m: String| Err(VaeConfigError::Invalid(m));
        if self.is_residual {
            return unsupported(
                "is_residual = true (the Wan2.2 residual VAE) is not supported; only Wan2.1's"
                    .into(),
            );
        }
        if let Some(p) = self.patch_size.filter(|&p| p != 1) {
            return unsupported(format!(
                "patch_size = {p} (the Wan2.2 patchified VAE) is not supported"
            ));
        }
        if !self.attn_scales.is_empty() {
            return unsupported(format!(
                "attn_scales = {:?}: encoder attention blocks are not supported (diffusers \
                 0.42.1 cannot run them either); Wan2.1 uses []",
                self.attn_scales
            ));
        }
        if self.in_channels != 3 || self.out_channels != 3 {
            return unsupported(format!(
                "in_channels = {}, out_channels = {}: only RGB video (3 and 3) is supported",
                self.in_channels, self.out_channels
            ));
        }
        if self.dim_mult.is_empty() || self.dim_mult.contains(&0) {
            return invalid(format!(
                "dim_mult {:?} must be non-empty and positive",
                self.dim_mult
            ));
        }
        if self.dim_mult.len() > MAX_STAGES {
            return unsupported(format!(
                "dim_mult has {} stages; at most {MAX_STAGES} are supported (Wan2.1 has 4)",
                self.dim_mult.len()
            ));
        }
        if self.base_dim == 0 || self.z_dim == 0 || self.decoder_base_dim == Some(0) {
            return invalid("base_dim, decoder_base_dim and z_dim must be positive".into());
        }
        if self.num_res_blocks == 0 {
            return invalid("num_res_blocks must be at least 1".into());
        }
        let sizes = [
            ("base_dim", self.base_dim),
            ("decoder_base_dim", self.decoder_base_dim()),
            ("z_dim", self.z_dim),
            ("num_res_blocks", self.num_res_blocks),
        ];
        let multipliers = self.dim_mult.iter().map(|&m| ("dim_mult", m));
        if let Some((name, v)) = sizes
            .into_iter()
            .chain(multipliers)
            .find(|&(_, v)| v > MAX_SIZE)
        {
            return unsupported(format!("{name} {v} is above {MAX_SIZE}"));
        }
        if self.temperal_downsample.len() + 1 != self.dim_mult.len() {
            return invalid(format!(
                "temperal_downsample has {} entries, dim_mult {} (expected one fewer)",
                self.temperal_downsample.len(),
                self.dim_mult.len()
            ));
        }
        for (name, v) in [
            ("latents_mean", &self.latents_mean),
            ("latents_std", &self.latents_std),
        ] {
            if v.len() != self.z_dim {
                return invalid(format!(
                    "{name} has {} values, z_dim is {}",
                    v.len(),
                    self.z_dim
                ));
            }
        }
        if self.latents_std.iter().any(|s| !s.is_finite() || *s == 0.0) {
            return invalid("latents_std values must be finite and non-zero".into());
        }
        Ok(())
    }

    /// The decoder's base width.
    pub fn decoder_base_dim(&self) -> usize {
        self.decoder_base_dim.unwrap_or(self.base_dim)
    }

    /// Pixels per latent cell along height and width (8 for Wan2.1).
    pub fn spatial_compression(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }

    /// Frames per latent frame after the first (4 for Wan2.1).
    pub fn temporal_compression(&self) -> usize {
        1 << self.temperal_downsample.iter().filter(|&&t| t).count()
    }
}
