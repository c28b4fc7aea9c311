//! Benchmark of one generation with the bundled model: per-phase times (text encoding,
//! denoising, resampling) for a 16-frame clip at 512×512, medians of 5 runs, per preset,
//! and the process's peak resident memory.
//!
//! Run with `cargo bench --bench pipeline` (add `-- --runs N` or `-- --size S` to change).

use std::time::Instant;

mod common;
use common::{arg, median, peak_rss_mib};

use aivideo::models::{
    Control, DeviceChoice, GenerationParams, ModelSource, Quality, VideoModel, open,
};

fn main() {
    let runs: usize = arg("--runs", 5);
    let size: u32 = arg("--size", 512);
    let t = Instant::now();
    let model: Box<dyn VideoModel> =
        open(&ModelSource::Bundled, DeviceChoice::Cpu).expect("bundled model loads");
    println!(
        "model load: {:.3} s ({})",
        t.elapsed().as_secs_f64(),
        model.info().device
    );
    println!(
        "threads: {}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into())
    );
    for quality in [Quality::Low, Quality::Medium] {
        let limits = model.limits();
        let steps = limits.preset(quality).steps.default;
        let params = GenerationParams {
            prompt: "a red ball bouncing on a black background".into(),
            negative_prompt: None,
            steps,
            guidance: limits.guidance.default,
            seed: 1,
            width: size,
            height: size,
            frames: limits.frames.default,
            fps: limits.fps.default,
        };
        // One warm-up run, then the measured ones.
        model.generate(&params, &mut |_| Control::Continue).unwrap();
        let (mut text, mut denoise, mut resample, mut total) = (vec![], vec![], vec![], vec![]);
        for _ in 0..runs {
            let t = Instant::now();
            let v = model.generate(&params, &mut |_| Control::Continue).unwrap();
            total.push(t.elapsed().as_secs_f64());
            text.push(v.timings.text_encoding_s);
            denoise.push(v.timings.denoising_s);
            resample.push(v.timings.resampling_s.unwrap_or_default());
        }
        println!(
            "{quality:>6} ({steps} steps, {size}x{size}, 16 frames): total {:.3} s | text {:.4} s | denoise {:.3} s | resample {:.3} s  (medians of {runs})",
            median(total),
            median(text),
            median(denoise),
            median(resample)
        );
    }
    if let Some(mib) = peak_rss_mib() {
        println!("peak RSS: {mib:.0} MiB");
    }
}
