//! OpenH264 encoder and decoder wrappers that speak in MP4 terms (length-prefixed samples).

use std::path::Path;

use image::RgbImage;
use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::decoder::{DecodeOptions, Decoder, DecoderConfig, Flush};
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile, QpRange,
    RateControlMode, UsageType, VuiConfig,
};
use openh264::formats::{YUVSlices, YUVSource};

use super::MediaError;
use super::yuv::{rgb_to_yuv420, yuv420_to_rgb};

/// One encoded frame in MP4 sample form: NAL units each prefixed by a 4-byte length.
pub(crate) struct Sample {
    pub data: Vec<u8>,
    pub is_sync: bool,
}

/// The encoded stream: parameter sets for the `avcC` box plus one sample per frame.
pub(crate) struct EncodedStream {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub samples: Vec<Sample>,
}

/// Target bitrate: about 0.15 bits per pixel per frame; the QP range below keeps
/// quality high even where this budget would not.
fn target_bitrate(width: u32, height: u32, fps: u32) -> u32 {
    let bps = width as u64 * height as u64 * fps as u64 * 15 / 100;
    bps.clamp(200_000, 40_000_000) as u32
}

/// Splits an Annex B byte stream (start-code delimited) into NAL units without
/// their start codes. Trailing zero bytes (part of a following 4-byte start code)
/// are dropped: a NAL unit never ends in 0x00.
pub(crate) fn split_annex_b(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(stream.len(), |&n| n - 3);
        let mut nal = &stream[s..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    nals
}

/// Encodes `frames` (all the same even size) at constant `fps`, one thread,
/// an IDR on frame 0 and at least every two seconds after it.
pub(crate) fn encode(
    path: &Path,
    frames: &[RgbImage],
    fps: u32,
) -> Result<EncodedStream, MediaError> {
    let (w, h) = frames[0].dimensions();
    let config = EncoderConfig::new()
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(target_bitrate(w, h, fps)))
        .qp(QpRange::new(16, 26))
        .max_frame_rate(FrameRate::from_hz(fps as f32))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(fps * 2))
        .num_threads(1)
        .background_detection(false)
        .vui(VuiConfig::bt601());
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| MediaError::codec(path, format!("cannot create encoder: {e}")))?;
    silence(&mut encoder);

    let (mut sps, mut pps): (Option<Vec<u8>>, Option<Vec<u8>>) = (None, None);
    let mut samples = Vec::with_capacity(frames.len());
    let mut annex_b = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let yuv = rgb_to_yuv420(frame);
        let src = YUVSlices::new(
            (&yuv.y, &yuv.u, &yuv.v),
            (yuv.width, yuv.height),
            (yuv.width, yuv.width / 2, yuv.width / 2),
        );
        let ts = Timestamp::from_millis(i as u64 * 1000 / fps as u64);
        let bitstream = encoder
            .encode_at(&src, ts)
            .map_err(|e| MediaError::codec(path, format!("frame {i}: {e}")))?;
        let frame_type = bitstream.frame_type();
        annex_b.clear();
        bitstream.write_vec(&mut annex_b);
        if i == 0 && frame_type != FrameType::IDR {
            return Err(MediaError::codec(
                path,
                format!("frame 0 is {frame_type:?}, not IDR"),
            ));
        }
        let mut data = Vec::with_capacity(annex_b.len() + 16);
        for nal in split_annex_b(&annex_b) {
            match nal[0] & 0x1f {
                7 => set_once(path, &mut sps, nal, "SPS")?,
                8 => set_once(path, &mut pps, nal, "PPS")?,
                _ => {
                    data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    data.extend_from_slice(nal);
                }
            }
        }
        if data.is_empty() {
            return Err(MediaError::codec(
                path,
                format!("frame {i} produced no picture data ({frame_type:?})"),
            ));
        }
        samples.push(Sample {
            data,
            is_sync: frame_type == FrameType::IDR,
        });
        // The encoder's own intra period counts from its last IDR; force one if it
        // has not produced one within two seconds (e.g. after a scene-cut I frame).
        let since_idr = samples.iter().rev().take_while(|s| !s.is_sync).count();
        if since_idr + 1 >= 2 * fps as usize {
            encoder.force_intra_frame();
        }
    }
    match (sps, pps) {
        (Some(sps), Some(pps)) => Ok(EncodedStream { sps, pps, samples }),
        _ => Err(MediaError::codec(path, "encoder emitted no SPS/PPS")),
    }
}

/// Makes OpenH264 quiet before it initialises: by default it prints warnings to
/// stderr (e.g. that frame skipping is off, which we want). Errors still reach
/// us as return codes.
fn silence(encoder: &mut Encoder) {
    // Values from OpenH264's codec_app_def.h (openh264-sys2 is not a direct dependency).
    const ENCODER_OPTION_TRACE_LEVEL: std::os::raw::c_int = 25;
    let mut quiet: std::os::raw::c_int = 0; // WELS_LOG_QUIET
    // SAFETY: TRACE_LEVEL is the one option OpenH264 accepts before Initialize
    // (welsEncoderExt.cpp, SetOption); the pointer is to a live c_int.
    unsafe {
        encoder
            .raw_api()
            .set_option(ENCODER_OPTION_TRACE_LEVEL, (&raw mut quiet).cast());
    }
}

/// Records a parameter set; a later different one would not be described by `avcC`.
fn set_once(
    path: &Path,
    slot: &mut Option<Vec<u8>>,
    nal: &[u8],
    what: &str,
) -> Result<(), MediaError> {
    match slot {
        None => *slot = Some(nal.to_vec()),
        Some(old) if old.as_slice() == nal => {}
        Some(_) => {
            return Err(MediaError::codec(
                path,
                format!("encoder changed the {what} mid-stream"),
            ));
        }
    }
    Ok(())
}

/// Decodes a run of samples that starts at a sync sample. Returns how many pictures came
/// out and the `keep`-th of them in output (display) order, if there was one; the others are
/// dropped as they come, so memory does not grow with the run.
pub(crate) fn decode_run(
    path: &Path,
    parameter_sets: &[Vec<u8>],
    samples: &[Vec<u8>],
    nal_len: usize,
    keep: usize,
) -> Result<(usize, Option<RgbImage>), MediaError> {
    let config = DecoderConfig::new().flush_after_decode(Flush::NoFlush);
    let mut decoder = Decoder::with_api_config(OpenH264API::from_source(), config)
        .map_err(|e| MediaError::codec(path, format!("cannot create decoder: {e}")))?;
    let mut count = 0;
    let mut kept = None;
    let mut annex_b = Vec::new();
    for ps in parameter_sets {
        annex_b.extend_from_slice(&[0, 0, 0, 1]);
        annex_b.extend_from_slice(ps);
    }
    for (i, sample) in samples.iter().enumerate() {
        length_prefixed_to_annex_b(path, sample, nal_len, &mut annex_b)?;
        let opts = DecodeOptions::new().flush_after_decode(Flush::NoFlush);
        let picture = decoder
            .decode_with_options(&annex_b, opts)
            .map_err(|e| MediaError::codec(path, format!("decoding sample {i} of the run: {e}")))?;
        if let Some(p) = picture {
            if count == keep {
                kept = Some(to_rgb(&p));
            }
            count += 1;
        }
        annex_b.clear();
    }
    let rest = decoder
        .flush_remaining()
        .map_err(|e| MediaError::codec(path, format!("flushing the decoder: {e}")))?;
    for p in &rest {
        if count == keep {
            kept = Some(to_rgb(p));
        }
        count += 1;
    }
    Ok((count, kept))
}

fn to_rgb(p: &impl YUVSource) -> RgbImage {
    yuv420_to_rgb(p.dimensions(), (p.y(), p.u(), p.v()), p.strides())
}

fn length_prefixed_to_annex_b(
    path: &Path,
    mut sample: &[u8],
    nal_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), MediaError> {
    while !sample.is_empty() {
        if sample.len() < nal_len {
            return Err(MediaError::container(
                path,
                "truncated NAL length in a sample",
            ));
        }
        let len = sample[..nal_len]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | b as usize);
        let body = sample.get(nal_len..nal_len + len).ok_or_else(|| {
            MediaError::container(path, "NAL unit runs past the end of its sample")
        })?;
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(body);
        sample = &sample[nal_len + len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_split_strips_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let nals = split_annex_b(&s);
        assert_eq!(
            nals,
            vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 4][..]]
        );
    }

    #[test]
    fn length_prefix_conversion_rejects_truncation() {
        let p = Path::new("x.mp4");
        let mut out = Vec::new();
        length_prefixed_to_annex_b(p, &[0, 0, 0, 2, 0x65, 9], 4, &mut out).unwrap();
        assert_eq!(out, vec![0, 0, 0, 1, 0x65, 9]);
        assert!(length_prefixed_to_annex_b(p, &[0, 0, 0, 5, 0x65], 4, &mut out).is_err());
    }

    #[test]
    fn encodes_every_frame_with_idr_first_and_periodic_keyframes() {
        let frames: Vec<RgbImage> = (0..20)
            .map(|i| RgbImage::from_pixel(256, 256, image::Rgb([i * 10, 100, 200 - i * 5])))
            .collect();
        let s = encode(Path::new("t.mp4"), &frames, 4).unwrap();
        assert_eq!(s.samples.len(), 20);
        assert!(s.samples[0].is_sync);
        assert_eq!(s.sps[0] & 0x1f, 7);
        assert_eq!(s.pps[0] & 0x1f, 8);
        // Keyframe at least every 2 s = 8 frames.
        let mut gap = 0;
        for x in &s.samples {
            gap = if x.is_sync { 0 } else { gap + 1 };
            assert!(gap < 8);
        }
    }
}
