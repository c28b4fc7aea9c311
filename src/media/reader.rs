//! `probe_mp4` and `decode_frame`: demux an H.264 MP4 (the `mp4` crate) and decode
//! one frame with OpenH264, starting from the preceding keyframe.

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use image::RgbImage;
use mp4::{MediaType, Mp4Reader, Mp4Track};
use serde::Serialize;

use super::MediaError;
use super::h264::decode_run;
use super::tags::{check_structure, read_tags, read_tags_from};

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

/// Largest frame side accepted, in pixels (H.264's largest level allows 8192).
const MAX_SIDE: u32 = 16384;

/// Checks the sample tables of a (non-fragmented) track against the `size`-byte file before
/// anything is allocated or read from them: every sample takes bytes of the file, within it,
/// and the tables describe exactly the track's samples.
fn check_sample_tables(path: &Path, track: &Mp4Track, size: u64) -> Result<(), MediaError> {
    let bad = |reason: String| Err(MediaError::container(path, reason));
    let stbl = &track.trak.mdia.minf.stbl;
    let n = u64::from(stbl.stsz.sample_count);
    if n > size {
        return bad(format!(
            "the video track declares {n} frames, more than the file's {size} bytes hold"
        ));
    }
    let sample_bytes: u64 = if stbl.stsz.sample_size > 0 {
        n * u64::from(stbl.stsz.sample_size)
    } else if stbl.stsz.sample_sizes.len() as u64 == n {
        stbl.stsz.sample_sizes.iter().map(|&s| u64::from(s)).sum()
    } else {
        return bad(format!(
            "stsz lists {} sizes for {n} samples",
            stbl.stsz.sample_sizes.len()
        ));
    };
    if sample_bytes > size.min(u64::from(u32::MAX)) {
        return bad(format!(
            "the samples add up to {sample_bytes} bytes, more than the file's {size} \
             (or than 4 GiB)"
        ));
    }
    let stts_samples: u64 = stbl
        .stts
        .entries
        .iter()
        .map(|e| u64::from(e.sample_count))
        .sum();
    if stts_samples != n {
        return bad(format!(
            "stts times {stts_samples} samples, the track has {n}"
        ));
    }
    if stbl.stsc.entries.is_empty()
        || stbl
            .stsc
            .entries
            .iter()
            .any(|e| e.first_chunk == 0 || e.samples_per_chunk == 0)
    {
        return bad("stsc has no entries, a chunk numbered 0 or an empty chunk".into());
    }
    let beyond = |offset: u64| offset > size;
    let offsets_beyond = match (&stbl.stco, &stbl.co64) {
        (Some(stco), _) => stco.entries.iter().any(|&o| beyond(u64::from(o))),
        (None, Some(co64)) => co64.entries.iter().any(|&o| beyond(o)),
        (None, None) => return bad("no chunk offsets (stco or co64)".into()),
    };
    if offsets_beyond {
        return bad("a chunk offset points past the end of the file".into());
    }
    Ok(())
}

fn timeline(path: &Path, track: &Mp4Track) -> Result<Timeline, MediaError> {
    let stbl = &track.trak.mdia.minf.stbl;
    // check_sample_tables made sure that stts covers exactly these samples.
    let n = stbl.stsz.sample_count as usize;
    let mut decode_times = Vec::with_capacity(n);
    let mut t = 0u64;
    for e in &stbl.stts.entries {
        for _ in 0..e.sample_count {
            decode_times.push(t);
            t += e.sample_delta as u64;
        }
    }
    let mut offsets = vec![0i64; n];
    if let Some(ctts) = &stbl.ctts {
        let mut i = 0;
        for e in &ctts.entries {
            let end = n.min(i + e.sample_count as usize);
            offsets[i..end].fill(e.sample_offset as i64);
            i = end;
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
fn open_reader<R: Read + Seek>(
    mut reader: R,
    size: u64,
    path: &Path,
) -> Result<Opened<R>, MediaError> {
    check_structure(&mut reader, size, path)?;
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| MediaError::io(path, e))?;
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
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(MediaError::container(
            path,
            format!("frame size {width}x{height} is larger than {MAX_SIDE} pixels a side"),
        ));
    }
    check_sample_tables(path, track, size)?;
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
    let (count, picture) = decode_run(path, &params, &samples, nal_len, rank)?;
    match picture {
        Some(picture) if count == samples.len() => Ok(picture),
        _ => Err(MediaError::codec(
            path,
            format!(
                "decoded {count} pictures from {} samples (frames {start}..{end})",
                samples.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{VideoMetadata, write_mp4};

    /// A 4-frame 256×256 MP4 from the writer, as bytes.
    fn small_mp4() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("small.mp4");
        let frames: Vec<RgbImage> = (0..4u8)
            .map(|i| RgbImage::from_pixel(256, 256, image::Rgb([60 * i, 90, 200])))
            .collect();
        let meta = VideoMetadata {
            title: "small".into(),
            comment_json: "{}".into(),
            extra: Vec::new(),
        };
        write_mp4(
            &path,
            &frames,
            4,
            &meta,
            &crate::media::WriteOptions::default(),
        )
        .unwrap();
        std::fs::read(path).unwrap()
    }

    /// Offset of the body of the box at `path` (32-bit box sizes, as the writer writes).
    fn body_offset(data: &[u8], path: &[&[u8; 4]]) -> usize {
        let (mut start, mut end) = (0, data.len());
        for kind in path {
            let mut pos = start;
            loop {
                assert!(pos + 8 <= end, "no {}", String::from_utf8_lossy(*kind));
                let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
                if &data[pos + 4..pos + 8] == *kind {
                    break;
                }
                pos += size;
            }
            let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            (start, end) = (pos + 8, pos + size);
            if *kind == b"stsd" {
                // Version/flags and the entry count come before the sample entries.
                start += 8;
            }
            if *kind == b"meta" && &data[start + 4..start + 8] != b"hdlr" {
                // Version/flags (ISO files).
                start += 4;
            }
        }
        start
    }

    fn patched(data: &[u8], path: &[&[u8; 4]], at: usize, bytes: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        let o = body_offset(data, path) + at;
        out[o..o + bytes.len()].copy_from_slice(bytes);
        out
    }

    fn stbl(child: &'static [u8; 4]) -> [&'static [u8; 4]; 6] {
        [b"moov", b"trak", b"mdia", b"minf", b"stbl", child]
    }

    fn container_error(data: &[u8]) -> String {
        match probe_mp4_bytes(data) {
            Ok(info) => panic!("accepted: {info:?}"),
            Err(e @ MediaError::Container { .. }) => e.to_string(),
            Err(e) => panic!("expected a container error, got {e}"),
        }
    }

    #[test]
    fn bytes_api_probes_and_decodes() {
        let data = small_mp4();
        let info = probe_mp4_bytes(&data).unwrap();
        assert_eq!((info.width, info.height, info.frame_count), (256, 256, 4));
        assert!(
            info.tags
                .contains(&("title".to_string(), "small".to_string()))
        );
        let last = decode_frame_bytes(&data, FrameSelector::Index(3)).unwrap();
        assert_eq!(last.dimensions(), (256, 256));
        let past = decode_frame_bytes(&data, FrameSelector::Index(4)).unwrap_err();
        assert!(matches!(past, MediaError::OutOfRange { .. }), "{past}");
    }

    /// Sample counts far beyond what the file holds were allocated (stts: one entry per
    /// sample) before being checked.
    #[test]
    fn sample_counts_beyond_the_file_are_refused_before_allocating() {
        let data = small_mp4();
        let max = u32::MAX.to_be_bytes();
        // stts: version/flags, entry count, then (sample count, delta) pairs.
        let e = container_error(&patched(&data, &stbl(b"stts"), 8, &max));
        assert!(e.contains("stts times 4294967295 samples"), "{e}");
        // stsz: version/flags, sample size, sample count; with a constant sample size, no
        // per-sample entries bound the count.
        let constant = patched(&data, &stbl(b"stsz"), 4, &1u32.to_be_bytes());
        let e = container_error(&patched(&constant, &stbl(b"stsz"), 8, &max));
        assert!(e.contains("declares 4294967295 frames"), "{e}");
        // A constant sample size of 4 GiB for every sample.
        let e = container_error(&patched(&data, &stbl(b"stsz"), 4, &max));
        assert!(e.contains("the samples add up to"), "{e}");
    }

    #[test]
    fn empty_chunks_and_offsets_past_the_end_are_refused() {
        let data = small_mp4();
        // stsc: version/flags, entry count, then (first chunk, samples per chunk, index).
        let e = container_error(&patched(&data, &stbl(b"stsc"), 12, &[0; 4]));
        assert!(e.contains("an empty chunk"), "{e}");
        let e = container_error(&patched(&data, &stbl(b"stsc"), 8, &[0; 4]));
        assert!(e.contains("a chunk numbered 0"), "{e}");
        // stco: version/flags, entry count, offsets.
        let e = container_error(&patched(&data, &stbl(b"stco"), 8, &u32::MAX.to_be_bytes()));
        assert!(e.contains("past the end of the file"), "{e}");
    }

    /// Found by fuzzing: a box of size 0 inside `moov` made the `mp4` crate loop forever,
    /// and a box smaller than its header inside `meta` made it underflow `size - 8`.
    #[test]
    fn boxes_the_mp4_crate_would_loop_or_underflow_on_are_refused_first() {
        let data = small_mp4();
        let mvhd = body_offset(&data, &[b"moov", b"mvhd"]) - 8;
        let mut zero = data.clone();
        zero[mvhd..mvhd + 4].copy_from_slice(&[0; 4]);
        let e = container_error(&zero);
        assert!(e.contains("bad box size 0") && e.contains("moov"), "{e}");
        let ilst = body_offset(&data, &[b"moov", b"udta", b"meta", b"ilst"]) - 8;
        let mut small = data.clone();
        small[ilst..ilst + 4].copy_from_slice(&4u32.to_be_bytes());
        let e = container_error(&small);
        assert!(e.contains("bad box size 4") && e.contains("meta"), "{e}");
        let mut fragmented = data.clone();
        let moov = body_offset(&data, &[b"moov"]) - 4;
        fragmented[moov..moov + 4].copy_from_slice(b"moof");
        assert!(container_error(&fragmented).contains("fragmented"));
    }

    /// Found by fuzzing: a top-level `emsg` box whose strings run past it made the `mp4`
    /// crate underflow its message size (and allocate by the result).
    #[test]
    fn event_message_boxes_are_refused_before_the_mp4_crate_reads_them() {
        let mp4 = small_mp4();
        let ftyp = u32::from_be_bytes(mp4[..4].try_into().unwrap()) as usize;
        // Version 0 and flags, then two short strings, and none of the four numbers that
        // should follow them: the crate reads those from the next box and computes the
        // message size as 16 - 32.
        let emsg = [
            0, 0, 0, 16, b'e', b'm', b's', b'g', 0, 0, 0, 0, b'a', 0, b'b', 0,
        ];
        let data = [&mp4[..ftyp], &emsg, &mp4[ftyp..]].concat();
        assert!(container_error(&data).contains("emsg"));
    }

    #[test]
    fn frame_sides_beyond_the_limit_are_refused() {
        let data = small_mp4();
        let mut avc1 = stbl(b"stsd").to_vec();
        avc1.push(b"avc1");
        // Sample entry: 6 reserved, data reference index, 16 pre-defined/reserved, width.
        let e = container_error(&patched(&data, &avc1, 24, &[0xff, 0xff]));
        assert!(e.contains("65535x256 is larger than 16384"), "{e}");
    }
}
