//! Replays every input of the fuzz corpora (`tests/fuzz/corpus/<target>/`) through the same
//! checks as the fuzz targets, so that stable CI, which never runs the fuzzer, re-checks them
//! on every run.

use std::path::{Path, PathBuf};

use aivideo::fuzz_checks::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of `target`'s corpus; fails naming each input that panics.
fn replay(target: &str) {
    let check = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no fuzz target named {target}"));
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs fail their check:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn every_target_has_a_corpus() {
    for (target, _) in TARGETS {
        assert!(corpus_dir(target).is_dir(), "no corpus for {target}");
    }
}

#[test]
fn request_corpus() {
    replay("request");
}

#[test]
fn prompts_corpus() {
    replay("prompts");
}

#[test]
fn mp4_corpus() {
    replay("mp4");
}

#[test]
fn safetensors_header_corpus() {
    replay("safetensors_header");
}

#[test]
fn model_config_corpus() {
    replay("model_config");
}
