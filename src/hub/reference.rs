//! Parsing what `--model` (or `AIVIDEO_MODEL`) names: `bundled`, a folder, an alias, or a Hub
//! repository `org/name`, each of the last two optionally `@revision`.

use std::fmt;
use std::path::PathBuf;

use super::{HubError, aliases};

/// Longest repository owner or name the Hub allows.
const MAX_PART: usize = 96;

/// A Hub repository id, `org/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId {
    pub org: String,
    pub name: String,
}

impl RepoId {
    /// Checks the Hub's rules: two parts of letters, digits, `-`, `_` and `.`, each starting
    /// with a letter or digit, at most 96 characters, without `--` or `..`.
    pub fn parse(s: &str) -> Result<RepoId, String> {
        let (org, name) = s
            .split_once('/')
            .ok_or_else(|| "a Hub repository id has the form org/name".to_string())?;
        for part in [org, name] {
            let ok = !part.is_empty()
                && part.len() <= MAX_PART
                && part
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !part.contains("--")
                && !part.contains("..")
                && !part.ends_with('.');
            if !ok {
                return Err(format!(
                    "`{part}` is not a valid repository owner or name (letters, digits, `-`, `_` and `.`, \
                     starting with a letter or digit, at most {MAX_PART} characters, no `--` or `..`)"
                ));
            }
        }
        Ok(RepoId {
            org: org.to_string(),
            name: name.to_string(),
        })
    }

    /// The cache folder name: `models--org--name`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}--{}", self.org, self.name)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.name)
    }
}

/// What a model argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// The starter model compiled into the binary (`bundled`, or no `--model`).
    Bundled,
    /// A model folder.
    Folder(PathBuf),
    /// A Hub repository at a revision (a branch, a tag or a commit; `main` by default).
    Hub {
        repo: RepoId,
        revision: String,
        /// The alias it was given as, if any.
        alias: Option<&'static str>,
    },
}

impl ModelRef {
    /// Parses a model argument. An existing path is always a folder (so a folder named like
    /// a repository wins, as in diffusers); then `bundled`; then an alias; then `org/name`;
    /// anything that looks like a path is a (missing) folder, for a clear error later.
    pub fn parse(given: &str) -> Result<ModelRef, HubError> {
        let bad = |reason: String| HubError::BadReference {
            given: given.to_string(),
            reason,
        };
        if given.trim().is_empty() {
            return Err(bad("it is empty".into()));
        }
        let path = PathBuf::from(given);
        if path.exists() {
            return Ok(ModelRef::Folder(path));
        }
        if given == "bundled" {
            return Ok(ModelRef::Bundled);
        }
        let (name, revision) = match given.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (given, None),
        };
        let looks_like_path = name.starts_with(['/', '.', '~'])
            || name.ends_with('/')
            || name.matches('/').count() > 1
            || name.contains('\\');
        if looks_like_path {
            return Ok(ModelRef::Folder(path));
        }
        if let Some(r) = revision {
            check_revision(r).map_err(bad)?;
        }
        let revision = revision.unwrap_or("main").to_string();
        if let Some(alias) = aliases::find(name) {
            return Ok(ModelRef::Hub {
                repo: RepoId::parse(alias.repo).map_err(bad)?,
                revision,
                alias: Some(alias.name),
            });
        }
        if name.contains('/') {
            return Ok(ModelRef::Hub {
                repo: RepoId::parse(name).map_err(bad)?,
                revision,
                alias: None,
            });
        }
        let names: Vec<&str> = aliases::ALIASES.iter().map(|a| a.name).collect();
        Err(bad(format!(
            "no such folder, and not an alias ({}) or a Hub repository id (org/name)",
            names.join(", ")
        )))
    }
}

/// A revision is a branch, tag or commit name: no empty parts, no `..`, no spaces or control
/// characters (it becomes a path under `refs/`).
fn check_revision(r: &str) -> Result<(), String> {
    let ok = !r.is_empty()
        && r.len() <= 256
        && r.split('/').all(|p| !p.is_empty() && p != "." && p != "..")
        && !r
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{r}` is not a valid revision (a branch, a tag or a commit hash)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(s: &str) -> (String, String, Option<&'static str>) {
        match ModelRef::parse(s).unwrap() {
            ModelRef::Hub {
                repo,
                revision,
                alias,
            } => (repo.to_string(), revision, alias),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn repositories_aliases_and_revisions() {
        assert_eq!(hub("org/name"), ("org/name".into(), "main".into(), None));
        assert_eq!(
            hub("Wan-AI/Wan2.1-T2V-1.3B-Diffusers@v1.0"),
            (
                "Wan-AI/Wan2.1-T2V-1.3B-Diffusers".into(),
                "v1.0".into(),
                None
            )
        );
        let (repo, rev, alias) = hub("wan2.1-t2v-1.3b@0123456789abcdef0123456789abcdef01234567");
        assert_eq!(repo, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers");
        assert_eq!(rev, "0123456789abcdef0123456789abcdef01234567");
        assert_eq!(alias, Some("wan2.1-t2v-1.3b"));
        assert_eq!(hub("org/name@refs/pr/1").1, "refs/pr/1");
        assert_eq!(RepoId::parse("a/b").unwrap().cache_folder(), "models--a--b");
    }

    #[test]
    fn folders_bundled_and_errors() {
        assert_eq!(ModelRef::parse("bundled").unwrap(), ModelRef::Bundled);
        let dir = tempfile::tempdir().unwrap();
        let repo_like = dir.path().join("org");
        std::fs::create_dir_all(repo_like.join("name")).unwrap();
        // An existing folder wins over the repository reading.
        let existing = dir.path().join("org/name");
        assert_eq!(
            ModelRef::parse(existing.to_str().unwrap()).unwrap(),
            ModelRef::Folder(existing.clone())
        );
        for path in ["./x", "/no/such", "a/b/c", "dir/", "~/models/wan"] {
            assert_eq!(
                ModelRef::parse(path).unwrap(),
                ModelRef::Folder(path.into()),
                "{path}"
            );
        }
        for bad in [
            "",
            "  ",
            "justaname",
            "org/-x",
            "org/a--b",
            "org/a..b",
            "org/a b",
            "org/name@",
            "org/name@a/../b",
            "org/name@x y",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = ModelRef::parse("wan").unwrap_err().to_string();
        assert!(e.contains("wan2.1-t2v-1.3b"), "{e}");
    }
}
