//! Encode/decode throughput of `aivideo::media` on 512x512 clips, single-threaded.
//!
//! Run with `cargo bench --bench mp4_encode`. Prints medians of RUNS runs.

use std::time::Instant;

use aivideo::media::{FrameSelector, VideoMetadata, WriteOptions, decode_frame, write_mp4};
use image::{Rgb, RgbImage};

const RUNS: usize = 7;
const SIZE: u32 = 512;
const FPS: u32 = 8;

/// A moving gradient with a moving square: some texture and motion for the encoder.
mod common;
use common::median;

fn clip(frames: u32) -> Vec<RgbImage> {
    (0..frames)
        .map(|i| {
            RgbImage::from_fn(SIZE, SIZE, |x, y| {
                let inside = (x.wrapping_sub(8 * i)) < 96 && (y.wrapping_sub(4 * i)) < 96;
                if inside {
                    Rgb([230, 40, 40])
                } else {
                    Rgb([(x / 2 + i * 3) as u8, (y / 2) as u8, ((x + y) / 4) as u8])
                }
            })
        })
        .collect()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let meta = VideoMetadata {
        title: "bench".into(),
        comment_json: "{}".into(),
        extra: vec![],
    };
    for frames in [16u32, 48] {
        let clip = clip(frames);
        let path = dir.path().join(format!("bench_{frames}.mp4"));
        let mut enc = Vec::new();
        let mut bytes = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            bytes = write_mp4(&path, &clip, FPS, &meta, &WriteOptions::default())
                .unwrap()
                .bytes;
            enc.push(frames as f64 / t.elapsed().as_secs_f64());
        }
        // Decoding the last frame decodes from the preceding keyframe: with a
        // keyframe every 2 s (16 frames) that is 16 frames per call.
        let last = frames - 1;
        let decoded_per_call = (last % (2 * FPS) + 1) as f64;
        let mut dec = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            decode_frame(&path, FrameSelector::Index(last)).unwrap();
            dec.push(decoded_per_call / t.elapsed().as_secs_f64());
        }
        println!(
            "{SIZE}x{SIZE}, {frames} frames: encode+mux+write {:.1} frames/s, decode {:.1} frames/s (median of {RUNS}; file {bytes} bytes)",
            median(enc),
            median(dec),
        );
    }
}
