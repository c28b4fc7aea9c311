//! Benchmark of the full-size Wan2.1-T2V-1.3B architecture with random weights on the CPU:
//! one transformer forward with 512 text tokens at 1 and 5 latent frames of 30×52 (a
//! 240×416 output), in f32 and bf16, and the VAE decode of those 5 latent frames; medians
//! and each case's peak RSS (every case runs in its own child process).
//!
//! `cargo bench --bench wan` runs every case; `-- --cases transformer-f32-1f,vae-f32-5f`
//! picks some, `-- --repeats N` sets the timed runs (default 3, after one warm-up), and
//! `-- --torch PYTHON` also runs `tests/reference/bench_wan.py` with that interpreter for
//! each case right after aivideo's, so both are timed side by side and the ratio printed.
//! `-- --tiny` uses the tiny test configs (a smoke test of the benchmark itself).

use std::process::Command;
use std::time::Instant;

mod common;
use common::{arg, last_json, median, peak_rss_mib};

use aivideo::models::wan::transformer::{WanTransformer, WanTransformerConfig};
use aivideo::models::wan::vae::{AutoencoderKlWan, WanVaeConfig};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{Init, VarBuilder};
use serde_json::json;

const CASES: [&str; 5] = [
    "transformer-f32-1f",
    "transformer-f32-5f",
    "transformer-bf16-1f",
    "transformer-bf16-5f",
    "vae-f32-5f",
];

/// `transformer/config.json` of Wan-AI/Wan2.1-T2V-1.3B-Diffusers.
const FULL_TRANSFORMER: &str = r#"{
  "_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2],
  "num_attention_heads": 12, "attention_head_dim": 128, "in_channels": 16,
  "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "ffn_dim": 8960,
  "num_layers": 30, "cross_attn_norm": true, "qk_norm": "rms_norm_across_heads",
  "eps": 1e-06, "image_dim": null, "added_kv_proj_dim": null, "rope_max_seq_len": 1024
}"#;

/// `vae/config.json` of Wan-AI/Wan2.1-T2V-1.3B-Diffusers (its latent statistics do not
/// change the decode's cost).
const FULL_VAE: &str = r#"{
  "_class_name": "AutoencoderKLWan", "base_dim": 96, "z_dim": 16,
  "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
  "temperal_downsample": [false, true, true], "dropout": 0.0,
  "latents_mean": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],
  "latents_std": [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]
}"#;

/// Random weights for any tensor the model asks for: N(0, 0.02), in the requested dtype.
struct RandomWeights;

impl candle_nn::var_builder::SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        _name: &str,
        _h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        Tensor::randn(0f32, 0.02, s, dev)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, _: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("the random backend needs a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

fn tiny_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wan/tiny-pipeline")
}

fn transformer_config(tiny: bool) -> WanTransformerConfig {
    let text = if tiny {
        std::fs::read_to_string(tiny_dir().join("transformer/config.json")).unwrap()
    } else {
        FULL_TRANSFORMER.to_string()
    };
    serde_json::from_str(&text).expect("transformer config")
}

fn vae_config(tiny: bool) -> WanVaeConfig {
    let text = if tiny {
        std::fs::read_to_string(tiny_dir().join("vae/config.json")).unwrap()
    } else {
        FULL_VAE.to_string()
    };
    serde_json::from_str(&text).expect("vae config")
}

/// Runs one case in this process: warm-up, `repeats` timed runs; returns the JSON result.
fn run_case(case: &str, tiny: bool, repeats: usize) -> serde_json::Value {
    let dev = Device::Cpu;
    let (h, w) = if tiny { (8, 12) } else { (30, 52) };
    let vb = |dtype| VarBuilder::from_backend(Box::new(RandomWeights), dtype, dev.clone());
    let mut times = Vec::new();
    let build_t = Instant::now();
    let build_s;
    if let Some(rest) = case.strip_prefix("transformer-") {
        let dtype = if rest.starts_with("bf16") {
            DType::BF16
        } else {
            DType::F32
        };
        let frames = if rest.ends_with("5f") { 5 } else { 1 };
        let cfg = transformer_config(tiny);
        let model = WanTransformer::new(&cfg, vb(dtype)).expect("transformer");
        build_s = build_t.elapsed().as_secs_f64();
        let x = Tensor::randn(0f32, 1.0, (1, cfg.in_channels, frames, h, w), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let text = Tensor::randn(0f32, 1.0, (1, 512, cfg.text_dim), &dev)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        let ts = Tensor::new(&[500f32], &dev).unwrap();
        for i in 0..=repeats {
            let t = Instant::now();
            let out = model.forward(&x, &ts, &text).expect("forward");
            out.to_dtype(DType::F32).unwrap().sum_all().unwrap();
            if i > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
    } else {
        let cfg = vae_config(tiny);
        let z_dim = cfg.z_dim;
        // As the pipeline loads it for text-to-video: without the encoder.
        let vae = AutoencoderKlWan::decoder_only(cfg, vb(DType::F32)).expect("vae");
        build_s = build_t.elapsed().as_secs_f64();
        let z = Tensor::randn(0f32, 1.0, (1, z_dim, 5, h, w), &dev).unwrap();
        for i in 0..=repeats {
            let t = Instant::now();
            let out = vae
                .decode(&z, &mut |_, _| std::ops::ControlFlow::Continue(()))
                .expect("decode")
                .expect("not canceled");
            out.sum_all().unwrap();
            if i > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
    }
    json!({
        "case": case,
        "impl": "aivideo",
        "tiny": tiny,
        "build_s": build_s,
        "times_s": times,
        "median_s": median(times.clone()),
        "peak_rss_mib": peak_rss_mib(),
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let tiny = args.iter().any(|a| a == "--tiny");
    let repeats: usize = arg("--repeats", 3);
    if let Some(case) = args
        .iter()
        .position(|a| a == "--child")
        .and_then(|i| args.get(i + 1))
    {
        println!("{}", run_case(case, tiny, repeats));
        return;
    }
    let cases: String = arg("--cases", CASES.join(","));
    let torch: Option<String> = args
        .iter()
        .position(|a| a == "--torch")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "2".into());
    let exe = std::env::current_exe().expect("own path");
    for case in cases.split(',') {
        assert!(
            CASES.contains(&case),
            "unknown case {case}; known: {CASES:?}"
        );
        let mut cmd = Command::new(&exe);
        cmd.args(["--child", case, "--repeats", &repeats.to_string()])
            .env("RAYON_NUM_THREADS", &threads);
        if tiny {
            cmd.arg("--tiny");
        }
        let ours = last_json(cmd);
        println!(
            "{}",
            ours.clone()
                .unwrap_or(json!({"case": case, "impl": "aivideo", "error": true}))
        );
        let Some(python) = &torch else { continue };
        let mut cmd = Command::new(python);
        cmd.arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/bench_wan.py"),
        )
        .args([
            "--cases",
            case,
            "--threads",
            &threads,
            "--repeats",
            &repeats.to_string(),
            "--warmup",
            "1",
        ]);
        if tiny {
            cmd.arg("--tiny");
        }
        let theirs = last_json(cmd);
        println!(
            "{}",
            theirs
                .clone()
                .unwrap_or(json!({"case": case, "impl": "torch", "error": true}))
        );
        if let (Some(a), Some(b)) = (&ours, &theirs) {
            let ratio = |k: &str| Some(a[k].as_f64()? / b[k].as_f64()?);
            println!(
                "{}",
                json!({
                    "case": case,
                    "time_ratio_aivideo_over_torch": ratio("median_s"),
                    "rss_ratio_aivideo_over_torch": ratio("peak_rss_mib"),
                })
            );
        }
    }
}
