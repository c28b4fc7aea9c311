//! Parity tests of the UMT5 encoder against transformers' `UMT5EncoderModel` and the Wan
//! pipeline's prompt embeddings (fixtures in `tests/data/wan`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::*;
use crate::models::wan::tokenizer::WanTokenizer;

use crate::models::wan::testing::{FIXTURES as WAN, load, max_abs};

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
    load("reference/umt5.safetensors")
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

// ---- Streaming (`Umt5Streamer`): bit-identical to the whole encoder ----

fn text_encoder_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{WAN}/tiny-pipeline/text_encoder"))
}

fn fixture_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(text_encoder_dir().join("model.safetensors"), &Device::Cpu)
        .unwrap()
}

/// The values as f32 bit patterns (exact for f32, bf16 and f16 tensors).
fn bits(t: &Tensor) -> Vec<u32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn assert_identical(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtype");
    assert!(bits(got) == bits(want), "{what}: values differ");
}

fn streamer(dir: &std::path::Path, cfg: &Umt5Config) -> Umt5Streamer {
    let files = crate::nn::weights::component_files(dir, "model").unwrap();
    Umt5Streamer::new(&files, cfg).unwrap()
}

/// Writes `tensors` into `dir` as two shards and a `model.safetensors.index.json`: the
/// embedding and block 0 in the first, the rest in the second.
fn write_two_shards(dir: &std::path::Path, tensors: &HashMap<String, Tensor>) {
    let mut shards: [HashMap<String, Tensor>; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    for (name, t) in tensors {
        let first = name == "shared.weight" || name.starts_with("encoder.block.0.");
        let (i, file) = if first {
            (0, "model-00001-of-00002.safetensors")
        } else {
            (1, "model-00002-of-00002.safetensors")
        };
        shards[i].insert(name.clone(), t.clone());
        weight_map.insert(name.clone(), file.into());
    }
    for (i, shard) in shards.iter().enumerate() {
        let path = dir.join(format!("model-0000{}-of-00002.safetensors", i + 1));
        candle_core::safetensors::save(shard, path).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string(&index).unwrap(),
    )
    .unwrap();
}

#[test]
fn streaming_equals_the_whole_encoder() {
    let r = reference();
    let cfg = config();
    let stream = streamer(&text_encoder_dir(), &cfg);
    assert_eq!(
        stream.parameter_count(),
        163 * 32 + 2 * (4 * 32 * 32 + 32 * 4 + 3 * 32 * 48 + 64) + 32
    );
    for dtype in [DType::F32, DType::BF16] {
        let want = encoder(dtype)
            .forward(&r["input_ids"], &r["attention_mask"])
            .unwrap();
        let got = stream
            .forward(&r["input_ids"], &r["attention_mask"], dtype, &Device::Cpu)
            .unwrap();
        assert_identical(&got, &want, &format!("streamed {dtype:?}"));
        // u32 ids and mask give the same.
        let ids = r["input_ids"].to_dtype(DType::U32).unwrap();
        let mask = r["attention_mask"].to_dtype(DType::U32).unwrap();
        let got = stream.forward(&ids, &mask, dtype, &Device::Cpu).unwrap();
        assert_identical(&got, &want, &format!("streamed {dtype:?}, u32 ids"));
    }
}

/// Also gives the norms weights that bf16 cannot hold (the fixture's are all 1), so that
/// keeping them in f32 from the file on is checked too.
#[test]
fn streaming_reads_a_sharded_checkpoint() {
    let r = reference();
    let cfg = config();
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = fixture_tensors();
    for (i, (name, t)) in tensors.iter_mut().enumerate() {
        if name.ends_with("layer_norm.weight") {
            *t = (pattern(t.dims(), i as f64, 0.1) + 1.0).unwrap();
        }
    }
    write_two_shards(dir.path(), &tensors);
    let files = crate::nn::weights::component_files(dir.path(), "model").unwrap();
    assert_eq!(files.len(), 2);
    let stream = Umt5Streamer::new(&files, &cfg).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let vb = crate::nn::weights::mmap_var_builder(&files, dtype, &Device::Cpu).unwrap();
        let want = Umt5Encoder::new(&cfg, vb)
            .unwrap()
            .forward(&r["input_ids"], &r["attention_mask"])
            .unwrap();
        let got = stream
            .forward(&r["input_ids"], &r["attention_mask"], dtype, &Device::Cpu)
            .unwrap();
        assert_identical(&got, &want, &format!("two shards, {dtype:?}"));
    }
}

#[test]
fn streaming_converts_bf16_and_f16_files_as_the_mapped_loader_does() {
    let r = reference();
    let cfg = config();
    for stored in [DType::BF16, DType::F16] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let converted: HashMap<String, Tensor> = fixture_tensors()
            .into_iter()
            .map(|(k, v)| (k, v.to_dtype(stored).unwrap()))
            .collect();
        candle_core::safetensors::save(&converted, &path).unwrap();
        let stream = streamer(dir.path(), &cfg);
        for dtype in [DType::F32, DType::BF16] {
            // SAFETY: the temporary file is not modified while the test runs.
            let vb = unsafe {
                VarBuilder::from_mmaped_safetensors(&[&path], dtype, &Device::Cpu).unwrap()
            };
            let want = Umt5Encoder::new(&cfg, vb)
                .unwrap()
                .forward(&r["input_ids"], &r["attention_mask"])
                .unwrap();
            let got = stream
                .forward(&r["input_ids"], &r["attention_mask"], dtype, &Device::Cpu)
                .unwrap();
            assert_identical(&got, &want, &format!("{stored:?} file, {dtype:?} compute"));
        }
    }
}

fn fixture_prompts() -> Vec<String> {
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{WAN}/reference/umt5.json")).unwrap(),
    )
    .unwrap();
    serde_json::from_value(spec["prompts"].clone()).unwrap()
}

#[test]
fn streamed_prompt_embeds_equal_encode_prompt_batched_or_not() {
    let cfg = config();
    let tok =
        WanTokenizer::from_file(format!("{WAN}/tiny-pipeline/tokenizer/tokenizer.json")).unwrap();
    let mut prompts = fixture_prompts();
    // The pipeline's negative prompt when none is given.
    prompts.push(String::new());
    let dev = Device::Cpu;
    for dtype in [DType::F32, DType::BF16] {
        let want = encode_prompt(&encoder(dtype), &tok, &prompts, 512, &dev).unwrap();
        let got =
            encode_prompt_streaming(&text_encoder_dir(), &cfg, &tok, &prompts, 512, dtype, &dev)
                .unwrap();
        assert_identical(&got, &want, &format!("prompt_embeds {dtype:?}"));
        if dtype == DType::F32 {
            assert_close(
                &got.narrow(0, 0, 2).unwrap(),
                &reference()["prompt_embeds"],
                1e-4,
                "streamed prompt_embeds",
            );
        }
        // Each prompt alone gives its row of the batch, bit for bit.
        for (i, p) in prompts.iter().enumerate() {
            let alone = encode_prompt_streaming(
                &text_encoder_dir(),
                &cfg,
                &tok,
                std::slice::from_ref(p),
                512,
                dtype,
                &dev,
            )
            .unwrap();
            assert_identical(
                &alone,
                &got.narrow(0, i, 1).unwrap(),
                &format!("prompt {i} alone vs batched, {dtype:?}"),
            );
        }
    }
}

/// A deterministic, varied tensor of `shape` with values in about [-scale, scale].
fn pattern(shape: &[usize], seed: f64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::arange(0u32, n as u32, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .affine(0.7548776662466927, seed)
        .unwrap()
        .sin()
        .unwrap()
        .affine(scale, 0.0)
        .unwrap()
        .reshape(shape)
        .unwrap()
}

/// At sizes where the matrix products block over k (d_ff > 512) and the sequence is the
/// pipeline's 512 tokens, a batch of two rows still equals two batches of one bit for bit,
/// which is what lets the pipeline encode the prompt and the negative prompt together.
#[test]
fn a_batch_of_two_equals_two_single_batches_at_pipeline_length() {
    let cfg: Umt5Config = serde_json::from_str(
        r#"{"vocab_size": 300, "d_model": 128, "d_kv": 32, "d_ff": 1024, "num_layers": 1,
            "num_heads": 4, "feed_forward_proj": "gated-gelu"}"#,
    )
    .unwrap();
    let mut tensors = HashMap::new();
    let mut add = |name: &str, shape: &[usize], scale: f64| {
        let t = pattern(shape, tensors.len() as f64, scale);
        tensors.insert(name.to_string(), t);
    };
    add("shared.weight", &[300, 128], 1.0);
    let b = "encoder.block.0.layer";
    for w in ["q", "k", "v"] {
        add(&format!("{b}.0.SelfAttention.{w}.weight"), &[128, 128], 0.1);
    }
    add(&format!("{b}.0.SelfAttention.o.weight"), &[128, 128], 0.1);
    add(
        &format!("{b}.0.SelfAttention.relative_attention_bias.weight"),
        &[32, 4],
        1.0,
    );
    add(&format!("{b}.0.layer_norm.weight"), &[128], 1.0);
    add(&format!("{b}.1.layer_norm.weight"), &[128], 1.0);
    add(
        &format!("{b}.1.DenseReluDense.wi_0.weight"),
        &[1024, 128],
        0.1,
    );
    add(
        &format!("{b}.1.DenseReluDense.wi_1.weight"),
        &[1024, 128],
        0.1,
    );
    add(
        &format!("{b}.1.DenseReluDense.wo.weight"),
        &[128, 1024],
        0.05,
    );
    add("encoder.final_layer_norm.weight", &[128], 1.0);
    let dir = tempfile::tempdir().unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let stream = streamer(dir.path(), &cfg);
    let l = 512;
    let lens = [37usize, 5];
    let ids: Vec<u32> = (0..2 * l as u32).map(|i| (i * 7919 + 13) % 300).collect();
    let mask: Vec<u32> = (0..2 * l).map(|i| u32::from(i % l < lens[i / l])).collect();
    let ids = Tensor::from_vec(ids, (2, l), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (2, l), &Device::Cpu).unwrap();
    for dtype in [DType::F32, DType::BF16] {
        let both = stream.forward(&ids, &mask, dtype, &Device::Cpu).unwrap();
        for row in 0..2 {
            let one = stream
                .forward(
                    &ids.narrow(0, row, 1).unwrap(),
                    &mask.narrow(0, row, 1).unwrap(),
                    dtype,
                    &Device::Cpu,
                )
                .unwrap();
            assert_identical(
                &one,
                &both.narrow(0, row, 1).unwrap(),
                &format!("row {row} alone vs batched, {dtype:?}"),
            );
        }
    }
}

#[test]
fn streaming_names_what_is_wrong_with_a_checkpoint() {
    let cfg = config();
    let err_of = |tensors: &HashMap<String, Tensor>| -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        candle_core::safetensors::save(tensors, &path).unwrap();
        Umt5Streamer::new(&[path], &cfg).unwrap_err().to_string()
    };
    let wo = "encoder.block.1.layer.1.DenseReluDense.wo.weight";
    let mut t = fixture_tensors();
    t.remove(wo);
    let err = err_of(&t);
    assert!(err.contains(wo) && err.contains("missing"), "{err}");
    let mut t = fixture_tensors();
    t.insert(
        wo.into(),
        Tensor::zeros((48, 32), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = err_of(&t);
    assert!(
        err.contains(wo) && err.contains("[48, 32]") && err.contains("[32, 48]"),
        "{err}"
    );
    let mut t = fixture_tensors();
    t.insert(
        wo.into(),
        Tensor::zeros((32, 48), DType::F64, &Device::Cpu).unwrap(),
    );
    let err = err_of(&t);
    assert!(err.contains(wo) && err.contains("F64"), "{err}");

    // The same tensor in two shards.
    let dir = tempfile::tempdir().unwrap();
    let t = fixture_tensors();
    write_two_shards(dir.path(), &t);
    let extra = HashMap::from([(wo.to_string(), t[wo].clone())]);
    let first = dir.path().join("model-00001-of-00002.safetensors");
    let mut shard0 = candle_core::safetensors::load(&first, &Device::Cpu).unwrap();
    shard0.extend(extra);
    candle_core::safetensors::save(&shard0, &first).unwrap();
    let files = crate::nn::weights::component_files(dir.path(), "model").unwrap();
    let err = Umt5Streamer::new(&files, &cfg).unwrap_err().to_string();
    assert!(err.contains(wo) && err.contains("both"), "{err}");

    // A truncated file is named.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(text_encoder_dir().join("model.safetensors")).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = Umt5Streamer::new(&[path], &cfg).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");

    // A token id past the vocabulary.
    let stream = streamer(&text_encoder_dir(), &cfg);
    let ids = Tensor::new(&[[1u32, 163]], &Device::Cpu).unwrap();
    let mask = Tensor::new(&[[1u32, 1]], &Device::Cpu).unwrap();
    let err = stream
        .forward(&ids, &mask, DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("163") && err.contains("vocabulary"), "{err}");
}

/// A max distance at or below a quarter of the buckets made the log-scale buckets divide by
/// zero (an overflow panic); huge sizes are refused before anything multiplies them.
#[test]
fn config_rejects_a_degenerate_bucket_scale_and_huge_sizes() {
    let base = r#""vocab_size": 10, "d_model": 8, "d_kv": 2, "d_ff": 16, "num_layers": 1"#;
    let parse = |extra: &str| {
        let json = format!(r#"{{{base}, "num_heads": 4{extra}}}"#);
        Umt5Config::from_json(json.as_bytes(), Path::new("text_encoder/config.json"))
    };
    let ok =
        parse(r#", "relative_attention_num_buckets": 32, "relative_attention_max_distance": 9"#)
            .unwrap();
    assert!((-511..=511).all(|r| relative_position_bucket(
        r,
        32,
        ok.relative_attention_max_distance
    ) < 32));
    for distance in [0, 8] {
        let extra = format!(
            r#", "relative_attention_num_buckets": 32, "relative_attention_max_distance": {distance}"#
        );
        let err = parse(&extra).unwrap_err().to_string();
        assert!(err.contains("relative_attention_max_distance"), "{err}");
    }
    let err = parse(r#", "relative_attention_num_buckets": 1099511627776"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("num_buckets 1099511627776 is above"), "{err}");
    parse("").unwrap();
    let err = Umt5Config::from_json(b"{", Path::new("text_encoder/config.json")).unwrap_err();
    assert!(matches!(err, Umt5ConfigError::Parse { .. }), "{err}");
}
