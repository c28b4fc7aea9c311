//! The Hugging Face Hub as a model source: what `--model` names (a folder, an alias, or a Hub
//! repository `org/name[@revision]`), the built-in aliases, and the local cache, read and
//! written in exactly the layout of Python's `huggingface_hub`, so either serves the other.

mod aliases;
mod cache;
mod client;
mod fetch;
mod reference;

pub use aliases::{ALIASES, Alias};
pub use cache::{CachedRepo, CachedRevision, HubCache, Snapshot, is_commit};
pub use client::{FileMeta, HubClient, RepoInfo};
pub use fetch::{FetchProgress, Fetched, fetch, select_files};
pub use reference::{ModelRef, RepoId};

use std::path::PathBuf;

/// Errors about Hub references and the cache.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{given}` is not a model: {reason}")]
    BadReference { given: String, reason: String },
    #[error(
        "{repo}@{revision} is not in the Hugging Face cache ({cache}) and the Hub may not be asked (HF_HUB_OFFLINE); run `aivideo models pull {repo}{rev_at}` (or Python's `hf download {repo}{rev_flag}`, which fills the same cache) where there is network, then copy the cache here or point HF_HUB_CACHE at it",
        rev_at = if revision == "main" { String::new() } else { format!("@{revision}") },
        rev_flag = if revision == "main" { String::new() } else { format!(" --revision {revision}") },
        cache = cache.display()
    )]
    NotCached {
        repo: String,
        revision: String,
        cache: PathBuf,
    },
    #[error(
        "{repo} is gated or private and {}; accept its licence on {page} with your account, then set HF_TOKEN (or run `hf auth login`)",
        if *token { "the token given has no access" } else { "no token is set" }
    )]
    Unauthorized {
        repo: String,
        token: bool,
        page: String,
    },
    #[error(
        "the Hub has no repository {repo}, or it is private (check the name; for a private repository set HF_TOKEN)"
    )]
    UnknownRepo { repo: String },
    #[error("{repo} has no revision `{revision}` (a branch, a tag or a commit)")]
    UnknownRevision { repo: String, revision: String },
    #[error("{repo} has no file {path}")]
    UnknownFile { repo: String, path: String },
    #[error("HF_HUB_OFFLINE is set, so the Hub cannot be asked")]
    Offline,
    #[error("cannot reach the Hub at {url}: {reason}")]
    Network { url: String, reason: String },
    #[error(
        "cannot reach the Hub ({reason}) and {repo}@{revision} is not in the Hugging Face cache ({cache}); run `aivideo models pull {repo}` where there is network, then copy the cache here or point HF_HUB_CACHE at it",
        cache = cache.display()
    )]
    Unreachable {
        repo: String,
        revision: String,
        cache: PathBuf,
        reason: String,
    },
    #[error("the download from {url} stopped: {reason}; run the command again to resume it")]
    Interrupted { url: String, reason: String },
    #[error(
        "{path} does not match the Hub's SHA-256 (expected {expected}, got {actual}); the partial file was removed, run the command again"
    )]
    Corrupt {
        path: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{repo} is not a model aivideo can run: it has neither model_index.json nor config.json"
    )]
    NotAModel { repo: String },
    #[error("unexpected answer from the Hub: {0}")]
    Protocol(String),
    #[error("cannot write to the Hugging Face cache at {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the Hugging Face cache at {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    pub(crate) fn write(path: &std::path::Path, source: std::io::Error) -> HubError {
        HubError::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> HubError {
        HubError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
