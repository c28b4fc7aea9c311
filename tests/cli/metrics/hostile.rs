//! `serve-metrics` against hostile and broken clients: oversized request lines and headers,
//! endless and idle connections, garbage, and listening beyond loopback.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use super::harness::{MetricsServer, http};
use crate::util::TestEnv;

/// What the server sent on one connection before closing it.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn body(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses everything a server sent; fails unless it is one complete response.
fn parse(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes);
    let end = text
        .find("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {text:?}"));
    let head = text[..end].to_string();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let raw = Raw {
        status,
        head,
        body: bytes[end + 4..].to_vec(),
    };
    let length: usize = raw
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length: {raw:?}"))
        .parse()
        .unwrap();
    assert_eq!(raw.body.len(), length, "{raw:?}");
    assert_eq!(raw.header("connection"), Some("close"), "{raw:?}");
    raw
}

/// Reads until the server closes the connection (a reset after the response counts as
/// closing); at most `limit` bytes.
fn read_to_close(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while got.len() < limit {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !got.is_empty() => break,
            Err(e) => panic!("reading the response failed after {} bytes: {e}", got.len()),
        }
    }
    got
}

/// Sends `request` on a fresh connection from another thread (the server may close before
/// taking it all, so write errors are expected) and returns the response.
fn exchange(addr: &str, request: Vec<u8>) -> Raw {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
        let _ = writer.shutdown(Shutdown::Write);
    });
    let got = read_to_close(&mut stream, 1 << 20);
    sender.join().unwrap();
    parse(&got)
}

/// The server's peak resident memory, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn still_serving(server: &MetricsServer) {
    let r = server.get("/metrics");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("aivideo_build_info"), "{}", r.body);
}

#[test]
fn a_huge_request_line_is_414_without_echo_and_serving_goes_on() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    let path = format!("/secret-{}", "x".repeat(1_000_000));
    let request = format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = exchange(&server.addr, request.into_bytes());
    assert_eq!(r.status, 414, "{}", r.head);
    assert!(r.body.len() < 200, "{} bytes", r.body.len());
    let body = r.body();
    assert!(!body.contains("secret") && !body.contains("xxx"), "{body}");
    assert!(body.contains("8192"), "{body}");
    still_serving(&server);
}

#[test]
fn huge_or_numerous_headers_are_431_and_serving_goes_on() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(1_000_000)
    );
    let r = exchange(&server.addr, big.into_bytes());
    assert_eq!(r.status, 431, "{}", r.head);
    assert!(!r.body().contains("bbb"), "{}", r.body());
    still_serving(&server);

    let many = format!(
        "GET /metrics HTTP/1.1\r\nHost: h\r\n{}\r\n",
        "X-Small: v\r\n".repeat(1000)
    );
    let r = exchange(&server.addr, many.into_bytes());
    assert_eq!(r.status, 431, "{}", r.head);
    // Just within the limits: 63 more fields, 16 KiB in all.
    let fits = format!(
        "GET /metrics HTTP/1.1\r\nHost: h\r\n{}X-Fill: {}\r\n\r\n",
        "X-Small: v\r\n".repeat(62),
        "f".repeat(16 * 1024 - 7 - 62 * 10 - 8)
    );
    let r = exchange(&server.addr, fits.into_bytes());
    assert_eq!(r.status, 200, "{}", r.head);
    still_serving(&server);
}

#[test]
fn an_endless_request_is_cut_off_without_being_buffered() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    still_serving(&server);
    let before = peak_rss_kib(server.pid());

    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let total = 50 * 1024 * 1024;
    let mut sent = 0;
    let failure = loop {
        if sent >= total {
            break None;
        }
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break Some(e),
        }
    };
    let failure = failure.unwrap_or_else(|| panic!("the server took all {sent} bytes"));
    assert!(
        matches!(
            failure.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "the write failed with {failure} after {sent} bytes instead of the server closing"
    );
    // What the client got through is the kernel's buffers and the server's bounded drain.
    assert!(sent < 20 * 1024 * 1024, "{sent} bytes sent before the cut");

    let after = peak_rss_kib(server.pid());
    assert!(
        after < 64 * 1024,
        "peak RSS {after} KiB (was {before} KiB before the flood)"
    );
    assert!(
        after < before + 8 * 1024,
        "peak RSS grew from {before} KiB to {after} KiB"
    );
    still_serving(&server);
}

#[test]
fn idle_and_dripping_clients_do_not_hold_up_others_and_are_cut_off() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    let started = Instant::now();
    let mut idle = TcpStream::connect(&server.addr).unwrap();
    let mut drip = TcpStream::connect(&server.addr).unwrap();
    drip.write_all(b"GET /metrics HTTP/1.1\r\nHost: h\r\nX-Slow: ")
        .unwrap();
    let mut dripper = drip.try_clone().unwrap();
    // One byte every 200 ms: each read is quick, the whole head never ends.
    let drip_thread = std::thread::spawn(move || {
        for _ in 0..60 {
            std::thread::sleep(Duration::from_millis(200));
            if dripper.write_all(b"a").is_err() {
                return;
            }
        }
    });

    let asked = Instant::now();
    let health = server.get("/health");
    assert!(health.status == 503 || health.status == 200, "{health:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "another client waited {:?}",
        asked.elapsed()
    );
    still_serving(&server);

    // The dripping client is answered 408 at the head deadline (5 s), the silent one is just
    // closed.
    let r = parse(&read_to_close(&mut drip, 1 << 16));
    let cut = started.elapsed();
    assert_eq!(r.status, 408, "{}", r.head);
    assert!(
        cut >= Duration::from_millis(4500) && cut < Duration::from_secs(9),
        "{cut:?}"
    );
    assert!(read_to_close(&mut idle, 1 << 16).is_empty());
    assert!(started.elapsed() < Duration::from_secs(10));
    drip_thread.join().unwrap();
    still_serving(&server);
}

#[test]
fn connections_beyond_the_cap_are_turned_away_until_others_end() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    let open: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    let r = http(&server.addr, "GET", "/metrics", &[]);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(open);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = server.get("/metrics");
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still turned away: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn not_found_answers_never_echo_the_request() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    let r = server.get("/echo-me-<script>?q=echo-me");
    assert_eq!(r.status, 404);
    assert!(!r.body.contains("echo-me"), "{}", r.body);
    assert!(!r.body.contains("script"), "{}", r.body);
    let head = http(&server.addr, "HEAD", "/echo-me", &[]);
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty());
    let post = http(&server.addr, "POST", "/metrics?echo-me", &[]);
    assert_eq!(post.status, 405);
    assert!(!post.body.contains("echo-me"), "{}", post.body);
}

#[test]
fn malformed_requests_are_400_and_serving_goes_on() {
    let env = TestEnv::new();
    let server = MetricsServer::start(&env);
    for (request, status) in [
        // A TLS ClientHello on the plain HTTP port.
        (
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xd4\x9a"[..],
            400,
        ),
        (b"\xff\xfe\xfd garbage \x00\x01\r\n\r\n", 400),
        (b"G(T /metrics HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /metrics\r\nHost: h\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nHo", 400),
        (b"GET /metrics HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"get /metrics HTTP/1.1\r\nHost: h\r\n\r\n", 405),
        // Well-formed, for comparison: HTTP/1.0 needs no Host.
        (b"GET /metrics HTTP/1.0\r\n\r\n", 200),
    ] {
        let r = exchange(&server.addr, request.to_vec());
        let shown = String::from_utf8_lossy(request);
        assert_eq!(r.status, status, "{shown:?}: {}", r.head);
        if status != 200 {
            assert!(r.body.len() < 200, "{shown:?}: {}", r.body());
        }
        still_serving(&server);
    }
}

#[test]
fn a_remote_address_needs_allow_remote_and_warns() {
    let env = TestEnv::new();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let run = env.run(&["serve-metrics", "--addr", addr]);
        run.expect_code(2);
        assert!(run.stderr.contains("--allow-remote"), "{}", run.stderr);
        assert!(
            run.stderr.contains("not a loopback address"),
            "{}",
            run.stderr
        );
    }
    let from_env = env
        .command()
        .args(["serve-metrics"])
        .env("AIVIDEO_METRICS_ADDR", "0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(from_env.status.code(), Some(2));

    let server = MetricsServer::start_with(&env, &["--addr", "0.0.0.0:0", "--allow-remote"]);
    let port = server
        .addr
        .strip_prefix("0.0.0.0:")
        .expect("bound on 0.0.0.0");
    let r = http(&format!("127.0.0.1:{port}"), "GET", "/metrics", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let (status, stderr) = server.stop_with(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("warning: "), "{stderr}");
    assert!(
        stderr.contains("readable by anyone who can reach it"),
        "{stderr}"
    );
}
