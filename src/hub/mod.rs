//! The Hugging Face Hub as a model source: what `--model` names (a folder, an alias, or a Hub
//! repository `org/name[@revision]`), the built-in aliases, and the local cache, read and
//! written in exactly the layout of Python's `huggingface_hub`, so either serves the other.

mod aliases;
mod cache;
mod reference;

pub use aliases::{ALIASES, Alias};
pub use cache::{CachedRepo, CachedRevision, HubCache, Snapshot};
pub use reference::{ModelRef, RepoId};

use std::path::PathBuf;

/// Errors about Hub references and the cache.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("`{given}` is not a model: {reason}")]
    BadReference { given: String, reason: String },
    #[error(
        "{repo}@{revision} is not in the Hugging Face cache ({cache}); download it on a machine with network access with `hf download {repo}{rev_flag}` (Python's huggingface_hub fills the same cache), or copy a cache there and point HF_HUB_CACHE at it",
        rev_flag = if revision == "main" { String::new() } else { format!(" --revision {revision}") },
        cache = cache.display()
    )]
    NotCached {
        repo: String,
        revision: String,
        cache: PathBuf,
    },
    #[error("cannot read the Hugging Face cache at {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> HubError {
        HubError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
