//! The job's files over HTTP: the MP4 (`video/mp4`) and the thumbnail, reached only through
//! a job id, with `ETag`/`If-None-Match` and single byte-range requests (so a browser's
//! `<video>` can seek).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::api::{JobId, find};
use super::openapi::{Binary, ErrorBody};
use super::types::ApiError;
use crate::error::ErrorCode;
use crate::store::JobStatus;

/// `GET /videos/{id}/download`.
#[utoipa::path(
    get,
    path = "/api/v1/videos/{id}/download",
    tag = "files",
    operation_id = "download_video",
    summary = "The MP4 of a completed job",
    params(
        ("id" = String, Path, format = "uuid", description = "The job's id (a whole UUID)"),
        ("Range" = Option<String>, Header, nullable = false, description = "One byte range, `bytes=<start>-<end>`, `bytes=<start>-` or `bytes=-<suffix>`; other forms serve the whole file"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds (or `*`): 304 when one matches"),
    ),
    responses(
        (status = 200, description = "The whole file", content_type = "video/mp4", body = Binary, headers(
            ("ETag" = String, description = "The file's version"),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("Cache-Control" = String, description = "`private, max-age=0, must-revalidate`"),
        )),
        (status = 206, description = "The requested range", content_type = "video/mp4", body = Binary, headers(
            ("ETag" = String, description = "The file's version"),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("Cache-Control" = String, description = "`private, max-age=0, must-revalidate`"),
            ("Content-Range" = String, description = "`bytes <start>-<end>/<length>`"),
        )),
        (status = 304, description = "The client's copy is current", headers(
            ("ETag" = String, description = "The file's version"),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("Cache-Control" = String, description = "`private, max-age=0, must-revalidate`"),
        )),
        (status = 404, description = "No job has this id", body = ErrorBody),
        (status = 409, description = "The job has not completed", body = ErrorBody),
        (status = 410, description = "The job's file is no longer on disk", body = ErrorBody),
        (status = 416, description = "The range lies outside the file", body = ErrorBody, headers(
            ("Content-Range" = String, description = "`bytes */<length>`"),
        )),
    )
)]
pub async fn download(
    State(state): State<AppState>,
    JobId(id): JobId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = find(&state, &id).await?;
    let path = ready(&job, job.video_path.as_deref(), "video")?;
    send_file(path, "video/mp4", &headers).await
}

/// `GET /videos/{id}/thumbnail`.
#[utoipa::path(
    get,
    path = "/api/v1/videos/{id}/thumbnail",
    tag = "files",
    operation_id = "download_thumbnail",
    summary = "The thumbnail of a completed job",
    params(
        ("id" = String, Path, format = "uuid", description = "The job's id (a whole UUID)"),
        ("Range" = Option<String>, Header, nullable = false, description = "One byte range, `bytes=<start>-<end>`, `bytes=<start>-` or `bytes=-<suffix>`; other forms serve the whole file"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags the client holds (or `*`): 304 when one matches"),
    ),
    responses(
        (status = 200, description = "The whole file", content(
            (Binary = "image/jpeg"), (Binary = "image/png"), (Binary = "image/webp"),
        ), headers(
            ("ETag" = String, description = "The file's version"),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("Cache-Control" = String, description = "`private, max-age=0, must-revalidate`"),
        )),
        (status = 206, description = "The requested range", content(
            (Binary = "image/jpeg"), (Binary = "image/png"), (Binary = "image/webp"),
        ), headers(
            ("ETag" = String, description = "The file's version"),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("Cache-Control" = String, description = "`private, max-age=0, must-revalidate`"),
            ("Content-Range" = String, description = "`bytes <start>-<end>/<length>`"),
        )),
        (status = 304, description = "The client's copy is current", headers(
            ("ETag" = String, description = "The file's version"),
            ("Accept-Ranges" = String, description = "`bytes`"),
            ("Cache-Control" = String, description = "`private, max-age=0, must-revalidate`"),
        )),
        (status = 404, description = "No job has this id", body = ErrorBody),
        (status = 409, description = "The job has not completed", body = ErrorBody),
        (status = 410, description = "The job's file is no longer on disk", body = ErrorBody),
        (status = 416, description = "The range lies outside the file", body = ErrorBody, headers(
            ("Content-Range" = String, description = "`bytes */<length>`"),
        )),
    )
)]
pub async fn thumbnail(
    State(state): State<AppState>,
    JobId(id): JobId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let job = find(&state, &id).await?;
    let path = ready(&job, job.thumbnail_path.as_deref(), "thumbnail")?;
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "image/jpeg",
    };
    send_file(path, kind, &headers).await
}

/// The file of a completed job; 409 while the job has not completed.
fn ready(job: &crate::store::Job, path: Option<&str>, what: &str) -> Result<PathBuf, ApiError> {
    match (job.status, path) {
        (JobStatus::Completed, Some(p)) => Ok(PathBuf::from(p)),
        (status, _) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("the job is {status}; its {what} exists once it has completed"),
        )
        .details(json!({ "id": job.video_id, "status": status }))),
    }
}

/// A requested byte range, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Parses a `Range` header against a file of `len` bytes: `None` for no (or an unsupported,
/// multi-range) header, which serves the whole file; `Some(Err)` when unsatisfiable.
pub(crate) fn parse_range(value: &str, len: u64) -> Option<Result<ByteRange, ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // The last `b` bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(len.saturating_sub(1))
        };
        if start >= len || end < start {
            return Some(Err(()));
        }
        ByteRange { start, end }
    };
    Some(Ok(range))
}

async fn send_file(
    path: PathBuf,
    kind: &'static str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let gone = |e: std::io::Error| {
        ApiError::new(
            StatusCode::GONE,
            ErrorCode::NotFound,
            format!("the job's file is no longer on disk ({})", e.kind()),
        )
    };
    let read = tokio::task::spawn_blocking(move || -> Result<Response, ApiError> {
        let mut file = std::fs::File::open(&path).map_err(gone)?;
        let meta = file.metadata().map_err(gone)?;
        let len = meta.len();
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let etag = format!("\"{len:x}-{mtime:x}\"");
        let base = |status: StatusCode| {
            let mut r = Response::builder()
                .status(status)
                .header(header::ETAG, &etag)
                .header(header::ACCEPT_RANGES, "bytes")
                .header(header::CACHE_CONTROL, "private, max-age=0, must-revalidate");
            if status != StatusCode::NOT_MODIFIED {
                r = r.header(header::CONTENT_TYPE, kind);
            }
            r
        };
        if if_none_match
            .as_deref()
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
        {
            return Ok(base(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .unwrap_or_default());
        }
        let range = range_header.as_deref().and_then(|v| parse_range(v, len));
        let (status, start, count) = match range {
            None => (StatusCode::OK, 0, len),
            Some(Ok(r)) => (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start + 1),
            Some(Err(())) => {
                let mut e = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::ValidationError,
                    format!("the requested range is outside the file ({len} bytes)"),
                );
                e.headers.push((
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{len}")).expect("ASCII"),
                ));
                return Err(e);
            }
        };
        let mut body = Vec::with_capacity(count as usize);
        file.seek(SeekFrom::Start(start)).map_err(gone)?;
        file.take(count).read_to_end(&mut body).map_err(gone)?;
        let mut r = base(status);
        if status == StatusCode::PARTIAL_CONTENT {
            r = r.header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", start + count - 1),
            );
        }
        Ok(r.body(Body::from(body)).unwrap_or_default())
    })
    .await
    .map_err(|e| ApiError::internal(&anyhow::anyhow!("reading the file failed: {e}")))?;
    read.map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |s: &str| parse_range(s, 100);
        assert_eq!(r("bytes=0-9"), Some(Ok(ByteRange { start: 0, end: 9 })));
        assert_eq!(r("bytes=90-"), Some(Ok(ByteRange { start: 90, end: 99 })));
        assert_eq!(r("bytes=-10"), Some(Ok(ByteRange { start: 90, end: 99 })));
        assert_eq!(r("bytes=-1000"), Some(Ok(ByteRange { start: 0, end: 99 })));
        assert_eq!(
            r("bytes=50-1000"),
            Some(Ok(ByteRange { start: 50, end: 99 }))
        );
        assert_eq!(r("bytes=100-"), Some(Err(())));
        assert_eq!(r("bytes=9-3"), Some(Err(())));
        assert_eq!(r("bytes=0-1,5-6"), None);
        assert_eq!(r("items=0-1"), None);
        assert_eq!(r("bytes=x-1"), None);
    }
}
