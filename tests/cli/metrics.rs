//! `aivideo serve-metrics`: the real binary on a free port, scraped over plain TCP; the page is
//! checked for values and with the real `promtool check metrics`.

pub(crate) mod harness;
mod hostile;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aivideo::store::Store;
use serde_json::json;

use crate::util::TestEnv;
use harness::{MetricsServer, PROMETHEUS_ACCEPT, http, promtool_check, sample, sample_lines};

fn complete(store: &Store, prompt: &str, seconds: f64, frames: u64) {
    let job = store.create_job(prompt, &json!({})).unwrap();
    store.mark_processing(&job.video_id).unwrap();
    let video = format!("/videos/{}.mp4", job.video_id);
    store
        .mark_completed(
            &job.video_id,
            Path::new(&video),
            None,
            seconds,
            &json!({ "frames": frames }),
        )
        .unwrap();
}

/// 3 completed (0.4 s, 7 s, 900 s; 56 frames), 1 failed, 1 canceled, 1 processing, 1 pending.
fn seed(store: &Store) -> String {
    complete(store, "fast", 0.4, 16);
    complete(store, "medium", 7.0, 32);
    complete(store, "slow", 900.0, 8);
    let failed = store.create_job("failed", &json!({})).unwrap();
    store.mark_processing(&failed.video_id).unwrap();
    store
        .mark_failed(&failed.video_id, "AI_VIDEO_ERROR", "boom", None)
        .unwrap();
    let canceled = store.create_job("canceled", &json!({})).unwrap();
    store.mark_canceled(&canceled.video_id, "stopped").unwrap();
    // Owned by this (live) test process, so nothing treats it as interrupted.
    let running = store.create_job("running", &json!({})).unwrap();
    store.mark_processing(&running.video_id).unwrap();
    store.create_job("waiting", &json!({})).unwrap();
    running.video_id
}

#[test]
fn metrics_report_the_job_history_and_pass_promtool() {
    let env = TestEnv::new();
    seed(&env.store());
    let server = MetricsServer::start(&env);

    let r = server.get("/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let page = &r.body;
    for (status, n) in [
        ("pending", 1.0),
        ("processing", 1.0),
        ("completed", 3.0),
        ("failed", 1.0),
        ("canceled", 1.0),
    ] {
        assert_eq!(
            sample(page, &format!("aivideo_jobs{{status=\"{status}\"}}")),
            n
        );
    }
    assert_eq!(sample(page, "aivideo_jobs_in_progress"), 2.0);
    let h = "aivideo_job_processing_seconds";
    assert_eq!(sample(page, &format!("{h}_count")), 3.0);
    assert!(
        (sample(page, &format!("{h}_sum")) - 907.4).abs() < 1e-9,
        "{page}"
    );
    for (le, n) in [
        ("0.5", 1.0),
        ("5.0", 1.0),
        ("10.0", 2.0),
        ("600.0", 2.0),
        ("+Inf", 3.0),
    ] {
        assert_eq!(
            sample(page, &format!("{h}_bucket{{le=\"{le}\"}}")),
            n,
            "le={le}"
        );
    }
    assert_eq!(sample(page, "aivideo_frames_generated_total"), 56.0);
    assert!((sample(page, "aivideo_job_completion_ratio") - 0.6).abs() < 1e-12);
    assert_eq!(sample(page, "aivideo_database_up"), 1.0);
    let size = std::fs::metadata(env.db_path()).unwrap().len() as f64;
    assert!(
        sample(page, "aivideo_database_size_bytes") >= size,
        "{page}"
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        sample(
            page,
            &format!("aivideo_build_info{{version=\"{version}\"}}")
        ),
        1.0
    );
    promtool_check(page);

    // Prometheus asks for OpenMetrics and gets the crate's own encoding, same samples.
    let om = http(
        &server.addr,
        "GET",
        "/metrics",
        &[("Accept", PROMETHEUS_ACCEPT)],
    );
    assert_eq!(om.status, 200);
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(
        om.body.contains("# TYPE aivideo_build info\n"),
        "{}",
        om.body
    );
    assert!(
        om.body
            .contains("# TYPE aivideo_frames_generated counter\n")
    );
    assert!(
        om.body
            .contains("# UNIT aivideo_job_processing_seconds seconds\n")
    );
    let mut classic_samples = sample_lines(page);
    let mut om_samples = sample_lines(&om.body);
    // The database size may have moved between the scrapes.
    classic_samples.retain(|l| !l.starts_with("aivideo_database_size_bytes"));
    om_samples.retain(|l| !l.starts_with("aivideo_database_size_bytes"));
    assert_eq!(classic_samples, om_samples);

    let head = http(&server.addr, "HEAD", "/metrics", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(
        head.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
}

#[test]
fn health_status_and_routing() {
    let env = TestEnv::new();
    let running = seed(&env.store());
    let server = MetricsServer::start(&env);

    let health = server.get("/health");
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(
        health.json(),
        json!({ "status": "ok", "database": env.db_path() })
    );

    let status = server.get("/status");
    assert_eq!(status.status, 200, "{status:?}");
    let served = status.json();
    let cli = env.run(&["status", "--json"]).expect_code(0).json();
    for key in ["version", "jobs", "in_progress", "devices", "model"] {
        assert_eq!(
            served[key], cli[key],
            "/status and `status --json` differ at {key}"
        );
    }
    assert_eq!(served["database"]["path"], cli["database"]["path"]);
    assert_eq!(served["jobs"]["completed"], 3);
    assert_eq!(served["jobs"]["total"], 7);
    assert_eq!(served["in_progress"].as_array().unwrap().len(), 2);
    assert!(served["in_progress"].to_string().contains(&running));
    assert_eq!(served["model"]["name"], "aivideo-starter");
    let mut keys: Vec<&str> = served
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut cli_keys: Vec<&str> = cli
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort();
    cli_keys.sort();
    assert_eq!(keys, cli_keys);

    let missing = server.get("/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(http(&server.addr, "POST", "/nope", &[]).status, 404);
    for path in ["/metrics", "/health", "/status"] {
        let post = http(&server.addr, "POST", path, &[]);
        assert_eq!(post.status, 405, "POST {path}: {post:?}");
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
    }
    assert_eq!(http(&server.addr, "DELETE", "/metrics", &[]).status, 405);
    // Query strings do not change the route.
    assert_eq!(server.get("/metrics?debug=1").status, 200);
}

#[test]
fn a_missing_database_is_unhealthy_not_created_and_picked_up_once_it_exists() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    assert_eq!(server.start_line["database"], json!(env.db_path()));

    let health = server.get("/health");
    assert_eq!(health.status, 503, "{health:?}");
    let v = health.json();
    assert_eq!(v["status"], "unavailable");
    assert!(
        v["reason"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(sample(&metrics.body, "aivideo_database_up"), 0.0);
    let version = env!("CARGO_PKG_VERSION");
    let build = format!("aivideo_build_info{{version=\"{version}\"}}");
    assert_eq!(sample(&metrics.body, &build), 1.0);
    assert!(!metrics.body.contains("aivideo_jobs"), "{}", metrics.body);
    promtool_check(&metrics.body);

    assert_eq!(server.get("/status").status, 503);
    assert!(
        !env.db_path().exists(),
        "serve-metrics created the database"
    );
    assert!(!env.db_path().parent().unwrap().exists());

    // Another process creates the history: the next requests see it.
    complete(&env.store(), "first", 1.5, 4);
    assert_eq!(server.get("/health").status, 200);
    let page = server.get("/metrics").body;
    assert_eq!(sample(&page, "aivideo_database_up"), 1.0);
    assert_eq!(sample(&page, "aivideo_jobs{status=\"completed\"}"), 1.0);
}

#[test]
fn a_corrupt_database_is_unhealthy_and_left_alone() {
    let env = TestEnv::new();
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7 + 13) as u8).collect();
    std::fs::create_dir_all(env.db_path().parent().unwrap()).unwrap();
    std::fs::write(env.db_path(), &garbage).unwrap();
    let server = MetricsServer::start(&env);

    let health = server.get("/health");
    assert_eq!(health.status, 503, "{health:?}");
    let v = health.json();
    assert_eq!(v["status"], "unavailable");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("not a usable aivideo job database"),
        "{reason}"
    );

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(sample(&metrics.body, "aivideo_database_up"), 0.0);
    promtool_check(&metrics.body);
    assert_eq!(server.get("/status").status, 503);
    assert_eq!(std::fs::read(env.db_path()).unwrap(), garbage);
}

#[test]
fn jobs_written_after_start_show_up_on_the_next_scrape() {
    let env = TestEnv::new();
    let store = env.store();
    complete(&store, "before", 3.0, 8);
    let server = MetricsServer::start(&env);

    let before = server.get("/metrics").body;
    assert_eq!(sample(&before, "aivideo_jobs{status=\"completed\"}"), 1.0);
    assert_eq!(sample(&before, "aivideo_job_processing_seconds_count"), 1.0);

    // This test process is another process as far as the server is concerned.
    complete(&store, "after", 45.0, 24);
    let job = store.create_job("queued", &json!({})).unwrap();
    let after = server.get("/metrics").body;
    assert_eq!(sample(&after, "aivideo_jobs{status=\"completed\"}"), 2.0);
    assert_eq!(sample(&after, "aivideo_jobs{status=\"pending\"}"), 1.0);
    assert_eq!(sample(&after, "aivideo_jobs_in_progress"), 1.0);
    assert_eq!(sample(&after, "aivideo_job_processing_seconds_count"), 2.0);
    assert_eq!(sample(&after, "aivideo_job_processing_seconds_sum"), 48.0);
    assert_eq!(
        sample(&after, "aivideo_job_processing_seconds_bucket{le=\"30.0\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "aivideo_job_processing_seconds_bucket{le=\"60.0\"}"),
        2.0
    );
    assert_eq!(sample(&after, "aivideo_frames_generated_total"), 32.0);
    let status = server.get("/status").json();
    assert_eq!(status["in_progress"][0]["video_id"], job.video_id.as_str());
}

#[test]
fn the_server_never_writes_or_holds_a_lock() {
    let env = TestEnv::new();
    let store = env.store();
    seed(&store);
    // A job left `processing` by a process that has exited: opening the store for writing
    // would mark it failed (crash recovery). A read-only server must leave it alone.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let orphan = store.create_job("orphan", &json!({})).unwrap();
    store
        .mark_processing_as(&orphan.video_id, dead_pid, &aivideo::store::this_host())
        .unwrap();

    let server = MetricsServer::start(&env);
    let addr = server.addr.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (stop, scrapes) = (Arc::clone(&stop), Arc::clone(&scrapes));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for path in ["/metrics", "/health", "/status"] {
                    assert_eq!(http(&addr, "GET", path, &[]).status, 200, "{path}");
                    scrapes.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };

    // A writer that refuses to wait for any lock writes while the server serves.
    let writer = rusqlite::Connection::open(env.db_path()).unwrap();
    writer.busy_timeout(Duration::ZERO).unwrap();
    let started = Instant::now();
    let mut writes = 0;
    while writes < 40 || (scrapes.load(Ordering::SeqCst) < 30 && started.elapsed().as_secs() < 20) {
        writer
            .execute_batch(&format!(
                "BEGIN IMMEDIATE;
                 UPDATE jobs SET metadata = '{{\"write\": {writes}}}' WHERE prompt = 'waiting';
                 COMMIT;"
            ))
            .unwrap_or_else(|e| panic!("write {writes} had to wait for a lock: {e}"));
        writes += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::SeqCst);
    scraper.join().expect("scraper thread");
    assert!(scrapes.load(Ordering::SeqCst) >= 30);

    let still: String = writer
        .query_row(
            "SELECT status FROM jobs WHERE video_id = ?1",
            [&orphan.video_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        still, "processing",
        "the server ran crash recovery (it wrote)"
    );
    let page = server.get("/metrics").body;
    assert_eq!(sample(&page, "aivideo_jobs{status=\"processing\"}"), 2.0);
}

#[test]
fn sigterm_and_sigint_stop_the_server_with_status_0() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let env = TestEnv::new();
        let server = MetricsServer::start(&env);
        let addr = server.addr.clone();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert_ne!(port, 0, "the start line must name the bound port");
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        assert_eq!(
            server.start_line["metrics_url"],
            format!("http://{addr}/metrics")
        );
        assert_eq!(server.get("/metrics").status, 200);

        let asked = Instant::now();
        let (status, stderr) = server.stop_with(signal);
        assert_eq!(status.code(), Some(0), "signal {signal}; stderr:\n{stderr}");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
        assert!(
            stderr.contains(&format!("serving metrics on http://{addr}/metrics")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            TcpStream::connect(&addr).is_err(),
            "still listening on {addr} after exit"
        );
    }
}
