//! Memory estimates for a generation request (weights, peak working memory, output frames)
//! and the check that refuses, before any job exists, a request that cannot fit in the
//! memory available (`MemAvailable`, a cgroup limit, or `AIVIDEO_MEMORY_LIMIT`).
//!
//! The estimates are deliberately simple closed forms of the shapes each family computes
//! with; the Wan figures are calibrated on the peak RSS measured by `cargo bench --bench
//! wan` and `--bench umt5_memory` (see README), to within about 10 %.

use std::path::{Path, PathBuf};

use candle_core::DType;
use serde::Serialize;

use super::registry::Configs;
use super::starter::config::StarterConfig;
use super::wan::WanManifest;
use super::wan::pipeline::MAX_SEQUENCE_LENGTH;
use super::wan::transformer::WanTransformerConfig;
use super::wan::umt5::Umt5Config;
use super::{DeviceChoice, GenerationParams, Manifest, PipelineError};
use crate::nn::attention::ATTENTION_CHUNK_SCORES;

/// The environment variable that sets the memory a generation may use (bytes, or a number
/// with a `KiB`, `MiB`, `GiB` or `TiB` suffix), instead of what the system reports.
pub const LIMIT_ENV: &str = "AIVIDEO_MEMORY_LIMIT";

/// Bytes of an f32: the starter model, the VAE's products on the CPU and the softmax
/// always compute in f32.
const F32: u64 = 4;

/// The Wan VAE decoder's working set, in f32 values per (decoder base channel × output
/// pixel × frame of a decoded chunk): the feature maps at full resolution, the causal
/// convolution caches and the Winograd transforms. Calibrated on the README's measurement
/// (5 latent frames at 240×416 with the 1.3B VAE's decoder: 3.11 GiB peak RSS).
const VAE_DECODE_VALUES: u64 = 16;

/// Memory a Wan generation holds besides its tensors: the program, the allocator's slack
/// and the UMT5 tokenizer (the difference between the measured peaks and the tensors).
const WAN_PROCESS: u64 = 256 << 20;

/// What a request needs, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    /// The model's weights (and fixed tables) as they sit in memory while it runs.
    pub weights_bytes: u64,
    /// The peak working memory of the largest phase (text encoding, a denoising step, or
    /// decoding and converting the frames).
    pub activations_bytes: u64,
    /// The finished RGB frames, kept until the video is written.
    pub output_bytes: u64,
    pub total: u64,
}

impl MemoryEstimate {
    fn new(weights_bytes: u64, activations_bytes: u64, output_bytes: u64) -> Self {
        MemoryEstimate {
            weights_bytes,
            activations_bytes,
            output_bytes,
            total: weights_bytes
                .saturating_add(activations_bytes)
                .saturating_add(output_bytes),
        }
    }
}

/// How much memory a generation may use, and where that figure comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Available {
    pub bytes: u64,
    /// `AIVIDEO_MEMORY_LIMIT`, `MemAvailable` or the cgroup file it was read from.
    pub source: String,
}

/// The saturating product of `factors`.
fn product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |acc, &f| acc.saturating_mul(f))
}

/// The saturating sum of `terms`.
fn sum(terms: &[u64]) -> u64 {
    terms.iter().fold(0u64, |acc, &t| acc.saturating_add(t))
}

fn u(v: usize) -> u64 {
    v as u64
}

/// Estimates the memory `params` needs with `manifest`'s model computing in a dtype of
/// `dtype_bytes` bytes (the starter model always computes in f32).
pub fn estimate(
    manifest: &Manifest,
    params: &GenerationParams,
    dtype_bytes: u64,
) -> MemoryEstimate {
    match manifest.configs() {
        Configs::Starter(cfg) => {
            let weights_file = manifest
                .files
                .iter()
                .filter(|f| !f.path.ends_with("config.json"))
                .map(|f| f.bytes)
                .sum();
            starter(cfg, weights_file, params)
        }
        Configs::Wan(wan) => wan_estimate(wan, params, dtype_bytes.max(1)),
    }
}

/// The starter model: the weights file's bytes and the f32 tensors built from them (plus the
/// fixed position embedding); one denoiser block's activations for the batch (2 with
/// guidance), the sampler's clips, and the resampled frames.
fn starter(cfg: &StarterConfig, weights_file: u64, p: &GenerationParams) -> MemoryEstimate {
    let batch: u64 = if p.guidance != 1.0 { 2 } else { 1 };
    let (tf, n) = (u(cfg.token_frames()), u(cfg.patches()));
    let tokens = product(&[tf, n]);
    let (d, heads) = (u(cfg.dim), u(cfg.heads));
    let weights = product(&[2, weights_file]).saturating_add(product(&[tokens, d, F32]));
    // The residual stream and its normalised, projected, split and attended copies.
    let stream = product(&[12, batch, tokens, d]);
    // Scores and probabilities of the largest attention: within a frame, across frames,
    // or to the prompt.
    let widest = product(&[tf, n, n])
        .max(product(&[n, tf, tf]))
        .max(product(&[tokens, u(cfg.max_tokens)]));
    let attention = product(&[2, batch, heads, widest]);
    let mlp = product(&[2, batch, tokens, u(cfg.mlp_ratio), d]);
    let clip = product(&[u(cfg.frames), u(cfg.native_size), u(cfg.native_size), 3]);
    // Noise, state, the doubled batch and the velocities of the sampler.
    let sampler = product(&[8, batch, clip]);
    let activations = product(&[F32, sum(&[stream, attention.max(mlp), sampler])])
        // The native frames as bytes: pixels, a flat copy and the frames.
        .saturating_add(product(&[3, clip]));
    let output = product(&[p.frames.into(), p.width.into(), p.height.into(), 3]);
    MemoryEstimate::new(weights, activations, output)
}

/// Parameters of a Wan transformer: blocks (self- and cross-attention with their norms,
/// the feed-forward, the modulation table), the patch, time and text embeddings, the head.
pub fn wan_transformer_params(t: &WanTransformerConfig) -> u64 {
    let d = product(&[u(t.num_attention_heads), u(t.attention_head_dim)]);
    let ff = u(t.ffn_dim);
    let patch = product(&t.patch().map(u));
    let dd = product(&[d, d]);
    let attention = sum(&[product(&[4, dd]), product(&[6, d])]);
    let block = sum(&[
        product(&[2, attention]),
        if t.cross_attn_norm { 2 * d } else { 0 },
        product(&[2, d, ff]),
        ff,
        product(&[7, d]),
    ]);
    let embeddings = sum(&[
        product(&[u(t.in_channels), patch, d]),
        product(&[u(t.freq_dim), d]),
        product(&[8, dd]),
        product(&[u(t.text_dim), d]),
        product(&[11, d]),
    ]);
    let out = product(&[u(t.out_channels()), patch]);
    let head = sum(&[product(&[2, d]), product(&[d, out]), out]);
    sum(&[product(&[u(t.num_layers), block]), embeddings, head])
}

/// The UMT5 encoder streamed one layer at a time: one layer's tensors (read as f32 at
/// worst) and the activations of the prompt and negative prompt at full length.
fn umt5_stream(c: &Umt5Config) -> u64 {
    let dm = u(c.d_model);
    let inner = product(&[u(c.num_heads), u(c.d_kv)]);
    let ffn_mats = if c.validate().map_or(true, |f| f.gated) {
        3
    } else {
        2
    };
    let layer = sum(&[
        product(&[4, dm, inner]),
        product(&[ffn_mats, dm, u(c.d_ff)]),
        product(&[u(c.relative_attention_num_buckets), u(c.num_heads)]),
        product(&[2, dm]),
    ]);
    let seq = u(MAX_SEQUENCE_LENGTH);
    let width = sum(&[product(&[4, dm]), product(&[ffn_mats, u(c.d_ff)])]);
    let hidden = product(&[2, seq, width]);
    let scores = product(&[2, 2, u(c.num_heads), seq, seq]);
    product(&[F32, sum(&[layer, hidden, scores])])
}

/// Wan's resident memory: the transformer in the compute dtype, the VAE as stored, and
/// [`WAN_PROCESS`].
fn wan_weights(m: &WanManifest, b: u64) -> u64 {
    let vae_file: u64 = m
        .files
        .iter()
        .filter(|f| f.path.starts_with("vae/") && f.path.ends_with(".safetensors"))
        .map(|f| f.bytes)
        .sum();
    sum(&[
        product(&[wan_transformer_params(&m.transformer), b]),
        vae_file,
        WAN_PROCESS,
    ])
}

/// The peak working memory of each phase of a Wan generation, on top of the weights.
#[derive(Debug, Clone, Copy)]
struct WanPhases {
    /// The UMT5 encoder streamed one layer at a time.
    encode: u64,
    /// One transformer forward with the text embeddings and the scheduler's latents.
    denoise: u64,
    /// The VAE decode and the conversion of its output to bytes.
    decode: u64,
}

/// [`WanPhases`] for `p` in a dtype of `b` bytes. A forward has latent frames ×
/// (h / 16) × (w / 16) tokens for Wan2.1 (the VAE's 8 times the patch's 2).
fn wan_phases(m: &WanManifest, p: &GenerationParams, b: u64) -> WanPhases {
    let t = &m.transformer;
    let (frames, height, width) = (u64::from(p.frames), u64::from(p.height), u64::from(p.width));
    let latent_frames = frames.saturating_sub(1) / u64::from(m.temporal_scale.max(1)) + 1;
    let cell = u64::from(m.size_multiple.max(1));
    let tokens = product(&[latent_frames, height / cell, width / cell]);
    let heads = u(t.num_attention_heads);
    let (d, ff) = (product(&[heads, u(t.attention_head_dim)]), u(t.ffn_dim));
    // f32 residual stream, norms and modulation; q, k, v and their rotated copies in the
    // dtype; the feed-forward's hidden layer before and after the activation; one chunk of
    // attention scores, its softmax and (for 16-bit dtypes) its widened copy.
    let scores = product(&[heads, tokens, tokens]).min(u(ATTENTION_CHUNK_SCORES));
    let mut forward = sum(&[
        product(&[tokens, d, 6 * F32 + 8 * b.min(F32)]),
        product(&[2, tokens, ff, b]),
        product(&[3, scores, F32]),
    ]);
    if b < F32 {
        // candle widens a 16-bit weight to f32 for each product on the CPU.
        forward = forward.saturating_add(product(&[d, ff, F32]));
    }
    let text = product(&[2, u(MAX_SEQUENCE_LENGTH), sum(&[u(t.text_dim), d]), F32]);
    let spatial = u(m.vae.spatial_compression());
    let latents = product(&[
        6,
        u(m.vae.z_dim),
        latent_frames,
        height / spatial,
        width / spatial,
        F32,
    ]);
    let pixels = product(&[frames, height, width, 3]);
    let decode = sum(&[
        product(&[
            VAE_DECODE_VALUES,
            u(m.vae.decoder_base_dim()),
            u64::from(m.temporal_scale),
            height,
            width,
            F32,
        ]),
        // The decoded video in f32 and the temporaries of its conversion to bytes.
        product(&[6, pixels, F32]),
        pixels,
    ]);
    WanPhases {
        encode: umt5_stream(&m.text_encoder),
        denoise: sum(&[forward, text, latents]),
        decode,
    }
}

/// Wan: [`wan_weights`], the largest of the [`WanPhases`], and the final frames as bytes.
fn wan_estimate(m: &WanManifest, p: &GenerationParams, b: u64) -> MemoryEstimate {
    let phases = wan_phases(m, p, b);
    let pixels = product(&[p.frames.into(), p.height.into(), p.width.into(), 3]);
    MemoryEstimate::new(
        wan_weights(m, b),
        phases.encode.max(phases.denoise).max(phases.decode),
        pixels,
    )
}

/// `1.5 GiB`, `12.0 MiB`, `512 bytes`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} bytes")
}

/// The refusal's message (see [`PipelineError::InsufficientMemory`]).
pub fn refusal_message(estimate: &MemoryEstimate, available: &Available) -> String {
    format!(
        "this request needs about {} of memory (weights {}, working memory {}, frames {}); \
         {} is available ({}); lower --width/--height/--frames, use --dtype bf16 with a Wan \
         model, or free memory",
        format_bytes(estimate.total),
        format_bytes(estimate.weights_bytes),
        format_bytes(estimate.activations_bytes),
        format_bytes(estimate.output_bytes),
        format_bytes(available.bytes),
        available.source,
    )
}

/// Refuses an estimate larger than the memory available.
pub fn check_fits(estimate: &MemoryEstimate, available: &Available) -> Result<(), PipelineError> {
    if estimate.total > available.bytes {
        Err(PipelineError::InsufficientMemory {
            estimate: *estimate,
            available: available.clone(),
        })
    } else {
        Ok(())
    }
}

/// Parses a size: bytes, or a number with a `K`/`KiB`, `M`/`MiB`, `G`/`GiB` or `T`/`TiB`
/// suffix (powers of 1024; case and a space before the suffix do not matter).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}` is not a size: use bytes or a number with KiB, MiB, GiB or TiB"
            ));
        }
    };
    let not_a_number = || format!("`{text}` is not a size: `{number}` is not a number");
    let bytes = if number.contains('.') {
        let v: f64 = number.parse().map_err(|_| not_a_number())?;
        let b = v * scale as f64;
        (b.is_finite() && b < u64::MAX as f64).then_some(b as u64)
    } else {
        number
            .parse::<u64>()
            .map_err(|_| not_a_number())?
            .checked_mul(scale)
    };
    bytes.ok_or_else(|| format!("`{text}` is too large"))
}

/// `MemAvailable` of `/proc/meminfo`'s text, in bytes.
pub fn meminfo_available(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let rest = line.strip_prefix("MemAvailable:")?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The files of one cgroup version's memory controller.
struct CgroupLayout {
    /// Where the controller is mounted.
    root: &'static str,
    limit: &'static str,
    usage: &'static str,
    /// The `memory.stat` key of reclaimable page cache.
    inactive_key: &'static str,
}

const CGROUP_V2: CgroupLayout = CgroupLayout {
    root: "/sys/fs/cgroup",
    limit: "memory.max",
    usage: "memory.current",
    inactive_key: "inactive_file",
};

const CGROUP_V1: CgroupLayout = CgroupLayout {
    root: "/sys/fs/cgroup/memory",
    limit: "memory.limit_in_bytes",
    usage: "memory.usage_in_bytes",
    inactive_key: "total_inactive_file",
};

/// What one cgroup folder still allows: its limit less what its processes use, not
/// counting reclaimable page cache. `None` without a limit (v2 writes `max`, v1 a value
/// near 2^63).
fn cgroup_dir(layout: &CgroupLayout, dir: &Path) -> Option<Available> {
    let limit_path = dir.join(layout.limit);
    let limit = read_u64(&limit_path).filter(|&l| l < 1 << 60)?;
    let used = read_u64(&dir.join(layout.usage)).unwrap_or(0);
    let inactive = std::fs::read_to_string(dir.join("memory.stat"))
        .ok()
        .and_then(|stat| {
            stat.lines().find_map(|l| {
                let value = l.strip_prefix(layout.inactive_key)?.strip_prefix(' ')?;
                value.trim().parse::<u64>().ok()
            })
        })
        .unwrap_or(0);
    Some(Available {
        bytes: limit.saturating_sub(used.saturating_sub(inactive)),
        source: format!("the cgroup limit in {}", limit_path.display()),
    })
}

/// The cgroup folders that limit this process under `layout`: its own (`own`, the path
/// `/proc/self/cgroup` gives), those above it, and the mount's root (a container's own
/// cgroup when the path is outside its namespace).
fn cgroup_dirs(layout: &CgroupLayout, own: Option<&str>) -> Vec<PathBuf> {
    let root = Path::new(layout.root);
    let mut dirs = Vec::new();
    if let Some(rel) = own {
        let mut dir = root.join(rel.trim().trim_start_matches('/'));
        while dir.starts_with(root) && dir != root {
            dirs.push(dir.clone());
            if !dir.pop() {
                break;
            }
        }
    }
    dirs.push(root.to_path_buf());
    dirs
}

/// This process's cgroup paths in `/proc/self/cgroup`'s text: the v2 one (`0::/path`) and
/// the v1 memory controller's (`4:memory:/path`).
pub fn own_cgroups(text: &str) -> (Option<&str>, Option<&str>) {
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    (v2, v1)
}

/// The tightest cgroup limit on this process, v2 or v1.
fn cgroup_available() -> Option<Available> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let (v2, v1) = own_cgroups(&text);
    [(&CGROUP_V2, v2), (&CGROUP_V1, v1)]
        .into_iter()
        .flat_map(|(layout, own)| {
            cgroup_dirs(layout, own)
                .into_iter()
                .filter_map(move |dir| cgroup_dir(layout, &dir))
        })
        .min_by_key(|a| a.bytes)
}

/// The memory a generation may use: `AIVIDEO_MEMORY_LIMIT` when set; otherwise, on Linux,
/// the smaller of `MemAvailable` and what the cgroup limits leave; `None` when unknown.
pub fn available() -> Result<Option<Available>, PipelineError> {
    if let Some(value) = std::env::var_os(LIMIT_ENV) {
        let bad = |reason: String| PipelineError::BadSetting {
            name: LIMIT_ENV.into(),
            reason,
        };
        let text = value
            .to_str()
            .ok_or_else(|| bad("the value is not UTF-8".into()))?;
        if !text.trim().is_empty() {
            return Ok(Some(Available {
                bytes: parse_size(text).map_err(bad)?,
                source: LIMIT_ENV.into(),
            }));
        }
    }
    let system = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| meminfo_available(&t))
        .map(|bytes| Available {
            bytes,
            source: "MemAvailable in /proc/meminfo".into(),
        });
    Ok(system
        .into_iter()
        .chain(cgroup_available())
        .min_by_key(|a| a.bytes))
}

/// Whether the model will compute in host memory: on the CPU, or with `auto` in a build
/// without a GPU back end. (A GPU's own memory is not measured here.)
pub fn computes_in_host_memory(device: DeviceChoice) -> bool {
    match device {
        DeviceChoice::Cpu => true,
        DeviceChoice::Auto => !(cfg!(feature = "cuda") || cfg!(feature = "metal")),
        DeviceChoice::Cuda | DeviceChoice::Metal => false,
    }
}

/// Refuses the first of `requests` that cannot fit, before any weight is read. The check
/// runs when the model computes in host memory, or whenever `AIVIDEO_MEMORY_LIMIT` is set;
/// it is skipped when the available memory is unknown. `dtype` is the requested compute
/// dtype (`None`: the family's default on the CPU, f32).
pub fn check_requests<'a>(
    manifest: &Manifest,
    requests: impl IntoIterator<Item = &'a GenerationParams>,
    device: DeviceChoice,
    dtype: Option<DType>,
) -> Result<(), PipelineError> {
    let overridden = std::env::var_os(LIMIT_ENV).is_some_and(|v| !v.is_empty());
    if !overridden && !computes_in_host_memory(device) {
        return Ok(());
    }
    let Some(available) = available()? else {
        return Ok(());
    };
    let dtype_bytes = dtype.map_or(F32, |d| u(d.size_in_bytes()));
    for params in requests {
        check_fits(&estimate(manifest, params, dtype_bytes), &available)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
