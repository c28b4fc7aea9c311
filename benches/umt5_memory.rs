//! Peak memory of encoding one prompt with the full-size UMT5-XXL text encoder of Wan2.1
//! (5.68 B parameters) through the streaming path the pipeline uses
//! (`Umt5Streamer::forward`, one block in memory at a time), with random weights.
//!
//! The parent writes a random bf16 checkpoint in the layout of the real `text_encoder/`
//! (`config.json`, five `model-0000i-of-00005.safetensors` shards and
//! `model.safetensors.index.json`, about 11.4 GB), tensor by tensor in small chunks, so the
//! writer never holds more than a few MB. Each case then runs in a child process (this
//! binary re-run with `--child`) that encodes one prompt of `--tokens` random ids (default
//! 512, the pipeline's padded length; all real tokens) and prints its wall time and its peak
//! resident set (`VmHWM`). The last line compares with loading the whole encoder.
//!
//! `cargo bench --bench umt5_memory` writes into a temporary folder under /tmp and removes
//! it afterwards; `-- --dir D` writes into D (its files are removed afterwards unless
//! `--keep` is given); `-- --dir D --keep` reuses a complete checkpoint already in D, so
//! reruns skip the writing. `-- --cases bf16,f32` picks the compute dtypes (default both),
//! `-- --tiny` runs a small config (a smoke test of the benchmark itself).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[allow(dead_code)] // `median` is not used here
mod common;
use common::{arg, last_json, peak_rss_mib};

use aivideo::models::wan::umt5::{Umt5Config, Umt5Streamer};
use aivideo::nn::weights::component_files;
use candle_core::{DType, Device, Tensor};
use serde_json::json;

/// `text_encoder/config.json` of Wan-AI/Wan2.1-T2V-1.3B-Diffusers (google/umt5-xxl).
const XXL: &str = r#"{"vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240,
  "num_layers": 24, "num_heads": 64, "relative_attention_num_buckets": 32,
  "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu",
  "dense_act_fn": "gelu_new", "layer_norm_epsilon": 1e-06}"#;

/// A small config with the same structure, for `--tiny`.
const TINY: &str = r#"{"vocab_size": 1000, "d_model": 64, "d_kv": 16, "d_ff": 160,
  "num_layers": 3, "num_heads": 4, "feed_forward_proj": "gated-gelu"}"#;

const SHARDS: usize = 5;
const MARKER: &str = "umt5-memory-bench.json";
const INDEX: &str = "model.safetensors.index.json";

fn shard_name(i: usize) -> String {
    format!("model-{:05}-of-{SHARDS:05}.safetensors", i + 1)
}

/// Every tensor of a gated UMT5 encoder checkpoint, in file order, with its shape.
fn tensor_list(cfg: &Umt5Config) -> Vec<(String, Vec<usize>)> {
    let (d, inner, ff) = (cfg.d_model, cfg.num_heads * cfg.d_kv, cfg.d_ff);
    let mut all = vec![("shared.weight".to_string(), vec![cfg.vocab_size, d])];
    for i in 0..cfg.num_layers {
        let b = format!("encoder.block.{i}.layer");
        all.extend([
            (format!("{b}.0.layer_norm.weight"), vec![d]),
            (format!("{b}.0.SelfAttention.q.weight"), vec![inner, d]),
            (format!("{b}.0.SelfAttention.k.weight"), vec![inner, d]),
            (format!("{b}.0.SelfAttention.v.weight"), vec![inner, d]),
            (format!("{b}.0.SelfAttention.o.weight"), vec![d, inner]),
            (
                format!("{b}.0.SelfAttention.relative_attention_bias.weight"),
                vec![cfg.relative_attention_num_buckets, cfg.num_heads],
            ),
            (format!("{b}.1.layer_norm.weight"), vec![d]),
            (format!("{b}.1.DenseReluDense.wi_0.weight"), vec![ff, d]),
            (format!("{b}.1.DenseReluDense.wi_1.weight"), vec![ff, d]),
            (format!("{b}.1.DenseReluDense.wo.weight"), vec![d, ff]),
        ]);
    }
    all.push(("encoder.final_layer_norm.weight".to_string(), vec![d]));
    all
}

fn numel(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64
}

/// The tensors split into `SHARDS` consecutive groups of about equal size (bf16 bytes).
fn shard_plan(tensors: &[(String, Vec<usize>)]) -> Vec<Vec<(String, Vec<usize>)>> {
    let total: u64 = tensors.iter().map(|(_, s)| 2 * numel(s)).sum();
    let target = total.div_ceil(SHARDS as u64);
    let mut plan = vec![Vec::new()];
    let mut size = 0;
    for t in tensors {
        if size >= target && plan.len() < SHARDS {
            plan.push(Vec::new());
            size = 0;
        }
        size += 2 * numel(&t.1);
        plan.last_mut().expect("a shard").push(t.clone());
    }
    plan
}

/// A safetensors header for `tensors` stored as bf16 one after the other, padded with
/// spaces to a multiple of 8 bytes; and the data size.
fn header(tensors: &[(String, Vec<usize>)]) -> (Vec<u8>, u64) {
    let mut map = serde_json::Map::new();
    map.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, shape) in tensors {
        let end = offset + 2 * numel(shape);
        map.insert(
            name.clone(),
            json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut text = serde_json::to_vec(&map).expect("header json");
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    (text, offset)
}

/// xorshift64* steps.
struct Rng(u64);

impl Rng {
    fn new(name: &str) -> Self {
        // FNV-1a of the name, so every tensor has its own reproducible stream.
        let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Rng(h | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// About N(0, std): the sum of four 16-bit uniforms, centred and scaled (Irwin–Hall).
    fn normal(&mut self, std: f32) -> f32 {
        let x = self.next();
        let sum: u64 = (0..4).map(|i| (x >> (16 * i)) & 0xffff).sum();
        let mean = 2.0 * 65535.0;
        let sd = (4.0 * (65536.0f64 * 65536.0 - 1.0) / 12.0).sqrt();
        ((sum as f64 - mean) / sd) as f32 * std
    }
}

/// f32 to bf16 bits, rounding to nearest even (finite values).
fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// Writes one bf16 shard, generating each tensor in chunks: norms are ones, everything
/// else about N(0, 0.02).
fn write_shard(path: &Path, tensors: &[(String, Vec<usize>)]) -> std::io::Result<()> {
    let (head, _) = header(tensors);
    let mut out = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    out.write_all(&(head.len() as u64).to_le_bytes())?;
    out.write_all(&head)?;
    let mut chunk = Vec::with_capacity(2 << 20);
    for (name, shape) in tensors {
        let mut rng = Rng::new(name);
        let norm = name.ends_with("layer_norm.weight");
        let mut left = numel(shape);
        while left > 0 {
            let n = left.min(1 << 20);
            chunk.clear();
            for _ in 0..n {
                let v = if norm { 1.0 } else { rng.normal(0.02) };
                chunk.extend_from_slice(&bf16_bits(v).to_le_bytes());
            }
            out.write_all(&chunk)?;
            left -= n;
        }
    }
    out.flush()
}

/// What the marker of a complete checkpoint says: the config and the shards' sizes.
fn marker(cfg_json: &str, plan: &[Vec<(String, Vec<usize>)>]) -> serde_json::Value {
    let sizes: Vec<u64> = plan
        .iter()
        .map(|t| {
            let (h, data) = header(t);
            8 + h.len() as u64 + data
        })
        .collect();
    let cfg: serde_json::Value = serde_json::from_str(cfg_json).expect("config json");
    json!({"config": cfg, "dtype": "BF16", "shard_bytes": sizes, "values": "irwin-hall-4 v1"})
}

fn is_complete(dir: &Path, want: &serde_json::Value) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(MARKER)) else {
        return false;
    };
    let Ok(have) = serde_json::from_str::<serde_json::Value>(&text) else {
        return false;
    };
    let sizes_ok = want["shard_bytes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .all(|(i, size)| {
            let len = std::fs::metadata(dir.join(shard_name(i))).map(|m| m.len());
            len.ok() == size.as_u64()
        });
    &have == want && sizes_ok
}

/// Writes config, shards, index and (last) the marker into `dir`.
fn write_checkpoint(dir: &Path, cfg_json: &str, plan: &[Vec<(String, Vec<usize>)>]) {
    let _ = std::fs::remove_file(dir.join(MARKER));
    std::fs::write(dir.join("config.json"), cfg_json).expect("write config.json");
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    for (i, tensors) in plan.iter().enumerate() {
        let t = Instant::now();
        write_shard(&dir.join(shard_name(i)), tensors).expect("write shard");
        let bytes: u64 = tensors.iter().map(|(_, s)| 2 * numel(s)).sum();
        total += bytes;
        for (name, _) in tensors {
            weight_map.insert(name.clone(), shard_name(i).into());
        }
        eprintln!(
            "wrote {} ({:.2} GB) in {:.1} s",
            shard_name(i),
            bytes as f64 / 1e9,
            t.elapsed().as_secs_f64()
        );
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(dir.join(INDEX), index.to_string()).expect("write index");
    // The format is checked by the safetensors crate (through candle), which reads only
    // the headers of the mapped files.
    let files: Vec<PathBuf> = (0..plan.len()).map(|i| dir.join(shard_name(i))).collect();
    // SAFETY: the files were just written and are not modified while mapped.
    let mapped = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }
        .expect("the written shards parse as safetensors");
    let count = mapped.tensors().len();
    assert_eq!(count, plan.iter().map(Vec::len).sum::<usize>());
    drop(mapped);
    std::fs::write(dir.join(MARKER), marker(cfg_json, plan).to_string()).expect("write marker");
}

/// One case in this process: open the checkpoint, encode `tokens` random ids, report.
fn run_child(dir: &Path, case: &str, tokens: usize) -> serde_json::Value {
    let dtype = match case {
        "bf16" => DType::BF16,
        "f32" => DType::F32,
        other => panic!("unknown case {other}; known: bf16, f32"),
    };
    let dev = Device::Cpu;
    let rss_start = peak_rss_mib();
    let t = Instant::now();
    let cfg = Umt5Config::from_file(dir.join("config.json")).expect("config");
    let files = component_files(dir, "model").expect("weight files");
    let streamer = Umt5Streamer::new(&files, &cfg).expect("open the checkpoint");
    let open_s = t.elapsed().as_secs_f64();
    let mut rng = Rng::new("prompt");
    let ids: Vec<u32> = (0..tokens)
        .map(|_| (rng.next() % cfg.vocab_size as u64) as u32)
        .collect();
    let ids = Tensor::from_vec(ids, (1, tokens), &dev).expect("ids");
    let mask = Tensor::ones((1, tokens), DType::U32, &dev).expect("mask");
    let t = Instant::now();
    let out = streamer.forward(&ids, &mask, dtype, &dev).expect("encode");
    let encode_s = t.elapsed().as_secs_f64();
    let out = out.to_dtype(DType::F32).expect("f32");
    let max_abs: f32 = out
        .abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_scalar())
        .expect("max");
    json!({
        "case": case,
        "tokens": tokens,
        "shape": out.dims(),
        "output_max_abs": max_abs,
        "output_finite": max_abs.is_finite(),
        "open_s": open_s,
        "encode_s": encode_s,
        "peak_rss_mib": peak_rss_mib(),
        "rss_at_start_mib": rss_start,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let tokens: usize = arg("--tokens", 512);
    let dir_arg: Option<String> = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .cloned();
    if flag("--child") {
        let dir = PathBuf::from(dir_arg.expect("--child needs --dir"));
        let case: String = arg("--case", "bf16".to_string());
        println!("{}", run_child(&dir, &case, tokens));
        return;
    }
    let tiny = flag("--tiny");
    let keep = flag("--keep");
    let cfg_json = if tiny { TINY } else { XXL };
    let cfg: Umt5Config = serde_json::from_str(cfg_json).expect("config");
    cfg.validate().expect("a supported config");
    let tensors = tensor_list(&cfg);
    let plan = shard_plan(&tensors);
    let params: u64 = tensors.iter().map(|(_, s)| numel(s)).sum();

    let temp;
    let dir = match &dir_arg {
        Some(d) => {
            std::fs::create_dir_all(d).expect("create --dir");
            PathBuf::from(d)
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("umt5-memory-")
                .tempdir_in("/tmp")
                .expect("temp dir");
            temp.path().to_path_buf()
        }
    };
    let want = marker(cfg_json, &plan);
    let t = Instant::now();
    let reused = keep && is_complete(&dir, &want);
    if !reused {
        write_checkpoint(&dir, cfg_json, &plan);
    }
    let disk_bytes: u64 = want["shard_bytes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_u64())
        .sum();
    println!(
        "{}",
        json!({
            "checkpoint": dir.display().to_string(),
            "reused": reused,
            "write_s": if reused { None } else { Some(t.elapsed().as_secs_f64()) },
            "shards": plan.len(),
            "disk_bytes": disk_bytes,
            "tiny": tiny,
        })
    );

    let exe = std::env::current_exe().expect("own path");
    let cases: String = arg("--cases", "bf16,f32".to_string());
    for case in cases.split(',') {
        let mut cmd = Command::new(&exe);
        cmd.arg("--child")
            .args(["--case", case, "--tokens", &tokens.to_string()])
            .arg("--dir")
            .arg(&dir);
        let result = last_json(cmd).unwrap_or(json!({"case": case, "error": true}));
        println!("{result}");
    }
    println!(
        "{}",
        json!({
            "whole_encoder_parameters": params,
            "whole_encoder_bf16_bytes": 2 * params,
            "whole_encoder_f32_bytes": 4 * params,
            "embedding_parameters": numel(&tensors[0].1),
            "block_parameters": tensors[1..11].iter().map(|(_, s)| numel(s)).sum::<u64>(),
        })
    );

    if dir_arg.is_some() && !keep {
        for name in (0..plan.len()).map(shard_name).chain([
            INDEX.to_string(),
            "config.json".into(),
            MARKER.into(),
        ]) {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
}
