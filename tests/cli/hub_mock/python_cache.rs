//! The cache Python's huggingface_hub 2.4 wrote from the mock (`tests/data/hub/python-cache/`,
//! made by `tests/reference/make_hub_cache.py`) has the layout a Hub client must read as it is,
//! and agrees with the ids the mock gives the same files:
//!
//! ```text
//! python-cache/CACHEDIR.TAG
//! python-cache/models--test-org--tiny-wan/
//!   refs/{main,v1.0,euler}            the commit id, 40 hex, no newline
//!   blobs/<etag>                      git blob id (regular files) or sha256 (LFS files)
//!   snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag> (one more ../ per folder)
//!   trees/<commit>.json               huggingface_hub's tree listing of a snapshot_download
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::sha1::hex;
use super::{Files, MockHub, MockRepo, git_blob_id, read_dir_files};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const REPO_ID: &str = "test-org/tiny-wan";
const SCHEDULER: &str = "scheduler/scheduler_config.json";

fn cache() -> PathBuf {
    Path::new(DATA).join("hub/python-cache")
}

fn storage() -> PathBuf {
    cache().join("models--test-org--tiny-wan")
}

fn pipeline() -> PathBuf {
    Path::new(DATA).join("wan/tiny-pipeline")
}

fn euler_config() -> Vec<u8> {
    std::fs::read(Path::new(DATA).join("wan/schedulers/euler/scheduler_config.json")).unwrap()
}

/// The repo make_hub_cache.py served: main, branch euler, tag v1.0.
fn mock_repo() -> MockRepo {
    let mut euler: Files = read_dir_files(&pipeline());
    euler.insert(SCHEDULER.to_string(), euler_config());
    MockRepo::from_dir(REPO_ID, &pipeline())
        .with_branch("euler", euler)
        .with_tag("v1.0", "main")
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn read_ref(name: &str) -> String {
    let text = std::fs::read_to_string(storage().join("refs").join(name)).unwrap();
    assert_eq!(text.len(), 40, "refs/{name} is a bare commit id: {text:?}");
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    text
}

/// Files under a snapshot (`/`-separated paths), without following its symlinks.
fn snapshot_entries(snapshot: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(snapshot, snapshot, &mut out);
    out.sort();
    out
}

#[test]
fn python_cache_refs_name_the_mock_commits() {
    let repo = mock_repo();
    assert_eq!(
        names(&cache()),
        BTreeSet::from(["CACHEDIR.TAG".into(), "models--test-org--tiny-wan".into()])
    );
    assert_eq!(
        names(&storage()),
        BTreeSet::from(["blobs", "refs", "snapshots", "trees"].map(String::from)),
        "no .locks or .no_exist"
    );
    assert_eq!(
        names(&storage().join("refs")),
        BTreeSet::from(["euler", "main", "v1.0"].map(String::from))
    );
    let main = read_ref("main");
    assert_eq!(
        Some(&main),
        repo.commit("main").as_ref(),
        "the mock gives the same commit id"
    );
    assert_eq!(read_ref("v1.0"), main, "a tag is a ref like a branch");
    let euler = read_ref("euler");
    assert_eq!(Some(&euler), repo.commit("euler").as_ref());
    assert_eq!(
        names(&storage().join("snapshots")),
        BTreeSet::from([main, euler])
    );
}

#[test]
fn python_snapshots_are_relative_symlinks_to_blobs_named_by_etag() {
    let repo = mock_repo();
    let mut used = BTreeSet::new();
    for (rev, expected) in [
        ("main", read_dir_files(&pipeline())),
        (
            "euler",
            Files::from([(SCHEDULER.to_string(), euler_config())]),
        ),
    ] {
        let snapshot = storage().join("snapshots").join(read_ref(rev));
        let entries = snapshot_entries(&snapshot);
        assert_eq!(
            entries,
            expected.keys().cloned().collect::<Vec<_>>(),
            "files of {rev}"
        );
        for path in entries {
            let link = snapshot.join(&path);
            assert!(
                std::fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{path} is a symlink"
            );
            let target = std::fs::read_link(&link).unwrap();
            let blob = repo.file(rev, &path).unwrap().etag().to_string();
            let ups = "../".repeat(path.matches('/').count() + 2);
            assert_eq!(
                target,
                Path::new(&format!("{ups}blobs/{blob}")),
                "{rev}:{path}"
            );
            let bytes = std::fs::read(&link).unwrap();
            assert_eq!(
                bytes, expected[&path],
                "{rev}:{path} content through the link"
            );
            if path.ends_with(".safetensors") {
                assert_eq!(
                    hex(Sha256::digest(&bytes)),
                    blob,
                    "LFS blobs are named by sha256"
                );
            } else {
                assert_eq!(
                    git_blob_id(&bytes),
                    blob,
                    "regular blobs are named by git blob id"
                );
            }
            used.insert(blob);
        }
    }
    assert_eq!(
        names(&storage().join("blobs")),
        used,
        "every blob belongs to a snapshot"
    );
    assert_eq!(
        used.len(),
        11,
        "10 files of main and euler's scheduler config"
    );
}

#[test]
fn python_tree_cache_lists_the_main_commit() {
    let repo = mock_repo();
    let main = read_ref("main");
    assert_eq!(
        names(&storage().join("trees")),
        BTreeSet::from([format!("{main}.json")]),
        "only snapshot_download writes one"
    );
    let text =
        std::fs::read_to_string(storage().join("trees").join(format!("{main}.json"))).unwrap();
    let tree: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(tree["format_version"], 1);
    let files = tree["files"].as_object().unwrap();
    assert_eq!(files.len(), 10);
    for (path, entry) in files {
        let file = repo.file("main", path).unwrap();
        assert_eq!(entry["size"], file.size(), "{path}");
        assert_eq!(entry["blob_id"], file.blob_id.as_str(), "{path}");
        match &file.lfs {
            Some(lfs) => {
                assert_eq!(entry["lfs_sha256"], lfs.sha256.as_str());
                assert_eq!(entry["lfs_size"], file.size());
            }
            None => assert!(entry.get("lfs_sha256").is_none()),
        }
    }
}

#[test]
fn python_requests_match_what_the_mock_answers_now() {
    let text = std::fs::read_to_string(Path::new(DATA).join("hub/python-requests.json")).unwrap();
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["huggingface_hub"], "2.4.0");
    let hub = MockHub::start(vec![mock_repo()]);
    let repo = &hub.repos()[0];
    let main = repo.commit("main").unwrap();
    assert_eq!(record["revisions"][REPO_ID]["main"], main.as_str());
    assert_eq!(
        record["revisions"][REPO_ID]["euler"],
        repo.commit("euler").unwrap().as_str()
    );

    // Step 1, the first snapshot_download: info, tree, then HEAD (+ GET, or the CDN's GET).
    let first = record["steps"][0]["requests"].as_array().unwrap();
    let line = |r: &Value| {
        format!(
            "{} {} {}",
            r["host"].as_str().unwrap(),
            r["method"].as_str().unwrap(),
            r["path"].as_str().unwrap()
        )
    };
    assert_eq!(
        line(&first[0]),
        format!("hub GET /api/models/{REPO_ID}/revision/main")
    );
    assert_eq!(
        line(&first[1]),
        format!("hub GET /api/models/{REPO_ID}/tree/{main}?recursive=true&expand=false")
    );
    let mut expected = Vec::new();
    for (path, file) in &repo.resolve("main").unwrap().files {
        let resolve = format!("/{REPO_ID}/resolve/{main}/{path}");
        expected.push(format!("hub HEAD {resolve}"));
        if file.lfs.is_some() {
            // The CDN URL the mock gives today must be the one Python was sent to.
            let reply = super::tests::send("HEAD", &format!("{}{resolve}", hub.url()), &[]);
            let location = reply.header("Location").unwrap();
            expected.push(format!(
                "cdn GET {}",
                location.strip_prefix(&hub.cdn_url()).unwrap()
            ));
        } else {
            expected.push(format!("hub GET {resolve}"));
        }
    }
    let files: Vec<String> = first[2..].iter().map(line).collect();
    assert_eq!(
        files, expected,
        "regenerate tests/data/hub if the mock changed"
    );
    assert!(first.iter().all(|r| r["authorization"] == false));
}
