//! Nothing the user did not name is replaced: `generate -o` and `thumbnail -o` refuse existing
//! files without `--overwrite`, refuse folders and devices always, and never write a thumbnail
//! over its own video.

use std::path::Path;

use crate::util::{TestEnv, files_in, tiny_model};

fn generate(env: &TestEnv, out: &str, extra: &[&str]) -> crate::util::Run {
    let model = tiny_model().to_str().unwrap();
    let mut args = vec![
        "generate",
        "a red ball",
        "--model",
        model,
        "--steps",
        "1",
        "--width",
        "256",
        "--height",
        "256",
        "--seed",
        "3",
        "-o",
        out,
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

#[test]
fn a_video_named_like_its_thumbnail_is_refused_before_any_job() {
    let env = TestEnv::new();
    for (out, extra) in [
        ("clip.jpg", &[][..]),
        ("clip.PNG", &["--thumbnail-format", "png"][..]),
    ] {
        let run = generate(&env, out, extra);
        run.expect_code(2);
        assert!(run.stderr.contains("the same file"), "{}", run.stderr);
    }
    assert_eq!(env.job_count(), 0);
    assert!(
        files_in(env.path()).iter().all(|f| f == "data"),
        "{:?}",
        files_in(env.path())
    );
}

#[test]
fn an_existing_file_is_kept_unless_overwrite_is_given() {
    let env = TestEnv::new();
    let video = env.path().join("clip.mp4");
    std::fs::write(&video, b"the user's own file").unwrap();
    let run = generate(&env, "clip.mp4", &["--json"]);
    run.expect_code(2);
    let err = run.json();
    assert_eq!(err["error_code"], "USAGE_ERROR");
    assert!(
        err["error"].as_str().unwrap().contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(&video).unwrap(), b"the user's own file");
    assert_eq!(env.job_count(), 0);

    // The thumbnail beside it counts too.
    std::fs::remove_file(&video).unwrap();
    let thumb = env.path().join("clip.jpg");
    std::fs::write(&thumb, b"the user's picture").unwrap();
    let run = generate(&env, "clip.mp4", &[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("the thumbnail") && run.stderr.contains("clip.jpg"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(&thumb).unwrap(), b"the user's picture");
    assert!(!video.exists());

    // With -f both are replaced by the new, complete files.
    generate(&env, "clip.mp4", &["-f"]).expect_code(0);
    assert!(std::fs::metadata(&video).unwrap().len() > 1000);
    assert_ne!(std::fs::read(&thumb).unwrap(), b"the user's picture");
    let run = generate(&env, "clip.mp4", &["--overwrite"]);
    run.expect_code(0);
    assert_eq!(env.job_count(), 2);
}

#[test]
fn folders_and_devices_are_refused_even_with_overwrite() {
    let env = TestEnv::new();
    std::fs::create_dir(env.path().join("dir")).unwrap();
    for out in ["dir", "dir/"] {
        let run = generate(&env, out, &["-f"]);
        run.expect_code(2);
        assert!(run.stderr.contains("is a folder"), "{}", run.stderr);
        assert!(!run.stderr.contains("Not a directory"), "{}", run.stderr);
    }
    let run = generate(&env, "/dev/null", &["-f"]);
    run.expect_code(2);
    assert!(run.stderr.contains("is a device"), "{}", run.stderr);
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(!meta.is_file(), "/dev/null was replaced by a regular file");
    assert!(!Path::new("/dev/null.jpg").exists());
    assert_eq!(env.job_count(), 0);
}

#[test]
fn a_file_where_output_dir_should_be_is_a_usage_error() {
    let env = TestEnv::new();
    let not_dir = env.path().join("outputs");
    std::fs::write(&not_dir, b"x").unwrap();
    let model = tiny_model().to_str().unwrap();
    let run = env.run(&["generate", "a red ball", "--model", model, "--steps", "1"]);
    run.expect_code(2);
    assert!(run.stderr.contains("not a folder"), "{}", run.stderr);
    assert_eq!(env.job_count(), 0);
}

#[test]
fn thumbnail_never_writes_over_its_video_or_an_unnamed_file() {
    let env = TestEnv::new();
    generate(&env, "clip.mp4", &[]).expect_code(0);
    let video = env.path().join("clip.mp4");
    let original = std::fs::read(&video).unwrap();

    // An MP4 named .jpg: the default output would be the file itself.
    let disguised = env.path().join("v.jpg");
    std::fs::copy(&video, &disguised).unwrap();
    for extra in [&[][..], &["--overwrite", "-o", "v.jpg"][..]] {
        let mut args = vec!["thumbnail", "v.jpg"];
        args.extend_from_slice(extra);
        let run = env.run(&args);
        run.expect_code(2);
        assert!(run.stderr.contains("its own video"), "{}", run.stderr);
        assert_eq!(std::fs::read(&disguised).unwrap(), original);
    }

    // -o names an existing file: refused, then replaced with --overwrite.
    let poster = env.path().join("poster.png");
    std::fs::write(&poster, b"keep me").unwrap();
    let run = env.run(&["thumbnail", "clip.mp4", "-o", "poster.png"]);
    run.expect_code(2);
    assert_eq!(std::fs::read(&poster).unwrap(), b"keep me");
    env.run(&["thumbnail", "clip.mp4", "-o", "poster.png", "-f"])
        .expect_code(0);
    assert_eq!(&std::fs::read(&poster).unwrap()[1..4], b"PNG");

    // The job's own recorded thumbnail is the default output and may be replaced; a file
    // given by path has no job, so its default (clip.jpg, made by generate) is kept.
    let job = env.store().list(1, 0, None).unwrap().remove(0);
    env.run(&["thumbnail", &job.video_id, "--frame", "1"])
        .expect_code(0);
    let run = env.run(&["thumbnail", "clip.mp4", "--frame", "2"]);
    run.expect_code(2);
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    assert_eq!(std::fs::read(&video).unwrap(), original);
}
