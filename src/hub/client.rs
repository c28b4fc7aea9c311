//! The Hub's HTTP API as `huggingface_hub` uses it: repository information at a revision,
//! file metadata from `resolve` (`X-Repo-Commit`, `ETag`, `X-Linked-Etag`, `X-Linked-Size`),
//! and ranged blob downloads. Settings come from `HF_ENDPOINT`, `HF_TOKEN` (or the token file
//! `hf auth login` writes) and `HF_HUB_OFFLINE`.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use super::{HubError, RepoId};

/// Where the Hub is and how to talk to it.
#[derive(Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    offline: bool,
    /// No redirects: `resolve` answers with the metadata on the redirect itself.
    head_agent: ureq::Agent,
    /// Follows redirects (to the blob's storage).
    agent: ureq::Agent,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .finish()
    }
}

/// A repository at a revision, as the Hub reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// The commit the revision points at.
    pub commit: String,
    /// Every file path in the repository at that commit.
    pub files: Vec<String>,
}

/// What `resolve` says about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The blob's name in the cache: the SHA-256 for LFS files, the git blob id otherwise.
    pub etag: String,
    pub size: u64,
    pub commit: String,
    /// Whether the file is stored in LFS (its `etag` is then its SHA-256).
    pub lfs: bool,
    /// Where the bytes are (the redirect target for LFS files, else the `resolve` URL).
    pub url: String,
}

#[derive(serde::Deserialize)]
struct RevisionJson {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

impl HubClient {
    /// The client the environment asks for.
    pub fn from_env() -> HubClient {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".into());
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let token = var("HF_TOKEN").or_else(|| {
            let file = var("HF_TOKEN_PATH").map(PathBuf::from).or_else(|| {
                let home = var("HF_HOME").map(PathBuf::from).or_else(|| {
                    let cache = var("XDG_CACHE_HOME")
                        .map(PathBuf::from)
                        .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))?;
                    Some(cache.join("huggingface"))
                })?;
                Some(home.join("token"))
            })?;
            std::fs::read_to_string(file)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });
        HubClient::new(&endpoint, token, offline)
    }

    pub fn new(endpoint: &str, token: Option<String>, offline: bool) -> HubClient {
        let build = |redirects| {
            ureq::AgentBuilder::new()
                .redirects(redirects)
                .timeout_connect(Duration::from_secs(10))
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("aivideo/", env!("CARGO_PKG_VERSION")))
                .try_proxy_from_env(true)
                .build()
        };
        HubClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            offline,
            head_agent: build(0),
            agent: build(5),
        }
    }

    /// Whether `HF_HUB_OFFLINE` forbids the network.
    pub fn offline(&self) -> bool {
        self.offline
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn authorize(&self, req: ureq::Request) -> ureq::Request {
        let req = req.set("Accept-Encoding", "identity");
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    /// The commit `revision` points at and the repository's files there.
    pub fn repo_info(&self, repo: &RepoId, revision: &str) -> Result<RepoInfo, HubError> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode_path(revision).replace('/', "%2F")
        );
        let resp = self.call(self.authorize(self.agent.get(&url)), repo, revision, None)?;
        let mut text = Vec::new();
        resp.into_reader()
            .take(64 << 20)
            .read_to_end(&mut text)
            .map_err(|e| network_error(&url, ureq::Error::from(e)))?;
        let body: RevisionJson = serde_json::from_slice(&text)
            .map_err(|e| HubError::Protocol(format!("{url}: unreadable answer: {e}")))?;
        if !super::cache::is_commit(&body.sha) {
            return Err(HubError::Protocol(format!(
                "{url}: `sha` is not a commit hash"
            )));
        }
        Ok(RepoInfo {
            commit: body.sha.to_ascii_lowercase(),
            files: body.siblings.into_iter().map(|s| s.rfilename).collect(),
        })
    }

    /// `HEAD /{repo}/resolve/{commit}/{path}` without following the redirect.
    pub fn file_meta(&self, repo: &RepoId, commit: &str, path: &str) -> Result<FileMeta, HubError> {
        let url = format!(
            "{}/{repo}/resolve/{commit}/{}",
            self.endpoint,
            encode_path(path)
        );
        let resp = self.call(
            self.authorize(self.head_agent.head(&url)),
            repo,
            commit,
            Some(path),
        )?;
        let header = |k: &str| resp.header(k).map(str::to_string);
        let linked = header("X-Linked-Etag");
        let lfs = linked.is_some();
        let etag = linked
            .or_else(|| header("ETag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| HubError::Protocol(format!("{url}: no usable ETag")))?;
        let size = header("X-Linked-Size")
            .or_else(|| header("Content-Length"))
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| HubError::Protocol(format!("{url}: no size")))?;
        let commit = header("X-Repo-Commit").unwrap_or_else(|| commit.to_string());
        let url = match header("Location") {
            Some(loc) if loc.starts_with('/') => format!("{}{loc}", self.endpoint),
            Some(loc) => loc,
            None => url,
        };
        Ok(FileMeta {
            etag,
            size,
            commit,
            lfs,
            url,
        })
    }

    /// Streams `meta`'s bytes from `offset` on into `sink`; `Ok(false)` when the server sent
    /// the whole file instead of the range (the caller then starts over).
    pub fn download(
        &self,
        meta: &FileMeta,
        offset: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), HubError>,
    ) -> Result<bool, HubError> {
        let mut req = self.agent.get(&meta.url).set("Accept-Encoding", "identity");
        // The token goes to the Hub itself, not to the storage a redirect leads to.
        if meta.url.starts_with(&self.endpoint)
            && let Some(t) = &self.token
        {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        if offset > 0 {
            req = req.set("Range", &format!("bytes={offset}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(416, _)) if offset >= meta.size => return Ok(true),
            Err(e) => return Err(network_error(&meta.url, e)),
        };
        let ranged = resp.status() == 206;
        if offset > 0 && !ranged {
            return Ok(false);
        }
        let mut reader = resp.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|e| HubError::Interrupted {
                url: meta.url.clone(),
                reason: e.to_string(),
            })?;
            if n == 0 {
                return Ok(true);
            }
            sink(&buf[..n])?;
        }
    }

    fn call(
        &self,
        req: ureq::Request,
        repo: &RepoId,
        revision: &str,
        file: Option<&str>,
    ) -> Result<ureq::Response, HubError> {
        if self.offline {
            return Err(HubError::Offline);
        }
        let url = req.url().to_string();
        match req.call() {
            Ok(r) => Ok(r),
            // A redirect from `resolve` (not followed on purpose) carries the metadata.
            Err(ureq::Error::Status(code, r)) if (300..400).contains(&code) => Ok(r),
            Err(ureq::Error::Status(code, r)) => {
                let kind = r.header("X-Error-Code").unwrap_or("").to_string();
                Err(match (code, kind.as_str()) {
                    (_, "RepoNotFound") => HubError::UnknownRepo {
                        repo: repo.to_string(),
                    },
                    (401 | 403, _) | (_, "GatedRepo") => HubError::Unauthorized {
                        repo: repo.to_string(),
                        token: self.token.is_some(),
                        page: format!("{}/{repo}", self.endpoint),
                    },
                    (404, "RevisionNotFound") => HubError::UnknownRevision {
                        repo: repo.to_string(),
                        revision: revision.to_string(),
                    },
                    (404, "EntryNotFound") => HubError::UnknownFile {
                        repo: repo.to_string(),
                        path: file.unwrap_or_default().to_string(),
                    },
                    (404, _) => HubError::UnknownRepo {
                        repo: repo.to_string(),
                    },
                    _ => HubError::Protocol(format!("{url}: the Hub answered {code}")),
                })
            }
            Err(e) => Err(network_error(&url, e)),
        }
    }
}

fn network_error(url: &str, e: ureq::Error) -> HubError {
    HubError::Network {
        url: url.to_string(),
        reason: match e {
            ureq::Error::Transport(t) => t.to_string(),
            other => other.to_string(),
        },
    }
}

/// Percent-encodes what a URL path must not hold raw (keeping `/`).
fn encode_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_encoded_but_keep_slashes() {
        assert_eq!(encode_path("vae/config.json"), "vae/config.json");
        assert_eq!(encode_path("refs/pr/1"), "refs/pr/1");
        assert_eq!(encode_path("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn offline_clients_never_touch_the_network() {
        // Port 9 (discard) on a test address: a request would fail differently.
        let c = HubClient::new("http://192.0.2.1:9", None, true);
        let repo = RepoId::parse("a/b").unwrap();
        assert!(matches!(c.repo_info(&repo, "main"), Err(HubError::Offline)));
        assert!(matches!(
            c.file_meta(&repo, "main", "x"),
            Err(HubError::Offline)
        ));
    }
}
