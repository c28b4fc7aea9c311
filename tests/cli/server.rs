//! A running `aivideo serve` for the HTTP tests: started on a free loopback port, its
//! address read from its first JSON line, stopped (SIGTERM, then SIGKILL) when dropped; and
//! small HTTP helpers over `ureq` that never treat an error status as a failure.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::TestEnv;

pub struct Server {
    pub child: Option<Child>,
    pub url: String,
    /// The server's stderr, read on a thread (so that the pipe never fills).
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// `aivideo serve` with `args` on a free port (the test env's database and outputs).
    pub fn start(env: &TestEnv, args: &[&str]) -> Server {
        Server::start_with(env, args, |_| {})
    }

    pub fn start_with(env: &TestEnv, args: &[&str], f: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = env.command();
        cmd.args(["--json", "serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .env_remove("AIVIDEO_TOKEN")
            .env_remove("MAX_CONCURRENT_TASKS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        f(&mut cmd);
        let mut child = cmd.spawn().expect("start aivideo serve");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = std::sync::Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let v: Value = serde_json::from_str(&first).unwrap_or_else(|e| {
            let _ = child.kill();
            std::thread::sleep(Duration::from_millis(200));
            panic!(
                "no address line ({e}): {first:?}; stderr: {}",
                stderr.lock().unwrap()
            )
        });
        // Keep reading stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in out.lines() {});
        Server {
            child: Some(child),
            url: v["listening"].as_str().unwrap().to_string(),
            stderr,
        }
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// Submits [`small_request`] with `prompt`; the new job's id.
    pub fn submit(&self, prompt: &str) -> String {
        let r = post(&self.api("/videos/generate"), &small_request(prompt), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["video_id"].as_str().unwrap().to_string()
    }

    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().unwrap().id();
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
    }

    /// Waits for the server to exit; its exit code.
    pub fn wait(&mut self) -> i32 {
        let mut child = self.child.take().unwrap();
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("the server did not exit: {}", self.stderr.lock().unwrap());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A response: status, headers we look at, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|n| {
            let v = response.header(&n).unwrap_or("").to_string();
            (n, v)
        })
        .collect();
    let body = response.into_string().unwrap_or_default();
    Reply {
        status,
        body,
        headers,
    }
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = ureq::get(url).timeout(Duration::from_secs(30));
    for (n, v) in headers {
        req = req.set(n, v);
    }
    reply(req.call())
}

pub fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = ureq::post(url)
        .timeout(Duration::from_secs(30))
        .set("Content-Type", "application/json");
    for (n, v) in headers {
        req = req.set(n, v);
    }
    reply(req.send_string(body))
}

pub fn delete(url: &str) -> Reply {
    reply(ureq::delete(url).timeout(Duration::from_secs(30)).call())
}

/// Polls `GET /videos/{id}` until the job has ended; its last `VideoResponse`.
pub fn wait_done(server: &Server, id: &str) -> Value {
    for _ in 0..1200 {
        let v = get(&server.api(&format!("/videos/{id}")), &[]).json();
        if matches!(
            v["status"].as_str(),
            Some("completed" | "failed" | "canceled")
        ) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("job {id} did not end: {}", server.stderr.lock().unwrap());
}

/// A small, fast request body for the bundled model.
pub fn small_request(prompt: &str) -> String {
    serde_json::json!({
        "prompt": prompt, "num_steps": 2, "quality": "low", "width": 256, "height": 256, "seed": 5
    })
    .to_string()
}
