//! Bad input gets the right exit code and says where it is: prompts files (invalid UTF-8,
//! folders, the line of a bad prompt), control characters, prompts the model cannot read,
//! unbounded sizes, and a job history in a read-only place.

use std::process::Command;

use crate::util::{TestEnv, tiny_model};

fn generate_prompts(env: &TestEnv, file: &str) -> crate::util::Run {
    let model = tiny_model().to_str().unwrap();
    env.run(&[
        "generate",
        "--prompts",
        file,
        "--model",
        model,
        "--steps",
        "1",
        "--json",
    ])
}

#[test]
fn a_prompts_file_with_invalid_utf8_names_the_line_and_exits_2() {
    let env = TestEnv::new();
    std::fs::write(
        env.path().join("p.txt"),
        b"a red ball\n# ok\nblue \xff box\n",
    )
    .unwrap();
    let run = generate_prompts(&env, "p.txt");
    run.expect_code(2);
    let err = run.json();
    assert_eq!(err["error_code"], "VALIDATION_ERROR");
    assert_eq!(err["details"]["line"], 3);
    assert!(err["error"].as_str().unwrap().contains("line 3"), "{err}");
    assert_eq!(env.job_count(), 0);
}

#[test]
fn a_folder_or_a_missing_file_as_prompts_is_a_usage_error() {
    let env = TestEnv::new();
    std::fs::create_dir(env.path().join("dir")).unwrap();
    let run = generate_prompts(&env, "dir");
    run.expect_code(2);
    assert!(
        run.json()["error"]
            .as_str()
            .unwrap()
            .contains("is a folder")
    );
    let run = generate_prompts(&env, "missing.txt");
    run.expect_code(2);
    let msg = run.json()["error"].as_str().unwrap().to_string();
    assert!(
        msg.contains("missing.txt") && !msg.contains("os error"),
        "{msg}"
    );
    assert_eq!(env.job_count(), 0);
}

#[test]
fn a_bad_prompt_in_a_file_is_named_by_its_line_and_nothing_runs() {
    let env = TestEnv::new();
    let long = "x".repeat(1001);
    std::fs::write(
        env.path().join("p.txt"),
        format!("a red ball\n\n{long}\nblue\n"),
    )
    .unwrap();
    let run = generate_prompts(&env, "p.txt");
    run.expect_code(2);
    let err = run.json();
    assert_eq!(err["details"]["line"], 3, "{err}");
    assert_eq!(err["details"]["field"], "prompt");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .starts_with("line 3 of the prompts file"),
        "{err}"
    );
    assert_eq!(env.job_count(), 0);
}

#[test]
fn control_characters_in_a_prompt_are_refused() {
    let env = TestEnv::new();
    let model = tiny_model().to_str().unwrap();
    for prompt in ["a red\u{1}ball", "bell\u{7}", "esc \u{1b}[2J"] {
        let run = env.run(&["generate", prompt, "--model", model, "--json"]);
        run.expect_code(2);
        assert_eq!(run.json()["details"]["field"], "prompt");
    }
    // A NUL cannot be passed as an argument; a prompts file can hold one.
    std::fs::write(env.path().join("p.txt"), b"a red\0 ball\n").unwrap();
    let run = generate_prompts(&env, "p.txt");
    run.expect_code(2);
    let err = run.json();
    assert_eq!(err["details"]["line"], 1);
    assert!(
        err["details"]["value"].as_str().unwrap().contains("U+0000"),
        "{err}"
    );
    assert_eq!(env.job_count(), 0);
}

#[test]
fn a_prompt_the_model_cannot_read_at_all_is_warned_about() {
    let env = TestEnv::new();
    let model = tiny_model().to_str().unwrap();
    let out = env.path().join("e.mp4");
    let run = env.run(&[
        "generate",
        "🎈🎈 🌊",
        "--model",
        model,
        "--steps",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("understands none of the words"),
        "{}",
        run.stderr
    );
}

#[test]
fn thumbnail_sizes_are_bounded_and_validated() {
    let env = TestEnv::new();
    let model = tiny_model().to_str().unwrap();
    env.run(&[
        "generate",
        "a red ball",
        "--model",
        model,
        "--steps",
        "1",
        "-o",
        "c.mp4",
    ])
    .expect_code(0);
    for width in ["0", "-5", "100000", "4097"] {
        let run = env.run(&[
            "thumbnail",
            "c.mp4",
            "--width",
            width,
            "-o",
            "t.png",
            "--json",
        ]);
        run.expect_code(2);
        let err = run.json();
        assert_eq!(err["error_code"], "VALIDATION_ERROR", "{err}");
        assert_eq!(err["details"]["field"], "width");
    }
    for at in ["-1", "NaN", "inf"] {
        let run = env.run(&["thumbnail", "c.mp4", "--at", at, "-o", "t.png", "--json"]);
        run.expect_code(2);
    }
    assert!(!env.path().join("t.png").exists());
    env.run(&["thumbnail", "c.mp4", "--width", "4096", "-o", "t.png"])
        .expect_code(0);
}

/// A tmpfs holding a job history, remounted read-only; `None` where mounting is not allowed.
fn read_only_history(env: &TestEnv) -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let mount = |args: &[&str]| Command::new("mount").args(args).arg(dir.path()).status();
    if !matches!(mount(&["-t", "tmpfs", "-o", "size=4m", "tmpfs"]), Ok(s) if s.success()) {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs (run the tests as root to test read-only folders)"
        );
        return None;
    }
    let db = dir.path().join("jobs.sqlite3");
    let model = tiny_model().to_str().unwrap();
    let run = env
        .command()
        .env("AIVIDEO_DB", &db)
        .args([
            "generate",
            "a red ball",
            "--model",
            model,
            "--steps",
            "1",
            "-o",
            "c.mp4",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(mount(&["-o", "remount,ro"]).unwrap().success());
    Some(dir)
}

#[test]
fn list_and_status_read_a_history_in_a_read_only_place() {
    let env = TestEnv::new();
    let Some(dir) = read_only_history(&env) else {
        return;
    };
    let db = dir.path().join("jobs.sqlite3");
    let run = |args: &[&str]| {
        let o = env
            .command()
            .env("AIVIDEO_DB", &db)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&["list", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let jobs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{stdout}");
    assert!(
        stderr.contains("read-only") && !stderr.contains("unable to open"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["status"]);
    assert_eq!(code, Some(0), "{stderr}");
    // Writing there is a clear database error.
    let (code, _, stderr) = run(&[
        "generate",
        "a red ball",
        "--model",
        tiny_model().to_str().unwrap(),
    ]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("folder is read-only"), "{stderr}");
    let _ = Command::new("umount").arg(dir.path()).status();
}
