//! `aivideo list`: newest first, pagination, status filter, table and JSON forms.

use serde_json::{Value, json};

use crate::util::{TestEnv, expect_exit};

/// Seeds `n` jobs (oldest first) and returns their ids in creation order.
fn seed(env: &TestEnv, n: usize) -> Vec<String> {
    let store = env.store();
    (0..n)
        .map(|i| {
            store
                .create_job(&format!("prompt number {i}"), &json!({}))
                .unwrap()
                .video_id
        })
        .collect()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(|j| j["video_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn json_list_is_newest_first_and_paginates() {
    let env = TestEnv::new();
    let created = seed(&env, 25);
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    // Default limit is 20.
    let all = env.run(&["list", "--json"]).expect_code(0).json();
    assert_eq!(ids(&all), newest_first[..20]);
    assert_eq!(all[0]["prompt"], "prompt number 24");
    assert_eq!(all[0]["status"], "pending");

    let page = env
        .run(&["list", "--json", "--limit", "10", "--offset", "20"])
        .expect_code(0)
        .json();
    assert_eq!(ids(&page), newest_first[20..]);
    let past = env
        .run(&["list", "--json", "--offset", "100"])
        .expect_code(0)
        .json();
    assert_eq!(past, json!([]));
}

#[test]
fn status_filter_selects_only_that_status() {
    let env = TestEnv::new();
    let created = seed(&env, 6);
    let store = env.store();
    for id in [&created[1], &created[4]] {
        store.mark_processing(id).unwrap();
        store
            .mark_failed(id, "AI_VIDEO_ERROR", "boom", None)
            .unwrap();
    }
    drop(store);
    let failed = env
        .run(&["list", "--json", "--status", "failed"])
        .expect_code(0)
        .json();
    assert_eq!(ids(&failed), [created[4].clone(), created[1].clone()]);
    assert!(
        failed
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["error_code"] == "AI_VIDEO_ERROR")
    );
    let pending = env
        .run(&["list", "--json", "--status", "pending"])
        .expect_code(0)
        .json();
    assert_eq!(pending.as_array().unwrap().len(), 4);
    let none = env
        .run(&["list", "--json", "--status", "canceled"])
        .expect_code(0)
        .json();
    assert_eq!(none, json!([]));
}

#[test]
fn human_table_is_aligned_with_short_ids_and_truncated_prompts() {
    let env = TestEnv::new();
    let store = env.store();
    let long = format!("line one\nline two {}", "x".repeat(100));
    let a = store.create_job(&long, &json!({})).unwrap();
    let b = store.create_job("short", &json!({})).unwrap();
    drop(store);
    let run = env.run(&["list", "--limit", "1"]);
    run.expect_code(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS") && lines[0].contains("PROMPT")
    );
    assert!(
        lines[1].starts_with(&b.video_id[..8]) && !lines[1].contains(&b.video_id[..9]),
        "{}",
        lines[1]
    );
    assert_eq!(lines[0].find("STATUS"), lines[1].find("pending"));
    assert!(
        run.stderr
            .contains("Showing 1-1 of 2; use --offset 1 for more."),
        "{}",
        run.stderr
    );

    let run = env.run(&["list", "--offset", "1"]);
    let row = run.stdout.lines().nth(1).unwrap().to_string();
    assert!(row.starts_with(&a.video_id[..8]), "{row}");
    assert!(
        row.contains("line one line two") && row.ends_with('…'),
        "{row}"
    );
    assert!(row.chars().count() < 120, "{row}");

    // Quiet hides the hint; an empty page says so on stderr only.
    let quiet = env.run(&["list", "-q", "--limit", "1"]);
    assert!(quiet.stderr.is_empty(), "{}", quiet.stderr);
    let empty = env.run(&["list", "--status", "completed"]);
    empty.expect_code(0);
    assert!(empty.stdout.is_empty());
    assert!(
        empty.stderr.contains("No completed jobs yet."),
        "{}",
        empty.stderr
    );
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let env = TestEnv::new();
    seed(&env, 50);
    let mut child = env
        .command()
        .args(["list", "--limit", "50"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the binary writes.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    expect_exit(&out, 0);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
