//! The Wan2.1 video VAE (diffusers' `AutoencoderKLWan`): chunked causal encoding to a
//! diagonal Gaussian posterior and frame-by-frame decoding with a bounded feature cache.

mod blocks;
mod coder;
pub mod config;
mod norm;

use std::ops::ControlFlow;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::conv3d::{CausalConv3d, matmul_dtype};
use blocks::{FeatCache, conv1x1x1};
use coder::{Decoder, Encoder};
pub use config::{VaeConfigError, WanVaeConfig};

/// Frames per encoder chunk after the first frame.
const ENCODE_CHUNK: usize = 4;

/// The Wan VAE: `encoder`, `quant_conv`, `post_quant_conv` and `decoder` as in the checkpoint
/// (the first two absent when loaded by [`AutoencoderKlWan::decoder_only`]).
#[derive(Debug, Clone)]
pub struct AutoencoderKlWan {
    config: WanVaeConfig,
    encoder: Option<(Encoder, CausalConv3d)>,
    decoder: Decoder,
    post_quant_conv: CausalConv3d,
    dtype: DType,
    device: Device,
}

impl AutoencoderKlWan {
    /// Builds the VAE from `vb` (the `vae/` safetensors), which also sets the weights' dtype
    /// (f32 or bf16; on the CPU the products run in f32 either way, norms always do).
    pub fn new(config: WanVaeConfig, vb: VarBuilder) -> Result<Self> {
        Self::load(config, vb, true)
    }

    /// The VAE without its encoder, for text-to-video: the encoder's weights are not read
    /// (on the CPU its transformed convolution weights would take about 0.8 GB for Wan2.1),
    /// and [`AutoencoderKlWan::encode`] fails.
    pub fn decoder_only(config: WanVaeConfig, vb: VarBuilder) -> Result<Self> {
        Self::load(config, vb, false)
    }

    fn load(config: WanVaeConfig, vb: VarBuilder, with_encoder: bool) -> Result<Self> {
        config
            .validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let z = config.z_dim;
        let encoder = if with_encoder {
            Some((
                Encoder::new(vb.pp("encoder"), &config)?,
                conv1x1x1(vb.pp("quant_conv"), 2 * z, 2 * z)?,
            ))
        } else {
            None
        };
        Ok(Self {
            encoder,
            decoder: Decoder::new(vb.pp("decoder"), &config)?,
            post_quant_conv: conv1x1x1(vb.pp("post_quant_conv"), z, z)?,
            dtype: matmul_dtype(vb.device(), vb.dtype()),
            device: vb.device().clone(),
            config,
        })
    }

    pub fn config(&self) -> &WanVaeConfig {
        &self.config
    }

    /// The dtype activations are computed in (and outputs returned in).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Per-channel latent means from the config (`latents_mean`).
    pub fn latents_mean(&self) -> &[f64] {
        &self.config.latents_mean
    }

    /// Per-channel latent standard deviations from the config (`latents_std`).
    pub fn latents_std(&self) -> &[f64] {
        &self.config.latents_std
    }

    /// `[1, z_dim, 1, 1, 1]` f32 tensors of the means and of `1 / std`, as `WanPipeline` builds.
    fn latent_stats(&self) -> Result<(Tensor, Tensor)> {
        let z = self.config.z_dim;
        let mean: Vec<f32> = self.config.latents_mean.iter().map(|&m| m as f32).collect();
        let inv_std: Vec<f32> = self
            .config
            .latents_std
            .iter()
            .map(|&s| 1.0 / s as f32)
            .collect();
        Ok((
            Tensor::from_vec(mean, (1, z, 1, 1, 1), &self.device)?,
            Tensor::from_vec(inv_std, (1, z, 1, 1, 1), &self.device)?,
        ))
    }

    /// Turns the transformer's normalised latents into VAE latents, per channel
    /// `latents / (1 / std) + mean` (so `latents · std + mean`), in f32, as `WanPipeline` does
    /// before decoding.
    pub fn denormalize_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let (mean, inv_std) = self.latent_stats()?;
        latents
            .to_dtype(DType::F32)?
            .broadcast_div(&inv_std)?
            .broadcast_add(&mean)
    }

    /// The inverse: VAE latents (e.g. a posterior mean) to the transformer's normalised space,
    /// `(latents - mean) · (1 / std)`, in f32.
    pub fn normalize_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let (mean, inv_std) = self.latent_stats()?;
        latents
            .to_dtype(DType::F32)?
            .broadcast_sub(&mean)?
            .broadcast_mul(&inv_std)
    }

    /// Decodes VAE latents `z` `[B, z_dim, F, h, w]` (already denormalised, see
    /// [`Self::denormalize_latents`]) to video `[B, 3, 1 + 4·(F-1), 8h, 8w]` clamped to
    /// `[-1, 1]`, one latent frame at a time. After each latent frame `on_chunk(done, F)` is
    /// called; if it breaks, decoding stops and `Ok(None)` is returned.
    pub fn decode(
        &self,
        z: &Tensor,
        on_chunk: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Option<Tensor>> {
        let (_, c, frames, _, _) = z.dims5()?;
        if c != self.config.z_dim || frames == 0 {
            candle_core::bail!(
                "VAE decode expects [B, {}, F>0, h, w] latents, got {:?}",
                self.config.z_dim,
                z.shape()
            )
        }
        let x = self
            .post_quant_conv
            .forward(&z.to_dtype(self.dtype)?, None)?;
        let mut cache = FeatCache::new();
        let mut chunks = Vec::with_capacity(frames);
        for i in 0..frames {
            let out = self.decoder.forward(&x.narrow(2, i, 1)?, &mut cache)?;
            chunks.push(out.clamp(-1f32, 1f32)?);
            if on_chunk(i + 1, frames).is_break() {
                return Ok(None);
            }
        }
        Ok(Some(Tensor::cat(&chunks, 2)?))
    }

    /// Encodes video `x` `[B, 3, T, H, W]` in `[-1, 1]` to the posterior's `(mean, logvar)`,
    /// each `[B, z_dim, 1 + (T-1)/4, H/8, W/8]`; the log-variance is clamped to `[-30, 20]`.
    /// The first frame is encoded alone, then 4 frames at a time; as in diffusers, trailing
    /// frames that do not fill a chunk of 4 are ignored.
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let Some((encoder, quant_conv)) = &self.encoder else {
            candle_core::bail!("this VAE was loaded without its encoder (decoding only)");
        };
        let (_, c, frames, _, _) = x.dims5()?;
        if c != self.config.in_channels || frames == 0 {
            candle_core::bail!("VAE encode expects [B, 3, T>0, H, W], got {:?}", x.shape())
        }
        let x = x.to_dtype(self.dtype)?;
        let chunks = 1 + (frames - 1) / ENCODE_CHUNK;
        let mut cache = FeatCache::new();
        let mut outs = Vec::with_capacity(chunks);
        for i in 0..chunks {
            let chunk = if i == 0 {
                x.narrow(2, 0, 1)?
            } else {
                x.narrow(2, 1 + ENCODE_CHUNK * (i - 1), ENCODE_CHUNK)?
            };
            outs.push(encoder.forward(&chunk, &mut cache)?);
        }
        let h = quant_conv.forward(&Tensor::cat(&outs, 2)?, None)?;
        let z = self.config.z_dim;
        let mean = h.narrow(1, 0, z)?;
        let logvar = h.narrow(1, z, z)?.clamp(-30f32, 20f32)?;
        Ok((mean, logvar))
    }
}

#[cfg(test)]
#[path = "vae_tests.rs"]
mod tests;
