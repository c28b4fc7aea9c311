//! `aivideo generate`: the job lifecycle, the MP4 and thumbnail as ffprobe sees them,
//! every validation rule, batches, concurrent writers, SIGINT and SIGKILL.

use std::path::Path;
use std::process::Stdio;

use aivideo::store::JobStatus;
use serde_json::Value;

use crate::util::{TestEnv, expect_exit, ffprobe, files_in, tiny_model, wait_for};

fn tiny(env: &TestEnv, extra: &[&str]) -> crate::util::Run {
    let model = tiny_model().to_str().unwrap();
    let mut args = vec![
        "generate", "--model", model, "--width", "256", "--height", "256",
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

fn tag<'a>(probe: &'a Value, key: &str) -> &'a str {
    probe["format"]["tags"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no tag {key}: {probe}"))
}

#[test]
fn generate_records_a_completed_job_and_writes_a_real_h264_mp4() {
    let env = TestEnv::new();
    let prompt = "a red ball moving left on a black background";
    let run = tiny(
        &env,
        &[
            prompt, "--seed", "42", "--steps", "3", "--fps", "12", "--json",
        ],
    );
    run.expect_code(0);
    let job = run.json();
    assert_eq!(job["status"], "completed");
    assert_eq!(job["prompt"], prompt);
    for key in [
        "video_id",
        "created_at",
        "started_at",
        "completed_at",
        "video_path",
        "thumbnail_path",
    ] {
        assert!(job[key].is_string(), "{key} missing: {job}");
    }
    assert!(job["processing_time"].as_f64().unwrap() > 0.0);
    let meta = &job["metadata"];
    assert_eq!(meta["seed"], 42);
    assert_eq!(meta["num_steps"], 3);
    assert_eq!(meta["quality"], "medium");
    assert_eq!(meta["device"], "cpu");
    assert_eq!(meta["model"]["name"], "aivideo-tiny-test");
    assert_eq!(meta["frames"], 16);
    for phase in [
        "text_encoding_s",
        "denoising_s",
        "resampling_s",
        "encoding_s",
        "thumbnail_s",
        "total_s",
    ] {
        assert!(
            meta["timings"][phase].as_f64().is_some(),
            "timing {phase}: {meta}"
        );
    }

    let video = Path::new(job["video_path"].as_str().unwrap());
    assert!(video.is_absolute() && video.starts_with(env.output_dir()));
    let probe = ffprobe(video);
    let s = &probe["streams"][0];
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(s["pix_fmt"], "yuv420p");
    assert_eq!(s["width"], 256);
    assert_eq!(s["height"], 256);
    assert_eq!(s["nb_read_frames"], "16");
    assert_eq!(s["r_frame_rate"], "12/1");
    assert_eq!(tag(&probe, "title"), prompt);
    assert_eq!(tag(&probe, "seed"), "42");
    assert_eq!(tag(&probe, "steps"), "3");
    assert_eq!(tag(&probe, "quality"), "medium");
    assert_eq!(tag(&probe, "model"), "aivideo-tiny-test");
    let params: Value = serde_json::from_str(tag(&probe, "comment")).unwrap();
    assert_eq!(params["seed"], 42);
    assert_eq!(params["video_id"], job["video_id"]);

    let thumb = Path::new(job["thumbnail_path"].as_str().unwrap());
    assert_eq!(thumb.extension().unwrap(), "jpg");
    let img = image::open(thumb).unwrap();
    assert_eq!((img.width(), img.height()), (256, 256));

    // The stored record says the same.
    let stored = env.store().get(job["video_id"].as_str().unwrap()).unwrap();
    assert_eq!(stored.status, JobStatus::Completed);
    assert_eq!(stored.video_path.as_deref(), job["video_path"].as_str());
}

#[test]
fn human_output_prints_the_paths_and_status_finds_the_job_by_prefix() {
    let env = TestEnv::new();
    let run = tiny(
        &env,
        &[
            "a green square growing",
            "--steps",
            "2",
            "-o",
            "clip.mp4",
            "--thumbnail-format",
            "png",
        ],
    );
    run.expect_code(0);
    let video = env.path().join("clip.mp4");
    let thumb = env.path().join("clip.png");
    assert!(
        run.stdout.contains(video.to_str().unwrap()),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(thumb.to_str().unwrap()),
        "{}",
        run.stdout
    );
    assert!(video.is_file() && thumb.is_file());
    let id = run.stdout.split_whitespace().next().unwrap();
    let status = env.run(&["status", &id[..6], "--json"]);
    status.expect_code(0);
    assert_eq!(status.json()["video_id"], id);
    assert_eq!(status.json()["status"], "completed");
}

#[test]
fn same_seed_gives_the_same_video_and_no_seed_records_the_random_one() {
    let env = TestEnv::new();
    let a = tiny(
        &env,
        &["a blue dot", "--steps", "2", "--seed", "7", "--json"],
    )
    .json();
    let b = tiny(
        &env,
        &["a blue dot", "--steps", "2", "--seed", "7", "--json"],
    )
    .json();
    let frame = |job: &Value| {
        aivideo::media::decode_frame(
            Path::new(job["video_path"].as_str().unwrap()),
            aivideo::media::FrameSelector::Index(5),
        )
        .unwrap()
    };
    assert!(
        frame(&a) == frame(&b),
        "same seed, same request: identical frames"
    );
    let c = tiny(&env, &["a blue dot", "--steps", "2", "--json"]).json();
    assert_eq!(c["metadata"]["seed_was_random"], true);
    assert!(c["metadata"]["seed"].as_u64().unwrap() <= u32::MAX as u64);
}

/// Every rule of the request, each rejected with exit 2, naming the field, creating no job
/// and writing no file.
#[test]
fn invalid_requests_are_rejected_without_a_job_or_a_file() {
    let env = TestEnv::new();
    let long = "x".repeat(1001);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["   "], "prompt"),
        (vec![&long], "prompt"),
        (vec!["ok", "--steps", "0"], "steps"),
        (vec!["ok", "--steps", "101"], "steps"),
        (vec!["ok", "--quality", "high", "--steps", "30"], "steps"),
        (vec!["ok", "--quality", "low", "--steps", "31"], "steps"),
        (vec!["ok", "--quality", "ultra"], "quality"),
        (vec!["ok", "--width", "248"], "width"),
        (vec!["ok", "--width", "260"], "width"),
        (vec!["ok", "--width", "1032"], "width"),
        (vec!["ok", "--height", "1040"], "height"),
        (vec!["ok", "--width", "1024", "--height", "256"], "size"),
        (vec!["ok", "--width", "256", "--height", "1024"], "size"),
        (vec!["ok", "--seed", "-1"], "seed"),
        (vec!["ok", "--seed", "4294967296"], "seed"),
        (vec!["ok", "--frames", "8"], "frames"),
        (vec!["ok", "--fps", "0"], "fps"),
        (vec!["ok", "--guidance", "20"], "guidance"),
    ];
    let model = tiny_model().to_str().unwrap();
    for (args, field) in cases {
        let mut full = vec!["generate", "--model", model, "--json"];
        full.extend(args.iter());
        let run = env.run(&full);
        run.expect_code(2);
        let err = run.json();
        assert_eq!(err["error_code"], "VALIDATION_ERROR", "{args:?}: {err}");
        assert_eq!(err["details"]["field"], field, "{args:?}: {err}");
        assert!(err["timestamp"].is_string() && err["error"].is_string());
        // Human form names the rule and a fix.
        let mut human = vec!["generate", "--model", model];
        human.extend(args.iter());
        let h = env.run(&human);
        h.expect_code(2);
        assert!(h.stderr.starts_with("error:"), "{}", h.stderr);
    }
    let unknown = env.run(&["generate", "ok", "--bogus"]);
    unknown.expect_code(2);
    assert_eq!(env.job_count(), 0);
    assert!(files_in(&env.output_dir()).is_empty());
}

#[test]
fn quality_high_alone_is_valid_and_uses_its_preset_steps() {
    let env = TestEnv::new();
    let run = tiny(&env, &["a pink triangle", "--quality", "high", "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["metadata"]["num_steps"], 50);
}

#[test]
fn a_prompts_file_makes_one_job_per_prompt_and_prints_json_lines() {
    let env = TestEnv::new();
    let file = env.path().join("prompts.txt");
    std::fs::write(
        &file,
        "# batch\na red ball\n\n  a blue box moving up  \n# done\na white dot\n",
    )
    .unwrap();
    let run = tiny(
        &env,
        &[
            "--prompts",
            file.to_str().unwrap(),
            "--steps",
            "2",
            "--json",
        ],
    );
    run.expect_code(0);
    let jobs: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let prompts: Vec<&str> = jobs.iter().map(|j| j["prompt"].as_str().unwrap()).collect();
    assert_eq!(
        prompts,
        ["a red ball", "a blue box moving up", "a white dot"]
    );
    assert!(jobs.iter().all(|j| j["status"] == "completed"));
    assert_eq!(env.store().list(10, 0, None).unwrap().len(), 3);

    // One bad line rejects the whole batch before any job exists.
    let env = TestEnv::new();
    std::fs::write(&file, "a red ball\n\n").unwrap();
    let bad = env.path().join("bad.txt");
    std::fs::write(&bad, format!("a red ball\n{}\n", "y".repeat(1200))).unwrap();
    tiny(&env, &["--prompts", bad.to_str().unwrap()]).expect_code(2);
    assert_eq!(env.job_count(), 0);
}

#[test]
fn prompts_from_stdin() {
    let env = TestEnv::new();
    let model = tiny_model().to_str().unwrap();
    let mut child = env
        .command()
        .args([
            "generate",
            "--model",
            model,
            "--prompts",
            "-",
            "--steps",
            "1",
            "--width",
            "256",
            "--height",
            "256",
            "--json",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a red ball\na green ball\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

#[test]
fn four_processes_writing_at_once_all_succeed() {
    let env = TestEnv::new();
    let model = tiny_model().to_str().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            env.command()
                .args([
                    "generate",
                    &format!("a yellow ball number {i}"),
                    "--model",
                    model,
                ])
                .args([
                    "--steps", "2", "--width", "256", "--height", "256", "--json",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        expect_exit(&out, 0);
    }
    let jobs = env.store().list(10, 0, None).unwrap();
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j.status == JobStatus::Completed));
}

/// Starts a long generation and waits until its job is `processing`.
pub(crate) fn start_long(env: &TestEnv) -> (std::process::Child, String) {
    let model = tiny_model().to_str().unwrap();
    let child = env
        .command()
        .args([
            "generate",
            "a slow purple box",
            "--model",
            model,
            "--steps",
            "100",
        ])
        .args(["--width", "1024", "--height", "1024", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = String::new();
    assert!(
        wait_for(60, || {
            if !env.db_path().exists() {
                return false;
            }
            match env.store().list(1, 0, Some(JobStatus::Processing)) {
                Ok(jobs) if !jobs.is_empty() => {
                    id = jobs[0].video_id.clone();
                    true
                }
                _ => false,
            }
        }),
        "the job never reached processing"
    );
    (child, id)
}

#[test]
fn sigint_cancels_the_job_removes_partial_files_and_exits_130() {
    let env = TestEnv::new();
    let (child, id) = start_long(&env);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    expect_exit(&out, 130);
    let job = env.store().get(&id).unwrap();
    assert_eq!(job.status, JobStatus::Canceled);
    assert_eq!(job.error_code.as_deref(), Some("CANCELED"));
    assert!(
        files_in(&env.output_dir()).is_empty(),
        "{:?}",
        files_in(&env.output_dir())
    );
}

#[test]
fn sigkill_leaves_a_job_that_the_next_command_marks_interrupted() {
    let env = TestEnv::new();
    let (mut child, id) = start_long(&env);
    child.kill().unwrap();
    child.wait().unwrap();
    let run = env.run(&["status", &id, "--json"]);
    run.expect_code(0);
    let job = run.json();
    assert_eq!(job["status"], "failed");
    assert_eq!(job["error_code"], "INTERRUPTED");
    assert!(
        job["error_message"]
            .as_str()
            .unwrap()
            .contains(&child.id().to_string())
    );
    let complete_looking: Vec<String> = files_in(&env.output_dir())
        .into_iter()
        .filter(|f| f.ends_with(".mp4") || f.ends_with(".jpg"))
        .collect();
    assert!(complete_looking.is_empty(), "{complete_looking:?}");
}

#[test]
fn a_model_with_a_bad_checksum_is_a_clear_error_and_creates_no_job() {
    let env = TestEnv::new();
    let dir = env.path().join("model");
    aivideo::models::starter::train::write_untrained("tiny", &dir, 1).unwrap();
    let weights = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xFF;
    std::fs::write(&weights, bytes).unwrap();
    let run = env.run(&["generate", "a red ball", "--model", dir.to_str().unwrap()]);
    assert_ne!(run.code, 0);
    run.assert_no_panic();
    assert!(run.stderr.contains("checksum mismatch"), "{}", run.stderr);
    std::fs::remove_file(&weights).unwrap();
    let run = env.run(&["generate", "a red ball", "--model", dir.to_str().unwrap()]);
    assert!(run.stderr.contains("is missing"), "{}", run.stderr);
    assert_eq!(env.job_count(), 0);
}
