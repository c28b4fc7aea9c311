//! The Wan VAE's encoder and decoder stacks (`encoder.*` and `decoder.*` checkpoint keys),
//! each run on one chunk of frames at a time through a [`FeatCache`].

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::blocks::{FeatCache, MidBlock, Resample, ResidualBlock, cached_conv, conv3x3x3};
use super::config::WanVaeConfig;
use super::norm::ChannelRmsNorm;
use crate::nn::conv3d::CausalConv3d;

/// One entry of the encoder's flat `down_blocks` list.
#[derive(Debug, Clone)]
enum DownLayer {
    Residual(Box<ResidualBlock>),
    Resample(Box<Resample>),
}

/// `WanEncoder3d`: video `[B, 3, T, H, W]` to `[B, 2·z_dim, T', H/8, W/8]` (before `quant_conv`).
#[derive(Debug, Clone)]
pub struct Encoder {
    conv_in: CausalConv3d,
    down_blocks: Vec<DownLayer>,
    mid_block: MidBlock,
    norm_out: ChannelRmsNorm,
    conv_out: CausalConv3d,
}

impl Encoder {
    pub fn new(vb: VarBuilder, cfg: &WanVaeConfig) -> Result<Self> {
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| cfg.base_dim * m)
            .collect();
        let conv_in = conv3x3x3(vb.pp("conv_in"), cfg.in_channels, dims[0])?;
        let vb_down = vb.pp("down_blocks");
        let mut down_blocks = Vec::new();
        let last = cfg.dim_mult.len() - 1;
        for (i, pair) in dims.windows(2).enumerate() {
            let (mut in_dim, out_dim) = (pair[0], pair[1]);
            for _ in 0..cfg.num_res_blocks {
                let vb_i = vb_down.pp(down_blocks.len());
                down_blocks.push(DownLayer::Residual(Box::new(ResidualBlock::new(
                    vb_i, in_dim, out_dim,
                )?)));
                in_dim = out_dim;
            }
            if i != last {
                let vb_i = vb_down.pp(down_blocks.len());
                let temporal = cfg.temperal_downsample[i];
                down_blocks.push(DownLayer::Resample(Box::new(Resample::down(
                    vb_i, out_dim, temporal,
                )?)));
            }
        }
        let top = dims[dims.len() - 1];
        Ok(Self {
            conv_in,
            down_blocks,
            mid_block: MidBlock::new(vb.pp("mid_block"), top)?,
            norm_out: ChannelRmsNorm::new(vb.pp("norm_out"), top, false)?,
            conv_out: conv3x3x3(vb.pp("conv_out"), top, 2 * cfg.z_dim)?,
        })
    }

    /// Encodes one chunk (the first frame, then 4 frames at a time).
    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        cache.start_chunk();
        let mut x = cached_conv(&self.conv_in, x, cache)?;
        for layer in &self.down_blocks {
            x = match layer {
                DownLayer::Residual(block) => block.forward(&x, cache)?,
                DownLayer::Resample(block) => block.forward(&x, cache)?,
            };
        }
        let x = self.mid_block.forward(&x, cache)?;
        let x = self.norm_out.forward_silu(&x)?;
        cached_conv(&self.conv_out, &x, cache)
    }
}

/// One `decoder.up_blocks.N`: residual blocks, then an optional upsampler.
#[derive(Debug, Clone)]
struct UpBlock {
    resnets: Vec<ResidualBlock>,
    upsampler: Option<Resample>,
}

/// `WanDecoder3d`: latents `[B, z_dim, F, h, w]` (after `post_quant_conv`) to video.
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: CausalConv3d,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    norm_out: ChannelRmsNorm,
    conv_out: CausalConv3d,
}

impl Decoder {
    pub fn new(vb: VarBuilder, cfg: &WanVaeConfig) -> Result<Self> {
        let base = cfg.decoder_base_dim();
        let top = cfg.dim_mult[cfg.dim_mult.len() - 1];
        let dims: Vec<usize> = std::iter::once(top)
            .chain(cfg.dim_mult.iter().rev().copied())
            .map(|m| base * m)
            .collect();
        let temporal_up: Vec<bool> = cfg.temperal_downsample.iter().rev().copied().collect();
        let last = cfg.dim_mult.len() - 1;
        let mut up_blocks = Vec::with_capacity(cfg.dim_mult.len());
        for (i, pair) in dims.windows(2).enumerate() {
            let vb_i = vb.pp("up_blocks").pp(i);
            // Each upsampler halves the channels, so later blocks start from half.
            let (mut in_dim, out_dim) = (if i > 0 { pair[0] / 2 } else { pair[0] }, pair[1]);
            let mut resnets = Vec::with_capacity(cfg.num_res_blocks + 1);
            for j in 0..=cfg.num_res_blocks {
                resnets.push(ResidualBlock::new(
                    vb_i.pp("resnets").pp(j),
                    in_dim,
                    out_dim,
                )?);
                in_dim = out_dim;
            }
            let upsampler = if i != last {
                let vb_up = vb_i.pp("upsamplers.0");
                Some(Resample::up(vb_up, out_dim, temporal_up[i])?)
            } else {
                None
            };
            up_blocks.push(UpBlock { resnets, upsampler });
        }
        let out = dims[dims.len() - 1];
        Ok(Self {
            conv_in: conv3x3x3(vb.pp("conv_in"), cfg.z_dim, dims[0])?,
            mid_block: MidBlock::new(vb.pp("mid_block"), dims[0])?,
            up_blocks,
            norm_out: ChannelRmsNorm::new(vb.pp("norm_out"), out, false)?,
            conv_out: conv3x3x3(vb.pp("conv_out"), out, cfg.out_channels)?,
        })
    }

    /// Decodes one latent frame (the first gives 1 video frame, later ones 4 for Wan2.1).
    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        cache.start_chunk();
        let x = cached_conv(&self.conv_in, x, cache)?;
        let mut x = self.mid_block.forward(&x, cache)?;
        for block in &self.up_blocks {
            for resnet in &block.resnets {
                x = resnet.forward(&x, cache)?;
            }
            if let Some(up) = &block.upsampler {
                x = up.forward(&x, cache)?;
            }
        }
        let x = self.norm_out.forward_silu(&x)?;
        cached_conv(&self.conv_out, &x, cache)
    }
}
