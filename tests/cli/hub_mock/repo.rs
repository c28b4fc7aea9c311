//! Repositories served by the mock Hub: their files at each revision, who may read them, and the
//! ids the Hub derives from the content (git blob ids, LFS sha256, commit ids, API JSON).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::sha1::{git_blob_id, hex, sha1};

/// Files above this size are LFS files whatever their name (the Hub refuses larger regular files).
pub const LFS_THRESHOLD: usize = 10 * 1024 * 1024;

/// A repository's content: path in the repo (`/`-separated) to bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// Fixed dates in the API answers, so they are reproducible.
const LAST_MODIFIED: &str = "2025-01-01T00:00:00.000Z";
const CREATED_AT: &str = "2024-12-31T00:00:00.000Z";

/// Reads every regular file under `dir` (symlinks followed, hidden files included) as repo files.
/// Panics on I/O errors: this is test support.
pub fn read_dir_files(dir: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, out: &mut Files) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                let name = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                out.insert(name, bytes);
            }
        }
    }
    let mut files = Files::new();
    walk(dir, dir, &mut files);
    files
}

/// LFS metadata of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lfs {
    /// Hex sha256 of the content: the file's ETag and its blob name in the cache.
    pub sha256: String,
    /// Size of the git LFS pointer file that git stores instead of the content.
    pub pointer_size: usize,
}

/// One file of one revision.
#[derive(Clone, Debug)]
pub struct RepoFile {
    pub path: String,
    pub bytes: Arc<Vec<u8>>,
    /// Git blob id: of the content for a regular file, of the LFS pointer for an LFS file.
    pub blob_id: String,
    pub lfs: Option<Lfs>,
}

impl RepoFile {
    fn new(path: &str, bytes: Vec<u8>) -> Self {
        let is_lfs = path.ends_with(".safetensors") || bytes.len() > LFS_THRESHOLD;
        let (blob_id, lfs) = if is_lfs {
            let sha256 = hex(Sha256::digest(&bytes));
            let pointer = format!(
                "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {}\n",
                bytes.len()
            );
            let lfs = Lfs {
                sha256,
                pointer_size: pointer.len(),
            };
            (git_blob_id(pointer.as_bytes()), Some(lfs))
        } else {
            (git_blob_id(&bytes), None)
        };
        RepoFile {
            path: path.to_string(),
            bytes: Arc::new(bytes),
            blob_id,
            lfs,
        }
    }

    /// What the Hub's `/resolve` answers as the file's ETag (`X-Linked-Etag` for LFS files):
    /// the sha256 for LFS files, the git blob id otherwise. huggingface_hub names blobs after it.
    pub fn etag(&self) -> &str {
        self.lfs.as_ref().map_or(&self.blob_id, |l| &l.sha256)
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }
}

/// One commit: an id and the complete file set.
#[derive(Debug)]
pub struct Commit {
    pub sha: String,
    pub files: BTreeMap<String, RepoFile>,
}

impl Commit {
    fn new(repo_id: &str, files: Files) -> Self {
        let files: BTreeMap<String, RepoFile> = files
            .into_iter()
            .map(|(path, bytes)| {
                assert!(
                    !path.is_empty()
                        && !path.starts_with('/')
                        && !path
                            .split('/')
                            .any(|s| s.is_empty() || s == "." || s == ".."),
                    "bad repo path {path:?}"
                );
                (path.clone(), RepoFile::new(&path, bytes))
            })
            .collect();
        let mut listing = format!("mock-commit\0{repo_id}\0").into_bytes();
        for (path, file) in &files {
            listing.extend_from_slice(format!("{path}\0{}\n", file.blob_id).as_bytes());
        }
        Commit {
            sha: hex(sha1(&listing)),
            files,
        }
    }

    /// Every folder that holds a file (`a/b/c.txt` gives `a` and `a/b`).
    fn dirs(&self) -> BTreeSet<String> {
        let mut dirs = BTreeSet::new();
        for path in self.files.keys() {
            let mut end = 0;
            while let Some(i) = path[end..].find('/') {
                end += i;
                dirs.insert(path[..end].to_string());
                end += 1;
            }
        }
        dirs
    }

    /// Deterministic id of a folder (not git's tree id, which nothing here needs).
    fn tree_id(&self, dir: &str) -> String {
        let prefix = format!("{dir}/");
        let mut listing = format!("mock-tree\0{dir}\0").into_bytes();
        for (path, file) in self.files.range(prefix.clone()..) {
            if !path.starts_with(&prefix) {
                break;
            }
            listing.extend_from_slice(format!("{path}\0{}\n", file.blob_id).as_bytes());
        }
        hex(sha1(&listing))
    }
}

/// Who may read a repository.
#[derive(Clone, Debug)]
pub enum Access {
    Public,
    /// Metadata is public; files need `Authorization: Bearer <token>`.
    Gated(String),
    /// Everything needs the token; without it the repo does not exist.
    Private(String),
}

/// A model repository for [`super::MockHub`].
#[derive(Debug)]
pub struct MockRepo {
    pub(super) id: String,
    pub(super) access: Access,
    /// Former ids that answer with a 307 to this one (a renamed repo).
    pub(super) aliases: Vec<String>,
    commits: BTreeMap<String, Commit>,
    /// Branch and tag names to commit ids.
    refs: BTreeMap<String, String>,
}

impl MockRepo {
    /// A repository whose `main` branch holds every file under `dir`.
    pub fn from_dir(repo_id: &str, dir: &Path) -> MockRepo {
        MockRepo::from_files(repo_id, read_dir_files(dir))
    }

    /// A repository whose `main` branch holds `files`.
    pub fn from_files(repo_id: &str, files: Files) -> MockRepo {
        assert!(
            !repo_id.is_empty()
                && repo_id.split('/').count() <= 2
                && !repo_id.split('/').any(str::is_empty),
            "bad repo id {repo_id:?}"
        );
        let mut repo = MockRepo {
            id: repo_id.to_string(),
            access: Access::Public,
            aliases: Vec::new(),
            commits: BTreeMap::new(),
            refs: BTreeMap::new(),
        };
        repo.add_branch("main", files);
        repo
    }

    fn add_branch(&mut self, name: &str, files: Files) {
        let commit = Commit::new(&self.id, files);
        self.refs.insert(name.to_string(), commit.sha.clone());
        self.commits.entry(commit.sha.clone()).or_insert(commit);
    }

    /// Adds (or moves) branch `name` to a commit holding exactly `files`. Two branches with the
    /// same files share one commit id. Names may contain `/` (e.g. `refs/pr/1`).
    pub fn with_branch(mut self, name: &str, files: Files) -> MockRepo {
        self.add_branch(name, files);
        self
    }

    /// Adds tag `name` pointing at the commit of `target` (a branch, tag or commit id).
    pub fn with_tag(mut self, name: &str, target: &str) -> MockRepo {
        let sha = self
            .commit(target)
            .unwrap_or_else(|| panic!("tag {name}: unknown target {target}"));
        self.refs.insert(name.to_string(), sha);
        self
    }

    /// Makes the repo gated: `/resolve` needs `Authorization: Bearer <token>` (401 without a
    /// token, 403 with another one); the API still describes the repo.
    pub fn gated(mut self, token: &str) -> MockRepo {
        self.access = Access::Gated(token.to_string());
        self
    }

    /// Makes the repo private: every request needs the token, and without it the Hub answers as
    /// for a repository that does not exist.
    pub fn private(mut self, token: &str) -> MockRepo {
        self.access = Access::Private(token.to_string());
        self
    }

    /// Makes `old_id` a former name: requests naming it get a 307 to the same URL with this id.
    pub fn renamed_from(mut self, old_id: &str) -> MockRepo {
        self.aliases.push(old_id.to_string());
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The commit id a revision (branch, tag, or full commit id) resolves to.
    pub fn commit(&self, revision: &str) -> Option<String> {
        self.resolve(revision).map(|c| c.sha.clone())
    }

    /// A file at a revision.
    pub fn file(&self, revision: &str, path: &str) -> Option<&RepoFile> {
        self.resolve(revision)?.files.get(path)
    }

    /// A copy of all files at a revision, e.g. to build a branch from `main` with changes.
    pub fn files(&self, revision: &str) -> Option<Files> {
        let commit = self.resolve(revision)?;
        Some(
            commit
                .files
                .iter()
                .map(|(p, f)| (p.clone(), f.bytes.as_ref().clone()))
                .collect(),
        )
    }

    /// Branch and tag names with their commit ids.
    pub fn refs(&self) -> &BTreeMap<String, String> {
        &self.refs
    }

    pub(super) fn resolve(&self, revision: &str) -> Option<&Commit> {
        let sha = self.refs.get(revision).map_or(revision, String::as_str);
        self.commits.get(sha)
    }

    pub(super) fn all_files(&self) -> impl Iterator<Item = &RepoFile> {
        self.commits.values().flat_map(|c| c.files.values())
    }

    /// `GET /api/models/{id}[/revision/{rev}]`. Without `blobs`, siblings carry only
    /// `rfilename`, as on the real Hub; with `?blobs=true` they also carry `size`, `blobId`
    /// and, for LFS files, `lfs {sha256, size, pointerSize}`.
    pub(super) fn info_json(&self, commit: &Commit, blobs: bool) -> Value {
        let siblings: Vec<Value> = commit
            .files
            .values()
            .map(|f| {
                let mut s = json!({ "rfilename": f.path });
                if blobs {
                    s["size"] = json!(f.size());
                    s["blobId"] = json!(f.blob_id);
                    if let Some(lfs) = &f.lfs {
                        s["lfs"] = json!({
                            "sha256": lfs.sha256,
                            "size": f.size(),
                            "pointerSize": lfs.pointer_size,
                        });
                    }
                }
                s
            })
            .collect();
        let author = self.id.split_once('/').map_or(self.id.as_str(), |(a, _)| a);
        let used: usize = commit.files.values().map(RepoFile::size).sum();
        json!({
            "_id": &hex(sha1(self.id.as_bytes()))[..24],
            "id": self.id,
            "modelId": self.id,
            "author": author,
            "sha": commit.sha,
            "lastModified": LAST_MODIFIED,
            "createdAt": CREATED_AT,
            "private": matches!(self.access, Access::Private(_)),
            "gated": if matches!(self.access, Access::Gated(_)) { json!("manual") } else { json!(false) },
            "disabled": false,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "spaces": [],
            "usedStorage": used,
        })
    }

    /// `GET /api/models/{id}/tree/{rev}[/{dir}]`: the entries under `dir` ("" for the root;
    /// only its children unless `recursive`), sorted by path; `None` if `dir` is not a folder. Files: `{type: "file", oid, size, path, lfs?: {oid, size, pointerSize}}`;
    /// folders: `{type: "directory", oid, size: 0, path}`.
    pub(super) fn tree_json(
        &self,
        commit: &Commit,
        dir: &str,
        recursive: bool,
    ) -> Option<Vec<Value>> {
        let dirs = commit.dirs();
        if !dir.is_empty() && !dirs.contains(dir) {
            return None;
        }
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let wanted = |path: &str| {
            path.strip_prefix(&prefix)
                .is_some_and(|rest| recursive || !rest.contains('/'))
        };
        let mut entries: Vec<(String, Value)> = Vec::new();
        for d in dirs.iter().filter(|d| wanted(d)) {
            entries.push((
                d.clone(),
                json!({ "type": "directory", "oid": commit.tree_id(d), "size": 0, "path": d }),
            ));
        }
        for f in commit.files.values().filter(|f| wanted(&f.path)) {
            let mut v =
                json!({ "type": "file", "oid": f.blob_id, "size": f.size(), "path": f.path });
            if let Some(lfs) = &f.lfs {
                v["lfs"] =
                    json!({ "oid": lfs.sha256, "size": f.size(), "pointerSize": lfs.pointer_size });
            }
            entries.push((f.path.clone(), v));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Some(entries.into_iter().map(|(_, v)| v).collect())
    }
}
