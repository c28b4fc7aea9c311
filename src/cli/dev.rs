//! The hidden developer subcommands' flags: `train` and `eval` of the starter model.

use std::path::PathBuf;

/// Parses an `f32` that `ok` accepts; `what` names the accepted range in the error.
fn number_in(s: &str, ok: impl Fn(f32) -> bool, what: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && ok(v) => Ok(v),
        _ => Err(format!("expected {what}, got `{s}`")),
    }
}

/// A number in (0, 1].
fn fraction(s: &str) -> Result<f32, String> {
    number_in(s, |f| f > 0.0 && f <= 1.0, "a fraction in (0, 1]")
}

/// A loss weight: a finite number ≥ 0.
fn weight(s: &str) -> Result<f32, String> {
    number_in(s, |w| w >= 0.0, "a weight of 0 or more")
}

/// A share in [0, 1).
fn share(s: &str) -> Result<f32, String> {
    number_in(s, |f| (0.0..1.0).contains(&f), "a share in [0, 1)")
}

/// Arguments of the hidden `train` subcommand.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Folder that receives model.safetensors, config.json and the checkpoint.
    #[arg(long, default_value = "assets/starter")]
    pub out: PathBuf,
    /// Optimiser steps in total (a resumed run continues up to this count).
    #[arg(long, default_value_t = 6000)]
    pub steps: u64,
    /// Clips per optimiser step.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Peak learning rate (linear warm-up, then cosine decay to 10 %).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Extra loss weight on the object's pixels (0 = plain MSE over the whole frame).
    #[arg(long, default_value_t = 4.0, value_parser = weight)]
    pub object_weight: f32,
    /// Fraction of the run over which the object weight fades linearly to 0, so the last
    /// steps train plain MSE (unset: the weight stays for the whole run).
    #[arg(long, value_name = "FRACTION", value_parser = fraction)]
    pub object_weight_until: Option<f32>,
    /// Share of clips trained at the noisiest flow times, in [0.9, 1], on top of the usual
    /// time distribution: where the sampler decides a clip's layout from the prompt alone.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = share)]
    pub high_noise_share: f32,
    /// Extra loss weight where the three shapes would differ at the object's place (the
    /// square's corners, the triangle's flanks): the pixels that show the prompt's shape.
    #[arg(long, default_value_t = 4.0, value_parser = weight)]
    pub shape_weight: f32,
    /// Seed of the rendered training clips and captions.
    #[arg(long, default_value_t = 1)]
    pub dataset_seed: u64,
    /// Seed of the initial weights.
    #[arg(long, default_value_t = 2)]
    pub init_seed: u64,
    /// Architecture preset: `small` (the bundled model) or `tiny` (test fixtures).
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Continue from the checkpoint in --out instead of starting over.
    #[arg(long)]
    pub resume: bool,
    /// Write an untrained model (random weights) and exit: a fast fixture for tests.
    #[arg(long)]
    pub untrained: bool,
    /// Export the averaged weights of the checkpoint in this run folder into --out and exit
    /// (to evaluate a run before it finishes).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["untrained", "resume"])]
    pub export_checkpoint: Option<PathBuf>,
}

/// Arguments of the hidden `eval` subcommand.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Model folder to evaluate (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Prompts per triple (28 held-out triples, 140 training ones).
    #[arg(long, default_value_t = 3)]
    pub per_triple: usize,
    /// Which triples to prompt for: the held-out ones (the reported score) or the training
    /// ones (to tune sampler settings without fitting them to the held-out set).
    #[arg(long, value_enum, default_value = "held-out")]
    pub split: crate::models::starter::eval::Split,
    /// Seeds per prompt (0, 1, …).
    #[arg(long, default_value_t = 2)]
    pub seeds: u64,
    /// Sampler steps per clip.
    #[arg(long, default_value_t = 20)]
    pub steps: u32,
    /// Classifier-free guidance scale (default: the model's).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// Output size analysed (square).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Print every case, not just the summary.
    #[arg(long)]
    pub verbose: bool,
}
