//! Locating and verifying model files: the config (parsed and range-checked), and weights
//! checked against a SHA-256.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::config::{STARTER_ARCHITECTURE, StarterConfig};
use super::config_check;
use crate::models::{ManifestFile, PipelineError, io_error};

/// The largest `config.json` read (the bundled one is under 4 KiB): a bigger file is
/// refused before it is read whole.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(sha256_hex(&std::fs::read(path)?))
}

fn read(path: &Path) -> Result<Vec<u8>, PipelineError> {
    std::fs::read(path).map_err(|e| io_error(path, e))
}

fn bad_config(path: &Path, reason: impl Into<String>) -> PipelineError {
    PipelineError::BadConfig {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a config file of at most [`MAX_CONFIG_BYTES`].
fn read_config(path: &Path) -> Result<Vec<u8>, PipelineError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(bad_config(
            path,
            format!(
                "the file is larger than {} KiB; a starter config is a few KiB",
                MAX_CONFIG_BYTES / 1024
            ),
        ));
    }
    Ok(bytes)
}

/// Parses a config and checks every field against the ranges in [`config_check`]; `path`
/// is only used in error messages.
pub fn parse_config(text: &[u8], path: &Path) -> Result<StarterConfig, PipelineError> {
    let cfg: StarterConfig =
        serde_json::from_slice(text).map_err(|e| bad_config(path, e.to_string()))?;
    if cfg.architecture != STARTER_ARCHITECTURE {
        return Err(bad_config(
            path,
            format!("unknown architecture `{}`", cfg.architecture),
        ));
    }
    config_check::check(&cfg).map_err(|e| bad_config(path, e.to_string()))?;
    Ok(cfg)
}

/// Checks `weights` against the config's recorded SHA-256.
pub fn verify(cfg: &StarterConfig, weights: &[u8], path: &Path) -> Result<(), PipelineError> {
    let actual = sha256_hex(weights);
    if cfg.weights_sha256.is_empty() {
        return Err(bad_config(path, "no weights_sha256 recorded"));
    }
    if actual != cfg.weights_sha256 {
        return Err(PipelineError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: cfg.weights_sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Reads `dir/config.json` and the sizes of the files it names, without reading the weights.
pub fn inspect_dir(dir: &Path) -> Result<(StarterConfig, Vec<ManifestFile>), PipelineError> {
    let cfg_path = dir.join("config.json");
    let cfg_bytes = read_config(&cfg_path)?;
    let cfg = parse_config(&cfg_bytes, &cfg_path)?;
    // `weights` is a plain file name (checked above), so this stays inside `dir`.
    let weights_path = dir.join(&cfg.weights);
    let meta = std::fs::metadata(&weights_path).map_err(|e| io_error(&weights_path, e))?;
    if !meta.is_file() {
        return Err(bad_config(
            &cfg_path,
            format!(
                "`weights` names {}, which is not a file",
                weights_path.display()
            ),
        ));
    }
    let weights_bytes = meta.len();
    let files = vec![
        ManifestFile {
            path: "config.json".into(),
            bytes: cfg_bytes.len() as u64,
        },
        ManifestFile {
            path: cfg.weights.clone(),
            bytes: weights_bytes,
        },
    ];
    Ok((cfg, files))
}

/// Reads the weights `cfg` names in `dir`, verifying their checksum.
pub fn read_verified(dir: &Path, cfg: &StarterConfig) -> Result<Vec<u8>, PipelineError> {
    let weights_path = dir.join(&cfg.weights);
    let weights = read(&weights_path)?;
    verify(cfg, &weights, &weights_path)?;
    Ok(weights)
}

/// Reads `dir/config.json` and the weights it names, verifying the checksum.
pub fn load_dir(dir: &Path) -> Result<(StarterConfig, Vec<u8>), PipelineError> {
    let (cfg, _) = inspect_dir(dir)?;
    let weights = read_verified(dir, &cfg)?;
    Ok((cfg, weights))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn missing_and_corrupt_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(matches!(err, PipelineError::MissingFile { .. }), "{err}");
        let mut cfg = StarterConfig::tiny();
        cfg.weights_sha256 = sha256_hex(b"good weights");
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec(&cfg).unwrap(),
        )
        .unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("model.safetensors is missing"),
            "{err}"
        );
        std::fs::write(dir.path().join("model.safetensors"), b"bad weights").unwrap();
        let err = load_dir(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, PipelineError::ChecksumMismatch { .. }));
        assert!(
            msg.contains("checksum mismatch") && msg.contains(&cfg.weights_sha256),
            "{msg}"
        );
        std::fs::write(dir.path().join("model.safetensors"), b"good weights").unwrap();
        assert!(load_dir(dir.path()).is_ok());
    }
}
