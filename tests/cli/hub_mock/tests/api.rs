//! The API (repo info, tree pages), error codes and access rules.

use super::*;

fn paths(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn api_describes_revisions() {
    let hub = MockHub::start(vec![repo()]);
    let r = &hub.repos()[0];
    let main = r.commit("main").unwrap();
    let info = get(&format!("{}/api/models/{ID}", hub.url()));
    assert_eq!(info.status, 200);
    let v = info.json();
    assert_eq!(v["id"], ID);
    assert_eq!(v["sha"], main.as_str());
    assert_eq!(v["private"], false);
    assert_eq!(v["gated"], false);
    assert!(v["lastModified"].is_string());
    let names: Vec<&str> = v["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config.json",
            "docs/a b+c.txt",
            "model.safetensors",
            "sub/dir/notes.txt"
        ]
    );
    assert!(
        v["siblings"][0].get("size").is_none(),
        "sizes only with blobs=true"
    );

    let blobs = get(&format!(
        "{}/api/models/{ID}/revision/main?blobs=true",
        hub.url()
    ))
    .json();
    assert_eq!(blobs["sha"], main.as_str());
    let model = &blobs["siblings"][2];
    assert_eq!(model["rfilename"], "model.safetensors");
    assert_eq!(model["size"], 5000);
    assert_eq!(
        model["blobId"],
        r.file("main", "model.safetensors")
            .unwrap()
            .blob_id
            .as_str()
    );
    assert_eq!(model["lfs"]["sha256"], sha256_hex(&weights()).as_str());
    assert_eq!(model["lfs"]["size"], 5000);
    assert!(model["lfs"]["pointerSize"].as_u64().unwrap() > 100);
    assert_eq!(blobs["siblings"][0]["size"], 13);
    assert!(blobs["siblings"][0].get("lfs").is_none());

    let by_sha = get(&format!("{}/api/models/{ID}/revision/{main}", hub.url())).json();
    assert_eq!(by_sha["sha"], main.as_str());
    let tag = get(&format!("{}/api/models/{ID}/revision/v1.0", hub.url())).json();
    assert_eq!(tag["sha"], main.as_str());
    let pr = get(&format!(
        "{}/api/models/{ID}/revision/refs%2Fpr%2F1",
        hub.url()
    ))
    .json();
    assert_eq!(pr["sha"], r.commit("refs/pr/1").unwrap().as_str());
    let missing = get(&format!("{}/api/models/{ID}/revision/nope", hub.url()));
    assert_eq!(
        (missing.status, error_code(&missing)),
        (404, Some("RevisionNotFound"))
    );
    assert_eq!(missing.json()["error"], "Invalid rev id: nope");
}

#[test]
fn tree_lists_files_and_folders_in_pages() {
    let hub = MockHub::start(vec![repo()]);
    let base = format!("{}/api/models/{ID}/tree/main", hub.url());
    let all = get(&format!("{base}?recursive=true&expand=false"));
    assert_eq!(all.status, 200);
    assert!(all.header("Link").is_none());
    let all = all.json();
    assert_eq!(
        paths(&all),
        [
            "config.json",
            "docs",
            "docs/a b+c.txt",
            "model.safetensors",
            "sub",
            "sub/dir",
            "sub/dir/notes.txt"
        ]
    );
    let model = &all[3];
    assert_eq!(model["type"], "file");
    assert_eq!(model["size"], 5000);
    assert_eq!(model["lfs"]["oid"], sha256_hex(&weights()).as_str());
    assert_eq!(
        model["oid"],
        hub.repos()[0]
            .file("main", "model.safetensors")
            .unwrap()
            .blob_id
            .as_str()
    );
    assert_eq!(all[1]["type"], "directory");
    assert_eq!(all[1]["size"], 0);
    assert_eq!(all[1]["oid"].as_str().unwrap().len(), 40);
    assert!(all[0].get("lfs").is_none());

    assert_eq!(
        paths(&get(&base).json()),
        ["config.json", "docs", "model.safetensors", "sub"]
    );
    assert_eq!(paths(&get(&format!("{base}/sub")).json()), ["sub/dir"]);
    assert_eq!(
        paths(&get(&format!("{base}/sub?recursive=True")).json()),
        ["sub/dir", "sub/dir/notes.txt"]
    );
    let missing = get(&format!("{base}/nope"));
    assert_eq!(
        (missing.status, error_code(&missing)),
        (404, Some("EntryNotFound"))
    );

    hub.set_tree_page_size(3);
    let mut pages = Vec::new();
    let mut next = Some(format!("{base}?recursive=true&expand=false"));
    while let Some(url) = next.take() {
        let page = get(&url);
        assert_eq!(page.status, 200);
        next = page.header("Link").map(|link| {
            assert!(link.ends_with("rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_string()
        });
        pages.push(paths(&page.json()));
    }
    assert_eq!(pages.len(), 3);
    assert_eq!(pages.concat(), paths(&all));
}

#[test]
fn errors_carry_hub_error_codes() {
    let hub = MockHub::start(vec![repo()]);
    let anon = get(&format!("{}/api/models/other/repo", hub.url()));
    assert_eq!(
        (anon.status, error_code(&anon)),
        (401, Some("RepoNotFound"))
    );
    assert_eq!(anon.json()["error"], "Repository not found");
    assert_eq!(anon.header("X-Error-Message"), Some("Repository not found"));
    let authed = send(
        "HEAD",
        &format!("{}/other/repo/resolve/main/x", hub.url()),
        &[("Authorization", "Bearer t")],
    );
    assert_eq!(
        (authed.status, error_code(&authed)),
        (404, Some("RepoNotFound"))
    );

    let rev = head(&format!("{}/{ID}/resolve/nope/config.json", hub.url()));
    assert_eq!(
        (rev.status, error_code(&rev)),
        (404, Some("RevisionNotFound"))
    );
    let entry = get(&format!("{}/{ID}/resolve/main/missing.json", hub.url()));
    assert_eq!(
        (entry.status, error_code(&entry)),
        (404, Some("EntryNotFound"))
    );
    assert_eq!(
        entry.header("X-Repo-Commit"),
        hub.repos()[0].commit("main").as_deref()
    );
    assert_eq!(entry.json()["error"], "Entry not found");
    let folder = head(&format!("{}/{ID}/resolve/main/sub", hub.url()));
    assert_eq!(
        error_code(&folder),
        Some("EntryNotFound"),
        "a folder is not a file"
    );

    let route = get(&format!("{}/{ID}/blob/main/config.json", hub.url()));
    assert_eq!((route.status, error_code(&route)), (404, None));
    let post = send(
        "POST",
        &format!("{}/api/models/{ID}", hub.url()),
        &[("Content-Length", "0")],
    );
    assert_eq!(post.status, 405);
}

#[test]
fn gated_repo_needs_its_token_for_files() {
    let hub = MockHub::start(vec![repo().gated("hf_good")]);
    let url = format!("{}/{ID}/resolve/main/config.json", hub.url());
    let anon = head(&url);
    assert_eq!((anon.status, error_code(&anon)), (401, Some("GatedRepo")));
    let anon_get = get(&url);
    assert!(
        anon_get.json()["error"]
            .as_str()
            .unwrap()
            .contains("restricted")
    );
    let wrong = send("GET", &url, &[("Authorization", "Bearer hf_bad")]);
    assert_eq!((wrong.status, error_code(&wrong)), (403, Some("GatedRepo")));
    assert!(
        wrong.json()["error"]
            .as_str()
            .unwrap()
            .contains("authorized list")
    );
    let good = send("GET", &url, &[("Authorization", "Bearer hf_good")]);
    assert_eq!(
        (good.status, good.body.as_slice()),
        (200, br#"{"layers": 2}"#.as_slice())
    );
    let lfs = send(
        "HEAD",
        &format!("{}/{ID}/resolve/main/model.safetensors", hub.url()),
        &[("Authorization", "Bearer hf_good")],
    );
    assert_eq!(lfs.status, 302);
    let info = get(&format!("{}/api/models/{ID}/revision/main", hub.url()));
    assert_eq!(info.status, 200, "a gated repo's metadata is public");
    assert_eq!(info.json()["gated"], "manual");
    assert_eq!(
        get(&format!("{}/api/models/{ID}/tree/main", hub.url())).status,
        200
    );
}

#[test]
fn private_repo_is_missing_without_its_token() {
    let hub = MockHub::start(vec![repo().private("hf_mine")]);
    let info = format!("{}/api/models/{ID}/revision/main", hub.url());
    let anon = get(&info);
    assert_eq!(
        (anon.status, error_code(&anon)),
        (401, Some("RepoNotFound"))
    );
    let wrong = send("GET", &info, &[("Authorization", "Bearer hf_other")]);
    assert_eq!(
        (wrong.status, error_code(&wrong)),
        (404, Some("RepoNotFound"))
    );
    let good = send("GET", &info, &[("Authorization", "Bearer hf_mine")]);
    assert_eq!(good.status, 200);
    assert_eq!(good.json()["private"], true);
    let file = format!("{}/{ID}/resolve/main/config.json", hub.url());
    assert_eq!(head(&file).status, 401);
    assert_eq!(
        send("HEAD", &file, &[("Authorization", "Bearer hf_mine")]).status,
        200
    );
}

#[test]
fn renamed_repo_redirects_with_a_relative_location() {
    let hub = MockHub::start(vec![repo().renamed_from("old-org/old-name")]);
    let file = head(&format!(
        "{}/old-org/old-name/resolve/main/config.json",
        hub.url()
    ));
    assert_eq!(file.status, 307);
    assert_eq!(
        file.header("Location"),
        Some(format!("/{ID}/resolve/main/config.json").as_str())
    );
    let api = get(&format!(
        "{}/api/models/old-org/old-name/revision/main?blobs=true",
        hub.url()
    ));
    assert_eq!(api.status, 307);
    assert_eq!(
        api.header("Location"),
        Some(format!("/api/models/{ID}/revision/main?blobs=true").as_str())
    );
}
