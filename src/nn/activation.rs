//! GELU with the tanh approximation, computed on the CPU in f32 by a vectorisable rational
//! approximation of tanh instead of one libm `tanhf` call per element (which took about a
//! seventh of a Wan transformer forward); 16-bit inputs are widened to f32 for it and
//! rounded back once. Other devices use candle's own `gelu`.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fastmath::tanh_f32;

/// Elements one task handles.
const CHUNK: usize = 1 << 14;

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`, as PyTorch's
/// `gelu(approximate="tanh")` and diffusers' `GELU(approximate="tanh")`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if !matches!(x.device(), Device::Cpu) {
        return x.gelu();
    }
    match x.dtype() {
        DType::F32 => x.contiguous()?.apply_op1_no_bwd(&GeluTanh),
        // Computed in f32 and rounded once, as PyTorch does for 16-bit inputs.
        DType::BF16 | DType::F16 => x
            .to_dtype(DType::F32)?
            .apply_op1_no_bwd(&GeluTanh)?
            .to_dtype(x.dtype()),
        _ => x.gelu(),
    }
}

#[inline(always)]
fn gelu_tanh_f32(x: f32) -> f32 {
    // √(2/π)
    const K: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh_f32(K * (x + 0.044_715 * x * x * x)))
}

crate::simd_dispatch! {
    fn gelu_slice(input: &[f32], out: &mut [f32]) {
        for (o, &i) in out.iter_mut().zip(input) {
            *o = gelu_tanh_f32(i);
        }
    }
}

struct GeluTanh;

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "gelu-tanh-f32"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(data), Some((start, end))) = (storage, layout.contiguous_offsets())
        else {
            candle_core::bail!("gelu_tanh: expects a contiguous f32 tensor");
        };
        let input = &data[start..end];
        let mut out = vec![0f32; input.len()];
        out.par_chunks_mut(CHUNK)
            .zip(input.par_chunks(CHUNK))
            .for_each(|(o, i)| gelu_slice(i, o));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_tanh_matches_candles_gelu() {
        let values: Vec<f32> = (-4000..4000).map(|i| i as f32 * 2.5e-3).collect();
        let x = Tensor::from_vec(values, (2, 4000), &Device::Cpu).unwrap();
        let fast = gelu_tanh(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let slow = x
            .gelu()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (f, s) in fast.iter().zip(&slow) {
            assert!((f - s).abs() <= 1e-6 * s.abs().max(1.0), "{f} vs {s}");
        }
        // A strided input takes the contiguous copy; bf16 is computed in f32 and rounded.
        let t = x.t().unwrap();
        let strided = gelu_tanh(&t).unwrap().t().unwrap();
        let diff = (strided - x.gelu().unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        let b = x.to_dtype(DType::BF16).unwrap();
        let gb = gelu_tanh(&b).unwrap();
        assert_eq!(gb.dtype(), DType::BF16);
        let want = b.to_dtype(DType::F32).unwrap().gelu().unwrap();
        let diff = (gb.to_dtype(DType::F32).unwrap() - want).unwrap();
        let worst: f32 = diff.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
        assert!(
            worst <= 0.016,
            "one bf16 rounding of values below 10: {worst}"
        );
    }
}
