//! Direct access to the f32 data of CPU tensors, a parallel map over the rows of a tensor
//! and gemm on row-major matrices, for the fused kernels that replace several passes of
//! candle's ops.

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;

/// A row-major f32 matrix operand of [`gemm_rows`]: its first element and its row stride
/// (its columns are adjacent).
#[derive(Clone, Copy)]
pub struct Rows<T> {
    pub ptr: T,
    pub stride: usize,
}

impl Rows<*mut f32> {
    /// Row `r`, of `len` values.
    ///
    /// # Safety
    /// Row `r` has `len` writable values that nothing else reads or writes while the slice
    /// lives.
    pub unsafe fn row_mut<'a>(self, r: usize, len: usize) -> &'a mut [f32] {
        // SAFETY: the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), len) }
    }
}

/// A pointer that may be shared between the tasks that write disjoint parts of its buffer.
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32);
// SAFETY: users hand each task a region of the buffer no other task touches.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` with `accumulate`, for an `m × k` `lhs`, a
/// `k × n` `rhs` and an `m × n` `dst`, on candle's number of threads when `parallel`.
///
/// # Safety
/// Each operand's pointer and row stride must describe a matrix of its size inside one
/// allocation, `dst`'s writable and not overlapping the others, as `gemm::gemm` requires.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_rows(
    [m, n, k]: [usize; 3],
    dst: Rows<*mut f32>,
    accumulate: bool,
    lhs: Rows<*const f32>,
    rhs: Rows<*const f32>,
    parallel: bool,
) {
    let threads = candle_core::utils::get_num_threads();
    let parallelism = if parallel && threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    let alpha = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: the caller's guarantee.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            1,
            dst.stride as isize,
            accumulate,
            lhs.ptr,
            1,
            lhs.stride as isize,
            rhs.ptr,
            1,
            rhs.stride as isize,
            alpha,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Whether `t` is an f32 tensor on the CPU: the fused kernels' case.
pub fn is_cpu_f32(t: &Tensor) -> bool {
    matches!(t.device(), Device::Cpu) && t.dtype() == DType::F32
}

/// Calls `f` with the data of each of `tensors` (contiguous f32 CPU tensors, in order).
pub fn with_f32_slices<R>(tensors: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> R) -> Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(tensors.len());
    for (storage, layout) in &guards {
        match (&**storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) => {
                slices.push(&data[start..end]);
            }
            _ => candle_core::bail!("expected a contiguous f32 tensor on the CPU"),
        }
    }
    Ok(f(&slices))
}

/// A new tensor of `x`'s shape whose row `r` (last dim) is `f(r, input row r, output row)`,
/// the rows shared out between the threads. `x` must be f32 on the CPU; extra `params`
/// (contiguous f32 CPU tensors) are passed to `f` as slices.
pub fn map_rows<F>(x: &Tensor, params: &[&Tensor], f: F) -> Result<Tensor>
where
    F: Fn(usize, &[f32], &mut [f32], &[&[f32]]) + Sync,
{
    let x = x.contiguous()?;
    let cols = x.dims().last().copied().unwrap_or(1).max(1);
    let mut all = vec![&x];
    all.extend_from_slice(params);
    let out = with_f32_slices(&all, |s| {
        let (input, params) = (s[0], &s[1..]);
        let mut out = vec![0f32; input.len()];
        // About 64 KiB of input per task.
        let rows_per_task = (16_384 / cols).max(1);
        out.par_chunks_mut(rows_per_task * cols)
            .enumerate()
            .for_each(|(task, block)| {
                let first = task * rows_per_task;
                for (i, o) in block.chunks_mut(cols).enumerate() {
                    let r = first + i;
                    f(r, &input[r * cols..(r + 1) * cols], o, params);
                }
            });
        out
    })?;
    Tensor::from_vec(out, x.shape(), x.device())
}

/// `t` `[r, c]` on the CPU transposed to a contiguous `[c, r]` tensor, 64 × 64 tiles at a
/// time shared out between the threads (candle's strided copy goes element by element on
/// one thread: seconds for a model's weights). Other devices and dtypes use candle's copy.
pub fn transpose_2d(t: &Tensor) -> Result<Tensor> {
    let (r, c) = t.dims2()?;
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("transpose_2d: a contiguous tensor is not contiguous");
    };
    match &*storage {
        Storage::Cpu(CpuStorage::F32(d)) => {
            Tensor::from_vec(transpose_slice(&d[start..end], r, c), (c, r), &Device::Cpu)
        }
        Storage::Cpu(CpuStorage::BF16(d)) => {
            Tensor::from_vec(transpose_slice(&d[start..end], r, c), (c, r), &Device::Cpu)
        }
        _ => {
            drop(storage);
            t.t()?.contiguous()
        }
    }
}

/// The `r × c` row-major `src` transposed (see [`transpose_2d`]).
fn transpose_slice<T: Copy + Default + Send + Sync>(src: &[T], r: usize, c: usize) -> Vec<T> {
    const TILE: usize = 64;
    let mut out = vec![T::default(); r * c];
    if r == 0 || c == 0 {
        return out;
    }
    // Each task writes TILE whole output rows (source columns j0..j0 + TILE).
    out.par_chunks_mut(TILE * r)
        .enumerate()
        .for_each(|(block, dst)| {
            let j0 = block * TILE;
            let cols = dst.len() / r;
            for i0 in (0..r).step_by(TILE) {
                for i in i0..(i0 + TILE).min(r) {
                    let row = &src[i * c + j0..][..cols];
                    for (dj, &v) in row.iter().enumerate() {
                        dst[dj * r + i] = v;
                    }
                }
            }
        });
    out
}

/// Sum of `values`, as [`sum_map_f32`] takes it.
#[inline(always)]
pub fn sum_f32(values: &[f32]) -> f32 {
    sum_map_f32(values, |x| x)
}

/// Sum of `f(v)` over `values` in eight interleaved partial sums (which the compiler keeps
/// in one vector register) added at the end.
#[inline(always)]
pub fn sum_map_f32(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().map(|&x| f(x)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_rows_sees_every_row_and_its_params() {
        let x = Tensor::arange(0f32, 3.0 * 40_000.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 40_000))
            .unwrap();
        let p = Tensor::new(&[10f32], &Device::Cpu).unwrap();
        let y = map_rows(&x, &[&p], |r, i, o, ps| {
            for (o, &i) in o.iter_mut().zip(i) {
                *o = i + ps[0][0] * r as f32;
            }
        })
        .unwrap();
        let want = x
            .broadcast_add(&Tensor::new(&[[0f32], [10.0], [20.0]], &Device::Cpu).unwrap())
            .unwrap();
        let diff: f32 = (y - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0);
        assert!(map_rows(&x.to_dtype(DType::BF16).unwrap(), &[], |_, _, _, _| {}).is_err());
    }

    #[test]
    fn transposes_match_candles_copy() {
        for (r, c) in [(1, 1), (3, 200), (130, 67), (64, 128)] {
            let t = crate::nn::testing::seeded(&[r, c], (r * c) as u64);
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let t = t.to_dtype(dtype).unwrap();
                let want = t.t().unwrap().contiguous().unwrap();
                let got = transpose_2d(&t).unwrap();
                assert_eq!(got.dims(), [c, r]);
                assert_eq!(got.dtype(), dtype);
                let eq: f32 = got
                    .eq(&want)
                    .unwrap()
                    .to_dtype(DType::F32)
                    .unwrap()
                    .mean_all()
                    .unwrap()
                    .to_scalar()
                    .unwrap();
                assert_eq!(eq, 1.0, "{r}x{c} {dtype:?}");
            }
        }
        // A strided input is made contiguous first.
        let t = crate::nn::testing::seeded(&[5, 7], 1);
        let back = transpose_2d(&t.t().unwrap()).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), t.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn sums_add_every_value() {
        let v: Vec<f32> = (1..=21).map(|i| i as f32).collect();
        assert_eq!(sum_f32(&v), 231.0);
        assert_eq!(sum_map_f32(&v, |x| 2.0 * x), 462.0);
        assert_eq!(sum_f32(&[]), 0.0);
    }
}
