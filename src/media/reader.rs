//! `probe_mp4` and `decode_frame`: demux an H.264 MP4 (the `mp4` crate) and decode
//! one frame with OpenH264, starting from the preceding keyframe.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek};
use std::path::Path;

use image::RgbImage;
use mp4::{MediaType, Mp4Reader, Mp4Track};
use serde::Serialize;

use super::MediaError;
use super::h264::decode_run;
use super::tags::{read_tags, read_tags_from};

/// Facts about an MP4's first H.264 video track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mp4Info {
    pub width: u32,
    pub height: u32,
    /// Frames per second (average over the track).
    pub fps: f64,
    pub frame_count: u32,
    pub duration_s: f64,
    /// Text metadata, keyed as ffprobe names them (title, comment, encoder, freeform names).
    pub tags: Vec<(String, String)>,
}

/// Which frame `decode_frame` returns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FrameSelector {
    /// Zero-based frame number in display order.
    Index(u32),
    /// The frame on screen at this many seconds from the start.
    Time(f64),
}

/// Per-sample timing in decode order, in track timescale units.
struct Timeline {
    timescale: u32,
    /// Composition (display) time of each sample, relative to the earliest.
    composition: Vec<i64>,
    is_sync: Vec<bool>,
    duration: u64,
}

/// What errors call an MP4 read from memory.
const IN_MEMORY: &str = "<in-memory MP4>";

struct Opened<R> {
    reader: Mp4Reader<R>,
    track_id: u32,
    width: u32,
    height: u32,
    timeline: Timeline,
}

fn timeline(path: &Path, track: &Mp4Track) -> Result<Timeline, MediaError> {
    let stbl = &track.trak.mdia.minf.stbl;
    let n = track.sample_count() as usize;
    let mut decode_times = Vec::with_capacity(n);
    let mut t = 0u64;
    for e in &stbl.stts.entries {
        for _ in 0..e.sample_count {
            decode_times.push(t);
            t += e.sample_delta as u64;
        }
    }
    if decode_times.len() != n {
        return Err(MediaError::container(
            path,
            "stts does not cover every sample",
        ));
    }
    let mut offsets = vec![0i64; n];
    if let Some(ctts) = &stbl.ctts {
        let mut i = 0;
        for e in &ctts.entries {
            for _ in 0..e.sample_count {
                if let Some(o) = offsets.get_mut(i) {
                    *o = e.sample_offset as i64;
                }
                i += 1;
            }
        }
    }
    let mut composition: Vec<i64> = decode_times
        .iter()
        .zip(&offsets)
        .map(|(d, o)| *d as i64 + o)
        .collect();
    let start = composition.iter().copied().min().unwrap_or(0);
    composition.iter_mut().for_each(|c| *c -= start);
    let is_sync = match &stbl.stss {
        None => vec![true; n],
        Some(stss) => {
            let mut v = vec![false; n];
            for &s in &stss.entries {
                if let Some(x) = (s as usize).checked_sub(1).and_then(|i| v.get_mut(i)) {
                    *x = true;
                }
            }
            v
        }
    };
    let timescale = track.timescale();
    if timescale == 0 {
        return Err(MediaError::container(path, "track timescale is 0"));
    }
    Ok(Timeline {
        timescale,
        composition,
        is_sync,
        duration: t,
    })
}

fn open(path: &Path) -> Result<Opened<BufReader<File>>, MediaError> {
    let file = File::open(path).map_err(|e| MediaError::io(path, e))?;
    let size = file.metadata().map_err(|e| MediaError::io(path, e))?.len();
    open_reader(BufReader::new(file), size, path)
}

/// Opens the `size`-byte MP4 that `reader` reads from its start; `path` only names it in
/// errors.
fn open_reader<R: Read + Seek>(reader: R, size: u64, path: &Path) -> Result<Opened<R>, MediaError> {
    let reader =
        Mp4Reader::read_header(reader, size).map_err(|e| MediaError::container(path, e))?;
    let mut ids: Vec<u32> = reader.tracks().keys().copied().collect();
    ids.sort_unstable();
    let track = ids
        .iter()
        .filter_map(|id| reader.tracks().get(id))
        .find(|t| matches!(t.media_type(), Ok(MediaType::H264)))
        .ok_or_else(|| MediaError::container(path, "no H.264 (avc1) video track"))?;
    if track.sample_count() == 0 {
        return Err(MediaError::container(path, "the video track has no frames"));
    }
    let (track_id, width, height) = (
        track.track_id(),
        track.width() as u32,
        track.height() as u32,
    );
    let timeline = timeline(path, track)?;
    Ok(Opened {
        reader,
        track_id,
        width,
        height,
        timeline,
    })
}

/// Reads the size, frame rate, frame count, duration and text tags of an MP4.
pub fn probe_mp4(path: &Path) -> Result<Mp4Info, MediaError> {
    let o = open(path)?;
    Ok(info(&o, read_tags(path)?))
}

/// [`probe_mp4`] of an MP4 held in memory.
pub fn probe_mp4_bytes(bytes: &[u8]) -> Result<Mp4Info, MediaError> {
    let path = Path::new(IN_MEMORY);
    let size = bytes.len() as u64;
    let o = open_reader(Cursor::new(bytes), size, path)?;
    Ok(info(&o, read_tags_from(Cursor::new(bytes), size, path)?))
}

fn info<R>(o: &Opened<R>, tags: Vec<(String, String)>) -> Mp4Info {
    let n = o.timeline.composition.len() as u32;
    let duration_s = o.timeline.duration as f64 / o.timeline.timescale as f64;
    Mp4Info {
        width: o.width,
        height: o.height,
        fps: if duration_s > 0.0 {
            n as f64 / duration_s
        } else {
            0.0
        },
        frame_count: n,
        duration_s,
        tags,
    }
}

/// Decodes one frame. Decoding starts at the keyframe before it, so the result
/// does not depend on any earlier call.
pub fn decode_frame(path: &Path, selector: FrameSelector) -> Result<RgbImage, MediaError> {
    decode_opened(open(path)?, selector, path)
}

/// [`decode_frame`] of an MP4 held in memory.
pub fn decode_frame_bytes(bytes: &[u8], selector: FrameSelector) -> Result<RgbImage, MediaError> {
    let path = Path::new(IN_MEMORY);
    let o = open_reader(Cursor::new(bytes), bytes.len() as u64, path)?;
    decode_opened(o, selector, path)
}

fn decode_opened<R: Read + Seek>(
    mut o: Opened<R>,
    selector: FrameSelector,
    path: &Path,
) -> Result<RgbImage, MediaError> {
    let tl = &o.timeline;
    let n = tl.composition.len();
    // Display order: sample indices sorted by composition time.
    let mut display: Vec<usize> = (0..n).collect();
    display.sort_by_key(|&i| (tl.composition[i], i));
    let duration_s = tl.duration as f64 / tl.timescale as f64;
    let out_of_range = |selector: String, valid: String| MediaError::OutOfRange {
        path: path.to_path_buf(),
        selector,
        valid,
    };
    let shown = match selector {
        FrameSelector::Index(i) if (i as usize) < n => i as usize,
        FrameSelector::Index(i) => {
            return Err(out_of_range(
                format!("frame index {i}"),
                format!("indices are 0..={}", n - 1),
            ));
        }
        FrameSelector::Time(t) if t.is_finite() && t >= 0.0 && t < duration_s => {
            let units = (t * tl.timescale as f64).floor() as i64;
            display
                .partition_point(|&i| tl.composition[i] <= units)
                .max(1)
                - 1
        }
        FrameSelector::Time(t) => {
            return Err(out_of_range(
                format!("time {t}s"),
                format!("times are 0 <= t < {duration_s:.3}s"),
            ));
        }
    };
    let target = display[shown];
    let start = (0..=target).rev().find(|&i| tl.is_sync[i]).unwrap_or(0);
    // With frame reordering the target may depend on samples after it in decode
    // order, so decode until the next keyframe; without it, stop at the target.
    let reordered = (start..n)
        .zip(start + 1..n)
        .any(|(a, b)| tl.composition[b] < tl.composition[a]);
    let end = if reordered {
        (target + 1..n).find(|&i| tl.is_sync[i]).unwrap_or(n)
    } else {
        target + 1
    };
    let mut run: Vec<usize> = (start..end).collect();
    run.sort_by_key(|&i| (tl.composition[i], i));
    let rank = run
        .iter()
        .position(|&i| i == target)
        .expect("target is in its run");

    let track = &o.reader.tracks()[&o.track_id];
    let avc1 = track
        .trak
        .mdia
        .minf
        .stbl
        .stsd
        .avc1
        .as_ref()
        .ok_or_else(|| MediaError::container(path, "no avc1 sample entry"))?;
    let avcc = &avc1.avcc;
    let nal_len = avcc.length_size_minus_one as usize % 4 + 1;
    let params: Vec<Vec<u8>> = avcc
        .sequence_parameter_sets
        .iter()
        .chain(&avcc.picture_parameter_sets)
        .map(|p| p.bytes.clone())
        .collect();
    let mut samples = Vec::with_capacity(end - start);
    for i in start..end {
        let s = o
            .reader
            .read_sample(o.track_id, i as u32 + 1)
            .map_err(|e| MediaError::container(path, format!("reading sample {i}: {e}")))?
            .ok_or_else(|| MediaError::container(path, format!("sample {i} is missing")))?;
        samples.push(s.bytes.to_vec());
    }
    let mut pictures = decode_run(path, &params, &samples, nal_len)?;
    if pictures.len() != samples.len() {
        return Err(MediaError::codec(
            path,
            format!(
                "decoded {} pictures from {} samples (frames {start}..{end})",
                pictures.len(),
                samples.len()
            ),
        ));
    }
    Ok(pictures.swap_remove(rank))
}
