//! The Wan2.1 text-to-video family in the Diffusers layout (`WanPipeline`): its manifest,
//! components (UMT5 text encoder, tokenizer, transformer, VAE) and pipeline.

pub mod config;
pub mod manifest;

use candle_core::{DType, Device};

use crate::models::{PipelineError, VideoModel};
pub use manifest::{MODEL_INDEX, WanManifest, inspect_dir};

/// Loads a `WanPipeline` onto `device` in `dtype` (`None`: the family's default).
pub fn load(
    _manifest: &WanManifest,
    _source: &str,
    _device: Device,
    _dtype: Option<DType>,
) -> Result<Box<dyn VideoModel>, PipelineError> {
    Err(PipelineError::Unsupported(
        "running Wan pipelines is not built yet: this build can inspect them only".into(),
    ))
}
