//! The fused CPU attention and the chunked path against softmax attention written with
//! candle's ops in one pass.

use candle_core::{D, DType, Device, Tensor};

use super::*;
use crate::nn::testing::{max_abs, max_diff, seeded};

/// `softmax(q·kᵀ)·v` by candle's ops, unchunked, returned as `[B, Sq, H·D]`.
fn reference(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let (b, h, sq, d) = q.dims4().unwrap();
    let (q, k, v) = (
        q.contiguous().unwrap(),
        k.contiguous().unwrap(),
        v.contiguous().unwrap(),
    );
    let scores = q.matmul(&k.t().unwrap()).unwrap();
    let probs = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
    probs
        .matmul(&v)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
        .reshape((b, sq, h * d))
        .unwrap()
}

/// `[B, S, H·D]` data viewed as `[B, H, S, D]`, as the Wan layers pass their heads.
fn heads_view(b: usize, s: usize, h: usize, d: usize, seed: u64, scale: f64) -> Tensor {
    (seeded(&[b, s, h * d], seed) * scale)
        .unwrap()
        .reshape((b, s, h, d))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
}

#[test]
fn the_cpu_kernel_matches_softmax_attention() {
    // Contiguous heads, fewer queries than one block.
    let q = (seeded(&[2, 3, 37, 8], 1) * 2.0).unwrap();
    let k = (seeded(&[2, 3, 29, 8], 2) * 2.0).unwrap();
    let v = seeded(&[2, 3, 29, 8], 3);
    let out = attention(&q, &k, &v, 1.0).unwrap();
    assert_eq!(out.dims(), [2, 37, 24]);
    assert!(max_diff(&out, &reference(&q, &k, &v)) < 1e-6);

    // Strided head views, several query blocks and an uneven tail, a head dim of 64.
    let (b, h, d) = (1, 2, 64);
    let q = heads_view(b, 2 * QUERY_BLOCK + 44, h, d, 4, 0.5);
    let k = heads_view(b, 301, h, d, 5, 0.5);
    let v = heads_view(b, 301, h, d, 6, 1.0);
    assert!(!q.is_contiguous());
    let want = reference(&q, &k, &v);
    let out = attention(&q, &k, &v, 1.0).unwrap();
    assert!(max_diff(&out, &want) < 1e-6 * max_abs(&want).max(1.0));

    // Scores in the hundreds: the softmax subtracts each row's maximum.
    let big = (&q * 40.0).unwrap();
    let want = reference(&big, &k, &v);
    assert!(max_diff(&attention(&big, &k, &v, 1.0).unwrap(), &want) < 1e-5);
    // The scale is applied to the scores: the same as scaling the queries.
    let got = attention(&big, &k, &v, 1.0 / 40.0).unwrap();
    let want = reference(&q, &k, &v);
    assert!(max_diff(&got, &want) < 1e-5);
    assert!(attention(&q, &k, &v, 0.0).is_err());
    assert!(attention(&q, &k, &v, f64::NAN).is_err());
}

/// The CPU kernel on f32 inputs, on the portable (gemm) path or the fastest one here.
fn cpu_kernel(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, portable: bool) -> Tensor {
    q.apply_op3_no_bwd(k, v, &CpuAttention { scale, portable })
        .unwrap()
}

#[test]
fn both_cpu_paths_match_softmax_attention_across_key_blocks() {
    // Head dims of one, three (a partial group of four vectors) and eight vectors; queries
    // over several blocks with a ragged tail (rows not a multiple of 12 or 6); keys over
    // three blocks of the AVX-512 path with a ragged last panel.
    for (d, sq, sk) in [
        (16, 45, 70),
        (48, 2 * QUERY_BLOCK + 7, 1100),
        (128, 131, 1100),
    ] {
        let q = heads_view(2, sq, 3, d, 21, 0.6);
        let k = heads_view(2, sk, 3, d, 22, 0.6);
        let v = heads_view(2, sk, 3, d, 23, 1.0);
        // Scores growing along the keys, so that later key blocks raise each row's maximum
        // and the online softmax rescales what it summed.
        let ramp = Tensor::arange(0f32, sk as f32, &Device::Cpu)
            .unwrap()
            .affine(4.0 / sk as f64, 0.0)
            .unwrap()
            .reshape((1, 1, sk, 1))
            .unwrap();
        let k = k.broadcast_add(&ramp).unwrap();
        let scale = 1.0 / (d as f32).sqrt();
        let want = reference(&(&q * f64::from(scale)).unwrap(), &k, &v);
        for portable in [false, true] {
            let got = cpu_kernel(&q, &k, &v, scale, portable);
            let err = max_diff(&got, &want) / max_abs(&want);
            assert!(err < 1e-5, "d {d}, {sq}×{sk}, portable {portable}: {err}");
        }
    }
}

#[test]
fn the_cpu_kernel_takes_16_bit_inputs_and_checks_shapes() {
    let q = seeded(&[1, 2, 40, 16], 7);
    let k = seeded(&[1, 2, 33, 16], 8);
    let v = seeded(&[1, 2, 33, 16], 9);
    let want = reference(&q, &k, &v);
    let bf = |t: &Tensor| t.to_dtype(DType::BF16).unwrap();
    let out = attention(&bf(&q), &bf(&k), &bf(&v), 1.0).unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    assert!(max_diff(&out, &want) < 2e-2);

    let wrong_v = seeded(&[1, 2, 32, 16], 10);
    assert!(attention(&q, &k, &wrong_v, 1.0).is_err());
    let wrong_d = seeded(&[1, 2, 33, 8], 11);
    assert!(attention(&q, &wrong_d, &wrong_d, 1.0).is_err());
    let no_keys = Tensor::zeros((1, 2, 0, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(attention(&q, &no_keys, &no_keys, 1.0).is_err());
    // No queries, or heads of width 0: an empty result of the right shape.
    let none = attention(&q.narrow(2, 0, 0).unwrap(), &k, &v, 1.0).unwrap();
    assert_eq!(none.dims(), [1, 0, 32]);
    let flat = Tensor::zeros((1, 2, 33, 0), DType::F32, &Device::Cpu).unwrap();
    let thin = attention(&q.narrow(3, 0, 0).unwrap(), &flat, &flat, 1.0).unwrap();
    assert_eq!(thin.dims(), [1, 40, 0]);
}

#[test]
fn chunked_attention_matches_one_pass() {
    let q = (seeded(&[2, 3, 37, 8], 1) * 2.0).unwrap();
    let k = (seeded(&[2, 3, 29, 8], 2) * 2.0).unwrap();
    let v = seeded(&[2, 3, 29, 8], 3);
    let full = reference(&q, &k, &v);
    // One query row per chunk, 5 rows per chunk (uneven tail), and everything at once.
    for budget in [1, 5 * 2 * 3 * 29, 1 << 30] {
        let out = attention_chunked(&q, &k, &v, budget).unwrap();
        assert!(max_diff(&out, &full) < 1e-6, "budget {budget}");
    }
    // bf16 inputs: softmax widened to f32, result close to the f32 one.
    let (qb, kb, vb) = (
        q.to_dtype(DType::BF16).unwrap(),
        k.to_dtype(DType::BF16).unwrap(),
        v.to_dtype(DType::BF16).unwrap(),
    );
    let out = attention_chunked(&qb, &kb, &vb, 7 * 2 * 3 * 29).unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    assert!(max_diff(&out, &full) < 3e-2);
}
