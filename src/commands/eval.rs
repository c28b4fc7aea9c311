//! `aivideo eval` (hidden): scores a model on the held-out triples with the clip analyser.

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::EvalArgs;
use crate::models::starter::eval::{Split, evaluate, prompts};
use crate::models::{DeviceChoice, ModelSource, open};

pub fn run(ctx: &Context, args: &EvalArgs) -> Result<u8> {
    let p = &ctx.printer;
    let source = args
        .model
        .clone()
        .map_or(ModelSource::Bundled, ModelSource::Dir);
    let model = open(&source, DeviceChoice::Cpu).context("cannot load the model")?;
    let prompts = prompts(args.split, args.per_triple);
    let seeds: Vec<u64> = (0..args.seeds).collect();
    let guidance = args.guidance.unwrap_or(model.limits().guidance.default);
    let bar = p.progress_bar((prompts.len() * seeds.len()) as u64, "evaluating");
    let s = evaluate(
        model.as_ref(),
        &prompts,
        &seeds,
        args.steps,
        guidance,
        args.size,
        |c, i, _| {
            bar.set_position(i as u64);
            if args.verbose {
                let ok = |b: bool| if b { "ok" } else { "MISS" };
                bar.suspend(|| {
                    p.info(&format!(
                        "{} | seed {} | saw {} | colour {} bg {} shape {} motion {}",
                        c.prompt,
                        c.seed,
                        c.seen,
                        ok(c.colour_ok),
                        ok(c.background_ok),
                        ok(c.shape_ok),
                        ok(c.motion_ok)
                    ))
                });
            }
        },
    )?;
    bar.finish_and_clear();
    if p.is_json() {
        /// The summary with the split it was measured on.
        #[derive(serde::Serialize)]
        struct Report<'a> {
            split: Split,
            #[serde(flatten)]
            summary: &'a crate::models::starter::eval::EvalSummary,
        }
        p.json(&Report {
            split: args.split,
            summary: &s,
        })?;
        return Ok(0);
    }
    let pct = |x: f64| format!("{:5.1} %", 100.0 * x);
    p.result(&format!(
        "{} evaluation: {} prompts x {} seeds = {} clips, {} steps, guidance {}\n\
         colour      {}  (target >= 90 %)\n\
         background  {}  (target >= 90 %)\n\
         motion      {}  (target >= 80 %)\n\
         shape       {}  (target >= 70 %)\n\
         flicker     {:.2}  (mean jump of the object's mean colour between frames, RGB units)\n\
         time        {:.0} s\n",
        args.split.label(),
        s.prompts,
        s.seeds_per_prompt,
        s.clips,
        s.steps,
        s.guidance,
        pct(s.colour),
        pct(s.background),
        pct(s.motion),
        pct(s.shape),
        s.flicker,
        s.seconds
    ))?;
    let kinds = |v: Vec<(&str, f64, usize)>| {
        v.iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(k, r, n)| format!("{k} {:.0} % of {n}", 100.0 * r))
            .collect::<Vec<_>>()
            .join(", ")
    };
    p.result(&format!(
        "shape by kind:  {}\nmotion by kind: {}\n",
        kinds(s.shape_by_kind()),
        kinds(s.motion_by_kind())
    ))?;
    Ok(0)
}
