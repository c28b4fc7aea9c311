//! Hub downloads and the cache, measured side by side: the download throughput of
//! `aivideo::hub::fetch` from the loopback mock Hub against `curl` fetching the same blob in
//! the same run (as a ratio), and the time `aivideo models list` takes with 20 repositories
//! in the cache. Medians of `--repeats` runs (default 5).
//!
//! ```text
//! cargo bench --bench hub -- [--mb 256] [--repeats 5]
//! ```

mod common;
#[allow(dead_code, unused_imports)]
#[path = "../tests/cli/hub_mock/mod.rs"]
mod hub_mock;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aivideo::hub::{FetchProgress, HubCache, HubClient, RepoId, fetch};
use common::{arg, median};
use hub_mock::{Files, MockHub, MockRepo};

struct Quiet;

impl FetchProgress for Quiet {
    fn start(&mut self, _: u64, _: usize) {}
    fn advance(&mut self, _: u64) {}
    fn file_done(&mut self, _: &str, _: u64, _: bool) {}
    fn using_cache(&mut self, _: &str) {}
}

/// `n` bytes that do not compress (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn throughput(mb: usize, repeats: usize) {
    let bytes = mb << 20;
    let mut files = Files::new();
    files.insert(
        "config.json".into(),
        br#"{"weights": "model.safetensors"}"#.to_vec(),
    );
    files.insert("model.safetensors".into(), noise(bytes));
    let hub = MockHub::start(vec![MockRepo::from_files("bench/big", files)]);
    let repo = RepoId::parse("bench/big").unwrap();
    let client = HubClient::new(&hub.url(), None, false);
    let (mut ours, mut curl) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let dir = tempfile::tempdir().unwrap();
        let cache = HubCache::at(dir.path());
        let t = Instant::now();
        let got = fetch(
            &cache,
            &client,
            &repo,
            "main",
            &|_: &Path| false,
            &mut Quiet,
        )
        .unwrap();
        ours.push(t.elapsed().as_secs_f64());
        assert!(got.downloaded_bytes as usize >= bytes);

        // curl follows the same redirect to the same blob and writes it to the same disk.
        let out = dir.path().join("curl.bin");
        let t = Instant::now();
        let status = Command::new("curl")
            .args(["-sSfL", "-o"])
            .arg(&out)
            .arg(format!(
                "{}/bench/big/resolve/main/model.safetensors",
                hub.url()
            ))
            .status()
            .expect("curl is needed for this benchmark");
        curl.push(t.elapsed().as_secs_f64());
        assert!(status.success());
        assert_eq!(std::fs::metadata(&out).unwrap().len() as usize, bytes);
    }
    let (a, c) = (median(ours), median(curl));
    let mbps = |s: f64| bytes as f64 / 1e6 / s;
    println!(
        "download {mb} MiB over loopback: aivideo {a:.3} s ({:.0} MB/s), curl {c:.3} s ({:.0} MB/s), time ratio {:.2}",
        mbps(a),
        mbps(c),
        a / c
    );
}

fn list_time(repeats: usize) {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wan/tiny-pipeline");
    let repos: Vec<MockRepo> = (0..20)
        .map(|i| MockRepo::from_dir(&format!("bench/wan-{i:02}"), &pipeline))
        .collect();
    let hub = MockHub::start(repos);
    let client = HubClient::new(&hub.url(), None, false);
    let cache = HubCache::at(dir.path());
    for i in 0..20 {
        let repo = RepoId::parse(&format!("bench/wan-{i:02}")).unwrap();
        fetch(
            &cache,
            &client,
            &repo,
            "main",
            &|_: &Path| false,
            &mut Quiet,
        )
        .unwrap();
    }
    hub.stop();
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_aivideo"))
            .args(["models", "list", "--json"])
            .env("HF_HUB_CACHE", dir.path())
            .output()
            .unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["cache"]["repos"].as_array().unwrap().len(), 20);
    }
    println!(
        "models list with 20 cached repositories: {:.1} ms",
        median(times) * 1000.0
    );
}

fn main() {
    let repeats = arg("--repeats", 5usize);
    throughput(arg("--mb", 256usize), repeats);
    list_time(repeats);
}
