//! Parity of the Wan VAE with diffusers' `AutoencoderKLWan` on the tiny fixture, chunk
//! cancellation, latent (de)normalisation and config validation.

use std::collections::HashMap;
use std::ops::ControlFlow;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::*;

use crate::models::wan::testing::{self, FIXTURES, max_abs};

fn load_vae(dtype: DType) -> AutoencoderKlWan {
    load_vae_with(dtype, AutoencoderKlWan::new)
}

fn load_vae_with(
    dtype: DType,
    build: fn(WanVaeConfig, VarBuilder) -> candle_core::Result<AutoencoderKlWan>,
) -> AutoencoderKlWan {
    let dir = format!("{FIXTURES}/tiny-pipeline/vae");
    let cfg = WanVaeConfig::from_file(std::path::Path::new(&format!("{dir}/config.json"))).unwrap();
    let weights = candle_core::safetensors::load(
        format!("{dir}/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let vb = VarBuilder::from_tensors(weights, dtype, &Device::Cpu);
    build(cfg, vb).unwrap()
}

fn reference() -> HashMap<String, Tensor> {
    testing::load("reference/vae.safetensors")
}

/// Max |got − want| and the contract's bound, 1e-4 · max(1, max |want|).
fn max_diff(got: &Tensor, want: &Tensor) -> (f32, f32) {
    (testing::max_diff(got, want), 1e-4 * max_abs(want).max(1.0))
}

fn decode_all(vae: &AutoencoderKlWan, z: &Tensor) -> Tensor {
    vae.decode(z, &mut |_, _| ControlFlow::Continue(()))
        .unwrap()
        .unwrap()
}

#[test]
fn decode_matches_diffusers() {
    let vae = load_vae(DType::F32);
    let r = reference();
    let mut calls = Vec::new();
    let out = vae
        .decode(&r["latents"], &mut |done, total| {
            calls.push((done, total));
            ControlFlow::Continue(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(calls, vec![(1, 3), (2, 3), (3, 3)]);
    let (diff, bound) = max_diff(&out, &r["decoded"]);
    eprintln!("decode max diff {diff:e} (bound {bound:e})");
    assert!(diff <= bound, "decode max diff {diff} > {bound}");
}

#[test]
fn the_decoder_alone_decodes_the_same_and_cannot_encode() {
    let r = reference();
    let vae = load_vae_with(DType::F32, AutoencoderKlWan::decoder_only);
    let (diff, bound) = max_diff(&decode_all(&vae, &r["latents"]), &r["decoded"]);
    assert!(diff <= bound, "decode max diff {diff} > {bound}");
    let err = vae.encode(&r["video"]).unwrap_err().to_string();
    assert!(err.contains("without its encoder"), "{err}");
}

#[test]
fn encode_matches_diffusers() {
    let vae = load_vae(DType::F32);
    let r = reference();
    let (mean, logvar) = vae.encode(&r["video"]).unwrap();
    for (name, got) in [("encoded_mean", &mean), ("encoded_logvar", &logvar)] {
        let (diff, bound) = max_diff(got, &r[name]);
        eprintln!("{name} max diff {diff:e} (bound {bound:e})");
        assert!(diff <= bound, "{name} max diff {diff} > {bound}");
    }
}

#[test]
fn decode_stops_when_the_callback_breaks() {
    let vae = load_vae(DType::F32);
    let r = reference();
    let mut calls = 0;
    let out = vae
        .decode(&r["latents"], &mut |done, _| {
            calls += 1;
            if done == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(out.is_none());
    assert_eq!(calls, 1);
}

#[test]
fn decode_is_causal_in_time() {
    // The first latent frames decode to the same video frames whatever follows them.
    let vae = load_vae(DType::F32);
    let r = reference();
    let z = &r["latents"];
    let full = decode_all(&vae, z);
    let head = decode_all(&vae, &z.narrow(2, 0, 2).unwrap());
    assert_eq!(head.dims(), &[1, 3, 5, 32, 48]);
    let (diff, _) = max_diff(&head, &full.narrow(2, 0, 5).unwrap());
    assert_eq!(diff, 0.0);
}

#[test]
fn encode_is_causal_and_drops_incomplete_chunks() {
    // 8 frames are the first frame, one chunk of 4, and 3 frames diffusers leaves out.
    let vae = load_vae(DType::F32);
    let r = reference();
    let (mean, logvar) = vae.encode(&r["video"]).unwrap();
    let (head_mean, head_logvar) = vae.encode(&r["video"].narrow(2, 0, 8).unwrap()).unwrap();
    assert_eq!(head_mean.dims(), &[1, 4, 2, 4, 6]);
    assert_eq!(max_diff(&head_mean, &mean.narrow(2, 0, 2).unwrap()).0, 0.0);
    assert_eq!(
        max_diff(&head_logvar, &logvar.narrow(2, 0, 2).unwrap()).0,
        0.0
    );
}

#[test]
fn bf16_weights_stay_close() {
    // On the CPU bf16 weights are widened to f32, so the only change is the weights' rounding:
    // diffusers with the same bf16-rounded weights differs from the f32 reference by 0.0341
    // (decode) and 0.0029 (encoded mean), as this port does.
    let vae = load_vae(DType::BF16);
    let r = reference();
    let out = decode_all(&vae, &r["latents"]);
    let (diff, _) = max_diff(&out, &r["decoded"]);
    eprintln!("bf16 decode max diff {diff:e}");
    assert!(diff < 0.05, "bf16 decode max diff {diff}");
    let (mean, _) = vae.encode(&r["video"]).unwrap();
    let (diff, _) = max_diff(&mean, &r["encoded_mean"]);
    eprintln!("bf16 encode max diff {diff:e}");
    assert!(diff < 0.05, "bf16 encode max diff {diff}");
}

#[test]
fn latents_are_denormalised_per_channel() {
    let vae = load_vae(DType::F32);
    assert_eq!(vae.latents_mean(), &[-0.3, 0.1, 0.25, -0.05]);
    assert_eq!(vae.latents_std(), &[1.8, 2.5, 1.2, 3.0]);
    let x = Tensor::ones((1, 4, 2, 1, 1), DType::F32, &Device::Cpu).unwrap();
    let y = vae.denormalize_latents(&x).unwrap();
    let v: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
    let want = [1.5f32, 1.5, 2.6, 2.6, 1.45, 1.45, 2.95, 2.95];
    for (a, b) in v.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{v:?}");
    }
    let back = vae.normalize_latents(&y).unwrap();
    let (diff, _) = max_diff(&back, &x);
    assert!(diff < 1e-6);
}

fn fixture_config() -> serde_json::Value {
    let text =
        std::fs::read_to_string(format!("{FIXTURES}/tiny-pipeline/vae/config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn parse(value: &serde_json::Value) -> std::result::Result<WanVaeConfig, VaeConfigError> {
    WanVaeConfig::from_json(&value.to_string())
}

#[test]
fn config_parses_the_checkpoint_and_fills_defaults() {
    let cfg = parse(&fixture_config()).unwrap();
    assert_eq!((cfg.base_dim, cfg.z_dim, cfg.num_res_blocks), (8, 4, 1));
    assert_eq!(cfg.dim_mult, vec![1, 2, 4, 4]);
    assert_eq!(cfg.temperal_downsample, vec![false, true, true]);
    assert_eq!(
        (cfg.spatial_compression(), cfg.temporal_compression()),
        (8, 4)
    );
    // A bare config is Wan2.1's VAE (diffusers' defaults).
    let bare = WanVaeConfig::from_json(r#"{"_class_name": "AutoencoderKLWan"}"#).unwrap();
    assert_eq!(bare, WanVaeConfig::default());
    assert_eq!(
        (bare.base_dim, bare.z_dim, bare.latents_std.len()),
        (96, 16, 16)
    );
}

#[test]
fn config_rejects_unsupported_variants() {
    let cases: [(&str, serde_json::Value, &str); 7] = [
        ("attn_scales", serde_json::json!([0.5]), "attn_scales"),
        ("is_residual", serde_json::json!(true), "residual"),
        ("patch_size", serde_json::json!(2), "patch_size"),
        ("in_channels", serde_json::json!(12), "in_channels"),
        ("out_channels", serde_json::json!(12), "out_channels"),
        (
            "latents_mean",
            serde_json::json!([0.0, 1.0]),
            "latents_mean",
        ),
        (
            "temperal_downsample",
            serde_json::json!([true]),
            "temperal_downsample",
        ),
    ];
    for (field, value, needle) in cases {
        let mut cfg = fixture_config();
        cfg[field] = value;
        let err = parse(&cfg).unwrap_err().to_string();
        assert!(err.contains(needle), "{field}: {err}");
    }
    let mut cfg = fixture_config();
    cfg["z_dim"] = serde_json::json!("four");
    assert!(matches!(parse(&cfg), Err(VaeConfigError::Parse(_))));
}

/// More stages than a shift can count (64 would overflow `1 << stages`) or widths whose
/// products overflow are refused.
#[test]
fn config_rejects_too_many_stages_or_sizes_above_the_limit() {
    let mut cfg = fixture_config();
    cfg["dim_mult"] = serde_json::json!(vec![1; 65]);
    cfg["temperal_downsample"] = serde_json::json!(vec![true; 64]);
    let err = parse(&cfg).unwrap_err().to_string();
    assert!(err.contains("65 stages"), "{err}");
    let mut cfg = fixture_config();
    cfg["dim_mult"] = serde_json::json!(vec![1; super::config::MAX_STAGES]);
    cfg["temperal_downsample"] = serde_json::json!(vec![true; super::config::MAX_STAGES - 1]);
    let ok = parse(&cfg).unwrap();
    assert_eq!(
        (ok.spatial_compression(), ok.temporal_compression()),
        (128, 128)
    );
    for field in ["base_dim", "decoder_base_dim"] {
        let mut cfg = fixture_config();
        cfg[field] = serde_json::json!(1u64 << 40);
        let err = parse(&cfg).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains("is above"), "{err}");
    }
}
