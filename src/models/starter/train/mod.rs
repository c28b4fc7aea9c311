//! Training the starter model on procedurally rendered clips: reproducible, resumable,
//! and writing the weights and config the pipeline loads.

pub mod optim;
pub mod params;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::models::starter::StarterNet;
use crate::models::starter::config::{StarterConfig, TrainingRecord};
use crate::models::starter::synth::captions::caption;
use crate::models::starter::synth::render::{ClipSpec, random_scene};
use crate::models::starter::synth::vocab::Triple;
use crate::models::starter::text_encoder::EMPTY;
use crate::models::starter::weights;
use crate::rng::Rng;
use optim::AdamW;
use params::{Params, save_atomic};

/// Everything that determines a training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub out_dir: PathBuf,
    pub steps: u64,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup: u64,
    pub weight_decay: f64,
    pub ema_decay: f64,
    pub dataset_seed: u64,
    pub init_seed: u64,
    pub cond_dropout: f32,
    /// Extra loss weight on the object's pixels (0 = plain MSE). The object covers about a
    /// tenth of the frame, so without it the prompt's colour, shape and motion are a small
    /// share of the loss next to the background.
    #[serde(default)]
    pub object_weight: f32,
    /// Fraction of the run over which the object weight fades linearly to 0 (`None`: it
    /// stays). The weight depends on the target, so it biases the prediction towards the
    /// object where the layout is uncertain (objects come out too big); plain MSE at the
    /// end of the run removes that bias, after the prompt's colour has been learned.
    #[serde(default)]
    pub object_weight_until: Option<f32>,
    /// Share of training clips noised to flow times in [0.9, 1], on top of the usual
    /// time distribution: the noisiest times are where the sampler lays a clip out (where
    /// the object starts and which way it goes), and the prompt is all the model has there.
    #[serde(default)]
    pub high_noise_share: f32,
    /// Extra loss weight where the three shapes differ at the object's poses (corners,
    /// the triangle's flanks): the only pixels where the caption's shape word matters.
    #[serde(default)]
    pub shape_weight: f32,
    pub checkpoint_every: u64,
    /// `small` (the bundled model) or `tiny` (tests).
    pub preset: String,
}

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    step: u64,
    options: TrainOptions,
    recent_losses: Vec<f64>,
    wall_time_s: f64,
}

/// Progress reported after every step.
pub struct StepReport {
    pub step: u64,
    pub loss: f64,
    pub smoothed_loss: f64,
}

/// One training batch.
pub struct Batch {
    /// Clean clips in [-1, 1], `(B, T, S, S, 3)`.
    pub x0: Tensor,
    /// How much of each pixel the object covers, in [0, 1], `(B, T, S, S, 1)`.
    pub cover: Tensor,
    /// Where the shapes differ at the object's poses, in [0, 1], `(B, T, S, S, 1)`
    /// (see [`ClipSpec::shape_zone`]).
    pub zone: Tensor,
    /// Token ids of each clip's caption (or `<empty>` for the unconditional branch).
    pub seqs: Vec<Vec<u32>>,
}

/// Renders one training batch; the same seed and step always give the same batch.
pub fn make_batch(
    net: &StarterNet,
    triples: &[Triple],
    seed: u64,
    step: u64,
    batch: usize,
    cond_dropout: f32,
    device: &Device,
) -> candle_core::Result<Batch> {
    let s = net.cfg.native_size;
    let frames = net.cfg.frames;
    let mut pixels = Vec::with_capacity(batch * frames * s * s * 3);
    let mut cover = Vec::with_capacity(batch * frames * s * s);
    let mut zone = Vec::with_capacity(batch * frames * s * s);
    let mut seqs = Vec::with_capacity(batch);
    for i in 0..batch {
        let mut rng = Rng::derive(seed, &[step, i as u64]);
        let scene = random_scene(&mut rng, triples);
        let spec = ClipSpec::sample(scene, s, frames, &mut rng);
        let covered = spec.coverage();
        let clip = spec.paint(&covered);
        zone.extend(spec.shape_zone().into_iter().flatten());
        cover.extend(covered.into_iter().flatten());
        for f in &clip.frames {
            pixels.extend(f.iter().map(|&v| v as f32 / 127.5 - 1.0));
        }
        let text = caption(&scene, &mut rng);
        seqs.push(if rng.chance(cond_dropout) {
            vec![EMPTY]
        } else {
            net.tokenize(&text).ids
        });
    }
    let shape = net.clip_shape(batch);
    let x0 = Tensor::from_vec(pixels, shape.to_vec(), device)?;
    let mask_shape = [&shape[..4], &[1]].concat();
    let cover = Tensor::from_vec(cover, mask_shape.clone(), device)?;
    let zone = Tensor::from_vec(zone, mask_shape, device)?;
    Ok(Batch {
        x0,
        cover,
        zone,
        seqs,
    })
}

/// How one batch's loss weighs pixels and draws noise levels.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossOptions {
    /// Extra weight on the object's pixels.
    pub object_weight: f32,
    /// Extra weight where the shapes differ at the object's poses.
    pub shape_weight: f32,
    /// Share of clips drawn at flow times in [0.9, 1].
    pub high_noise_share: f32,
}

/// Flow-matching loss for one batch: noise the clips at random times, predict the clean
/// clips, and weigh each pixel's squared error by `1 + object_weight · cover
/// + shape_weight · zone`.
pub fn loss(
    net: &StarterNet,
    batch: &Batch,
    o: LossOptions,
    rng: &mut Rng,
    device: &Device,
) -> candle_core::Result<Tensor> {
    let Batch {
        x0,
        cover,
        zone,
        seqs,
    } = batch;
    let b = seqs.len();
    let times: Vec<f32> = (0..b)
        .map(|_| sample_time(rng, o.high_noise_share))
        .collect();
    let noise = Tensor::from_vec(rng.normals(x0.elem_count()), x0.shape(), device)?;
    let t = Tensor::from_vec(times.clone(), (b, 1, 1, 1, 1), device)?;
    let xt = (x0.broadcast_mul(&(1.0 - &t)?)? + noise.broadcast_mul(&t)?)?;
    let text = net.encode(seqs, device, true)?;
    // Plain x-prediction loss: every noise level weighs the same, so the noisiest ones,
    // where a sample's layout is decided, are not drowned out by the easy low-noise ones.
    let pred = net.denoiser.forward(&xt, &times, &text, true)?;
    let mut weight = ((cover * o.object_weight as f64)? + 1.0)?;
    if o.shape_weight > 0.0 {
        weight = (weight + (zone * o.shape_weight as f64)?)?;
    }
    let total = (weight.sum_all()? * 3.0)?;
    (pred - x0)?
        .sqr()?
        .broadcast_mul(&weight)?
        .sum_all()?
        .div(&total)
}

/// Flow time for one training clip: mostly logit-normal around the middle of the path,
/// shifted towards noise, plus a uniform share so the noisiest times (where the sampler
/// starts and the layout is decided) are trained too, plus `high_noise_share` of clips
/// uniform in [0.9, 1] (none drawn, and no randomness used, when it is 0).
pub fn sample_time(rng: &mut Rng, high_noise_share: f32) -> f32 {
    if high_noise_share > 0.0 && rng.chance(high_noise_share) {
        return 1.0 - 0.1 * rng.f32();
    }
    if rng.chance(0.25) {
        rng.f32()
    } else {
        1.0 / (1.0 + (-(rng.normal() + 0.8)).exp())
    }
}

/// The object weight at `step`: constant, or fading linearly to 0 by `object_weight_until`.
fn object_weight_at(o: &TrainOptions, step: u64) -> f32 {
    match o.object_weight_until {
        None => o.object_weight,
        Some(f) => {
            let end = f * o.steps as f32;
            o.object_weight * (1.0 - step as f32 / end.max(1.0)).max(0.0)
        }
    }
}

fn lr_at(o: &TrainOptions, step: u64) -> f64 {
    if step < o.warmup {
        return o.learning_rate * (step + 1) as f64 / o.warmup as f64;
    }
    // Cosine decay to 10 % over the remaining steps.
    let p = (step - o.warmup) as f64 / (o.steps - o.warmup).max(1) as f64;
    o.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

pub fn config_for(preset: &str) -> anyhow::Result<StarterConfig> {
    match preset {
        "small" => Ok(StarterConfig::small()),
        "tiny" => Ok(StarterConfig::tiny()),
        o => anyhow::bail!("unknown model preset `{o}` (expected small or tiny)"),
    }
}

/// Trains (or resumes) and writes `model.safetensors` and `config.json` to `out_dir`.
pub fn train(
    opts: &TrainOptions,
    resume: bool,
    on_step: &mut dyn FnMut(&StepReport),
) -> anyhow::Result<StarterConfig> {
    use anyhow::Context;
    let device = Device::Cpu;
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let cfg = config_for(&opts.preset)?;
    let params = Params::new(opts.init_seed);
    let net = StarterNet::new(&cfg, params.var_builder(&device))?;
    let mut opt = AdamW::new(params.vars(), opts.weight_decay, opts.ema_decay)?;
    let ckpt = opts.out_dir.join("checkpoint.safetensors");
    let ckpt_meta = opts.out_dir.join("checkpoint.json");
    let mut start = 0;
    let mut recent: Vec<f64> = Vec::new();
    let mut wall = 0.0;
    if resume && ckpt.exists() {
        let meta: CheckpointMeta = serde_json::from_slice(&std::fs::read(&ckpt_meta)?)
            .context("reading checkpoint.json")?;
        let tensors = candle_core::safetensors::load(&ckpt, &device)?;
        let weights: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.clone())))
            .collect();
        params.load(&weights)?;
        opt.load_state(&tensors, meta.step)?;
        start = meta.step;
        recent = meta.recent_losses;
        wall = meta.wall_time_s;
    }
    let triples = Triple::training();
    let t0 = Instant::now();
    let mut smoothed = recent.last().copied().unwrap_or(1.0);
    for step in start..opts.steps {
        let batch = make_batch(
            &net,
            &triples,
            opts.dataset_seed,
            step,
            opts.batch_size,
            opts.cond_dropout,
            &device,
        )?;
        let mut rng = Rng::derive(opts.dataset_seed ^ 0x5EED, &[step]);
        let weights = LossOptions {
            object_weight: object_weight_at(opts, step),
            shape_weight: opts.shape_weight,
            high_noise_share: opts.high_noise_share,
        };
        let l = loss(&net, &batch, weights, &mut rng, &device)?;
        let value = l.to_scalar::<f32>()? as f64;
        if !value.is_finite() {
            anyhow::bail!("training diverged at step {step} (loss {value})");
        }
        opt.step(&l.backward()?, lr_at(opts, step))?;
        smoothed = 0.98 * smoothed + 0.02 * value;
        recent.push(value);
        if recent.len() > 200 {
            recent.remove(0);
        }
        on_step(&StepReport {
            step: step + 1,
            loss: value,
            smoothed_loss: smoothed,
        });
        let done = step + 1 == opts.steps;
        if (step + 1) % opts.checkpoint_every == 0 || done {
            let mut all = opt.state();
            for (k, v) in params.tensors() {
                all.insert(format!("param.{k}"), v);
            }
            save_atomic(&all, &ckpt)?;
            let meta = CheckpointMeta {
                step: step + 1,
                options: opts.clone(),
                recent_losses: recent.clone(),
                wall_time_s: wall + t0.elapsed().as_secs_f64(),
            };
            std::fs::write(&ckpt_meta, serde_json::to_vec_pretty(&meta)?)?;
        }
    }
    let final_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    export(
        cfg,
        &opt.ema_tensors(),
        opts,
        opts.steps,
        final_loss,
        wall + t0.elapsed().as_secs_f64(),
    )
}

/// Writes the averaged weights and a config with the training record to `opts.out_dir`.
fn export(
    mut cfg: StarterConfig,
    ema: &HashMap<String, Tensor>,
    opts: &TrainOptions,
    steps: u64,
    final_loss: f64,
    wall_time_s: f64,
) -> anyhow::Result<StarterConfig> {
    let weights_path = opts.out_dir.join(&cfg.weights);
    let ema: HashMap<String, Tensor> = ema
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_dtype(DType::F32)?)))
        .collect::<candle_core::Result<_>>()?;
    save_atomic(&ema, &weights_path)?;
    cfg.weights_sha256 = weights::sha256_file(&weights_path)?;
    cfg.training = Some(TrainingRecord {
        steps,
        batch_size: opts.batch_size,
        learning_rate: opts.learning_rate,
        ema_decay: opts.ema_decay,
        dataset_seed: opts.dataset_seed,
        init_seed: opts.init_seed,
        cond_dropout: opts.cond_dropout,
        object_weight: opts.object_weight,
        object_weight_until: opts.object_weight_until,
        high_noise_share: opts.high_noise_share,
        shape_weight: opts.shape_weight,
        held_out: Triple::held_out().iter().map(|t| t.label()).collect(),
        held_out_rule: "(colour_index + 2*shape_index + 3*motion_index) % 6 == 0".into(),
        final_loss,
        wall_time_s,
        threads: rayon_threads(),
    });
    write_config(&cfg, &opts.out_dir.join("config.json"))?;
    Ok(cfg)
}

/// Exports the averaged weights of the checkpoint in `run_dir` into `out_dir`
/// (to evaluate a run before it finishes).
pub fn export_checkpoint(run_dir: &Path, out_dir: &Path) -> anyhow::Result<StarterConfig> {
    use anyhow::Context;
    let meta: CheckpointMeta =
        serde_json::from_slice(&std::fs::read(run_dir.join("checkpoint.json"))?)
            .context("reading checkpoint.json")?;
    let tensors =
        candle_core::safetensors::load(run_dir.join("checkpoint.safetensors"), &Device::Cpu)?;
    let ema: HashMap<String, Tensor> = tensors
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("ema.").map(|n| (n.to_string(), v.clone())))
        .collect();
    std::fs::create_dir_all(out_dir)?;
    let opts = TrainOptions {
        out_dir: out_dir.to_path_buf(),
        ..meta.options.clone()
    };
    let loss = meta.recent_losses.iter().sum::<f64>() / meta.recent_losses.len().max(1) as f64;
    export(
        config_for(&opts.preset)?,
        &ema,
        &opts,
        meta.step,
        loss,
        meta.wall_time_s,
    )
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Writes a config as pretty JSON, atomically.
pub fn write_config(cfg: &StarterConfig, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(cfg)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Writes an untrained model of `preset` with random weights everywhere (even where
/// training starts from zeros, so its output depends on the noise) to `dir`: a fast fixture
/// for tests of everything around the model.
pub fn write_untrained(preset: &str, dir: &Path, seed: u64) -> anyhow::Result<StarterConfig> {
    let mut cfg = config_for(preset)?;
    let params = Params::with_options(seed, true);
    StarterNet::new(&cfg, params.var_builder(&Device::Cpu))?;
    std::fs::create_dir_all(dir)?;
    let weights_path = dir.join(&cfg.weights);
    save_atomic(&params.tensors(), &weights_path)?;
    cfg.weights_sha256 = weights::sha256_file(&weights_path)?;
    write_config(&cfg, &dir.join("config.json"))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Control, DeviceChoice, GenerationParams, ModelSource, open};

    fn params(seed: u64) -> GenerationParams {
        GenerationParams {
            prompt: "a red ball moving left on a black background".into(),
            negative_prompt: None,
            steps: 2,
            guidance: 3.0,
            seed,
            width: 256,
            height: 320,
            frames: 16,
            fps: 8,
        }
    }

    #[test]
    fn same_seed_gives_identical_frames_and_another_seed_differs() {
        let dir = tempfile::tempdir().unwrap();
        write_untrained("tiny", dir.path(), 3).unwrap();
        let model = open(&ModelSource::Dir(dir.path().into()), DeviceChoice::Cpu).unwrap();
        let go = |seed| {
            model
                .generate(&params(seed), &mut |_| Control::Continue)
                .unwrap()
        };
        let (a, b, c) = (go(7), go(7), go(8));
        assert_eq!(a.frames.len(), 16);
        assert_eq!(a.frames[0].dimensions(), (256, 320));
        assert!(a.frames == b.frames, "same seed must give identical frames");
        assert!(a.frames != c.frames, "another seed must give other frames");
    }

    #[test]
    fn object_weight_fades_to_zero_by_the_given_fraction() {
        let mut o = TrainOptions {
            out_dir: PathBuf::new(),
            steps: 100,
            batch_size: 1,
            learning_rate: 1e-3,
            warmup: 1,
            weight_decay: 0.0,
            ema_decay: 0.9,
            dataset_seed: 1,
            init_seed: 1,
            cond_dropout: 0.1,
            object_weight: 4.0,
            object_weight_until: Some(0.5),
            high_noise_share: 0.0,
            shape_weight: 0.0,
            checkpoint_every: 10,
            preset: "tiny".into(),
        };
        let w: Vec<f32> = [0, 25, 50, 99].map(|s| object_weight_at(&o, s)).to_vec();
        assert_eq!(w, vec![4.0, 2.0, 0.0, 0.0]);
        o.object_weight_until = None;
        assert_eq!(object_weight_at(&o, 99), 4.0);
    }

    #[test]
    fn cover_marks_the_object_and_only_the_object() {
        let cfg = StarterConfig::tiny();
        let net = StarterNet::new(&cfg, Params::new(1).var_builder(&Device::Cpu)).unwrap();
        let batch = make_batch(&net, &Triple::training(), 3, 0, 2, 0.0, &Device::Cpu).unwrap();
        let cover: Vec<f32> = batch.cover.flatten_all().unwrap().to_vec1().unwrap();
        let x0: Vec<f32> = batch.x0.flatten_all().unwrap().to_vec1().unwrap();
        let full = cover.iter().filter(|&&c| c == 1.0).count();
        let none = cover.iter().filter(|&&c| c == 0.0).count();
        let edge = cover.len() - full - none;
        // An object of a tenth of the frame or so, with anti-aliased edges.
        assert!(full * 30 > cover.len() && full * 4 < cover.len(), "{full}");
        assert!(edge > 0 && edge < full, "{edge} edge pixels");
        // Uncovered pixels are exactly the background: the first pixel's colour.
        let frame = cfg.native_size * cfg.native_size;
        for (i, &c) in cover.iter().enumerate() {
            let bg = &x0[(i / frame) * frame * 3..][..3];
            let px = &x0[i * 3..i * 3 + 3];
            if c == 0.0 {
                assert_eq!(px, bg, "pixel {i}");
            }
        }
    }

    #[test]
    fn training_is_reproducible_and_resumes_to_the_same_weights() {
        let base = tempfile::tempdir().unwrap();
        let opts = |dir: &Path, steps| TrainOptions {
            out_dir: dir.to_path_buf(),
            steps,
            batch_size: 2,
            learning_rate: 1e-3,
            warmup: 1,
            weight_decay: 0.0,
            ema_decay: 0.9,
            dataset_seed: 4,
            init_seed: 5,
            cond_dropout: 0.1,
            object_weight: 4.0,
            // The fade depends on `steps`, which this test changes between the halves.
            object_weight_until: None,
            high_noise_share: 0.25,
            shape_weight: 2.0,
            checkpoint_every: 2,
            preset: "tiny".into(),
        };
        let (a, b) = (base.path().join("a"), base.path().join("b"));
        let straight = train(&opts(&a, 4), false, &mut |_| {}).unwrap();
        // Stop after 2 steps, then resume to 4: same weights as the straight run.
        train(&opts(&b, 2), false, &mut |_| {}).unwrap();
        let mut seen = Vec::new();
        let resumed = train(&opts(&b, 4), true, &mut |r| seen.push(r.step)).unwrap();
        assert_eq!(seen, vec![3, 4], "resume continues after the checkpoint");
        assert_eq!(straight.weights_sha256, resumed.weights_sha256);
        // The last checkpoint holds the same averaged weights the run exported.
        let exported = export_checkpoint(&a, &base.path().join("x")).unwrap();
        assert_eq!(exported.weights_sha256, straight.weights_sha256);
        assert_eq!(exported.training.as_ref().unwrap().steps, 4);
        let rec = straight.training.unwrap();
        assert_eq!(rec.held_out.len(), 28);
        assert!(rec.final_loss.is_finite() && rec.final_loss > 0.0);
    }
}
