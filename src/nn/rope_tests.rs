//! Tests of the 3D rotary embedding against a direct evaluation of its formula.

use super::*;

#[test]
fn axis_split_follows_wan() {
    assert_eq!(wan_axis_dims(128).unwrap(), [44, 42, 42]);
    assert_eq!(wan_axis_dims(12).unwrap(), [4, 4, 4]);
    assert_eq!(wan_axis_dims(4).unwrap(), [4, 0, 0]);
    assert!(wan_axis_dims(13).is_err());
    assert!(wan_axis_dims(0).is_err());
}

#[test]
fn tables_hold_the_angles_of_each_axis() {
    let grid = [3, 4, 5];
    let rope = Rope3d::new(12, grid, WAN_ROPE_THETA, &Device::Cpu).unwrap();
    let cos: Vec<Vec<f32>> = rope.cos().to_vec2().unwrap();
    let sin: Vec<Vec<f32>> = rope.sin().to_vec2().unwrap();
    assert_eq!(cos.len(), 60);
    // Token (f=2, h=1, w=3); 4 channels (2 pairs) per axis.
    let tok = (2 * 4 + 1) * 5 + 3;
    for (axis, pos) in [(0usize, 2f64), (1, 1.0), (2, 3.0)] {
        for j in 0..2 {
            let a = pos / 10_000f64.powf(2.0 * j as f64 / 4.0);
            let col = axis * 2 + j;
            assert!((cos[tok][col] as f64 - a.cos()).abs() < 1e-7);
            assert!((sin[tok][col] as f64 - a.sin()).abs() < 1e-7);
        }
    }
}

#[test]
fn apply_rotates_adjacent_pairs() {
    let grid = [2, 1, 3];
    let rope = Rope3d::new(12, grid, WAN_ROPE_THETA, &Device::Cpu).unwrap();
    let n = 6 * 12 * 2;
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    let x = Tensor::from_vec(data.clone(), (1, 2, 6, 12), &Device::Cpu).unwrap();
    let y: Vec<f32> = rope
        .scaled(0.5)
        .unwrap()
        .apply(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let cos: Vec<Vec<f32>> = rope.cos().to_vec2().unwrap();
    let sin: Vec<Vec<f32>> = rope.sin().to_vec2().unwrap();
    for h in 0..2 {
        for t in 0..6 {
            for j in 0..6 {
                let i = (h * 6 + t) * 12 + 2 * j;
                let (x0, x1) = (data[i], data[i + 1]);
                let (c, s) = (cos[t][j], sin[t][j]);
                assert!((y[i] - 0.5 * (x0 * c - x1 * s)).abs() < 1e-6);
                assert!((y[i + 1] - 0.5 * (x0 * s + x1 * c)).abs() < 1e-6);
            }
        }
    }
    // bf16 in, bf16 out; a strided input is accepted.
    let xb = x.to_dtype(DType::BF16).unwrap();
    let yb = rope.apply(&xb).unwrap();
    assert_eq!(yb.dtype(), DType::BF16);
    let strided = xb.transpose(1, 2).unwrap().contiguous().unwrap();
    let strided = strided.transpose(1, 2).unwrap();
    assert!(!strided.is_contiguous());
    let diff = (rope.apply(&strided).unwrap().to_dtype(DType::F32).unwrap()
        - yb.to_dtype(DType::F32).unwrap())
    .unwrap()
    .abs()
    .unwrap()
    .max_all()
    .unwrap()
    .to_scalar::<f32>()
    .unwrap();
    assert_eq!(diff, 0.0);
    assert!(rope.apply(&x.narrow(2, 0, 5).unwrap()).is_err());
}

#[test]
fn rms_norm_apply_matches_norm_then_rotation() {
    use crate::nn::norm::rms_norm;
    use crate::nn::testing::{max_diff, seeded};
    let (heads, d) = (3, 12);
    let rope = Rope3d::new(d, [2, 2, 3], WAN_ROPE_THETA, &Device::Cpu).unwrap();
    let x = (seeded(&[2, 12, heads * d], 1) * 3.0).unwrap();
    let w = (seeded(&[heads * d], 2) + 1.5).unwrap();
    let want = rope
        .apply(
            &rms_norm(&x, Some(&w), 1e-6)
                .unwrap()
                .reshape((2, 12, heads, d))
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
        )
        .unwrap();
    let got = rope.rms_norm_apply(&x, &w, 1e-6).unwrap();
    assert_eq!(got.dims(), [2, heads, 12, d]);
    assert!(max_diff(&got, &want) < 1e-6);
    // bf16 goes the unfused way and stays close.
    let xb = x.to_dtype(DType::BF16).unwrap();
    let gb = rope.rms_norm_apply(&xb, &w, 1e-6).unwrap();
    assert_eq!(gb.dtype(), DType::BF16);
    assert!(max_diff(&gb, &want) < 5e-2);
    // Wrong token count, a weight of the wrong size.
    assert!(
        rope.rms_norm_apply(&x.narrow(1, 0, 11).unwrap(), &w, 1e-6)
            .is_err()
    );
    assert!(
        rope.rms_norm_apply(&x, &w.narrow(0, 0, 35).unwrap(), 1e-6)
            .is_err()
    );
}
