//! Inspecting a `WanPipeline` folder: `model_index.json`, the components' configs and the
//! sizes of their files (no weights read), and the request limits the pipeline declares.

use std::path::{Path, PathBuf};

use super::config::{self, ModelIndex};
use super::transformer::WanTransformerConfig;
use super::umt5::Umt5Config;
use super::vae::WanVaeConfig;
use crate::models::{Bound, Limits, ManifestFile, PipelineError, io_error};
use crate::nn::weights::{component_files, file_sizes};

/// The file that marks a Diffusers pipeline folder.
pub const MODEL_INDEX: &str = "model_index.json";
/// The only pipeline class this family runs.
pub const PIPELINE_CLASS: &str = "WanPipeline";
/// Scheduler classes the family can run.
pub const SCHEDULERS: [&str; 2] = ["UniPCMultistepScheduler", "FlowMatchEulerDiscreteScheduler"];

/// What inspecting a `WanPipeline` folder finds.
#[derive(Debug, Clone)]
pub struct WanManifest {
    pub dir: PathBuf,
    pub name: String,
    pub pipeline_class: String,
    pub scheduler_class: String,
    /// Pixels per latent cell (8 for Wan2.1's VAE) times the transformer's patch (2).
    pub size_multiple: u32,
    /// Frames per latent frame after the first (4 for Wan2.1's VAE).
    pub temporal_scale: u32,
    pub files: Vec<ManifestFile>,
    /// The components' own configs, parsed and checked once here.
    pub text_encoder: Umt5Config,
    pub transformer: WanTransformerConfig,
    pub vae: WanVaeConfig,
    /// `scheduler/scheduler_config.json`, checked; each generation builds its scheduler
    /// from it.
    pub scheduler_json: String,
}

fn read_file(path: &Path) -> Result<Vec<u8>, PipelineError> {
    std::fs::read(path).map_err(|e| io_error(path, e))
}

fn bad(path: &Path, reason: impl Into<String>) -> PipelineError {
    PipelineError::BadConfig {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks that `model_index.json` names `expected` (one of them) for `component`.
fn expect_class<'a>(
    index_path: &Path,
    component: &str,
    entry: &'a Option<config::ComponentRef>,
    expected: &[&str],
) -> Result<&'a str, PipelineError> {
    match entry.as_ref().and_then(|c| c.class()) {
        Some(class) if expected.contains(&class) => Ok(class),
        Some(class) => Err(bad(
            index_path,
            format!(
                "component `{component}` is {class}; this build runs {}",
                expected.join(" or ")
            ),
        )),
        None => Err(bad(
            index_path,
            format!("the pipeline has no `{component}` component"),
        )),
    }
}

/// The checks across the transformer's and the VAE's (each already validated) configs, and
/// what they fix for requests: `(size_multiple, temporal_scale)`, the pixels per latent cell
/// times the transformer's patch, and the frames per latent frame after the first.
/// `transformer_path` only names the file in errors.
pub fn pipeline_geometry(
    transformer: &WanTransformerConfig,
    vae: &WanVaeConfig,
    transformer_path: &Path,
) -> Result<(u32, u32), PipelineError> {
    let [pt, ph, pw] = transformer.patch();
    if pt != 1 || ph != pw || !(1..=8).contains(&ph) {
        return Err(bad(
            transformer_path,
            format!(
                "patch_size {:?} is not supported (expected [1, p, p])",
                transformer.patch_size
            ),
        ));
    }
    if transformer.in_channels != vae.z_dim {
        return Err(bad(
            transformer_path,
            format!(
                "in_channels {} does not match the VAE's z_dim {}",
                transformer.in_channels, vae.z_dim
            ),
        ));
    }
    // The VAE's checks keep its compressions at most 128 and the patch is at most 8, so the
    // size multiple is at most MAX_SIZE_MULTIPLE.
    Ok((
        (vae.spatial_compression() * ph) as u32,
        vae.temporal_compression() as u32,
    ))
}

/// Largest size multiple (pixels per latent cell times the patch) a pipeline can need: there
/// is then always a size between 256 and 1280 for requests.
pub const MAX_SIZE_MULTIPLE: u32 = 1024;

/// Reads a `WanPipeline` folder's metadata and the sizes of its files; reads no weights.
pub fn inspect_dir(dir: &Path) -> Result<WanManifest, PipelineError> {
    let index_path = dir.join(MODEL_INDEX);
    let index_bytes = read_file(&index_path)?;
    let index = ModelIndex::parse(&index_bytes, &index_path)?;
    if index.class_name != PIPELINE_CLASS {
        return Err(bad(
            &index_path,
            format!(
                "pipeline class {} is not supported; this build runs {PIPELINE_CLASS} (Wan2.1 text-to-video)",
                index.class_name
            ),
        ));
    }
    if index
        .transformer_2
        .as_ref()
        .and_then(|c| c.class())
        .is_some()
        || index.boundary_ratio.is_some()
        || index.expand_timesteps == Some(true)
    {
        return Err(bad(
            &index_path,
            "this is a Wan2.2 pipeline (transformer_2, boundary_ratio or expand_timesteps); \
             this build runs Wan2.1",
        ));
    }
    expect_class(
        &index_path,
        "text_encoder",
        &index.text_encoder,
        &["UMT5EncoderModel"],
    )?;
    expect_class(
        &index_path,
        "tokenizer",
        &index.tokenizer,
        &["T5TokenizerFast", "T5Tokenizer", "AutoTokenizer"],
    )?;
    expect_class(
        &index_path,
        "transformer",
        &index.transformer,
        &["WanTransformer3DModel"],
    )?;
    expect_class(&index_path, "vae", &index.vae, &["AutoencoderKLWan"])?;
    let scheduler_class = expect_class(&index_path, "scheduler", &index.scheduler, &SCHEDULERS)?;

    let mut files = vec![ManifestFile {
        path: MODEL_INDEX.into(),
        bytes: index_bytes.len() as u64,
    }];
    let mut config = |component: &str, name: &str| -> Result<PathBuf, PipelineError> {
        let path = dir.join(component).join(name);
        let bytes = std::fs::metadata(&path)
            .map_err(|e| io_error(&path, e))?
            .len();
        files.push(ManifestFile {
            path: format!("{component}/{name}"),
            bytes,
        });
        Ok(path)
    };
    let transformer_cfg = config("transformer", "config.json")?;
    let vae_cfg = config("vae", "config.json")?;
    let text_encoder_cfg = config("text_encoder", "config.json")?;
    let scheduler_cfg = config("scheduler", "scheduler_config.json")?;
    config("tokenizer", "tokenizer.json")?;
    for optional in ["tokenizer_config.json", "special_tokens_map.json"] {
        if dir.join("tokenizer").join(optional).is_file() {
            config("tokenizer", optional)?;
        }
    }
    for (component, stem) in [
        ("text_encoder", "model"),
        ("transformer", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
    ] {
        let weights = component_files(&dir.join(component), stem)?;
        for (path, bytes) in weights.iter().zip(file_sizes(&weights)?) {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            files.push(ManifestFile {
                path: format!("{component}/{name}"),
                bytes,
            });
        }
    }

    let transformer = WanTransformerConfig::from_file(&transformer_cfg)
        .and_then(|c| c.validate().map(|_| c))
        .map_err(|e| bad(&transformer_cfg, e.to_string()))?;
    let vae = WanVaeConfig::from_file(&vae_cfg)
        .and_then(|c| c.validate().map(|_| c))
        .map_err(|e| bad(&vae_cfg, e.to_string()))?;
    let text_encoder = Umt5Config::from_file(&text_encoder_cfg)
        .and_then(|c| c.validate().map(|_| c))
        .map_err(|e| bad(&text_encoder_cfg, e.to_string()))?;
    let scheduler_json = String::from_utf8(read_file(&scheduler_cfg)?)
        .map_err(|e| bad(&scheduler_cfg, e.to_string()))?;
    crate::schedulers::scheduler_from_json(&scheduler_json, &scheduler_cfg)
        .map_err(|e| bad(&scheduler_cfg, e.to_string()))?;
    let (size_multiple, temporal_scale) = pipeline_geometry(&transformer, &vae, &transformer_cfg)?;
    let name = index
        .name_or_path
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::path::absolute(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| PIPELINE_CLASS.to_string());
    Ok(WanManifest {
        dir: dir.to_path_buf(),
        name,
        pipeline_class: index.class_name,
        scheduler_class: scheduler_class.to_string(),
        size_multiple,
        temporal_scale,
        files,
        text_encoder,
        transformer,
        vae,
        scheduler_json,
    })
}

impl WanManifest {
    /// The request limits of this pipeline: [`wan_limits`] for its geometry.
    pub fn limits(&self) -> Limits {
        wan_limits(self.size_multiple, self.temporal_scale)
    }
}

/// The request limits of a Wan2.1 pipeline whose sizes are multiples of `size_multiple` and
/// whose frame counts are `1 + k · temporal_scale` ([`pipeline_geometry`]): Wan2.1's
/// defaults (832×480, 81 frames at 16 fps, guidance 5) within the product's rules; sizes
/// widen to 1280 for the 14B model's 1280×720. For another geometry the sizes and frame
/// counts snap to the nearest it can make, so that the defaults are always valid.
pub fn wan_limits(size_multiple: u32, temporal_scale: u32) -> Limits {
    let m = size_multiple.clamp(1, MAX_SIZE_MULTIPLE);
    let (min, max) = (256u32.div_ceil(m) * m, 1280 / m * m);
    let side = |default: u32| Bound {
        min,
        max,
        default: ((default + m / 2) / m * m).clamp(min, max),
    };
    let height = side(480);
    // Landscape, but no wider than twice the height (the aspect-ratio rule).
    let mut width = side(832);
    width.default = width.default.min(2 * height.default / m * m);
    let step = temporal_scale.max(1);
    let most_frames = 1 + (80 / step).max(1) * step;
    Limits {
        native_width: 832,
        native_height: 480,
        frames: Bound {
            min: 1 + step,
            max: most_frames,
            default: most_frames,
        },
        frame_step: temporal_scale,
        fps: Bound {
            min: 1,
            max: 30,
            default: 16,
        },
        guidance: Bound {
            min: 1.0,
            max: 15.0,
            default: 5.0,
        },
        width,
        height,
        size_multiple: m,
        presets: Limits::full_sampler_presets(20, 30, 50),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Quality;

    fn tiny() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/wan/tiny-pipeline")
    }

    /// A copy of the tiny pipeline in a temporary folder, to break.
    fn copy_tiny() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                let dest = to.join(e.file_name());
                if e.file_type().unwrap().is_dir() {
                    copy(&e.path(), &dest);
                } else {
                    std::fs::copy(e.path(), dest).unwrap();
                }
            }
        }
        copy(&tiny(), tmp.path());
        tmp
    }

    #[test]
    fn the_tiny_pipeline_is_inspected_from_metadata() {
        let m = inspect_dir(&tiny()).unwrap();
        assert_eq!(m.pipeline_class, "WanPipeline");
        assert_eq!(m.scheduler_class, "UniPCMultistepScheduler");
        assert_eq!((m.size_multiple, m.temporal_scale), (16, 4));
        let names: Vec<&str> = m.files.iter().map(|f| f.path.as_str()).collect();
        for want in [
            "model_index.json",
            "transformer/config.json",
            "transformer/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.safetensors",
            "text_encoder/model.safetensors",
            "tokenizer/tokenizer.json",
            "scheduler/scheduler_config.json",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        let weights = tiny().join("transformer/diffusion_pytorch_model.safetensors");
        let listed = m
            .files
            .iter()
            .find(|f| f.path == "transformer/diffusion_pytorch_model.safetensors")
            .unwrap();
        assert_eq!(listed.bytes, std::fs::metadata(weights).unwrap().len());
        let l = m.limits();
        assert_eq!((l.width.default, l.height.default), (832, 480));
        assert_eq!((l.frames.default, l.frame_step, l.fps.default), (81, 4, 16));
        assert_eq!(l.guidance.default, 5.0);
        assert!(l.preset(Quality::High).steps.min >= 50);
    }

    /// Any geometry the configs allow gives limits whose defaults pass validation (a patch
    /// of 3 used to leave the defaults 832×480 off its multiples of 24).
    #[test]
    fn limits_of_every_geometry_accept_their_defaults() {
        assert_eq!(
            wan_limits(16, 4),
            WanManifest::limits(&inspect_dir(&tiny()).unwrap())
        );
        let request = crate::request::RawRequest {
            prompt: Some("a ball".into()),
            ..Default::default()
        };
        for spatial in [1, 2, 4, 8, 16, 32, 64, 128] {
            for patch in 1..=8 {
                for temporal in [1, 2, 4, 8, 16, 32, 64, 128] {
                    let l = wan_limits(spatial * patch, temporal);
                    let v = crate::request::validate(&request, &l)
                        .unwrap_or_else(|e| panic!("{spatial}x{patch}, {temporal}: {e}; {l:?}"));
                    assert!(v.params.frames <= 81.max(1 + temporal));
                }
            }
        }
        let l = wan_limits(24, 4);
        assert_eq!((l.width.default, l.height.default), (840, 480));
        assert_eq!((l.width.min, l.width.max), (264, 1272));
        let l = wan_limits(16, 32);
        assert_eq!((l.frames.min, l.frames.max, l.frames.default), (33, 65, 65));
    }

    #[test]
    fn missing_weights_and_foreign_pipelines_are_clear_errors() {
        let tmp = copy_tiny();
        let weights = tmp.path().join("vae/diffusion_pytorch_model.safetensors");
        std::fs::remove_file(&weights).unwrap();
        let err = inspect_dir(tmp.path()).unwrap_err();
        assert!(
            matches!(&err, PipelineError::MissingFile { path } if path == &weights),
            "{err}"
        );

        let tmp = copy_tiny();
        let index = tmp.path().join(MODEL_INDEX);
        let text = std::fs::read_to_string(&index).unwrap();
        std::fs::write(
            &index,
            text.replace("\"WanPipeline\"", "\"WanImageToVideoPipeline\""),
        )
        .unwrap();
        let err = inspect_dir(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("WanImageToVideoPipeline") && err.contains("WanPipeline"),
            "{err}"
        );

        std::fs::write(
            &index,
            text.replace("\"boundary_ratio\": null", "\"boundary_ratio\": 0.875"),
        )
        .unwrap();
        let err = inspect_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("Wan2.2"), "{err}");

        std::fs::write(&index, text.replace("AutoencoderKLWan", "AutoencoderKL")).unwrap();
        let err = inspect_dir(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("component `vae` is AutoencoderKL"), "{err}");
    }
}
