//! Cache tests on a cache laid out as Python's `huggingface_hub` writes it (relative links
//! from snapshots into blobs, refs holding commits).

use super::*;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// `org/name` with two snapshots: A (main) holds config.json and w.safetensors, B (tag v1)
/// shares config.json and has its own weights.
fn fixture() -> (tempfile::TempDir, HubCache, RepoId) {
    let root = tempfile::tempdir().unwrap();
    let repo = RepoId::parse("org/name").unwrap();
    let cache = HubCache::at(root.path());
    let dir = cache.repo_dir(&repo);
    std::fs::create_dir_all(dir.join("blobs")).unwrap();
    std::fs::create_dir_all(dir.join("refs")).unwrap();
    for (blob, len) in [("cfg1", 10), ("wA", 1000), ("wB", 500)] {
        std::fs::write(dir.join("blobs").join(blob), vec![0u8; len]).unwrap();
    }
    for (commit, files) in [
        (
            A,
            vec![("config.json", "cfg1"), ("sub/w.safetensors", "wA")],
        ),
        (
            B,
            vec![("config.json", "cfg1"), ("sub/w.safetensors", "wB")],
        ),
    ] {
        for (path, blob) in files {
            let link = dir.join("snapshots").join(commit).join(path);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            let depth = path.matches('/').count();
            let target = format!("{}../../blobs/{blob}", "../".repeat(depth));
            std::os::unix::fs::symlink(target, &link).unwrap();
        }
    }
    std::fs::write(dir.join("refs/main"), A).unwrap();
    std::fs::write(dir.join("refs/v1"), format!("{B}\n")).unwrap();
    (root, cache, repo)
}

#[test]
fn revisions_resolve_through_refs_or_as_commits() {
    let (_root, cache, repo) = fixture();
    let main = cache.resolve(&repo, "main").unwrap();
    assert_eq!(main.commit, A);
    assert_eq!(
        std::fs::read(main.dir.join("sub/w.safetensors"))
            .unwrap()
            .len(),
        1000
    );
    assert_eq!(cache.resolve(&repo, "v1").unwrap().commit, B);
    assert_eq!(cache.resolve(&repo, &B.to_uppercase()).unwrap().commit, B);
    for missing in ["dev", "cccccccccccccccccccccccccccccccccccccccc"] {
        let e = cache.resolve(&repo, missing).unwrap_err();
        assert!(matches!(e, HubError::NotCached { .. }), "{e}");
        assert!(e.to_string().contains("hf download org/name"), "{e}");
    }
    let other = RepoId::parse("org/other").unwrap();
    assert!(matches!(
        cache.resolve(&other, "main"),
        Err(HubError::NotCached { .. })
    ));
}

#[test]
fn list_shows_revisions_refs_and_blob_sizes() {
    let (_root, cache, _) = fixture();
    std::fs::create_dir_all(cache.root().join("datasets--x--y")).unwrap();
    std::fs::write(cache.root().join("version.txt"), "1").unwrap();
    let repos = cache.list().unwrap();
    assert_eq!(repos.len(), 1);
    let r = &repos[0];
    assert_eq!(r.repo, "org/name");
    assert_eq!(r.size_on_disk, 1510);
    let refs: Vec<(&str, Vec<String>)> = r
        .revisions
        .iter()
        .map(|v| (v.commit.as_str(), v.refs.clone()))
        .collect();
    assert_eq!(
        refs,
        vec![(A, vec!["main".to_string()]), (B, vec!["v1".to_string()])]
    );
    assert!(HubCache::at("/no/such/cache").list().unwrap().is_empty());
}

#[test]
fn removing_a_revision_keeps_shared_blobs_and_removing_all_removes_the_repo() {
    let (_root, cache, repo) = fixture();
    assert_eq!(cache.remove_revision(&repo, "v1").unwrap(), 500);
    let dir = cache.repo_dir(&repo);
    assert!(dir.join("blobs/cfg1").exists() && dir.join("blobs/wA").exists());
    assert!(!dir.join("blobs/wB").exists() && !dir.join("refs/v1").exists());
    assert_eq!(cache.resolve(&repo, "main").unwrap().commit, A);
    assert_eq!(cache.remove_revision(&repo, "main").unwrap(), 1010);
    assert!(!dir.exists());
    let (_root, cache, repo) = fixture();
    assert_eq!(cache.remove_repo(&repo).unwrap(), 1510);
    assert!(matches!(
        cache.remove_repo(&repo),
        Err(HubError::NotCached { .. })
    ));
}
