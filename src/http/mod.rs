//! The HTTP service of `aivideo serve`: the original API under `/api/v1` (videos, system),
//! live progress (SSE and WebSocket), the OpenAPI document, the page at `/`, the guards
//! every request passes (request id, size limits, rate limit, token, metrics) and the accept
//! loop that bounds connections. Jobs are only enqueued here; workers run them (see
//! `aivideo worker`).

mod api;
mod events;
mod files;
pub mod guard;
pub mod listener;
mod openapi;
mod page;
mod pool;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::routing::{get, post};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::cancel::CancelFlag;
use crate::metrics::GpuMonitor;
use crate::models::{DeviceChoice, Manifest, Precision};
pub use guard::{HttpMetrics, RateLimiter};
pub use pool::StorePool;

/// Largest request body accepted (larger ones get 413).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most requests one batch may hold.
pub const MAX_BATCH: usize = 1000;

/// How the server was started.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub db: PathBuf,
    pub output_dir: PathBuf,
    /// The `--model` value jobs use when a request names none.
    pub model: Option<String>,
    /// That model, inspected at start.
    pub manifest: Manifest,
    pub device: DeviceChoice,
    pub precision: Precision,
    /// Re-runs allowed when a worker dies mid-job.
    pub retries: u32,
    pub token: Option<String>,
    pub cors_origin: Option<String>,
    pub workers: usize,
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub pool: StorePool,
    pub limiter: Arc<RateLimiter>,
    pub metrics: Arc<HttpMetrics>,
    pub gpus: Arc<GpuMonitor>,
    /// Set when the server is stopping: event streams end.
    pub shutdown: CancelFlag,
    /// How often event streams look at the job history.
    pub poll: Duration,
}

/// Every route, with its guards.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/videos/generate", post(api::generate))
        .route("/videos/batch", post(api::batch))
        .route("/videos", get(api::list))
        .route("/videos/", get(api::list))
        .route("/videos/{id}", get(api::get_video).delete(api::cancel))
        .route("/videos/{id}/download", get(files::download))
        .route("/videos/{id}/thumbnail", get(files::thumbnail))
        .route("/videos/{id}/events", get(events::sse))
        .route("/videos/{id}/ws", get(events::websocket))
        .route("/system/status", get(api::system_status))
        .route("/system/health", get(api::health))
        .route("/system/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::openapi_json));
    let mut app = Router::new()
        .route("/", get(page::index))
        .nest("/api/v1", api)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::auth,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::rate_limit,
        ))
        .layer(axum::middleware::from_fn(guard::size_limits))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::metrics,
        ));
    if let Some(origin) = state
        .config
        .cors_origin
        .as_deref()
        .and_then(|o| HeaderValue::from_str(o).ok())
    {
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::exact(origin))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    guard::REQUEST_ID.clone(),
                ])
                .expose_headers([guard::REQUEST_ID.clone()]),
        );
    }
    app.layer(axum::middleware::from_fn(guard::request_id))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is set; in-flight requests finish (see
/// [`listener`] for the connection limits).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: CancelFlag,
) -> std::io::Result<()> {
    listener::serve(listener, app, shutdown, listener::LIMITS).await
}
