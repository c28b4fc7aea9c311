//! `aivideo serve-metrics`: a small HTTP/1.1 server (`/metrics`, `/health`, `/status`) that
//! reads the job history read-only on every request, so that every process's jobs count.
//! One thread per connection, at most [`MAX_CONNECTIONS`] at once (more are answered 503); each
//! connection carries one request (see [`http`] for the limits) and is closed after it, so no
//! client holds a thread for longer than the deadlines below.
//! It listens on a loopback address unless `--allow-remote` says otherwise.
//! Stops cleanly (exit 0) on SIGINT or SIGTERM; a second signal exits at once with 130.

mod http;

use std::io::{BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{Context, model_in_use, system_status};
use crate::cancel::CancelFlag;
use crate::cli::ServeMetricsArgs;
use crate::error::{CliError, ErrorCode};
use crate::metrics::{Format, GpuMonitor, Snapshot, error_chain, open_checked};
use crate::output::Printer;
use http::{Deadline, Response};

/// How often the accept loop looks at the stop flag while idle.
const POLL: Duration = Duration::from_millis(100);

/// Connections served at once; the next ones get a 503 until one ends.
const MAX_CONNECTIONS: usize = 32;

/// How long a client has, from its connection, to send a whole request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long writing a response may take (a client that does not read is cut off).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// What the server answers a request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Metrics,
    Health,
    Status,
    NotFound,
    MethodNotAllowed,
}

/// Routes on the path (query strings are already removed); known paths take GET and HEAD only.
fn route(method: &str, path: &str) -> Route {
    let route = match path {
        "/metrics" => Route::Metrics,
        "/health" => Route::Health,
        "/status" => Route::Status,
        _ => return Route::NotFound,
    };
    match method {
        "GET" | "HEAD" => route,
        _ => Route::MethodNotAllowed,
    }
}

fn reply(status: u16, content_type: &'static str, body: String) -> Response {
    Response {
        status,
        content_type,
        body,
        headers: Vec::new(),
    }
}

fn json_reply(status: u16, value: &serde_json::Value) -> Response {
    reply(status, JSON, format!("{value}\n"))
}

/// The answer to a request that could not be read: a fixed message (never the input).
fn refusal(status: u16, why: &http::RequestError) -> Response {
    reply(status, TEXT, format!("{why}\n"))
}

/// At most `max` characters of `text`, for log lines.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// Holds one of the [`MAX_CONNECTIONS`] places until dropped.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The server's state across requests.
struct Metrics {
    db_path: PathBuf,
    gpus: GpuMonitor,
    /// The model `status` reports, looked up once at start.
    model: Option<crate::models::Manifest>,
}

impl Metrics {
    fn reply(&self, route: Route, accept: Option<&str>) -> Response {
        match route {
            Route::Metrics => self.metrics(Format::negotiate(accept)),
            Route::Health => self.health(),
            Route::Status => self.status(),
            Route::NotFound => reply(
                404,
                TEXT,
                "not found; the paths are /metrics, /health and /status\n".into(),
            ),
            Route::MethodNotAllowed => {
                let mut r = reply(405, TEXT, "method not allowed; use GET or HEAD\n".into());
                r.headers.push(("Allow", "GET, HEAD"));
                r
            }
        }
    }

    fn metrics(&self, format: Format) -> Response {
        match Snapshot::collect(&self.db_path, &self.gpus).render(format) {
            Ok(page) => reply(200, format.content_type(), page),
            Err(e) => reply(500, TEXT, format!("{}\n", error_chain(&e))),
        }
    }

    fn unavailable(&self, reason: String) -> Response {
        json_reply(
            503,
            &json!({ "status": "unavailable", "reason": reason, "database": self.db_path }),
        )
    }

    fn health(&self) -> Response {
        match open_checked(&self.db_path) {
            Ok(_) => json_reply(200, &json!({ "status": "ok", "database": self.db_path })),
            Err(e) => self.unavailable(error_chain(&e)),
        }
    }

    fn status(&self) -> Response {
        let status = open_checked(&self.db_path)
            .map_err(anyhow::Error::from)
            .and_then(|store| system_status(&store, self.model.as_ref()));
        match status.and_then(|s| Ok(serde_json::to_value(s)?)) {
            Ok(value) => json_reply(200, &value),
            Err(e) => self.unavailable(error_chain(&*e)),
        }
    }

    /// Serves the one request of a connection, then closes it.
    fn serve(&self, stream: TcpStream, peer: SocketAddr, stop: &CancelFlag, printer: &Printer) {
        let mut head = BufReader::with_capacity(4096, Deadline::new(&stream, HEAD_TIMEOUT, stop));
        let (response, head_only, what) = match http::read_request(&mut head, &http::LIMITS) {
            Ok(request) => {
                let path = request.path();
                let what = format!("{} {}", clip(&request.method, 16), clip(path, 80));
                let route = route(&request.method, path);
                let response = self.reply(route, request.header("accept").as_deref());
                (response, request.method == "HEAD", what)
            }
            Err(e) => match e.status() {
                Some(status) => (refusal(status, &e), false, e.to_string()),
                None => {
                    printer.debug(&format!("{peer}: no request: {e}"));
                    return;
                }
            },
        };
        drop(head);
        let status = response.status;
        let mut out = Deadline::new(&stream, WRITE_TIMEOUT, stop);
        match out.write_all(&response.encode(head_only)) {
            Ok(()) => printer.debug(&format!("{peer}: {what}: {status}")),
            Err(e) => printer.debug(&format!("{peer}: {what}: cannot send the {status}: {e}")),
        }
        http::finish(&stream, stop);
    }
}

/// Turns a connection away when [`MAX_CONNECTIONS`] are being served (a fresh socket takes
/// the few bytes at once; the write is bounded anyway).
fn turn_away(stream: &TcpStream, stop: &CancelFlag) {
    let mut response = reply(503, TEXT, "too many connections; try again\n".into());
    response.headers.push(("Retry-After", "1"));
    let mut out = Deadline::new(stream, Duration::from_secs(1), stop);
    let _ = out.write_all(&response.encode(false));
}

/// Waits up to `timeout` for a connection to accept; false when none came, also when a
/// signal cut the wait short.
fn wait_for_connection(listener: &TcpListener, timeout: Duration) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is one valid pollfd that outlives the call, and the listener (borrowed for
    // the call) keeps its descriptor open.
    unsafe { libc::poll(&mut fd, 1, ms) > 0 }
}

/// Refuses an address other hosts can reach unless `--allow-remote` is given; says whether
/// the address is a remote one.
fn check_exposure(args: &ServeMetricsArgs) -> Result<bool, CliError> {
    // `to_canonical`: an IPv4-mapped loopback (`::ffff:127.0.0.1`) is loopback too.
    let remote = !args.addr.ip().to_canonical().is_loopback();
    if remote && !args.allow_remote {
        return Err(CliError::new(
            ErrorCode::UsageError,
            format!(
                "--addr {} is not a loopback address: anyone who can reach it could read the \
                 metrics and the prompts of running jobs; pass --allow-remote to listen there \
                 anyway",
                args.addr
            ),
        )
        .with_details(json!({ "addr": args.addr.to_string(), "flag": "--allow-remote" })));
    }
    Ok(remote)
}

/// Where the server listens, as printed at start.
fn urls(addr: &std::net::SocketAddr, db_path: &Path) -> serde_json::Value {
    let base = format!("http://{addr}");
    json!({
        "addr": addr.to_string(),
        "metrics_url": format!("{base}/metrics"),
        "health_url": format!("{base}/health"),
        "status_url": format!("{base}/status"),
        "database": db_path,
    })
}

pub fn run(ctx: &Context, args: &ServeMetricsArgs) -> Result<u8> {
    let remote = check_exposure(args)?;
    let stop = CancelFlag::install().context("cannot install the SIGINT/SIGTERM handlers")?;
    let listener =
        TcpListener::bind(args.addr).with_context(|| format!("cannot listen on {}", args.addr))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the listening socket non-blocking")?;
    let addr = listener
        .local_addr()
        .context("cannot read the address the server listens on")?;
    let state = Metrics {
        db_path: ctx.global.db_path(),
        gpus: GpuMonitor::init(),
        model: model_in_use(ctx),
    };
    let p = &ctx.printer;
    match state.gpus.unavailable_reason() {
        None => p.debug("NVML loaded: GPU metrics enabled"),
        Some(why) => p.debug(&format!("no GPU metrics: {why}")),
    }
    if remote {
        p.warn(&format!(
            "{addr} is not a loopback address (--allow-remote): the metrics and the prompts of \
             running jobs are readable by anyone who can reach it"
        ));
    }
    p.info(&format!("serving metrics on http://{addr}/metrics"));
    p.debug(&format!("job history: {}", state.db_path.display()));
    if p.is_json() {
        let line = serde_json::to_string(&urls(&addr, &state.db_path))?;
        p.result(&format!("{line}\n"))?;
    }
    let active = AtomicUsize::new(0);
    let (state, stop) = (&state, &stop);
    // Connection threads see the stop flag within `http`'s poll interval, so the scope ends
    // soon after a signal.
    std::thread::scope(|scope| {
        while !stop.is_canceled() {
            if !wait_for_connection(&listener, POLL) {
                continue;
            }
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a little instead of spinning, and keep serving.
                    p.debug(&format!("cannot accept a connection: {e}"));
                    std::thread::sleep(POLL);
                    continue;
                }
            };
            // Accepted sockets must block (with timeouts), whatever the listener does.
            if let Err(e) = stream.set_nonblocking(false) {
                p.debug(&format!("{peer}: cannot configure the connection: {e}"));
                continue;
            }
            if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                p.debug(&format!(
                    "{peer}: turned away ({MAX_CONNECTIONS} connections open)"
                ));
                turn_away(&stream, stop);
                continue;
            }
            active.fetch_add(1, Ordering::SeqCst);
            let slot = Slot(&active);
            let spawned = std::thread::Builder::new()
                .name("metrics-connection".into())
                .spawn_scoped(scope, move || {
                    let _slot = slot;
                    state.serve(stream, peer, stop, p);
                });
            if let Err(e) = spawned {
                p.debug(&format!(
                    "{peer}: cannot start a thread for the connection: {e}"
                ));
            }
        }
    });
    p.info("metrics server stopped");
    Ok(crate::error::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/metrics"), Route::Metrics);
        assert_eq!(route("HEAD", "/metrics"), Route::Metrics);
        assert_eq!(route("GET", "/health"), Route::Health);
        assert_eq!(route("GET", "/status"), Route::Status);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
        assert_eq!(route("GET", "/metrics/"), Route::NotFound);
        assert_eq!(route("POST", "/nope"), Route::NotFound);
        assert_eq!(route("POST", "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route("DELETE", "/health"), Route::MethodNotAllowed);
        // Methods are case-sensitive.
        assert_eq!(route("get", "/health"), Route::MethodNotAllowed);
    }

    fn args(addr: &str, allow_remote: bool) -> ServeMetricsArgs {
        ServeMetricsArgs {
            addr: addr.parse().unwrap(),
            allow_remote,
        }
    }

    #[test]
    fn only_loopback_addresses_are_served_without_allow_remote() {
        for addr in [
            "127.0.0.1:9464",
            "127.1.2.3:0",
            "[::1]:9464",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(!check_exposure(&args(addr, false)).unwrap(), "{addr}");
        }
        for addr in ["0.0.0.0:9464", "[::]:0", "192.168.1.5:80", "[fe80::1]:9464"] {
            let err = check_exposure(&args(addr, false)).unwrap_err();
            assert_eq!(err.code, ErrorCode::UsageError);
            assert!(err.message.contains("--allow-remote"), "{}", err.message);
            assert!(check_exposure(&args(addr, true)).unwrap(), "{addr}");
        }
    }

    #[test]
    fn log_lines_are_clipped() {
        assert_eq!(clip("GET", 16), "GET");
        assert_eq!(clip(&"a".repeat(20), 4), "aaaa...");
    }

    #[test]
    fn urls_use_the_bound_address() {
        let addr: std::net::SocketAddr = "127.0.0.1:4321".parse().unwrap();
        let v = urls(&addr, Path::new("/tmp/db"));
        assert_eq!(v["addr"], "127.0.0.1:4321");
        assert_eq!(v["metrics_url"], "http://127.0.0.1:4321/metrics");
        assert_eq!(v["health_url"], "http://127.0.0.1:4321/health");
    }
}
