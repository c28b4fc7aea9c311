//! Wan's channel RMS norm (`x / ‖x‖₂ over channels · √C · γ (+ β)`), optionally fused with
//! the SiLU that follows it, computed in f32 (a direct, vectorised loop on the CPU, candle ops
//! elsewhere).

use candle_core::{DType, Device, Result, Storage, Tensor};
use candle_nn::VarBuilder;

use crate::nn::conv3d::for_each_chunk;
use crate::nn::fastmath::exp_f32;

/// The norm's floor on ‖x‖₂ (`F.normalize`'s default eps).
const EPS: f32 = 1e-12;

/// RMS norm over dim 1 of `[B, C, T, H, W]` tensors.
#[derive(Debug, Clone)]
pub struct ChannelRmsNorm {
    /// `[C, 1, 1, 1]` f32, already multiplied by √C.
    gamma: Tensor,
    bias: Option<Tensor>,
    /// The same values, for the CPU loop.
    gamma_v: Vec<f32>,
    bias_v: Option<Vec<f32>>,
}

impl ChannelRmsNorm {
    /// `images`: the stored parameters are `[C, 1, 1]` (attention) instead of `[C, 1, 1, 1]`.
    pub fn new(vb: VarBuilder, dim: usize, images: bool) -> Result<Self> {
        let shape: &[usize] = if images {
            &[dim, 1, 1]
        } else {
            &[dim, 1, 1, 1]
        };
        let load = |name: &str| -> Result<Tensor> {
            vb.get(shape, name)?
                .to_dtype(DType::F32)?
                .reshape((dim, 1, 1, 1))
        };
        let gamma = (load("gamma")? * (dim as f64).sqrt())?;
        let bias = if vb.contains_tensor("bias") {
            Some(load("bias")?)
        } else {
            None
        };
        Ok(Self {
            gamma_v: gamma.flatten_all()?.to_vec1()?,
            bias_v: bias
                .as_ref()
                .map(|b| b.flatten_all()?.to_vec1())
                .transpose()?,
            gamma,
            bias,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }

    /// `silu(norm(x))`.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    fn run(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return self.run_cpu(x, silu);
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let norm = xf.sqr()?.sum_keepdim(1)?.sqrt()?.maximum(EPS as f64)?;
        let mut y = xf.broadcast_div(&norm)?.broadcast_mul(&self.gamma)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if silu {
            y = y.silu()?;
        }
        y.to_dtype(dtype)
    }

    fn run_cpu(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        let (b_n, c_n, t, h, w) = x.dims5()?;
        if c_n != self.gamma_v.len() {
            candle_core::bail!(
                "RMS norm over {} channels, got {:?}",
                self.gamma_v.len(),
                x.shape()
            )
        }
        let s_n = t * h * w;
        let x = x.contiguous()?;
        let (guard, layout) = x.storage_and_layout();
        let xs = match &*guard {
            Storage::Cpu(s) => &s.as_slice::<f32>()?[layout.start_offset()..],
            _ => candle_core::bail!("expected a CPU tensor"),
        };
        let mut out = vec![0f32; b_n * c_n * s_n];
        let mut inv = vec![0f32; s_n];
        // Positions per parallel piece of the sum of squares.
        let piece = s_n.div_ceil(16).max(1024).min(s_n);
        for (b, out_b) in out.chunks_mut(c_n * s_n).enumerate() {
            let xb = &xs[b * c_n * s_n..][..c_n * s_n];
            // 1 / max(‖x‖, eps) at every position.
            for_each_chunk(&mut inv, piece, |i, acc| {
                acc.fill(0.0);
                for row in xb.chunks(s_n) {
                    for (a, v) in acc.iter_mut().zip(&row[i * piece..]) {
                        *a += v * v;
                    }
                }
                for v in acc.iter_mut() {
                    *v = 1.0 / v.sqrt().max(EPS);
                }
            });
            for_each_chunk(out_b, s_n, |c, dst| {
                let row = &xb[c * s_n..][..s_n];
                let g = self.gamma_v[c];
                let beta = self.bias_v.as_ref().map_or(0.0, |b| b[c]);
                if silu {
                    scale_shift_silu(row, &inv, g, beta, dst);
                } else {
                    scale_shift(row, &inv, g, beta, dst);
                }
            });
        }
        Tensor::from_vec(out, (b_n, c_n, t, h, w), &Device::Cpu)
    }
}

crate::simd_dispatch! {
    /// `dst = x · inv · g + beta`, position by position.
    fn scale_shift(x: &[f32], inv: &[f32], g: f32, beta: f32, dst: &mut [f32]) {
        for ((d, v), r) in dst.iter_mut().zip(x).zip(inv) {
            *d = v * r * g + beta;
        }
    }
}

crate::simd_dispatch! {
    /// `silu(x · inv · g + beta)` with the vectorised `exp`.
    fn scale_shift_silu(x: &[f32], inv: &[f32], g: f32, beta: f32, dst: &mut [f32]) {
        for ((d, v), r) in dst.iter_mut().zip(x).zip(inv) {
            let y = v * r * g + beta;
            *d = y / (1.0 + exp_f32(-y));
        }
    }
}
