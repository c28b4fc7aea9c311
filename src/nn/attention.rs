//! Softmax attention `softmax(q·kᵀ)·v` over heads: a fused CPU kernel for f32 (per head and
//! block of queries, the scores go through gemm, a vectorised softmax and gemm again, in
//! per-thread buffers; the heads are read in place and written merged), and candle's ops
//! in query chunks on other devices.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{Rows, gemm_rows, sum_f32};
use super::fastmath::exp_f32;

/// Most attention scores (batch × heads × query rows × keys) the non-CPU path materialises
/// at once: queries are processed in chunks of `ATTENTION_CHUNK_SCORES / (batch · heads ·
/// keys)` rows (at least one), so a chunk's scores take at most 256 MiB in f32 whatever the
/// video length. The CPU kernel holds far less: one block of query rows per thread.
pub const ATTENTION_CHUNK_SCORES: usize = 1 << 26;

/// Query rows one CPU task handles (a multiple of gemm's 64-row AVX-512 tile).
const QUERY_BLOCK: usize = 128;

/// `softmax(scale · q·kᵀ)·v` for `q` `[B, H, Sq, D]`, `k` and `v` `[B, H, Sk, D]` and a
/// positive `scale` (usually `1/√D`, or 1 where the queries are scaled already); returns
/// `[B, Sq, H·D]` (contiguous) in `q`'s dtype. The inputs may be strided views (for
/// example `[B, S, H, D]` transposed to `[B, H, S, D]`).
///
/// On the CPU the work is done in f32 by a fused kernel (16-bit inputs are widened first,
/// so the softmax and the products accumulate in f32); elsewhere by candle's matmul and
/// softmax in query chunks of at most [`ATTENTION_CHUNK_SCORES`] scores.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    if !(scale > 0.0 && scale.is_finite()) {
        candle_core::bail!("attention scale {scale} is not a positive number");
    }
    if matches!(q.device(), Device::Cpu) {
        let dtype = q.dtype();
        let f32_view = |t: &Tensor| -> Result<Tensor> {
            let t = t.to_dtype(DType::F32)?;
            // The kernel reads rows in place; it needs the head dim to be contiguous.
            if t.stride()[3] == 1 {
                Ok(t)
            } else {
                t.contiguous()
            }
        };
        let op = CpuAttention {
            scale: scale as f32,
        };
        let out = f32_view(q)?.apply_op3_no_bwd(&f32_view(k)?, &f32_view(v)?, &op)?;
        return out.to_dtype(dtype);
    }
    let q = if scale == 1.0 {
        q.clone()
    } else {
        (q.to_dtype(DType::F32)? * scale)?.to_dtype(q.dtype())?
    };
    attention_chunked(
        &q.contiguous()?,
        &k.contiguous()?,
        &v.contiguous()?,
        ATTENTION_CHUNK_SCORES,
    )
}

/// [`attention`] of queries scaled already, by candle's ops with at most `max_scores`
/// scores per query chunk (the path of devices other than the CPU; inputs contiguous).
///
/// The scores are taken in the inputs' dtype. Where the softmax kernel would accumulate in
/// a 16-bit dtype (candle's CPU kernel does; its CUDA kernel accumulates in f32), the
/// scores are widened to f32 for the softmax and the probabilities rounded back.
pub fn attention_chunked(q: &Tensor, k: &Tensor, v: &Tensor, max_scores: usize) -> Result<Tensor> {
    let (b, h, sq, d) = q.dims4()?;
    let sk = k.dim(2)?;
    let dtype = q.dtype();
    let widen = dtype != DType::F32 && !q.device().is_cuda();
    let kt = k.transpose(2, 3)?;
    let chunk = (max_scores / (b * h * sk).max(1)).clamp(1, sq.max(1));
    let mut outs = Vec::with_capacity(sq.div_ceil(chunk));
    for start in (0..sq).step_by(chunk) {
        let len = chunk.min(sq - start);
        let scores = q.narrow(2, start, len)?.matmul(&kt)?;
        let probs = if widen {
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        // [B, H, len, D] viewed as [B, len, H, D]; the concatenation makes it contiguous.
        outs.push(probs.matmul(v)?.transpose(1, 2)?);
    }
    let out = match outs.as_slice() {
        [one] => one.contiguous()?,
        _ => Tensor::cat(&outs, 1)?,
    };
    out.reshape((b, sq, h * d))
}

/// A 4D f32 operand `[B, H, S, D]` read in place: its data from the layout's start and
/// the strides of the batch, head and sequence dims (the head dim is contiguous).
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    strides: [usize; 3],
}

impl<'a> Operand<'a> {
    fn new(storage: &'a CpuStorage, layout: &Layout, name: &str) -> Result<(Self, [usize; 4])> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("attention: {name} must be f32");
        };
        let dims: [usize; 4] = layout
            .dims()
            .try_into()
            .map_err(|_| candle_core::Error::Msg(format!("attention: {name} must be 4D")))?;
        let s = layout.stride();
        if s[3] != 1 && dims[3] > 1 {
            candle_core::bail!("attention: the head dim of {name} must be contiguous");
        }
        Ok((
            Self {
                data: &data[layout.start_offset()..],
                strides: [s[0], s[1], s[2]],
            },
            dims,
        ))
    }

    /// The first element of head `h` of batch `b`, row `row`.
    fn at(&self, b: usize, h: usize, row: usize) -> *const f32 {
        let off = b * self.strides[0] + h * self.strides[1] + row * self.strides[2];
        self.data[off..].as_ptr()
    }
}

/// A pointer that may be shared between the tasks that write disjoint parts of its buffer.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every task writes a region of the output no other task touches (see `cpu_fwd`).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

struct CpuAttention {
    scale: f32,
}

impl CustomOp3 for CpuAttention {
    fn name(&self) -> &'static str {
        "attention-f32"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, [b, h, sq, d]) = Operand::new(qs, ql, "q")?;
        let (k, kd) = Operand::new(ks, kl, "k")?;
        let (v, vd) = Operand::new(vs, vl, "v")?;
        let sk = kd[2];
        if kd != [b, h, sk, d] || vd != kd {
            candle_core::bail!(
                "attention: q {:?}, k {kd:?} and v {vd:?} do not match",
                ql.dims()
            );
        }
        if sk == 0 {
            candle_core::bail!("attention over no keys");
        }
        let shape = Shape::from((b, sq, h * d));
        if d == 0 || sq == 0 {
            return Ok((CpuStorage::F32(Vec::new()), shape));
        }
        // kᵀ of every head, [B, H, D, Sk] contiguous: gemm reads it down its columns.
        let mut kt = vec![0f32; b * h * d * sk];
        kt.par_chunks_mut(d * sk).enumerate().for_each(|(bh, dst)| {
            let (bi, hi) = (bh / h, bh % h);
            for s in 0..sk {
                // SAFETY: `at` points at row `s` of head `hi`, which has `d` elements.
                let row = unsafe { std::slice::from_raw_parts(k.at(bi, hi, s), d) };
                for (j, &x) in row.iter().enumerate() {
                    dst[j * sk + s] = x;
                }
            }
        });
        let mut out = vec![0f32; b * sq * h * d];
        let out_ptr = SharedMut(out.as_mut_ptr());
        let blocks = sq.div_ceil(QUERY_BLOCK);
        let kt = &kt;
        (0..b * h * blocks).into_par_iter().for_each_init(
            || vec![0f32; QUERY_BLOCK * sk],
            |scores, task| {
                let (bh, block) = (task / blocks, task % blocks);
                let (bi, hi) = (bh / h, bh % h);
                let start = block * QUERY_BLOCK;
                let rows = QUERY_BLOCK.min(sq - start);
                // SAFETY (both products): the pointers and strides describe `rows × d`,
                // `d × sk`, `rows × sk` and `sk × d` matrices inside their buffers (checked
                // shapes above); `scores` is this task's own; the output rows
                // `start..start + rows` of head `hi` in batch `bi` belong to this task only.
                unsafe {
                    gemm_rows(
                        [rows, sk, d],
                        Rows {
                            ptr: scores.as_mut_ptr(),
                            stride: sk,
                        },
                        false,
                        Rows {
                            ptr: q.at(bi, hi, start),
                            stride: q.strides[2],
                        },
                        Rows {
                            ptr: kt[bh * d * sk..].as_ptr(),
                            stride: sk,
                        },
                        false,
                    );
                }
                let mut inv_sums = [0f32; QUERY_BLOCK];
                for (row, inv) in scores.chunks_mut(sk).take(rows).zip(&mut inv_sums) {
                    *inv = 1.0 / softmax_numerators(row, self.scale);
                }
                let dst = out_ptr.get().wrapping_add(((bi * sq + start) * h + hi) * d);
                unsafe {
                    gemm_rows(
                        [rows, d, sk],
                        Rows {
                            ptr: dst,
                            stride: h * d,
                        },
                        false,
                        Rows {
                            ptr: scores.as_ptr(),
                            stride: sk,
                        },
                        Rows {
                            ptr: v.at(bi, hi, 0),
                            stride: v.strides[2],
                        },
                        false,
                    );
                }
                for (r, &inv) in inv_sums.iter().take(rows).enumerate() {
                    // SAFETY: row `start + r` of head `hi` is this task's (see above).
                    let row = unsafe { std::slice::from_raw_parts_mut(dst.add(r * h * d), d) };
                    row.iter_mut().for_each(|x| *x *= inv);
                }
            },
        );
        Ok((CpuStorage::F32(out), shape))
    }
}

/// Replaces `row` by `exp(scale · (x − max))` and returns the sum of those values (at
/// least 1).
fn softmax_numerators(row: &mut [f32], scale: f32) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    exp_shifted(row, max, scale);
    sum_f32(row)
}

crate::simd_dispatch! {
    fn exp_shifted(row: &mut [f32], max: f32, scale: f32) {
        for x in row.iter_mut() {
            *x = exp_f32((*x - max) * scale);
        }
    }
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
