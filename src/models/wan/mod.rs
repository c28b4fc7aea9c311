//! The Wan2.1 text-to-video family in the Diffusers layout (`WanPipeline`): its manifest,
//! components (UMT5 text encoder, tokenizer, transformer, VAE) and pipeline.

pub mod config;
pub mod manifest;
pub mod pipeline;
#[cfg(test)]
mod testing;
pub mod tokenizer;
pub mod transformer;
pub mod umt5;
pub mod vae;

use candle_core::{DType, Device};

use crate::models::{PipelineError, VideoModel};
pub use manifest::{MODEL_INDEX, WanManifest, inspect_dir};

/// Loads a `WanPipeline` onto `device` in `dtype` (`None`: f32 on the CPU, bf16 on a GPU).
pub fn load(
    manifest: &WanManifest,
    source: &str,
    device: Device,
    dtype: Option<DType>,
) -> Result<Box<dyn VideoModel>, PipelineError> {
    Ok(Box::new(pipeline::WanModel::load(
        manifest, source, device, dtype,
    )?))
}
