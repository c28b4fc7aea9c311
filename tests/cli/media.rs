//! `aivideo::media` against real tools: ffprobe, ffmpeg and the image crate.

use std::path::Path;

use aivideo::media::{
    FrameSelector, ImageMetadata, MediaError, VideoMetadata, WriteOptions, decode_frame, probe_mp4,
    resize_to_width, write_image, write_mp4,
};
use image::{Rgb, RgbImage};
use serde_json::Value;

use crate::util::{ffprobe, run_tool};

const FPS: u32 = 8;
const FRAMES: u32 = 16;
const SQUARE: u32 = 48;
const BG: Rgb<u8> = Rgb([30, 60, 150]);
const FG: Rgb<u8> = Rgb([230, 40, 40]);

/// Top-left corner of the moving square in frame `i`.
fn square_at(i: u32) -> (u32, u32) {
    (16 + 12 * i, 40 + 4 * i)
}

fn clip(w: u32, h: u32) -> Vec<RgbImage> {
    (0..FRAMES)
        .map(|i| {
            let mut img = RgbImage::from_pixel(w, h, BG);
            let (x0, y0) = square_at(i);
            for y in y0..y0 + SQUARE {
                for x in x0..x0 + SQUARE {
                    img.put_pixel(x, y, FG);
                }
            }
            img
        })
        .collect()
}

fn params_json() -> String {
    serde_json::json!({"prompt": "a red square, moving", "seed": 4242, "model": "tiny-test", "steps": 4, "quality": "low"})
        .to_string()
}

fn meta() -> VideoMetadata {
    VideoMetadata {
        title: "a red square, moving".into(),
        comment_json: params_json(),
        extra: vec![
            ("seed".into(), "4242".into()),
            ("model".into(), "tiny-test".into()),
            ("steps".into(), "4".into()),
            ("quality".into(), "low".into()),
        ],
    }
}

fn mean_abs_error(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as i64 - *y as i64).unsigned_abs())
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Bounding box of reddish pixels.
fn red_box(img: &RgbImage) -> (u32, u32, u32, u32) {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p[0] > 150 && p[2] < 100 {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    (x0, y0, x1, y1)
}

fn top_level_boxes(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let mut pos = 0;
    let mut names = Vec::new();
    while pos + 8 <= data.len() {
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        names.push(String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned());
        assert!(size >= 8, "bad box size");
        pos += size;
    }
    assert_eq!(pos, data.len(), "boxes do not tile the file");
    names
}

fn check_clip(w: u32, h: u32) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("clip_{w}x{h}.mp4"));
    let frames = clip(w, h);
    let summary = write_mp4(&path, &frames, FPS, &meta(), &WriteOptions::default()).unwrap();
    assert_eq!(
        (summary.frames, summary.width, summary.height, summary.fps),
        (FRAMES, w, h, FPS)
    );
    assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(
        top_level_boxes(&path),
        ["ftyp", "moov", "mdat"],
        "faststart layout"
    );
    // Only the finished file is in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let probe = ffprobe(&path);
    let s = &probe["streams"][0];
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(s["codec_tag_string"], "avc1");
    assert_eq!(s["pix_fmt"], "yuv420p");
    assert!(
        ["Constrained Baseline", "Baseline", "Main"].contains(&s["profile"].as_str().unwrap()),
        "{}",
        s["profile"]
    );
    assert_eq!(s["width"], w);
    assert_eq!(s["height"], h);
    assert_eq!(s["nb_frames"], FRAMES.to_string());
    assert_eq!(s["nb_read_frames"], FRAMES.to_string());
    assert_eq!(s["r_frame_rate"], format!("{FPS}/1"));
    assert_eq!(s["avg_frame_rate"], format!("{FPS}/1"));
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((duration - 2.0).abs() < 0.01, "duration {duration}");
    let tags = &probe["format"]["tags"];
    assert_eq!(tags["title"], "a red square, moving");
    let comment: Value = serde_json::from_str(tags["comment"].as_str().unwrap()).unwrap();
    assert_eq!(comment["seed"], 4242);
    assert_eq!(
        tags["encoder"],
        format!("aivideo {}", env!("CARGO_PKG_VERSION"))
    );
    for (k, v) in [
        ("seed", "4242"),
        ("model", "tiny-test"),
        ("steps", "4"),
        ("quality", "low"),
    ] {
        assert_eq!(tags[k], v, "tag {k} in {tags}");
    }

    let out = run_tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "ffmpeg decode errors: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Frame 0 is a keyframe (IDR, listed in stss) and every frame is a packet.
    let out = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            path.to_str().unwrap(),
        ],
    );
    let flags = String::from_utf8(out.stdout).unwrap();
    let flags: Vec<&str> = flags.lines().collect();
    assert_eq!(flags.len(), FRAMES as usize, "{flags:?}");
    assert!(flags[0].starts_with('K'), "{flags:?}");

    // Our own reader agrees.
    let info = probe_mp4(&path).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (w, h, FRAMES));
    assert!((info.fps - FPS as f64).abs() < 1e-9 && (info.duration_s - 2.0).abs() < 1e-9);
    let tag = |k: &str| {
        info.tags
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(tag("title"), Some("a red square, moving"));
    assert_eq!(tag("comment"), Some(params_json().as_str()));
    assert_eq!(tag("seed"), Some("4242"));

    // Round trip: the decoded frames are close to the source and the square is in place.
    for (selector, n) in [
        (FrameSelector::Index(0), 0),
        (FrameSelector::Index(5), 5),
        (FrameSelector::Index(15), 15),
        (FrameSelector::Time(1.3), 10), // 1.3 s * 8 fps = frame 10.4
        (FrameSelector::Time(0.0), 0),
    ] {
        let got = decode_frame(&path, selector).unwrap();
        let mae = mean_abs_error(&got, &frames[n]);
        assert!(mae < 1.0, "{selector:?}: mean abs error {mae}");
        let (x, y) = square_at(n as u32);
        let (bx0, by0, bx1, by1) = red_box(&got);
        assert!(
            bx0.abs_diff(x) <= 2 && by0.abs_diff(y) <= 2,
            "{selector:?}: square at {bx0},{by0}, want {x},{y}"
        );
        assert!(bx1.abs_diff(x + SQUARE - 1) <= 2 && by1.abs_diff(y + SQUARE - 1) <= 2);
        // Flat colours stay flat: the background far from the square.
        let p = got.get_pixel(w - 4, h - 4);
        for c in 0..3 {
            assert!(p[c].abs_diff(BG[c]) <= 3, "{selector:?}: background {p:?}");
        }
    }
    let e = decode_frame(&path, FrameSelector::Index(FRAMES)).unwrap_err();
    assert!(
        matches!(e, MediaError::OutOfRange { .. }) && e.to_string().contains("0..=15"),
        "{e}"
    );
    let e = decode_frame(&path, FrameSelector::Time(2.0)).unwrap_err();
    assert!(e.to_string().contains("t < 2.000s"), "{e}");
    assert!(decode_frame(&path, FrameSelector::Time(f64::NAN)).is_err());
}

#[test]
fn clip_256x256_passes_ffprobe_ffmpeg_and_round_trip() {
    check_clip(256, 256);
}

#[test]
fn clip_320x256_passes_ffprobe_ffmpeg_and_round_trip() {
    check_clip(320, 256);
}

#[test]
fn reads_an_ffmpeg_made_libx264_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x264.mp4");
    let p = path.to_str().unwrap();
    let out = run_tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=256x256:rate=8",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-metadata",
            "title=from ffmpeg",
            p,
        ],
    );
    assert!(
        out.status.success(),
        "ffmpeg with libx264 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // libx264's defaults use B-frames, so this exercises display-order reordering.
    let streams = ffprobe(&path);
    assert_eq!(streams["streams"][0]["profile"], "High");
    assert!(streams["streams"][0]["has_b_frames"].as_i64().unwrap() > 0);
    let info = probe_mp4(&path).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (256, 256, 16));
    assert!((info.fps - 8.0).abs() < 1e-6, "fps {}", info.fps);
    assert!(
        info.tags.contains(&("title".into(), "from ffmpeg".into())),
        "{:?}",
        info.tags
    );

    // Reference frames decoded by ffmpeg itself, in display order.
    let pattern = dir.path().join("ref_%02d.png");
    let out = run_tool(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            p,
            "-pix_fmt",
            "rgb24",
            pattern.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = |n: u32| {
        image::open(dir.path().join(format!("ref_{:02}.png", n + 1)))
            .unwrap()
            .to_rgb8()
    };
    for n in [0, 3, 7, 12, 15] {
        let ours = decode_frame(&path, FrameSelector::Index(n)).unwrap();
        let mae = mean_abs_error(&ours, &reference(n));
        assert!(mae < 1.2, "frame {n}: mean abs error {mae} against ffmpeg");
        for other in [n.saturating_sub(1), (n + 1).min(15)] {
            if other != n {
                assert!(
                    mean_abs_error(&ours, &reference(other)) > mae,
                    "frame {n} looks more like {other}"
                );
            }
        }
    }
}

#[test]
fn write_errors_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let frames = clip(256, 256);
    let entries = || std::fs::read_dir(dir.path()).unwrap().count();

    // Missing folder, and a "folder" that is a file.
    let e = write_mp4(
        &dir.path().join("missing/out.mp4"),
        &frames,
        FPS,
        &meta(),
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, MediaError::Io { .. }) && e.to_string().contains("missing/out.mp4"),
        "{e}"
    );
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    assert!(
        write_mp4(
            &dir.path().join("file/out.mp4"),
            &frames,
            FPS,
            &meta(),
            &WriteOptions::default()
        )
        .is_err()
    );
    assert_eq!(entries(), 1);

    // The rename fails after encoding: the destination is a non-empty directory.
    let occupied = dir.path().join("occupied.mp4");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep"), b"x").unwrap();
    assert!(write_mp4(&occupied, &frames, FPS, &meta(), &WriteOptions::default()).is_err());
    assert!(
        write_image(
            &occupied,
            &frames[0],
            &ImageMetadata::default(),
            &WriteOptions::default()
        )
        .is_err()
    );
    assert_eq!(entries(), 2, "a temporary file was left behind");

    // A read-only folder (only meaningful when not root, which bypasses permissions).
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        let e = write_mp4(
            &ro.join("out.mp4"),
            &frames,
            FPS,
            &meta(),
            &WriteOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("ro/out.mp4"), "{e}");
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    }

    // Odd and out-of-range sizes are errors, not panics.
    let odd: Vec<RgbImage> = (0..4).map(|_| RgbImage::from_pixel(257, 255, BG)).collect();
    let e = write_mp4(
        &dir.path().join("odd.mp4"),
        &odd,
        FPS,
        &meta(),
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, MediaError::InvalidInput { .. }) && e.to_string().contains("257"),
        "{e}"
    );
    assert!(!dir.path().join("odd.mp4").exists());
}

/// The payload of the first JPEG COM segment.
fn jpeg_comment(data: &[u8]) -> Option<String> {
    let mut pos = 2;
    while pos + 4 <= data.len() && data[pos] == 0xff {
        let len = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
        if data[pos + 1] == 0xfe {
            return Some(String::from_utf8(data[pos + 4..pos + 2 + len].to_vec()).unwrap());
        }
        if data[pos + 1] == 0xda {
            return None;
        }
        pos += 2 + len;
    }
    None
}

#[test]
fn thumbnails_carry_metadata_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let frame = &clip(512, 320)[3];
    let thumb = resize_to_width(frame, 256).unwrap();
    assert_eq!(thumb.dimensions(), (256, 160));
    let meta = ImageMetadata {
        title: "a red square, moving — ünïcode".into(),
        comment_json: params_json(),
    };

    let jpg = dir.path().join("t.jpg");
    write_image(&jpg, &thumb, &meta, &WriteOptions::default()).unwrap();
    let back = image::open(&jpg).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (256, 160));
    assert!(mean_abs_error(&back, &thumb) < 3.0);
    let com = jpeg_comment(&std::fs::read(&jpg).unwrap()).expect("COM segment");
    assert_eq!(serde_json::from_str::<Value>(&com).unwrap()["seed"], 4242);

    let png_path = dir.path().join("t.png");
    write_image(&png_path, &thumb, &meta, &WriteOptions::default()).unwrap();
    assert_eq!(
        image::open(&png_path).unwrap().to_rgb8(),
        thumb,
        "PNG is lossless"
    );
    let reader = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ))
    .read_info()
    .unwrap();
    let info = reader.info();
    let mut text: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .collect();
    text.extend(
        info.utf8_text
            .iter()
            .map(|c| (c.keyword.clone(), c.get_text().unwrap())),
    );
    let get = |k: &str| {
        text.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        get("Title").as_deref(),
        Some("a red square, moving — ünïcode")
    );
    assert_eq!(get("Comment"), Some(params_json()));
    assert!(get("Software").unwrap().starts_with("aivideo "));

    let webp = dir.path().join("t.WEBP");
    write_image(&webp, &thumb, &meta, &WriteOptions::default()).unwrap();
    assert_eq!(
        image::open(&webp).unwrap().to_rgb8(),
        thumb,
        "WebP is written lossless"
    );

    let e = write_image(
        &dir.path().join("t.bmp"),
        &thumb,
        &meta,
        &WriteOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("jpg, jpeg, png, webp"), "{e}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["t.WEBP", "t.jpg", "t.png"]);
}

#[test]
fn largest_size_has_a_keyframe_every_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.mp4");
    let frames: Vec<RgbImage> = (0..40u32)
        .map(|i| {
            RgbImage::from_fn(1024, 1024, |x, y| {
                Rgb([(x / 4) as u8, (y / 4) as u8, (i * 6) as u8])
            })
        })
        .collect();
    write_mp4(
        &path,
        &frames,
        10,
        &VideoMetadata::default(),
        &WriteOptions::default(),
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
            p,
        ],
    );
    let flags = String::from_utf8(out.stdout).unwrap();
    let keys: Vec<usize> = flags
        .lines()
        .enumerate()
        .filter(|(_, f)| f.starts_with('K'))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(flags.lines().count(), 40);
    assert!(
        keys.starts_with(&[0]) && keys.windows(2).all(|w| w[1] - w[0] <= 20),
        "keyframes at {keys:?}"
    );
    assert!(keys.len() >= 2, "keyframes at {keys:?}");
    let out = run_tool("ffmpeg", &["-v", "error", "-i", p, "-f", "null", "-"]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A frame after the second keyframe decodes from that keyframe.
    let got = decode_frame(&path, FrameSelector::Index(25)).unwrap();
    assert!(mean_abs_error(&got, &frames[25]) < 1.5);
}
