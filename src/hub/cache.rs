//! The local Hugging Face cache in `huggingface_hub`'s layout: `models--org--name/` with
//! `refs/<revision>` (a commit hash), `snapshots/<commit>/<path>` (relative links into
//! `blobs/`) and `blobs/<etag>`. Reading resolves revisions and lists what is cached;
//! removing keeps every blob another snapshot still uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{HubError, RepoId};

/// The cache root and what is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
}

/// A cached revision of a repository, ready to be read as a model folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub repo: String,
    /// The revision asked for (branch, tag or commit).
    pub revision: String,
    /// The commit it resolved to.
    pub commit: String,
    /// `snapshots/<commit>`.
    pub dir: PathBuf,
}

/// One repository in the cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedRepo {
    pub repo: String,
    pub dir: PathBuf,
    /// Bytes of its blobs (and of snapshot files that are copies, not links).
    pub size_on_disk: u64,
    pub revisions: Vec<CachedRevision>,
}

/// One snapshot of a cached repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CachedRevision {
    pub commit: String,
    /// The branch and tag names (`refs/…`) that point at it.
    pub refs: Vec<String>,
    pub dir: PathBuf,
}

/// Whether `s` is a full commit hash.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl HubCache {
    /// The cache Python's `huggingface_hub` uses: `HF_HUB_CACHE` (or the older
    /// `HUGGINGFACE_HUB_CACHE`), else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`,
    /// else `~/.cache/huggingface/hub`.
    pub fn from_env() -> HubCache {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let root = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface").join("hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        HubCache { root }
    }

    /// A cache at `root`.
    pub fn at(root: impl Into<PathBuf>) -> HubCache {
        HubCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name`.
    pub fn repo_dir(&self, repo: &RepoId) -> PathBuf {
        self.root.join(repo.cache_folder())
    }

    /// The cached snapshot of `repo` at `revision` (a commit hash, or a name in `refs/`).
    pub fn resolve(&self, repo: &RepoId, revision: &str) -> Result<Snapshot, HubError> {
        let dir = self.repo_dir(repo);
        let not_cached = || HubError::NotCached {
            repo: repo.to_string(),
            revision: revision.to_string(),
            cache: self.root.clone(),
        };
        let commit = if is_commit(revision) {
            revision.to_ascii_lowercase()
        } else {
            let r = dir.join("refs").join(revision);
            match std::fs::read_to_string(&r) {
                Ok(c) if is_commit(c.trim()) => c.trim().to_string(),
                Ok(_) => return Err(not_cached()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_cached()),
                Err(e) => return Err(HubError::io(&r, e)),
            }
        };
        let snap = dir.join("snapshots").join(&commit);
        if !snap.is_dir() {
            return Err(not_cached());
        }
        Ok(Snapshot {
            repo: repo.to_string(),
            revision: revision.to_string(),
            commit,
            dir: snap,
        })
    }

    /// Every model repository in the cache, by name.
    pub fn list(&self) -> Result<Vec<CachedRepo>, HubError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HubError::io(&self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| HubError::io(&self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = repo_from_folder(&name) else {
                continue;
            };
            out.push(self.describe(&id)?);
        }
        out.sort_by_key(|r| r.repo.to_lowercase());
        Ok(out)
    }

    /// One cached repository: its snapshots with the refs naming them, and its size.
    pub fn describe(&self, repo: &RepoId) -> Result<CachedRepo, HubError> {
        let dir = self.repo_dir(repo);
        let refs = read_refs(&dir.join("refs"))?;
        let mut revisions = Vec::new();
        for commit in list_names(&dir.join("snapshots"))? {
            revisions.push(CachedRevision {
                refs: refs
                    .iter()
                    .filter(|(_, c)| **c == commit)
                    .map(|(r, _)| r.clone())
                    .collect(),
                dir: dir.join("snapshots").join(&commit),
                commit,
            });
        }
        Ok(CachedRepo {
            repo: repo.to_string(),
            size_on_disk: size_on_disk(&dir)?,
            dir,
            revisions,
        })
    }

    /// Deletes the whole repository from the cache; returns the bytes freed.
    pub fn remove_repo(&self, repo: &RepoId) -> Result<u64, HubError> {
        let dir = self.repo_dir(repo);
        if !dir.is_dir() {
            return Err(HubError::NotCached {
                repo: repo.to_string(),
                revision: "any revision".into(),
                cache: self.root.clone(),
            });
        }
        let freed = size_on_disk(&dir)?;
        std::fs::remove_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
        Ok(freed)
    }

    /// Deletes one snapshot, the refs that point at it, and the blobs no other snapshot uses;
    /// the repository goes too when nothing is left. Returns the bytes freed.
    pub fn remove_revision(&self, repo: &RepoId, revision: &str) -> Result<u64, HubError> {
        let snap = self.resolve(repo, revision)?;
        let dir = self.repo_dir(repo);
        let before = size_on_disk(&dir)?;
        std::fs::remove_dir_all(&snap.dir).map_err(|e| HubError::io(&snap.dir, e))?;
        for (name, commit) in read_refs(&dir.join("refs"))? {
            if commit == snap.commit {
                let r = dir.join("refs").join(&name);
                std::fs::remove_file(&r).map_err(|e| HubError::io(&r, e))?;
            }
        }
        let remaining = list_names(&dir.join("snapshots"))?;
        if remaining.is_empty() {
            std::fs::remove_dir_all(&dir).map_err(|e| HubError::io(&dir, e))?;
            return Ok(before);
        }
        let mut used = BTreeSet::new();
        for commit in &remaining {
            collect_blob_links(&dir.join("snapshots").join(commit), &mut used)?;
        }
        let blobs = dir.join("blobs");
        for blob in list_names(&blobs)? {
            if !used.contains(&blob) {
                let p = blobs.join(&blob);
                std::fs::remove_file(&p).map_err(|e| HubError::io(&p, e))?;
            }
        }
        Ok(before.saturating_sub(size_on_disk(&dir)?))
    }
}

/// `models--org--name` → `org/name` (other repository types and stray files are skipped).
fn repo_from_folder(name: &str) -> Option<RepoId> {
    let rest = name.strip_prefix("models--")?;
    let (org, repo) = rest.split_once("--")?;
    RepoId::parse(&format!("{org}/{repo}")).ok()
}

/// Names in a folder (none when it does not exist).
fn list_names(dir: &Path) -> Result<Vec<String>, HubError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut v = Vec::new();
            for e in entries {
                let e = e.map_err(|e| HubError::io(dir, e))?;
                v.push(e.file_name().to_string_lossy().into_owned());
            }
            v.sort();
            Ok(v)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(HubError::io(dir, e)),
    }
}

/// Every `refs/…` file (names may hold `/`, as `refs/pr/1` does) → the commit it holds.
fn read_refs(dir: &Path) -> Result<BTreeMap<String, String>, HubError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        for name in list_names(&d)? {
            let p = d.join(&name);
            let full = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if p.is_dir() {
                stack.push((p, full));
            } else if let Ok(c) = std::fs::read_to_string(&p)
                && is_commit(c.trim())
            {
                out.insert(full, c.trim().to_string());
            }
        }
    }
    Ok(out)
}

/// The blob names the links under `dir` point at.
fn collect_blob_links(dir: &Path, used: &mut BTreeSet<String>) -> Result<(), HubError> {
    for name in list_names(dir)? {
        let p = dir.join(&name);
        let meta = std::fs::symlink_metadata(&p).map_err(|e| HubError::io(&p, e))?;
        if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&p)
                && let Some(blob) = target.file_name()
            {
                used.insert(blob.to_string_lossy().into_owned());
            }
        } else if meta.is_dir() {
            collect_blob_links(&p, used)?;
        }
    }
    Ok(())
}

/// Bytes a repository folder takes: its blobs, plus snapshot files that are real files.
fn size_on_disk(dir: &Path) -> Result<u64, HubError> {
    fn walk(p: &Path, total: &mut u64) -> Result<(), HubError> {
        let meta = match std::fs::symlink_metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(HubError::io(p, e)),
        };
        if meta.is_dir() {
            for name in list_names(p)? {
                walk(&p.join(name), total)?;
            }
        } else if meta.is_file() {
            *total += meta.len();
        }
        Ok(())
    }
    let mut total = 0;
    walk(&dir.join("blobs"), &mut total)?;
    walk(&dir.join("snapshots"), &mut total)?;
    Ok(total)
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
