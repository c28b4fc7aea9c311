//! `aivideo status`: the system status on a fresh database, and single jobs by id or prefix.

use std::path::Path;

use serde_json::json;

use crate::util::{TestEnv, expect_exit};

#[test]
fn system_status_on_a_new_database_human() {
    let env = TestEnv::new();
    let run = env.run(&["status"]);
    run.expect_code(0);
    assert!(env.db_path().is_file(), "status creates the database");
    let out = &run.stdout;
    assert!(
        out.contains(&format!("aivideo {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.contains(&env.db_path().display().to_string()), "{out}");
    assert!(
        out.contains("0 total: 0 pending, 0 processing, 0 completed, 0 failed, 0 canceled"),
        "{out}"
    );
    assert!(out.contains("In progress: none"), "{out}");
    assert!(out.contains("Devices:") && out.contains("cpu"), "{out}");
    assert!(out.contains("Model:"), "{out}");
}

#[test]
fn system_status_json_counts_jobs_and_lists_work_in_progress() {
    let env = TestEnv::new();
    let store = env.store();
    let done = store.create_job("done", &json!({"frames": 16})).unwrap();
    store.mark_processing(&done.video_id).unwrap();
    store
        .mark_completed(
            &done.video_id,
            Path::new("/v.mp4"),
            None,
            2.5,
            &json!({"frames": 16}),
        )
        .unwrap();
    // This test process is alive, so its processing job is not "interrupted".
    let running = store.create_job("running", &json!({})).unwrap();
    store.mark_processing(&running.video_id).unwrap();
    drop(store);

    let v = env.run(&["status", "--json"]).expect_code(0).json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["database"]["path"], json!(env.db_path()));
    assert!(v["database"]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["database"]["schema_version"], 3);
    assert_eq!(v["jobs"]["total"], 2);
    assert_eq!(v["jobs"]["completed"], 1);
    assert_eq!(v["jobs"]["processing"], 1);
    assert_eq!(v["jobs"]["pending"], 0);
    let in_progress = v["in_progress"].as_array().unwrap();
    assert_eq!(in_progress.len(), 1);
    assert_eq!(in_progress[0]["video_id"], running.video_id.as_str());
    assert!(v["devices"].as_array().unwrap().contains(&json!("cpu")));
    assert_eq!(
        v["model"]["name"], "aivideo-starter",
        "the bundled model: {v}"
    );
    assert_eq!(v["model"]["source"], "bundled");
}

#[test]
fn status_of_one_job_by_unique_prefix() {
    let env = TestEnv::new();
    let store = env.store();
    let job = store
        .create_job("a lighthouse at dusk", &json!({"seed": 7}))
        .unwrap();
    store.mark_processing(&job.video_id).unwrap();
    store
        .mark_completed(
            &job.video_id,
            Path::new("/videos/a.mp4"),
            Some(Path::new("/videos/a.jpg")),
            12.5,
            &json!({"seed": 7, "frames": 16}),
        )
        .unwrap();
    drop(store);
    let prefix = &job.video_id[..8];

    let human = env.run(&["status", prefix]);
    human.expect_code(0);
    for want in [
        job.video_id.as_str(),
        "completed",
        "a lighthouse at dusk",
        "/videos/a.mp4",
        "/videos/a.jpg",
        "12.5s",
    ] {
        assert!(
            human.stdout.contains(want),
            "missing {want}:\n{}",
            human.stdout
        );
    }

    let v = env.run(&["--json", "status", prefix]).expect_code(0).json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "attempts",
            "completed_at",
            "created_at",
            "error_code",
            "error_message",
            "metadata",
            "processing_time",
            "progress",
            "prompt",
            "started_at",
            "status",
            "thumbnail_path",
            "video_id",
            "video_path"
        ]
    );
    assert_eq!(v["video_id"], job.video_id.as_str());
    assert_eq!(v["status"], "completed");
    assert_eq!(v["processing_time"], 12.5);
    assert_eq!(v["video_path"], "/videos/a.mp4");
    assert_eq!(v["thumbnail_path"], "/videos/a.jpg");
    assert_eq!(v["metadata"]["frames"], 16);
    assert!(v["error_code"].is_null());
}

#[test]
fn many_processes_opening_a_fresh_database_at_once_all_succeed() {
    let env = TestEnv::new();
    let children: Vec<_> = (0..6)
        .map(|i| {
            let args: &[&str] = if i % 2 == 0 {
                &["status", "--json"]
            } else {
                &["list", "--json"]
            };
            env.command()
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        expect_exit(&out, 0);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON on stdout");
    }
    assert_eq!(env.store().schema_version().unwrap(), 3);
}
