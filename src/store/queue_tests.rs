//! Queue tests against real SQLite files: enqueue, atomic claims across connections and
//! threads, cancel requests, progress, and what recovery does with queued jobs.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use serde_json::json;

use super::*;

fn spec(dir: &std::path::Path, id: &str) -> JobSpec {
    JobSpec {
        quality: Quality::Low,
        params: GenerationParams {
            prompt: "a red ball".into(),
            negative_prompt: None,
            steps: 2,
            guidance: 2.5,
            seed: 7,
            width: 256,
            height: 256,
            frames: 16,
            fps: 8,
        },
        seed_was_random: false,
        model: None,
        device: DeviceChoice::Cpu,
        precision: Precision::Auto,
        video_path: dir.join(format!("{id}.mp4")),
        thumbnail_path: dir.join(format!("{id}.jpg")),
        overwrite: false,
        frames_dir: None,
    }
}

fn new_jobs(dir: &std::path::Path, n: usize, retries: u32) -> Vec<NewJob> {
    (0..n)
        .map(|i| {
            let id = new_job_id();
            NewJob {
                spec: spec(dir, &id),
                video_id: id,
                prompt: format!("prompt {i}"),
                metadata: json!({"frames": 16}),
                max_retries: retries,
            }
        })
        .collect()
}

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("jobs.sqlite3")).unwrap();
    (dir, store)
}

#[test]
fn enqueued_jobs_are_claimed_oldest_first_with_their_spec() {
    let (dir, mut store) = temp_store();
    let jobs = new_jobs(dir.path(), 3, 0);
    let queued = store.enqueue(&jobs).unwrap();
    assert_eq!(queued.len(), 3);
    assert!(
        queued
            .iter()
            .all(|j| j.status == JobStatus::Pending && j.pid.is_none())
    );
    assert_eq!(store.queue_depth().unwrap(), 3);
    for want in &jobs {
        let (job, spec) = store.claim_next().unwrap().unwrap();
        assert_eq!(job.video_id, want.video_id);
        assert_eq!(job.status, JobStatus::Processing);
        assert_eq!(job.pid, Some(std::process::id()));
        assert_eq!(job.attempts, 1);
        assert_eq!(spec, want.spec);
    }
    assert!(store.claim_next().unwrap().is_none());
    assert_eq!(store.queue_depth().unwrap(), 0);
}

#[test]
fn jobs_run_directly_are_never_claimed() {
    let (_dir, mut store) = temp_store();
    store.create_job("direct", &json!({})).unwrap();
    assert!(store.claim_next().unwrap().is_none());
}

#[test]
fn concurrent_claims_from_many_connections_never_share_a_job() {
    let (dir, mut store) = temp_store();
    let jobs = new_jobs(dir.path(), 200, 0);
    store.enqueue(&jobs).unwrap();
    let path = store.path().to_path_buf();
    let barrier = Arc::new(Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut s = Store::open(&path).unwrap();
                barrier.wait();
                let mut got = Vec::new();
                while let Some((job, _)) = s.claim_next().unwrap() {
                    got.push(job.video_id);
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 200, "every job claimed exactly once");
    assert_eq!(unique.len(), 200);
}

#[test]
fn cancel_stops_a_pending_job_at_once_and_asks_a_running_one() {
    let (dir, mut store) = temp_store();
    let jobs = new_jobs(dir.path(), 2, 0);
    store.enqueue(&jobs).unwrap();
    let (running, _) = store.claim_next().unwrap().unwrap();
    let waiting = &jobs[1].video_id;

    match store.request_cancel(waiting, "canceled by test").unwrap() {
        CancelOutcome::Canceled(job) => {
            assert_eq!(job.status, JobStatus::Canceled);
            assert_eq!(job.error_code.as_deref(), Some("CANCELED"));
        }
        other => panic!("expected Canceled, got {other:?}"),
    }
    assert!(
        store.claim_next().unwrap().is_none(),
        "a canceled job is not claimed"
    );

    let progress = JobProgress {
        phase: "denoising".into(),
        step: 1,
        total: 2,
        elapsed_s: 0.5,
        eta_s: Some(0.5),
        updated_at: now(),
    };
    assert!(!store.record_progress(&running.video_id, &progress).unwrap());
    match store.request_cancel(&running.video_id, "x").unwrap() {
        CancelOutcome::Requested(job) => assert_eq!(job.status, JobStatus::Processing),
        other => panic!("expected Requested, got {other:?}"),
    }
    assert!(store.record_progress(&running.video_id, &progress).unwrap());
    assert!(store.cancel_requested(&running.video_id).unwrap());
    assert_eq!(
        store.get(&running.video_id).unwrap().progress,
        Some(progress)
    );

    let ended = store.mark_canceled(&running.video_id, "stopped").unwrap();
    match store.request_cancel(&running.video_id, "again").unwrap() {
        CancelOutcome::AlreadyEnded(job) => assert_eq!(job, ended),
        other => panic!("expected AlreadyEnded, got {other:?}"),
    }
    assert!(matches!(
        store.request_cancel("0000", "x"),
        Err(StoreError::NotFound { .. })
    ));
}

/// Makes job `id` look like it was claimed by a process that has since died.
fn orphan(store: &Store, id: &str) {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    store
        .conn
        .execute(
            "UPDATE jobs SET pid = ?1, proc_start = NULL WHERE video_id = ?2",
            params![pid, id],
        )
        .unwrap();
}

#[test]
fn recovery_requeues_a_dead_workers_job_while_retries_last_then_fails_it() {
    let (dir, mut store) = temp_store();
    let jobs = new_jobs(dir.path(), 2, 1);
    store.enqueue(&jobs).unwrap();
    // The second job waits: nobody owns it, recovery must not touch it.
    let (first, _) = store.claim_next().unwrap().unwrap();
    orphan(&store, &first.video_id);

    assert_eq!(
        store.recover_interrupted().unwrap(),
        vec![first.video_id.clone()]
    );
    let again = store.get(&first.video_id).unwrap();
    assert_eq!(again.status, JobStatus::Pending);
    assert_eq!(again.attempts, 1);
    assert!(again.pid.is_none() && again.started_at.is_none());
    let notes = again.metadata["interruptions"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0]
            .as_str()
            .unwrap()
            .starts_with("attempt 1: interrupted")
    );
    assert_eq!(
        again.metadata["frames"], 16,
        "the rest of the metadata is kept"
    );
    assert_eq!(
        store.get(&jobs[1].video_id).unwrap().status,
        JobStatus::Pending
    );

    // The retried job is first in line again (it is the oldest).
    let (second_try, _) = store.claim_next().unwrap().unwrap();
    assert_eq!(second_try.video_id, first.video_id);
    assert_eq!(second_try.attempts, 2);
    orphan(&store, &first.video_id);
    store.recover_interrupted().unwrap();
    let failed = store.get(&first.video_id).unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.error_code.as_deref(),
        Some(super::super::INTERRUPTED)
    );
    assert_eq!(
        store.get(&jobs[1].video_id).unwrap().status,
        JobStatus::Pending
    );
}

#[test]
fn a_queued_job_with_an_unreadable_spec_fails_instead_of_blocking_the_queue() {
    let (dir, mut store) = temp_store();
    let jobs = new_jobs(dir.path(), 2, 0);
    store.enqueue(&jobs).unwrap();
    store
        .conn
        .execute(
            "UPDATE jobs SET spec = '{\"nonsense\": 1}' WHERE video_id = ?1",
            [&jobs[0].video_id],
        )
        .unwrap();
    assert!(matches!(
        store.claim_next(),
        Err(StoreError::BadSpec { .. })
    ));
    assert_eq!(
        store.get(&jobs[0].video_id).unwrap().status,
        JobStatus::Failed
    );
    let (next, _) = store.claim_next().unwrap().unwrap();
    assert_eq!(next.video_id, jobs[1].video_id);
}
