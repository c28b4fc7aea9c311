//! Models from the Hugging Face cache, with no network: `--model org/name[@revision]` and
//! aliases resolve through a cache laid out as Python's `huggingface_hub` lays it out (blobs
//! named by their hash, snapshots of relative links, refs holding commits); `models
//! list|info|rm`; provenance in the job and the MP4.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::util::{TestEnv, ffprobe};

const REPO: &str = "test-org/tiny-wan";

fn tiny_pipeline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wan/tiny-pipeline")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Files under `dir`, relative, sorted.
fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, base, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().to_path_buf());
        }
    }
    out.sort();
}

/// Puts `src`'s files into `cache` as snapshot `commit` of `repo`, the way huggingface_hub
/// stores a download: LFS files (`*.safetensors`) as blobs named by their SHA-256, others by
/// the git blob SHA-1 of their content; relative links; `refs/<name>` for each ref.
fn add_snapshot(cache: &Path, repo: &str, commit: &str, refs: &[&str], src: &Path) {
    let dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    let mut files = Vec::new();
    walk(src, src, &mut files);
    for rel in files {
        let bytes = std::fs::read(src.join(&rel)).unwrap();
        let blob = if rel.extension().is_some_and(|e| e == "safetensors") {
            hex(&Sha256::digest(&bytes))
        } else {
            let mut h = sha1_smol::Sha1::new();
            h.update(format!("blob {}\0", bytes.len()).as_bytes());
            h.update(&bytes);
            h.digest().to_string()
        };
        std::fs::write(dir.join("blobs").join(&blob), &bytes).unwrap();
        let link = dir.join("snapshots").join(commit).join(&rel);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        let up = "../".repeat(rel.components().count() + 1);
        std::os::unix::fs::symlink(format!("{up}blobs/{blob}"), &link).unwrap();
    }
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    for r in refs {
        std::fs::write(dir.join("refs").join(r), commit).unwrap();
    }
}

const C1: &str = "1111111111111111111111111111111111111111";
const C2: &str = "2222222222222222222222222222222222222222";

/// A small, seeded generation with a Wan model, JSON on stdout.
pub(crate) fn generate_args(model: &str) -> Vec<&str> {
    vec![
        "generate",
        "a red fox",
        "--model",
        model,
        "--steps",
        "2",
        "--frames",
        "5",
        "--width",
        "256",
        "--height",
        "256",
        "--seed",
        "7",
        "--json",
    ]
}

fn generate(env: &TestEnv, model: &str, out: &str) -> crate::util::Run {
    let mut args = generate_args(model);
    args.extend(["-o", out]);
    env.run(&args)
}

#[test]
fn a_cached_repository_runs_offline_and_the_video_says_which_commit_made_it() {
    let env = TestEnv::new();
    add_snapshot(&env.hf_cache(), REPO, C1, &["main"], &tiny_pipeline());
    let run = generate(&env, REPO, "a.mp4");
    run.expect_code(0);
    let job = run.json();
    let hub = &job["metadata"]["model"]["hub"];
    assert_eq!(hub["repo"], REPO);
    assert_eq!(hub["revision"], "main");
    assert_eq!(hub["commit"], C1);
    let weights =
        std::fs::read(tiny_pipeline().join("transformer/diffusion_pytorch_model.safetensors"))
            .unwrap();
    assert_eq!(
        hub["files_sha256"]["transformer/diffusion_pytorch_model.safetensors"],
        hex(&Sha256::digest(&weights))
    );
    assert_eq!(job["metadata"]["model"]["source"], format!("{REPO}@{C1}"));
    let tags = &ffprobe(&env.path().join("a.mp4"))["format"]["tags"];
    assert_eq!(tags["model_repo"], REPO);
    assert_eq!(tags["model_commit"], C1);

    // The same picture as from the folder itself.
    let direct = generate(&env, tiny_pipeline().to_str().unwrap(), "b.mp4");
    direct.expect_code(0);
    let pixels = |f: &str| image::open(env.path().join(f)).unwrap().to_rgb8();
    assert!(
        pixels("a.jpg") == pixels("b.jpg"),
        "the cached snapshot made another video"
    );
}

#[test]
fn revisions_resolve_by_ref_and_by_commit() {
    let env = TestEnv::new();
    add_snapshot(&env.hf_cache(), REPO, C1, &["main"], &tiny_pipeline());
    add_snapshot(&env.hf_cache(), REPO, C2, &["v2"], &tiny_pipeline());
    for (model, commit) in [
        (format!("{REPO}@v2"), C2),
        (format!("{REPO}@{C1}"), C1),
        (REPO.to_string(), C1),
    ] {
        let run = env.run(&["models", "info", &model, "--json"]);
        run.expect_code(0);
        assert_eq!(run.json()["hub"]["commit"], commit, "{model}");
    }
}

#[test]
fn a_model_that_is_not_cached_is_a_clear_error_before_any_job() {
    let env = TestEnv::new();
    // Offline, and with a Hub that cannot be reached (nothing listens on port 9).
    for (var, value) in [
        ("HF_HUB_OFFLINE", "1"),
        ("HF_ENDPOINT", "http://127.0.0.1:9"),
    ] {
        for model in ["wan2.1-t2v-1.3b", "some-org/some-model@dev"] {
            let out = env
                .command()
                .env(var, value)
                .args(["generate", "a red fox", "--model", model, "--json"])
                .output()
                .unwrap();
            assert_ne!(out.status.code(), Some(0));
            let err: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let msg = err["error"].as_str().unwrap();
            assert!(
                msg.contains("is not in the Hugging Face cache") && msg.contains("models pull"),
                "{msg}"
            );
            assert!(msg.contains("hf-cache"), "{msg}");
        }
    }
    let run = env.run(&["generate", "a red fox", "--model", "nonsense", "--json"]);
    run.expect_code(2);
    assert!(
        run.json()["error"]
            .as_str()
            .unwrap()
            .contains("wan2.1-t2v-1.3b")
    );
    assert_eq!(env.job_count(), 0);
}

#[test]
fn models_list_shows_the_aliases_and_complete_and_incomplete_revisions() {
    let env = TestEnv::new();
    add_snapshot(&env.hf_cache(), REPO, C1, &["main"], &tiny_pipeline());
    // A second revision with a weights file missing (an interrupted download).
    add_snapshot(&env.hf_cache(), REPO, C2, &["v2"], &tiny_pipeline());
    let broken = env.hf_cache().join(format!(
        "models--test-org--tiny-wan/snapshots/{C2}/vae/diffusion_pytorch_model.safetensors"
    ));
    std::fs::remove_file(broken).unwrap();

    let run = env.run(&["models", "list", "--json"]);
    run.expect_code(0);
    let v = run.json();
    assert!(
        v["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "wan2.1-t2v-1.3b")
    );
    let repos = v["cache"]["repos"].as_array().unwrap();
    assert_eq!(repos.len(), 1);
    assert_eq!(repos[0]["repo"], REPO);
    assert!(repos[0]["size_on_disk"].as_u64().unwrap() > 1_000_000);
    let revs = repos[0]["revisions"].as_array().unwrap();
    assert_eq!(
        (revs[0]["commit"].as_str(), revs[0]["complete"].as_bool()),
        (Some(C1), Some(true))
    );
    assert_eq!(revs[0]["refs"][0], "main");
    assert_eq!(revs[1]["complete"], false);
    assert!(
        revs[1]["problem"].as_str().unwrap().contains("vae"),
        "{}",
        revs[1]
    );

    let human = env.run(&["models", "list"]);
    human.expect_code(0);
    assert!(
        human.stdout.contains(REPO) && human.stdout.contains("incomplete"),
        "{}",
        human.stdout
    );
}

#[test]
fn models_info_reads_only_metadata() {
    let env = TestEnv::new();
    add_snapshot(&env.hf_cache(), REPO, C1, &["main"], &tiny_pipeline());
    // Weights that are not even safetensors: info must not read them.
    let snap = env
        .hf_cache()
        .join(format!("models--test-org--tiny-wan/snapshots/{C1}"));
    let w = snap.join("transformer/diffusion_pytorch_model.safetensors");
    let target = std::fs::canonicalize(&w).unwrap();
    let len = std::fs::metadata(&target).unwrap().len();
    std::fs::write(&target, vec![0u8; len as usize]).unwrap();
    let run = env.run(&["models", "info", REPO, "--json"]);
    run.expect_code(0);
    let v = run.json();
    assert_eq!(v["family"], "wan");
    assert_eq!(v["limits"]["frame_step"], 4);
    assert!(
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "transformer/diffusion_pytorch_model.safetensors")
    );
    let human = env.run(&["models", "info", "bundled"]);
    human.expect_code(0);
    assert!(human.stdout.contains("starter"), "{}", human.stdout);
}

#[test]
fn models_rm_deletes_a_revision_keeping_shared_blobs_then_the_repository() {
    let env = TestEnv::new();
    add_snapshot(&env.hf_cache(), REPO, C1, &["main"], &tiny_pipeline());
    add_snapshot(&env.hf_cache(), REPO, C2, &["v2"], &tiny_pipeline());
    let dir = env.hf_cache().join("models--test-org--tiny-wan");
    let run = env.run(&["models", "rm", &format!("{REPO}@v2"), "--json"]);
    run.expect_code(0);
    // Both snapshots link the same blobs: nothing was freed but the links.
    assert_eq!(run.json()["freed_bytes"], 0);
    assert!(!dir.join("snapshots").join(C2).exists() && !dir.join("refs/v2").exists());
    env.run(&["models", "info", REPO]).expect_code(0);
    let run = env.run(&["models", "rm", REPO, "--json"]);
    run.expect_code(0);
    assert!(run.json()["freed_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(!dir.exists());
    env.run(&["models", "rm", REPO]).expect_code(3);
    let run = env.run(&["models", "rm", tiny_pipeline().to_str().unwrap()]);
    run.expect_code(2);
    assert!(tiny_pipeline().join("model_index.json").exists());
}

#[test]
fn the_cache_is_found_where_python_looks() {
    let env = TestEnv::new();
    let home = env.path().join("hf-home");
    add_snapshot(&home.join("hub"), REPO, C1, &["main"], &tiny_pipeline());
    let out = env
        .command()
        .env_remove("HF_HUB_CACHE")
        .env("HF_HOME", &home)
        .args(["models", "info", REPO, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xdg = env.path().join("xdg");
    add_snapshot(
        &xdg.join("huggingface/hub"),
        REPO,
        C2,
        &["main"],
        &tiny_pipeline(),
    );
    let out = env
        .command()
        .env_remove("HF_HUB_CACHE")
        .env("XDG_CACHE_HOME", &xdg)
        .args(["models", "info", REPO, "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hub"]["commit"], C2);
}
