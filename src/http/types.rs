//! The API's JSON bodies with the original service's field names: `VideoRequest` in,
//! `VideoResponse` and the job list out, and errors in the shared error shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{CliError, ErrorCode};
use crate::request::RawRequest;
use crate::store::{Job, JobProgress, JobStatus};

/// The original `VideoRequest`, plus this product's `negative_prompt`, `frames`, `fps`,
/// `guidance` and `model`. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRequest {
    pub prompt: Option<String>,
    pub num_steps: Option<i64>,
    pub quality: Option<String>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub seed: Option<i64>,
    pub negative_prompt: Option<String>,
    pub frames: Option<i64>,
    pub fps: Option<i64>,
    pub guidance: Option<f64>,
    /// A Hub repository or alias in the server's cache, or `bundled`; absent: the server's
    /// model.
    pub model: Option<String>,
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub requests: Vec<VideoRequest>,
}

/// The original `VideoResponse`, plus the job's prompt, times, error code and progress.
#[derive(Debug, Clone, Serialize)]
pub struct VideoResponse {
    pub video_id: String,
    pub status: JobStatus,
    /// `/api/v1/videos/{id}/download` once the job has completed.
    pub video_url: Option<String>,
    /// `/api/v1/videos/{id}/thumbnail` once the job has completed.
    pub thumbnail_url: Option<String>,
    pub processing_time: Option<f64>,
    pub error_message: Option<String>,
    pub metadata: Value,
    pub prompt: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub error_code: Option<String>,
    pub progress: Option<JobProgress>,
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
#[derive(Debug, Clone, Serialize)]
pub struct VideoList {
    pub videos: Vec<VideoResponse>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `POST /videos/batch`: the accepted jobs, in request order.
#[derive(Debug, Clone, Serialize)]
pub struct BatchResponse {
    pub videos: Vec<VideoResponse>,
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
