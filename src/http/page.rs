//! The page at `/`: one small HTML file embedded in the binary (a prompt form, the queue
//! and history with live progress, finished videos playing in place).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("page.html");

/// What the page may load: only this server; its one script and style are inline, and its
/// icon is a `data:` image (so that browsers do not ask for a missing `/favicon.ico`).
const CSP: &str = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   img-src 'self' data:; media-src 'self'; connect-src 'self'; \
                   frame-ancestors 'none'";

/// `GET /`.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}
