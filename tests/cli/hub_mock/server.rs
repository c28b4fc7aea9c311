//! The mock's insides: shared state, accept loops, one thread per connection (keep-alive), and
//! the writing of responses with faults and throttling applied to bodies.

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};

use super::http::{Body, FileBody, Request, Response, encode_path, read_request};
use super::repo::MockRepo;
use super::routes::route;
use super::sha1::{hex, sha1};
use super::{Host, LoggedRequest};

/// How long a kept-alive connection may sit idle before the mock closes it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `expires` of every CDN URL (2100-01-01): fixed, so recorded URLs are reproducible.
const CDN_EXPIRES: u64 = 4_102_444_800;
/// Body chunk size when not throttled.
const CHUNK: usize = 64 * 1024;

pub(super) enum FaultKind {
    DropAfter(u64),
    Corrupt,
    Status(u16),
}

pub(super) struct Fault {
    pub pattern: String,
    pub kind: FaultKind,
    /// Uses left; `None` for a fault that stays until cleared.
    pub remaining: Option<usize>,
}

#[derive(Default)]
pub(super) struct State {
    pub log: Vec<LoggedRequest>,
    pub faults: Vec<Fault>,
    pub sink: Option<Box<dyn Write + Send>>,
}

pub(super) struct Shared {
    pub repos: Vec<MockRepo>,
    /// LFS content by sha256, with the S3-style ETag the CDN sends.
    pub blobs: HashMap<String, (Arc<Vec<u8>>, String)>,
    pub hub_base: String,
    pub cdn_base: String,
    pub state: Mutex<State>,
    pub throttle: AtomicU64,
    pub tree_page_size: AtomicUsize,
    pub stopping: AtomicBool,
    pub conns: Mutex<HashMap<u64, TcpStream>>,
    pub next_conn: AtomicU64,
    pub workers: Mutex<Vec<JoinHandle<()>>>,
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the log).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(repos: Vec<MockRepo>, hub_base: String, cdn_base: String) -> Shared {
        let mut blobs = HashMap::new();
        for repo in &repos {
            for file in repo.all_files() {
                if let Some(lfs) = &file.lfs {
                    let s3_etag = hex(sha1(&file.bytes))[..32].to_string();
                    blobs.insert(lfs.sha256.clone(), (file.bytes.clone(), s3_etag));
                }
            }
        }
        Shared {
            repos,
            blobs,
            hub_base,
            cdn_base,
            state: Mutex::new(State::default()),
            throttle: AtomicU64::new(0),
            tree_page_size: AtomicUsize::new(1000),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            workers: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, host: Host, req: &Request, status: u16) {
        let entry = LoggedRequest {
            host,
            method: req.method.clone(),
            path: req.target.clone(),
            range: req.header("Range").map(str::to_string),
            authorization: req.header("Authorization").map(str::to_string),
            status,
        };
        let mut state = lock(&self.state);
        if let Some(sink) = state.sink.as_mut() {
            let line = json!({
                "host": match host { Host::Hub => "hub", Host::Cdn => "cdn" },
                "method": entry.method,
                "path": entry.path,
                "range": entry.range,
                "authorization": entry.authorization.is_some(),
                "status": status,
            });
            let _ = writeln!(sink, "{line}").and_then(|()| sink.flush());
        }
        state.log.push(entry);
    }

    /// Takes the first matching fault of the kinds `pick` accepts, using one of its uses.
    pub(super) fn take_fault<T>(
        &self,
        target: &str,
        pick: impl Fn(&FaultKind) -> Option<T>,
    ) -> Option<T> {
        let mut state = lock(&self.state);
        let i = state
            .faults
            .iter()
            .position(|f| target.contains(&f.pattern) && pick(&f.kind).is_some())?;
        let value = pick(&state.faults[i].kind);
        let fault = &mut state.faults[i];
        if let Some(n) = fault.remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                state.faults.remove(i);
            }
        }
        value
    }

    pub(super) fn cdn_signature(&self, sha256: &str, path: &str, expires: &str) -> String {
        let digest = Sha256::digest(format!("mock-cdn\0{sha256}\0{path}\0{expires}").as_bytes());
        hex(digest)[..32].to_string()
    }

    /// The signed CDN URL an LFS file redirects to.
    pub(super) fn cdn_location(&self, sha256: &str, path: &str) -> String {
        let expires = CDN_EXPIRES.to_string();
        format!(
            "{}/lfs/{sha256}/{}?expires={expires}&signature={}",
            self.cdn_base,
            encode_path(path),
            self.cdn_signature(sha256, path, &expires)
        )
    }
}

/// Accepts connections until the mock stops; the listener closes when this returns.
pub(super) fn accept_loop(shared: Arc<Shared>, listener: TcpListener, host: Host) {
    while !shared.stopping.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
                if let Ok(clone) = stream.try_clone() {
                    lock(&shared.conns).insert(id, clone);
                }
                let s = shared.clone();
                let handle = thread::spawn(move || serve_connection(&s, stream, host, id));
                let mut workers = lock(&shared.workers);
                workers.retain(|w| !w.is_finished());
                workers.push(handle);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve_connection(shared: &Shared, stream: TcpStream, host: Host, id: u64) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    if let Ok(read_half) = stream.try_clone() {
        let mut reader = BufReader::new(read_half);
        let mut writer = &stream;
        while let Ok(Some(req)) = read_request(&mut reader) {
            if shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let resp = route(shared, host, &req);
            shared.record(host, &req, resp.status);
            let close = !req.keep_alive;
            match write_response(shared, &mut writer, resp, req.method == "HEAD", close) {
                Ok(true) if !close => {}
                _ => break,
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    lock(&shared.conns).remove(&id);
}

/// Writes a response; `Ok(false)` when a fault closed the connection.
fn write_response(
    shared: &Shared,
    w: &mut impl Write,
    resp: Response,
    head_only: bool,
    close: bool,
) -> io::Result<bool> {
    let drop_after = match &resp.body {
        Body::File(f) if !head_only => f.drop_after,
        _ => None,
    };
    w.write_all(&resp.head_bytes(close || drop_after.is_some()))?;
    if head_only {
        w.flush()?;
        return Ok(true);
    }
    match resp.body {
        Body::Bytes(b) => w.write_all(&b)?,
        Body::File(f) => write_file(shared, w, &f)?,
    }
    w.flush()?;
    Ok(drop_after.is_none())
}

fn write_file(shared: &Shared, w: &mut impl Write, f: &FileBody) -> io::Result<()> {
    let total = f.end - f.start;
    let limit = f.drop_after.map_or(total, |n| {
        usize::try_from(n).unwrap_or(usize::MAX).min(total)
    });
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < limit {
        if shared.stopping.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "mock stopped"));
        }
        let bps = shared.throttle.load(Ordering::SeqCst);
        let chunk = if bps == 0 {
            CHUNK
        } else {
            usize::try_from(bps / 50).unwrap_or(CHUNK).clamp(1, CHUNK)
        }
        .min(limit - sent);
        let from = f.start + sent;
        let mut buf = f.data[from..from + chunk].to_vec();
        if let Some(at) = f.corrupt_at
            && (from..from + chunk).contains(&at)
        {
            buf[at - from] ^= 0xFF;
        }
        w.write_all(&buf)?;
        sent += chunk;
        if bps > 0 {
            let due = Duration::from_secs_f64(sent as f64 / bps as f64);
            let elapsed = started.elapsed();
            if due > elapsed {
                w.flush()?;
                thread::sleep(due - elapsed);
            }
        }
    }
    Ok(())
}
