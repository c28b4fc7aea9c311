//! The starter model's JSON config: architecture, vocabulary, native size and training record.

use serde::{Deserialize, Serialize};

use super::layers::Activation;
use super::text_encoder::Vocabulary;

/// Architecture name the registry dispatches on.
pub const STARTER_ARCHITECTURE: &str = "starter-dit";

/// How the weights were trained (written by `aivideo train`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub steps: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub ema_decay: f64,
    pub dataset_seed: u64,
    pub init_seed: u64,
    pub cond_dropout: f32,
    /// Extra loss weight on the object's pixels (absent in configs from before it existed).
    #[serde(default)]
    pub object_weight: f32,
    /// Fraction of the run over which the object weight faded to 0 (absent: constant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_weight_until: Option<f32>,
    /// Share of clips trained at flow times in [0.9, 1] on top of the usual distribution.
    #[serde(default)]
    pub high_noise_share: f32,
    /// Extra loss weight where the shapes differ at the object's poses.
    #[serde(default)]
    pub shape_weight: f32,
    /// Held-out (colour, shape, motion) triples, as "colour shape motion".
    pub held_out: Vec<String>,
    pub held_out_rule: String,
    /// Mean training loss over the last steps.
    pub final_loss: f64,
    pub wall_time_s: f64,
    pub threads: usize,
}

/// Everything needed to rebuild and run the model, stored as `config.json` beside the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StarterConfig {
    pub architecture: String,
    pub name: String,
    /// Native frame side in pixels (square).
    pub native_size: usize,
    pub frames: usize,
    pub fps: u32,
    pub patch: usize,
    /// Frames per token (a tubelet of `tubelet` frames × `patch`² pixels).
    pub tubelet: usize,
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub mlp_ratio: usize,
    /// Nonlinearity of the feed-forward blocks (GELU in configs from before it existed).
    #[serde(default)]
    pub activation: Activation,
    /// Per-frame conditioning: the adaLN modulation depends on the frame as well as on the
    /// prompt and noise level, so a prompt can say *when* something happens (where the
    /// object is in each frame of "moving left"). Off in configs from before it existed.
    #[serde(default)]
    pub frame_conditioning: bool,
    pub text_layers: usize,
    pub max_tokens: usize,
    pub vocabulary: Vocabulary,
    /// Sampler timestep shift (1 = uniform steps).
    pub shift: f32,
    /// Flow time the sampler starts from (1 = pure noise). Below 1 the start is pure
    /// noise scaled to that level, like EDM's finite σ_max.
    #[serde(default = "always")]
    pub t_max: f32,
    pub default_guidance: f32,
    /// Classifier-free guidance applies only at flow times at or below this (1 = always).
    #[serde(default = "always")]
    pub guidance_max_t: f32,
    /// File name of the weights, relative to the config.
    pub weights: String,
    /// SHA-256 of the weights file, checked at every load.
    pub weights_sha256: String,
    pub training: Option<TrainingRecord>,
}

fn always() -> f32 {
    1.0
}

impl StarterConfig {
    /// The bundled model's architecture (about 0.6 M parameters).
    pub fn small() -> Self {
        StarterConfig {
            architecture: STARTER_ARCHITECTURE.into(),
            name: "aivideo-starter".into(),
            native_size: 32,
            frames: 16,
            fps: 8,
            patch: 4,
            tubelet: 2,
            dim: 64,
            depth: 4,
            heads: 4,
            mlp_ratio: 4,
            activation: Activation::Relu,
            frame_conditioning: true,
            text_layers: 2,
            max_tokens: 16,
            vocabulary: Vocabulary::starter(),
            shift: 1.0,
            t_max: 0.95,
            default_guidance: 2.5,
            guidance_max_t: 1.0,
            weights: "model.safetensors".into(),
            weights_sha256: String::new(),
            training: None,
        }
    }

    /// A very small variant for fast tests with random weights.
    pub fn tiny() -> Self {
        StarterConfig {
            name: "aivideo-tiny-test".into(),
            dim: 32,
            depth: 1,
            heads: 2,
            mlp_ratio: 2,
            text_layers: 1,
            ..Self::small()
        }
    }

    /// Tokens per tubelet slice.
    pub fn patches(&self) -> usize {
        (self.native_size / self.patch).pow(2)
    }

    /// Token time steps per clip.
    pub fn token_frames(&self) -> usize {
        self.frames / self.tubelet
    }

    /// Values per token: `tubelet × patch × patch × 3`.
    pub fn token_values(&self) -> usize {
        self.tubelet * self.patch * self.patch * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_written_before_newer_fields_still_load() {
        let mut json = serde_json::to_value(StarterConfig::small()).unwrap();
        let obj = json.as_object_mut().unwrap();
        for key in [
            "activation",
            "frame_conditioning",
            "t_max",
            "guidance_max_t",
        ] {
            assert!(obj.remove(key).is_some(), "{key}");
        }
        let old: StarterConfig = serde_json::from_value(json).unwrap();
        assert_eq!(old.activation, Activation::Gelu);
        assert!(!old.frame_conditioning);
        assert_eq!((old.t_max, old.guidance_max_t), (1.0, 1.0));
    }
}
