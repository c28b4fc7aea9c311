//! `aivideo serve-metrics`: a small synchronous HTTP server (`/metrics`, `/health`, `/status`)
//! that reads the job history read-only on every request, so that every process's jobs count.
//! Stops cleanly (exit 0) on SIGINT or SIGTERM; a second signal exits at once with 130.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use serde_json::json;
use tiny_http::{Header, Method, Request, Response, Server};

use super::{Context, model_in_use, system_status};
use crate::cancel::CancelFlag;
use crate::cli::ServeMetricsArgs;
use crate::metrics::{Format, GpuMonitor, Snapshot, error_chain, open_checked};
use crate::output::Printer;

/// How often the request loop looks at the stop flag while idle.
const POLL: Duration = Duration::from_millis(100);

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

/// Routes on the path (query strings are ignored); known paths take GET and HEAD only.
fn route(method: &Method, url: &str) -> Route {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let route = match path {
        "/metrics" => Route::Metrics,
        "/health" => Route::Health,
        "/status" => Route::Status,
        _ => return Route::NotFound,
    };
    match method {
        Method::Get | Method::Head => route,
        _ => Route::MethodNotAllowed,
    }
}

/// A finished response: status, content type, body, and extra headers.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    headers: Vec<(&'static str, &'static str)>,
}

impl Reply {
    fn new(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, JSON, format!("{value}\n"))
    }

    fn into_response(self) -> Response<std::io::Cursor<Vec<u8>>> {
        let mut response = Response::from_string(self.body)
            .with_status_code(self.status)
            // Always a Content-Length: the body is complete before it is sent.
            .with_chunked_threshold(usize::MAX);
        let headers = [
            ("Content-Type", self.content_type),
            ("Cache-Control", "no-store"),
        ];
        for (name, value) in headers.into_iter().chain(self.headers) {
            if let Ok(h) = Header::from_bytes(name, value) {
                response.add_header(h);
            }
        }
        response
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
    fn reply(&self, route: Route, accept: Option<&str>, url: &str) -> Reply {
        match route {
            Route::Metrics => self.metrics(Format::negotiate(accept)),
            Route::Health => self.health(),
            Route::Status => self.status(),
            Route::NotFound => Reply::new(404, TEXT, format!("not found: {url}\n")),
            Route::MethodNotAllowed => {
                let mut r = Reply::new(405, TEXT, "method not allowed; use GET or HEAD\n".into());
                r.headers.push(("Allow", "GET, HEAD"));
                r
            }
        }
    }

    fn metrics(&self, format: Format) -> Reply {
        match Snapshot::collect(&self.db_path, &self.gpus).render(format) {
            Ok(page) => Reply::new(200, format.content_type(), page),
            Err(e) => Reply::new(500, TEXT, format!("{}\n", error_chain(&e))),
        }
    }

    fn unavailable(&self, reason: String) -> Reply {
        Reply::json(
            503,
            &json!({ "status": "unavailable", "reason": reason, "database": self.db_path }),
        )
    }

    fn health(&self) -> Reply {
        match open_checked(&self.db_path) {
            Ok(_) => Reply::json(200, &json!({ "status": "ok", "database": self.db_path })),
            Err(e) => self.unavailable(error_chain(&e)),
        }
    }

    fn status(&self) -> Reply {
        let status = open_checked(&self.db_path)
            .map_err(anyhow::Error::from)
            .and_then(|store| system_status(&store, self.model.as_ref()));
        match status.and_then(|s| Ok(serde_json::to_value(s)?)) {
            Ok(value) => Reply::json(200, &value),
            Err(e) => self.unavailable(error_chain(&*e)),
        }
    }

    fn handle(&self, request: Request, printer: &Printer) {
        let accept = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Accept"))
            .map(|h| h.value.as_str().to_string());
        let url = request.url().to_string();
        let method = request.method().clone();
        let route = route(&method, &url);
        let reply = self.reply(route, accept.as_deref(), &url);
        let status = reply.status;
        if let Err(e) = request.respond(reply.into_response()) {
            printer.debug(&format!("{method} {url}: cannot send the response: {e}"));
        } else {
            printer.debug(&format!("{method} {url} {status}"));
        }
    }
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
    let stop = CancelFlag::install().context("cannot install the SIGINT/SIGTERM handlers")?;
    let server = Server::http(args.addr)
        .map_err(|e| anyhow!(e))
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let addr = server
        .server_addr()
        .to_ip()
        .context("the server is not listening on an IP address")?;
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
    p.info(&format!("serving metrics on http://{addr}/metrics"));
    p.debug(&format!("job history: {}", state.db_path.display()));
    if p.is_json() {
        let line = serde_json::to_string(&urls(&addr, &state.db_path))?;
        p.result(&format!("{line}\n"))?;
    }
    while !stop.is_canceled() {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => state.handle(request, p),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("the metrics server stopped accepting requests"),
        }
    }
    p.info("metrics server stopped");
    Ok(crate::error::exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::Get, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::Head, "/metrics?x=1"), Route::Metrics);
        assert_eq!(route(&Method::Get, "/health"), Route::Health);
        assert_eq!(route(&Method::Get, "/status"), Route::Status);
        assert_eq!(route(&Method::Get, "/nope"), Route::NotFound);
        assert_eq!(route(&Method::Get, "/metrics/"), Route::NotFound);
        assert_eq!(route(&Method::Post, "/nope"), Route::NotFound);
        assert_eq!(route(&Method::Post, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::Delete, "/health"), Route::MethodNotAllowed);
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
