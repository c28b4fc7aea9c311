//! Normalisation layers computed in f32 whatever the activations' dtype (as diffusers'
//! `FP32LayerNorm`, T5's layer norm and `torch.nn.RMSNorm` do), cast back afterwards.

use candle_core::{D, DType, Result, Tensor};

/// RMS normalisation over the last dimension: `x / sqrt(mean(x²) + eps) · weight`.
///
/// The statistics and the scaling are computed in f32; the result has `x`'s dtype.
pub fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
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
    use candle_core::Device;

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
