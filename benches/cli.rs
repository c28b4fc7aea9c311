//! End-to-end timings of the `aivideo` binary, measured as users meet them (a fresh
//! process each time): `list --limit 50` and `status ID` with 100,000 jobs in the store,
//! and a whole `generate` at `low` quality with its per-phase split. Medians.
//!
//! Run with `cargo bench --bench cli` (`-- --jobs N --runs N` to change the sizes).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod common;
use common::{arg, median, seed_jobs};

fn aivideo(db: &Path, args: &[&str]) -> (f64, String) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_aivideo"))
        .env("AIVIDEO_DB", db)
        .args(args)
        .output()
        .expect("run aivideo");
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    let jobs: usize = arg("--jobs", 100_000);
    let runs: usize = arg("--runs", 11);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.sqlite3");
    let t = Instant::now();
    let id = seed_jobs(&db, jobs);
    println!("seeded {jobs} jobs in {:.1} s", t.elapsed().as_secs_f64());

    let prefix = &id[..8];
    for (label, args) in [
        ("list --limit 50", vec!["list", "--limit", "50"]),
        (
            "list --limit 50 --json",
            vec!["list", "--limit", "50", "--json"],
        ),
        ("status ID (full id)", vec!["status", id.as_str()]),
        ("status ID (8-char prefix)", vec!["status", prefix]),
        ("status (system)", vec!["status"]),
    ] {
        aivideo(&db, &args); // warm the page cache
        let times: Vec<f64> = (0..runs).map(|_| aivideo(&db, &args).0).collect();
        println!(
            "{label:<28} median {:6.1} ms over {runs} runs ({jobs} jobs)",
            1000.0 * median(times)
        );
    }

    // A whole generate at low quality, in a fresh process each time.
    let out = dir.path().join("out");
    let out_s = out.to_str().unwrap();
    let mut totals = Vec::new();
    let mut phases: Vec<serde_json::Value> = Vec::new();
    for i in 0..5 {
        let seed = i.to_string();
        let (secs, stdout) = aivideo(
            &db,
            &[
                "generate",
                "a red ball bouncing on a black background",
                "--quality",
                "low",
                "--seed",
                &seed,
                "--output-dir",
                out_s,
                "--json",
            ],
        );
        totals.push(secs);
        let job: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        phases.push(job["metadata"]["timings"].clone());
    }
    let med = |key: &str| median(phases.iter().map(|p| p[key].as_f64().unwrap()).collect());
    println!(
        "generate --quality low (8 steps, 512x512, 16 frames): wall {:.3} s | job {:.3} s = text {:.4} + denoise {:.3} + resample {:.3} + encode {:.3} + thumbnail {:.3} (medians of 5; wall includes process start and model load)",
        median(totals),
        med("total_s"),
        med("text_encoding_s"),
        med("denoising_s"),
        med("resampling_s"),
        med("encoding_s"),
        med("thumbnail_s"),
    );
}
