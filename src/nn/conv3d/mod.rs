//! Causal 3D convolution (the Wan VAE's `WanCausalConv3d`) built from matrix products over
//! frames, since candle has no conv3d: all temporal padding goes in front of the clip (or is
//! replaced by the previous chunk's cached frames), spatial padding is symmetric.
//!
//! Two methods, both exact in exact arithmetic:
//! - 3×3 spatial kernels with spatial stride 1 on the CPU (f32 products) use Winograd
//!   F(4×4, 3×3) ([`winograd`]): a quarter of the multiplications of a direct convolution, at
//!   the price of about 3e-6 relative rounding error per layer (instead of about 1e-7) and
//!   transformed weights 4× the size of the originals;
//! - everything else (and every other device) unfolds each padded input frame once into a
//!   `[kh·kw·C, Ho·Wo]` column matrix (row order: kernel row, kernel column, channel); each
//!   output frame is the sum over the `kt` temporal taps of one `[O, kh·kw·C] × [kh·kw·C, Ho·Wo]`
//!   product, already channel-first, with at most `kt` unfolded frames alive at once.

mod winograd;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use winograd::{Frame, Winograd};

/// A 3D convolution that is causal in time, optionally fed the previous chunk's last frames.
///
/// Weights follow PyTorch's `nn.Conv3d`: `weight` `[out, in, kt, kh, kw]` and `bias` `[out]`.
/// The constructor's `padding` is `nn.Conv3d`'s: the time padding `2·pt` all goes in front,
/// the spatial padding `ph`/`pw` on both sides.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    method: Method,
    dtype: DType,
    in_channels: usize,
    out_channels: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
}

/// How the products are organised (see the module docs).
#[derive(Debug, Clone)]
enum Method {
    Unfold {
        /// `[kt, out, kh·kw·in]`: one matrix per temporal tap.
        taps: Tensor,
        /// `[out, 1, 1]`.
        bias: Option<Tensor>,
    },
    Winograd(Winograd),
}

/// Matrix products on this device in `dtype` (candle's CPU matmul has no bf16 kernel).
pub fn matmul_dtype(device: &Device, dtype: DType) -> DType {
    match (device, dtype) {
        (Device::Cpu, DType::BF16) => DType::F32,
        _ => dtype,
    }
}

impl CausalConv3d {
    /// Loads `weight` and `bias` under `vb`. The weights are kept in [`matmul_dtype`] of the
    /// VarBuilder's device and dtype; inputs must have that dtype.
    pub fn new(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> Result<Self> {
        let [kt, kh, kw] = kernel;
        let weight = vb.get((out_channels, in_channels, kt, kh, kw), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        Self::from_weights(weight, Some(bias), stride, padding)
    }

    /// A PyTorch `nn.Conv2d` (`weight` `[out, in, kh, kw]`) applied to every frame: a
    /// [`CausalConv3d`] with one temporal tap.
    pub fn new_2d(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        Self::from_weights(
            weight.unsqueeze(2)?,
            Some(bias),
            [1, stride, stride],
            [0, padding, padding],
        )
    }

    /// Builds the layer from a `[out, in, kt, kh, kw]` weight and optional `[out]` bias,
    /// picking the fastest exact method for the kernel and device.
    pub fn from_weights(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> Result<Self> {
        let (_, _, _, kh, kw) = weight.dims5()?;
        let dtype = matmul_dtype(weight.device(), weight.dtype());
        let winograd = weight.device().is_cpu()
            && dtype == DType::F32
            && (kh, kw) == (3, 3)
            && stride[1..] == [1, 1];
        Self::build(weight, bias, stride, padding, winograd)
    }

    /// As [`Self::from_weights`], always with the unfold method (for tests).
    #[cfg(test)]
    fn from_weights_unfold(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: [usize; 3],
        padding: [usize; 3],
    ) -> Result<Self> {
        Self::build(weight, bias, stride, padding, false)
    }

    fn build(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: [usize; 3],
        padding: [usize; 3],
        winograd: bool,
    ) -> Result<Self> {
        let (out_channels, in_channels, kt, kh, kw) = weight.dims5()?;
        if stride.contains(&0) {
            candle_core::bail!("conv3d stride must be positive, got {stride:?}")
        }
        let dtype = matmul_dtype(weight.device(), weight.dtype());
        let method = if winograd {
            Method::Winograd(Winograd::new(&weight, bias.as_ref(), stride[0])?)
        } else {
            let taps = weight
                .to_dtype(dtype)?
                .permute((2, 0, 3, 4, 1))?
                .reshape((kt, out_channels, kh * kw * in_channels))?
                .contiguous()?;
            let bias = match bias {
                Some(b) => Some(b.to_dtype(dtype)?.reshape((out_channels, 1, 1))?),
                None => None,
            };
            Method::Unfold { taps, bias }
        };
        Ok(Self {
            method,
            dtype,
            in_channels,
            out_channels,
            kernel: [kt, kh, kw],
            stride,
            padding,
        })
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Frames of zero padding in front of the clip when there is no cache (`2·pt`).
    pub fn causal_padding(&self) -> usize {
        2 * self.padding[0]
    }

    /// The dtype inputs must have.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Convolves `x` `[B, in, T, H, W]`. With `cache` `[B, in, Tc, H, W]` (the previous
    /// chunk's last frames), those frames stand in for the last `Tc` frames of the causal zero
    /// padding (only the last `2·pt` of them are used); layers without temporal padding
    /// ignore it, as diffusers does.
    pub fn forward(&self, x: &Tensor, cache: Option<&Tensor>) -> Result<Tensor> {
        let (b, c, _, _, _) = x.dims5()?;
        if c != self.in_channels {
            candle_core::bail!(
                "conv3d expects {} input channels, got {:?}",
                self.in_channels,
                x.shape()
            )
        }
        let x = x.to_dtype(self.dtype())?;
        let front = self.causal_padding();
        let mut parts = Vec::with_capacity(3);
        let mut zeros = front;
        if let Some(cache) = cache.filter(|_| front > 0) {
            let tc = cache.dim(2)?;
            let used = tc.min(front);
            parts.push(cache.to_dtype(self.dtype())?.narrow(2, tc - used, used)?);
            zeros -= used;
        }
        if let Method::Winograd(wg) = &self.method {
            // The transform reads the cache, the input and the zero padding in place.
            let t = x.dim(2)?;
            let tc = parts.first().map(|c| c.dim(2)).transpose()?.unwrap_or(0);
            let frames: Vec<Frame> = std::iter::repeat_n(Frame::Zero, zeros)
                .chain((0..tc).map(Frame::Cache))
                .chain((0..t).map(Frame::Input))
                .collect();
            let [_, ph, pw] = self.padding;
            return wg.forward(&x, parts.first(), &frames, (ph, pw));
        }
        if zeros > 0 {
            let (_, _, _, h, w) = x.dims5()?;
            parts.insert(
                0,
                Tensor::zeros((b, c, zeros, h, w), x.dtype(), x.device())?,
            );
        }
        parts.push(x);
        let x = Tensor::cat(&parts, 2)?;
        let [_, ph, pw] = self.padding;
        let x = x.pad_with_zeros(3, ph, ph)?.pad_with_zeros(4, pw, pw)?;
        self.forward_valid(&x)
    }

    /// Convolution without any padding of `x` `[B, in, T, H, W]`.
    pub fn forward_valid(&self, x: &Tensor) -> Result<Tensor> {
        let (taps, bias) = match &self.method {
            Method::Unfold { taps, bias } => (taps, bias),
            Method::Winograd(wg) => {
                let x = x.to_dtype(self.dtype())?;
                let frames: Vec<Frame> = (0..x.dim(2)?).map(Frame::Input).collect();
                return wg.forward(&x, None, &frames, (0, 0));
            }
        };
        let (b, c, t, h, w) = x.dims5()?;
        let [kt, kh, kw] = self.kernel;
        let [st, sh, sw] = self.stride;
        if t < kt || h < kh || w < kw {
            candle_core::bail!(
                "conv3d input {:?} smaller than kernel {:?}",
                x.shape(),
                self.kernel
            )
        }
        let (t_out, h_out, w_out) = ((t - kt) / st + 1, (h - kh) / sh + 1, (w - kw) / sw + 1);
        let x = x.to_dtype(self.dtype())?;
        let mut batches = Vec::with_capacity(b);
        if kh == 1 && kw == 1 && sh == 1 && sw == 1 {
            // Pointwise in space: the frames are the column matrices.
            let x = x.reshape((b, c, t, h * w))?;
            if kt == 1 && st == 1 {
                let w0 = taps.get(0)?;
                for bi in 0..b {
                    let xb = x.get(bi)?.reshape((c, t * h * w))?;
                    batches.push(w0.matmul(&xb)?.reshape((self.out_channels, t, h * w))?);
                }
            } else {
                for bi in 0..b {
                    let xb = x.get(bi)?;
                    let frame = |f: usize| xb.narrow(1, f, 1)?.squeeze(1);
                    batches.push(self.frames_out(taps, t_out, frame)?);
                }
            }
        } else {
            // Make rows and columns splittable by the stride, then unfold each frame.
            let (hq, wq) = (h.div_ceil(sh), w.div_ceil(sw));
            let x = x
                .pad_with_zeros(3, 0, hq * sh - h)?
                .pad_with_zeros(4, 0, wq * sw - w)?
                .reshape(&[b, c, t, hq, sh, wq, sw][..])?;
            for bi in 0..b {
                let xb = x.get(bi)?;
                let unfold = |f: usize| -> Result<Tensor> {
                    let frame = xb.narrow(1, f, 1)?.squeeze(1)?;
                    let mut pieces = Vec::with_capacity(kh * kw);
                    for i in 0..kh {
                        let rows = frame
                            .narrow(1, i / sh, h_out)?
                            .narrow(2, i % sh, 1)?
                            .squeeze(2)?;
                        for j in 0..kw {
                            pieces.push(
                                rows.narrow(2, j / sw, w_out)?
                                    .narrow(3, j % sw, 1)?
                                    .squeeze(3)?,
                            );
                        }
                    }
                    Tensor::cat(&pieces, 0)?.reshape((kh * kw * c, h_out * w_out))
                };
                batches.push(self.frames_out(taps, t_out, unfold)?);
            }
        }
        let mut y = Tensor::stack(&batches, 0)?;
        if let Some(bias) = bias {
            y = y.broadcast_add(bias)?;
        }
        y.reshape((b, self.out_channels, t_out, h_out, w_out))
    }

    /// Output frames `[out, t_out, N]` from the column matrix of each input frame, each
    /// computed once and dropped when no later output frame needs it.
    fn frames_out(
        &self,
        taps: &Tensor,
        t_out: usize,
        mut columns: impl FnMut(usize) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let [kt, _, _] = self.kernel;
        let st = self.stride[0];
        let mut window: Vec<(usize, Tensor)> = Vec::with_capacity(kt);
        let mut outs = Vec::with_capacity(t_out);
        for to in 0..t_out {
            let first = to * st;
            window.retain(|(f, _)| *f >= first);
            let mut acc: Option<Tensor> = None;
            for k in 0..kt {
                let f = first + k;
                let cols = match window.iter().find(|(g, _)| *g == f) {
                    Some((_, cols)) => cols.clone(),
                    None => {
                        let cols = columns(f)?;
                        window.push((f, cols.clone()));
                        cols
                    }
                };
                let y = taps.get(k)?.matmul(&cols)?;
                acc = Some(match acc {
                    Some(a) => (a + y)?,
                    None => y,
                });
            }
            match acc {
                Some(a) => outs.push(a),
                None => candle_core::bail!("conv3d kernel has no temporal taps"),
            }
        }
        Tensor::stack(&outs, 1)
    }
}

/// The last `n` frames (dim 2) of `x`, copied so the cache does not keep `x` alive.
pub fn last_frames(x: &Tensor, n: usize) -> Result<Tensor> {
    let t = x.dim(2)?;
    let n = n.min(t);
    let tail = x.narrow(2, t - n, n)?;
    if n == t { Ok(tail) } else { tail.contiguous() }
}

/// Runs `f(index, chunk)` over the `chunk`-sized pieces of `data` (the last may be shorter),
/// on rayon's pool (the one gemm uses, so the two do not compete for the cores) when candle
/// is set to more than one thread.
pub fn for_each_chunk(data: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if chunk == 0 {
        return;
    }
    if candle_core::utils::get_num_threads() <= 1 || data.len() <= chunk {
        for (i, c) in data.chunks_mut(chunk).enumerate() {
            f(i, c);
        }
        return;
    }
    use rayon::prelude::*;
    data.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, piece)| f(i, piece));
}

#[cfg(test)]
#[path = "conv3d_tests.rs"]
mod tests;
