//! Parity tests of the UMT5 encoder against transformers' `UMT5EncoderModel` and the Wan
//! pipeline's prompt embeddings (fixtures in `tests/data/wan`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::*;
use crate::models::wan::tokenizer::WanTokenizer;

const WAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wan");

fn config() -> Umt5Config {
    Umt5Config::from_file(format!("{WAN}/tiny-pipeline/text_encoder/config.json")).unwrap()
}

fn weights(dtype: DType) -> VarBuilder<'static> {
    let path = format!("{WAN}/tiny-pipeline/text_encoder/model.safetensors");
    // SAFETY: the fixture is not modified while the test runs.
    unsafe { VarBuilder::from_mmaped_safetensors(&[path], dtype, &Device::Cpu).unwrap() }
}

fn encoder(dtype: DType) -> Umt5Encoder {
    Umt5Encoder::new(&config(), weights(dtype)).unwrap()
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(format!("{WAN}/reference/umt5.safetensors"), &Device::Cpu)
        .unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// Max abs difference, asserted within `rel` x max(1, max |want|).
fn assert_close(got: &Tensor, want: &Tensor, rel: f32, what: &str) -> f32 {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let got = got.to_dtype(DType::F32).unwrap();
    let diff = max_abs(&(got - want).unwrap());
    let tol = rel * max_abs(want).max(1.0);
    eprintln!("{what}: max abs diff {diff:e} (tolerance {tol:e})");
    assert!(diff <= tol, "{what}: max abs diff {diff} > {tol}");
    diff
}

#[test]
fn config_reads_the_checkpoint() {
    let cfg = config();
    assert_eq!(
        (cfg.d_model, cfg.d_kv, cfg.num_heads, cfg.d_ff),
        (32, 8, 4, 48)
    );
    assert_eq!(cfg.num_layers, 2);
    assert_eq!(cfg.relative_attention_num_buckets, 32);
    assert_eq!(cfg.relative_attention_max_distance, 128);
    let ff = cfg.validate().unwrap();
    assert!(ff.gated);
    assert_eq!(ff.activation, Umt5Activation::GeluTanh);
}

#[test]
fn unsupported_feed_forward_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let base =
        r#""vocab_size": 10, "d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 1, "num_heads": 4"#;
    for (proj, needle) in [
        ("gated-mish", "\"mish\""),
        ("gelu-gated", "gelu-gated"),
        ("gated-gelu-new", "gated-gelu-new"),
    ] {
        std::fs::write(
            &path,
            format!(r#"{{{base}, "feed_forward_proj": "{proj}"}}"#),
        )
        .unwrap();
        let err = Umt5Config::from_file(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Umt5ConfigError::Unsupported(_)), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
    // The encoder refuses such a config too, whatever the weights.
    let cfg: Umt5Config = serde_json::from_str(&format!(
        r#"{{{base}, "feed_forward_proj": "gated-gelu", "dense_act_fn": "tanh"}}"#
    ))
    .unwrap();
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    let err = Umt5Encoder::new(&cfg, vb).unwrap_err().to_string();
    assert!(err.contains("\"tanh\""), "{err}");
    // Supported variants.
    for (proj, gated, act) in [
        ("relu", false, Umt5Activation::Relu),
        ("gated-silu", true, Umt5Activation::Silu),
        ("gelu", false, Umt5Activation::Gelu),
    ] {
        let cfg: Umt5Config =
            serde_json::from_str(&format!(r#"{{{base}, "feed_forward_proj": "{proj}"}}"#)).unwrap();
        assert_eq!(
            cfg.validate().unwrap(),
            Umt5FeedForward {
                gated,
                activation: act
            }
        );
    }
}

#[test]
fn relative_buckets_match_torch() {
    // First relative position of every bucket, from transformers' `_relative_position_bucket`
    // (num_buckets 32, max_distance 128, bidirectional).
    let forward = [
        (1, 17),
        (2, 18),
        (7, 23),
        (8, 24),
        (11, 24),
        (12, 25),
        (16, 26),
        (22, 26),
        (23, 27),
        (32, 28),
        (46, 29),
        (63, 29),
        (64, 30),
        (90, 30),
        (91, 31),
        (511, 31),
    ];
    let backward = [
        (0, 0),
        (-1, 1),
        (-7, 7),
        (-8, 8),
        (-10, 8),
        (-11, 8),
        (-15, 9),
        (-16, 10),
        (-22, 10),
        (-23, 11),
        (-31, 11),
        (-32, 12),
        (-45, 12),
        (-46, 13),
        (-62, 13),
        (-63, 13),
        (-64, 14),
        (-89, 14),
        (-90, 14),
        (-91, 15),
        (-511, 15),
    ];
    for (rel, bucket) in forward.into_iter().chain(backward) {
        assert_eq!(
            relative_position_bucket(rel, 32, 128),
            bucket,
            "relative {rel}"
        );
    }
}

#[test]
fn last_hidden_state_matches_transformers() {
    let r = reference();
    let enc = encoder(DType::F32);
    let got = enc.forward(&r["input_ids"], &r["attention_mask"]).unwrap();
    assert_close(
        &got,
        &r["last_hidden_state"],
        1e-4,
        "last_hidden_state (i64 ids)",
    );
    // u32 ids and mask give the same result.
    let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
    let mask = r["attention_mask"].to_dtype(DType::U32).unwrap();
    let got_u32 = enc.forward(&ids, &mask).unwrap();
    assert_eq!(max_abs(&(got_u32 - &got).unwrap()), 0.0);
}

#[test]
fn layer_by_layer_equals_forward() {
    let r = reference();
    let cfg = config();
    let vb = weights(DType::F32);
    let enc = Umt5Encoder::new(&cfg, vb.clone()).unwrap();
    let inputs = Umt5AttentionInputs::new(&cfg, &r["attention_mask"]).unwrap();
    let mut hidden = enc.embed(&r["input_ids"]).unwrap();
    for i in 0..cfg.num_layers {
        // Each layer loaded on its own, as a streaming loader would.
        let layer = Umt5Layer::new(&cfg, vb.pp(format!("encoder.block.{i}"))).unwrap();
        hidden = forward_layers(hidden, &inputs, [&layer]).unwrap();
    }
    let streamed = enc.final_norm(&hidden).unwrap();
    let whole = enc.forward(&r["input_ids"], &r["attention_mask"]).unwrap();
    assert_eq!(max_abs(&(streamed - whole).unwrap()), 0.0);
}

#[test]
fn bf16_weights_stay_close_to_f32() {
    let r = reference();
    let enc = encoder(DType::BF16);
    assert_eq!(enc.dtype(), DType::BF16);
    let got = enc.forward(&r["input_ids"], &r["attention_mask"]).unwrap();
    assert_eq!(got.dtype(), DType::BF16);
    // bf16 keeps 8 bits of mantissa; measured 0.9 % of the largest value on the fixture.
    assert_close(
        &got,
        &r["last_hidden_state"],
        3e-2,
        "last_hidden_state bf16",
    );
}

#[test]
fn prompt_embeds_match_the_pipeline() {
    let r = reference();
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{WAN}/reference/umt5.json")).unwrap(),
    )
    .unwrap();
    let prompts: Vec<String> = serde_json::from_value(spec["prompts"].clone()).unwrap();
    let max_len = spec["max_sequence_length"].as_u64().unwrap() as usize;
    let tok =
        WanTokenizer::from_file(format!("{WAN}/tiny-pipeline/tokenizer/tokenizer.json")).unwrap();
    let enc = encoder(DType::F32);
    let got = encode_prompt(&enc, &tok, &prompts, max_len, &Device::Cpu).unwrap();
    assert_close(&got, &r["prompt_embeds"], 1e-4, "prompt_embeds");
    // Rows past each prompt's length are exactly zero.
    let mask: Vec<Vec<i64>> = r["prompt_mask"].to_vec2().unwrap();
    let rows: Vec<Vec<Vec<f32>>> = got.to_vec3().unwrap();
    for (m, row) in mask.iter().zip(&rows) {
        let len = m.iter().filter(|&&v| v > 0).count();
        assert!(row[len..].iter().flatten().all(|&v| v == 0.0));
    }
}
