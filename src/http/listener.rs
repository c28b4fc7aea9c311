//! The accept loop of `aivideo serve`: HTTP/1.1 connections served by hyper with a deadline
//! for each request head, a bound on its size, and a cap on open connections (the next ones
//! are answered 503 with `Retry-After` and closed), so that idle, dripping or flooding
//! clients cannot hold the server. On shutdown it stops accepting, lets in-flight requests
//! finish, and closes idle connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::cancel::CancelFlag;

/// Limits on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send a whole request head (from the connection, or from the
    /// end of its previous request).
    pub head_timeout: Duration,
    /// Read buffer, which bounds a request head (hyper answers 431 or 414 beyond it).
    pub max_head_bytes: usize,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

pub const LIMITS: ConnLimits = ConnLimits {
    max_connections: 256,
    head_timeout: Duration::from_secs(5),
    max_head_bytes: 64 * 1024,
    drain_timeout: Duration::from_secs(30),
};

/// Counts a connection until dropped.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `shutdown` is set.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancelFlag,
    limits: ConnLimits,
) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let stopping = {
        let shutdown = shutdown.clone();
        async move {
            while !shutdown.is_canceled() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    tokio::pin!(stopping);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Out of descriptors or a connection reset before accept: wait, go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        while tasks.try_join_next().is_some() {}
        if active.load(Ordering::SeqCst) >= limits.max_connections {
            tokio::spawn(turn_away(stream));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = Active(Arc::clone(&active));
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        );
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let _guard = guard;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .max_buf_size(limits.max_head_bytes)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(limits.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Answers a connection over the cap with 503 and closes it.
async fn turn_away(mut stream: TcpStream) {
    let body = crate::error::CliError::new(
        crate::error::ErrorCode::UsageError,
        "too many connections; try again",
    )
    .to_json()
    .to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
