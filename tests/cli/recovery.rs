//! Crash recovery: a job whose process was killed (SIGKILL) shows as failed/INTERRUPTED.

use std::process::Command;

use aivideo::store::{JobStatus, this_host};
use serde_json::json;

use crate::util::TestEnv;

#[test]
fn a_job_whose_process_was_killed_becomes_failed_interrupted() {
    let env = TestEnv::new();
    let store = env.store();
    let killed = store.create_job("killed mid-run", &json!({})).unwrap();
    let survivor = store.create_job("still running", &json!({})).unwrap();

    let mut victim = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let mut alive = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    store
        .mark_processing_as(&killed.video_id, victim.id(), &this_host())
        .unwrap();
    store
        .mark_processing_as(&survivor.video_id, alive.id(), &this_host())
        .unwrap();
    drop(store);

    // While the owner lives, the job stays processing.
    let v = env
        .run(&["--json", "status", &killed.video_id])
        .expect_code(0)
        .json();
    assert_eq!(v["status"], "processing");

    victim.kill().expect("SIGKILL the owner");
    victim.wait().expect("reap it, so its pid is really gone");

    let v = env
        .run(&["--json", "status", &killed.video_id[..8]])
        .expect_code(0)
        .json();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error_code"], "INTERRUPTED");
    let msg = v["error_message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("pid {}", victim.id())) && msg.contains(&this_host()),
        "{msg}"
    );
    assert!(v["completed_at"].is_string());

    let human = env.run(&["status", &killed.video_id]);
    assert!(
        human.stdout.contains("failed") && human.stdout.contains("INTERRUPTED"),
        "{}",
        human.stdout
    );

    let other = env.store().get(&survivor.video_id).unwrap();
    assert_eq!(other.status, JobStatus::Processing);
    alive.kill().unwrap();
    alive.wait().unwrap();
}
