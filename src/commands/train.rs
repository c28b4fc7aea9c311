//! `aivideo train` (hidden): trains the starter model and writes it to `assets/starter/`.

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::TrainArgs;
use crate::models::starter::train::{TrainOptions, export_checkpoint, train, write_untrained};

pub fn run(ctx: &Context, args: &TrainArgs) -> Result<u8> {
    let p = &ctx.printer;
    if args.untrained {
        let cfg = write_untrained(&args.preset, &args.out, args.init_seed)
            .with_context(|| format!("writing an untrained model to {}", args.out.display()))?;
        if p.is_json() {
            p.json(&cfg)?;
        } else {
            p.result(&format!(
                "wrote an untrained `{}` model to {}\n",
                args.preset,
                args.out.display()
            ))?;
        }
        return Ok(0);
    }
    if let Some(run_dir) = &args.export_checkpoint {
        let cfg = export_checkpoint(run_dir, &args.out).with_context(|| {
            format!(
                "exporting the checkpoint in {} to {}",
                run_dir.display(),
                args.out.display()
            )
        })?;
        let steps = cfg.training.as_ref().map_or(0, |r| r.steps);
        if p.is_json() {
            p.json(&cfg)?;
        } else {
            p.result(&format!(
                "exported step {steps} of {} to {}\n",
                run_dir.display(),
                args.out.display()
            ))?;
        }
        return Ok(0);
    }
    let opts = TrainOptions {
        out_dir: args.out.clone(),
        steps: args.steps,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        warmup: 100.min(args.steps / 10 + 1),
        weight_decay: 0.0,
        ema_decay: 0.995,
        dataset_seed: args.dataset_seed,
        init_seed: args.init_seed,
        cond_dropout: 0.1,
        object_weight: args.object_weight,
        object_weight_until: args.object_weight_until,
        high_noise_share: args.high_noise_share,
        shape_weight: args.shape_weight,
        checkpoint_every: args.checkpoint_every.max(1),
        preset: args.preset.clone(),
    };
    let bar = p.progress_bar(args.steps, "training");
    let log_every = (args.steps / 50).max(1);
    let cfg = train(&opts, args.resume, &mut |r| {
        bar.set_position(r.step);
        bar.set_message(format!("training (loss {:.4})", r.smoothed_loss));
        if bar.is_hidden() && r.step % log_every == 0 {
            p.info(&format!(
                "step {}/{} loss {:.4}",
                r.step, args.steps, r.smoothed_loss
            ));
        }
    })
    .context("training failed")?;
    bar.finish_and_clear();
    let rec = cfg.training.as_ref().expect("training writes its record");
    if p.is_json() {
        p.json(&cfg)?;
    } else {
        p.result(&format!(
            "trained {} steps in {:.0} s, final loss {:.4}\nweights: {} (sha256 {})\n",
            rec.steps,
            rec.wall_time_s,
            rec.final_loss,
            args.out.join(&cfg.weights).display(),
            cfg.weights_sha256
        ))?;
    }
    Ok(0)
}
