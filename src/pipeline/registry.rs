//! The model registry: which architectures exist and how to load one from a source.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::STARTER_ARCHITECTURE;
use super::starter::StarterModel;
use super::{DeviceChoice, PipelineError, VideoModel, select_device, weights};

/// Architectures this build can run. Hub models (AnimateDiff and others) join here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// The small diffusion transformer trained in this repository.
    StarterDit,
}

impl ModelKind {
    pub fn from_architecture(name: &str) -> Option<Self> {
        (name == STARTER_ARCHITECTURE).then_some(ModelKind::StarterDit)
    }
}

/// Where a model's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The starter model compiled into this binary.
    Bundled,
    /// A folder with `config.json` and the weights it names.
    Dir(PathBuf),
}

#[cfg(bundled_model)]
const BUNDLED: Option<(&[u8], &[u8])> = Some((
    include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/starter/config.json"
    )),
    include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/starter/model.safetensors"
    )),
));
#[cfg(not(bundled_model))]
const BUNDLED: Option<(&[u8], &[u8])> = None;

/// Whether this binary carries the bundled model.
pub fn has_bundled() -> bool {
    BUNDLED.is_some()
}

/// Loads a model onto the chosen device, verifying its weights.
pub fn load(
    source: &ModelSource,
    device: DeviceChoice,
) -> Result<Box<dyn VideoModel>, PipelineError> {
    let (cfg, weights, label) = match source {
        ModelSource::Bundled => {
            let (cfg_bytes, weights) = BUNDLED.ok_or(PipelineError::NoBundledModel)?;
            let path = Path::new("<bundled>/model.safetensors");
            let cfg = weights::parse_config(cfg_bytes, Path::new("<bundled>/config.json"))?;
            weights::verify(&cfg, weights, path)?;
            (cfg, weights.to_vec(), "bundled".to_string())
        }
        ModelSource::Dir(dir) => {
            let (cfg, weights, _) = weights::load_dir(dir)?;
            (cfg, weights, dir.display().to_string())
        }
    };
    match ModelKind::from_architecture(&cfg.architecture) {
        Some(ModelKind::StarterDit) => {
            let device = select_device(device)?;
            Ok(Box::new(StarterModel::new(cfg, weights, label, device)?))
        }
        None => Err(PipelineError::BadConfig {
            path: PathBuf::from(label),
            reason: format!("unknown architecture `{}`", cfg.architecture),
        }),
    }
}
