//! The persistent queue end to end: `generate --queue` only enqueues, `aivideo worker`
//! processes drain it (never running a job twice, never more at once than asked), `aivideo
//! cancel` stops queued and running jobs, a killed worker's job is retried when asked, and
//! SIGTERM lets running jobs finish while queued ones stay queued.

use std::process::{Child, Command, Stdio};

use aivideo::store::{Job, JobStatus};

use crate::util::{
    TestEnv, ffprobe, files_in, finish, max_concurrent, start_paused, tiny_model, wait_for,
};

/// `generate --queue` of small clips with the tiny model; returns the printed ids.
fn enqueue(env: &TestEnv, prompts: &[&str], extra: &[&str]) -> Vec<String> {
    let file = env.path().join("prompts.txt");
    std::fs::write(&file, prompts.join("\n")).unwrap();
    let model = tiny_model().to_str().unwrap();
    let mut args = vec![
        "generate",
        "--queue",
        "--prompts",
        file.to_str().unwrap(),
        "--model",
        model,
        "--steps",
        "2",
        "--width",
        "256",
        "--height",
        "256",
    ];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    run.expect_code(0);
    let ids: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    assert_eq!(ids.len(), prompts.len(), "one id per line: {}", run.stdout);
    ids
}

fn worker(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = env.command();
    cmd.arg("worker")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn job(env: &TestEnv, id: &str) -> Job {
    env.store().get(id).unwrap()
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn queued_jobs_wait_for_a_worker_which_runs_them_once() {
    let env = TestEnv::new();
    let ids = enqueue(
        &env,
        &["a red ball", "a blue box growing"],
        &["--seed", "4"],
    );
    let single = env
        .run(&["--json", "generate", "--queue", "a white dot", "--model"])
        .code;
    assert_eq!(single, 2, "--model needs a value");
    for id in &ids {
        let j = job(&env, id);
        assert_eq!(j.status, JobStatus::Pending);
        assert_eq!(j.attempts, 0);
    }
    assert!(
        files_in(&env.output_dir()).is_empty(),
        "enqueuing writes nothing"
    );

    let out = worker(&env, &["--drain", "--json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one JSON line per job");
    for id in &ids {
        let j = job(&env, id);
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
        assert_eq!(j.attempts, 1);
        assert_eq!(j.metadata["seed"], 4);
        assert_eq!(j.progress.as_ref().unwrap().phase, "writing");
        let video = std::path::PathBuf::from(j.video_path.unwrap());
        assert_eq!(video, env.output_dir().join(format!("{id}.mp4")));
        let probe = ffprobe(&video);
        assert_eq!(probe["streams"][0]["nb_read_frames"], "16");
        assert!(std::path::Path::new(&j.thumbnail_path.unwrap()).is_file());
    }
    // An empty queue: a draining worker has nothing to do and succeeds.
    let again = worker(&env, &["--drain"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0));
}

#[test]
fn a_bad_request_in_a_queued_batch_enqueues_nothing() {
    let env = TestEnv::new();
    let file = env.path().join("prompts.txt");
    std::fs::write(&file, "a red ball\n").unwrap();
    let run = env.run(&[
        "--json",
        "generate",
        "--queue",
        "--prompts",
        file.to_str().unwrap(),
        "--steps",
        "0",
    ]);
    run.expect_code(2);
    assert_eq!(run.json()["error_code"], "VALIDATION_ERROR");
    assert_eq!(env.job_count(), 0);
    let run = env.run(&["generate", "a red ball", "--retries", "2"]);
    run.expect_code(2);
    assert!(run.stderr.contains("--queue"), "{}", run.stderr);
}

#[test]
fn two_worker_processes_drain_one_queue_without_running_a_job_twice() {
    let env = TestEnv::new();
    let prompts: Vec<String> = (0..16).map(|i| format!("a red ball number {i}")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let ids = enqueue(&env, &prompts, &[]);
    let a = worker(&env, &["--drain", "--workers", "2"])
        .spawn()
        .unwrap();
    let b = worker(&env, &["--drain", "--workers", "2"])
        .spawn()
        .unwrap();
    for child in [a, b] {
        let (code, printed) = finish(child);
        assert_eq!(code, 0, "{printed}");
    }
    let jobs: Vec<Job> = ids.iter().map(|id| job(&env, id)).collect();
    for j in &jobs {
        assert_eq!(j.status, JobStatus::Completed, "{j:?}");
        assert_eq!(j.attempts, 1, "run exactly once: {j:?}");
    }
    let max = max_concurrent(&jobs);
    assert!(
        (1..=4).contains(&max),
        "{max} jobs ran at once with 2 × 2 workers"
    );
    let mp4s = files_in(&env.output_dir())
        .into_iter()
        .filter(|f| f.ends_with(".mp4"))
        .count();
    assert_eq!(mp4s, 16);
}

#[test]
fn cancel_stops_a_queued_job_at_once_and_a_running_one_at_its_next_step() {
    let env = TestEnv::new();
    let ids = enqueue(&env, &["a red ball", "a blue box"], &[]);
    let (running, waiting) = (&ids[0], &ids[1]);

    let run = env.run(&["--json", "cancel", &waiting[..8]]);
    run.expect_code(0);
    assert_eq!(run.json()["status"], "canceled");
    assert_eq!(job(&env, waiting).error_code.as_deref(), Some("CANCELED"));

    let (child, flag) = start_paused(&env, worker(&env, &["--drain"]), "after-first-step");
    assert_eq!(job(&env, running).status, JobStatus::Processing);
    let run = env.run(&["cancel", running]);
    run.expect_code(0);
    assert!(run.stdout.contains("cancel requested"), "{}", run.stdout);
    std::fs::remove_file(&flag).unwrap();
    let (code, printed) = finish(child);
    assert_eq!(code, 0, "canceled jobs are not failures: {printed}");
    let j = job(&env, running);
    assert_eq!(j.status, JobStatus::Canceled, "{j:?}");
    assert!(j.error_message.unwrap().contains("canceled"));
    assert!(
        files_in(&env.output_dir()).is_empty(),
        "a canceled job leaves no files"
    );

    // Nothing left to cancel: a conflict, exit 2.
    let run = env.run(&["--json", "cancel", running]);
    run.expect_code(2);
    assert_eq!(run.json()["error_code"], "CONFLICT");
    env.run(&["cancel", "ffffffff"]).expect_code(3);
}

#[test]
fn cancel_wait_returns_once_the_running_job_has_stopped() {
    let env = TestEnv::new();
    let ids = enqueue(&env, &["a red ball"], &[]);
    let (child, flag) = start_paused(&env, worker(&env, &["--drain"]), "after-first-step");
    let mut cancel = env.command();
    cancel
        .args(["--json", "cancel", "--wait", &ids[0]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cancel = cancel.spawn().unwrap();
    assert!(wait_for(30, || env
        .store()
        .cancel_requested(&ids[0])
        .unwrap()));
    std::fs::remove_file(&flag).unwrap();
    let (code, printed) = finish(cancel);
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("\"status\": \"canceled\""), "{printed}");
    assert_eq!(finish(child).0, 0);
}

#[test]
fn a_killed_workers_job_runs_again_when_retries_allow_and_fails_otherwise() {
    let env = TestEnv::new();
    let retried = enqueue(&env, &["a red ball"], &["--retries", "1"]).remove(0);
    let once = enqueue(&env, &["a blue box"], &[]).remove(0);

    // The first job (the oldest) is claimed; kill its worker mid-generation.
    let (mut child, flag) = start_paused(&env, worker(&env, &[]), "after-first-step");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&flag).unwrap();
    let out = worker(&env, &["--drain"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = job(&env, &retried);
    assert_eq!(j.status, JobStatus::Completed, "{j:?}");
    assert_eq!(j.attempts, 2);
    let notes = j.metadata["interruptions"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].as_str().unwrap().contains("interrupted"),
        "{notes:?}"
    );
    assert_eq!(job(&env, &once).status, JobStatus::Completed);

    // Without retries, the killed worker's job is recorded as interrupted.
    let lost = enqueue(&env, &["a white dot"], &[]).remove(0);
    let (mut child, flag) = start_paused(&env, worker(&env, &[]), "after-first-step");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&flag).unwrap();
    env.run(&["list"]).expect_code(0);
    let j = job(&env, &lost);
    assert_eq!(j.status, JobStatus::Failed);
    assert_eq!(j.error_code.as_deref(), Some("INTERRUPTED"));
    assert_eq!(j.attempts, 1);
}

#[test]
fn sigterm_lets_the_running_job_finish_and_leaves_queued_jobs_queued() {
    let env = TestEnv::new();
    let ids = enqueue(&env, &["a red ball", "a blue box"], &[]);
    let (child, flag) = start_paused(&env, worker(&env, &[]), "after-first-step");
    signal(&child, libc::SIGTERM);
    std::fs::remove_file(&flag).unwrap();
    let (code, printed) = finish(child);
    assert_eq!(code, 0, "{printed}");
    assert!(printed.contains("stopping"), "{printed}");
    assert_eq!(job(&env, &ids[0]).status, JobStatus::Completed);
    assert_eq!(job(&env, &ids[1]).status, JobStatus::Pending);

    // With --cancel-on-shutdown the running job is canceled instead.
    let (child, flag) = start_paused(
        &env,
        worker(&env, &["--cancel-on-shutdown"]),
        "after-first-step",
    );
    signal(&child, libc::SIGINT);
    std::fs::remove_file(&flag).unwrap();
    let (code, printed) = finish(child);
    assert_eq!(code, 0, "{printed}");
    assert_eq!(job(&env, &ids[1]).status, JobStatus::Canceled);
}
