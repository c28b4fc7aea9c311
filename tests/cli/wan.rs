//! The Wan family end to end: the tiny random-weight `WanPipeline` in `tests/data/wan`
//! generates the frames diffusers generated for it, and `status` reads no weights.

use std::path::{Path, PathBuf};

use crate::util::{TestEnv, ffprobe};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wan/tiny-pipeline")
}

fn reference(name: &str) -> candle_core::Tensor {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wan/reference/pipeline.safetensors");
    let mut all = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    all.remove(name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

/// The prompt and settings `tests/reference/make_fixtures.py` ran diffusers with.
const PROMPT: &str = "A cat and a dog baking a cake together in a kitchen.";

/// Copies `from` into `to` recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Compares PNG frames with diffusers' 8-bit frames: equal except for rare one-level
/// differences (rounding of values that land near a half level).
fn assert_frames_match(dir: &Path, expected: &candle_core::Tensor) {
    let (t, h, w, c) = expected.dims4().unwrap();
    assert_eq!(c, 3);
    let want: Vec<u8> = expected.flatten_all().unwrap().to_vec1().unwrap();
    let (mut off_by_one, mut worse) = (0usize, 0usize);
    for i in 0..t {
        let path = dir.join(format!("frame_{:04}.png", i + 1));
        let img = image::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .into_rgb8();
        assert_eq!(img.dimensions(), (w as u32, h as u32));
        let got = img.as_raw();
        let frame = &want[i * h * w * 3..(i + 1) * h * w * 3];
        for (a, b) in got.iter().zip(frame) {
            match a.abs_diff(*b) {
                0 => {}
                1 => off_by_one += 1,
                _ => worse += 1,
            }
        }
    }
    assert!(!dir.join(format!("frame_{:04}.png", t + 1)).exists());
    let total = t * h * w * 3;
    assert_eq!(worse, 0, "values more than one level off (of {total})");
    assert!(
        off_by_one * 1000 <= total,
        "{off_by_one} of {total} values one level off"
    );
}

/// `generate` with `model` at the reference run's settings (256×256, 5 frames, 2 steps),
/// then `extra` arguments.
fn generate_small(env: &TestEnv, model: &Path, extra: &[&str]) -> crate::util::Run {
    let mut args = vec![
        "generate",
        PROMPT,
        "--model",
        model.to_str().unwrap(),
        "--width",
        "256",
        "--height",
        "256",
        "--frames",
        "5",
        "--steps",
        "2",
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

#[test]
fn the_tiny_wan_pipeline_gives_diffusers_frames_for_the_same_seed() {
    let env = TestEnv::new();
    let frames = env.path().join("frames");
    let run = generate_small(
        &env,
        &tiny(),
        &[
            "--seed",
            "7",
            "--save-frames",
            frames.to_str().unwrap(),
            "--json",
        ],
    );
    run.expect_code(0);
    let job = run.json();
    assert_eq!(job["status"], "completed");
    let meta = &job["metadata"];
    assert_eq!(meta["guidance"], 5.0, "Wan's default guidance");
    assert_eq!(meta["model"]["kind"], "WanPipeline");
    assert!(meta["timings"]["vae_decoding_s"].as_f64().unwrap() > 0.0);
    assert_frames_match(&frames, &reference("unipc_frames_u8"));

    let probe = ffprobe(Path::new(job["video_path"].as_str().unwrap()));
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "h264");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(256), Some(256))
    );
    assert_eq!(stream["nb_read_frames"], "5");
    assert_eq!(stream["r_frame_rate"], "16/1", "Wan's default fps");

    // The same folder again: the frames are never replaced.
    let again = generate_small(&env, &tiny(), &["--save-frames", frames.to_str().unwrap()]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("already holds frames"),
        "{}",
        again.stderr
    );
}

#[test]
fn the_euler_scheduler_gives_diffusers_frames_too() {
    let env = TestEnv::new();
    let model = env.path().join("tiny-euler");
    copy_dir(&tiny(), &model);
    let euler = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/wan/schedulers/euler/scheduler_config.json");
    std::fs::copy(euler, model.join("scheduler/scheduler_config.json")).unwrap();
    let index = model.join("model_index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replace("UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"),
    )
    .unwrap();
    let frames = env.path().join("frames");
    generate_small(
        &env,
        &model,
        &["--seed", "7", "--save-frames", frames.to_str().unwrap()],
    )
    .expect_code(0);
    assert_frames_match(&frames, &reference("euler_frames_u8"));
}

#[test]
fn status_of_a_wan_folder_reads_no_weights() {
    let env = TestEnv::new();
    let model = env.path().join("model");
    copy_dir(&tiny(), &model);
    // Weights of the right size and no content: anything that read them would fail.
    for w in [
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    ] {
        let path = model.join(w);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::write(&path, vec![0u8; len as usize]).unwrap();
    }
    let run = env
        .command()
        .env("AIVIDEO_MODEL", &model)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let m = &v["model"];
    assert_eq!(m["family"], "wan");
    assert_eq!(m["kind"], "WanPipeline");
    assert_eq!(m["limits"]["frame_step"], 4);
    assert_eq!(m["limits"]["size_multiple"], 16);
    assert!(m["bytes"].as_u64().unwrap() > 2_000_000);

    // Generating with those weights is a clear error before any job exists.
    let run = generate_small(&env, &model, &[]);
    assert_ne!(run.code, 0);
    run.assert_no_panic();
    assert!(run.stderr.contains("safetensors"), "{}", run.stderr);
    assert_eq!(env.job_count(), 0);
}

#[test]
fn wan_requests_are_checked_against_the_pipeline_before_loading_it() {
    let env = TestEnv::new();
    let run = env.run(&[
        "generate",
        "a fox",
        "--model",
        tiny().to_str().unwrap(),
        "--frames",
        "6",
        "--json",
    ]);
    run.expect_code(2);
    let v = run.json();
    assert_eq!(v["error_code"], "VALIDATION_ERROR");
    assert_eq!(v["details"]["field"], "frames");
    assert_eq!(v["details"]["fix"], "use --frames 5 or --frames 9");
    let run = env.run(&[
        "generate",
        "a fox",
        "--model",
        tiny().to_str().unwrap(),
        "--width",
        "264",
    ]);
    run.expect_code(2);
    assert!(run.stderr.contains("divisible by 16"), "{}", run.stderr);
}
