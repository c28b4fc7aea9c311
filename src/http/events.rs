//! Live progress of one job: `GET /videos/{id}/events` as Server-Sent Events and
//! `GET /videos/{id}/ws` as a WebSocket carrying the same events. Both follow the job
//! history (so a job run by any process is followed) and end when the job ends.
//!
//! Events: `status` (the whole `VideoResponse`, first at once, then on every status
//! change), `progress` (`phase`, `step`, `total`, `elapsed_s`, `eta_s`, `updated_at`, on
//! every recorded change) and `end` (the final status), after which the stream closes.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::AppState;
use super::api::{JobId, find};
use super::openapi::{ErrorBody, JobEventBody};
use super::types::{ApiError, VideoResponse};
use crate::error::ErrorCode;
use crate::store::{JobProgress, JobStatus};

/// One event for a follower.
#[derive(Debug, Clone)]
pub(crate) struct JobEvent {
    pub name: &'static str,
    pub data: Value,
}

/// Sends one event; false once the follower has gone.
async fn emit(tx: &mpsc::Sender<JobEvent>, name: &'static str, data: Value) -> bool {
    tx.send(JobEvent { name, data }).await.is_ok()
}

/// Follows job `id` until it ends, the client leaves or the server stops.
async fn follow(state: AppState, id: String, tx: mpsc::Sender<JobEvent>) {
    let mut last_status: Option<JobStatus> = None;
    let mut last_progress: Option<JobProgress> = None;
    loop {
        let wanted = id.clone();
        let job = state.pool.run_found(move |store| store.get(&wanted)).await;
        let job = match job {
            Ok(Some(job)) => job,
            // Gone (or unreadable): say so and stop.
            Ok(None) | Err(_) => {
                emit(&tx, "end", json!({ "video_id": id, "status": null })).await;
                return;
            }
        };
        let status = job.status;
        if job.progress != last_progress {
            last_progress = job.progress.clone();
            if let Some(p) = &job.progress
                && !emit(&tx, "progress", json!(p)).await
            {
                return;
            }
        }
        if last_status != Some(status) {
            last_status = Some(status);
            if !emit(&tx, "status", json!(VideoResponse::from(job))).await {
                return;
            }
        }
        if status.is_terminal() {
            emit(&tx, "end", json!({ "video_id": id, "status": status })).await;
            return;
        }
        if state.shutdown.is_canceled() {
            return;
        }
        tokio::time::sleep(state.poll).await;
    }
}

/// Starts following a job that exists (404 otherwise).
async fn start(state: &AppState, id: &str) -> Result<mpsc::Receiver<JobEvent>, ApiError> {
    let job = find(state, id).await?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(follow(state.clone(), job.video_id, tx));
    Ok(rx)
}

fn receiver_stream(rx: mpsc::Receiver<JobEvent>) -> impl Stream<Item = JobEvent> {
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}

/// `GET /videos/{id}/events`.
#[utoipa::path(
    get,
    path = "/api/v1/videos/{id}/events",
    tag = "events",
    operation_id = "video_events",
    summary = "The job's progress as Server-Sent Events",
    description = "Events: `status` (the whole `VideoResponse`, at once and on every status change), `progress` (a `JobProgress`, on every recorded change) and `end` (the final status), after which the stream closes. A comment is sent every 15 s meanwhile.",
    params(("id" = String, Path, format = "uuid", description = "The job's id (a whole UUID)")),
    responses(
        (status = 200, description = "The event stream, until the job ends", content_type = "text/event-stream", body = JobEventBody),
        (status = 404, description = "No job has this id", body = ErrorBody),
    )
)]
pub async fn sse(
    State(state): State<AppState>,
    JobId(id): JobId,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    use futures_util::StreamExt as _;
    let rx = start(&state, &id).await?;
    let events =
        receiver_stream(rx).map(|e| Ok(Event::default().event(e.name).data(e.data.to_string())));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /videos/{id}/ws`: the same events as JSON text messages `{"event", "data"}`.
#[utoipa::path(
    get,
    path = "/api/v1/videos/{id}/ws",
    tag = "events",
    operation_id = "video_events_websocket",
    summary = "The job's progress over a WebSocket",
    description = "A WebSocket handshake (`Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13`, `Sec-WebSocket-Key`). The server then sends the events of `GET /videos/{id}/events` as JSON text messages `{\"event\", \"data\"}` and closes once the job has ended.",
    params(("id" = String, Path, format = "uuid", description = "The job's id (a whole UUID)")),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol"),
        (status = 400, description = "The request is not a WebSocket handshake", body = ErrorBody),
        (status = 404, description = "No job has this id", body = ErrorBody),
        (status = 426, description = "The connection cannot be upgraded", body = ErrorBody),
    )
)]
pub async fn websocket(
    State(state): State<AppState>,
    JobId(id): JobId,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Not a handshake: axum's status (400, or 426) with the error shape, not its plain text.
    let upgrade =
        upgrade.map_err(|e| ApiError::new(e.status(), ErrorCode::UsageError, e.body_text()))?;
    let rx = start(&state, &id).await?;
    Ok(upgrade
        .on_upgrade(move |socket| send_events(socket, rx))
        .into_response())
}

async fn send_events(mut socket: WebSocket, mut rx: mpsc::Receiver<JobEvent>) {
    while let Some(e) = rx.recv().await {
        let text = json!({ "event": e.name, "data": e.data }).to_string();
        if socket.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
