//! Temporary entry point for training while the CLI is built on its own branch.

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Train {
        #[arg(long, default_value = "assets/starter")]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 3000)]
        steps: u64,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        #[arg(long, default_value = "small")]
        preset: String,
        #[arg(long)]
        resume: bool,
    },
    Export {
        run: std::path::PathBuf,
        out: std::path::PathBuf,
    },
    Eval {
        model: std::path::PathBuf,
        #[arg(long, default_value_t = 3)]
        per_triple: usize,
        #[arg(long, default_value_t = 2)]
        seeds: u64,
        #[arg(long, default_value_t = 20)]
        steps: u32,
        #[arg(long, default_value_t = 4.0)]
        guidance: f32,
        #[arg(long)]
        verbose: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().cmd {
        Cmd::Train {
            out,
            steps,
            batch_size,
            lr,
            preset,
            resume,
        } => {
            let opts = aivideo::train::TrainOptions {
                out_dir: out,
                steps,
                batch_size,
                learning_rate: lr,
                warmup: 100,
                weight_decay: 0.0,
                ema_decay: 0.995,
                dataset_seed: 1,
                init_seed: 2,
                cond_dropout: 0.1,
                checkpoint_every: 100,
                preset,
            };
            let t0 = std::time::Instant::now();
            aivideo::train::train(&opts, resume, &mut |r| {
                if r.step % 10 == 0 || r.step < 5 {
                    eprintln!(
                        "step {} loss {:.4} smooth {:.4} {:.2}s",
                        r.step,
                        r.loss,
                        r.smoothed_loss,
                        t0.elapsed().as_secs_f64()
                    );
                }
            })?;
        }
        Cmd::Export { run, out } => {
            aivideo::train::export_checkpoint(&run, &out)?;
        }
        Cmd::Eval {
            model,
            per_triple,
            seeds,
            steps,
            guidance,
            verbose,
        } => {
            let m = aivideo::pipeline::load(
                &aivideo::pipeline::ModelSource::Dir(model),
                aivideo::pipeline::DeviceChoice::Cpu,
            )?;
            let prompts = aivideo::eval::held_out_prompts(per_triple);
            let seeds: Vec<u64> = (0..seeds).collect();
            let s = aivideo::eval::evaluate(
                m.as_ref(),
                &prompts,
                &seeds,
                steps,
                guidance,
                64,
                |c, i, n| {
                    if verbose {
                        eprintln!(
                            "[{i}/{n}] {} | seed {} | saw {} | c{} b{} s{} m{}",
                            c.prompt,
                            c.seed,
                            c.seen,
                            c.colour_ok as u8,
                            c.background_ok as u8,
                            c.shape_ok as u8,
                            c.motion_ok as u8
                        );
                    }
                },
            )?;
            println!(
                "clips {} colour {:.3} background {:.3} shape {:.3} motion {:.3} flicker {:.2} ({:.0}s)",
                s.clips, s.colour, s.background, s.shape, s.motion, s.flicker, s.seconds
            );
        }
    }
    Ok(())
}
