//! The gated residual sum of adaLN-Zero blocks, `x + y · gate`, in one pass on the CPU.

use candle_core::{Result, Tensor};

use super::cpu::{is_cpu_f32, map_rows};

/// `x + y · gate` for `x` and `y` `[B, N, C]` and `gate` `[B, 1, C]`, in their dtype (one
/// fused pass over the rows on the CPU in f32).
pub fn add_gated(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    let fused = is_cpu_f32(x) && is_cpu_f32(y) && is_cpu_f32(gate);
    if !fused || y.dims() != x.dims() || gate.dims() != [b, 1, c] {
        return x + y.broadcast_mul(gate)?;
    }
    let (y, gate) = (y.contiguous()?, gate.contiguous()?);
    map_rows(x, &[&y, &gate], |r, row, out, p| {
        let (yr, g) = (&p[0][r * c..(r + 1) * c], &p[1][(r / n.max(1)) * c..][..c]);
        for (((o, &x), &y), &g) in out.iter_mut().zip(row).zip(yr).zip(g) {
            *o = x + y * g;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testing::{max_diff, seeded};
    use candle_core::DType;

    #[test]
    fn matches_the_broadcast_ops() {
        let (x, y, g) = (
            seeded(&[2, 5, 7], 1),
            seeded(&[2, 5, 7], 2),
            seeded(&[2, 1, 7], 3),
        );
        let want = (&x + y.broadcast_mul(&g).unwrap()).unwrap();
        assert_eq!(max_diff(&add_gated(&x, &y, &g).unwrap(), &want), 0.0);
        // Other dtypes take candle's ops.
        let bf = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
        let got = add_gated(&bf(&x), &bf(&y), &bf(&g)).unwrap();
        assert_eq!(got.dtype(), DType::BF16);
        assert!(max_diff(&got, &want) < 3e-2);
        assert!(add_gated(&x, &seeded(&[2, 5, 6], 4), &g).is_err());
    }
}
