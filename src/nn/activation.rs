//! GELU with the tanh approximation, computed on the CPU in f32 by a vectorisable rational
//! approximation of tanh instead of one libm `tanhf` call per element (which took about a
//! seventh of a Wan transformer forward). Other devices and types use candle's own `gelu`.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements one task handles.
const CHUNK: usize = 1 << 14;

/// `0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`, as PyTorch's
/// `gelu(approximate="tanh")` and diffusers' `GELU(approximate="tanh")`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if !matches!(x.device(), Device::Cpu) || x.dtype() != DType::F32 {
        return x.gelu();
    }
    x.contiguous()?.apply_op1_no_bwd(&GeluTanh)
}

/// tanh for f32 as a rational function: an odd polynomial of degree 13 over an even one of
/// degree 6 in the clamped input (Eigen's `generic_fast_tanh_float` coefficients; beyond
/// ±7.9053 the f32 result is ±1). Branch-free, so the loop over a slice vectorises.
#[inline(always)]
fn tanh_f32(x: f32) -> f32 {
    const LIMIT: f32 = 7.905_311;
    const A1: f32 = 4.893_524_6e-3;
    const A3: f32 = 6.372_619_3e-4;
    const A5: f32 = 1.485_722_4e-5;
    const A7: f32 = 5.122_297e-8;
    const A9: f32 = -8.604_672e-11;
    const A11: f32 = 2.000_188e-13;
    const A13: f32 = -2.760_768_5e-16;
    const B0: f32 = 4.893_525e-3;
    const B2: f32 = 2.268_434_6e-3;
    const B4: f32 = 1.185_347_1e-4;
    const B6: f32 = 1.198_258_4e-6;
    let x = x.clamp(-LIMIT, LIMIT);
    let x2 = x * x;
    let p = ((((((A13 * x2 + A11) * x2 + A9) * x2 + A7) * x2 + A5) * x2 + A3) * x2 + A1) * x;
    let q = ((B6 * x2 + B4) * x2 + B2) * x2 + B0;
    p / q
}

#[inline(always)]
fn gelu_tanh_f32(x: f32) -> f32 {
    // √(2/π)
    const K: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh_f32(K * (x + 0.044_715 * x * x * x)))
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
            .for_each(|(o, i)| {
                for (o, &i) in o.iter_mut().zip(i) {
                    *o = gelu_tanh_f32(i);
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tanh_matches_the_library_to_a_few_ulp() {
        let mut worst = 0f32;
        let mut x = -12.0f32;
        while x <= 12.0 {
            let err = (tanh_f32(x) - x.tanh()).abs();
            worst = worst.max(err / x.tanh().abs().max(1e-30));
            x += 1e-3;
        }
        // Also tiny inputs, where tanh(x) ≈ x.
        for x in [1e-8f32, -3e-6, 1e-4, -0.01] {
            let err = (tanh_f32(x) - x.tanh()).abs() / x.tanh().abs();
            worst = worst.max(err);
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(-50.0), -1.0);
    }

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
        // A strided input takes the contiguous copy; bf16 falls back to candle's op.
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
        assert_eq!(gelu_tanh(&b).unwrap().dtype(), DType::BF16);
    }
}
