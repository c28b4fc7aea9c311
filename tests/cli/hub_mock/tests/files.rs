//! Ids, regular files, ranges and LFS redirects to the CDN.

use super::*;

#[test]
fn sha1_and_git_blob_ids_match_known_values() {
    assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex(sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    // `git hash-object` of an empty file and of "hello\n".
    assert_eq!(git_blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    assert_eq!(
        git_blob_id(b"hello\n"),
        "ce013625030ba8dba906f756967f9e9ca394464a"
    );
}

#[test]
fn repo_ids_follow_the_hub_rules() {
    let r = repo();
    let config = r.file("main", "config.json").unwrap();
    assert!(config.lfs.is_none());
    assert_eq!(config.etag(), git_blob_id(br#"{"layers": 2}"#));
    let model = r.file("main", "model.safetensors").unwrap();
    let lfs = model.lfs.as_ref().expect("safetensors are LFS files");
    assert_eq!(lfs.sha256, sha256_hex(&weights()));
    assert_eq!(model.etag(), lfs.sha256);
    let pointer = format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize 5000\n",
        lfs.sha256
    );
    assert_eq!(lfs.pointer_size, pointer.len());
    assert_eq!(model.blob_id, git_blob_id(pointer.as_bytes()));

    let big = MockRepo::from_files(
        ID,
        Files::from([("big.bin".to_string(), vec![0u8; LFS_THRESHOLD + 1])]),
    );
    assert!(
        big.file("main", "big.bin").unwrap().lfs.is_some(),
        "files over 10 MB are LFS files"
    );
    let small = MockRepo::from_files(ID, Files::from([("small.bin".to_string(), vec![0u8; 10])]));
    assert!(small.file("main", "small.bin").unwrap().lfs.is_none());

    let main = r.commit("main").unwrap();
    assert_eq!(main.len(), 40);
    assert!(
        main.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        Some(main.clone()),
        repo().commit("main"),
        "commit ids are deterministic"
    );
    assert_eq!(r.commit("v1.0").as_ref(), Some(&main));
    assert_eq!(
        r.commit(&main).as_ref(),
        Some(&main),
        "a commit id resolves to itself"
    );
    let pr = r.commit("refs/pr/1").unwrap();
    assert_ne!(pr, main);
    assert_ne!(
        MockRepo::from_files("other/tiny", files())
            .commit("main")
            .unwrap(),
        main
    );
    let same = MockRepo::from_files(ID, files()).with_branch("copy", files());
    assert_eq!(same.commit("copy"), same.commit("main"));
    assert_eq!(
        r.files("refs/pr/1").unwrap()["config.json"],
        br#"{"layers": 3}"#
    );
    assert_eq!(r.refs().len(), 3);
    assert_eq!(r.id(), ID);
    assert!(r.commit("nope").is_none());
}

#[test]
fn regular_files_answer_with_etag_commit_and_length() {
    let hub = MockHub::start(vec![repo()]);
    let commit = hub.repos()[0].commit("main").unwrap();
    let url = format!("{}/{ID}/resolve/main/config.json", hub.url());
    let h = head(&url);
    assert_eq!(h.status, 200);
    assert!(h.body.is_empty(), "HEAD has no body");
    assert_eq!(h.content_length(), 13);
    assert_eq!(
        h.header("ETag"),
        Some(format!("\"{}\"", git_blob_id(br#"{"layers": 2}"#)).as_str())
    );
    assert_eq!(h.header("X-Repo-Commit"), Some(commit.as_str()));
    assert_eq!(h.header("Accept-Ranges"), Some("bytes"));
    let g = get(&url);
    assert_eq!(g.status, 200);
    assert_eq!(g.body, br#"{"layers": 2}"#);
    assert_eq!(g.header("ETag"), h.header("ETag"));

    // Percent-encoded paths, nested folders, revisions by commit id and encoded branch names.
    let spaced = get(&format!(
        "{}/{ID}/resolve/{commit}/docs/a%20b%2Bc.txt",
        hub.url()
    ));
    assert_eq!(spaced.status, 200);
    assert_eq!(spaced.body, "spaced ü\n".as_bytes());
    let nested = get(&format!(
        "{}/{ID}/resolve/v1.0/sub/dir/notes.txt",
        hub.url()
    ));
    assert_eq!(nested.body, b"hello\n");
    let pr = get(&format!(
        "{}/{ID}/resolve/refs%2Fpr%2F1/config.json",
        hub.url()
    ));
    assert_eq!(pr.body, br#"{"layers": 3}"#);
    assert_eq!(
        pr.header("X-Repo-Commit"),
        hub.repos()[0].commit("refs/pr/1").as_deref()
    );
}

#[test]
fn ranges_give_206_or_416() {
    let hub = MockHub::start(vec![repo()]);
    let url = format!("{}/{ID}/resolve/main/config.json", hub.url());
    let part = send("GET", &url, &[("Range", "bytes=2-7")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, b"layers");
    assert_eq!(part.header("Content-Range"), Some("bytes 2-7/13"));
    let tail = send("GET", &url, &[("Range", "bytes=10-")]);
    assert_eq!(
        (tail.status, tail.body.as_slice()),
        (206, b" 2}".as_slice())
    );
    let last = send("GET", &url, &[("Range", "bytes=-2")]);
    assert_eq!((last.status, last.body.as_slice()), (206, b"2}".as_slice()));
    assert_eq!(last.header("Content-Range"), Some("bytes 11-12/13"));
    let past = send("GET", &url, &[("Range", "bytes=13-")]);
    assert_eq!(past.status, 416);
    assert_eq!(past.header("Content-Range"), Some("bytes */13"));
    assert!(past.body.is_empty());
    let ignored = send("GET", &url, &[("Range", "bytes=0-1,4-5")]);
    assert_eq!((ignored.status, ignored.body.len()), (200, 13));
    let head_part = send("HEAD", &url, &[("Range", "bytes=0-3")]);
    assert_eq!((head_part.status, head_part.content_length()), (206, 4));
    assert!(head_part.body.is_empty());
}

#[test]
fn range_header_parsing() {
    use RangeRequest::*;
    assert_eq!(parse_range(None, 10), Full);
    assert_eq!(parse_range(Some("bytes=0-0"), 10), Part(0, 1));
    assert_eq!(parse_range(Some("bytes=3-100"), 10), Part(3, 10));
    assert_eq!(parse_range(Some("bytes=9-"), 10), Part(9, 10));
    assert_eq!(parse_range(Some("bytes=-20"), 10), Part(0, 10));
    assert_eq!(parse_range(Some("bytes=10-"), 10), Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=-0"), 10), Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    assert_eq!(parse_range(Some("bytes=5-2"), 10), Full);
    assert_eq!(parse_range(Some("bytes=x-2"), 10), Full);
    assert_eq!(parse_range(Some("items=0-2"), 10), Full);
}

#[test]
fn lfs_files_redirect_to_a_signed_cdn_url() {
    let hub = MockHub::start(vec![repo()]);
    let r = &hub.repos()[0];
    let model = r.file("main", "model.safetensors").unwrap();
    let sha = model.etag().to_string();
    let url = format!("{}/{ID}/resolve/main/model.safetensors", hub.url());
    let h = head(&url);
    assert_eq!(h.status, 302);
    assert!(h.body.is_empty());
    assert_eq!(
        h.header("X-Linked-Etag"),
        Some(format!("\"{sha}\"").as_str())
    );
    assert_eq!(h.header("X-Linked-Size"), Some("5000"));
    assert_eq!(h.header("X-Repo-Commit"), r.commit("main").as_deref());
    assert_eq!(
        h.header("ETag"),
        Some(format!("\"{}\"", model.blob_id).as_str())
    );
    let location = h.header("Location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/lfs/{sha}/model.safetensors?", hub.cdn_url())),
        "{location}"
    );
    assert_ne!(hub.cdn_url(), hub.url());
    let g = get(&url);
    assert_eq!(g.status, 302);
    assert_eq!(g.header("Location"), Some(location.as_str()));
    assert!(String::from_utf8_lossy(&g.body).contains(&location));

    let blob = get(&location);
    assert_eq!(blob.status, 200);
    assert_eq!(sha256_hex(&blob.body), sha);
    let cdn_etag = blob.header("ETag").unwrap();
    assert!(!cdn_etag.contains(&sha), "the CDN's ETag is not the sha256");
    assert_eq!(blob.header("Accept-Ranges"), Some("bytes"));
    let blob_head = head(&location);
    assert_eq!((blob_head.status, blob_head.content_length()), (200, 5000));
    assert!(blob_head.body.is_empty());
    let part = send("GET", &location, &[("Range", "bytes=4990-")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &weights()[4990..]);
    assert_eq!(part.header("Content-Range"), Some("bytes 4990-4999/5000"));
    assert_eq!(
        send("GET", &location, &[("Range", "bytes=5000-")]).status,
        416
    );

    let with_token = send("GET", &location, &[("Authorization", "Bearer hf_x")]);
    assert_eq!(with_token.status, 400, "S3 refuses a second auth mechanism");
    assert!(String::from_utf8_lossy(&with_token.body).contains("InvalidArgument"));
    let tampered = location.replace("signature=", "signature=0");
    assert_eq!(get(&tampered).status, 403);
    let other_path = location.replace("/model.safetensors?", "/other.safetensors?");
    assert_eq!(
        get(&other_path).status,
        403,
        "the signature covers the path"
    );
}

#[test]
fn from_dir_reads_every_file_under_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    for (path, bytes) in files() {
        let full = dir.path().join(&path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, bytes).unwrap();
    }
    std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
    let read = read_dir_files(dir.path());
    let mut expected = files();
    expected.insert(".hidden".into(), b"x".to_vec());
    assert_eq!(read, expected);
    let from_dir = MockRepo::from_dir(ID, dir.path());
    assert_eq!(
        from_dir.commit("main"),
        MockRepo::from_files(ID, expected).commit("main")
    );
}
