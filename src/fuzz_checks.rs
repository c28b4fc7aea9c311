//! The checks behind the fuzz targets in `tests/fuzz` and behind the replay of their corpora
//! in `tests/fuzz_corpus.rs`: each feeds arbitrary bytes to a parser of outside input and
//! panics when the parser panics or breaks one of its invariants. Not a stable API.

use std::path::Path;

use crate::media::{self, FrameSelector};
use crate::models::starter::config::StarterConfig;
use crate::models::starter::starter_limits;
use crate::models::starter::weights::parse_config;
use crate::models::wan::config::ModelIndex;
use crate::models::wan::manifest::{pipeline_geometry, wan_limits};
use crate::models::wan::transformer::WanTransformerConfig;
use crate::models::wan::umt5::{Umt5Config, relative_position_bucket};
use crate::models::wan::vae::WanVaeConfig;
use crate::models::{Bound, Limits};
use crate::prompts::{MAX_LINE_BYTES, MAX_PROMPTS, read_prompts};
use crate::request::{MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS, MIN_STEPS, RawRequest, validate};

/// A fuzz target's check: panics when `data` exposes a bug.
pub type Check = fn(data: &[u8]);

/// Each target's name (its folder under `tests/fuzz/corpus/`) and check.
pub const TARGETS: [(&str, Check); 5] = [
    ("request", request),
    ("prompts", prompts),
    ("mp4", mp4),
    ("safetensors_header", safetensors_header),
    ("model_config", model_config),
];

/// Wan2.1's geometry: 8 pixels per latent cell times a 2×2 patch, 4 frames per latent frame.
const WAN21_SIZE_MULTIPLE: u32 = 16;
const WAN21_TEMPORAL_SCALE: u32 = 4;

/// `data` as a JSON object of [`RawRequest`] fields, validated against the starter model's
/// and Wan2.1's limits; what passes must obey every rule.
pub fn request(data: &[u8]) {
    let Ok(raw) = serde_json::from_slice::<RawRequest>(data) else {
        return;
    };
    for limits in [
        starter_limits(&StarterConfig::small()),
        wan_limits(WAN21_SIZE_MULTIPLE, WAN21_TEMPORAL_SCALE),
    ] {
        check_request(&raw, &limits);
    }
}

/// Validates `raw` against `limits` and checks the outcome.
fn check_request(raw: &RawRequest, limits: &Limits) {
    let v = match validate(raw, limits) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.rule.is_empty() && !e.fix.is_empty(), "{e:?}");
            let _ = (e.to_string(), e.details());
            return;
        }
    };
    let p = &v.params;
    let steps = limits.preset(v.quality).steps;
    assert!(
        steps.contains(p.steps),
        "steps {} outside {steps:?}",
        p.steps
    );
    assert!((MIN_STEPS..=MAX_STEPS).contains(&i64::from(p.steps)));
    let m = limits.size_multiple.max(1);
    for (name, value, bound) in [
        ("width", p.width, limits.width),
        ("height", p.height, limits.height),
    ] {
        assert!(bound.contains(value), "{name} {value} outside {bound:?}");
        assert!(value % m == 0, "{name} {value} not a multiple of {m}");
    }
    let (w, h) = (u64::from(p.width), u64::from(p.height));
    assert!(2 * w >= h && w <= 2 * h, "aspect of {w}x{h}");
    assert!(limits.frames.contains(p.frames), "frames {}", p.frames);
    assert!(p.frames >= 1);
    assert!(
        (p.frames - 1).is_multiple_of(limits.frame_step.max(1)),
        "frames {} for step {}",
        p.frames,
        limits.frame_step
    );
    assert!(limits.fps.contains(p.fps), "fps {}", p.fps);
    assert!(
        p.guidance.is_finite() && limits.guidance.contains(p.guidance),
        "guidance {}",
        p.guidance
    );
    check_prompt_text(&p.prompt);
    if let Some(negative) = &p.negative_prompt {
        check_prompt_text(negative);
    }
    assert!(p.seed <= MAX_SEED as u64);
    match raw.seed {
        Some(s) => assert!(p.seed == s as u64 && !v.seed_was_random),
        None => assert!(v.seed_was_random),
    }
    let given = [
        (raw.steps, p.steps),
        (raw.width, p.width),
        (raw.height, p.height),
        (raw.frames, p.frames),
        (raw.fps, p.fps),
    ];
    for (asked, got) in given {
        assert!(
            asked.is_none_or(|a| a == i64::from(got)),
            "{asked:?} -> {got}"
        );
    }
    let _ = v.to_metadata();
}

/// A validated prompt: trimmed, 1 to 1000 characters, no control characters but tab and
/// newline.
fn check_prompt_text(text: &str) {
    assert!(!text.is_empty() && text == text.trim(), "{text:?}");
    assert!(text.chars().count() <= MAX_PROMPT_CHARS);
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && c != '\t' && c != '\n'),
        "{text:?}"
    );
}

/// `data` as a prompts file: every prompt is a trimmed, non-comment line of the file, in
/// order; every error names a line the file has.
pub fn prompts(data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    match read_prompts(data) {
        Ok(prompts) => {
            assert!(!prompts.is_empty() && prompts.len() <= MAX_PROMPTS);
            let mut last = 0;
            for p in &prompts {
                assert!(p.line > last, "line {} after {last}", p.line);
                last = p.line;
                let t = &p.text;
                assert!(
                    !t.is_empty() && t == t.trim() && !t.starts_with('#'),
                    "{t:?}"
                );
                assert!(!t.contains('\n') && t.len() <= MAX_LINE_BYTES);
                let source = lines.get(p.line - 1).expect("the line exists");
                assert_eq!(std::str::from_utf8(source).map(str::trim), Ok(t.as_str()));
            }
        }
        Err(e) => {
            let message = e.to_string();
            if let Some(line) = e.line() {
                assert!((1..=lines.len()).contains(&line), "{e:?}");
                assert!(message.contains(&format!("line {line}")), "{message}");
            }
        }
    }
}

/// `data` as an MP4: probing it, then decoding its first, middle and last frames, either
/// fails cleanly or gives consistent answers.
pub fn mp4(data: &[u8]) {
    let Ok(info) = media::probe_mp4_bytes(data) else {
        return;
    };
    assert!(info.frame_count >= 1);
    // Every sample takes at least one byte of the file.
    assert!(info.frame_count as usize <= data.len(), "{info:?}");
    assert!(
        info.duration_s.is_finite() && info.duration_s >= 0.0,
        "{info:?}"
    );
    assert!(info.fps.is_finite() && info.fps >= 0.0, "{info:?}");
    let last = info.frame_count - 1;
    for selector in [
        FrameSelector::Index(0),
        FrameSelector::Time(info.duration_s / 2.0),
        FrameSelector::Index(last),
    ] {
        if let Ok(frame) = media::decode_frame_bytes(data, selector) {
            assert!(frame.width() > 0 && frame.height() > 0);
        }
    }
    let past = media::decode_frame_bytes(data, FrameSelector::Index(info.frame_count));
    assert!(
        past.is_err(),
        "frame {} of {}",
        info.frame_count,
        info.frame_count
    );
}

/// `data` as a safetensors file: the header check before mapping must accept every file the
/// `safetensors` crate accepts, and candle's own loader must not panic.
pub fn safetensors_header(data: &[u8]) {
    let ours = crate::nn::weights::read_header(data, data.len() as u64);
    if let Ok(st) = safetensors::SafeTensors::deserialize(data) {
        assert!(
            ours.is_ok(),
            "safetensors reads it, the check refuses: {ours:?}"
        );
        for (name, view) in st.tensors() {
            let elements: usize = view.shape().iter().product();
            let bits = elements * view.dtype().bitsize();
            assert_eq!(view.data().len(), bits.div_ceil(8), "{name}");
        }
    }
    let _ = candle_core::safetensors::load_buffer(data, &candle_core::Device::Cpu);
}

/// The first byte picks a config parser (`'0'`: the starter model's `config.json`, `'1'`:
/// Wan's `model_index.json`, `'2'`: its transformer, `'3'`: VAE, `'4'`: UMT5 text encoder,
/// `'5'`: scheduler config); the rest is the file. What a parser accepts must give usable
/// limits and schedules.
pub fn model_config(data: &[u8]) {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => starter_config(json),
        1 => {
            if let Ok(index) = ModelIndex::parse(json, Path::new("model_index.json")) {
                let _ = [&index.transformer, &index.vae, &index.scheduler]
                    .map(|c| c.as_ref().and_then(|c| c.class()));
            }
        }
        2 => {
            if let Ok(t) = WanTransformerConfig::from_json(json) {
                let _ = (t.inner_dim(), t.out_channels(), t.patch());
                check_wan_geometry(&t, &WanVaeConfig::default());
            }
        }
        3 => {
            let Ok(vae) = std::str::from_utf8(json).map(WanVaeConfig::from_json) else {
                return;
            };
            if let Ok(vae) = vae {
                let _ = vae.decoder_base_dim();
                let transformer = WanTransformerConfig {
                    in_channels: vae.z_dim,
                    ..WanTransformerConfig::default()
                };
                check_wan_geometry(&transformer, &vae);
            }
        }
        4 => {
            if let Ok(cfg) = Umt5Config::from_json(json, Path::new("text_encoder/config.json")) {
                check_umt5_buckets(&cfg);
            }
        }
        _ => scheduler_config(json),
    }
}

/// A starter config that parses gives limits that validation can use without panicking.
fn starter_config(json: &[u8]) {
    let Ok(cfg) = parse_config(json, Path::new("config.json")) else {
        return;
    };
    let limits = starter_limits(&cfg);
    check_request(&prompt_only(), &limits);
}

/// A request naming only a prompt: every other field takes the model's default.
fn prompt_only() -> RawRequest {
    RawRequest {
        prompt: Some("a red ball".into()),
        seed: Some(7),
        ..RawRequest::default()
    }
}

/// A pipeline whose configs pass their checks must accept a request of defaults.
fn check_wan_geometry(transformer: &WanTransformerConfig, vae: &WanVaeConfig) {
    let path = Path::new("transformer/config.json");
    let Ok((size_multiple, temporal_scale)) = pipeline_geometry(transformer, vae, path) else {
        return;
    };
    let limits = wan_limits(size_multiple, temporal_scale);
    for bound in [limits.width, limits.height, limits.frames, limits.fps] {
        assert!(bound_is_usable(bound), "{bound:?} in {limits:?}");
    }
    if let Err(e) = validate(&prompt_only(), &limits) {
        panic!("the defaults of {limits:?} are refused: {e}");
    }
    check_request(&prompt_only(), &limits);
}

fn bound_is_usable(b: Bound<u32>) -> bool {
    b.min <= b.max && b.contains(b.default)
}

/// The relative-position buckets of every query/key pair of a 512-token prompt (Wan's text
/// length) index the config's bucket table.
fn check_umt5_buckets(cfg: &Umt5Config) {
    let buckets = cfg.relative_attention_num_buckets;
    let distance = cfg.relative_attention_max_distance;
    for relative in -511..=511 {
        let b = relative_position_bucket(relative, buckets, distance);
        assert!(
            (b as usize) < buckets,
            "bucket {b} of {buckets} for {relative}"
        );
    }
}

/// A scheduler config that loads gives, for every step count a request may ask, one
/// timestep per step and finite noise levels in [0, 1].
fn scheduler_config(json: &[u8]) {
    let Ok(text) = std::str::from_utf8(json) else {
        return;
    };
    let path = Path::new("scheduler/scheduler_config.json");
    let Ok(mut scheduler) = crate::schedulers::scheduler_from_json(text, path) else {
        return;
    };
    for steps in [1, 2, 30, MAX_STEPS as usize] {
        scheduler.set_timesteps(steps);
        assert_eq!(scheduler.timesteps().len(), steps);
        assert_eq!(scheduler.sigmas().len(), steps + 1);
        assert!(
            scheduler.timesteps().iter().all(|t| t.is_finite()),
            "{:?}",
            scheduler.timesteps()
        );
        assert!(
            scheduler
                .sigmas()
                .iter()
                .all(|s| s.is_finite() && (0.0..=1.0).contains(s)),
            "{:?}",
            scheduler.sigmas()
        );
    }
}
