//! A Diffusers pipeline folder's `model_index.json`: the pipeline class and which library
//! class each component folder holds.

use std::path::Path;

use serde::Deserialize;

use crate::models::PipelineError;

/// `["diffusers", "AutoencoderKLWan"]`, or `[null, null]` for a component the pipeline
/// was saved without.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ComponentRef(pub Option<String>, pub Option<String>);

impl ComponentRef {
    /// The class name, when the component is present.
    pub fn class(&self) -> Option<&str> {
        self.1.as_deref()
    }
}

/// The fields of `model_index.json` this build reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelIndex {
    #[serde(rename = "_class_name")]
    pub class_name: String,
    #[serde(rename = "_diffusers_version", default)]
    pub diffusers_version: Option<String>,
    #[serde(rename = "_name_or_path", default)]
    pub name_or_path: Option<String>,
    pub text_encoder: Option<ComponentRef>,
    pub tokenizer: Option<ComponentRef>,
    pub transformer: Option<ComponentRef>,
    pub vae: Option<ComponentRef>,
    pub scheduler: Option<ComponentRef>,
    /// Wan2.2's second (low-noise) transformer; absent or null for Wan2.1.
    #[serde(default)]
    pub transformer_2: Option<ComponentRef>,
    /// Wan2.2's switch point between its two transformers; null for Wan2.1.
    #[serde(default)]
    pub boundary_ratio: Option<f64>,
    /// Wan2.2 TI2V's per-token timesteps; false for Wan2.1.
    #[serde(default)]
    pub expand_timesteps: Option<bool>,
}

impl ModelIndex {
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, PipelineError> {
        serde_json::from_slice(bytes).map_err(|e| PipelineError::BadConfig {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}
