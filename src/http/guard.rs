//! What every request passes through before a handler: its request id, the size limits on
//! the URL and headers, the per-client rate limit, the API token, and the HTTP metrics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde_json::json;

use super::AppState;
use super::types::ApiError;
use crate::error::ErrorCode;

/// Longest request target (path and query) accepted; longer ones get 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes (names and values) and header fields accepted; more get 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 64;
/// Longest client-supplied `X-Request-ID` kept (longer or odd ones are replaced).
const MAX_REQUEST_ID: usize = 128;

/// The header every response carries.
pub static REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The request's id, for handlers and logs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Adds `X-Request-ID` to every response: the client's own when it is a sane token, else a
/// new UUID.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID.clone(), v);
    }
    response
}

/// 414 for a long URL, 431 for large or many headers; the input is never echoed.
pub async fn size_limits(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            ErrorCode::ValidationError,
            format!("the request URL is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADERS {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::ValidationError,
            format!("the request headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Paths anyone may read without the token: the health check, the page itself and the
/// OpenAPI document (which hold no data; the page asks for the token).
pub(super) fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/api/v1/system/health" | "/api/v1/openapi.json")
}

/// With a token set, every other request needs `Authorization: Bearer <token>` (or, for
/// what a browser fetches by URL — `<video>`, `EventSource` — `?access_token=<token>`).
pub async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = state.config.token.as_deref() else {
        return next.run(req).await;
    };
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .and_then(percent_decode)
    });
    let given = bearer.map(str::to_string).or(query);
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::UsageError,
        "this server needs its API token: send `Authorization: Bearer <token>`",
    )
    .header(header::WWW_AUTHENTICATE, "Bearer")
    .into_response()
}

/// A query value with its `%XX` escapes (and `+` for space) decoded; `None` when an escape
/// is malformed or the result is not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token bucket per client address: `rate` requests a second on average, bursts of up
/// to `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

/// Clients remembered at most; idle ones are forgotten first.
const MAX_CLIENTS: usize = 10_000;

impl RateLimiter {
    /// `rate` 0 turns the limit off.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::default(),
        }
    }

    /// `Ok` when the client may go on, else the seconds until it may.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let full_after = self.burst / self.rate;
            buckets.retain(|_, (_, t)| now.duration_since(*t).as_secs_f64() < full_after);
        }
        let (tokens, last) = buckets.entry(client).or_insert((self.burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.rate;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// 429 with `Retry-After` for a client over its rate (the health check is exempt).
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.uri().path() != "/api/v1/system/health" {
        let client = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical());
        if let Some(ip) = client
            && let Err(wait) = state.limiter.check(ip)
        {
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::UsageError,
                "too many requests from this client; slow down",
            )
            .details(json!({ "retry_after_s": wait }))
            .header(header::RETRY_AFTER, &wait.to_string())
            .into_response();
        }
    }
    next.run(req).await
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// The live HTTP metrics of one server, registered into each metrics page.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    active: Gauge,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 4.0, 9))
            }),
            active: Gauge::default(),
        }
    }
}

impl HttpMetrics {
    /// Adds the families (sharing their live values) to `r`; `queue_depth` is read now.
    pub fn register(&self, r: &mut Registry, queue_depth: Option<u64>) {
        r.register(
            "http_requests",
            "HTTP requests answered, by route, method and status code",
            self.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time to answer HTTP requests, by route",
            Unit::Seconds,
            self.durations.clone(),
        );
        r.register(
            "http_requests_active",
            "HTTP requests being answered",
            self.active.clone(),
        );
        if let Some(depth) = queue_depth {
            r.register(
                "queue_depth",
                "Queued jobs waiting for a worker",
                prometheus_client::metrics::gauge::ConstGauge::new(
                    i64::try_from(depth).unwrap_or(i64::MAX),
                ),
            );
        }
    }
}

/// Counts and times every request by its route pattern (never the raw path, so ids do not
/// make new series).
pub async fn metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let m = Arc::clone(&state.metrics);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    m.active.inc();
    let start = Instant::now();
    let response = next.run(req).await;
    m.active.dec();
    m.durations
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            code: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(2, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip), Ok(()));
        }
        assert_eq!(limiter.check(ip), Err(1));
        // Another client has its own bucket.
        assert_eq!(limiter.check("10.0.0.2".parse().unwrap()), Ok(()));
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_eq!(limiter.check(ip), Ok(()));
        assert!(RateLimiter::new(0, 0).check(ip).is_ok());
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(
            percent_decode("abc%2Bdef%2Fg%3D").as_deref(),
            Some("abc+def/g=")
        );
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("a+b").as_deref(), Some("a b"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
