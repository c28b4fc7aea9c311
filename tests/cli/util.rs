//! Test helpers: a private temp folder per test, the built binary pointed at it, and output capture.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use aivideo::store::{Job, Store};
use serde_json::Value;
use tempfile::TempDir;

/// One test's world: its own folder, database path and output folder.
pub struct TestEnv {
    pub dir: TempDir,
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code, or -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as JSON (fails the test with both streams shown otherwise).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn assert_no_panic(&self) {
        assert_ne!(self.code, 101, "panicked: {}", self.stderr);
        assert!(
            !self.stderr.contains("panicked"),
            "panicked: {}",
            self.stderr
        );
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The job database used by the binary in this test (`AIVIDEO_DB`).
    pub fn db_path(&self) -> PathBuf {
        self.path().join("data").join("jobs.sqlite3")
    }

    /// The Hugging Face cache the binary uses in this test (`HF_HUB_CACHE`).
    pub fn hf_cache(&self) -> PathBuf {
        self.path().join("hf-cache")
    }

    pub fn output_dir(&self) -> PathBuf {
        self.path().join("outputs")
    }

    /// The store the binary uses, opened directly through the library.
    pub fn store(&self) -> Store {
        Store::open(self.db_path()).expect("open test store")
    }

    /// How many jobs the history holds (0 when no command created it yet).
    pub fn job_count(&self) -> usize {
        if !self.db_path().exists() {
            return 0;
        }
        self.store().list(10_000, 0, None).unwrap().len()
    }

    /// The binary with a clean, test-local environment and working directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aivideo"));
        cmd.current_dir(self.path())
            .env("AIVIDEO_DB", self.db_path())
            .env("AIVIDEO_OUTPUT_DIR", self.output_dir())
            .env_remove("AIVIDEO_LOG")
            .env_remove("AIVIDEO_DEVICE")
            .env_remove("AIVIDEO_MODEL")
            .env_remove("AIVIDEO_METRICS_ADDR")
            // A private Hugging Face cache: tests never read or fill the user's.
            .env("HF_HUB_CACHE", self.hf_cache())
            .env_remove("HF_HOME")
            .env_remove("HUGGINGFACE_HUB_CACHE")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_ENDPOINT")
            .env_remove("HF_TOKEN")
            .env_remove("AIVIDEO_MEMORY_LIMIT")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the binary with `args` and captures everything.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command().args(args).output().expect("run aivideo");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A small untrained model (random weights) written once per test run: generation with it
/// takes a fraction of a second, so tests of everything around the model stay fast.
pub fn tiny_model() -> &'static Path {
    static DIR: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        aivideo::models::starter::train::write_untrained("tiny", dir.path(), 11)
            .expect("write tiny model");
        dir
    })
    .path()
}

/// Files directly inside `dir` (empty when it does not exist), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Asserts that a spawned process exited with `code`, showing its stderr otherwise.
pub fn expect_exit(out: &std::process::Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a tool from ffmpeg; a missing tool fails the test with install advice.
pub fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
    match Command::new(tool).args(args).output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "{tool} not found: install ffmpeg (e.g. `apt-get update && apt-get install -y ffmpeg`) to run these tests"
            )
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

/// `ffprobe -show_streams -show_format -count_frames` of `path`, parsed; ffprobe must
/// succeed without a complaint.
pub fn ffprobe(path: &Path) -> Value {
    let p = path.to_str().unwrap();
    let out = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            p,
        ],
    );
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "ffprobe complained: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `f` every 20 ms for up to `secs` seconds.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// Starts `cmd` held at `point`; returns once it is there (the flag file exists).
pub fn start_paused(env: &TestEnv, mut cmd: Command, point: &str) -> (Child, PathBuf) {
    let flag = env.path().join(format!("pause-{point}"));
    cmd.env("AIVIDEO_FAULT_PAUSE", format!("{point}:{}", flag.display()));
    let mut child = cmd.spawn().unwrap();
    if !wait_for(60, || flag.exists()) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "never reached {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (child, flag)
}

/// Waits for `child`: its exit code and everything it printed (stdout, then stderr).
pub fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), printed)
}

/// The most jobs `processing` at one moment, from the recorded start and end times.
pub fn max_concurrent(jobs: &[Job]) -> usize {
    let mut events: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for j in jobs {
        events.push((j.started_at.unwrap(), 1));
        events.push((j.completed_at.unwrap(), -1));
    }
    // Ends before starts at the same instant.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
}
