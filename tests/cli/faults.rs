//! Faults injected into real runs of the binary: a second Ctrl-C mid-write, SIGKILL with a
//! temporary file on disk, a pid that now belongs to another process, and full disks (small
//! tmpfs mounts made here) under the MP4, the thumbnail and the job database. Whatever
//! happens, no job stays `pending`/`processing` and no file is left that no record owns.
//!
//! Processes are held at a point with `AIVIDEO_FAULT_PAUSE=<point>:<flag>` (debug builds; see
//! `aivideo::faults`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aivideo::store::{JobStatus, this_host};

use crate::util::{TestEnv, files_in, finish, start_paused, tiny_model};

const PAGE: u64 = 4096;

/// `generate` of a small, deterministic clip with the tiny model, writing `-o out`.
fn generate_cmd(env: &TestEnv, out: &Path) -> Command {
    let mut cmd = env.command();
    cmd.args([
        "generate",
        "a red ball",
        "--model",
        tiny_model().to_str().unwrap(),
    ])
    .args([
        "--steps", "1", "--width", "256", "--height", "256", "--seed", "3", "-o",
    ])
    .arg(out)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

fn temp_files(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|f| f.starts_with(".aivideo-"))
        .collect()
}

fn only_job(env: &TestEnv) -> aivideo::store::Job {
    let mut jobs = env.store().list(10, 0, None).unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    jobs.remove(0)
}

#[test]
fn a_second_ctrl_c_while_the_video_is_on_disk_cancels_and_removes_it() {
    let env = TestEnv::new();
    let out = env.path().join("clip.mp4");
    let (child, flag) = start_paused(&env, generate_cmd(&env, &out), "after-video");
    assert!(out.exists(), "the MP4 is written before the pause");
    for _ in 0..2 {
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(200));
    }
    // The process stops at once, although the pause would hold it for a minute.
    let (code, stderr) = finish(child);
    let _ = std::fs::remove_file(&flag);
    assert_eq!(code, 130, "{stderr}");
    let job = only_job(&env);
    assert_eq!(job.status, JobStatus::Canceled, "{job:?}");
    assert!(!out.exists(), "a complete-looking MP4 was left behind");
    assert!(!env.path().join("clip.jpg").exists());
    assert!(temp_files(env.path()).is_empty());
}

#[test]
fn one_ctrl_c_while_the_video_is_on_disk_cancels_after_the_write() {
    let env = TestEnv::new();
    let out = env.path().join("clip.mp4");
    let (child, flag) = start_paused(&env, generate_cmd(&env, &out), "after-video");
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(200));
    std::fs::remove_file(&flag).unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, 130, "{stderr}");
    assert_eq!(only_job(&env).status, JobStatus::Canceled);
    assert!(files_in(env.path()).iter().all(|f| !f.starts_with("clip")));
}

#[test]
fn sigkill_with_a_temporary_file_on_disk_is_cleaned_by_the_next_command() {
    let env = TestEnv::new();
    let out = env.path().join("clip.mp4");
    let (mut child, _flag) = start_paused(&env, generate_cmd(&env, &out), "temp-written");
    let job = only_job(&env);
    let temps = temp_files(env.path());
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert!(
        temps[0].starts_with(&format!(".aivideo-{}-", job.video_id)),
        "{temps:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let run = env.run(&["status", &job.video_id, "--json"]);
    run.expect_code(0);
    assert_eq!(run.json()["error_code"], "INTERRUPTED");
    assert!(
        temp_files(env.path()).is_empty(),
        "{:?}",
        files_in(env.path())
    );
    assert!(!out.exists());
}

/// Sets what identifies the owner of job `id` straight in the database file.
fn set_owner(env: &TestEnv, id: &str, pid: u32, identity: &str) {
    let conn = rusqlite::Connection::open(env.db_path()).unwrap();
    conn.execute(
        "UPDATE jobs SET pid = ?1, proc_start = ?2 WHERE video_id = ?3",
        rusqlite::params![pid, identity, id],
    )
    .unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_live_pid_of_another_process_or_boot_does_not_keep_a_job_processing() {
    let env = TestEnv::new();
    let store = env.store();
    let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
    let live = aivideo::store::identity_of(sleeper.id()).unwrap();
    let (boot, start) = live.split_once(':').unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let job = store.create_job("owned", &serde_json::json!({})).unwrap();
        store
            .mark_processing_as(&job.video_id, sleeper.id(), &this_host())
            .unwrap();
        ids.push(job.video_id);
    }
    // The pid is alive, but job 1 was started by an earlier process with that pid, and job 2
    // before a reboot; job 3 is really the sleeper's.
    set_owner(
        &env,
        &ids[0],
        sleeper.id(),
        &format!("{boot}:{}", start.parse::<u64>().unwrap() - 1),
    );
    set_owner(
        &env,
        &ids[1],
        sleeper.id(),
        &format!("another-boot:{start}"),
    );
    drop(store);

    let run = env.run(&["list", "--json"]);
    run.expect_code(0);
    let status = |id: &str| env.store().get(id).unwrap();
    for id in &ids[..2] {
        let job = status(id);
        assert_eq!(job.status, JobStatus::Failed, "{job:?}");
        assert_eq!(job.error_code.as_deref(), Some("INTERRUPTED"));
    }
    assert_eq!(status(&ids[2]).status, JobStatus::Processing);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    env.run(&["list"]).expect_code(0);
    assert_eq!(status(&ids[2]).status, JobStatus::Failed);
}

/// A tmpfs of `bytes` mounted for one test and unmounted after; `None` (the test then
/// skips, saying why) where mounting is not allowed.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub(crate) fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs to fill ({}); run the tests as root to test full disks",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e})");
                None
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let c = std::ffi::CString::new(self.path().to_str().unwrap()).unwrap();
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
        s.f_bavail as u64 * s.f_frsize as u64
    }

    /// Fills the file system until exactly `pages` pages stay free.
    fn leave_free(&self, pages: u64) {
        let fill = self.free().saturating_sub(pages * PAGE);
        std::fs::write(self.path().join("filler"), vec![1u8; fill as usize]).unwrap();
        assert_eq!(self.free(), pages * PAGE);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE)
}

/// The sizes of the MP4 and the thumbnail `generate_cmd` makes (it is deterministic).
fn output_sizes() -> (u64, u64) {
    static SIZES: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *SIZES.get_or_init(|| {
        let env = TestEnv::new();
        let out = env.path().join("clip.mp4");
        let o = generate_cmd(&env, &out).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        (size(&out), size(&env.path().join("clip.jpg")))
    })
}

/// The one job's stored failure: status failed, its code, and a message that states the
/// OS error once.
fn assert_failed_once(env: &TestEnv, code: &str) {
    let job = only_job(env);
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some(code), "{job:?}");
    let msg = job.error_message.unwrap();
    assert_eq!(msg.matches("No space left on device").count(), 1, "{msg}");
}

#[test]
fn a_full_disk_under_the_mp4_fails_the_job_and_leaves_nothing() {
    let (video, _) = output_sizes();
    let Some(fs) = Tmpfs::mount(pages(video) * PAGE) else {
        return;
    };
    fs.leave_free(pages(video) - 1);
    let env = TestEnv::new();
    let (code, stderr) = finish(
        generate_cmd(&env, &fs.path().join("clip.mp4"))
            .spawn()
            .unwrap(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "{stderr}"
    );
    assert_failed_once(&env, "AI_VIDEO_ERROR");
    assert_eq!(files_in(fs.path()), ["filler"]);
}

#[test]
fn a_full_disk_under_the_thumbnail_removes_the_mp4_too() {
    let (video, _) = output_sizes();
    let Some(fs) = Tmpfs::mount((pages(video) + 8) * PAGE) else {
        return;
    };
    // Room for the MP4 and not one page more.
    fs.leave_free(pages(video));
    let env = TestEnv::new();
    let (code, stderr) = finish(
        generate_cmd(&env, &fs.path().join("clip.mp4"))
            .spawn()
            .unwrap(),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("thumbnail"), "{stderr}");
    assert_failed_once(&env, "AI_VIDEO_ERROR");
    assert_eq!(files_in(fs.path()), ["filler"]);
}

#[test]
fn a_full_disk_under_the_database_and_the_outputs_records_why_and_leaves_no_files() {
    let (video, thumb) = output_sizes();
    let Some(fs) = Tmpfs::mount(4 << 20) else {
        return;
    };
    let env = TestEnv::new();
    let db = fs.path().join("jobs.sqlite3");
    let mut cmd = generate_cmd(&env, &fs.path().join("clip.mp4"));
    cmd.env("AIVIDEO_DB", &db);
    let (child, flag) = start_paused(&env, cmd, "before-video");
    // The job exists; now the two files fit exactly and the database cannot grow.
    fs.leave_free(pages(video) + pages(thumb));
    std::fs::remove_file(&flag).unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains("could not be written") && stderr.contains("removed"),
        "{stderr}"
    );
    let mut files = files_in(fs.path());
    files.retain(|f| !f.starts_with("jobs.sqlite3"));
    assert_eq!(files, ["filler"], "outputs no record owns were left");
    // Removing the files made room to record the real cause.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let store = aivideo::store::Store::open(&db).unwrap();
    let job = store.list(10, 0, None).unwrap().remove(0);
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some("DATABASE_ERROR"), "{job:?}");
}

#[test]
fn a_full_disk_under_the_database_alone_leaves_no_files_and_no_running_job() {
    let Some(fs) = Tmpfs::mount(4 << 20) else {
        return;
    };
    let env = TestEnv::new();
    let db = fs.path().join("jobs.sqlite3");
    let out = env.path().join("clip.mp4");
    let mut cmd = generate_cmd(&env, &out);
    cmd.env("AIVIDEO_DB", &db);
    let (child, flag) = start_paused(&env, cmd, "before-record");
    assert!(out.exists());
    fs.leave_free(0);
    std::fs::remove_file(&flag).unwrap();
    let (code, stderr) = finish(child);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("will show as interrupted"), "{stderr}");
    assert!(!out.exists() && !env.path().join("clip.jpg").exists());
    assert!(temp_files(env.path()).is_empty());
    // Once there is room again, the next command finishes the record.
    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let store = aivideo::store::Store::open(&db).unwrap();
    let job = store.list(10, 0, None).unwrap().remove(0);
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    assert_eq!(job.error_code.as_deref(), Some("INTERRUPTED"));
}

#[test]
fn a_second_ctrl_c_during_generation_stops_at_once_and_records_canceled() {
    let env = TestEnv::new();
    let (child, id) = crate::generate::start_long(&env);
    let started = std::time::Instant::now();
    for _ in 0..2 {
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, printed) = finish(child);
    assert_eq!(code, 130, "{printed}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "did not stop at once"
    );
    let job = env.store().get(&id).unwrap();
    assert_eq!(job.status, JobStatus::Canceled, "{job:?}");
    assert!(
        files_in(&env.output_dir()).is_empty(),
        "{:?}",
        files_in(&env.output_dir())
    );
}
