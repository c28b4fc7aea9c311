//! The OpenAPI document at `/api/v1/openapi.json` against the server that serves it: every
//! documented route answers, and Schemathesis (pinned in `tests/openapi/requirements.txt`)
//! runs all of its checks: no 5xx, every status, header, content type and body as
//! documented, with and without a token, and under the rate limit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::{Server, get, post, small_request};
use crate::util::TestEnv;

const TOKEN: &str = "openapi-test-token-0123456789";

fn delete(url: &str, headers: &[(&str, &str)]) -> crate::server::Reply {
    let mut req = ureq::delete(url).timeout(Duration::from_secs(30));
    for (n, v) in headers {
        req = req.set(n, v);
    }
    match req.call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => crate::server::Reply {
            status: r.status(),
            headers: Vec::new(),
            body: r.into_string().unwrap_or_default(),
        },
        Err(e) => panic!("DELETE {url}: {e}"),
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Schemathesis version `tests/openapi/requirements.txt` pins.
fn pinned_version() -> String {
    let text = std::fs::read_to_string(repo().join("tests/openapi/requirements.txt")).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("schemathesis=="))
        .expect("requirements.txt pins schemathesis")
        .to_string()
}

/// `$AIVIDEO_SCHEMATHESIS`, else `schemathesis` on `PATH`, else the venv `.ci/run` makes;
/// it must be the pinned version.
fn schemathesis() -> PathBuf {
    let install = "python3 -m venv /opt/aivideo-schemathesis && \
        /opt/aivideo-schemathesis/bin/pip install -r tests/openapi/requirements.txt \
        (or set AIVIDEO_SCHEMATHESIS to a schemathesis binary)";
    let on_path = || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join("schemathesis"))
            .find(|p| p.is_file())
    };
    let venv = PathBuf::from("/opt/aivideo-schemathesis/bin/schemathesis");
    let bin = std::env::var_os("AIVIDEO_SCHEMATHESIS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(on_path)
        .or_else(|| venv.is_file().then_some(venv))
        .unwrap_or_else(|| panic!("schemathesis is not installed; install it with: {install}"));
    let out = Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install it with: {install}",
                bin.display()
            )
        });
    let version = String::from_utf8_lossy(&out.stdout);
    let pinned = pinned_version();
    assert!(
        version.trim().ends_with(&format!("version {pinned}")),
        "{} is {:?}, not the pinned {pinned}; install it with: {install}",
        bin.display(),
        version.trim()
    );
    bin
}

/// (status, METHOD, path pattern) of every response in a Schemathesis HAR report.
fn statuses_in_har(dir: &Path) -> BTreeSet<(u16, String, String)> {
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let har: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for e in har["log"]["entries"].as_array().unwrap() {
            let url = e["request"]["url"].as_str().unwrap();
            let path = url.splitn(4, '/').nth(3).unwrap_or("");
            let path = path.split('?').next().unwrap_or("");
            // `/api/v1/videos/<id>/...` as its pattern.
            let mut parts: Vec<&str> = path.split('/').collect();
            if parts.len() > 3
                && parts[2] == "videos"
                && !matches!(parts[3], "generate" | "batch" | "")
            {
                parts[3] = "{id}";
            }
            seen.insert((
                e["response"]["status"].as_u64().unwrap() as u16,
                e["request"]["method"].as_str().unwrap().to_string(),
                format!("/{}", parts.join("/")),
            ));
        }
    }
    seen
}

/// Runs Schemathesis with every check but `exclude` against `server`, `job_ids` as likely
/// values of `{id}`, for at most `max_time_s` (its fuzzing and stateful phases repeat until
/// then); panics with its output unless it passes. The statuses it saw.
fn run_schemathesis(
    server: &Server,
    job_ids: &[&str],
    max_time_s: u64,
    exclude: &[&str],
    extra: &[&str],
) -> BTreeSet<(u16, String, String)> {
    let bin = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        std::fs::read_to_string(repo().join("tests/openapi/schemathesis.toml")).unwrap();
    if !job_ids.is_empty() {
        let ids: Vec<String> = job_ids.iter().map(|id| format!("{id:?}")).collect();
        config.push_str(&format!(
            "\n[dictionaries.jobs]\nvalues = [{}]\n\n[parameters]\n\
             \"path.id\" = {{ dictionary = \"jobs\", probability = 0.5 }}\n",
            ids.join(", ")
        ));
    }
    let config_path = dir.path().join("schemathesis.toml");
    std::fs::write(&config_path, config).unwrap();
    let log = dir.path().join("schemathesis.log");
    let reports = dir.path().join("reports");
    let max_time = max_time_s.to_string();
    let mut cmd = Command::new(&bin);
    cmd.current_dir(dir.path())
        .arg("--config-file")
        .arg(&config_path)
        .args(["run", &server.api("/openapi.json"), "--checks", "all"])
        // `use_after_free`: `DELETE /videos/{id}` cancels and keeps the job's record (as
        // documented), while this check expects a deleted resource to be gone.
        .arg("--exclude-checks")
        .arg([&["use_after_free"], exclude].concat().join(","))
        .args(["--max-examples", "25", "--max-time", &max_time])
        .args(["--request-timeout", "5", "--generation-database", "none"])
        .args(["--no-color", "--report", "har", "--report-dir"])
        .arg(&reports)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("stderr")).unwrap(),
        ));
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start schemathesis");
    let deadline = Duration::from_secs(max_time_s + 90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    eprintln!(
        "schemathesis took {:.0} s; its summary:\n{}",
        started.elapsed().as_secs_f64(),
        output.rsplit_once("== SUMMARY ==").map_or("", |(_, s)| s)
    );
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "schemathesis failed ({s}):\n{output}\nserver stderr:\n{}",
            server.stderr.lock().unwrap()
        ),
        None => panic!("schemathesis ran past {deadline:?}:\n{output}"),
    }
    statuses_in_har(&reports)
}

/// A server for Schemathesis: one worker on one thread (the fuzzer's jobs queue up behind
/// it), and one completed job, whose id is returned.
fn fuzz_server(env: &TestEnv, args: &[&str], auth: &[(&str, &str)]) -> (Server, String) {
    let server = Server::start_with(env, args, |cmd| {
        cmd.env("RAYON_NUM_THREADS", "1");
    });
    let r = post(
        &server.api("/videos/generate"),
        &small_request("a green circle moving left"),
        auth,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["video_id"].as_str().unwrap().to_string();
    let mut done = None;
    for _ in 0..1200 {
        let v = get(&server.api(&format!("/videos/{id}")), auth).json();
        if v["status"] != "pending" && v["status"] != "processing" {
            done = Some(v);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = done.expect("the seed job ended");
    assert_eq!(done["status"], "completed", "{done}");
    (server, id)
}

#[test]
fn the_document_needs_no_token_is_openapi_3_and_every_documented_route_is_served() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0", "--token", TOKEN]);
    let r = get(&server.api("/openapi.json"), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    assert!(r.header("x-request-id").is_some());
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    // Other routes still need the token.
    assert_eq!(get(&server.api("/videos"), &[]).status, 401);

    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        let url = format!(
            "{}{}",
            server.url,
            path.replace("{id}", "0b7c9d43-31a5-4b8e-9d7e-2f0a8e5c1d6a")
        );
        for method in item.as_object().unwrap().keys() {
            operations += 1;
            let r = match method.as_str() {
                "get" => get(&url, &auth),
                "post" => post(&url, "{}", &auth),
                "delete" => delete(&url, &auth),
                other => panic!("{other} {path} is documented but not tested here"),
            };
            // Served: not the router's fallbacks (no such endpoint, wrong method).
            assert_ne!(r.status, 405, "{method} {path}: {}", r.body);
            assert!(
                !r.body.contains("no such endpoint"),
                "{method} {path}: {}",
                r.body
            );
            let documented = &item[method]["responses"];
            assert!(
                documented.get(r.status.to_string()).is_some(),
                "{method} {path} answered {}, which is not documented: {}",
                r.status,
                r.body
            );
        }
    }
    assert!(operations >= 15, "{operations} operations");

    // An id that is not UTF-8 names no job: 404 in the error shape, as documented (not
    // axum's plain-text 400).
    for path in ["/videos/%FF", "/videos/%C3%28/download", "/videos/%FF/ws"] {
        let r = get(&server.api(path), &auth);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert_eq!(r.json()["error_code"], "NOT_FOUND", "{path}");
    }
}

#[test]
fn schemathesis_all_checks_pass_without_a_token() {
    let env = TestEnv::new();
    let (server, id) = fuzz_server(&env, &["--workers", "1", "--rate-limit", "0"], &[]);
    let seen = run_schemathesis(&server, &[&id], 70, &[], &[]);
    // The run reached the answers that need data, not only the errors.
    let saw = |status: u16, method: &str, path: &str| {
        seen.contains(&(status, method.to_string(), path.to_string()))
    };
    assert!(saw(200, "POST", "/api/v1/videos/generate"), "{seen:?}");
    assert!(saw(200, "GET", "/api/v1/videos/{id}"), "{seen:?}");
    assert!(
        saw(200, "GET", "/api/v1/videos/{id}/download")
            || saw(206, "GET", "/api/v1/videos/{id}/download"),
        "{seen:?}"
    );
    assert!(saw(200, "GET", "/api/v1/videos/{id}/events"), "{seen:?}");
    assert!(saw(405, "PUT", "/api/v1/videos/generate"), "{seen:?}");
}

#[test]
fn schemathesis_all_checks_pass_with_a_token() {
    let env = TestEnv::new();
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let (server, id) = fuzz_server(
        &env,
        &["--workers", "1", "--rate-limit", "0", "--token", TOKEN],
        &auth,
    );
    let header = format!("Authorization: {bearer}");
    let seen = run_schemathesis(&server, &[&id], 40, &[], &["-H", &header]);
    assert!(
        seen.iter().any(|(status, _, _)| *status == 401),
        "requests without the token were tried: {seen:?}"
    );
    assert!(
        seen.contains(&(200, "GET".into(), "/api/v1/videos/{id}".into())),
        "{seen:?}"
    );
}

#[test]
fn schemathesis_finds_rate_limited_answers_as_documented() {
    let env = TestEnv::new();
    let server = Server::start(
        &env,
        &["--workers", "0", "--rate-limit", "2", "--rate-burst", "5"],
    );
    let id = post(
        &server.api("/videos/generate"),
        &small_request("a dot"),
        &[],
    )
    .json()["video_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The answers' conformance only: whether a refused request would have been accepted
    // is not for a rate-limited run to say.
    let seen = run_schemathesis(
        &server,
        &[&id],
        10,
        &[
            "positive_data_acceptance",
            "negative_data_rejection",
            "missing_required_header",
            "ignored_auth",
            "unsupported_method",
            "allow_header_conformance",
        ],
        &[],
    );
    assert!(
        seen.iter().any(|(status, _, _)| *status == 429),
        "no request was rate limited: {seen:?}"
    );
}
