//! Store tests against real SQLite files in temporary folders.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use serde_json::json;
use tempfile::TempDir;

use super::*;

fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("nested")
        .join("deeper")
        .join("jobs.sqlite3");
    (dir, path)
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn open_creates_folders_and_schema_and_reopens() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    let mode: String = store
        .conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count(None).unwrap(), 0);
}

#[test]
fn job_lifecycle_to_completed() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let job = store
        .create_job("waves", &json!({"frames": 16, "fps": 8}))
        .unwrap();
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.pid, Some(std::process::id()));
    assert_eq!(
        uuid::Uuid::parse_str(&job.video_id)
            .unwrap()
            .get_version_num(),
        4
    );
    assert_eq!(store.get(&job.video_id).unwrap(), job);

    let p = store.mark_processing(&job.video_id).unwrap();
    assert_eq!(p.status, JobStatus::Processing);
    assert!(p.started_at.unwrap() >= p.created_at);
    assert_eq!(p.host.as_deref(), Some(this_host().as_str()));

    let meta = json!({"frames": 24, "seed": 7});
    let c = store
        .mark_completed(
            &job.video_id,
            Path::new("/tmp/out/a.mp4"),
            Some(Path::new("/tmp/out/a.jpg")),
            12.25,
            &meta,
        )
        .unwrap();
    assert_eq!(c.status, JobStatus::Completed);
    assert_eq!(c.processing_time, Some(12.25));
    assert_eq!(c.video_path.as_deref(), Some("/tmp/out/a.mp4"));
    assert_eq!(c.thumbnail_path.as_deref(), Some("/tmp/out/a.jpg"));
    assert_eq!(c.metadata, meta);
    assert_eq!(c.frames, Some(24));
    assert!(c.completed_at.is_some());
    assert_eq!(store.total_frames().unwrap(), 24);

    let t = store
        .set_thumbnail_path(&job.video_id, Path::new("/tmp/out/b.png"))
        .unwrap();
    assert_eq!(t.thumbnail_path.as_deref(), Some("/tmp/out/b.png"));
}

#[test]
fn json_uses_exactly_the_spec_field_names() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let job = store.create_job("waves", &json!({})).unwrap();
    let v = serde_json::to_value(&job).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    let mut want = [
        "video_id",
        "prompt",
        "status",
        "created_at",
        "started_at",
        "completed_at",
        "processing_time",
        "video_path",
        "thumbnail_path",
        "error_code",
        "error_message",
        "metadata",
        "progress",
        "attempts",
    ];
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(v["status"], "pending");
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn failures_and_cancellations_record_code_message_and_time() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let a = store.create_job("a", &json!({})).unwrap();
    store.mark_processing(&a.video_id).unwrap();
    let f = store
        .mark_failed(
            &a.video_id,
            "AI_VIDEO_ERROR",
            "model exploded",
            Some(&json!({"frames": 3})),
        )
        .unwrap();
    assert_eq!(f.status, JobStatus::Failed);
    assert_eq!(f.error_code.as_deref(), Some("AI_VIDEO_ERROR"));
    assert_eq!(f.error_message.as_deref(), Some("model exploded"));
    assert_eq!(f.metadata, json!({"frames": 3}));
    let t = f
        .processing_time
        .expect("a started job gets a processing time");
    assert!((0.0..60.0).contains(&t), "{t}");

    // A job that fails before it starts keeps its metadata and has no processing time.
    let b = store.create_job("b", &json!({"k": 1})).unwrap();
    let f = store
        .mark_failed(&b.video_id, "VALIDATION_ERROR", "bad", None)
        .unwrap();
    assert_eq!(f.metadata, json!({"k": 1}));
    assert_eq!(f.processing_time, None);

    let c = store.create_job("c", &json!({})).unwrap();
    store.mark_processing(&c.video_id).unwrap();
    let x = store
        .mark_canceled(&c.video_id, "canceled by Ctrl-C")
        .unwrap();
    assert_eq!(x.status, JobStatus::Canceled);
    assert_eq!(x.error_code.as_deref(), Some("CANCELED"));
}

#[test]
fn invalid_transitions_and_unknown_ids_are_errors() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let a = store.create_job("a", &json!({})).unwrap();
    let err = store
        .mark_completed(&a.video_id, Path::new("/x.mp4"), None, 1.0, &json!({}))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidTransition {
                from: JobStatus::Pending,
                to: JobStatus::Completed,
                ..
            }
        ),
        "{err:?}"
    );
    store.mark_processing(&a.video_id).unwrap();
    assert!(matches!(
        store.mark_processing(&a.video_id).unwrap_err(),
        StoreError::InvalidTransition {
            from: JobStatus::Processing,
            ..
        }
    ));
    store.mark_canceled(&a.video_id, "stop").unwrap();
    assert!(matches!(
        store
            .mark_failed(&a.video_id, "X", "late", None)
            .unwrap_err(),
        StoreError::InvalidTransition {
            from: JobStatus::Canceled,
            ..
        }
    ));
    let missing = "00000000-0000-4000-8000-000000000000";
    assert!(matches!(
        store.mark_processing(missing).unwrap_err(),
        StoreError::NotFound { .. }
    ));
    assert!(matches!(
        store
            .set_thumbnail_path(missing, Path::new("/t.jpg"))
            .unwrap_err(),
        StoreError::NotFound { .. }
    ));
}

#[test]
fn get_by_prefix_unique_ambiguous_and_missing() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let jobs: Vec<Job> = (0..20)
        .map(|i| store.create_job(&format!("p{i}"), &json!({})).unwrap())
        .collect();
    // 20 ids over 16 first characters: some first character is shared (pigeonhole).
    let shared = (0..jobs.len())
        .find_map(|i| {
            let c = &jobs[i].video_id[..1];
            let n = jobs.iter().filter(|j| j.video_id.starts_with(c)).count();
            (n > 1).then(|| (c.to_string(), n))
        })
        .unwrap();
    match store.get(&shared.0).unwrap_err() {
        StoreError::Ambiguous {
            candidates, more, ..
        } => {
            assert_eq!(candidates.len(), shared.1);
            assert!(!more);
            assert!(candidates.iter().all(|c| c.starts_with(&shared.0)));
            let e = store.get(&shared.0).unwrap_err();
            assert_eq!(e.code(), ErrorCode::AmbiguousId);
            assert!(e.to_string().contains("give more characters"), "{e}");
        }
        other => panic!("expected Ambiguous, got {other:?}"),
    }
    let target = &jobs[7];
    assert_eq!(
        store.get(&target.video_id[..13]).unwrap().video_id,
        target.video_id
    );
    assert_eq!(
        store
            .get(&target.video_id[..13].to_uppercase())
            .unwrap()
            .video_id,
        target.video_id
    );
    assert_eq!(
        store.get(&format!("  {} ", target.video_id)).unwrap(),
        *target
    );
    for missing in [
        "zzz",
        "00000000-0000-4000-8000-000000000000x",
        "'; DROP TABLE jobs; --",
    ] {
        assert!(
            matches!(store.get(missing).unwrap_err(), StoreError::NotFound { .. }),
            "{missing}"
        );
    }
    assert!(matches!(
        store.get("  ").unwrap_err(),
        StoreError::InvalidId { .. }
    ));
    assert_eq!(store.count(None).unwrap(), 20);
}

#[test]
fn list_is_newest_first_paginated_and_filtered() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let ids: Vec<String> = (0..7)
        .map(|i| {
            store
                .create_job(&format!("p{i}"), &json!({}))
                .unwrap()
                .video_id
        })
        .collect();
    for id in &ids[..3] {
        store.mark_processing(id).unwrap();
    }
    let all = store.list(100, 0, None).unwrap();
    let got: Vec<&str> = all.iter().map(|j| j.video_id.as_str()).collect();
    let want: Vec<&str> = ids.iter().rev().map(|s| s.as_str()).collect();
    assert_eq!(got, want);
    let page: Vec<String> = store
        .list(3, 2, None)
        .unwrap()
        .into_iter()
        .map(|j| j.video_id)
        .collect();
    assert_eq!(page, want[2..5]);
    assert!(store.list(10, 7, None).unwrap().is_empty());
    let processing = store.list(10, 0, Some(JobStatus::Processing)).unwrap();
    let got: Vec<&str> = processing.iter().map(|j| j.video_id.as_str()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    let counts = store.counts_by_status().unwrap();
    assert_eq!(
        (counts.pending, counts.processing, counts.total()),
        (4, 3, 7)
    );
    assert_eq!(store.count(Some(JobStatus::Pending)).unwrap(), 4);
    let in_progress = store.in_progress().unwrap();
    assert_eq!(in_progress.len(), 7);
    assert_eq!(in_progress[0].video_id, ids[0]);
}

#[test]
fn recovery_fails_jobs_of_dead_processes_on_this_host_only() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let host = this_host();
    let dead = store.create_job("dead", &json!({})).unwrap();
    store
        .mark_processing_as(&dead.video_id, dead_pid(), &host)
        .unwrap();
    let alive = store.create_job("alive", &json!({})).unwrap();
    store.mark_processing(&alive.video_id).unwrap();
    let elsewhere = store.create_job("elsewhere", &json!({})).unwrap();
    store
        .mark_processing_as(&elsewhere.video_id, dead_pid(), "some-other-host.invalid")
        .unwrap();
    // A pending job whose creator died is recovered too.
    let orphan = store.create_job("orphan", &json!({})).unwrap();
    let pid = dead_pid();
    store
        .conn
        .execute(
            "UPDATE jobs SET pid = ?1 WHERE video_id = ?2",
            params![pid, orphan.video_id],
        )
        .unwrap();
    drop(store);

    let store = Store::open(&path).unwrap();
    let d = store.get(&dead.video_id).unwrap();
    assert_eq!(d.status, JobStatus::Failed);
    assert_eq!(d.error_code.as_deref(), Some(INTERRUPTED));
    let msg = d.error_message.unwrap();
    assert!(msg.contains("interrupted") && msg.contains(&host), "{msg}");
    assert!(d.processing_time.is_some());
    assert_eq!(
        store.get(&orphan.video_id).unwrap().status,
        JobStatus::Failed
    );
    assert_eq!(
        store.get(&alive.video_id).unwrap().status,
        JobStatus::Processing
    );
    assert_eq!(
        store.get(&elsewhere.video_id).unwrap().status,
        JobStatus::Processing
    );
    assert!(store.recover_interrupted().unwrap().is_empty());
}

#[test]
fn concurrent_writers_on_a_fresh_database_all_succeed() {
    let (_dir, path) = temp_db();
    let threads = 8;
    let per_thread = 25;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || -> Result<()> {
                barrier.wait();
                let store = Store::open(&path)?;
                for i in 0..per_thread {
                    let job = store.create_job(&format!("t{t} j{i}"), &json!({"frames": 2}))?;
                    store.mark_processing(&job.video_id)?;
                    store.mark_completed(
                        &job.video_id,
                        Path::new("/v.mp4"),
                        None,
                        0.5,
                        &json!({"frames": 2}),
                    )?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let counts = store.counts_by_status().unwrap();
    assert_eq!(counts.completed, (threads * per_thread) as u64);
    assert_eq!(counts.total(), (threads * per_thread) as u64);
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
}

#[test]
fn garbage_file_is_a_clear_corrupt_error() {
    let (_dir, path) = temp_db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    for result in [Store::open(&path), Store::open_read_only(&path)] {
        let err = result.err().expect("garbage must not open");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert_eq!(err.code(), ErrorCode::DatabaseError);
        assert!(
            err.to_string()
                .contains("not a usable aivideo job database"),
            "{err}"
        );
    }
    // The file was left alone.
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn read_only_open_never_creates_and_never_writes() {
    let (_dir, path) = temp_db();
    assert!(matches!(
        Store::open_read_only(&path).err().unwrap(),
        StoreError::Missing { .. }
    ));
    assert!(!path.exists());
    let writer = Store::open(&path).unwrap();
    let job = writer.create_job("x", &json!({})).unwrap();
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(
        reader.get(&job.video_id[..6]).unwrap().video_id,
        job.video_id
    );
    assert_eq!(reader.counts_by_status().unwrap().pending, 1);
    assert!(reader.create_job("y", &json!({})).is_err());
    // The writer can still write while the reader is open.
    writer.create_job("z", &json!({})).unwrap();
    assert_eq!(reader.count(None).unwrap(), 2);
    drop(reader);
    // With every writer closed (WAL checkpointed, -wal/-shm gone), monitoring still reads.
    drop(writer);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.count(None).unwrap(), 2);
    assert_eq!(reader.stats(&[1.0]).unwrap().counts.pending, 2);
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    store.conn.pragma_update(None, "user_version", 99).unwrap();
    drop(store);
    let err = Store::open(&path).err().unwrap();
    assert!(
        matches!(err, StoreError::TooNew { found: 99, .. }),
        "{err:?}"
    );
    assert!(matches!(
        Store::open_read_only(&path).err().unwrap(),
        StoreError::TooNew { .. }
    ));
}

#[test]
fn processing_time_histogram_and_stats() {
    let (_dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    for t in [0.5, 2.0, 2.0, 30.0] {
        let j = store.create_job("x", &json!({})).unwrap();
        store.mark_processing(&j.video_id).unwrap();
        store
            .mark_completed(
                &j.video_id,
                Path::new("/v.mp4"),
                None,
                t,
                &json!({"frames": 16}),
            )
            .unwrap();
    }
    let j = store.create_job("failed", &json!({})).unwrap();
    store.mark_failed(&j.video_id, "X", "no", None).unwrap();
    let s = store.stats(&[1.0, 2.0, 10.0]).unwrap();
    assert_eq!(s.processing_time.count, 4);
    assert_eq!(s.processing_time.sum, 34.5);
    assert_eq!(
        s.processing_time.buckets,
        vec![(1.0, 1), (2.0, 3), (10.0, 3)]
    );
    assert_eq!(s.total_frames, 64);
    assert_eq!((s.counts.completed, s.counts.failed), (4, 1));
    assert!(s.db_size_bytes > 0);
    let empty = Store::open(path.with_file_name("empty.sqlite3")).unwrap();
    let s = empty.stats(&[1.0]).unwrap();
    assert_eq!(
        s.processing_time,
        ProcessingTimeStats {
            count: 0,
            sum: 0.0,
            buckets: vec![(1.0, 0)]
        }
    );
}

fn plan(store: &Store, sql: &str) -> String {
    let mut stmt = store
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap();
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    rows.join(" | ")
}

#[test]
fn listing_and_prefix_lookup_stay_fast_with_100k_jobs() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let tx = store.conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO jobs (video_id, prompt, status, created_at, metadata)
                 VALUES (?1, 'p', ?2, ?3, '{}')",
            )
            .unwrap();
        let base = now();
        for i in 0..100_000i64 {
            let t = base - chrono::Duration::milliseconds(i);
            let status = JobStatus::ALL[(i % 5) as usize].as_str();
            insert
                .execute(params![
                    uuid::Uuid::new_v4().to_string(),
                    status,
                    format_ts(&t)
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();

    let list_plan = plan(
        &store,
        "SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT 50",
    );
    assert!(
        list_plan.contains("jobs_by_created") && !list_plan.contains("TEMP B-TREE"),
        "{list_plan}"
    );
    let filtered = plan(
        &store,
        "SELECT * FROM jobs WHERE status = 'failed' ORDER BY created_at DESC, rowid DESC LIMIT 50",
    );
    assert!(
        filtered.contains("jobs_by_status_created") && !filtered.contains("TEMP B-TREE"),
        "{filtered}"
    );
    let prefix = plan(
        &store,
        "SELECT * FROM jobs WHERE video_id >= 'ab' AND video_id < 'ac'",
    );
    assert!(
        prefix.contains("SEARCH") && prefix.contains("video_id>"),
        "{prefix}"
    );

    let newest = store.list(1, 0, None).unwrap().remove(0);
    let start = Instant::now();
    for _ in 0..5 {
        let page = store.list(50, 0, None).unwrap();
        assert_eq!(page.len(), 50);
        assert_eq!(page[0].video_id, newest.video_id);
        assert_eq!(
            store.list(50, 0, Some(JobStatus::Failed)).unwrap().len(),
            50
        );
        assert_eq!(
            store.get(&newest.video_id[..8]).unwrap().video_id,
            newest.video_id
        );
    }
    let per_round = start.elapsed() / 5;
    assert!(
        per_round.as_millis() < 50,
        "list + filtered list + get took {per_round:?}"
    );
    let _ = store.recover_interrupted().unwrap();
}

#[test]
fn a_version_1_history_is_migrated_and_its_jobs_recover_by_pid() {
    let (_dir, path) = temp_db();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        let host = this_host();
        for (id, pid) in [("dead", dead_pid()), ("alive", std::process::id())] {
            conn.execute(
                "INSERT INTO jobs (video_id, prompt, status, created_at, metadata, pid, host)
                 VALUES (?1, 'p', 'processing', '2026-01-01T00:00:00.000000Z', '{}', ?2, ?3)",
                params![id, pid, host],
            )
            .unwrap();
        }
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    assert_eq!(store.get_exact("dead").unwrap().status, JobStatus::Failed);
    // No start identity recorded: a live pid is trusted, as before.
    assert_eq!(
        store.get_exact("alive").unwrap().status,
        JobStatus::Processing
    );
}

#[test]
fn recovery_removes_the_dead_jobs_temporary_files_only() {
    let (dir, path) = temp_db();
    let store = Store::open(&path).unwrap();
    let work = dir.path().join("out");
    std::fs::create_dir(&work).unwrap();
    let dead = store.create_job("dead", &json!({})).unwrap();
    store
        .set_work_dirs(&dead.video_id, std::slice::from_ref(&work))
        .unwrap();
    store
        .mark_processing_as(&dead.video_id, dead_pid(), &this_host())
        .unwrap();
    let alive = store.create_job("alive", &json!({})).unwrap();
    store
        .set_work_dirs(&alive.video_id, std::slice::from_ref(&work))
        .unwrap();
    store.mark_processing(&alive.video_id).unwrap();
    let names = [
        format!(".aivideo-{}-a1.tmp", dead.video_id),
        format!(".aivideo-{}-b2.tmp", alive.video_id),
        format!("{}.mp4", dead.video_id),
    ];
    for n in &names {
        std::fs::write(work.join(n), b"x").unwrap();
    }
    assert_eq!(
        store.recover_interrupted().unwrap(),
        vec![dead.video_id.clone()]
    );
    let mut left: Vec<String> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    let mut expected = names[1..].to_vec();
    expected.sort();
    assert_eq!(left, expected);
}
