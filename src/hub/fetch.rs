//! Getting a model into the cache as `huggingface_hub` would: only the files the pipeline
//! needs, each blob downloaded once under a per-blob lock (`.locks/…/<etag>.lock`, the lock
//! Python takes too), resumed from its `.incomplete` file, checked against its SHA-256, then
//! renamed into `blobs/` and linked from `snapshots/<commit>/`.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::cache::{HubCache, Snapshot, is_commit};
use super::client::{FileMeta, HubClient};
use super::{HubError, RepoId};

/// Progress of a download, for a bar over the whole model.
pub trait FetchProgress {
    /// `bytes` will be downloaded in `files` files.
    fn start(&mut self, bytes: u64, files: usize);
    fn advance(&mut self, bytes: u64);
    /// A file is complete (downloaded, or found in the cache).
    fn file_done(&mut self, path: &str, bytes: u64, downloaded: bool);
    /// The Hub could not be reached and the cached snapshot is used.
    fn using_cache(&mut self, reason: &str);
}

/// What [`fetch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub snapshot: Snapshot,
    pub downloaded_files: usize,
    pub downloaded_bytes: u64,
}

/// The files of `files` that a model needs: with a `model_index.json` (a Diffusers pipeline),
/// that file, the README, and the `.json` and `.safetensors` files of the components it
/// names; with a top-level `config.json` (the starter layout), that file, the README and the
/// weights it names. Variant weights (`name.fp16.safetensors` and their indexes) and every
/// other format (`.bin`, `.pth`, ONNX, …) are left out.
pub fn select_files(files: &[String], first: &str, first_json: &serde_json::Value) -> Vec<String> {
    let plain_weights = |name: &str| {
        name.strip_suffix(".safetensors")
            .is_some_and(|stem| !stem.contains('.'))
    };
    let plain_index = |name: &str| {
        name.strip_suffix(".safetensors.index.json")
            .is_some_and(|stem| !stem.contains('.'))
    };
    let wanted_component_file = |name: &str| {
        plain_weights(name)
            || plain_index(name)
            || (name.ends_with(".json") && !name.contains(".safetensors.index."))
    };
    let mut out: Vec<String> = files
        .iter()
        .filter(|f| {
            if *f == first || *f == "README.md" {
                return true;
            }
            match f.split_once('/') {
                None => {
                    first == "config.json" && first_json["weights"].as_str() == Some(f.as_str())
                }
                Some((dir, rest)) => {
                    first == "model_index.json"
                        && first_json[dir]
                            .as_array()
                            .is_some_and(|v| v.len() == 2 && !v[0].is_null())
                        && !rest.contains('/')
                        && wanted_component_file(rest)
                }
            }
        })
        .cloned()
        .collect();
    out.sort();
    out
}

/// Makes sure `repo` at `revision` is in the cache with every file the model needs, asking
/// the Hub which commit the revision is now (unless it is a commit that is already cached
/// and `complete`, or `HF_HUB_OFFLINE` is set). When the Hub cannot be reached, a cached
/// snapshot of the revision is used as it is.
pub fn fetch(
    cache: &HubCache,
    client: &HubClient,
    repo: &RepoId,
    revision: &str,
    complete: &dyn Fn(&Path) -> bool,
    progress: &mut dyn FetchProgress,
) -> Result<Fetched, HubError> {
    let cached = |cache: &HubCache| cache.resolve(repo, revision);
    let done = |snapshot| Fetched {
        snapshot,
        downloaded_files: 0,
        downloaded_bytes: 0,
    };
    if is_commit(revision)
        && let Ok(s) = cached(cache)
        && complete(&s.dir)
    {
        return Ok(done(s));
    }
    if client.offline() {
        return cached(cache).map(done);
    }
    let info = match client.repo_info(repo, revision) {
        Ok(info) => info,
        Err(e @ HubError::Network { .. }) => match cached(cache) {
            Ok(s) => {
                progress.using_cache(&e.to_string());
                return Ok(done(s));
            }
            Err(_) => {
                let HubError::Network { reason, .. } = e else {
                    unreachable!()
                };
                return Err(HubError::Unreachable {
                    repo: repo.to_string(),
                    revision: revision.to_string(),
                    cache: cache.root().to_path_buf(),
                    reason,
                });
            }
        },
        Err(e) => return Err(e),
    };
    let first = ["model_index.json", "config.json"]
        .into_iter()
        .find(|f| info.files.iter().any(|x| x == f))
        .ok_or_else(|| HubError::NotAModel {
            repo: repo.to_string(),
        })?;
    let repo_dir = cache.repo_dir(repo);
    let snap_dir = repo_dir.join("snapshots").join(&info.commit);
    let locks = cache.root().join(".locks").join(repo.cache_folder());

    // The first file decides what else is needed.
    let mut stats = (0usize, 0u64);
    let mut nothing = NoProgress;
    let meta = client.file_meta(repo, &info.commit, first)?;
    stats = add(
        stats,
        ensure(
            client,
            &repo_dir,
            &locks,
            &snap_dir,
            first,
            &meta,
            &mut nothing,
        )?,
    );
    let first_json: serde_json::Value = std::fs::read(snap_dir.join(first))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| HubError::Protocol(format!("{repo}: {first} is not JSON")))?;
    let wanted = select_files(&info.files, first, &first_json);

    let mut metas = Vec::new();
    for path in wanted.iter().filter(|p| p.as_str() != first) {
        if snap_dir.join(path).is_file() {
            progress.file_done(path, 0, false);
            continue;
        }
        metas.push((path.clone(), client.file_meta(repo, &info.commit, path)?));
    }
    let missing: Vec<&(String, FileMeta)> = metas
        .iter()
        .filter(|(_, m)| !repo_dir.join("blobs").join(&m.etag).is_file())
        .collect();
    progress.start(missing.iter().map(|(_, m)| m.size).sum(), missing.len());
    for (path, meta) in &metas {
        stats = add(
            stats,
            ensure(client, &repo_dir, &locks, &snap_dir, path, meta, progress)?,
        );
    }
    if !is_commit(revision) {
        let r = repo_dir.join("refs").join(revision);
        write_small(&r, info.commit.as_bytes())?;
    }
    let snapshot = cache.resolve(repo, &info.commit)?;
    Ok(Fetched {
        snapshot: Snapshot {
            revision: revision.to_string(),
            ..snapshot
        },
        downloaded_files: stats.0,
        downloaded_bytes: stats.1,
    })
}

fn add(a: (usize, u64), b: Option<u64>) -> (usize, u64) {
    match b {
        Some(bytes) => (a.0 + 1, a.1 + bytes),
        None => a,
    }
}

struct NoProgress;

impl FetchProgress for NoProgress {
    fn start(&mut self, _: u64, _: usize) {}
    fn advance(&mut self, _: u64) {}
    fn file_done(&mut self, _: &str, _: u64, _: bool) {}
    fn using_cache(&mut self, _: &str) {}
}

/// Puts one file in place: its blob (downloaded if missing) and the snapshot's link to it.
/// Returns the bytes downloaded, `None` when the blob was already there.
fn ensure(
    client: &HubClient,
    repo_dir: &Path,
    locks: &Path,
    snap_dir: &Path,
    path: &str,
    meta: &FileMeta,
    progress: &mut dyn FetchProgress,
) -> Result<Option<u64>, HubError> {
    let blob = repo_dir.join("blobs").join(&meta.etag);
    let downloaded = if blob.is_file() {
        None
    } else {
        Some(download_blob(client, &blob, locks, meta, progress)?)
    };
    link(snap_dir, path, &meta.etag)?;
    progress.file_done(path, meta.size, downloaded.is_some());
    Ok(downloaded)
}

/// Downloads `meta` into `blob` under the blob's lock, resuming `<blob>.incomplete`.
fn download_blob(
    client: &HubClient,
    blob: &Path,
    locks: &Path,
    meta: &FileMeta,
    progress: &mut dyn FetchProgress,
) -> Result<u64, HubError> {
    let dir = blob.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| HubError::write(dir, e))?;
    std::fs::create_dir_all(locks).map_err(|e| HubError::write(locks, e))?;
    let _lock = FileLock::acquire(&locks.join(format!("{}.lock", meta.etag)))?;
    if blob.is_file() {
        // Another process finished it while this one waited for the lock.
        return Ok(0);
    }
    let part = PathBuf::from(format!("{}.incomplete", blob.display()));
    let mut hasher = Sha256::new();
    let mut offset = match std::fs::metadata(&part) {
        Ok(m) if m.len() <= meta.size => m.len(),
        _ => 0,
    };
    if offset > 0 {
        // Resuming: the bytes already there count towards the hash.
        let mut f = std::fs::File::open(&part).map_err(|e| HubError::io(&part, e))?;
        let mut buf = vec![0u8; 1 << 16];
        let mut left = offset;
        while left > 0 {
            let n = f.read(&mut buf).map_err(|e| HubError::io(&part, e))?;
            if n == 0 {
                break;
            }
            let n = n.min(left as usize);
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        progress.advance(offset);
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .map_err(|e| HubError::write(&part, e))?;
    if offset == 0 {
        file.set_len(0).map_err(|e| HubError::write(&part, e))?;
    }
    let mut received = 0u64;
    loop {
        let mut sink = |bytes: &[u8]| -> Result<(), HubError> {
            file.write_all(bytes)
                .map_err(|e| HubError::write(&part, e))?;
            hasher.update(bytes);
            received += bytes.len() as u64;
            progress.advance(bytes.len() as u64);
            Ok(())
        };
        if client.download(meta, offset, &mut sink)? {
            break;
        }
        // The server ignored the range and sends the whole file: start over.
        file.set_len(0).map_err(|e| HubError::write(&part, e))?;
        hasher = Sha256::new();
        offset = 0;
        received = 0;
    }
    file.sync_all().map_err(|e| HubError::write(&part, e))?;
    drop(file);
    let total = offset + received;
    if total != meta.size {
        return Err(HubError::Interrupted {
            url: meta.url.clone(),
            reason: format!("got {total} of {} bytes", meta.size),
        });
    }
    if meta.lfs {
        let actual: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !actual.eq_ignore_ascii_case(&meta.etag) {
            let _ = std::fs::remove_file(&part);
            return Err(HubError::Corrupt {
                path: meta.url.clone(),
                expected: meta.etag.clone(),
                actual,
            });
        }
    }
    std::fs::rename(&part, blob).map_err(|e| HubError::write(blob, e))?;
    Ok(received)
}

/// `snapshots/<commit>/<path>` → `../../blobs/<etag>` (one more `../` per folder in `path`),
/// replacing an older link.
fn link(snap_dir: &Path, path: &str, etag: &str) -> Result<(), HubError> {
    let link = snap_dir.join(path);
    let parent = link.parent().unwrap_or(snap_dir);
    std::fs::create_dir_all(parent).map_err(|e| HubError::write(parent, e))?;
    let up = "../".repeat(path.matches('/').count() + 2);
    let target = format!("{up}blobs/{etag}");
    if let Ok(existing) = std::fs::read_link(&link) {
        if existing == Path::new(&target) {
            return Ok(());
        }
        std::fs::remove_file(&link).map_err(|e| HubError::write(&link, e))?;
    }
    #[cfg(unix)]
    if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
        // Another process linked it meanwhile: fine if it points at the same blob.
        let same = std::fs::read_link(&link).is_ok_and(|t| t == Path::new(&target));
        if !(e.kind() == std::io::ErrorKind::AlreadyExists && same) {
            return Err(HubError::write(&link, e));
        }
    }
    #[cfg(not(unix))]
    std::fs::copy(parent.join(&target), &link).map_err(|e| HubError::write(&link, e))?;
    Ok(())
}

/// Writes a small file (a ref) atomically.
fn write_small(path: &Path, bytes: &[u8]) -> Result<(), HubError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| HubError::write(dir, e))?;
    let tmp = PathBuf::from(format!("{}.tmp-{}", path.display(), std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| HubError::write(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| HubError::write(path, e))
}

/// An exclusive `flock` on a lock file, released on drop (the lock `huggingface_hub`'s
/// `filelock` takes on the same path, so Python and aivideo never download a blob together).
struct FileLock(std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock, HubError> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| HubError::write(path, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: a valid open descriptor; flock blocks until the lock is free.
            let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
            if r != 0 {
                return Err(HubError::write(path, std::io::Error::last_os_error()));
            }
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: the descriptor is still open.
            unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_pipeline_s_json_and_plain_safetensors_are_selected() {
        let files = names(&[
            ".gitattributes",
            "README.md",
            "model_index.json",
            "assets/example.png",
            "text_encoder/config.json",
            "text_encoder/model-00001-of-00002.safetensors",
            "text_encoder/model-00002-of-00002.safetensors",
            "text_encoder/model.safetensors.index.json",
            "text_encoder/pytorch_model.bin",
            "tokenizer/spiece.model",
            "tokenizer/tokenizer.json",
            "tokenizer/tokenizer_config.json",
            "transformer/config.json",
            "transformer/diffusion_pytorch_model.safetensors",
            "transformer/diffusion_pytorch_model.fp16.safetensors",
            "transformer/diffusion_pytorch_model.safetensors.index.fp16.json",
            "vae/config.json",
            "vae/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.onnx",
            "scheduler/scheduler_config.json",
            "unused/config.json",
        ]);
        let index = serde_json::json!({
            "_class_name": "WanPipeline",
            "text_encoder": ["transformers", "UMT5EncoderModel"],
            "tokenizer": ["transformers", "T5TokenizerFast"],
            "transformer": ["diffusers", "WanTransformer3DModel"],
            "vae": ["diffusers", "AutoencoderKLWan"],
            "scheduler": ["diffusers", "UniPCMultistepScheduler"],
            "unused": [null, null],
        });
        assert_eq!(
            select_files(&files, "model_index.json", &index),
            names(&[
                "README.md",
                "model_index.json",
                "scheduler/scheduler_config.json",
                "text_encoder/config.json",
                "text_encoder/model-00001-of-00002.safetensors",
                "text_encoder/model-00002-of-00002.safetensors",
                "text_encoder/model.safetensors.index.json",
                "tokenizer/tokenizer.json",
                "tokenizer/tokenizer_config.json",
                "transformer/config.json",
                "transformer/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
            ])
        );
    }

    #[test]
    fn the_starter_layout_takes_its_config_and_named_weights() {
        let files = names(&[
            "config.json",
            "model.safetensors",
            "old.safetensors",
            "checkpoint.bin",
        ]);
        let cfg = serde_json::json!({ "weights": "model.safetensors" });
        assert_eq!(
            select_files(&files, "config.json", &cfg),
            names(&["config.json", "model.safetensors"])
        );
    }
}
