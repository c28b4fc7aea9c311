//! Softmax attention `softmax(q·kᵀ)·v` over heads: a fused CPU kernel for f32 (per head and
//! block of queries, in per-thread buffers; the heads are read in place and written
//! merged), and candle's ops in query chunks on other devices. The CPU kernel runs its own
//! AVX-512 products over keys in blocks with an online softmax where the processor has
//! AVX-512, else gemm, a vectorised softmax and gemm again.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{Rows, SharedMut, gemm_rows};
use super::fastmath::exp_f32_upto_88;

#[cfg(target_arch = "x86_64")]
#[path = "attention_avx512.rs"]
mod avx512;

/// Most attention scores (batch × heads × query rows × keys) the non-CPU path materialises
/// at once: queries are processed in chunks of `ATTENTION_CHUNK_SCORES / (batch · heads ·
/// keys)` rows (at least one), so a chunk's scores take at most 256 MiB in f32 whatever the
/// video length. The CPU kernel holds far less: one block of query rows per thread.
pub const ATTENTION_CHUNK_SCORES: usize = 1 << 26;

/// Query rows one CPU task handles (a multiple of the AVX-512 kernels' 12-row tiles).
const QUERY_BLOCK: usize = 120;

/// Keys the AVX-512 path takes at a time (a multiple of its 32-key panels): at a head dim of
/// 128, a block's keys, values and scores take under 1 MiB.
#[cfg(target_arch = "x86_64")]
const KEY_BLOCK: usize = 512;

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
            portable: false,
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

    /// Row `row` of head `h` of batch `b`: its `d` values.
    fn row(&self, b: usize, h: usize, row: usize, d: usize) -> &'a [f32] {
        &self.data[self.offset(b, h, row)..][..d]
    }

    /// The first element of head `h` of batch `b`, row `row`.
    fn at(&self, b: usize, h: usize, row: usize) -> *const f32 {
        self.data[self.offset(b, h, row)..].as_ptr()
    }

    /// Where row `row` of head `h` of batch `b` starts in `data`.
    fn offset(&self, b: usize, h: usize, row: usize) -> usize {
        b * self.strides[0] + h * self.strides[1] + row * self.strides[2]
    }
}

struct CpuAttention {
    scale: f32,
    /// Use the gemm path even where the AVX-512 kernels serve (to test one against the
    /// other).
    portable: bool,
}

/// Keys and values laid out once for every query block of their head.
struct Prepared<'a> {
    heads: usize,
    keys: usize,
    dim: usize,
    kind: Kind<'a>,
}

enum Kind<'a> {
    /// For gemm: kᵀ of every head, `[B, H, D, Sk]` contiguous (gemm reads it down its
    /// columns), and the values read in place.
    Gemm { kt: Vec<f32>, v: Operand<'a> },
    /// For the AVX-512 kernels: every head's keys in panels of 32 and its values as
    /// contiguous rows.
    #[cfg(target_arch = "x86_64")]
    Avx512 { keys: Vec<f32>, values: Vec<f32> },
}

impl<'a> Prepared<'a> {
    fn new(k: Operand<'_>, v: Operand<'a>, [b, h, sk, d]: [usize; 4], portable: bool) -> Self {
        let heads = |dst: &mut [f32], f: &(dyn Fn(usize, usize, &mut [f32]) + Sync)| {
            let per_head = dst.len() / (b * h);
            dst.par_chunks_mut(per_head)
                .enumerate()
                .for_each(|(bh, dst)| f(bh / h, bh % h, dst));
        };
        #[cfg(target_arch = "x86_64")]
        if !portable && avx512::available(d) {
            let mut keys = vec![0f32; b * h * avx512::packed_keys_len(sk, d)];
            heads(&mut keys, &|bi, hi, dst| {
                avx512::pack_keys(|s| k.row(bi, hi, s, d), sk, d, dst);
            });
            let mut values = vec![0f32; b * h * sk * d];
            heads(&mut values, &|bi, hi, dst| {
                for (s, row) in dst.chunks_exact_mut(d).enumerate() {
                    row.copy_from_slice(v.row(bi, hi, s, d));
                }
            });
            let kind = Kind::Avx512 { keys, values };
            return Self {
                heads: h,
                keys: sk,
                dim: d,
                kind,
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = portable;
        let mut kt = vec![0f32; b * h * d * sk];
        heads(&mut kt, &|bi, hi, dst| {
            for s in 0..sk {
                for (j, &x) in k.row(bi, hi, s, d).iter().enumerate() {
                    dst[j * sk + s] = x;
                }
            }
        });
        Self {
            heads: h,
            keys: sk,
            dim: d,
            kind: Kind::Gemm { kt, v },
        }
    }

    /// `softmax(scale · q·kᵀ)·v` of `rows` queries `q` over head `hi` of batch `bi`, written
    /// to `dst`.
    ///
    /// # Safety
    /// `q` describes `rows × d` values, `rows ≤ QUERY_BLOCK`, and `dst` `rows × d` writable
    /// values that nothing else reads or writes meanwhile.
    unsafe fn attend(
        &self,
        [bi, hi]: [usize; 2],
        scale: f32,
        q: Rows<*const f32>,
        rows: usize,
        dst: Rows<*mut f32>,
        scratch: &mut Scratch,
    ) {
        let (bh, sk, d) = (bi * self.heads + hi, self.keys, self.dim);
        let mut inv_sums = [0f32; QUERY_BLOCK];
        match &self.kind {
            Kind::Gemm { kt, v } => {
                scratch.scores.resize(rows * sk, 0.0);
                let scores = scratch.scores.as_mut_ptr();
                // SAFETY (both products): the caller's guarantee; kᵀ of head `bh` is
                // `d × sk`, v's head `hi` `sk × d` rows, and `scores` `rows × sk`.
                unsafe {
                    let kt = Rows {
                        ptr: kt[bh * d * sk..].as_ptr(),
                        stride: sk,
                    };
                    gemm_rows(
                        [rows, sk, d],
                        Rows {
                            ptr: scores,
                            stride: sk,
                        },
                        false,
                        q,
                        kt,
                        false,
                    )
                };
                for (row, inv) in scratch.scores.chunks_mut(sk).zip(&mut inv_sums) {
                    *inv = 1.0 / softmax_numerators(row, scale);
                }
                let p = Rows {
                    ptr: scratch.scores.as_ptr(),
                    stride: sk,
                };
                let v = Rows {
                    ptr: v.at(bi, hi, 0),
                    stride: v.strides[2],
                };
                unsafe { gemm_rows([rows, d, sk], dst, false, p, v, false) };
            }
            #[cfg(target_arch = "x86_64")]
            Kind::Avx512 { keys, values } => {
                let len = avx512::packed_keys_len(sk, d);
                let (keys, values) = (&keys[bh * len..], &values[bh * sk * d..(bh + 1) * sk * d]);
                // SAFETY: the caller's guarantee; the kernels serve `d` (checked in `new`).
                unsafe { avx512::pack_queries(q.ptr, q.stride, rows, d, &mut scratch.queries) };
                let mut max = [f32::NEG_INFINITY; QUERY_BLOCK];
                // The keys in blocks, with the softmax taken online: each block's scores,
                // keys and values stay in the core's L2 cache.
                for first in (0..sk).step_by(KEY_BLOCK) {
                    let n = KEY_BLOCK.min(sk - first);
                    let width = n.next_multiple_of(avx512::PANEL);
                    scratch.scores.resize(rows * width, 0.0);
                    let block_keys = &keys[first * d..(first + width) * d];
                    // SAFETY: `scores` holds `rows` rows of `width`.
                    unsafe {
                        avx512::scores(
                            &scratch.queries,
                            rows,
                            d,
                            block_keys,
                            scratch.scores.as_mut_ptr(),
                            width,
                        )
                    };
                    for (r, row) in scratch.scores.chunks_mut(width).enumerate() {
                        let row = &mut row[..n];
                        let new_max = max[r].max(row_max(row));
                        // exp(−∞) = 0 on the first block, where nothing is in `dst` yet.
                        let factor = exp_f32_upto_88((max[r] - new_max) * scale);
                        if first > 0 && factor != 1.0 {
                            // SAFETY: row `r` of `dst` has `d` values (the caller's).
                            scale_row(unsafe { dst.row_mut(r, d) }, factor);
                        }
                        // The running sum, inverted after the last block.
                        inv_sums[r] = inv_sums[r] * factor + exp_sum(row, new_max, scale);
                        max[r] = new_max;
                    }
                    let p = scratch.scores.as_ptr();
                    let block_values = &values[first * d..(first + n) * d];
                    // SAFETY: `p` holds `rows` rows of `n ≤ width` probabilities.
                    unsafe {
                        avx512::weighted_values(p, width, rows, block_values, d, dst, first > 0)
                    };
                }
                inv_sums.iter_mut().for_each(|s| *s = 1.0 / *s);
            }
        }
        for (r, &inv) in inv_sums.iter().take(rows).enumerate() {
            // SAFETY: row `r` of `dst` has `d` values (the caller's guarantee).
            scale_row(unsafe { dst.row_mut(r, d) }, inv);
        }
    }
}

/// A CPU task's buffers, reused from one query block to the next.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    queries: Vec<f32>,
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
        let prepared = Prepared::new(k, v, [b, h, sk, d], self.portable);
        let mut out = vec![0f32; b * sq * h * d];
        let out_ptr = SharedMut(out.as_mut_ptr());
        let blocks = sq.div_ceil(QUERY_BLOCK);
        let prepared = &prepared;
        (0..b * h * blocks)
            .into_par_iter()
            .for_each_init(Scratch::default, |scratch, task| {
                let (bh, block) = (task / blocks, task % blocks);
                let (bi, hi) = (bh / h, bh % h);
                let start = block * QUERY_BLOCK;
                let rows = QUERY_BLOCK.min(sq - start);
                let q_rows = Rows {
                    ptr: q.at(bi, hi, start),
                    stride: q.strides[2],
                };
                let dst = Rows {
                    ptr: out_ptr.get().wrapping_add(((bi * sq + start) * h + hi) * d),
                    stride: h * d,
                };
                // SAFETY: `q_rows` is `rows × d` inside q (checked shapes above); the output
                // rows `start..start + rows` of head `hi` in batch `bi` belong to this task
                // only.
                unsafe { prepared.attend([bi, hi], self.scale, q_rows, rows, dst, scratch) };
            });
        Ok((CpuStorage::F32(out), shape))
    }
}

/// Replaces `row` by `exp(scale · (x − max))` and returns the sum of those values (at
/// least 1).
fn softmax_numerators(row: &mut [f32], scale: f32) -> f32 {
    exp_sum(row, row_max(row), scale)
}

crate::simd_dispatch! {
    /// The largest value of `row` (NaNs skipped), in sixteen lanes.
    fn row_max(row: &[f32]) -> f32 {
        const LANES: usize = 16;
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for c in &mut chunks {
            for (m, &x) in lanes.iter_mut().zip(c) {
                *m = if x > *m { x } else { *m };
            }
        }
        chunks
            .remainder()
            .iter()
            .chain(&lanes)
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
    }
}

crate::simd_dispatch! {
    /// Replaces `row` by `exp(scale · (x − max))` and returns the sum of those values, in
    /// 64 lanes (four vectors at a time, whose exponentials' dependency chains overlap).
    /// `max` is at least every value of the row, so the exponents are at most 0 (give or
    /// take a rounding).
    fn exp_sum(row: &mut [f32], max: f32, scale: f32) -> f32 {
        const LANES: usize = 64;
        let shift = -max * scale;
        let mut sums = [0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (s, x) in sums.iter_mut().zip(c) {
                *x = exp_f32_upto_88(x.mul_add(scale, shift));
                *s += *x;
            }
        }
        let mut sum = sums.iter().sum::<f32>();
        for x in chunks.into_remainder() {
            *x = exp_f32_upto_88(x.mul_add(scale, shift));
            sum += *x;
        }
        sum
    }
}

crate::simd_dispatch! {
    /// Multiplies every value of `row` by `factor`.
    fn scale_row(row: &mut [f32], factor: f32) {
        row.iter_mut().for_each(|x| *x *= factor);
    }
}

#[cfg(test)]
#[path = "attention_tests.rs"]
mod tests;
