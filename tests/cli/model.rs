//! The starter model: real checks of the bundled weights, and model folders as untrusted
//! input (out-of-range configs, mismatched weights, requests too big for the memory).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::util::{TestEnv, files_in, tiny_model};
use aivideo::models::starter::synth::analyse::{Analysis, analyse};
use aivideo::models::starter::synth::vocab::{Background, Colour, Motion};
use aivideo::models::{Control, DeviceChoice, GenerationParams, ModelSource, VideoModel, open};

const CASES: [(&str, Colour, Background); 3] = [
    (
        "a red ball moving right on a black background",
        Colour::Red,
        Background::Black,
    ),
    (
        "a yellow square bouncing on a navy background",
        Colour::Yellow,
        Background::Navy,
    ),
    (
        "a blue triangle growing on a white background",
        Colour::Blue,
        Background::White,
    ),
];

/// Generates `prompt` at few steps with a fixed seed and analyses the frames.
fn generate(model: &dyn VideoModel, prompt: &str) -> Analysis {
    let params = GenerationParams {
        prompt: prompt.to_string(),
        negative_prompt: None,
        steps: 8,
        guidance: model.limits().guidance.default,
        seed: 1,
        width: 256,
        height: 256,
        frames: 16,
        fps: 8,
    };
    let video = model.generate(&params, &mut |_| Control::Continue).unwrap();
    analyse(&video.frames)
}

fn bundled() -> Box<dyn VideoModel> {
    open(&ModelSource::Bundled, DeviceChoice::Cpu).expect("bundled model")
}

/// Generates each case.
fn generate_cases() -> Vec<Analysis> {
    let model = bundled();
    CASES
        .iter()
        .map(|(prompt, ..)| generate(model.as_ref(), prompt))
        .collect()
}

/// For a fixed prompt and seed at few steps, the bundled model paints the requested
/// background.
#[test]
fn bundled_model_paints_the_requested_background() {
    for ((prompt, _, background), a) in CASES.iter().zip(generate_cases()) {
        assert_eq!(a.background, *background, "{prompt}: {a:?}");
    }
}

/// The full smoke test: the right object colour on the right background.
#[test]
fn bundled_model_draws_the_requested_colour_on_the_requested_background() {
    for ((prompt, colour, background), a) in CASES.iter().zip(generate_cases()) {
        assert_eq!(a.background, *background, "{prompt}: {a:?}");
        assert_eq!(a.colour, Some(*colour), "{prompt}: {a:?}");
    }
}

/// `eval --split training --json` scores the training triples and says so; the untrained
/// model keeps it fast (the scores themselves are not the point here).
#[test]
fn eval_json_reports_its_split_and_one_clip_per_training_triple() {
    let env = crate::util::TestEnv::new();
    let model = crate::util::tiny_model().to_str().unwrap();
    let run = env.run(&[
        "eval",
        "--model",
        model,
        "--split",
        "training",
        "--per-triple",
        "1",
        "--seeds",
        "1",
        "--steps",
        "1",
        "--json",
    ]);
    let v = run.expect_code(0).json();
    assert_eq!(v["split"], "training");
    let triples = aivideo::models::starter::synth::vocab::Triple::training().len();
    assert_eq!(v["clips"], triples as u64);
    for key in ["colour", "background", "shape", "motion"] {
        let x = v[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{key} = {x}");
    }
    let bad = env.run(&["eval", "--split", "test"]);
    bad.expect_code(2);
}

/// The bundled model moves the object the way the prompt says, in each of the four
/// directions (the previous weights ignored direction words entirely).
#[test]
fn bundled_model_moves_the_object_the_way_the_prompt_says() {
    let model = bundled();
    for (prompt, motion) in [
        (
            "a green circle moving left on a gray background",
            Motion::Left,
        ),
        (
            "a white square sliding right, black background",
            Motion::Right,
        ),
        (
            "the orange ball drifting up on a navy background",
            Motion::Up,
        ),
        (
            "a pink triangle moves down on a black background",
            Motion::Down,
        ),
    ] {
        let a = generate(model.as_ref(), prompt);
        assert_eq!(a.motion, Some(motion), "{prompt}: {a:?}");
    }
}

/// A copy of the tiny test model in `env`'s folder, with `edit` applied to its config.
fn edited_model(env: &TestEnv, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = env.path().join("model");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny_model().join(name), dir.join(name)).unwrap();
    }
    let path = dir.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
    dir
}

/// No job was recorded and no file was written.
fn assert_nothing_happened(env: &TestEnv) {
    let jobs = env.run(&["list", "--json"]).expect_code(0).json();
    assert_eq!(jobs, json!([]), "jobs were created");
    assert!(
        files_in(&env.output_dir()).is_empty(),
        "{:?}",
        files_in(&env.output_dir())
    );
}

fn generate_with(env: &TestEnv, model: &Path, extra: &[&str]) -> crate::util::Run {
    let mut args = vec!["generate", "a red ball", "--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    env.run(&args)
}

/// The tester's configs: each used to panic mid-generation (leaving the job `processing`),
/// exhaust memory or read a file outside the folder; each is now refused before any job.
#[test]
fn out_of_range_model_configs_are_refused_before_any_job_naming_field_and_file() {
    for (field, value) in [
        ("heads", json!(0)),
        ("frames", json!(0)),
        ("native_size", json!(0)),
        ("max_tokens", json!(0)),
        ("native_size", json!(1_000_000)),
        ("weights", json!("../x")),
    ] {
        let env = TestEnv::new();
        let dir = edited_model(&env, |c| c[field] = value.clone());
        let config = dir.join("config.json").display().to_string();

        let run = generate_with(&env, &dir, &["--json"]);
        run.expect_code(2).assert_no_panic();
        let v = run.json();
        assert_eq!(v["error_code"], "VALIDATION_ERROR", "{field} = {value}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(&format!("`{field}` is ")), "{field}: {msg}");
        assert!(msg.contains(&config), "{field}: {msg}");
        assert_eq!(v["details"]["path"], config.as_str());

        let human = generate_with(&env, &dir, &[]);
        human.expect_code(2).assert_no_panic();
        assert!(
            human.stderr.contains(&format!("`{field}`")) && human.stderr.contains(&config),
            "{}",
            human.stderr
        );
        assert_nothing_happened(&env);
    }
}

#[test]
fn weights_that_do_not_match_the_config_are_an_error_before_any_job() {
    let env = TestEnv::new();
    // The checksum still matches (the weights are untouched), but the tiny model's
    // feed-forward layers are half as wide as this config says.
    let dir = edited_model(&env, |c| c["mlp_ratio"] = json!(4));
    let run = generate_with(&env, &dir, &["--steps", "1"]);
    assert_ne!(run.code, 0);
    run.assert_no_panic();
    assert!(
        run.stderr.contains("mlp.fc1") && run.stderr.contains("config.json"),
        "{}",
        run.stderr
    );
    assert_nothing_happened(&env);
}

#[test]
fn a_request_too_big_for_the_memory_limit_is_refused_before_any_job() {
    let env = TestEnv::new();
    let model = tiny_model().to_str().unwrap();
    let args = [
        "generate",
        "a red ball",
        "--model",
        model,
        "--steps",
        "1",
        "--json",
    ];
    let out = env
        .command()
        .args(args)
        .env("AIVIDEO_MEMORY_LIMIT", "1MiB")
        .output()
        .unwrap();
    crate::util::expect_exit(&out, 2);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error_code"], "VALIDATION_ERROR");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("this request needs about"), "{msg}");
    assert!(
        msg.contains("1.0 MiB is available (AIVIDEO_MEMORY_LIMIT)"),
        "{msg}"
    );
    assert!(msg.contains("--width/--height"), "{msg}");
    let estimate = &v["details"]["estimate"];
    assert!(estimate["total"].as_u64().unwrap() > 1 << 20, "{v}");
    // 16 frames of 512×512 RGB.
    assert_eq!(estimate["output_bytes"], 16 * 512 * 512 * 3);
    assert_eq!(v["details"]["available_bytes"], 1 << 20);
    assert_nothing_happened(&env);

    // A malformed limit is refused too, naming the variable.
    let out = env
        .command()
        .args(args)
        .env("AIVIDEO_MEMORY_LIMIT", "lots")
        .output()
        .unwrap();
    crate::util::expect_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stdout).contains("AIVIDEO_MEMORY_LIMIT"));
    assert_nothing_happened(&env);

    // With room, the same request runs.
    let out = env
        .command()
        .args(args)
        .env("AIVIDEO_MEMORY_LIMIT", "64 GiB")
        .output()
        .unwrap();
    crate::util::expect_exit(&out, 0);
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["status"], "completed");
}
