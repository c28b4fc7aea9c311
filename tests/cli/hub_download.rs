//! Downloading models from a Hub (the loopback mock in `hub_mock`): first download, a second
//! run with the server gone, `HF_HUB_OFFLINE`, resume after a dropped connection, a corrupt
//! blob, gated and unknown repositories, and two processes pulling at once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hub::generate_args;
use crate::hub_mock::{Host, MockHub, MockRepo};
use crate::util::{Run, TestEnv};

const REPO: &str = "test-org/tiny-wan";
const WEIGHTS: &str = "transformer/diffusion_pytorch_model.safetensors";

fn tiny_pipeline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wan/tiny-pipeline")
}

fn hub(repos: Vec<MockRepo>) -> MockHub {
    MockHub::start(repos)
}

fn with_hub(env: &TestEnv, hub: &MockHub) -> Command {
    let mut cmd = env.command();
    cmd.env("HF_ENDPOINT", hub.url());
    cmd
}

fn run(mut cmd: Command, args: &[&str]) -> Run {
    let out = cmd.args(args).output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Body downloads (GETs that carried file bytes) of `path`, from either host.
fn downloads(hub: &MockHub, path: &str) -> usize {
    hub.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains(path) && matches!(r.status, 200 | 206))
        .filter(|r| r.host == Host::Cdn || r.path.contains("/resolve/"))
        .count()
}

fn repo_dir(env: &TestEnv) -> PathBuf {
    env.hf_cache().join("models--test-org--tiny-wan")
}

#[test]
fn first_run_downloads_once_then_runs_with_the_server_gone_and_offline() {
    let env = TestEnv::new();
    let mock = hub(vec![MockRepo::from_dir(REPO, &tiny_pipeline())]);
    let first = run(with_hub(&env, &mock), &generate_args(REPO));
    first.expect_code(0);
    let job = first.json();
    assert_eq!(job["status"], "completed");
    let commit = job["metadata"]["model"]["hub"]["commit"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        std::fs::read_to_string(repo_dir(&env).join("refs/main")).unwrap(),
        commit
    );
    let link = repo_dir(&env).join("snapshots").join(&commit).join(WEIGHTS);
    let target = std::fs::read_link(&link).unwrap();
    assert!(
        target.starts_with("../../../blobs/"),
        "{}",
        target.display()
    );
    assert_eq!(downloads(&mock, WEIGHTS), 1);
    // The Hub never got the token-less CDN a token, and nothing else than the pipeline.
    assert!(
        mock.requests()
            .iter()
            .all(|r| r.host == Host::Hub || r.authorization.is_none())
    );
    assert_eq!(mock.count("GET", "spiece.model"), 0);

    // Again: the Hub is asked for the commit, nothing is downloaded.
    mock.clear_requests();
    run(with_hub(&env, &mock), &generate_args(REPO)).expect_code(0);
    assert_eq!(downloads(&mock, WEIGHTS), 0);
    assert_eq!(downloads(&mock, "config.json"), 0);

    // Offline: no request at all.
    mock.clear_requests();
    let mut cmd = with_hub(&env, &mock);
    cmd.env("HF_HUB_OFFLINE", "1");
    run(cmd, &generate_args(REPO)).expect_code(0);
    assert!(mock.requests().is_empty(), "{:?}", mock.requests());

    // The server gone: the cached snapshot is used, with a warning.
    let url = mock.url();
    mock.stop();
    let mut cmd = env.command();
    cmd.env("HF_ENDPOINT", &url);
    let gone = run(cmd, &generate_args(REPO));
    gone.expect_code(0);
    assert!(gone.stderr.contains("cached copy"), "{}", gone.stderr);
}

#[test]
fn a_dropped_connection_is_resumed_where_it_stopped() {
    let env = TestEnv::new();
    let mock = hub(vec![MockRepo::from_dir(REPO, &tiny_pipeline())]);
    let size = std::fs::metadata(tiny_pipeline().join(WEIGHTS))
        .unwrap()
        .len();
    mock.drop_after(WEIGHTS, size / 3);
    let first = run(with_hub(&env, &mock), &["models", "pull", REPO, "--json"]);
    assert_ne!(first.code, 0);
    let err = first.json();
    assert!(err["error"].as_str().unwrap().contains("resume"), "{err}");
    let partial: Vec<_> = std::fs::read_dir(repo_dir(&env).join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert_eq!(partial.len(), 1, "{partial:?}");
    assert_eq!(std::fs::metadata(&partial[0]).unwrap().len(), size / 3);

    mock.clear_requests();
    let second = run(with_hub(&env, &mock), &["models", "pull", REPO, "--json"]);
    second.expect_code(0);
    let ranges: Vec<Option<String>> = mock
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains(WEIGHTS))
        .map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges, vec![Some(format!("bytes={}-", size / 3))]);
    // The rest of the weights, and the VAE files the first run never reached (files go in
    // order).
    let vae: u64 = ["vae/config.json", "vae/diffusion_pytorch_model.safetensors"]
        .iter()
        .map(|f| std::fs::metadata(tiny_pipeline().join(f)).unwrap().len())
        .sum();
    assert_eq!(second.json()["downloaded_bytes"], size - size / 3 + vae);
    assert!(!partial[0].exists());
    // The resumed file is whole: a generation from it matches the folder's.
    run(with_hub(&env, &mock), &generate_args(REPO)).expect_code(0);
}

#[test]
fn a_blob_that_does_not_match_its_sha256_is_never_used() {
    let env = TestEnv::new();
    let mock = hub(vec![MockRepo::from_dir(REPO, &tiny_pipeline())]);
    mock.corrupt(WEIGHTS);
    let r = run(with_hub(&env, &mock), &["models", "pull", REPO]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("SHA-256"), "{}", r.stderr);
    let blobs: Vec<String> = std::fs::read_dir(repo_dir(&env).join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let weights = std::fs::read(tiny_pipeline().join(WEIGHTS)).unwrap();
    let sha: String = <sha2::Sha256 as sha2::Digest>::digest(&weights)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(blobs.iter().all(|b| !b.starts_with(&sha)), "{blobs:?}");
    // No job for a model that could not be got.
    let g = run(with_hub(&env, &mock), &generate_args(REPO));
    assert_ne!(g.code, 0);
    assert_eq!(env.job_count(), 0);
    mock.clear_faults();
    run(with_hub(&env, &mock), &["models", "pull", REPO]).expect_code(0);
}

#[test]
fn gated_and_unknown_repositories_say_what_to_do() {
    let env = TestEnv::new();
    let gated = MockRepo::from_dir("test-org/gated-wan", &tiny_pipeline()).gated("secret");
    let mock = hub(vec![MockRepo::from_dir(REPO, &tiny_pipeline()), gated]);
    let r = run(
        with_hub(&env, &mock),
        &["models", "pull", "test-org/gated-wan", "--json"],
    );
    r.expect_code(2);
    let msg = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("HF_TOKEN") && msg.contains("/test-org/gated-wan"),
        "{msg}"
    );
    let mut cmd = with_hub(&env, &mock);
    cmd.env("HF_TOKEN", "secret");
    run(cmd, &["models", "pull", "test-org/gated-wan"]).expect_code(0);

    let r = run(
        with_hub(&env, &mock),
        &["models", "pull", "test-org/no-such-model", "--json"],
    );
    r.expect_code(2);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no repository"),
        "{}",
        r.stdout
    );
    let r = run(
        with_hub(&env, &mock),
        &["models", "pull", &format!("{REPO}@nope"), "--json"],
    );
    r.expect_code(2);
    assert!(
        r.json()["error"].as_str().unwrap().contains("no revision"),
        "{}",
        r.stdout
    );
}

#[test]
fn two_processes_pulling_at_once_download_each_blob_once() {
    let env = TestEnv::new();
    let mock = hub(vec![MockRepo::from_dir(REPO, &tiny_pipeline())]);
    mock.throttle(2_000_000);
    let children: Vec<_> = (0..2)
        .map(|_| {
            with_hub(&env, &mock)
                .args(["models", "pull", REPO, "--json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut downloaded = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        downloaded += v["downloaded_bytes"].as_u64().unwrap();
    }
    assert_eq!(downloads(&mock, WEIGHTS), 1);
    let total: u64 = [
        "text_encoder/model.safetensors",
        WEIGHTS,
        "vae/diffusion_pytorch_model.safetensors",
    ]
    .iter()
    .map(|f| std::fs::metadata(tiny_pipeline().join(f)).unwrap().len())
    .sum();
    assert!(downloaded >= total, "{downloaded} < {total}");
    assert!(
        downloaded < 2 * total,
        "blobs were downloaded twice: {downloaded}"
    );
}

#[test]
fn a_full_disk_stops_the_download_with_a_resumable_partial_file() {
    let Some(fs) = crate::faults::Tmpfs::mount(1 << 20) else {
        return;
    };
    let env = TestEnv::new();
    let mock = hub(vec![MockRepo::from_dir(REPO, &tiny_pipeline())]);
    let mut cmd = with_hub(&env, &mock);
    cmd.env("HF_HUB_CACHE", fs.path());
    let r = run(cmd, &["models", "pull", REPO]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("cannot write to the Hugging Face cache")
            && r.stderr.contains("No space left on device"),
        "{}",
        r.stderr
    );
    let blobs = fs.path().join("models--test-org--tiny-wan/blobs");
    let partial: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert_eq!(partial.len(), 1, "{partial:?}");
    let kept = std::fs::metadata(&partial[0]).unwrap().len();
    assert!(kept > 0);

    // Room again: the same command resumes from the partial file.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(fs.path())
        .status()
        .unwrap();
    assert!(grown.success());
    mock.clear_requests();
    let mut cmd = with_hub(&env, &mock);
    cmd.env("HF_HUB_CACHE", fs.path());
    run(cmd, &["models", "pull", REPO]).expect_code(0);
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.range.as_deref() == Some(&format!("bytes={kept}-"))),
        "{:?}",
        mock.requests()
    );
}

/// Copies the cache Python's huggingface_hub wrote against the mock (tests/reference) into
/// `dest`, keeping its links.
fn python_cache(dest: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hub/python-cache");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(dest)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_cache_written_by_python_is_used_as_it_is() {
    let env = TestEnv::new();
    python_cache(&env.hf_cache());
    let main = std::fs::read_to_string(repo_dir(&env).join("refs/main")).unwrap();
    // Offline: nothing but the cache.
    let mut cmd = env.command();
    cmd.env("HF_HUB_OFFLINE", "1");
    let r = run(cmd, &generate_args(REPO));
    r.expect_code(0);
    assert_eq!(r.json()["metadata"]["model"]["hub"]["commit"], main.trim());
    // Online, against the Hub it came from: the commit is asked for, no file is downloaded.
    let mock = hub(vec![MockRepo::from_dir(REPO, &tiny_pipeline())]);
    run(with_hub(&env, &mock), &generate_args(REPO)).expect_code(0);
    assert_eq!(downloads(&mock, ".safetensors"), 0, "{:?}", mock.requests());
    assert_eq!(downloads(&mock, ".json"), 0, "{:?}", mock.requests());
    // Its tag resolves too, and `models list` sees every revision Python fetched.
    let mut cmd = env.command();
    cmd.env("HF_HUB_OFFLINE", "1");
    run(cmd, &["models", "info", &format!("{REPO}@v1.0")]).expect_code(0);
    let list = env.run(&["models", "list", "--json"]);
    let revs = list.json()["cache"]["repos"][0]["revisions"]
        .as_array()
        .unwrap()
        .len();
    assert!(revs >= 2, "{}", list.stdout);
}
