//! Errors: exit codes, the JSON error shape, and no panics on bad input or a corrupt database.

use serde_json::{Value, json};

use crate::util::{Run, TestEnv};

fn assert_error_shape(v: &Value, code: &str) {
    let obj = v.as_object().expect("error object");
    let mut keys: Vec<&str> = obj.keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["details", "error", "error_code", "timestamp"], "{v}");
    assert_eq!(v["error_code"], code, "{v}");
    assert!(v["details"].is_object());
    assert!(!v["error"].as_str().unwrap().is_empty());
    let ts = v["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z'), "{ts}");
    chrono::DateTime::parse_from_rfc3339(ts).unwrap();
}

#[test]
fn unknown_id_exits_3_with_not_found() {
    let env = TestEnv::new();
    env.store().create_job("x", &json!({})).unwrap();
    let missing = "ffffffff-ffff-4fff-bfff-ffffffffffff";
    let run = env.run(&["status", missing]);
    run.expect_code(3).assert_no_panic();
    assert!(
        run.stderr
            .starts_with(&format!("error: no job matches id `{missing}`")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());

    let run = env.run(&["status", "--json", "not-an-id"]);
    run.expect_code(3);
    let v = run.json();
    assert_error_shape(&v, "NOT_FOUND");
    assert_eq!(v["details"]["id"], "not-an-id");
}

#[test]
fn ambiguous_prefix_exits_3_with_candidates() {
    let env = TestEnv::new();
    let store = env.store();
    let jobs: Vec<String> = (0..20)
        .map(|i| {
            store
                .create_job(&format!("{i}"), &json!({}))
                .unwrap()
                .video_id
        })
        .collect();
    drop(store);
    // 20 ids over 16 possible first characters: at least one is shared.
    let prefix = jobs
        .iter()
        .map(|id| &id[..1])
        .find(|c| jobs.iter().filter(|j| j.starts_with(*c)).count() > 1)
        .unwrap();
    let run = env.run(&["--json", "status", prefix]);
    run.expect_code(3);
    let v = run.json();
    assert_error_shape(&v, "AMBIGUOUS_ID");
    let candidates = v["details"]["candidates"].as_array().unwrap();
    assert!(candidates.len() >= 2);
    for c in candidates {
        let c = c.as_str().unwrap();
        assert!(c.starts_with(prefix) && jobs.iter().any(|j| j == c), "{c}");
    }
    let human = env.run(&["status", prefix]);
    human.expect_code(3);
    assert!(
        human.stderr.contains("give more characters"),
        "{}",
        human.stderr
    );
}

#[test]
fn corrupt_database_exits_4_with_a_clear_message() {
    let env = TestEnv::new();
    std::fs::create_dir_all(env.db_path().parent().unwrap()).unwrap();
    std::fs::write(
        env.db_path(),
        b"this is not an sqlite database, just some text\n".repeat(100),
    )
    .unwrap();
    for args in [&["status"][..], &["list"], &["status", "abc"]] {
        let run = env.run(args);
        run.expect_code(4).assert_no_panic();
        assert!(
            run.stderr.starts_with("error: cannot open the job history"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("Caused by:")
                && run.stderr.contains("not a usable aivideo job database"),
            "{}",
            run.stderr
        );
    }
    let run = env.run(&["--json", "list"]);
    run.expect_code(4);
    let v = run.json();
    assert_error_shape(&v, "DATABASE_ERROR");
    assert_eq!(v["details"]["path"], json!(env.db_path()));
    // The file was left as it was.
    assert!(
        std::fs::read(env.db_path())
            .unwrap()
            .starts_with(b"this is not")
    );
}

#[test]
fn usage_errors_exit_2_and_json_mode_reports_usage_error() {
    let env = TestEnv::new();
    let run = env.run(&["list", "--bogus"]);
    run.expect_code(2).assert_no_panic();
    assert!(run.stderr.contains("--bogus"), "{}", run.stderr);
    assert!(run.stderr.contains("Usage:"), "{}", run.stderr);

    let run = env.run(&["list", "--json", "--bogus"]);
    run.expect_code(2);
    let v = run.json();
    assert_error_shape(&v, "USAGE_ERROR");
    assert!(v["error"].as_str().unwrap().contains("--bogus"), "{v}");

    for args in [
        &["nonsense"][..],
        &["list", "--limit", "0"],
        &["list", "--status", "done"],
        &["generate"],
    ] {
        env.run(args).expect_code(2).assert_no_panic();
    }
    // No usage error touched the database.
    assert!(!env.db_path().exists());
}

#[test]
fn help_and_version_succeed_on_stdout() {
    let env = TestEnv::new();
    let help = env.run(&["--help"]);
    help.expect_code(0);
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);
    let run: Run = env.run(&["--version"]);
    run.expect_code(0);
    assert!(run.stdout.contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn output_dir_from_the_environment_does_not_conflict_with_output() {
    let env = TestEnv::new();
    // AIVIDEO_OUTPUT_DIR is set by the test environment; only a typed --output-dir conflicts.
    let typed = env.run(&["generate", "waves", "-o", "a.mp4", "--output-dir", "d"]);
    typed.expect_code(2);
    assert!(
        typed.stderr.contains("cannot be used with"),
        "{}",
        typed.stderr
    );
    let from_env = env.run(&["--json", "generate", "waves", "-o", "a.mp4"]);
    assert_ne!(from_env.code, 2, "{}", from_env.stdout);
    assert_ne!(from_env.json()["error_code"], "USAGE_ERROR");
}
