//! Tests of the starter config's range checks: every rejected field is named, with the file.

use std::path::Path;

use serde_json::{Value, json};

use crate::models::PipelineError;
use crate::models::starter::config::StarterConfig;
use crate::models::starter::weights::{parse_config, sha256_hex};

const PATH: &str = "/models/broken/config.json";

/// The tiny test config with a checksum, as JSON: valid as it is.
fn valid() -> Value {
    let mut cfg = StarterConfig::tiny();
    cfg.weights_sha256 = sha256_hex(b"weights");
    serde_json::to_value(cfg).unwrap()
}

fn parse(v: &Value) -> Result<StarterConfig, PipelineError> {
    parse_config(&serde_json::to_vec(v).unwrap(), Path::new(PATH))
}

/// `valid()` with the value at `pointer` (e.g. `/vocabulary/tokens`) replaced.
fn with(pointer: &str, value: Value) -> Value {
    let mut v = valid();
    *v.pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no field {pointer}")) = value;
    v
}

/// Asserts `v` is refused as a bad config whose message names `field` and the file.
fn assert_refused(v: &Value, field: &str) -> String {
    match parse(v) {
        Err(e @ PipelineError::BadConfig { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{field}`")), "names {field}: {msg}");
            assert!(msg.contains(PATH), "names the file: {msg}");
            msg
        }
        Err(other) => panic!("{field}: not a BadConfig: {other}"),
        Ok(_) => panic!("{field}: accepted {v}"),
    }
}

#[test]
fn the_bundled_config_and_the_presets_pass() {
    let bundled = include_bytes!("../../../assets/starter/config.json");
    let cfg = parse_config(bundled, Path::new("<bundled>/config.json")).unwrap();
    assert_eq!(cfg.name, "aivideo-starter");
    parse(&valid()).unwrap();
    let mut small = StarterConfig::small();
    small.weights_sha256 = sha256_hex(b"weights");
    parse(&serde_json::to_value(small).unwrap()).unwrap();
}

#[test]
fn every_out_of_range_field_is_refused_naming_the_field_and_the_file() {
    let table: Vec<(&str, Value, &str)> = vec![
        ("/name", json!(""), "name"),
        ("/name", json!("a\u{7}b"), "name"),
        ("/name", json!("x".repeat(129)), "name"),
        ("/native_size", json!(0), "native_size"),
        ("/native_size", json!(1_000_000), "native_size"),
        ("/native_size", json!(30), "native_size"),
        ("/frames", json!(0), "frames"),
        ("/frames", json!(15), "frames"),
        ("/frames", json!(1000), "frames"),
        ("/fps", json!(0), "fps"),
        ("/fps", json!(31), "fps"),
        ("/patch", json!(0), "patch"),
        ("/patch", json!(33), "patch"),
        ("/tubelet", json!(0), "tubelet"),
        ("/tubelet", json!(17), "tubelet"),
        ("/dim", json!(0), "dim"),
        ("/dim", json!(30), "dim"),
        ("/dim", json!(2048), "dim"),
        ("/heads", json!(0), "heads"),
        ("/heads", json!(3), "heads"),
        ("/heads", json!(65), "heads"),
        ("/depth", json!(0), "depth"),
        ("/depth", json!(33), "depth"),
        ("/mlp_ratio", json!(0), "mlp_ratio"),
        ("/mlp_ratio", json!(9), "mlp_ratio"),
        ("/text_layers", json!(0), "text_layers"),
        ("/text_layers", json!(17), "text_layers"),
        ("/max_tokens", json!(0), "max_tokens"),
        ("/max_tokens", json!(257), "max_tokens"),
        ("/shift", json!(0.0), "shift"),
        ("/shift", json!(-1.0), "shift"),
        ("/shift", json!(1e39), "shift"),
        ("/shift", json!(21.0), "shift"),
        ("/t_max", json!(0.0), "t_max"),
        ("/t_max", json!(1.5), "t_max"),
        ("/guidance_max_t", json!(-0.1), "guidance_max_t"),
        ("/guidance_max_t", json!(2.0), "guidance_max_t"),
        ("/default_guidance", json!(0.5), "default_guidance"),
        ("/default_guidance", json!(16.0), "default_guidance"),
        ("/weights", json!("../x"), "weights"),
        ("/weights", json!("../../etc/passwd"), "weights"),
        ("/weights", json!("/etc/passwd"), "weights"),
        ("/weights", json!("sub/model.safetensors"), "weights"),
        ("/weights", json!("sub\\model.safetensors"), "weights"),
        ("/weights", json!(".."), "weights"),
        ("/weights", json!("."), "weights"),
        ("/weights", json!(""), "weights"),
        ("/weights_sha256", json!(""), "weights_sha256"),
        ("/weights_sha256", json!("abc"), "weights_sha256"),
        ("/weights_sha256", json!("A".repeat(64)), "weights_sha256"),
        (
            "/vocabulary/tokens",
            json!(["<pad>", "<empty>"]),
            "vocabulary.tokens",
        ),
        (
            "/vocabulary/tokens",
            json!(["red", "<empty>", "blue"]),
            "vocabulary.tokens",
        ),
        ("/vocabulary/tokens/5", json!("red"), "vocabulary.tokens[5]"),
        ("/vocabulary/tokens/5", json!(""), "vocabulary.tokens[5]"),
        (
            "/vocabulary/synonyms/0",
            json!(["grey", "nope"]),
            "vocabulary.synonyms[0]",
        ),
        (
            "/vocabulary/synonyms/0",
            json!(["", "gray"]),
            "vocabulary.synonyms[0]",
        ),
        (
            "/vocabulary/phrases/0",
            json!(["dark", "navy"]),
            "vocabulary.phrases[0]",
        ),
    ];
    for (pointer, value, field) in table {
        assert_refused(&with(pointer, value), field);
    }
}

#[test]
fn the_message_says_what_the_field_must_be() {
    let msg = assert_refused(&with("/heads", json!(0)), "heads");
    assert!(
        msg.contains("`heads` is 0; it must be between 1 and 64 and divide `dim` (32)"),
        "{msg}"
    );
    let msg = assert_refused(&with("/weights", json!("../x")), "weights");
    assert!(msg.contains("plain file name"), "{msg}");
}

/// Products of fields that are each in range: patches a frame, tokens a clip, values a token.
#[test]
fn derived_token_counts_are_capped() {
    let mut v = valid();
    v["native_size"] = json!(1024);
    let msg = assert_refused(&v, "native_size");
    assert!(msg.contains("65536"), "{msg}");

    let mut v = valid();
    v["native_size"] = json!(256);
    v["frames"] = json!(128);
    let msg = assert_refused(&v, "frames");
    assert!(msg.contains("262144"), "{msg}");

    let mut v = valid();
    v["native_size"] = json!(64);
    v["patch"] = json!(32);
    v["tubelet"] = json!(16);
    let msg = assert_refused(&v, "patch");
    assert!(msg.contains("49152"), "{msg}");
}

#[test]
fn the_training_record_must_hold_finite_bounded_figures() {
    let bundled: Value =
        serde_json::from_slice(include_bytes!("../../../assets/starter/config.json")).unwrap();
    let record = bundled["training"].clone();
    for (key, value) in [
        ("learning_rate", json!(-1.0)),
        ("ema_decay", json!(1.5)),
        ("cond_dropout", json!(2.0)),
        ("object_weight", json!(-4.0)),
        ("object_weight_until", json!(3.0)),
        ("high_noise_share", json!(-0.5)),
        ("shape_weight", json!(1e39)),
        ("final_loss", json!(-0.1)),
        ("wall_time_s", json!(-5.0)),
        ("held_out", json!(vec!["red circle left"; 5000])),
        ("held_out_rule", json!("x".repeat(2000))),
    ] {
        let mut v = valid();
        v["training"] = record.clone();
        v["training"][key] = value;
        assert_refused(&v, &format!("training.{key}"));
    }
    let mut v = valid();
    v["training"] = record;
    parse(&v).unwrap();
}

#[test]
fn configs_that_are_not_json_or_not_the_starter_architecture_stay_refused() {
    let err = parse_config(b"{", Path::new(PATH)).unwrap_err();
    assert!(matches!(err, PipelineError::BadConfig { .. }), "{err}");
    let err = parse(&with("/architecture", json!("other"))).unwrap_err();
    assert!(err.to_string().contains("unknown architecture"), "{err}");
}
