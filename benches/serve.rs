//! Throughput and latency of `aivideo serve` with 100,000 jobs in the history: requests per
//! second, p50 and p99 of `GET /api/v1/videos/{id}` and `GET /api/v1/videos/?limit=50` from
//! keep-alive connections, and the latency of `POST /api/v1/videos/generate` (enqueue only,
//! no workers). The server is the release binary on loopback, with the rate limit off; the
//! load generator is this process (minimal HTTP/1.1 clients on plain sockets), sharing the
//! machine's cores with the server.
//!
//! Run with `cargo bench --bench serve` (`-- --jobs N --secs S --connections C` to change
//! the sizes).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{arg, seed_jobs};

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        Conn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    /// Sends one request and reads the whole response; its status.
    fn call(&mut self, method: &str, path: &str, body: &str) -> u16 {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).unwrap();
        status
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `connections` clients calling `path` for `secs` seconds: (requests/s, p50 ms, p99 ms).
fn load(addr: &str, path: &str, connections: usize, secs: f64) -> (f64, f64, f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            let (addr, path) = (addr.to_string(), path.to_string());
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr);
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    assert_eq!(conn.call("GET", &path, ""), 200);
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_by(f64::total_cmp);
    (
        all.len() as f64 / secs,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

fn start_server(db: &std::path::Path, out: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aivideo"))
        .env("AIVIDEO_DB", db)
        .args([
            "--json",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--rate-limit",
            "0",
        ])
        .arg("--output-dir")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aivideo serve");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&first).expect("address line");
    let url = v["listening"].as_str().unwrap();
    (child, url.trim_start_matches("http://").to_string())
}

fn main() {
    let jobs: usize = arg("--jobs", 100_000);
    let secs: f64 = arg("--secs", 5.0);
    let connections: usize = arg("--connections", 8);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("jobs.sqlite3");
    let t = Instant::now();
    let id = seed_jobs(&db, jobs);
    println!("seeded {jobs} jobs in {:.1} s", t.elapsed().as_secs_f64());
    let (mut server, addr) = start_server(&db, &dir.path().join("out"));

    for (label, path) in [
        ("GET /videos/{id}", format!("/api/v1/videos/{id}")),
        (
            "GET /videos/?limit=50",
            "/api/v1/videos/?limit=50".to_string(),
        ),
    ] {
        load(&addr, &path, connections, 1.0); // warm up
        let (rps, p50, p99) = load(&addr, &path, connections, secs);
        println!(
            "{label:<24} {rps:8.0} requests/s  p50 {p50:6.2} ms  p99 {p99:6.2} ms  ({connections} connections, {secs} s, {jobs} jobs)"
        );
    }

    let mut conn = Conn::open(&addr);
    let body = r#"{"prompt": "a red ball bouncing", "quality": "low"}"#;
    let mut lat: Vec<f64> = (0..500)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(conn.call("POST", "/api/v1/videos/generate", body), 200);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    println!(
        "POST /videos/generate    p50 {:6.2} ms  p99 {:6.2} ms  (500 sequential submissions, one connection)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let _ = server.kill();
    let _ = server.wait();
}
