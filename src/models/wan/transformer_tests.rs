//! Parity of the Wan transformer with diffusers 0.42.1 on the tiny fixture, plus checks of
//! its pieces (patch embedding, timestep sinusoids) and of its config.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;

use super::*;

use crate::models::wan::testing::{fixture, load, max_abs, max_diff, seeded};

fn tiny_model(dtype: DType) -> WanTransformer {
    let dir = fixture("tiny-pipeline/transformer");
    let cfg = WanTransformerConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = candle_core::safetensors::load(
        dir.join("diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let vb = VarBuilder::from_tensors(weights, dtype, &Device::Cpu);
    WanTransformer::new(&cfg, vb).unwrap()
}

#[test]
fn forward_matches_diffusers_f32() {
    let r = load("reference/transformer.safetensors");
    let model = tiny_model(DType::F32);
    let out = model
        .forward(
            &r["hidden_states"],
            &r["timestep"],
            &r["encoder_hidden_states"],
        )
        .unwrap();
    let reference = &r["output"];
    assert_eq!(out.dims(), reference.dims());
    assert_eq!(out.dtype(), DType::F32);
    let (diff, scale) = (max_diff(&out, reference), max_abs(reference).max(1.0));
    eprintln!("f32: max |diff| {diff:e}, max |ref| {scale}");
    assert!(diff <= 1e-4 * scale, "max diff {diff} (scale {scale})");
}

#[test]
fn forward_bf16_stays_close_to_f32_reference() {
    let r = load("reference/transformer.safetensors");
    let model = tiny_model(DType::BF16);
    assert_eq!(model.dtype(), DType::BF16);
    let out = model
        .forward(
            &r["hidden_states"],
            &r["timestep"],
            &r["encoder_hidden_states"],
        )
        .unwrap();
    assert_eq!(out.dtype(), DType::BF16);
    let reference = &r["output"];
    let (diff, scale) = (max_diff(&out, reference), max_abs(reference).max(1.0));
    eprintln!("bf16: max |diff| {diff:e}, max |ref| {scale}");
    assert!(
        diff.is_finite() && diff <= 2.5e-2 * scale,
        "max diff {diff} (scale {scale})"
    );
}

#[test]
fn forward_checks_its_inputs() {
    let model = tiny_model(DType::F32);
    let dev = Device::Cpu;
    let x = Tensor::zeros((1, 4, 3, 4, 6), DType::F32, &dev).unwrap();
    let t = Tensor::new(&[500f32], &dev).unwrap();
    let text = Tensor::zeros((1, 5, 32), DType::F32, &dev).unwrap();
    assert!(model.forward(&x, &t, &text).is_ok());
    let odd = Tensor::zeros((1, 4, 3, 5, 6), DType::F32, &dev).unwrap();
    assert!(model.forward(&odd, &t, &text).is_err());
    let wrong_channels = Tensor::zeros((1, 3, 3, 4, 6), DType::F32, &dev).unwrap();
    assert!(model.forward(&wrong_channels, &t, &text).is_err());
    let t2 = Tensor::new(&[[500f32]], &dev).unwrap();
    assert!(model.forward(&x, &t2, &text).is_err());
    let wrong_text = Tensor::zeros((1, 5, 31), DType::F32, &dev).unwrap();
    assert!(model.forward(&x, &t, &wrong_text).is_err());
    assert!(model.patch_grid(1, 2 * 1025, 2).is_err());
    assert_eq!(model.patch_grid(3, 4, 6).unwrap(), [3, 2, 3]);
}

#[test]
fn patch_embedding_is_a_strided_conv3d() {
    let (cin, dim, patch) = (3, 5, [2, 2, 3]);
    let w = seeded(&[dim, cin, 2, 2, 3], 4);
    let bias = seeded(&[dim], 5);
    let tensors = HashMap::from([
        ("weight".to_string(), w.clone()),
        ("bias".to_string(), bias.clone()),
    ]);
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let pe = PatchEmbed::new(cin, dim, patch, vb).unwrap();
    let x = seeded(&[2, cin, 4, 4, 6], 6);
    let y = pe.forward(&x).unwrap();
    assert_eq!(y.dims(), [2, 2 * 2 * 2, dim]);
    let wv: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
    let bv: Vec<f32> = bias.to_vec1().unwrap();
    let x5: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    let xi = |b: usize, c: usize, f: usize, h: usize, w: usize| {
        x5[(((b * cin + c) * 4 + f) * 4 + h) * 6 + w]
    };
    let wi = |o: usize, c: usize, f: usize, h: usize, w: usize| {
        wv[(((o * cin + c) * 2 + f) * 2 + h) * 3 + w]
    };
    for b in 0..2 {
        for (tok, (gf, gh, gw)) in [
            (0, 0, 0),
            (0, 0, 1),
            (0, 1, 0),
            (0, 1, 1),
            (1, 0, 0),
            (1, 0, 1),
            (1, 1, 0),
            (1, 1, 1),
        ]
        .into_iter()
        .enumerate()
        {
            for (o, &b0) in bv.iter().enumerate() {
                let mut acc = b0;
                for c in 0..cin {
                    for f in 0..2 {
                        for h in 0..2 {
                            for w in 0..3 {
                                acc += wi(o, c, f, h, w)
                                    * xi(b, c, gf * 2 + f, gh * 2 + h, gw * 3 + w);
                            }
                        }
                    }
                }
                let got: f32 = y.i((b, tok, o)).unwrap().to_scalar().unwrap();
                assert!(
                    (got - acc).abs() < 1e-5,
                    "b {b} tok {tok} o {o}: {got} vs {acc}"
                );
            }
        }
    }
}

#[test]
fn timestep_sinusoids_put_cosines_first() {
    let t = timestep_sinusoids(&[0.0, 250.0], 7, &Device::Cpu).unwrap();
    let v: Vec<Vec<f32>> = t.to_vec2().unwrap();
    assert_eq!(v[0], vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    for j in 0..3 {
        let a = 250.0 * (-(10_000f64.ln()) * j as f64 / 3.0).exp();
        assert!((v[1][j] as f64 - a.cos()).abs() < 1e-4);
        assert!((v[1][3 + j] as f64 - a.sin()).abs() < 1e-4);
    }
    assert_eq!(v[1][6], 0.0);
}

fn tiny_config_json() -> serde_json::Value {
    let path = fixture("tiny-pipeline/transformer/config.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn parse(
    v: &serde_json::Value,
) -> std::result::Result<WanTransformerConfig, TransformerConfigError> {
    WanTransformerConfig::from_json(&serde_json::to_vec(v).unwrap())
}

#[test]
fn config_parses_the_fixture_and_defaults() {
    let cfg = parse(&tiny_config_json()).unwrap();
    assert_eq!(cfg.patch(), [1, 2, 2]);
    assert_eq!(cfg.inner_dim(), 24);
    assert_eq!(cfg.out_channels(), 4);
    assert_eq!(cfg.rope_max_seq_len, 1024);
    // An old-style config without the newer fields takes diffusers' defaults.
    let cfg = parse(&serde_json::json!({"num_layers": 30, "out_channels": null})).unwrap();
    assert_eq!(cfg.num_attention_heads, 40);
    assert_eq!(cfg.out_channels(), 16);
    assert_eq!(cfg.pos_embed_seq_len, None);
    // Unknown fields are ignored, as diffusers ignores them.
    let mut v = tiny_config_json();
    v["some_future_field"] = serde_json::json!(3);
    assert!(parse(&v).is_ok());
}

#[test]
fn config_rejects_what_is_not_wan21_t2v() {
    let cases: [(&str, serde_json::Value); 9] = [
        ("image_dim", serde_json::json!(1280)),
        ("added_kv_proj_dim", serde_json::json!(5120)),
        ("pos_embed_seq_len", serde_json::json!(514)),
        ("qk_norm", serde_json::json!("rms_norm")),
        ("qk_norm", serde_json::Value::Null),
        ("patch_size", serde_json::json!([2, 2])),
        ("patch_size", serde_json::json!([1, 0, 2])),
        (
            "_class_name",
            serde_json::json!("WanVACETransformer3DModel"),
        ),
        ("attention_head_dim", serde_json::json!(13)),
    ];
    for (key, value) in cases {
        let mut v = tiny_config_json();
        v[key] = value.clone();
        match parse(&v) {
            Err(TransformerConfigError::Unsupported(msg)) => eprintln!("{key}={value}: {msg}"),
            other => panic!("{key}={value} gave {other:?}"),
        }
    }
    assert!(matches!(
        parse(&serde_json::json!({"num_layers": "thirty"})),
        Err(TransformerConfigError::Json(_))
    ));
    // The model constructor validates too.
    let cfg = WanTransformerConfig {
        image_dim: Some(1280),
        ..Default::default()
    };
    let vb = VarBuilder::zeros(DType::F32, &Device::Cpu);
    assert!(WanTransformer::new(&cfg, vb).is_err());
}

/// Sizes whose products overflow (heads × head dim) are refused, not multiplied.
#[test]
fn config_rejects_sizes_above_the_limit() {
    use super::config::MAX_SIZE;
    for (field, value) in [
        ("num_attention_heads", 1usize << 40),
        ("attention_head_dim", 1 << 40),
        ("ffn_dim", MAX_SIZE + 1),
        ("num_layers", MAX_SIZE + 1),
    ] {
        let mut v = tiny_config_json();
        v[field] = value.into();
        let err = parse(&v).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains("is above"), "{err}");
    }
    let mut v = tiny_config_json();
    v["patch_size"] = serde_json::json!([1, MAX_SIZE * 2, MAX_SIZE * 2]);
    assert!(parse(&v).unwrap_err().to_string().contains("patch_size"));
}
