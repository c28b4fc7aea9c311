//! Evaluation of a video model on the held-out (colour, shape, motion) triples: generate,
//! analyse the frames, and score colour, background, shape, motion and flicker.

use serde::{Deserialize, Serialize};

use crate::models::starter::synth::analyse::analyse;
use crate::models::starter::synth::captions::{TEMPLATES, caption_with};
use crate::models::starter::synth::vocab::{Background, Motion, Scene, Shape, Triple};
use crate::models::{Control, GenerationParams, PipelineError, VideoModel};
use crate::rng::Rng;

/// One evaluation prompt and the scene it describes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalPrompt {
    pub prompt: String,
    pub scene: Scene,
}

/// Which (colour, shape, motion) triples an evaluation prompts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// The triples training never sees: the score the targets are about.
    HeldOut,
    /// The training triples: for tuning sampler settings without looking at the held-out set.
    Training,
}

impl Split {
    /// How reports name the split.
    pub fn label(self) -> &'static str {
        match self {
            Split::HeldOut => "held-out",
            Split::Training => "training-triple",
        }
    }
}

/// `per_triple` prompts for every triple of `split`, with varied backgrounds and wording.
pub fn prompts(split: Split, per_triple: usize) -> Vec<EvalPrompt> {
    let (triples, seed) = match split {
        Split::HeldOut => (Triple::held_out(), 0xE7A1),
        Split::Training => (Triple::training(), 0x7EA1),
    };
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for (i, t) in triples.into_iter().enumerate() {
        let bgs: Vec<Background> = Background::ALL
            .into_iter()
            .filter(|b| b.allows(t.colour))
            .collect();
        for k in 0..per_triple {
            let scene = Scene::of(t, bgs[(i + k) % bgs.len()]);
            let prompt = caption_with(&scene, (i * per_triple + k) % TEMPLATES, &mut rng);
            out.push(EvalPrompt { prompt, scene });
        }
    }
    out
}

/// The outcome of one generated clip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalCase {
    pub prompt: String,
    pub seed: u64,
    pub expected: Scene,
    pub colour_ok: bool,
    pub background_ok: bool,
    pub shape_ok: bool,
    pub motion_ok: bool,
    pub flicker: f32,
    pub seen: String,
}

/// Accuracies over all cases (fractions in [0, 1]) and the mean flicker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalSummary {
    pub prompts: usize,
    pub seeds_per_prompt: usize,
    pub clips: usize,
    pub steps: u32,
    pub guidance: f32,
    pub colour: f64,
    pub background: f64,
    pub shape: f64,
    pub motion: f64,
    /// Mean jump of the object's mean colour between consecutive frames (RGB units, 0–441).
    pub flicker: f64,
    pub seconds: f64,
    pub cases: Vec<EvalCase>,
}

impl EvalSummary {
    /// Shape accuracy per requested shape: `(name, fraction right, clips)`.
    pub fn shape_by_kind(&self) -> Vec<(&'static str, f64, usize)> {
        Shape::ALL
            .into_iter()
            .map(|k| self.rate(|c| c.expected.shape == k, |c| c.shape_ok, k.name()))
            .collect()
    }

    /// Motion accuracy per requested motion: `(name, fraction right, clips)`.
    pub fn motion_by_kind(&self) -> Vec<(&'static str, f64, usize)> {
        Motion::ALL
            .into_iter()
            .map(|k| self.rate(|c| c.expected.motion == k, |c| c.motion_ok, k.name()))
            .collect()
    }

    fn rate(
        &self,
        of: impl Fn(&EvalCase) -> bool,
        ok: fn(&EvalCase) -> bool,
        name: &'static str,
    ) -> (&'static str, f64, usize) {
        let mine: Vec<&EvalCase> = self.cases.iter().filter(|c| of(c)).collect();
        let right = mine.iter().filter(|c| ok(c)).count();
        (name, right as f64 / mine.len().max(1) as f64, mine.len())
    }
}

/// Generates every prompt with each seed and scores it with the analyser.
pub fn evaluate(
    model: &dyn VideoModel,
    prompts: &[EvalPrompt],
    seeds: &[u64],
    steps: u32,
    guidance: f32,
    size: u32,
    mut on_case: impl FnMut(&EvalCase, usize, usize),
) -> Result<EvalSummary, PipelineError> {
    let start = std::time::Instant::now();
    let limits = model.limits().clone();
    let total = prompts.len() * seeds.len();
    let mut cases = Vec::with_capacity(total);
    for p in prompts {
        for &seed in seeds {
            let params = GenerationParams {
                prompt: p.prompt.clone(),
                negative_prompt: None,
                steps,
                guidance,
                seed,
                width: size,
                height: size,
                frames: limits.frames.default,
                fps: limits.fps.default,
            };
            let video = model.generate(&params, &mut |_| Control::Continue)?;
            let a = analyse(&video.frames);
            let e = p.scene;
            let case = EvalCase {
                prompt: p.prompt.clone(),
                seed,
                expected: e,
                colour_ok: a.colour == Some(e.colour),
                background_ok: a.background == e.background,
                shape_ok: a.shape == Some(e.shape),
                motion_ok: a.motion == Some(e.motion),
                flicker: a.flicker,
                seen: format!(
                    "{} {} {} on {}",
                    a.colour.map_or("-", |c| c.name()),
                    a.shape.map_or("-", |s| s.name()),
                    a.motion.map_or("-", |m| m.name()),
                    a.background.name()
                ),
            };
            on_case(&case, cases.len() + 1, total);
            cases.push(case);
        }
    }
    let frac = |f: fn(&EvalCase) -> bool| {
        cases.iter().filter(|c| f(c)).count() as f64 / cases.len().max(1) as f64
    };
    Ok(EvalSummary {
        prompts: prompts.len(),
        seeds_per_prompt: seeds.len(),
        clips: cases.len(),
        steps,
        guidance,
        colour: frac(|c| c.colour_ok),
        background: frac(|c| c.background_ok),
        shape: frac(|c| c.shape_ok),
        motion: frac(|c| c.motion_ok),
        flicker: cases.iter().map(|c| c.flicker as f64).sum::<f64>() / cases.len().max(1) as f64,
        seconds: start.elapsed().as_secs_f64(),
        cases,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_by_kind_counts_only_the_clips_that_asked_for_it() {
        let case = |p: &EvalPrompt, ok: bool| EvalCase {
            prompt: p.prompt.clone(),
            seed: 0,
            expected: p.scene,
            colour_ok: true,
            background_ok: true,
            shape_ok: ok,
            motion_ok: !ok,
            flicker: 0.0,
            seen: String::new(),
        };
        let ps = prompts(Split::HeldOut, 1);
        // Squares right, everything else wrong; motions the other way round.
        let cases: Vec<EvalCase> = ps
            .iter()
            .map(|p| case(p, p.scene.shape == Shape::Square))
            .collect();
        let squares = cases
            .iter()
            .filter(|c| c.expected.shape == Shape::Square)
            .count();
        let s = EvalSummary {
            prompts: ps.len(),
            seeds_per_prompt: 1,
            clips: cases.len(),
            steps: 1,
            guidance: 1.0,
            colour: 1.0,
            background: 1.0,
            shape: 0.0,
            motion: 0.0,
            flicker: 0.0,
            seconds: 0.0,
            cases,
        };
        let shapes = s.shape_by_kind();
        assert_eq!(shapes[1], ("square", 1.0, squares));
        assert_eq!(shapes[0].1, 0.0);
        assert_eq!(shapes.iter().map(|k| k.2).sum::<usize>(), ps.len());
        let motions = s.motion_by_kind();
        assert_eq!(motions.len(), Motion::ALL.len());
        assert_eq!(motions.iter().map(|k| k.2).sum::<usize>(), ps.len());
    }

    #[test]
    fn training_split_prompts_only_for_training_triples() {
        let ps = prompts(Split::Training, 1);
        assert_eq!(ps.len(), Triple::training().len());
        assert!(ps.iter().all(|p| {
            !Triple {
                colour: p.scene.colour,
                shape: p.scene.shape,
                motion: p.scene.motion,
            }
            .is_held_out()
        }));
    }

    #[test]
    fn prompts_cover_every_held_out_triple_with_several_backgrounds() {
        let ps = prompts(Split::HeldOut, 3);
        assert!(ps.len() >= 60);
        for t in Triple::held_out() {
            let mine: Vec<_> = ps
                .iter()
                .filter(|p| {
                    p.scene.colour == t.colour
                        && p.scene.shape == t.shape
                        && p.scene.motion == t.motion
                })
                .collect();
            assert_eq!(mine.len(), 3);
            assert!(
                mine.iter()
                    .any(|p| p.scene.background != mine[0].scene.background)
            );
        }
    }
}
