//! The model-facing interface: inspect and load a video model, and generate frames from a
//! validated request.
//!
//! Every model family (the bundled starter model, Wan2.1 in the Diffusers layout) implements
//! [`VideoModel`]; the CLI only talks to this trait, the [`Limits`] a model declares, and the
//! registry's [`inspect`] and [`load`].

pub mod device;
pub mod memory;
pub mod registry;
pub mod starter;
pub mod wan;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use device::{DeviceChoice, Precision, select_device};
pub use registry::{
    Configs, Family, Manifest, ManifestFile, ModelSource, Provenance, has_bundled, inspect, load,
    open,
};

/// The quality presets a request can name; each model maps them to its own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Low,
    Medium,
    High,
}

impl Quality {
    pub const ALL: [Quality; 3] = [Quality::Low, Quality::Medium, Quality::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Medium => "medium",
            Quality::High => "high",
        }
    }
}

impl std::fmt::Display for Quality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Quality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Quality::Low),
            "medium" => Ok(Quality::Medium),
            "high" => Ok(Quality::High),
            other => Err(format!(
                "unknown quality `{other}` (expected low, medium or high)"
            )),
        }
    }
}

/// An inclusive range of allowed values with the value used when the request names none.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bound<T> {
    pub min: T,
    pub max: T,
    pub default: T,
}

impl<T: PartialOrd + Copy> Bound<T> {
    pub fn contains(&self, v: T) -> bool {
        v >= self.min && v <= self.max
    }
}

/// What a quality preset means for one model: its default step count and allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    pub quality: Quality,
    pub steps: Bound<u32>,
}

/// The limits a model declares, so that request validation can check against them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Resolution the model generates at before resampling.
    pub native_width: u32,
    pub native_height: u32,
    pub frames: Bound<u32>,
    /// Frame counts must be `1 + k · frame_step` (Wan's VAE makes 4 frames per latent frame
    /// after the first, so Wan declares 4; 1 allows any count).
    pub frame_step: u32,
    pub fps: Bound<u32>,
    pub guidance: Bound<f32>,
    /// Output width and height (each must also be divisible by `size_multiple`).
    pub width: Bound<u32>,
    pub height: Bound<u32>,
    pub size_multiple: u32,
    /// Step ranges per quality preset, in the order low, medium, high.
    pub presets: [Preset; 3],
}

impl Limits {
    /// The product's presets for a full (not distilled) sampler, with each preset's default
    /// step count: `low` allows at most 30 steps, `high` needs at least 50 (SPEC.md).
    pub fn full_sampler_presets(low: u32, medium: u32, high: u32) -> [Preset; 3] {
        let preset = |quality, min, max, default| Preset {
            quality,
            steps: Bound { min, max, default },
        };
        [
            preset(Quality::Low, 1, 30, low),
            preset(Quality::Medium, 1, 100, medium),
            preset(Quality::High, 50, 100, high),
        ]
    }

    pub fn preset(&self, q: Quality) -> &Preset {
        self.presets
            .iter()
            .find(|p| p.quality == q)
            .expect("every quality has a preset")
    }
}

/// A validated generation request, as the model sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationParams {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub steps: u32,
    pub guidance: f32,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub fps: u32,
}

/// Which long phase of a generation a [`Progress`] report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Denoising steps (`step` of `total_steps`).
    Denoising,
    /// Decoding latents to frames chunk by chunk (`step` chunks of `total_steps` done).
    Decoding,
}

/// Reported to the progress callback after every denoising step (and, for models with a
/// VAE, after every decoded chunk).
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub phase: Phase,
    /// Steps finished so far (1-based after the first step).
    pub step: u32,
    pub total_steps: u32,
    pub elapsed: Duration,
}

/// What the progress callback answers: go on, or stop between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Cancel,
}

/// Wall-clock seconds spent in each phase of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimings {
    pub text_encoding_s: f64,
    pub denoising_s: f64,
    /// Scaling native frames to the requested size (the starter model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resampling_s: Option<f64>,
    /// Decoding latents to frames with the VAE (Diffusers families).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vae_decoding_s: Option<f64>,
}

/// The frames of one generated clip, RGB at the requested size.
#[derive(Debug, Clone)]
pub struct Video {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub frames: Vec<image::RgbImage>,
    pub timings: PhaseTimings,
    /// Prompt words the model does not know and therefore ignored.
    pub ignored_words: Vec<String>,
}

/// Facts about a loaded model, for job metadata and `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    /// Registry name of the architecture, e.g. `starter-dit`.
    pub kind: String,
    /// Where the weights came from: "bundled" or a path.
    pub source: String,
    pub weights_sha256: String,
    pub device: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("model file {path} is missing")]
    MissingFile { path: PathBuf },
    #[error(
        "checksum mismatch for {path}: expected sha256 {expected}, found {actual}; the file is corrupt or was replaced"
    )]
    ChecksumMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("invalid model config {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("this build has no bundled model; train one with `aivideo train` or pass --model DIR")]
    NoBundledModel,
    #[error("device `{0}` is not available in this build or on this machine")]
    DeviceUnavailable(String),
    #[error("invalid weights: {0}")]
    BadWeights(String),
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("request outside the model's limits: {0}")]
    OutOfLimits(String),
    #[error("{}", memory::refusal_message(.estimate, .available))]
    InsufficientMemory {
        estimate: memory::MemoryEstimate,
        available: memory::Available,
    },
    #[error("invalid {name}: {reason}")]
    BadSetting { name: String, reason: String },
    #[error("generation canceled after step {step} of {total}")]
    Canceled { step: u32, total: u32 },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    /// The model named could not be found (a bad reference, or not in the Hub cache).
    #[error(transparent)]
    Hub(#[from] crate::hub::HubError),
}

impl PipelineError {
    /// Structured facts about the error, for the `details` of a JSON error report.
    pub fn details(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            PipelineError::MissingFile { path } => json!({ "path": path }),
            PipelineError::BadConfig { path, reason } => json!({ "path": path, "reason": reason }),
            PipelineError::InsufficientMemory {
                estimate,
                available,
            } => json!({
                "estimate": estimate,
                "available_bytes": available.bytes,
                "available_source": available.source,
            }),
            PipelineError::BadSetting { name, reason } => {
                json!({ "variable": name, "reason": reason })
            }
            PipelineError::Hub(crate::hub::HubError::NotCached {
                repo,
                revision,
                cache,
            }) => json!({ "repo": repo, "revision": revision, "cache": cache }),
            PipelineError::Hub(crate::hub::HubError::BadReference { given, .. }) => {
                json!({ "model": given })
            }
            _ => json!({}),
        }
    }
}

/// The error for an I/O failure on `path`: a missing file is [`PipelineError::MissingFile`].
pub fn io_error(path: &std::path::Path, e: std::io::Error) -> PipelineError {
    match e.kind() {
        std::io::ErrorKind::NotFound => PipelineError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => PipelineError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

impl From<crate::nn::weights::WeightsError> for PipelineError {
    fn from(e: crate::nn::weights::WeightsError) -> Self {
        match e {
            crate::nn::weights::WeightsError::Missing { dir, stem } => PipelineError::MissingFile {
                path: dir.join(format!("{stem}.safetensors")),
            },
            crate::nn::weights::WeightsError::MissingShard { path, .. } => {
                PipelineError::MissingFile { path }
            }
            crate::nn::weights::WeightsError::Io { path, source } => io_error(&path, source),
            other => PipelineError::BadWeights(other.to_string()),
        }
    }
}

/// One loaded text-to-video model.
pub trait VideoModel: Send {
    fn info(&self) -> &ModelInfo;
    fn limits(&self) -> &Limits;
    /// Words of `prompt` this model's text encoder does not know (they are ignored).
    fn unknown_words(&self, prompt: &str) -> Vec<String>;
    /// Whether the text encoder recognises anything in `prompt` at all (a prompt of emoji
    /// only, for a model with a closed vocabulary, gives an unconditioned video).
    fn understands_any(&self, _prompt: &str) -> bool {
        true
    }
    /// Generates one clip; `on_step` runs after each denoising step and may cancel.
    fn generate(
        &self,
        params: &GenerationParams,
        on_step: &mut dyn FnMut(Progress) -> Control,
    ) -> Result<Video, PipelineError>;
}
