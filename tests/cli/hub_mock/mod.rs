//! A mock of the Hugging Face Hub for tests: std networking and threads, no HTTP crate.
//!
//! It answers what `huggingface_hub` (2.4) and a Hub client need to download model repos, the
//! way the real Hub does, from repos built in memory. No real Hub is ever contacted. The same
//! file is compiled into the `cli` test binary and into `examples/mock_hub.rs` (a standalone
//! server for Python), so it uses nothing from the test crate.
//!
//! # Repositories ([`MockRepo`])
//!
//! - `MockRepo::from_dir(id, dir)` / `from_files(id, files)`: branch `main` holds every file
//!   (`read_dir_files(dir)` reads a folder into a [`Files`] map, to change files for a branch).
//! - Files named `*.safetensors` or over 10 MB are LFS files: ETag = hex sha256 of the content,
//!   served through a redirect to the CDN. Other files are regular: ETag = git blob id,
//!   `sha1("blob {len}\0" + bytes)`. An LFS file's git blob id (`blobId`/`oid` in the API) is
//!   that of its LFS pointer, as on the Hub.
//! - A commit id is a deterministic 40-hex digest of the repo id and its (path, blob id) list;
//!   `repo.commit(rev)` tells it. Branches with identical files share a commit.
//! - `.with_branch(name, files)` adds a branch (names may hold `/`, e.g. `refs/pr/1`),
//!   `.with_tag(name, target)` a tag at a branch, tag or commit id.
//! - `.gated(token)`: the API describes the repo (`"gated": "manual"`), but `/resolve` answers
//!   401 without `Authorization: Bearer <token>` and 403 with another token, both with
//!   `X-Error-Code: GatedRepo`.
//! - `.private(token)`: every request without the token is answered as for a missing repo.
//! - `.renamed_from(old_id)`: requests naming `old_id` get a 307 with a relative `Location`
//!   naming the repo's id (the Hub does this for renamed repos).
//!
//! # Server ([`MockHub`])
//!
//! `MockHub::start(repos)` listens on `127.0.0.1:0` (`start_on(port, repos)` for a fixed port)
//! plus a second port for the CDN that LFS files redirect to: a different origin, so clients
//! treat it as the Hub's CDN (huggingface_hub reads the 302 itself instead of following it on
//! HEAD, and drops `Authorization` on the GET). `url()` is the Hub endpoint (`HF_ENDPOINT`),
//! `cdn_url()` the CDN. `stop()` (also on drop) closes both listeners, cuts open connections
//! and joins every thread; afterwards the ports refuse connections. Connections are HTTP/1.1
//! keep-alive, one thread each; only GET and HEAD are served (405 otherwise).
//!
//! Hub endpoints (`{id}` is `org/name`; `{rev}` is one percent-encoded segment, so `refs/pr/1`
//! arrives as `refs%2Fpr%2F1`; `{path}` is the repo path with `/` kept):
//!
//! - `GET /api/models/{id}` and `/api/models/{id}/revision/{rev}[?blobs=true]`: JSON with `_id`,
//!   `id`, `modelId`, `author`, `sha` (the commit), `lastModified`, `createdAt`, `private`,
//!   `gated` (`false` or `"manual"`), `disabled`, `downloads`, `likes`, `tags`, `spaces`,
//!   `usedStorage` and `siblings`: `[{"rfilename"}]`, plus `size`, `blobId` and for LFS files
//!   `lfs: {sha256, size, pointerSize}` when `blobs=true` (as on the Hub).
//! - `GET /api/models/{id}/tree/{rev}[/{dir}][?recursive=true][&cursor=N]`: a JSON list of
//!   `{"type": "file", "oid", "size", "path", "lfs"?: {"oid", "size", "pointerSize"}}` and
//!   `{"type": "directory", "oid", "size": 0, "path"}`, sorted by path; `recursive` lists the
//!   whole subtree. Pages hold `set_tree_page_size(n)` entries (1000, the Hub's limit, by
//!   default); a further page is announced by `Link: <absolute url&cursor=N>; rel="next"`.
//!   `expand` is ignored (no `lastCommit`/security fields).
//! - `HEAD`/`GET /{id}/resolve/{rev}/{path}`:
//!   - regular file: 200 (206 with `Range`) with the bytes, `ETag: "<git blob id>"`,
//!     `X-Repo-Commit: <commit>`, `Content-Length`, `Accept-Ranges: bytes`, `Content-Type`,
//!     `Content-Disposition`;
//!   - LFS file: 302 with `Location: <cdn_url>/lfs/<sha256>/<path>?expires=…&signature=…`
//!     (absolute), `X-Linked-Etag: "<sha256>"`, `X-Linked-Size: <size>`, `X-Repo-Commit`,
//!     `ETag: "<pointer blob id>"` and a short text body.
//!   - HEAD sends the same headers as GET, without the body.
//! - Errors carry `X-Error-Code`, `X-Error-Message` and a JSON `{"error": message}` body:
//!   unknown repo: `RepoNotFound`, 401 without `Authorization` and 404 with one (the Hub
//!   does not tell missing repos from private ones to anonymous callers); unknown revision:
//!   404 `RevisionNotFound`; unknown file or folder: 404 `EntryNotFound`, with `X-Repo-Commit`
//!   (huggingface_hub uses it to cache the file's absence); gated: 401/403 `GatedRepo`.
//!   Other paths: plain 404.
//!
//! CDN endpoint: `HEAD`/`GET /lfs/<sha256>/<path>?expires=…&signature=…`, the `Location` given
//! by `/resolve`: 200/206/416 with the bytes, `Accept-Ranges`, `Content-Disposition` and an
//! S3-style `ETag` that is *not* the sha256 (a client must name the blob after `X-Linked-Etag`).
//! Like S3's presigned URLs it answers 403 when the signature does not match the URL and 400 when
//! the request also carries `Authorization`, so a client that forwards the Hub token to the CDN
//! fails. Ranges: `bytes=a-b`, `bytes=a-`, `bytes=-n` give 206 with `Content-Range`; a range
//! starting past the end gives 416 with `Content-Range: bytes */len`; malformed or multi-range
//! headers are ignored (200), as RFC 9110 allows.
//!
//! # Request log
//!
//! `requests()` lists every request answered, in order, as [`LoggedRequest`] (host, method, raw
//! path with query, `Range`, `Authorization`, status); it is complete before the response is
//! sent. `count(method, substring)` counts requests whose raw or percent-decoded path contains
//! `substring` (`method` `""` matches any); `clear_requests()` empties the log, e.g. between a
//! first and a second download. `log_to(writer)` also writes each request as a JSON line.
//!
//! # Faults (settable while running)
//!
//! A fault's pattern is matched against the percent-decoded request target. A repo file's path
//! appears both in its `/resolve` URL and in its CDN URL, so `"vae/model.safetensors"` reaches
//! the download wherever it is served from.
//!
//! - `drop_after(pattern, n)`: the next GET body of a matching file (200/206) stops after `n`
//!   bytes and the connection closes (headers still announce the full length); once.
//! - `corrupt(pattern)`: matching file bodies have the byte at offset `len / 2` of the file
//!   flipped (when in the range sent), while every header keeps the true ETag and size; until
//!   `clear_faults()`. `corrupt_once(pattern)` for one response.
//! - `fail(pattern, status, times)`: the next `times` matching requests (any endpoint, HEAD
//!   included) get `status` with a JSON error body.
//! - `throttle(bytes_per_sec)`: every file body is paced to that rate (0 = unthrottled).
//! - `clear_faults()` removes pending faults (not the throttle).

mod http;
mod repo;
mod routes;
mod server;
mod sha1;

#[cfg(test)]
mod python_cache;
#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

pub use repo::{Files, LFS_THRESHOLD, MockRepo, read_dir_files};
pub use sha1::git_blob_id;

use server::{Fault, FaultKind, Shared, lock};

/// Which listener a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Hub,
    Cdn,
}

/// One answered request.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub host: Host,
    pub method: String,
    /// The request target as sent: path and query, percent-encoded.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub status: u16,
}

/// A running mock Hub (see the module documentation).
pub struct MockHub {
    shared: Arc<Shared>,
    accept_threads: Mutex<Vec<JoinHandle<()>>>,
    port: u16,
    cdn_port: u16,
}

impl MockHub {
    /// Starts the mock on `127.0.0.1:0`; panics if it cannot listen.
    pub fn start(repos: Vec<MockRepo>) -> MockHub {
        MockHub::start_on(0, repos).expect("mock Hub: listening on 127.0.0.1")
    }

    /// Starts the mock with the Hub on `127.0.0.1:port` (0: any free port).
    pub fn start_on(port: u16, repos: Vec<MockRepo>) -> io::Result<MockHub> {
        let mut ids: Vec<&str> = repos
            .iter()
            .flat_map(|r| {
                std::iter::once(r.id.as_str()).chain(r.aliases.iter().map(String::as_str))
            })
            .collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            panic!("mock Hub: repo id {} given twice", w[0]);
        }
        let hub = TcpListener::bind(("127.0.0.1", port))?;
        let cdn = TcpListener::bind(("127.0.0.1", 0))?;
        hub.set_nonblocking(true)?;
        cdn.set_nonblocking(true)?;
        let port = hub.local_addr()?.port();
        let cdn_port = cdn.local_addr()?.port();
        let shared = Arc::new(Shared::new(
            repos,
            format!("http://127.0.0.1:{port}"),
            format!("http://127.0.0.1:{cdn_port}"),
        ));
        let mut threads = Vec::new();
        for (listener, host) in [(hub, Host::Hub), (cdn, Host::Cdn)] {
            let s = shared.clone();
            threads.push(thread::spawn(move || {
                server::accept_loop(s, listener, host)
            }));
        }
        Ok(MockHub {
            shared,
            accept_threads: Mutex::new(threads),
            port,
            cdn_port,
        })
    }

    /// The Hub endpoint, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        self.shared.hub_base.clone()
    }

    /// The CDN origin LFS files redirect to.
    pub fn cdn_url(&self) -> String {
        self.shared.cdn_base.clone()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cdn_port(&self) -> u16 {
        self.cdn_port
    }

    /// The repos served, in the order given.
    pub fn repos(&self) -> &[MockRepo] {
        &self.shared.repos
    }

    /// Stops serving: closes the listeners, cuts open connections, joins all threads. Idempotent.
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for t in lock(&self.accept_threads).drain(..) {
            let _ = t.join();
        }
        for (_, conn) in lock(&self.shared.conns).drain() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        let workers: Vec<_> = lock(&self.shared.workers).drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.state).log.clone()
    }

    /// How many requests with this method (`""`: any) had `path_substring` in their raw or
    /// percent-decoded path.
    pub fn count(&self, method: &str, path_substring: &str) -> usize {
        lock(&self.shared.state)
            .log
            .iter()
            .filter(|r| method.is_empty() || r.method == method)
            .filter(|r| {
                r.path.contains(path_substring)
                    || http::percent_decode(&r.path).contains(path_substring)
            })
            .count()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.state).log.clear();
    }

    /// Also writes each request, as it is answered, as a JSON line
    /// `{"host", "method", "path", "range", "authorization": bool, "status"}`.
    pub fn log_to(&self, sink: Box<dyn Write + Send>) {
        lock(&self.shared.state).sink = Some(sink);
    }

    fn add_fault(&self, pattern: &str, kind: FaultKind, remaining: Option<usize>) {
        lock(&self.shared.state).faults.push(Fault {
            pattern: pattern.to_string(),
            kind,
            remaining,
        });
    }

    /// The next matching file body stops after `bytes` bytes and the connection closes.
    pub fn drop_after(&self, pattern: &str, bytes: u64) {
        self.add_fault(pattern, FaultKind::DropAfter(bytes), Some(1));
    }

    /// Matching file bodies get one flipped byte (at `len / 2`) until `clear_faults()`.
    pub fn corrupt(&self, pattern: &str) {
        self.add_fault(pattern, FaultKind::Corrupt, None);
    }

    /// The next matching file body gets one flipped byte (at `len / 2`).
    pub fn corrupt_once(&self, pattern: &str) {
        self.add_fault(pattern, FaultKind::Corrupt, Some(1));
    }

    /// The next `times` matching requests are answered with `status`.
    pub fn fail(&self, pattern: &str, status: u16, times: usize) {
        if times > 0 {
            self.add_fault(pattern, FaultKind::Status(status), Some(times));
        }
    }

    /// Paces every file body to `bytes_per_sec` (0: no limit).
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.shared.throttle.store(bytes_per_sec, Ordering::SeqCst);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.state).faults.clear();
    }

    /// Entries per page of the tree listing (default 1000).
    pub fn set_tree_page_size(&self, entries: usize) {
        self.shared
            .tree_page_size
            .store(entries.max(1), Ordering::SeqCst);
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop();
    }
}
