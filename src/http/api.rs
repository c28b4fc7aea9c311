//! The JSON endpoints: submit (one or a batch), look up, list and cancel jobs, and the
//! system status, health and metrics.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::openapi::{ErrorBody, SystemStatusBody};
use super::types::{
    ApiError, BatchRequest, BatchResponse, Health, HealthStatus, VideoList, VideoRequest,
    VideoResponse,
};
use super::{AppState, MAX_BATCH, MAX_BODY_BYTES};
use crate::error::ErrorCode;
use crate::metrics::{Format, Snapshot, error_chain};
use crate::models::{Manifest, ModelSource, inspect};
use crate::request::{ValidatedRequest, ValidationError, validate};
use crate::store::{CancelOutcome, JobSpec, JobStatus, NewJob, new_job_id};

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] (413 beyond) into `T` (422 when it is
/// not JSON or does not fit the schema).
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::ValidationError,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationError,
            format!("the request body does not match the schema: {e}"),
        )
        .details(json!({ "line": e.line(), "column": e.column() }))
    })
}

/// A rejected request: 400 for the rules across fields (quality and steps, aspect ratio),
/// 422 for a field on its own; `index` names the request of a batch.
fn rejected(e: &ValidationError, index: Option<usize>) -> ApiError {
    let status = if e.is_cross_field() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut details = e.details();
    let field = api_field(e.field);
    details["field"] = json!(field);
    details["fix"] = json!(api_words(&e.fix));
    let message = if e.field == "prompt" && e.value.is_none() {
        "invalid prompt: a prompt is required".to_string()
    } else {
        api_words(&e.to_string())
    };
    let message = match index {
        Some(i) => {
            details["index"] = json!(i);
            format!("request {i} of the batch: {message}")
        }
        None => message,
    };
    ApiError::new(status, ErrorCode::ValidationError, message).details(details)
}

/// The request field a validation error names (the CLI calls `num_steps` `--steps`).
fn api_field(field: &str) -> &str {
    match field {
        "steps" => "num_steps",
        "negative-prompt" => "negative_prompt",
        other => other,
    }
}

/// A validation message in the API's terms: field names instead of flags.
fn api_words(text: &str) -> String {
    text.replace("--steps", "num_steps")
        .replace("--negative-prompt", "negative_prompt")
        .replace("--", "")
}

/// The model a request names: the server's own, or a Hub repository or alias already in
/// the cache. Folders cannot be named over HTTP (a request reaches files only through jobs).
fn model_for(
    state: &AppState,
    requested: Option<&str>,
) -> Result<(Option<String>, Manifest), ApiError> {
    let config = &state.config;
    let Some(name) = requested
        .map(str::trim)
        .filter(|m| Some(*m) != config.model.as_deref())
    else {
        return Ok((config.model.clone(), config.manifest.clone()));
    };
    let bad = |reason: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationError,
            reason,
        )
        .details(json!({ "field": "model" }))
    };
    let looks_like_path = name.starts_with(['/', '.', '~']) || name.contains('\\');
    let source = ModelSource::from_arg(Some(name)).map_err(|e| bad(e.to_string()))?;
    if looks_like_path || matches!(source, ModelSource::Dir(_)) {
        return Err(bad(
            "model: folders cannot be named in a request; name a Hub repository or alias in the server's cache, or start the server with --model".into(),
        ));
    }
    let manifest = inspect(&source).map_err(|e| bad(format!("model: {e}")))?;
    Ok((Some(name.to_string()), manifest))
}

/// Validates one request into the job to enqueue.
fn prepare(state: &AppState, req: &VideoRequest, index: Option<usize>) -> Result<NewJob, ApiError> {
    let (model, manifest) = model_for(state, req.model.as_deref())?;
    let valid: ValidatedRequest =
        validate(&req.raw(), &manifest.limits).map_err(|e| rejected(&e, index))?;
    let config = &state.config;
    crate::models::memory::check_requests(
        &manifest,
        [&valid.params],
        config.device,
        config.precision.dtype(),
    )
    .map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationError,
            e.to_string(),
        )
        .details(e.details())
    })?;
    let id = new_job_id();
    let video_path = config.output_dir.join(format!("{id}.mp4"));
    let spec = JobSpec {
        quality: valid.quality,
        params: valid.params.clone(),
        seed_was_random: valid.seed_was_random,
        model,
        device: config.device,
        precision: config.precision,
        thumbnail_path: video_path.with_extension("jpg"),
        video_path,
        overwrite: false,
        frames_dir: None,
    };
    Ok(NewJob {
        video_id: id,
        prompt: valid.params.prompt.clone(),
        metadata: valid.to_metadata(),
        spec,
        max_retries: config.retries,
    })
}

async fn enqueue(state: &AppState, jobs: Vec<NewJob>) -> Result<Vec<VideoResponse>, ApiError> {
    let queued = state
        .pool
        .run(move |store| Ok(store.enqueue(&jobs)?))
        .await?;
    Ok(queued.into_iter().map(VideoResponse::from).collect())
}

/// `POST /videos/generate`: validates and enqueues; answers once the job is recorded.
#[utoipa::path(
    post,
    path = "/api/v1/videos/generate",
    tag = "videos",
    operation_id = "generate_video",
    summary = "Submit one video request",
    request_body(content = VideoRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The job, recorded as `pending`", body = VideoResponse),
        (status = 400, description = "A rule across fields (quality and steps, aspect ratio) or the memory the request needs", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB", body = ErrorBody),
        (status = 422, description = "The body is not JSON, does not fit the schema, or a field is outside the model's limits", body = ErrorBody),
    )
)]
pub async fn generate(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<VideoResponse>, ApiError> {
    let req: VideoRequest = json_body(body).await?;
    let job = prepare(&state, &req, None)?;
    let mut done = enqueue(&state, vec![job]).await?;
    Ok(Json(done.remove(0)))
}

/// `POST /videos/batch`: every request is validated first; one bad request rejects the
/// batch (naming its index) and nothing is enqueued.
#[utoipa::path(
    post,
    path = "/api/v1/videos/batch",
    tag = "videos",
    operation_id = "generate_batch",
    summary = "Submit several video requests at once",
    description = "Every request is validated first; one rejected request rejects the batch (`details.index` names it) and nothing is enqueued.",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The jobs, in request order, recorded as `pending`", body = BatchResponse),
        (status = 400, description = "A request breaks a rule across fields or needs too much memory", body = ErrorBody),
        (status = 413, description = "The body is larger than 256 KiB", body = ErrorBody),
        (status = 422, description = "The body is not JSON, does not fit the schema, or a field is outside the model's limits", body = ErrorBody),
    )
)]
pub async fn batch(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<BatchResponse>, ApiError> {
    let batch: BatchRequest = json_body(body).await?;
    if batch.requests.is_empty() || batch.requests.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationError,
            format!(
                "a batch holds 1 to {MAX_BATCH} requests, not {}",
                batch.requests.len()
            ),
        )
        .details(json!({ "field": "requests" })));
    }
    let jobs = batch
        .requests
        .iter()
        .enumerate()
        .map(|(i, r)| prepare(&state, r, Some(i)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(BatchResponse {
        videos: enqueue(&state, jobs).await?,
    }))
}

/// The `{id}` of a job's routes. An id that is not UTF-8 once percent-decoded names no job:
/// 404 in the error shape, like any other id that is not a UUID (axum's own rejection is a
/// plain-text 400).
pub struct JobId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(JobId(id)),
            Err(_) => {
                // The id as sent (still percent-encoded, so printable).
                let raw = parts
                    .uri
                    .path()
                    .split('/')
                    .skip_while(|s| *s != "videos")
                    .nth(1)
                    .unwrap_or_default();
                Err(ApiError::not_found(raw))
            }
        }
    }
}

/// Only whole UUIDs name jobs over HTTP (no prefix guessing).
pub(super) fn check_id(id: &str) -> Result<String, ApiError> {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if id.len() == 36 => Ok(u.to_string()),
        _ => Err(ApiError::not_found(id)),
    }
}

/// The job `id`, or 404.
pub(super) async fn find(state: &AppState, id: &str) -> Result<crate::store::Job, ApiError> {
    let id = check_id(id)?;
    let wanted = id.clone();
    state
        .pool
        .run_found(move |store| store.get(&wanted))
        .await?
        .ok_or_else(|| ApiError::not_found(&id))
}

/// `GET /videos/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/videos/{id}",
    tag = "videos",
    operation_id = "get_video",
    summary = "One job",
    params(("id" = String, Path, format = "uuid", description = "The job's id (a whole UUID)")),
    responses(
        (status = 200, description = "The job", body = VideoResponse),
        (status = 404, description = "No job has this id", body = ErrorBody),
    )
)]
pub async fn get_video(
    State(state): State<AppState>,
    JobId(id): JobId,
) -> Result<Json<VideoResponse>, ApiError> {
    Ok(Json(find(&state, &id).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
    status: Option<String>,
    /// The page's own token parameter (checked by the guard).
    #[allow(dead_code)]
    access_token: Option<String>,
}

/// Most jobs one page lists.
pub const MAX_PAGE: u32 = 100;

/// `GET /videos/?limit=&offset=&status=`: newest first, with the total count (also served at
/// `/videos/`).
#[utoipa::path(
    get,
    path = "/api/v1/videos",
    tag = "videos",
    operation_id = "list_videos",
    summary = "List jobs, newest first",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Jobs on the page (default 20)"),
        ("offset" = Option<u64>, Query, maximum = 9223372036854775807i64, description = "Jobs to skip (default 0)"),
        ("status" = Option<JobStatus>, Query, description = "Only jobs in this status"),
    ),
    responses(
        (status = 200, description = "One page of jobs and how many match in all", body = VideoList),
        (status = 422, description = "A query parameter is invalid or unknown", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<VideoList>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationError,
            e.body_text(),
        )
    })?;
    let field = |name: &'static str, rule: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationError,
            format!("invalid {name}: {rule}"),
        )
        .details(json!({ "field": name }))
    };
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| field("limit", &format!("a whole number from 1 to {MAX_PAGE}")))?,
    };
    let offset = match q.offset.as_deref() {
        None => 0,
        Some(o) => o
            .parse::<u64>()
            .ok()
            .filter(|o| *o <= i64::MAX as u64)
            .ok_or_else(|| field("offset", "a whole number, 0 or more"))?,
    };
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<JobStatus>().map_err(|e| field("status", &e))?),
    };
    let (jobs, total) = state
        .pool
        .run(move |store| Ok((store.list(limit, offset, status)?, store.count(status)?)))
        .await?;
    Ok(Json(VideoList {
        videos: jobs.into_iter().map(VideoResponse::from).collect(),
        total,
        limit,
        offset,
    }))
}

/// `DELETE /videos/{id}`: 200 with the canceled job when it had not started, 202 when a
/// running job was asked to stop, 409 when it had ended.
#[utoipa::path(
    delete,
    path = "/api/v1/videos/{id}",
    tag = "videos",
    operation_id = "cancel_video",
    summary = "Cancel a job",
    description = "Cancels the job; its record stays (with status `canceled` once it has stopped).",
    params(("id" = String, Path, format = "uuid", description = "The job's id (a whole UUID)")),
    responses(
        (status = 200, description = "The job had not started: it is `canceled` now", body = VideoResponse),
        (status = 202, description = "The job is running: its worker stops it at the next step", body = VideoResponse),
        (status = 404, description = "No job has this id", body = ErrorBody),
        (status = 409, description = "The job has already ended; nothing changed", body = ErrorBody),
    )
)]
pub async fn cancel(State(state): State<AppState>, JobId(id): JobId) -> Result<Response, ApiError> {
    let id = check_id(&id)?;
    let wanted = id.clone();
    let outcome = state
        .pool
        .run_found(move |store| {
            store.request_cancel(&wanted, "canceled: DELETE /api/v1/videos/{id}")
        })
        .await?
        .ok_or_else(|| ApiError::not_found(&id))?;
    Ok(match outcome {
        CancelOutcome::Canceled(job) => {
            (StatusCode::OK, Json(VideoResponse::from(job))).into_response()
        }
        CancelOutcome::Requested(job) => {
            (StatusCode::ACCEPTED, Json(VideoResponse::from(job))).into_response()
        }
        CancelOutcome::AlreadyEnded(job) => {
            let e = crate::commands::already_ended(&job);
            ApiError {
                status: StatusCode::CONFLICT,
                error: e,
                headers: Vec::new(),
            }
            .into_response()
        }
    })
}

/// `GET /system/status`: what `aivideo status --json` shows, plus the server's workers and
/// queue.
#[utoipa::path(
    get,
    path = "/api/v1/system/status",
    tag = "system",
    operation_id = "system_status",
    summary = "The job history, the model, the devices and the queue",
    responses((status = 200, description = "What `aivideo status --json` shows, plus `server`", body = SystemStatusBody))
)]
pub async fn system_status(
    State(state): State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let manifest = state.config.manifest.clone();
    let workers = state.config.workers;
    let value = state
        .pool
        .run(move |store| {
            let status = crate::commands::system_status(store, Some(&manifest))?;
            let mut v = serde_json::to_value(status)?;
            v["server"] = json!({ "workers": workers, "queue_depth": store.queue_depth()? });
            Ok(v)
        })
        .await?;
    Ok(Json(value))
}

/// `GET /system/health`: 200 while the job history answers, else 503.
#[utoipa::path(
    get,
    path = "/api/v1/system/health",
    tag = "system",
    operation_id = "health",
    summary = "Whether the job history answers",
    description = "Needs no token and is not rate limited.",
    responses(
        (status = 200, description = "The job history answers", body = Health),
        (status = 503, description = "The job history does not answer", body = Health),
    )
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let database = state.config.db.clone();
    let checked = state
        .pool
        .run(|store| {
            store.count(None)?;
            Ok(())
        })
        .await;
    match checked {
        Ok(()) => Json(Health {
            status: HealthStatus::Ok,
            reason: None,
            database,
        })
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Unavailable,
                reason: Some(error_chain(&*e)),
                database,
            }),
        )
            .into_response(),
    }
}

/// `GET /system/metrics`: the `serve-metrics` page plus this server's HTTP metrics.
#[utoipa::path(
    get,
    path = "/api/v1/system/metrics",
    tag = "system",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "The Prometheus text format, or OpenMetrics when `Accept` prefers `application/openmetrics-text`.",
    responses((status = 200, description = "The metrics page", content(
        (String = "text/plain"),
        (String = "application/openmetrics-text"),
    )))
)]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let db = state.config.db.clone();
    let gpus = state.gpus.clone();
    let http = state.metrics.clone();
    let page = state
        .pool
        .run(move |store| {
            let depth = store.queue_depth().ok();
            let snap = Snapshot::collect(&db, &gpus);
            Ok(snap.render_with(format, |r| http.register(r, depth))?)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], page).into_response())
}

/// Unknown paths: 404 in the error shape.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint; the API is under /api/v1 (see /api/v1/openapi.json)",
    )
}

/// A known path with the wrong method: 405 in the error shape.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::UsageError,
        "this endpoint does not take that method",
    )
}
