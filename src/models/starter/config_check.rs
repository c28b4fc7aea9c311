//! Range checks for a starter model's `config.json`: every field, and every size the model
//! derives from them, against what this build runs safely (a model folder is untrusted input).

use std::collections::HashSet;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::{Component, Path};

use super::config::{StarterConfig, TrainingRecord};
use super::denoiser::MIN_T;
use super::text_encoder::Vocabulary;

/// Native frame side in pixels.
pub const NATIVE_SIZE: RangeInclusive<usize> = 4..=1024;
/// Frames per clip.
pub const FRAMES: RangeInclusive<usize> = 1..=128;
/// Default frames per second: the request rules allow 1 to 30.
pub const FPS: RangeInclusive<u32> = 1..=30;
/// Patch side in pixels.
pub const PATCH: RangeInclusive<usize> = 1..=32;
/// Frames per token.
pub const TUBELET: RangeInclusive<usize> = 1..=16;
/// Model width (also a multiple of 4: the position embedding splits it into two sine–cosine
/// halves, each of which must be even).
pub const DIM: RangeInclusive<usize> = 4..=1024;
/// Denoiser blocks.
pub const DEPTH: RangeInclusive<usize> = 1..=32;
/// Attention heads (they must divide `dim`).
pub const HEADS: RangeInclusive<usize> = 1..=64;
/// Feed-forward width over model width.
pub const MLP_RATIO: RangeInclusive<usize> = 1..=8;
/// Text encoder layers.
pub const TEXT_LAYERS: RangeInclusive<usize> = 1..=16;
/// Prompt tokens kept.
pub const MAX_TOKENS: RangeInclusive<usize> = 1..=256;
/// Canonical tokens, `<pad>` and `<empty>` included.
pub const VOCABULARY_TOKENS: RangeInclusive<usize> = 3..=65_536;
/// Synonyms, and phrases, each.
pub const VOCABULARY_ENTRIES: RangeInclusive<usize> = 0..=65_536;
/// Characters of one vocabulary word or phrase.
pub const WORD_CHARS: RangeInclusive<usize> = 1..=64;
/// Characters of the model's name.
pub const NAME_CHARS: RangeInclusive<usize> = 1..=128;
/// Sampler timestep shift.
pub const SHIFT: RangeInclusive<f32> = 0.1..=20.0;
/// Flow time the sampler starts from (at least the denoiser's smallest time).
pub const T_MAX: RangeInclusive<f32> = MIN_T..=1.0;
/// Flow time below which guidance applies.
pub const GUIDANCE_MAX_T: RangeInclusive<f32> = 0.0..=1.0;
/// Classifier-free guidance scale: the range requests may ask for.
pub const GUIDANCE: RangeInclusive<f32> = 1.0..=15.0;
/// Tokens per token frame, `(native_size / patch)²` (spatial attention is quadratic in it).
pub const MAX_PATCHES: usize = 4096;
/// Tokens per clip, `(native_size / patch)² × frames / tubelet`.
pub const MAX_CLIP_TOKENS: usize = 16_384;
/// Values per token, `tubelet × patch² × 3`.
pub const MAX_TOKEN_VALUES: usize = 16_384;
/// Held-out triples listed in the training record.
pub const MAX_HELD_OUT: usize = 4096;
/// Characters of a training-record string.
pub const RECORD_CHARS: usize = 1024;

/// Why a config was refused: the field (a JSON path such as `vocabulary.tokens[3]`) and
/// what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct ConfigIssue {
    pub field: String,
    pub problem: String,
}

/// `field` is `value`; it must `rule`.
fn issue(field: impl Into<String>, value: impl Display, rule: impl Display) -> ConfigIssue {
    ConfigIssue {
        field: field.into(),
        problem: format!("is {value}; it must {rule}"),
    }
}

fn between<T: Display>(range: &RangeInclusive<T>) -> String {
    format!("be between {} and {}", range.start(), range.end())
}

/// `value` within `range`, with `more` appended to the rule when it also has to satisfy
/// something else (reported together, so one message says everything the field needs).
fn count(
    field: &str,
    value: usize,
    range: RangeInclusive<usize>,
    more: &str,
) -> Result<(), ConfigIssue> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(issue(field, value, format!("{}{more}", between(&range))))
    }
}

/// A finite `value` within `range`.
fn real(field: &str, value: f32, range: RangeInclusive<f32>) -> Result<(), ConfigIssue> {
    if value.is_finite() && range.contains(&value) {
        Ok(())
    } else {
        Err(issue(
            field,
            value,
            format!("be a finite number {}", between(&range)),
        ))
    }
}

/// A finite, non-negative `value` (a training-record figure).
fn non_negative(field: &str, value: f64) -> Result<(), ConfigIssue> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(issue(field, value, "be a finite number of at least 0"))
    }
}

/// A finite fraction in [0, 1] (a training-record figure).
fn fraction(field: &str, value: f64) -> Result<(), ConfigIssue> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(issue(field, value, "be a finite number between 0 and 1"))
    }
}

/// Text of at most `chars` characters and no control characters.
fn text(field: &str, value: &str, chars: RangeInclusive<usize>) -> Result<(), ConfigIssue> {
    let n = value.chars().count();
    if !chars.contains(&n) {
        return Err(issue(
            field,
            format!("{n} characters long"),
            format!("have {} to {} characters", chars.start(), chars.end()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(issue(
            field,
            format!("{value:?}"),
            "not contain control characters",
        ));
    }
    Ok(())
}

/// Checks every field of `cfg` and the sizes derived from them; the first problem found
/// is returned. The architecture name is checked by the caller.
pub fn check(cfg: &StarterConfig) -> Result<(), ConfigIssue> {
    text("name", &cfg.name, NAME_CHARS)?;
    check_shape(cfg)?;
    check_sampler(cfg)?;
    check_weights_name(&cfg.weights)?;
    check_sha256(&cfg.weights_sha256)?;
    check_vocabulary(&cfg.vocabulary)?;
    if let Some(record) = &cfg.training {
        check_training(record)?;
    }
    Ok(())
}

/// Sizes, divisibility and the token counts they imply.
fn check_shape(cfg: &StarterConfig) -> Result<(), ConfigIssue> {
    count("patch", cfg.patch, PATCH, "")?;
    count(
        "native_size",
        cfg.native_size,
        NATIVE_SIZE,
        &format!(" and be a multiple of `patch` ({})", cfg.patch),
    )?;
    if !cfg.native_size.is_multiple_of(cfg.patch) {
        return Err(issue(
            "native_size",
            cfg.native_size,
            format!("be a multiple of `patch` ({})", cfg.patch),
        ));
    }
    count("tubelet", cfg.tubelet, TUBELET, "")?;
    count(
        "frames",
        cfg.frames,
        FRAMES,
        &format!(" and be a multiple of `tubelet` ({})", cfg.tubelet),
    )?;
    if !cfg.frames.is_multiple_of(cfg.tubelet) {
        return Err(issue(
            "frames",
            cfg.frames,
            format!("be a multiple of `tubelet` ({})", cfg.tubelet),
        ));
    }
    if !FPS.contains(&cfg.fps) {
        return Err(issue("fps", cfg.fps, between(&FPS)));
    }
    count("dim", cfg.dim, DIM, " and be a multiple of 4")?;
    if !cfg.dim.is_multiple_of(4) {
        return Err(issue("dim", cfg.dim, "be a multiple of 4"));
    }
    let divides_dim = format!(" and divide `dim` ({})", cfg.dim);
    count("heads", cfg.heads, HEADS, &divides_dim)?;
    if !cfg.dim.is_multiple_of(cfg.heads) {
        return Err(issue(
            "heads",
            cfg.heads,
            format!("divide `dim` ({})", cfg.dim),
        ));
    }
    count("depth", cfg.depth, DEPTH, "")?;
    count("mlp_ratio", cfg.mlp_ratio, MLP_RATIO, "")?;
    count("text_layers", cfg.text_layers, TEXT_LAYERS, "")?;
    count("max_tokens", cfg.max_tokens, MAX_TOKENS, "")?;

    // The ranges above keep these products far from overflowing.
    let patches = cfg.patches();
    if patches > MAX_PATCHES {
        return Err(issue(
            "native_size",
            cfg.native_size,
            format!(
                "give at most {MAX_PATCHES} patches a frame: (native_size / patch)² is \
                 ({} / {})² = {patches}",
                cfg.native_size, cfg.patch
            ),
        ));
    }
    let tokens = patches * cfg.token_frames();
    if tokens > MAX_CLIP_TOKENS {
        return Err(issue(
            "frames",
            cfg.frames,
            format!(
                "give at most {MAX_CLIP_TOKENS} tokens a clip: (native_size / patch)² × \
                 frames / tubelet is {patches} × {} / {} = {tokens}",
                cfg.frames, cfg.tubelet
            ),
        ));
    }
    let values = cfg.token_values();
    if values > MAX_TOKEN_VALUES {
        return Err(issue(
            "patch",
            cfg.patch,
            format!(
                "give at most {MAX_TOKEN_VALUES} values a token: tubelet × patch² × 3 is \
                 {} × {}² × 3 = {values}",
                cfg.tubelet, cfg.patch
            ),
        ));
    }
    Ok(())
}

fn check_sampler(cfg: &StarterConfig) -> Result<(), ConfigIssue> {
    real("shift", cfg.shift, SHIFT)?;
    real("t_max", cfg.t_max, T_MAX)?;
    real("guidance_max_t", cfg.guidance_max_t, GUIDANCE_MAX_T)?;
    real("default_guidance", cfg.default_guidance, GUIDANCE)
}

/// `weights` must name a file directly inside the model folder.
fn check_weights_name(name: &str) -> Result<(), ConfigIssue> {
    let rule = "be a plain file name inside the model folder (no `/`, `\\`, `..` or absolute path)";
    let mut parts = Path::new(name).components();
    let plain = matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(p)), None) if p == name
    );
    if !plain || name.contains(['/', '\\', ':', '\0']) {
        return Err(issue("weights", format!("{name:?}"), rule));
    }
    text("weights", name, 1..=255)
}

fn check_sha256(sha: &str) -> Result<(), ConfigIssue> {
    if sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(issue(
            "weights_sha256",
            format!("{sha:?}"),
            "be the weights' SHA-256 as 64 lower-case hex digits",
        ))
    }
}

fn check_vocabulary(v: &Vocabulary) -> Result<(), ConfigIssue> {
    let n = v.tokens.len();
    if !VOCABULARY_TOKENS.contains(&n) {
        return Err(issue(
            "vocabulary.tokens",
            format!("{n} entries long"),
            format!(
                "have {} to {} entries, starting with `<pad>` and `<empty>`",
                VOCABULARY_TOKENS.start(),
                VOCABULARY_TOKENS.end()
            ),
        ));
    }
    if v.tokens[0] != "<pad>" || v.tokens[1] != "<empty>" {
        return Err(issue(
            "vocabulary.tokens",
            format!("{:?}", &v.tokens[..2]),
            "start with `<pad>` and `<empty>` (token ids 0 and 1)",
        ));
    }
    let mut seen = HashSet::with_capacity(v.tokens.len());
    for (i, token) in v.tokens.iter().enumerate() {
        let field = format!("vocabulary.tokens[{i}]");
        text(&field, token, WORD_CHARS)?;
        if !seen.insert(token.as_str()) {
            return Err(issue(
                field,
                format!("{token:?}"),
                "not repeat an earlier token",
            ));
        }
    }
    for (name, entries) in [("synonyms", &v.synonyms), ("phrases", &v.phrases)] {
        let field = format!("vocabulary.{name}");
        if !VOCABULARY_ENTRIES.contains(&entries.len()) {
            return Err(issue(
                field,
                format!("{} entries long", entries.len()),
                format!("have at most {} entries", VOCABULARY_ENTRIES.end()),
            ));
        }
        for (i, (word, canonical)) in entries.iter().enumerate() {
            let field = format!("vocabulary.{name}[{i}]");
            text(&field, word, WORD_CHARS)?;
            if name == "phrases" && word.split(' ').filter(|w| !w.is_empty()).count() != 2 {
                return Err(issue(field, format!("{word:?}"), "be two words"));
            }
            if !v.tokens[2..].iter().any(|t| t == canonical) {
                return Err(issue(
                    field,
                    format!("{word:?} → {canonical:?}"),
                    "map onto a token of `vocabulary.tokens`",
                ));
            }
        }
    }
    Ok(())
}

/// The training record is informational, but it is shown and kept: its figures must be
/// finite and its lists bounded.
fn check_training(r: &TrainingRecord) -> Result<(), ConfigIssue> {
    let f = |name: &str| format!("training.{name}");
    non_negative(&f("learning_rate"), r.learning_rate)?;
    fraction(&f("ema_decay"), r.ema_decay)?;
    fraction(&f("cond_dropout"), r.cond_dropout.into())?;
    non_negative(&f("object_weight"), r.object_weight.into())?;
    if let Some(until) = r.object_weight_until {
        fraction(&f("object_weight_until"), until.into())?;
    }
    fraction(&f("high_noise_share"), r.high_noise_share.into())?;
    non_negative(&f("shape_weight"), r.shape_weight.into())?;
    non_negative(&f("final_loss"), r.final_loss)?;
    non_negative(&f("wall_time_s"), r.wall_time_s)?;
    if r.held_out.len() > MAX_HELD_OUT {
        return Err(issue(
            f("held_out"),
            format!("{} entries long", r.held_out.len()),
            format!("have at most {MAX_HELD_OUT} entries"),
        ));
    }
    for (i, triple) in r.held_out.iter().enumerate() {
        text(&f(&format!("held_out[{i}]")), triple, 1..=RECORD_CHARS)?;
    }
    text(&f("held_out_rule"), &r.held_out_rule, 0..=RECORD_CHARS)
}

#[cfg(test)]
#[path = "config_check_tests.rs"]
mod tests;
