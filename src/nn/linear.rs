//! Dense layers `y = x·Wᵀ + b` from a checkpoint's `weight` `[out, in]` and `bias` `[out]`.
//! On the CPU the weight is kept transposed (`[in, out]`, contiguous, which gemm packs with
//! plain copies) and the product is written by gemm into a buffer that already holds the
//! bias, so adding it costs no pass of its own. Large products are shared out between the
//! threads by bands of output columns, each a single-threaded gemm. A bf16 weight stays
//! bf16 in memory and is widened to f32 in parallel into a per-thread buffer for each
//! product (gemm has no bf16 kernel); the sum is taken in f32 and rounded once. Elsewhere
//! candle's `Linear`.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Module, Result};
use candle_core::{Shape, Tensor};
use candle_nn::VarBuilder;

use super::cpu::{Rows, SharedMut, gemm_rows, transpose_2d};
use rayon::prelude::*;

/// A dense layer; see the module documentation.
#[derive(Debug, Clone)]
pub struct Linear(Kind);

#[derive(Debug, Clone)]
enum Kind {
    /// `wt` `[in, out]` contiguous, f32 or bf16; `bias` `[out]` f32, or empty for none.
    Cpu {
        wt: Tensor,
        bias: Tensor,
    },
    Candle(candle_nn::Linear),
}

/// Loads `weight` `[out, in]` and `bias` `[out]` from `vb`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let bias = vb.get(out_dim, "bias")?;
    Linear::new(vb.get((out_dim, in_dim), "weight")?, Some(bias))
}

/// Loads `weight` `[out, in]` from `vb`; no bias.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::new(vb.get((out_dim, in_dim), "weight")?, None)
}

impl Linear {
    /// A layer from `weight` `[out, in]` and an optional `bias` `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        if matches!(weight.device(), Device::Cpu)
            && matches!(weight.dtype(), DType::F32 | DType::BF16)
        {
            let bias = match bias {
                Some(b) => b.to_dtype(DType::F32)?.contiguous()?,
                None => Tensor::zeros(0, DType::F32, &Device::Cpu)?,
            };
            Ok(Self(Kind::Cpu {
                wt: transpose_2d(&weight)?,
                bias,
            }))
        } else {
            Ok(Self(Kind::Candle(candle_nn::Linear::new(weight, bias))))
        }
    }
}

impl Module for Linear {
    /// `x` `[…, in]` to `[…, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (wt, bias) = match &self.0 {
            Kind::Candle(l) => return l.forward(x),
            Kind::Cpu { wt, bias } => (wt, bias),
        };
        let (in_dim, out_dim) = wt.dims2()?;
        let mut out_shape = x.dims().to_vec();
        match out_shape.last_mut() {
            Some(last) if *last == in_dim => *last = out_dim,
            _ => candle_core::bail!(
                "linear: input {:?} for a layer of {in_dim} inputs",
                x.shape()
            ),
        }
        let rows = x.elem_count() / in_dim.max(1);
        if x.dtype() != wt.dtype() {
            candle_core::bail!(
                "linear: a {:?} input for {:?} weights",
                x.dtype(),
                wt.dtype()
            );
        }
        let x = x
            .to_dtype(DType::F32)?
            .contiguous()?
            .reshape((rows, in_dim))?;
        let y = x.apply_op3_no_bwd(wt, bias, &CpuLinear)?;
        y.to_dtype(wt.dtype())?.reshape(out_shape)
    }
}

struct CpuLinear;

/// Multiply-adds from which a product is shared out by columns.
const SPLIT_MIN_MACS: usize = 1 << 24;

/// Columns per task where a product's output columns are shared out between `threads`
/// tasks, each running gemm on one thread: each then reads only its part of the weight,
/// which measured 1–7 % faster than gemm's own threads for the Wan layers' products (390 and
/// 1,950 rows; 1536 × 1536, 1536 → 8960 and 8960 → 1536). `None` (gemm's threads) for small
/// products, where the tasks cost more than they save, and for narrow outputs.
fn column_chunks(rows: usize, in_dim: usize, out_dim: usize, threads: usize) -> Option<usize> {
    let macs = rows.saturating_mul(in_dim).saturating_mul(out_dim);
    (threads > 1 && macs >= SPLIT_MIN_MACS && out_dim >= 64 * threads)
        .then(|| out_dim.div_ceil(threads).next_multiple_of(16))
}

/// The f32 slice a contiguous layout covers.
fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(d), Some((start, end))) => Ok(&d[start..end]),
        _ => candle_core::bail!("linear: the {what} must be contiguous f32"),
    }
}

thread_local! {
    /// The f32 copy of the last bf16 weight this thread widened: reused, so that a product
    /// does not fault in fresh pages for it each time.
    static WIDENED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

crate::simd_dispatch! {
    /// bf16 bits to f32 (exact: bf16 is the top half of an f32).
    fn widen_bf16(src: &[half::bf16], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits(u32::from(s.to_bits()) << 16);
        }
    }
}

/// Calls `f` with the weight as f32: the data itself, or a bf16 weight widened in parallel.
fn with_f32_weight<R>(s: &CpuStorage, l: &Layout, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let CpuStorage::BF16(data) = s else {
        return Ok(f(f32_slice(s, l, "weight")?));
    };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("linear: the weight must be contiguous");
    };
    let src = &data[start..end];
    WIDENED.with_borrow_mut(|buf| {
        buf.resize(src.len(), 0.0);
        const CHUNK: usize = 1 << 16;
        buf.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(d, s)| widen_bf16(s, d));
        Ok(f(buf))
    })
}

impl CustomOp3 for CpuLinear {
    fn name(&self) -> &'static str {
        "linear-cpu"
    }

    /// `x` `[rows, in]` (f32) times `wt` `[in, out]` (f32 or bf16), plus `bias` `[out]`
    /// (f32, empty for none) broadcast over the rows; returns f32.
    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, in_dim) = xl.shape().dims2()?;
        let (w_in, out_dim) = wl.shape().dims2()?;
        if w_in != in_dim {
            candle_core::bail!("linear: {in_dim} inputs for a {w_in}-input weight");
        }
        let x = f32_slice(xs, xl, "input")?;
        let bias = f32_slice(bs, bl, "bias")?;
        let has_bias = !bias.is_empty();
        let mut out = if has_bias {
            if bias.len() != out_dim {
                candle_core::bail!("linear: a bias of {} for {out_dim} outputs", bias.len());
            }
            let mut out = Vec::with_capacity(rows * out_dim);
            for _ in 0..rows {
                out.extend_from_slice(bias);
            }
            out
        } else {
            vec![0f32; rows * out_dim]
        };
        if rows == 0 || out_dim == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((rows, out_dim))));
        }
        let threads = candle_core::utils::get_num_threads();
        let columns = column_chunks(rows, in_dim, out_dim, threads);
        let out_ptr = SharedMut(out.as_mut_ptr());
        with_f32_weight(ws, wl, |w| {
            // Columns `c0..c0 + n` of the product, on this thread or on gemm's threads.
            let part = |c0: usize, n: usize, parallel: bool| {
                let dst = Rows {
                    ptr: out_ptr.get().wrapping_add(c0),
                    stride: out_dim,
                };
                let w = Rows {
                    ptr: w[c0..].as_ptr(),
                    stride: out_dim,
                };
                let x = Rows {
                    ptr: x.as_ptr(),
                    stride: in_dim,
                };
                // SAFETY: `out` is `rows × out_dim`, `x` `rows × in_dim` and `w` `in_dim ×
                // out_dim`, all row-major and contiguous (checked above); columns `c0..c0 +
                // n` lie inside them, and no other task writes them.
                unsafe { gemm_rows([rows, n, in_dim], dst, has_bias, x, w, parallel) };
            };
            match columns {
                Some(per) => (0..out_dim)
                    .step_by(per)
                    .collect::<Vec<_>>()
                    .into_par_iter()
                    .for_each(|c0| part(c0, per.min(out_dim - c0), false)),
                None => part(0, out_dim, true),
            }
        })?;
        Ok((CpuStorage::F32(out), Shape::from((rows, out_dim))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testing::{max_abs, max_diff, seeded};

    #[test]
    fn matches_candles_linear_with_and_without_bias() {
        let w = seeded(&[37, 70], 1);
        let b = seeded(&[37], 2);
        // A batch of 2 × 5 rows, and a strided input (made contiguous on the way in).
        let x = seeded(&[2, 5, 70], 3);
        for bias in [Some(b.clone()), None] {
            let ours = Linear::new(w.clone(), bias.clone()).unwrap();
            let theirs = candle_nn::Linear::new(w.clone(), bias);
            let want = theirs.forward(&x).unwrap();
            let got = ours.forward(&x).unwrap();
            assert_eq!(got.dims(), [2, 5, 37]);
            assert!(max_diff(&got, &want) < 1e-6 * max_abs(&want).max(1.0));
            let xt = seeded(&[70, 4], 4).t().unwrap();
            let diff = max_diff(&ours.forward(&xt).unwrap(), &theirs.forward(&xt).unwrap());
            assert!(diff < 1e-5);
        }
    }

    #[test]
    fn large_products_are_shared_out_by_columns() {
        // 64 × 512 × 520 multiply-adds: above the threshold, so on a machine with two or
        // more threads each task computes a band of columns, the last one ragged.
        const { assert!(64 * 512 * 520 >= SPLIT_MIN_MACS) };
        let (w, b, x) = (
            seeded(&[520, 512], 1),
            seeded(&[520], 2),
            seeded(&[64, 512], 3),
        );
        for bias in [Some(b), None] {
            let want = candle_nn::Linear::new(w.clone(), bias.clone())
                .forward(&x)
                .unwrap();
            let got = Linear::new(w.clone(), bias).unwrap().forward(&x).unwrap();
            assert!(max_diff(&got, &want) < 1e-5 * max_abs(&want).max(1.0));
        }
        // At most one band per thread, 16-aligned and balanced, for any number of threads.
        for threads in 2..=7 {
            let per = column_chunks(64, 512, 520, threads).unwrap();
            assert_eq!(per % 16, 0);
            assert!(per * threads >= 520 && per < 520usize.div_ceil(threads) + 16);
        }
        assert_eq!(column_chunks(64, 512, 520, 1), None, "one thread");
        assert_eq!(column_chunks(1, 256, 1536, 2), None, "a small product");
        assert_eq!(column_chunks(4096, 4096, 100, 2), None, "a narrow output");
    }

    #[test]
    fn bf16_weights_are_widened_and_the_sum_rounded_once() {
        let bf = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
        let (w, b, x) = (
            seeded(&[300, 200], 1),
            seeded(&[300], 2),
            seeded(&[3, 7, 200], 3),
        );
        // The f32 product of the same bf16 values, rounded to bf16 at the end.
        let f32_of = |t: &Tensor| bf(t).to_dtype(DType::F32).unwrap();
        let want = candle_nn::Linear::new(f32_of(&w), Some(f32_of(&b)))
            .forward(&f32_of(&x))
            .unwrap();
        let ours = Linear::new(bf(&w), Some(bf(&b))).unwrap();
        // Twice: the second product reuses the thread's widened buffer.
        for _ in 0..2 {
            let got = ours.forward(&bf(&x)).unwrap();
            assert_eq!(got.dtype(), DType::BF16);
            assert!(max_diff(&got, &want) <= 4e-3 * max_abs(&want));
        }
        assert!(ours.forward(&x).is_err(), "an f32 input for bf16 weights");
    }

    #[test]
    fn other_dtypes_use_candle_and_shapes_are_checked() {
        let w = seeded(&[3, 4], 1);
        let half = Linear::new(w.to_dtype(DType::F16).unwrap(), None).unwrap();
        let x = seeded(&[2, 4], 2).to_dtype(DType::F16).unwrap();
        assert_eq!(half.forward(&x).unwrap().dtype(), DType::F16);
        let f = Linear::new(w, None).unwrap();
        assert!(f.forward(&seeded(&[2, 5], 3)).is_err());
        let empty = Tensor::zeros((0, 4), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(f.forward(&empty).unwrap().dims(), [0, 3]);
    }
}
