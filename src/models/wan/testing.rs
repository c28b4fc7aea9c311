//! Helpers shared by the Wan components' parity tests: the fixture folder made by
//! `tests/reference/run.sh`, its reference tensors, and the difference measures.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};

pub use crate::nn::testing::{max_abs, max_diff, seeded};

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
