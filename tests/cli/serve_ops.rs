//! `aivideo serve` under load and faults: 50 concurrent submissions with at most N jobs
//! running, a server killed mid-queue and restarted, graceful SIGTERM, the token, the rate
//! limit and the size limits.

use std::collections::HashSet;
use std::time::Duration;

use aivideo::store::JobStatus;

use crate::server::{Server, get, post, small_request, wait_done};
use crate::util::{TestEnv, max_concurrent, wait_for};

#[test]
fn fifty_concurrent_submissions_all_complete_with_at_most_n_running() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "2"]);
    let url = server.api("/videos/generate");
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || post(&url, &small_request(&format!("ball {i}")), &[]))
        })
        .collect();
    let ids: Vec<String> = handles
        .into_iter()
        .map(|h| {
            let r = h.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["video_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 50);
    for id in &ids {
        assert_eq!(wait_done(&server, id)["status"], "completed");
    }
    let max = max_concurrent(&env.store().list(10_000, 0, None).unwrap());
    assert!(
        (1..=2).contains(&max),
        "{max} jobs were processing at once with --workers 2"
    );
    assert!(
        env.store()
            .list(100, 0, None)
            .unwrap()
            .iter()
            .all(|j| j.attempts == 1)
    );
}

#[test]
fn a_server_killed_mid_queue_loses_nothing_and_runs_nothing_twice_after_a_restart() {
    let env = TestEnv::new();
    let mut server = Server::start(&env, &["--workers", "1", "--retries", "1"]);
    let ids: Vec<String> = (0..8)
        .map(|i| {
            let r = post(
                &server.api("/videos/generate"),
                &small_request(&format!("dot {i}")),
                &[],
            );
            r.json()["video_id"].as_str().unwrap().to_string()
        })
        .collect();
    let store = env.store();
    assert!(wait_for(60, || store
        .count(Some(JobStatus::Completed))
        .unwrap()
        >= 1));
    server.signal(libc::SIGKILL);
    server.wait();
    let completed_before: HashSet<String> = store
        .list(100, 0, Some(JobStatus::Completed))
        .unwrap()
        .into_iter()
        .map(|j| j.video_id)
        .collect();
    let mtimes: Vec<_> = completed_before
        .iter()
        .map(|id| {
            std::fs::metadata(env.output_dir().join(format!("{id}.mp4")))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();

    let server = Server::start(&env, &["--workers", "1", "--retries", "1"]);
    for id in &ids {
        assert_eq!(wait_done(&server, id)["status"], "completed", "{id}");
    }
    let jobs = store.list(100, 0, None).unwrap();
    assert_eq!(jobs.len(), 8, "nothing lost, nothing added");
    // Only a job that was running when the server died ran again.
    let rerun: Vec<_> = jobs.iter().filter(|j| j.attempts > 1).collect();
    assert!(rerun.len() <= 1, "{rerun:?}");
    for j in &rerun {
        assert!(!completed_before.contains(&j.video_id));
        assert_eq!(j.metadata["interruptions"].as_array().unwrap().len(), 1);
    }
    // Jobs completed before the kill were not run again: their files are untouched.
    for (id, before) in completed_before.iter().zip(mtimes) {
        let now = std::fs::metadata(env.output_dir().join(format!("{id}.mp4")))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(now, before, "{id} was written again");
    }
}

#[test]
fn sigterm_stops_accepting_lets_the_running_job_finish_and_keeps_the_queue() {
    let env = TestEnv::new();
    let flag = env.path().join("pause");
    let mut server = Server::start_with(&env, &["--workers", "1"], |cmd| {
        cmd.env(
            "AIVIDEO_FAULT_PAUSE",
            format!("after-first-step:{}", flag.display()),
        );
    });
    let (a, b) = (server.submit("first"), server.submit("second"));
    assert!(
        wait_for(60, || flag.exists()),
        "the first job never started"
    );
    server.signal(libc::SIGTERM);
    // The listener closes: new connections are refused while the job finishes.
    let url = server.api("/system/health");
    assert!(wait_for(30, || ureq::get(&url)
        .timeout(Duration::from_secs(2))
        .call()
        .is_err()));
    std::fs::remove_file(&flag).unwrap();
    assert_eq!(server.wait(), 0, "{}", server.stderr.lock().unwrap());
    let store = env.store();
    let status = |id: &str| store.get(id).unwrap().status;
    assert_eq!(status(&a), JobStatus::Completed);
    assert_eq!(
        status(&b),
        JobStatus::Pending,
        "queued jobs stay queued for the next start"
    );
}

#[test]
fn a_token_is_required_off_loopback_and_enforced_when_set() {
    let env = TestEnv::new();
    let run = env.run(&["--json", "serve", "--addr", "0.0.0.0:0"]);
    run.expect_code(2);
    assert!(run.json()["error"].as_str().unwrap().contains("--token"));
    let run = env.run(&["serve", "--addr", "127.0.0.1:0", "--token", "short"]);
    run.expect_code(2);

    // Characters that URLs escape: the query form must be decoded before comparing.
    let token = "0123456789+abcdef/0123=";
    let in_query = "0123456789%2Babcdef%2F0123%3D";
    let server = Server::start(&env, &["--workers", "0", "--token", token]);
    let bearer = format!("Bearer {token}");
    let denied = post(&server.api("/videos/generate"), &small_request("x"), &[]);
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(denied.json()["error_code"], "USAGE_ERROR");
    let wrong = get(
        &server.api("/videos/"),
        &[("Authorization", "Bearer 0123456789+abcdef/0124=")],
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(env.job_count(), 0);
    let ok = post(
        &server.api("/videos/generate"),
        &small_request("x"),
        &[("Authorization", &bearer)],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    let id = ok.json()["video_id"].as_str().unwrap().to_string();
    assert_eq!(
        get(
            &server.api(&format!("/videos/{id}?access_token={in_query}")),
            &[]
        )
        .status,
        200
    );
    // The health check and the page need no token.
    assert_eq!(get(&server.api("/system/health"), &[]).status, 200);
    assert_eq!(get(&format!("{}/", server.url), &[]).status, 200);
    assert_eq!(get(&server.api("/system/metrics"), &[]).status, 401);
}

#[test]
fn a_burst_beyond_the_rate_gets_429_with_retry_after() {
    let env = TestEnv::new();
    let server = Server::start(
        &env,
        &["--workers", "0", "--rate-limit", "1", "--rate-burst", "3"],
    );
    let url = server.api("/videos/");
    let codes: Vec<u16> = (0..5).map(|_| get(&url, &[]).status).collect();
    assert_eq!(&codes[..3], &[200, 200, 200]);
    let limited = get(&url, &[]);
    assert_eq!(limited.status, 429);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    assert_eq!(limited.json()["error_code"], "USAGE_ERROR");
    // The health check stays reachable for monitors.
    assert_eq!(get(&server.api("/system/health"), &[]).status, 200);
    std::thread::sleep(Duration::from_millis(1100 * wait));
    assert_eq!(get(&url, &[]).status, 200);
}

#[test]
fn oversize_bodies_urls_and_headers_are_refused_without_echo() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    let marker = "ZQXJ";
    let huge_prompt = marker.repeat(100_000);
    let body = format!("{{\"prompt\": \"{huge_prompt}\"}}");
    let r = post(&server.api("/videos/generate"), &body, &[]);
    assert_eq!(r.status, 413);
    assert!(!r.body.contains(marker));

    let long = format!("{}?q={}", server.api("/videos/"), marker.repeat(3000));
    let r = get(&long, &[]);
    assert_eq!(r.status, 414);
    assert!(!r.body.contains(marker));

    let big = marker.repeat(5000);
    let r = get(&server.api("/videos/"), &[("X-Big", &big)]);
    assert_eq!(r.status, 431);
    assert!(!r.body.contains(marker));
    assert_eq!(env.job_count(), 0);
}

#[test]
fn slow_flooding_and_surplus_connections_cannot_hold_the_server() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    let addr = server.url.trim_start_matches("http://").to_string();
    let health = server.api("/system/health");

    // A head dripped one byte at a time is cut off at the head deadline (5 s); others are
    // served meanwhile.
    let started = std::time::Instant::now();
    let mut drip = TcpStream::connect(&addr).unwrap();
    drip.write_all(b"GET /api/v1/system/health HTTP/1.1\r\nHost: h\r\nX-Slow: ")
        .unwrap();
    let mut dripper = drip.try_clone().unwrap();
    let dripping = std::thread::spawn(move || {
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(200));
            if dripper.write_all(b"a").is_err() {
                return;
            }
        }
    });
    assert_eq!(get(&health, &[]).status, 200);
    drip.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = drip.read_to_end(&mut rest);
    let cut = started.elapsed();
    assert!(
        cut >= Duration::from_millis(4500) && cut < Duration::from_secs(10),
        "{cut:?}"
    );
    dripping.join().unwrap();

    // An endless head is refused once it passes the bound, never buffered whole.
    let mut flood = TcpStream::connect(&addr).unwrap();
    flood
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0usize;
    while sent < 50 * 1024 * 1024 {
        match flood.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < 20 * 1024 * 1024, "{sent} bytes taken before the cut");
    assert_eq!(get(&health, &[]).status, 200);

    // Connections beyond the cap get 503 with Retry-After until others close.
    let open: Vec<TcpStream> = (0..256)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let turned = get(&health, &[]);
    assert_eq!(turned.status, 503, "{}", turned.body);
    assert_eq!(turned.header("retry-after"), Some("1"));
    drop(open);
    assert!(wait_for(10, || get(&health, &[]).status == 200));
}
