//! Building blocks of the Wan VAE: the per-chunk feature cache, residual blocks, the
//! single-head spatial attention, the up/down resampling layers and the middle block.

use candle_core::{D, DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::norm::ChannelRmsNorm;
use crate::nn::conv3d::{CausalConv3d, last_frames};

/// Frames of each causal conv's input kept for the next chunk.
pub const CACHE_T: usize = 2;

/// What one cache slot holds between chunks.
#[derive(Debug, Clone, Default)]
enum Slot {
    /// Not visited yet (first chunk).
    #[default]
    Empty,
    /// upsample3d skipped its time conv on the first chunk; it pads with zeros next time.
    Rep,
    /// The last frames of the layer's input in the previous chunk.
    Frames(Tensor),
}

/// The feature cache carried across chunks: one slot per cached layer, visited in the same
/// order in every chunk (diffusers' `feat_cache` list and `feat_idx` counter).
#[derive(Debug, Default)]
pub struct FeatCache {
    slots: Vec<Slot>,
    next: usize,
}

impl FeatCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewinds to the first slot before running the next chunk.
    pub fn start_chunk(&mut self) {
        self.next = 0;
    }

    /// Takes the next slot's state out (leaving it empty) and returns its index.
    fn take(&mut self) -> (usize, Slot) {
        if self.next == self.slots.len() {
            self.slots.push(Slot::Empty);
        }
        let i = self.next;
        self.next += 1;
        (i, std::mem::take(&mut self.slots[i]))
    }

    fn put(&mut self, i: usize, slot: Slot) {
        self.slots[i] = slot;
    }
}

/// Runs a causal conv on a chunk with the cached frames of the previous chunk, and caches the
/// last [`CACHE_T`] frames of this chunk's input (topped up with the previous chunk's last
/// frame when the chunk is a single frame).
pub fn cached_conv(conv: &CausalConv3d, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
    let (i, state) = cache.take();
    let prev = match state {
        Slot::Frames(p) => Some(p),
        Slot::Empty => None,
        Slot::Rep => candle_core::bail!("VAE cache slot {i} out of order"),
    };
    let mut keep = last_frames(x, CACHE_T)?;
    if keep.dim(2)? < CACHE_T
        && let Some(p) = &prev
    {
        keep = Tensor::cat(&[&last_frames(p, 1)?, &keep], 2)?;
    }
    let y = conv.forward(x, prev.as_ref())?;
    cache.put(i, Slot::Frames(keep));
    Ok(y)
}

/// Residual block: RMS norm, SiLU, causal 3×3×3 conv, twice, plus a (1×1×1 conv) shortcut.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    norm1: ChannelRmsNorm,
    conv1: CausalConv3d,
    norm2: ChannelRmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

/// A 3×3×3 causal conv with padding 1.
pub fn conv3x3x3(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<CausalConv3d> {
    CausalConv3d::new(vb, in_dim, out_dim, [3; 3], [1; 3], [1; 3])
}

/// A 1×1×1 conv.
pub fn conv1x1x1(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<CausalConv3d> {
    CausalConv3d::new(vb, in_dim, out_dim, [1; 3], [1; 3], [0; 3])
}

impl ResidualBlock {
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let shortcut = if in_dim != out_dim {
            Some(conv1x1x1(vb.pp("conv_shortcut"), in_dim, out_dim)?)
        } else {
            None
        };
        Ok(Self {
            norm1: ChannelRmsNorm::new(vb.pp("norm1"), in_dim, false)?,
            conv1: conv3x3x3(vb.pp("conv1"), in_dim, out_dim)?,
            norm2: ChannelRmsNorm::new(vb.pp("norm2"), out_dim, false)?,
            conv2: conv3x3x3(vb.pp("conv2"), out_dim, out_dim)?,
            shortcut,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let h = match &self.shortcut {
            Some(conv) => conv.forward(x, None)?,
            None => x.clone(),
        };
        let y = self.norm1.forward_silu(x)?;
        let y = cached_conv(&self.conv1, &y, cache)?;
        let y = self.norm2.forward_silu(&y)?;
        let y = cached_conv(&self.conv2, &y, cache)?;
        y + h
    }
}

/// Single-head self-attention over the pixels of each frame, with 1×1 convs to q, k, v and
/// back, and a residual connection.
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    norm: ChannelRmsNorm,
    to_qkv: CausalConv3d,
    proj: CausalConv3d,
    dim: usize,
}

impl AttentionBlock {
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            norm: ChannelRmsNorm::new(vb.pp("norm"), dim, true)?,
            to_qkv: CausalConv3d::new_2d(vb.pp("to_qkv"), dim, 3 * dim, 1, 1, 0)?,
            proj: CausalConv3d::new_2d(vb.pp("proj"), dim, dim, 1, 1, 0)?,
            dim,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let qkv = self.to_qkv.forward(&self.norm.forward(x)?, None)?;
        // [B, 3C, T, H, W] -> three [B·T, H·W, C] in f32.
        let part = |i: usize| -> Result<Tensor> {
            qkv.narrow(1, i * self.dim, self.dim)?
                .reshape((b, c, t, h * w))?
                .permute((0, 2, 3, 1))?
                .reshape((b * t, h * w, c))?
                .to_dtype(DType::F32)
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let scores = (q.matmul(&k.t()?)? * (1.0 / (c as f64).sqrt()))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs
            .matmul(&v)?
            .reshape((b, t, h * w, c))?
            .permute((0, 3, 1, 2))?
            .reshape((b, c, t, h, w))?
            .to_dtype(x.dtype())?;
        self.proj.forward(&y, None)? + x
    }
}

/// The resampling layers between resolutions.
#[derive(Debug, Clone)]
pub enum Resample {
    /// Nearest ×2 in space, then a 3×3 conv (to half the channels).
    Up2d { conv: CausalConv3d },
    /// As `Up2d`, preceded by a causal time conv that doubles the frames (not on the first chunk).
    Up3d {
        conv: CausalConv3d,
        time_conv: CausalConv3d,
    },
    /// Zero pad right and bottom by one, then a stride-2 3×3 conv.
    Down2d { conv: CausalConv3d },
    /// As `Down2d`, followed by a stride-2 time conv over the previous chunk's last frame and
    /// this chunk (not on the first chunk).
    Down3d {
        conv: CausalConv3d,
        time_conv: CausalConv3d,
    },
}

impl Resample {
    /// `vb` is the resample module (its 2D conv is `resample.1`); `dim` its input channels;
    /// upsampling convs go to `dim / 2` channels.
    pub fn up(vb: VarBuilder, dim: usize, temporal: bool) -> Result<Self> {
        let conv = CausalConv3d::new_2d(vb.pp("resample.1"), dim, dim / 2, 3, 1, 1)?;
        Ok(if temporal {
            let time_conv = CausalConv3d::new(
                vb.pp("time_conv"),
                dim,
                2 * dim,
                [3, 1, 1],
                [1; 3],
                [1, 0, 0],
            )?;
            Self::Up3d { conv, time_conv }
        } else {
            Self::Up2d { conv }
        })
    }

    pub fn down(vb: VarBuilder, dim: usize, temporal: bool) -> Result<Self> {
        let conv = CausalConv3d::new_2d(vb.pp("resample.1"), dim, dim, 3, 2, 0)?;
        Ok(if temporal {
            let time_conv =
                CausalConv3d::new(vb.pp("time_conv"), dim, dim, [3, 1, 1], [2, 1, 1], [0; 3])?;
            Self::Down3d { conv, time_conv }
        } else {
            Self::Down2d { conv }
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        match self {
            Self::Up2d { conv } => upsample_frames(conv, x),
            Self::Up3d { conv, time_conv } => {
                let x = upsample_time(time_conv, x, cache)?;
                upsample_frames(conv, &x)
            }
            Self::Down2d { conv } => downsample_frames(conv, x),
            Self::Down3d { conv, time_conv } => {
                let x = downsample_frames(conv, x)?;
                let (i, state) = cache.take();
                let keep = last_frames(&x, 1)?;
                let y = match state {
                    Slot::Empty => x,
                    Slot::Frames(prev) => {
                        time_conv.forward(&Tensor::cat(&[&last_frames(&prev, 1)?, &x], 2)?, None)?
                    }
                    Slot::Rep => candle_core::bail!("VAE cache slot {i} out of order"),
                };
                cache.put(i, Slot::Frames(keep));
                Ok(y)
            }
        }
    }
}

/// upsample3d's time step: on the first chunk nothing (the slot becomes `Rep`); afterwards a
/// causal conv to twice the channels whose two halves become interleaved frames.
fn upsample_time(time_conv: &CausalConv3d, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
    let (i, state) = cache.take();
    let prev = match state {
        Slot::Empty => {
            cache.put(i, Slot::Rep);
            return Ok(x.clone());
        }
        Slot::Rep => None,
        Slot::Frames(p) => Some(p),
    };
    let mut keep = last_frames(x, CACHE_T)?;
    if keep.dim(2)? < CACHE_T {
        let before = match &prev {
            Some(p) => last_frames(p, 1)?,
            None => keep.zeros_like()?,
        };
        keep = Tensor::cat(&[&before, &keep], 2)?;
    }
    let y = time_conv.forward(x, prev.as_ref())?;
    cache.put(i, Slot::Frames(keep));
    let (b, c, t, h, w) = x.dims5()?;
    y.reshape((b, 2, c, t, h, w))?
        .permute((0, 2, 3, 1, 4, 5))?
        .reshape((b, c, 2 * t, h, w))
}

/// Nearest-neighbour ×2 of every frame, then the frame conv.
fn upsample_frames(conv: &CausalConv3d, x: &Tensor) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    let up = x
        .reshape((b, c * t, h, w))?
        .upsample_nearest2d(2 * h, 2 * w)?
        .reshape((b, c, t, 2 * h, 2 * w))?;
    conv.forward(&up, None)
}

/// Zero pad right and bottom by one, then the (stride-2) frame conv.
fn downsample_frames(conv: &CausalConv3d, x: &Tensor) -> Result<Tensor> {
    let x = x
        .pad_with_zeros(D::Minus2, 0, 1)?
        .pad_with_zeros(D::Minus1, 0, 1)?;
    conv.forward(&x, None)
}

/// The middle block: residual, attention, residual.
#[derive(Debug, Clone)]
pub struct MidBlock {
    resnet0: ResidualBlock,
    attention: AttentionBlock,
    resnet1: ResidualBlock,
}

impl MidBlock {
    pub fn new(vb: VarBuilder, dim: usize) -> Result<Self> {
        Ok(Self {
            resnet0: ResidualBlock::new(vb.pp("resnets.0"), dim, dim)?,
            attention: AttentionBlock::new(vb.pp("attentions.0"), dim)?,
            resnet1: ResidualBlock::new(vb.pp("resnets.1"), dim, dim)?,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let x = self.resnet0.forward(x, cache)?;
        let x = self.attention.forward(&x)?;
        self.resnet1.forward(&x, cache)
    }
}
