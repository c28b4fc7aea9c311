//! `aivideo serve` end to end with real HTTP clients (ureq, curl, a WebSocket client): the
//! original API and its examples, files with ranges and ETags, live events, batch, cancel,
//! request ids, the metrics page (checked by promtool) and the page.

use std::process::Command;

use serde_json::{Value, json};

use crate::metrics::harness::promtool_check;
use crate::server::{Server, delete, get, post, small_request, wait_done};
use crate::util::{TestEnv, ffprobe, finish, start_paused};

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_originals_curl_example_gets_the_documented_error_and_the_fixed_one_runs() {
    let env = TestEnv::new();
    let server = Server::start(&env, &[]);
    // The original README's request, as written: `high` with 30 steps breaks its own rule.
    let (body, _) = curl(&[
        "-X",
        "POST",
        &server.api("/videos/generate"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"prompt": "A beautiful sunset over mountains", "num_steps": 30, "quality": "high"}"#,
        "-w",
        "\n%{http_code}",
    ]);
    let (json_text, code) = body.rsplit_once('\n').unwrap();
    assert_eq!(code, "400", "{body}");
    let v: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(v["error_code"], "VALIDATION_ERROR");
    assert_eq!(v["details"]["field"], "num_steps");
    assert!(
        v["error"].as_str().unwrap().contains("at least 50 steps"),
        "{v}"
    );
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(env.job_count(), 0, "a rejected request records nothing");

    // The preset alone is valid; the response is the original's VideoResponse.
    let (body, _) = curl(&[
        "-X",
        "POST",
        &server.api("/videos/generate"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"prompt": "a red ball bouncing", "quality": "low", "width": 256, "height": 256}"#,
    ]);
    let v: Value = serde_json::from_str(&body).unwrap();
    for field in [
        "video_id",
        "status",
        "video_url",
        "thumbnail_url",
        "processing_time",
        "error_message",
        "metadata",
    ] {
        assert!(v.get(field).is_some(), "{field} missing: {v}");
    }
    assert_eq!(v["status"], "pending");
    assert!(v["video_url"].is_null());
    let id = v["video_id"].as_str().unwrap();
    let done = wait_done(&server, id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["video_url"], format!("/api/v1/videos/{id}/download"));
    assert_eq!(
        done["thumbnail_url"],
        format!("/api/v1/videos/{id}/thumbnail")
    );
    assert!(done["processing_time"].as_f64().unwrap() > 0.0);
}

#[test]
fn schema_errors_are_422_and_cross_field_errors_400_in_the_error_shape() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    let url = server.api("/videos/generate");
    for (body, status, field) in [
        (json!({"num_steps": 3}), 422, Some("prompt")),
        (json!({"prompt": "x", "width": "wide"}), 422, None),
        (json!({"prompt": "x", "width": 300}), 422, Some("width")),
        (
            json!({"prompt": "x", "num_steps": 0}),
            422,
            Some("num_steps"),
        ),
        (json!({"prompt": "x", "seed": -1}), 422, Some("seed")),
        (json!({"prompt": "x", "colour": "red"}), 422, None),
        (
            json!({"prompt": "x", "quality": "low", "num_steps": 40}),
            400,
            Some("num_steps"),
        ),
        (
            json!({"prompt": "x", "width": 1024, "height": 256}),
            400,
            Some("size"),
        ),
        (json!({"prompt": "x", "model": "/etc"}), 422, Some("model")),
    ] {
        let r = post(&url, &body.to_string(), &[]);
        assert_eq!(r.status, status, "{body}: {}", r.body);
        let v = r.json();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["details", "error", "error_code", "timestamp"]);
        assert_eq!(v["error_code"], "VALIDATION_ERROR");
        if let Some(field) = field {
            assert_eq!(v["details"]["field"], field, "{v}");
        }
        if field != Some("model") {
            let error = v["error"].as_str().unwrap();
            assert!(!error.contains("--"), "API words, not flags: {v}");
        }
    }
    let r = post(&url, "{not json", &[]);
    assert_eq!(r.status, 422);
    assert_eq!(env.job_count(), 0);
}

#[test]
fn a_job_runs_and_its_files_download_with_ranges_etags_and_events() {
    let env = TestEnv::new();
    let server = Server::start(&env, &[]);
    let id = server.submit("a blue box growing");

    // The SSE stream, read to its end by curl: progress, then the final status, then end.
    let (events, _) = curl(&["-N", &server.api(&format!("/videos/{id}/events"))]);
    let names: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.last(), Some(&"end"), "{events}");
    assert!(names.contains(&"status"), "{events}");
    let end = events
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(end).unwrap()["status"],
        "completed"
    );

    let file = env.path().join("got.mp4");
    let (headers, _) = curl(&[
        "-D",
        "-",
        "-o",
        file.to_str().unwrap(),
        &server.api(&format!("/videos/{id}/download")),
    ]);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: video/mp4"),
        "{headers}"
    );
    let probe = ffprobe(&file);
    assert_eq!(probe["streams"][0]["codec_name"], "h264");
    assert_eq!(probe["streams"][0]["width"], 256);
    let len = std::fs::metadata(&file).unwrap().len();

    let part = get(
        &server.api(&format!("/videos/{id}/download")),
        &[("Range", "bytes=100-199")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-199/{len}").as_str())
    );
    let whole = std::fs::read(&file).unwrap();
    let part_file = env.path().join("part.bin");
    curl(&[
        "-r",
        "100-199",
        "-o",
        part_file.to_str().unwrap(),
        &server.api(&format!("/videos/{id}/download")),
    ]);
    assert_eq!(std::fs::read(&part_file).unwrap(), whole[100..200]);
    let beyond = get(
        &server.api(&format!("/videos/{id}/download")),
        &[("Range", &format!("bytes={len}-"))],
    );
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );

    let etag = part.header("etag").unwrap().to_string();
    let same = get(
        &server.api(&format!("/videos/{id}/download")),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(same.status, 304);

    let thumb = get(&server.api(&format!("/videos/{id}/thumbnail")), &[]);
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.header("content-type"), Some("image/jpeg"));

    // Files are reached only through ids: other paths are 404s.
    assert_eq!(
        get(&server.api("/videos/..%2F..%2Fetc%2Fpasswd/download"), &[]).status,
        404
    );
    assert_eq!(
        get(&server.api(&format!("/videos/{}/download", &id[..8])), &[]).status,
        404
    );
}

#[test]
fn a_websocket_carries_the_same_events() {
    let env = TestEnv::new();
    let server = Server::start(&env, &[]);
    let id = server.submit("a white dot");
    let ws_url = server
        .api(&format!("/videos/{id}/ws"))
        .replace("http://", "ws://");
    let (mut socket, _) = tungstenite::connect(ws_url).expect("websocket handshake");
    let mut names = Vec::new();
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => {
                let e: Value = serde_json::from_str(text.as_str()).unwrap();
                names.push(e["event"].as_str().unwrap().to_string());
                if e["event"] == "end" {
                    assert_eq!(e["data"]["status"], "completed");
                }
            }
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert_eq!(names.last().map(String::as_str), Some("end"), "{names:?}");
    assert!(names.iter().any(|n| n == "status"));
}

#[test]
fn list_pages_newest_first_with_the_total_and_batch_is_all_or_nothing() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    let bad = json!({"requests": [
        {"prompt": "one"}, {"prompt": "two", "width": 301}, {"prompt": "three"}
    ]});
    let r = post(&server.api("/videos/batch"), &bad.to_string(), &[]);
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.json()["details"]["index"], 1);
    assert_eq!(
        env.job_count(),
        0,
        "one bad request rejects the whole batch"
    );

    let good = json!({"requests": (0..5).map(|i| json!({"prompt": format!("ball {i}")})).collect::<Vec<_>>()});
    let r = post(&server.api("/videos/batch"), &good.to_string(), &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let ids: Vec<String> = r.json()["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["video_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5);

    let page = get(&server.api("/videos/?limit=2&offset=1&status=pending"), &[]).json();
    assert_eq!(page["total"], 5);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["offset"], 1);
    let listed: Vec<&str> = page["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["video_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    let all = get(&server.api("/videos"), &[]).json();
    let order: Vec<&str> = all["videos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["video_id"].as_str().unwrap())
        .collect();
    assert_eq!(&order[1..3], &listed[..], "newest first, then the offset");
    assert_eq!(get(&server.api("/videos/?status=done"), &[]).status, 422);
    assert_eq!(get(&server.api("/videos/?limit=101"), &[]).status, 422);
}

#[test]
fn delete_cancels_a_pending_job_at_once_and_a_running_one_between_steps() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    let (a, b) = (server.submit("first"), server.submit("second"));
    let (a, b) = (a.as_str(), b.as_str());

    let r = delete(&server.api(&format!("/videos/{b}")));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "canceled");
    let r = delete(&server.api(&format!("/videos/{b}")));
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error_code"], "CONFLICT");

    // A separate worker process runs the first job; cancel it while it is held mid-run.
    let mut worker = env.command();
    worker
        .args(["worker", "--drain"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let (child, flag) = start_paused(&env, worker, "after-first-step");
    let r = delete(&server.api(&format!("/videos/{a}")));
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["status"], "processing");
    std::fs::remove_file(&flag).unwrap();
    assert_eq!(finish(child).0, 0);
    let done = wait_done(&server, a);
    assert_eq!(done["status"], "canceled", "{done}");
    assert!(done["video_url"].is_null());
    assert_eq!(
        delete(&server.api("/videos/00000000-0000-4000-8000-000000000000")).status,
        404
    );
}

#[test]
fn every_response_carries_a_request_id() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    let r = get(
        &server.api("/system/health"),
        &[("X-Request-ID", "trace-42")],
    );
    assert_eq!(r.header("x-request-id"), Some("trace-42"));
    for r in [
        get(&server.api("/system/status"), &[]),
        get(&server.api("/no/such/thing"), &[]),
        post(&server.api("/videos/generate"), "{}", &[]),
    ] {
        let id = r.header("x-request-id").expect("every response has one");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }
    // An id with spaces or control characters is replaced, never echoed.
    let r = get(&server.api("/system/health"), &[("X-Request-ID", "a b")]);
    assert_ne!(r.header("x-request-id"), Some("a b"));
}

#[test]
fn system_endpoints_report_status_health_and_metrics_that_promtool_accepts() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    post(
        &server.api("/videos/generate"),
        &small_request("queued"),
        &[],
    );
    let status = get(&server.api("/system/status"), &[]).json();
    assert_eq!(status["jobs"]["pending"], 1);
    assert_eq!(status["server"]["queue_depth"], 1);
    assert_eq!(status["server"]["workers"], 0);
    assert_eq!(
        get(&server.api("/system/health"), &[]).json()["status"],
        "ok"
    );

    let page = get(&server.api("/system/metrics"), &[]).body;
    for want in [
        "aivideo_jobs{status=\"pending\"} 1",
        "aivideo_queue_depth 1",
        "aivideo_http_requests_total{route=\"/api/v1/videos/generate\",method=\"POST\",code=\"200\"} 1",
        "aivideo_http_request_duration_seconds_bucket",
        "aivideo_http_requests_active 1",
    ] {
        assert!(page.contains(want), "missing {want}:\n{page}");
    }
    promtool_check(&page);
}

#[test]
fn the_page_is_served_with_a_strict_content_security_policy() {
    let env = TestEnv::new();
    let server = Server::start(&env, &["--workers", "0"]);
    let r = get(&format!("{}/", server.url), &[]);
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(r.body.contains("<form id=\"form\""));
}
