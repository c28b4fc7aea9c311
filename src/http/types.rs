//! The API's JSON bodies with the original service's field names: `VideoRequest` in,
//! `VideoResponse` and the job list out, and errors in the shared error shape.

use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::Ref;
use utoipa::openapi::schema::{
    ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type,
};

use crate::error::{CliError, ErrorCode};
use crate::request::{MAX_PROMPT_CHARS, MAX_SEED, MAX_STEPS, MIN_STEPS, RawRequest};
use crate::store::{Job, JobProgress, JobStatus};

/// The original `VideoRequest`, plus this product's `negative_prompt`, `frames`, `fps`,
/// `guidance` and `model`. Unknown fields are refused. Every field but `prompt` may be
/// left out or `null` for the model's default. The ranges of `width`, `height`, `frames`,
/// `fps` and `guidance` are the model's (`model.limits` in `GET /system/status`); outside
/// them the answer is 422. Rules across fields answer 400: the quality preset's step range,
/// the aspect ratio (width/height from 0.5 to 2), and the memory a request needs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    #[schema(schema_with = prompt_schema, required = true)]
    pub prompt: Option<String>,
    #[schema(schema_with = steps_schema)]
    pub num_steps: Option<i64>,
    #[schema(schema_with = quality_schema)]
    pub quality: Option<String>,
    /// Pixels: within the model's range and a multiple of its size step.
    pub width: Option<i64>,
    /// Pixels: within the model's range and a multiple of its size step.
    pub height: Option<i64>,
    #[schema(schema_with = seed_schema)]
    pub seed: Option<i64>,
    #[schema(schema_with = negative_prompt_schema)]
    pub negative_prompt: Option<String>,
    /// Frames: within the model's range and step.
    pub frames: Option<i64>,
    /// Frames a second of the MP4: within the model's range.
    pub fps: Option<i64>,
    /// Classifier-free guidance scale: within the model's range.
    pub guidance: Option<f64>,
    /// A Hub repository or alias in the server's cache, or `bundled`; absent: the server's
    /// model.
    pub model: Option<String>,
}

/// Control characters a prompt may not hold: Unicode's `Cc` but tab and newline.
const CONTROL: &str = r"\x00-\x08\x0B-\x1F\x7F-\x9F";

/// A pattern for a prompt's rule: after surrounding whitespace is removed, 1 to
/// [`MAX_PROMPT_CHARS`] characters (`optional`: or none), none of them [`CONTROL`].
fn prompt_pattern(optional: bool) -> String {
    let inner = MAX_PROMPT_CHARS - 2;
    let text = format!(r"[^\s{CONTROL}](?:[^{CONTROL}]{{0,{inner}}}[^\s{CONTROL}])?");
    if optional {
        format!(r"^\s*(?:{text}\s*)?$")
    } else {
        format!(r"^\s*{text}\s*$")
    }
}

fn nullable(kind: Type) -> SchemaType {
    SchemaType::from_iter([kind, Type::Null])
}

fn prompt_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(prompt_pattern(false)))
        .description(Some(format!(
            "What the video shows: 1 to {MAX_PROMPT_CHARS} characters once surrounding \
             whitespace is removed, with no control characters but tabs and newlines."
        )))
}

fn negative_prompt_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .pattern(Some(prompt_pattern(true)))
        .description(Some(format!(
            "What the video should not show, by the prompt's rules; empty or blank: none \
             (at most {MAX_PROMPT_CHARS} characters)."
        )))
}

fn steps_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(MIN_STEPS))
        .maximum(Some(MAX_STEPS))
        .description(Some(
            "Denoising steps; the quality preset narrows the range (400 outside it); absent: \
             the preset's default.",
        ))
}

fn seed_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(MAX_SEED))
        .description(Some(
            "Random seed; absent: a random one, recorded in the job's `metadata`.",
        ))
}

fn quality_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::String))
        .pattern(Some(
            r"^\s*(?:[lL][oO][wW]|[mM][eE][dD][iI][uU][mM]|[hH][iI][gG][hH])\s*$",
        ))
        .description(Some(
            "`low`, `medium` or `high`, in any case; absent: `medium`.",
        ))
}

impl VideoRequest {
    /// The request in the one validation module's terms.
    pub fn raw(&self) -> RawRequest {
        RawRequest {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            quality: self.quality.clone(),
            steps: self.num_steps,
            width: self.width,
            height: self.height,
            seed: self.seed,
            frames: self.frames,
            fps: self.fps,
            guidance: self.guidance,
        }
    }
}

/// `POST /videos/batch`: several requests, validated together.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(schema_with = batch_schema)]
    pub requests: Vec<VideoRequest>,
}

fn batch_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("VideoRequest"))
        .min_items(Some(1))
        .max_items(Some(super::MAX_BATCH))
        .description(Some(format!(
            "1 to {} requests; one rejected request rejects the batch.",
            super::MAX_BATCH
        )))
}

/// The original `VideoResponse`, plus the job's prompt, times, error code and progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VideoResponse {
    /// The job's id (a UUID).
    #[schema(format = "uuid")]
    pub video_id: String,
    pub status: JobStatus,
    /// `/api/v1/videos/{id}/download` once the job has completed.
    #[schema(required = true)]
    pub video_url: Option<String>,
    /// `/api/v1/videos/{id}/thumbnail` once the job has completed.
    #[schema(required = true)]
    pub thumbnail_url: Option<String>,
    /// Seconds, fractional, once the job has ended.
    #[schema(required = true)]
    pub processing_time: Option<f64>,
    #[schema(required = true)]
    pub error_message: Option<String>,
    /// The validated request and, once run, the model, device and timings.
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub prompt: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime, required = true)]
    pub started_at: Option<String>,
    #[schema(format = DateTime, required = true)]
    pub completed_at: Option<String>,
    #[schema(required = true)]
    pub error_code: Option<String>,
    /// The last progress the job reported.
    #[schema(required = true)]
    pub progress: Option<JobProgress>,
    /// How many times a worker started the job.
    pub attempts: u32,
}

impl From<Job> for VideoResponse {
    fn from(job: Job) -> Self {
        let done = job.status == JobStatus::Completed;
        let url = |what: &str| done.then(|| format!("/api/v1/videos/{}/{what}", job.video_id));
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| crate::store::format_ts(&t));
        VideoResponse {
            video_url: url("download"),
            thumbnail_url: job.thumbnail_path.as_ref().and_then(|_| url("thumbnail")),
            processing_time: job.processing_time,
            error_message: job.error_message,
            metadata: job.metadata,
            prompt: job.prompt,
            created_at: crate::store::format_ts(&job.created_at),
            started_at: ts(job.started_at),
            completed_at: ts(job.completed_at),
            error_code: job.error_code,
            progress: job.progress,
            attempts: job.attempts,
            status: job.status,
            video_id: job.video_id,
        }
    }
}

/// `GET /videos/`: one page of jobs, newest first, and how many match in all.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VideoList {
    pub videos: Vec<VideoResponse>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `POST /videos/batch`: the accepted jobs, in request order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    pub videos: Vec<VideoResponse>,
}

/// `GET /system/health`: whether the job history answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    pub status: HealthStatus,
    /// Why the history does not answer (only when `unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// The job history's path.
    #[schema(value_type = String)]
    pub database: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Unavailable,
}

/// An error answered in the original's shape `{"error", "error_code", "details",
/// "timestamp"}`, with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: CliError,
    /// Extra headers (`Retry-After`, `WWW-Authenticate`, `Allow`).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: CliError::new(code, message),
            headers: Vec::new(),
        }
    }

    pub fn details(mut self, details: Value) -> ApiError {
        self.error = self.error.with_details(details);
        self
    }

    pub fn header(mut self, name: header::HeaderName, value: &str) -> ApiError {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn not_found(id: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no job has this id",
        )
        .details(json!({ "id": crate::output::truncate(id, 64) }))
    }

    /// An unexpected failure (a database error): 503 when the history is busy or missing,
    /// else 500. The message is the error chain (paths of the server's own files only).
    pub fn internal(err: &anyhow::Error) -> ApiError {
        let error = CliError::from_anyhow(err);
        let status = if error.code == ErrorCode::DatabaseError {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError {
            status,
            error,
            headers: Vec::new(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::internal(&err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.error.to_json())).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
