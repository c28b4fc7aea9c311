//! CausalConv3d against a direct nested-loop 3D convolution.

use super::*;
use candle_core::{DType, Device, Tensor};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor(dims: &[usize], seed: u64) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_vec(values(n, seed), dims, &Device::Cpu).unwrap()
}

/// Direct causal convolution: builds the padded clip (zeros, then the cache's last frames,
/// then `x`) and loops over every output element.
fn naive(
    x: &Tensor,
    cache: Option<&Tensor>,
    w: &Tensor,
    bias: &Tensor,
    stride: [usize; 3],
    padding: [usize; 3],
) -> Vec<f64> {
    let (b, c, t, h, wd) = x.dims5().unwrap();
    let (o, _, kt, kh, kw) = w.dims5().unwrap();
    let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let wv: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    let bv: Vec<f32> = bias.to_vec1().unwrap();
    let front = 2 * padding[0];
    let (cv, tc) = match cache {
        Some(cc) if front > 0 => (
            cc.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            cc.dim(2).unwrap().min(front),
        ),
        _ => (vec![], 0),
    };
    let tc_full = cache.map(|cc| cc.dim(2).unwrap()).unwrap_or(0);
    let (tp, hp, wp) = (front + t, h + 2 * padding[1], wd + 2 * padding[2]);
    let input = |bi: usize, ci: usize, ti: usize, yi: usize, xi: usize| -> f64 {
        if yi < padding[1] || yi >= h + padding[1] || xi < padding[2] || xi >= wd + padding[2] {
            return 0.0;
        }
        let (yy, xx) = (yi - padding[1], xi - padding[2]);
        if ti >= front {
            let tt = ti - front;
            return xv[(((bi * c + ci) * t + tt) * h + yy) * wd + xx] as f64;
        }
        // Time index inside the padding: the cache fills its last `tc` frames.
        if ti >= front - tc {
            let k = tc_full - (front - ti);
            return cv[(((bi * c + ci) * tc_full + k) * h + yy) * wd + xx] as f64;
        }
        0.0
    };
    let to = (tp - kt) / stride[0] + 1;
    let ho = (hp - kh) / stride[1] + 1;
    let wo = (wp - kw) / stride[2] + 1;
    let mut out = Vec::with_capacity(b * o * to * ho * wo);
    for bi in 0..b {
        for oi in 0..o {
            for ti in 0..to {
                for yi in 0..ho {
                    for xi in 0..wo {
                        let mut acc = bv[oi] as f64;
                        for ci in 0..c {
                            for a in 0..kt {
                                for p in 0..kh {
                                    for q in 0..kw {
                                        let wgt = wv[(((oi * c + ci) * kt + a) * kh + p) * kw + q];
                                        acc += wgt as f64
                                            * input(
                                                bi,
                                                ci,
                                                ti * stride[0] + a,
                                                yi * stride[1] + p,
                                                xi * stride[2] + q,
                                            );
                                    }
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
    }
    out
}

fn check(
    x_dims: [usize; 5],
    out_channels: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    cache_frames: Option<usize>,
) {
    let [b, c, _, h, w] = x_dims;
    let [kt, kh, kw] = kernel;
    let x = tensor(&x_dims, 1);
    let weight = tensor(&[out_channels, c, kt, kh, kw], 2);
    let bias = tensor(&[out_channels], 3);
    let cache = cache_frames.map(|n| tensor(&[b, c, n, h, w], 4));
    let expected = naive(&x, cache.as_ref(), &weight, &bias, stride, padding);
    let peak = expected.iter().fold(1.0f64, |m, e| m.max(e.abs()));
    let auto = CausalConv3d::from_weights(weight.clone(), Some(bias.clone()), stride, padding);
    let unfold =
        CausalConv3d::from_weights_unfold(weight.clone(), Some(bias.clone()), stride, padding);
    for (name, conv) in [("auto", auto), ("unfold", unfold)] {
        let conv = conv.unwrap();
        let y = conv.forward(&x, cache.as_ref()).unwrap();
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got.len(), expected.len(), "shape {:?}", y.shape());
        let max = got
            .iter()
            .zip(&expected)
            .map(|(g, e)| (*g as f64 - e).abs())
            .fold(0.0, f64::max);
        assert!(
            max <= if name == "auto" { 1e-5 } else { 1e-6 } * peak,
            "{name}: max diff {max} (peak {peak}) for {x_dims:?} k{kernel:?} s{stride:?} \
             p{padding:?} cache {cache_frames:?}"
        );
        if name == "auto" {
            let winograd = matches!(conv.method, Method::Winograd(_));
            assert_eq!(winograd, kernel[1..] == [3, 3] && stride[1..] == [1, 1]);
        }
    }
}

#[test]
fn matches_direct_convolution_without_cache() {
    check([2, 3, 4, 5, 6], 4, [3, 3, 3], [1, 1, 1], [1, 1, 1], None);
    check([1, 5, 1, 4, 3], 2, [3, 3, 3], [1, 1, 1], [1, 1, 1], None);
}

#[test]
fn matches_direct_convolution_with_cache() {
    check([1, 3, 1, 5, 4], 4, [3, 3, 3], [1, 1, 1], [1, 1, 1], Some(1));
    check([2, 3, 4, 5, 4], 2, [3, 3, 3], [1, 1, 1], [1, 1, 1], Some(2));
    // Longer caches only contribute their last 2·pt frames.
    check([1, 2, 2, 3, 3], 3, [3, 3, 3], [1, 1, 1], [1, 1, 1], Some(3));
}

#[test]
fn winograd_tiles_partial_tiles_and_bands() {
    // 3×3 kernels: partial 4×4 tiles at the borders, several tile rows per band, and more
    // tiles than one band holds.
    check([1, 2, 2, 7, 9], 3, [3, 3, 3], [1, 1, 1], [1, 1, 1], Some(1));
    check([1, 2, 1, 3, 2], 2, [3, 3, 3], [1, 1, 1], [1, 1, 1], None);
    check(
        [1, 2, 1, 130, 150],
        2,
        [1, 3, 3],
        [1, 1, 1],
        [0, 1, 1],
        None,
    );
    check([2, 3, 3, 10, 6], 2, [3, 3, 3], [2, 1, 1], [0, 0, 0], None);
    // Many channels with values of realistic size.
    check(
        [1, 64, 1, 6, 5],
        8,
        [3, 3, 3],
        [1, 1, 1],
        [1, 1, 1],
        Some(2),
    );
}

#[test]
fn temporal_and_pointwise_kernels() {
    // upsample3d's time_conv, with and without cache.
    check([1, 4, 3, 2, 3], 8, [3, 1, 1], [1, 1, 1], [1, 0, 0], None);
    check([1, 4, 1, 2, 3], 8, [3, 1, 1], [1, 1, 1], [1, 0, 0], Some(2));
    // downsample3d's time_conv: stride 2, no padding, the cache is ignored.
    check([2, 3, 5, 2, 2], 3, [3, 1, 1], [2, 1, 1], [0, 0, 0], None);
    check([1, 3, 3, 2, 2], 3, [3, 1, 1], [2, 1, 1], [0, 0, 0], Some(1));
    // 1×1×1 shortcut and quant convs.
    check([2, 6, 3, 4, 5], 2, [1, 1, 1], [1, 1, 1], [0, 0, 0], None);
}

#[test]
fn per_frame_2d_kernels_with_spatial_stride() {
    check([1, 3, 2, 7, 8], 4, [1, 3, 3], [1, 2, 2], [0, 0, 0], None);
    check([2, 2, 3, 6, 5], 3, [1, 3, 3], [1, 2, 2], [0, 0, 0], None);
    check([1, 2, 2, 4, 4], 3, [1, 3, 3], [1, 1, 1], [0, 1, 1], None);
}

#[test]
fn bf16_weights_compute_in_matmul_dtype() {
    let weight = tensor(&[2, 3, 3, 3, 3], 5).to_dtype(DType::BF16).unwrap();
    let conv = CausalConv3d::from_weights(weight, None, [1, 1, 1], [1, 1, 1]).unwrap();
    assert_eq!(conv.dtype(), matmul_dtype(&Device::Cpu, DType::BF16));
    let x = tensor(&[1, 3, 2, 4, 4], 6).to_dtype(DType::BF16).unwrap();
    let y = conv.forward(&x, None).unwrap();
    assert_eq!(y.dims(), &[1, 2, 2, 4, 4]);
}

#[test]
fn last_frames_copies_the_tail() {
    let x = tensor(&[1, 2, 5, 2, 2], 7);
    let tail = last_frames(&x, 2).unwrap();
    assert_eq!(tail.dims(), &[1, 2, 2, 2, 2]);
    assert!(tail.is_contiguous());
    let expect: Vec<f32> = x
        .narrow(2, 3, 2)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(
        tail.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        expect
    );
    assert_eq!(last_frames(&x, 9).unwrap().dim(2).unwrap(), 5);
}
