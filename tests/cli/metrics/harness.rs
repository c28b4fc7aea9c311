//! The harness of the serve-metrics tests: the server process, a plain-TCP HTTP client,
//! the real `promtool`, and sample lookups in a metrics page.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::TestEnv;

/// What Prometheus 2.x sends when it scrapes.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A running `aivideo serve-metrics`, killed if a test ends without stopping it.
pub struct MetricsServer {
    child: Child,
    /// The bound `host:port`, from the `--json` start line.
    pub addr: String,
    pub start_line: Value,
}

impl MetricsServer {
    pub fn start(env: &TestEnv) -> MetricsServer {
        MetricsServer::start_with(env, &["--addr", "127.0.0.1:0"])
    }

    /// Starts `serve-metrics --json` with `args` (which should pick port 0).
    pub fn start_with(env: &TestEnv, args: &[&str]) -> MetricsServer {
        let mut child = env
            .command()
            .args(["serve-metrics", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start aivideo serve-metrics");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if !line.is_empty() => line,
            other => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "serve-metrics printed no start line ({other:?}); status {}, stderr:\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        let start_line: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("start line is not JSON ({e}): {line}"));
        let addr = start_line["addr"].as_str().expect("addr").to_string();
        MetricsServer {
            child,
            addr,
            start_line,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http(&self.addr, "GET", path, &[])
    }

    /// Sends `signal` and waits (at most 10 s) for the process to exit; returns its status and
    /// stderr.
    pub fn stop_with(mut self, signal: libc::c_int) -> (ExitStatus, String) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signals the child this test started and still owns (not yet waited for).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "serve-metrics still running 10 s after signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// One HTTP/1.1 request over a fresh connection; reads the response by its Content-Length.
pub fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();

    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = HttpResponse {
        status,
        headers,
        body: String::new(),
    };
    let length: usize = response
        .header("content-length")
        .unwrap_or_else(|| panic!("no Content-Length: {response:?}"))
        .parse()
        .unwrap();
    if method != "HEAD" {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        response.body = String::from_utf8(body).unwrap();
    }
    response
}

/// Runs the real `promtool check metrics` on the page; any problem it reports fails the test.
pub fn promtool_check(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `promtool` ({e}); these tests need Prometheus's promtool: install it \
                 (Debian/Ubuntu: `apt-get install prometheus`) and put it on PATH"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics failed ({}):\n{report}\npage:\n{page}",
        out.status
    );
}

/// The value of the sample line that starts with `series` (name and labels, exactly).
pub fn sample(page: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    let line = page
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no sample {series} in\n{page}"));
    line[prefix.len()..]
        .parse()
        .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"))
}

pub fn sample_lines(page: &str) -> Vec<&str> {
    page.lines().filter(|l| !l.starts_with('#')).collect()
}
