//! `aivideo thumbnail`: decodes the real MP4 of a job or a file and writes the chosen frame.

use std::path::Path;

use crate::util::{TestEnv, tiny_model};

fn make_job(env: &TestEnv) -> serde_json::Value {
    let model = tiny_model().to_str().unwrap();
    let run = env.run(&[
        "generate",
        "a red box",
        "--model",
        model,
        "--steps",
        "2",
        "--width",
        "320",
        "--height",
        "256",
        "--json",
    ]);
    run.expect_code(0);
    run.json()
}

#[test]
fn thumbnail_of_a_job_decodes_the_chosen_frame_and_records_the_path() {
    let env = TestEnv::new();
    let job = make_job(&env);
    let id = job["video_id"].as_str().unwrap();
    let out = env.path().join("thumb.png");
    let run = env.run(&[
        "thumbnail",
        &id[..8],
        "--frame",
        "3",
        "--width",
        "160",
        "-o",
        out.to_str().unwrap(),
        "--json",
    ]);
    run.expect_code(0);
    let res = run.json();
    assert_eq!(res["frame"], 3);
    assert_eq!(res["width"], 160);
    assert_eq!(res["height"], 128);
    let img = image::open(&out).unwrap();
    assert_eq!((img.width(), img.height()), (160, 128));
    // The decoded frame is frame 3 of the video: compare with a direct decode.
    let direct = aivideo::media::decode_frame(
        Path::new(job["video_path"].as_str().unwrap()),
        aivideo::media::FrameSelector::Index(3),
    )
    .unwrap();
    let direct = aivideo::media::resize_to_width(&direct, 160).unwrap();
    let diff: f64 = img
        .to_rgb8()
        .pixels()
        .zip(direct.pixels())
        .map(|(a, b)| {
            (0..3)
                .map(|i| (a.0[i] as f64 - b.0[i] as f64).abs())
                .sum::<f64>()
        })
        .sum::<f64>()
        / (160.0 * 128.0 * 3.0);
    assert!(diff < 1.0, "mean difference {diff}");
    let stored = env.store().get(id).unwrap();
    assert_eq!(
        stored.thumbnail_path.as_deref(),
        Some(out.to_str().unwrap())
    );
}

#[test]
fn thumbnail_of_a_file_by_time_and_out_of_range_errors() {
    let env = TestEnv::new();
    let job = make_job(&env);
    let video = job["video_path"].as_str().unwrap();
    let out = env.path().join("t.jpg");
    env.run(&[
        "thumbnail",
        video,
        "--at",
        "1.0",
        "-o",
        out.to_str().unwrap(),
    ])
    .expect_code(0);
    assert_eq!(image::open(&out).unwrap().width(), 320);
    let bad = env.run(&["thumbnail", video, "--frame", "99"]);
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("0..=15"),
        "names the valid range: {}",
        bad.stderr
    );
    env.run(&["thumbnail", video, "--at", "30"]).expect_code(2);
    let missing = env.run(&["thumbnail", "nope.mp4", "--json"]);
    missing.expect_code(3);
    let unknown = env.run(&["thumbnail", "deadbeef"]);
    unknown.expect_code(3);
}
