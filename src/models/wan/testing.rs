//! Helpers shared by the Wan components' parity tests: the fixture folder made by
//! `tests/reference/run.sh`, its reference tensors, and the difference measures.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};

/// `tests/data/wan`.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wan");

/// A path inside the fixture folder.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(FIXTURES).join(rel)
}

/// Every tensor of a fixture safetensors file (e.g. `reference/vae.safetensors`).
pub fn load(rel: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(rel), &Device::Cpu).unwrap()
}

/// The largest absolute value of `t`, in f32.
pub fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The largest absolute difference of `a` and `b` (same shape), in f32.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let a = a.to_dtype(DType::F32).unwrap();
    max_abs(&(a - b.to_dtype(DType::F32).unwrap()).unwrap())
}
