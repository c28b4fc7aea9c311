//! Normalisation layers computed in f32 whatever the activations' dtype (as diffusers'
//! `FP32LayerNorm`, T5's layer norm and `torch.nn.RMSNorm` do), cast back afterwards; on
//! the CPU in f32 each is one pass over the rows (with the modulation of adaLN fused in).

use candle_core::{D, DType, Result, Tensor};

use super::cpu::{is_cpu_f32, map_rows, sum_f32, sum_map_f32};

/// `x / sqrt(mean(x²) + eps) · w` of one row, into `out` (`w` empty for none).
#[inline(always)]
pub(crate) fn rms_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let inv = 1.0 / (sum_map_f32(x, |v| v * v) / x.len() as f32 + eps).sqrt();
    if w.is_empty() {
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * inv);
    } else {
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
            *o = v * inv * w;
        }
    }
}

/// `(x − mean) / sqrt(var + eps)` of one row, then `· scale + shift` (each empty for none).
#[inline(always)]
fn layer_norm_row(x: &[f32], scale: &[f32], shift: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = sum_f32(x) / n;
    let var = sum_map_f32(x, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    out.iter_mut()
        .zip(x)
        .for_each(|(o, &v)| *o = (v - mean) * inv);
    if !scale.is_empty() {
        out.iter_mut().zip(scale).for_each(|(o, &s)| *o *= s);
    }
    if !shift.is_empty() {
        out.iter_mut().zip(shift).for_each(|(o, &b)| *o += b);
    }
}

/// An optional per-channel parameter of `x`'s norm as a contiguous f32 vector (checked
/// to have one value per channel), or an empty tensor for none.
fn param(t: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
    let channels = x.dims().last().copied().unwrap_or(1);
    match t {
        Some(t) if t.elem_count() != channels => {
            candle_core::bail!("norm parameter {:?} for {channels} channels", t.shape())
        }
        Some(t) => t.to_dtype(DType::F32)?.flatten_all()?.contiguous(),
        None => Tensor::zeros(0, DType::F32, x.device()),
    }
}

/// Layer normalisation of `x` `[B, N, C]` modulated as adaLN does: `norm(x) · scale +
/// shift` with `scale` and `shift` `[B, 1, C]` (one row per batch element), in f32;
/// the result has `x`'s dtype.
pub fn layer_norm_modulate(x: &Tensor, scale: &Tensor, shift: &Tensor, eps: f64) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    if !is_cpu_f32(x) || scale.dims() != [b, 1, c] || shift.dims() != [b, 1, c] {
        let dtype = x.dtype();
        return layer_norm(&x.to_dtype(DType::F32)?, None, None, eps)?
            .broadcast_mul(&scale.to_dtype(DType::F32)?)?
            .broadcast_add(&shift.to_dtype(DType::F32)?)?
            .to_dtype(dtype);
    }
    let f32c = |t: &Tensor| t.to_dtype(DType::F32)?.contiguous();
    let (scale, shift) = (f32c(scale)?, f32c(shift)?);
    map_rows(x, &[&scale, &shift], |r, row, out, p| {
        let bi = r / n.max(1);
        let (sc, sh) = (&p[0][bi * c..(bi + 1) * c], &p[1][bi * c..(bi + 1) * c]);
        layer_norm_row(row, sc, sh, eps as f32, out);
    })
}

/// RMS normalisation over the last dimension: `x / sqrt(mean(x²) + eps) · weight`.
///
/// The statistics and the scaling are computed in f32; the result has `x`'s dtype.
pub fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    if is_cpu_f32(x) {
        let w = param(weight, x)?;
        return map_rows(x, &[&w], |_, row, out, p| {
            rms_row(row, p[0], eps as f32, out)
        });
    }
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let mut y = xf.broadcast_div(&(ms + eps)?.sqrt()?)?;
    if let Some(w) = weight {
        y = y.broadcast_mul(&w.to_dtype(DType::F32)?)?;
    }
    y.to_dtype(dtype)
}

/// Layer normalisation over the last dimension, with optional affine weight and bias.
///
/// The statistics and the affine transform are computed in f32; the result has `x`'s dtype.
pub fn layer_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    if is_cpu_f32(x) {
        let (w, b) = (param(weight, x)?, param(bias, x)?);
        return map_rows(x, &[&w, &b], |_, row, out, p| {
            layer_norm_row(row, p[0], p[1], eps as f32, out)
        });
    }
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let mean = xf.mean_keepdim(D::Minus1)?;
    let centred = xf.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let mut y = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    if let Some(w) = weight {
        y = y.broadcast_mul(&w.to_dtype(DType::F32)?)?;
    }
    if let Some(b) = bias {
        y = y.broadcast_add(&b.to_dtype(DType::F32)?)?;
    }
    y.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testing::{max_abs, max_diff, seeded};
    use candle_core::Device;

    /// The norms by candle's ops, as taken for other devices and dtypes.
    fn slow_layer_norm(x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>, eps: f64) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let c = x.broadcast_sub(&mean).unwrap();
        let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let mut y = c
            .broadcast_div(&(var + eps).unwrap().sqrt().unwrap())
            .unwrap();
        if let Some(w) = w {
            y = y.broadcast_mul(w).unwrap();
        }
        if let Some(b) = b {
            y = y.broadcast_add(b).unwrap();
        }
        y
    }

    #[test]
    fn the_fused_cpu_norms_match_candles_ops() {
        let x = seeded(&[2, 9, 300], 1).affine(4.0, 1.0).unwrap();
        let w = seeded(&[300], 2);
        let b = seeded(&[300], 3);
        let want = slow_layer_norm(&x, Some(&w), Some(&b), 1e-6);
        let got = layer_norm(&x, Some(&w), Some(&b), 1e-6).unwrap();
        assert!(max_diff(&got, &want) < 2e-6 * max_abs(&want));
        let want = slow_layer_norm(&x, None, None, 1e-6);
        assert!(
            max_diff(&layer_norm(&x, None, None, 1e-6).unwrap(), &want) < 2e-6 * max_abs(&want)
        );

        // adaLN: one scale and shift row per batch element.
        let scale = seeded(&[2, 1, 300], 4);
        let shift = seeded(&[2, 1, 300], 5);
        let want = want
            .broadcast_mul(&scale)
            .unwrap()
            .broadcast_add(&shift)
            .unwrap();
        let got = layer_norm_modulate(&x, &scale, &shift, 1e-6).unwrap();
        assert!(max_diff(&got, &want) < 2e-6 * max_abs(&want));
        let bf = layer_norm_modulate(&x.to_dtype(DType::BF16).unwrap(), &scale, &shift, 1e-6);
        assert!(max_diff(&bf.unwrap(), &want) < 5e-2);

        let ms = x.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let want = x
            .broadcast_div(&(ms + 1e-6).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&w)
            .unwrap();
        let got = rms_norm(&x, Some(&w), 1e-6).unwrap();
        assert!(max_diff(&got, &want) < 2e-6 * max_abs(&want));
        assert!(rms_norm(&x, Some(&w.narrow(0, 0, 299).unwrap()), 1e-6).is_err());
        assert!(layer_norm(&x, None, Some(&w.narrow(0, 0, 7).unwrap()), 1e-6).is_err());
    }

    #[test]
    fn rms_norm_matches_the_formula() {
        let x = Tensor::new(&[[3f32, 4.0], [1.0, -1.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[2f32, 0.5], &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = rms_norm(&x, Some(&w), 0.0).unwrap().to_vec2().unwrap();
        // Row 0: rms = sqrt(12.5).
        let r = 12.5f32.sqrt();
        assert!((y[0][0] - 2.0 * 3.0 / r).abs() < 1e-6);
        assert!((y[0][1] - 0.5 * 4.0 / r).abs() < 1e-6);
        assert!((y[1][0] - 2.0).abs() < 1e-6 && (y[1][1] + 0.5).abs() < 1e-6);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let x = Tensor::new(&[[1f32, 2.0, 3.0]], &Device::Cpu).unwrap();
        let b = Tensor::new(&[1f32, 1.0, 1.0], &Device::Cpu).unwrap();
        let y: Vec<Vec<f32>> = layer_norm(&x, None, Some(&b), 0.0)
            .unwrap()
            .to_vec2()
            .unwrap();
        let s = (2.0f32 / 3.0).sqrt();
        assert!((y[0][0] - (1.0 - 1.0 / s)).abs() < 1e-6);
        assert!((y[0][1] - 1.0).abs() < 1e-6);
        assert!((y[0][2] - (1.0 + 1.0 / s)).abs() < 1e-6);
    }
}
