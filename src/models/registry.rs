//! The model registry: which families exist, how to inspect a model source from its metadata
//! alone (no weights read, no device opened), and how to load what was inspected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::DType;
use serde::{Deserialize, Serialize};

use super::starter::{self, config::StarterConfig};
use super::wan::{self, WanManifest};
use super::{DeviceChoice, Limits, ModelInfo, PipelineError, VideoModel, select_device};
use crate::hub::{HubCache, ModelRef, RepoId};

/// The model families this build can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// The small diffusion transformer trained in this repository (`config.json` + weights).
    Starter,
    /// Wan2.1 text-to-video in the Diffusers layout (`model_index.json` naming `WanPipeline`).
    Wan,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Starter => "starter",
            Family::Wan => "wan",
        }
    }
}

/// Where a model's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// The starter model compiled into this binary.
    Bundled,
    /// A folder: the starter layout (`config.json`) or a Diffusers pipeline (`model_index.json`).
    Dir(PathBuf),
    /// A Hub repository at a revision, read from the Hugging Face cache.
    Hub {
        repo: RepoId,
        revision: String,
        alias: Option<&'static str>,
    },
}

impl ModelSource {
    /// `Some(dir)` is a folder, `None` the bundled model.
    pub fn from_option(dir: Option<PathBuf>) -> Self {
        dir.map_or(ModelSource::Bundled, ModelSource::Dir)
    }

    /// What a `--model` argument names (see [`ModelRef::parse`]); `None` is the bundled model.
    pub fn from_arg(arg: Option<&str>) -> Result<Self, PipelineError> {
        let Some(arg) = arg else {
            return Ok(ModelSource::Bundled);
        };
        Ok(match ModelRef::parse(arg)? {
            ModelRef::Bundled => ModelSource::Bundled,
            ModelRef::Folder(d) => ModelSource::Dir(d),
            ModelRef::Hub {
                repo,
                revision,
                alias,
            } => ModelSource::Hub {
                repo,
                revision,
                alias,
            },
        })
    }

    /// How job metadata and `status` name the source: `bundled`, the folder's path, or
    /// `org/name@revision`.
    pub fn label(&self) -> String {
        match self {
            ModelSource::Bundled => "bundled".into(),
            ModelSource::Dir(d) => d.display().to_string(),
            ModelSource::Hub { repo, revision, .. } => format!("{repo}@{revision}"),
        }
    }
}

/// Which Hub repository and commit a model was read from, and the SHA-256 of each of its
/// large files (the names of their blobs in the cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    pub repo: String,
    pub revision: String,
    pub commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Path in the repository → SHA-256, for every file stored as an LFS blob.
    pub files_sha256: BTreeMap<String, String>,
}

/// One file a model consists of, with its size as the file system reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the model folder (`<bundled>/…` for the bundled model).
    pub path: String,
    pub bytes: u64,
}

/// What [`inspect`] learns from a model's metadata: enough for validation, `status` and the
/// job record, without reading a weight or opening a device.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub family: Family,
    pub name: String,
    /// The architecture or pipeline class, e.g. `starter-dit` or `WanPipeline`.
    pub kind: String,
    /// `bundled` or the model folder.
    pub source: String,
    pub limits: Limits,
    pub files: Vec<ManifestFile>,
    /// Total size of `files`.
    pub bytes: u64,
    /// The weights' SHA-256 as the model's config records it (checked when loading), where
    /// the format records one.
    pub weights_sha256: Option<String>,
    /// The Hub repository and commit, for a model from the Hugging Face cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<Provenance>,
    #[serde(skip)]
    detail: Detail,
}

/// A manifest's family-specific configs, as [`Manifest::configs`] lends them.
#[derive(Debug, Clone, Copy)]
pub enum Configs<'a> {
    Starter(&'a StarterConfig),
    Wan(&'a WanManifest),
}

/// The family-specific parsed metadata [`load`] continues from.
#[derive(Debug, Clone)]
enum Detail {
    Starter {
        cfg: Box<StarterConfig>,
        dir: Option<PathBuf>,
    },
    Wan(Box<WanManifest>),
}

impl Manifest {
    /// The family's parsed and checked configs.
    pub fn configs(&self) -> Configs<'_> {
        match &self.detail {
            Detail::Starter { cfg, .. } => Configs::Starter(cfg),
            Detail::Wan(wan) => Configs::Wan(wan),
        }
    }

    /// The model's facts for job metadata, once loaded on `device`.
    pub fn info(&self, device: &str) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
            kind: self.kind.clone(),
            source: self.source.clone(),
            weights_sha256: self.weights_sha256.clone().unwrap_or_default(),
            device: device.to_string(),
        }
    }
}

#[cfg(bundled_model)]
const BUNDLED: Option<(&[u8], &[u8])> = Some((
    include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/starter/config.json"
    )),
    include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/starter/model.safetensors"
    )),
));
#[cfg(not(bundled_model))]
const BUNDLED: Option<(&[u8], &[u8])> = None;

/// Whether this binary carries the bundled model.
pub fn has_bundled() -> bool {
    BUNDLED.is_some()
}

/// Reads a model's metadata (configs, file sizes) and checks it, without reading weights. A
/// Hub model is read from its snapshot in the Hugging Face cache.
pub fn inspect(source: &ModelSource) -> Result<Manifest, PipelineError> {
    match source {
        ModelSource::Hub {
            repo,
            revision,
            alias,
        } => {
            let snap = HubCache::from_env().resolve(repo, revision)?;
            let mut manifest = inspect(&ModelSource::Dir(snap.dir.clone()))?;
            manifest.source = format!("{repo}@{}", snap.commit);
            manifest.hub = Some(Provenance {
                repo: repo.to_string(),
                revision: revision.clone(),
                commit: snap.commit.clone(),
                alias: alias.map(str::to_string),
                files_sha256: blob_hashes(&snap.dir, &manifest.files),
            });
            Ok(manifest)
        }
        ModelSource::Bundled => {
            let (cfg_bytes, weights) = BUNDLED.ok_or(PipelineError::NoBundledModel)?;
            let cfg =
                starter::weights::parse_config(cfg_bytes, Path::new("<bundled>/config.json"))?;
            let files = vec![
                ManifestFile {
                    path: "<bundled>/config.json".into(),
                    bytes: cfg_bytes.len() as u64,
                },
                ManifestFile {
                    path: "<bundled>/model.safetensors".into(),
                    bytes: weights.len() as u64,
                },
            ];
            Ok(starter_manifest(cfg, None, files, source))
        }
        ModelSource::Dir(dir) => {
            if dir.join(wan::MODEL_INDEX).is_file() {
                let wan = wan::inspect_dir(dir)?;
                Ok(Manifest {
                    family: Family::Wan,
                    name: wan.name.clone(),
                    kind: wan.pipeline_class.clone(),
                    source: source.label(),
                    limits: wan.limits(),
                    bytes: wan.files.iter().map(|f| f.bytes).sum(),
                    files: wan.files.clone(),
                    weights_sha256: None,
                    hub: None,
                    detail: Detail::Wan(Box::new(wan)),
                })
            } else if dir.join("config.json").is_file() {
                let (cfg, files) = starter::weights::inspect_dir(dir)?;
                Ok(starter_manifest(cfg, Some(dir.clone()), files, source))
            } else if dir.is_dir() {
                Err(PipelineError::BadConfig {
                    path: dir.clone(),
                    reason: format!(
                        "not a model folder: it has neither `{}` (a Diffusers pipeline) nor \
                         `config.json` (the starter layout)",
                        wan::MODEL_INDEX
                    ),
                })
            } else {
                Err(PipelineError::MissingFile { path: dir.clone() })
            }
        }
    }
}

/// The SHA-256 of each file that links to a blob named by one (LFS files: their blob name is
/// their SHA-256 in `huggingface_hub`'s cache).
fn blob_hashes(dir: &Path, files: &[ManifestFile]) -> BTreeMap<String, String> {
    files
        .iter()
        .filter_map(|f| {
            let target = std::fs::read_link(dir.join(&f.path)).ok()?;
            let name = target.file_name()?.to_str()?.to_string();
            (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (f.path.clone(), name))
        })
        .collect()
}

fn starter_manifest(
    cfg: StarterConfig,
    dir: Option<PathBuf>,
    files: Vec<ManifestFile>,
    source: &ModelSource,
) -> Manifest {
    Manifest {
        family: Family::Starter,
        name: cfg.name.clone(),
        kind: cfg.architecture.clone(),
        source: source.label(),
        limits: starter::starter_limits(&cfg),
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        weights_sha256: Some(cfg.weights_sha256.clone()),
        hub: None,
        detail: Detail::Starter {
            cfg: Box::new(cfg),
            dir,
        },
    }
}

/// Loads an inspected model onto the chosen device. `dtype` is the compute dtype for
/// families that support several (`None`: the family's default for the device); the
/// starter model always runs in f32.
pub fn load(
    manifest: &Manifest,
    device: DeviceChoice,
    dtype: Option<DType>,
) -> Result<Box<dyn VideoModel>, PipelineError> {
    match &manifest.detail {
        Detail::Starter { cfg, dir } => {
            let weights = match dir {
                None => {
                    let (_, weights) = BUNDLED.ok_or(PipelineError::NoBundledModel)?;
                    let path = Path::new("<bundled>/model.safetensors");
                    starter::weights::verify(cfg, weights, path)?;
                    weights.to_vec()
                }
                Some(dir) => starter::weights::read_verified(dir, cfg)?,
            };
            let device = select_device(device)?;
            Ok(Box::new(starter::StarterModel::new(
                (**cfg).clone(),
                weights,
                manifest.source.clone(),
                device,
            )?))
        }
        Detail::Wan(wan) => {
            let device = select_device(device)?;
            wan::load(wan, &manifest.source, device, dtype)
        }
    }
}

/// [`inspect`] then [`load`] with the family's default dtype.
pub fn open(
    source: &ModelSource,
    device: DeviceChoice,
) -> Result<Box<dyn VideoModel>, PipelineError> {
    load(&inspect(source)?, device, None)
}
