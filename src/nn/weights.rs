//! Finding and memory-mapping a component's safetensors weights: one file, or the shards a
//! `*.safetensors.index.json` names, read into a `VarBuilder` in the compute dtype.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

/// Why a component's weights cannot be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("no weights in {dir}: expected {stem}.safetensors or {stem}.safetensors.index.json")]
    Missing { dir: PathBuf, stem: String },
    #[error("weights shard {path} named by {index} is missing")]
    MissingShard { path: PathBuf, index: PathBuf },
    #[error("invalid shard index {path}: {reason}")]
    BadIndex { path: PathBuf, reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the weights {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

/// The part of a `*.safetensors.index.json` that says which shard holds each tensor.
#[derive(Debug, Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// The weight files of one component folder, in a stable order. `stem` is
/// `diffusion_pytorch_model` (diffusers) or `model` (transformers).
pub fn component_files(dir: &Path, stem: &str) -> Result<Vec<PathBuf>, WeightsError> {
    let single = dir.join(format!("{stem}.safetensors"));
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(format!("{stem}.safetensors.index.json"));
    if !index.is_file() {
        return Err(WeightsError::Missing {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
        });
    }
    let text = std::fs::read(&index).map_err(|source| WeightsError::Io {
        path: index.clone(),
        source,
    })?;
    let parsed: ShardIndex = serde_json::from_slice(&text).map_err(|e| WeightsError::BadIndex {
        path: index.clone(),
        reason: e.to_string(),
    })?;
    let names: BTreeSet<&String> = parsed.weight_map.values().collect();
    if names.is_empty() {
        return Err(WeightsError::BadIndex {
            path: index,
            reason: "weight_map names no shard".into(),
        });
    }
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let shard = Path::new(name);
        if shard.is_absolute() || shard.components().count() != 1 {
            return Err(WeightsError::BadIndex {
                path: index,
                reason: format!("shard `{name}` is not a file name in the same folder"),
            });
        }
        let path = dir.join(shard);
        if !path.is_file() {
            return Err(WeightsError::MissingShard { path, index });
        }
        files.push(path);
    }
    Ok(files)
}

/// A `VarBuilder` over memory-mapped `files`, converting each tensor to `dtype` on `device`
/// as it is fetched.
pub fn mmap_var_builder(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>, WeightsError> {
    for f in files {
        check_header(f)?;
    }
    // SAFETY: the files are opened read-only and mapped for the VarBuilder's lifetime; like
    // every memory-mapping loader, this assumes nothing truncates them meanwhile.
    unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }.map_err(|source| {
        WeightsError::Open {
            path: files.first().cloned().unwrap_or_default(),
            source,
        }
    })
}

/// Reads and parses a safetensors file's header (only the header), so that a truncated or
/// foreign file is reported by name before anything is mapped.
fn check_header(path: &Path) -> Result<(), WeightsError> {
    let mut f = std::fs::File::open(path).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let io = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_len = f.metadata().map_err(io)?.len();
    read_header(&mut f, file_len).map_err(|e| match e {
        HeaderError::Io(source) => io(source),
        HeaderError::Invalid(reason) => WeightsError::Open {
            path: path.to_path_buf(),
            source: candle_core::Error::Msg(reason),
        },
    })?;
    Ok(())
}

/// Longest safetensors header accepted, in bytes (the format's own limit is 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Why a safetensors header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The bytes are not a safetensors header (the reason says how).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(std::io::Error),
}

/// Reads the header of a safetensors file of `file_len` bytes from `reader`, positioned at
/// its start: the 8-byte little-endian length, then that many bytes of JSON, which must fit
/// in the file. Reads nothing past the header and allocates at most its (bounded) length.
/// Returns the parsed JSON.
pub fn read_header(
    mut reader: impl std::io::Read,
    file_len: u64,
) -> Result<serde_json::Value, HeaderError> {
    let mut len = [0u8; 8];
    reader
        .read_exact(&mut len)
        .map_err(|_| HeaderError::Invalid("shorter than a safetensors header".into()))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER_BYTES || 8 + n > file_len {
        return Err(HeaderError::Invalid(format!(
            "header length {n} does not fit the file ({file_len} bytes): truncated or not safetensors"
        )));
    }
    let mut header = vec![0u8; n as usize];
    reader.read_exact(&mut header).map_err(HeaderError::Io)?;
    serde_json::from_slice(&header)
        .map_err(|e| HeaderError::Invalid(format!("unreadable safetensors header: {e}")))
}

/// Sizes of `files` as the file system reports them.
pub fn file_sizes(files: &[PathBuf]) -> Result<Vec<u64>, WeightsError> {
    files
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|source| WeightsError::Io {
                    path: p.clone(),
                    source,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    fn save(path: &Path, name: &str, values: &[f32]) {
        let t = Tensor::new(values, &Device::Cpu).unwrap();
        candle_core::safetensors::save(&HashMap::from([(name.to_string(), t)]), path).unwrap();
    }

    #[test]
    fn a_single_file_is_found_and_read_in_the_compute_dtype() {
        let dir = tempfile::tempdir().unwrap();
        save(&dir.path().join("model.safetensors"), "w", &[1.0, 2.5]);
        let files = component_files(dir.path(), "model").unwrap();
        let vb = mmap_var_builder(&files, DType::BF16, &Device::Cpu).unwrap();
        let w = vb.get(2, "w").unwrap();
        assert_eq!(w.dtype(), DType::BF16);
        let back: Vec<f32> = w.to_dtype(DType::F32).unwrap().to_vec1().unwrap();
        assert_eq!(back, vec![1.0, 2.5]);
        // A wrong shape is an error that names the tensor.
        let err = vb.get(3, "w").unwrap_err().to_string();
        assert!(err.contains("shape mismatch") && err.contains('w'), "{err}");
    }

    #[test]
    fn shards_come_from_the_index_and_missing_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(matches!(
            component_files(d, "diffusion_pytorch_model"),
            Err(WeightsError::Missing { .. })
        ));
        save(&d.join("a.safetensors"), "x", &[1.0]);
        let index =
            r#"{"metadata": {}, "weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#;
        std::fs::write(
            d.join("diffusion_pytorch_model.safetensors.index.json"),
            index,
        )
        .unwrap();
        let err = component_files(d, "diffusion_pytorch_model").unwrap_err();
        assert!(err.to_string().contains("b.safetensors"), "{err}");
        save(&d.join("b.safetensors"), "y", &[2.0, 3.0]);
        let files = component_files(d, "diffusion_pytorch_model").unwrap();
        assert_eq!(files.len(), 2);
        let vb = mmap_var_builder(&files, DType::F32, &Device::Cpu).unwrap();
        let y: Vec<f32> = vb.get(2, "y").unwrap().to_vec1().unwrap();
        assert_eq!(y, vec![2.0, 3.0]);
        let escape = r#"{"weight_map": {"x": "../a.safetensors"}}"#;
        std::fs::write(
            d.join("diffusion_pytorch_model.safetensors.index.json"),
            escape,
        )
        .unwrap();
        assert!(matches!(
            component_files(d, "diffusion_pytorch_model"),
            Err(WeightsError::BadIndex { .. })
        ));
    }

    #[test]
    fn headers_are_read_from_bytes_within_their_bounds() {
        let json = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
        let mut file = (json.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(json);
        file.extend_from_slice(&1f32.to_le_bytes());
        let header = read_header(&file[..], file.len() as u64).unwrap();
        assert_eq!(header["w"]["shape"], serde_json::json!([1]));
        let reason = |bytes: &[u8]| match read_header(bytes, bytes.len() as u64) {
            Err(HeaderError::Invalid(reason)) => reason,
            other => panic!("expected an invalid header, got {other:?}"),
        };
        assert!(reason(&file[..5]).contains("shorter than"));
        assert!(reason(&file[..20]).contains("does not fit the file (20 bytes)"));
        assert!(reason(&u64::MAX.to_le_bytes()).contains("header length"));
        let mut not_json = 4u64.to_le_bytes().to_vec();
        not_json.extend_from_slice(b"{{{{");
        assert!(reason(&not_json).contains("unreadable safetensors header"));
    }

    #[test]
    fn a_truncated_file_is_reported_before_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.safetensors");
        save(&p, "w", &[1.0; 64]);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..12]).unwrap();
        match mmap_var_builder(&[p], DType::F32, &Device::Cpu) {
            Ok(_) => panic!("a truncated file was accepted"),
            Err(err) => assert!(err.to_string().contains("truncated"), "{err}"),
        }
    }
}
