//! Routing of Hub and CDN requests: repo look-up, access rules, the API, tree and `/resolve`
//! answers, the CDN's signed blob URLs, ranges, and the body faults that apply to a response.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use super::Host;
use super::http::{
    Body, FileBody, RangeRequest, Request, Response, encode_component, encode_path, parse_range,
    percent_decode,
};
use super::repo::{Access, Commit, MockRepo};
use super::server::{FaultKind, Shared};

pub(super) fn route(shared: &Shared, host: Host, req: &Request) -> Response {
    let target = percent_decode(&req.target);
    if let Some(status) = shared.take_fault(&target, |k| match k {
        FaultKind::Status(s) => Some(*s),
        _ => None,
    }) {
        return hub_error(status, None, &format!("mock fault: status {status}"));
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response::new(405)
            .header("Allow", "GET, HEAD")
            .json(&json!({ "error": "Method not allowed" }));
    }
    match host {
        Host::Hub => hub(shared, req),
        Host::Cdn => cdn(shared, req),
    }
}

/// An error as the Hub sends it: `X-Error-Code`, `X-Error-Message` and `{"error": message}`.
fn hub_error(status: u16, code: Option<&str>, message: &str) -> Response {
    let mut r = Response::new(status);
    if let Some(code) = code {
        r = r.header("X-Error-Code", code);
    }
    r.header("X-Error-Message", message)
        .json(&json!({ "error": message }))
}

fn not_found() -> Response {
    Response::new(404).json(&json!({ "error": "Not Found" }))
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.header("Authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The Hub answers 401 to anonymous requests for a missing repo (it does not tell missing from
/// private) and 404 to authenticated ones; huggingface_hub maps both to RepositoryNotFoundError.
fn repo_not_found(req: &Request) -> Response {
    let status = if bearer(req).is_some() { 404 } else { 401 };
    hub_error(status, Some("RepoNotFound"), "Repository not found")
}

/// Refusal for a request the repo's access rule does not allow; `files` is true for `/resolve`.
fn denied(shared: &Shared, repo: &MockRepo, req: &Request, files: bool) -> Option<Response> {
    let given = bearer(req);
    match &repo.access {
        Access::Public => None,
        Access::Private(token) => match given {
            Some(t) if t == token => None,
            _ => Some(repo_not_found(req)),
        },
        Access::Gated(_) if !files => None,
        Access::Gated(token) => match given {
            Some(t) if t == token => None,
            None => Some(hub_error(
                401,
                Some("GatedRepo"),
                &format!(
                    "Access to model {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                    repo.id
                ),
            )),
            Some(_) => Some(hub_error(
                403,
                Some("GatedRepo"),
                &format!(
                    "Access to model {} is restricted and you are not in the authorized list. Visit {}/{} to ask for access.",
                    repo.id, shared.hub_base, repo.id
                ),
            )),
        },
    }
}

enum Found<'a> {
    /// The repo and how many path segments its id took.
    Repo(&'a MockRepo, usize),
    /// A former id of the repo, and how many segments it took.
    Alias(&'a MockRepo, usize),
    Missing,
}

fn find_repo<'a>(shared: &'a Shared, segs: &[String]) -> Found<'a> {
    let mut best: Option<Found<'a>> = None;
    let mut best_len = 0;
    for repo in &shared.repos {
        let names =
            std::iter::once((&repo.id, false)).chain(repo.aliases.iter().map(|a| (a, true)));
        for (name, alias) in names {
            let parts: Vec<&str> = name.split('/').collect();
            if segs.len() >= parts.len()
                && segs.iter().zip(&parts).all(|(s, p)| s == p)
                && parts.len() > best_len
            {
                best_len = parts.len();
                best = Some(if alias {
                    Found::Alias(repo, parts.len())
                } else {
                    Found::Repo(repo, parts.len())
                });
            }
        }
    }
    best.unwrap_or(Found::Missing)
}

fn truthy(v: Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "True" | "1"))
}

fn hub(shared: &Shared, req: &Request) -> Response {
    let raw: Vec<&str> = req.path().trim_start_matches('/').split('/').collect();
    let api = raw.len() >= 2 && raw[0] == "api" && raw[1] == "models";
    let skip = if api { 2 } else { 0 };
    let segs: Vec<String> = raw[skip..].iter().map(|s| percent_decode(s)).collect();
    let (repo, n) = match find_repo(shared, &segs) {
        Found::Repo(repo, n) => (repo, n),
        Found::Alias(repo, n) => {
            let rest = raw[skip + n..].join("/");
            let query = req
                .target
                .split_once('?')
                .map_or(String::new(), |(_, q)| format!("?{q}"));
            let prefix = if api { "/api/models" } else { "" };
            let sep = if rest.is_empty() { "" } else { "/" };
            let location = format!("{prefix}/{}{sep}{rest}{query}", encode_path(&repo.id));
            return Response::new(307)
                .header("Location", location.clone())
                .bytes(
                    "text/plain; charset=utf-8",
                    format!("Temporary Redirect. Redirecting to {location}"),
                );
        }
        Found::Missing => return repo_not_found(req),
    };
    let rest = &raw[skip + n..];
    let decoded = |parts: &[&str]| -> String {
        parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| percent_decode(p))
            .collect::<Vec<_>>()
            .join("/")
    };
    if api {
        if let Some(refusal) = denied(shared, repo, req, false) {
            return refusal;
        }
        match rest {
            [] | [""] => info(repo, req, "main"),
            ["revision", rev @ ..] if !rev.is_empty() => info(repo, req, &decoded(rev)),
            ["tree", rev, dir @ ..] => tree(shared, repo, req, &percent_decode(rev), &decoded(dir)),
            _ => not_found(),
        }
    } else {
        match rest {
            ["resolve", rev, path @ ..] => {
                if let Some(refusal) = denied(shared, repo, req, true) {
                    return refusal;
                }
                resolve(shared, repo, req, &percent_decode(rev), &decoded(path))
            }
            _ => not_found(),
        }
    }
}

fn revision_not_found(rev: &str) -> Response {
    hub_error(
        404,
        Some("RevisionNotFound"),
        &format!("Invalid rev id: {rev}"),
    )
}

fn entry_not_found(commit: &Commit) -> Response {
    hub_error(404, Some("EntryNotFound"), "Entry not found")
        .header("X-Repo-Commit", commit.sha.clone())
}

fn info(repo: &MockRepo, req: &Request, rev: &str) -> Response {
    match repo.resolve(rev) {
        Some(commit) => {
            Response::new(200).json(&repo.info_json(commit, truthy(req.query_param("blobs"))))
        }
        None => revision_not_found(rev),
    }
}

fn tree(shared: &Shared, repo: &MockRepo, req: &Request, rev: &str, dir: &str) -> Response {
    let Some(commit) = repo.resolve(rev) else {
        return revision_not_found(rev);
    };
    let recursive = truthy(req.query_param("recursive"));
    let Some(entries) = repo.tree_json(commit, dir, recursive) else {
        return entry_not_found(commit);
    };
    let page = shared.tree_page_size.load(Ordering::SeqCst).max(1);
    let start = req
        .query_param("cursor")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0)
        .min(entries.len());
    let end = (start + page).min(entries.len());
    let mut resp = Response::new(200);
    if end < entries.len() {
        let expand = req
            .query_param("expand")
            .unwrap_or_else(|| "false".to_string());
        resp = resp.header(
            "Link",
            format!(
                "<{}{}?recursive={recursive}&expand={}&cursor={end}>; rel=\"next\"",
                shared.hub_base,
                req.path(),
                encode_component(&expand)
            ),
        );
    }
    resp.json(&serde_json::Value::Array(entries[start..end].to_vec()))
}

fn content_disposition(kind: &str, path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    format!(
        "{kind}; filename*=UTF-8''{}; filename=\"{}\";",
        encode_component(name),
        name.replace(['"', '\\'], "_")
    )
}

fn resolve(shared: &Shared, repo: &MockRepo, req: &Request, rev: &str, path: &str) -> Response {
    let Some(commit) = repo.resolve(rev) else {
        return revision_not_found(rev);
    };
    let Some(file) = commit.files.get(path) else {
        return entry_not_found(commit);
    };
    if let Some(lfs) = &file.lfs {
        let location = shared.cdn_location(&lfs.sha256, &file.path);
        return Response::new(302)
            .header("Location", location.clone())
            .header("X-Repo-Commit", commit.sha.clone())
            .header("X-Linked-Etag", format!("\"{}\"", lfs.sha256))
            .header("X-Linked-Size", file.size().to_string())
            .header("ETag", format!("\"{}\"", file.blob_id))
            .bytes(
                "text/plain; charset=utf-8",
                format!("Found. Redirecting to {location}"),
            );
    }
    let content_type = if path.ends_with(".json") {
        "application/json; charset=utf-8"
    } else if std::str::from_utf8(&file.bytes).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    };
    let headers = vec![
        ("Content-Type", content_type.to_string()),
        ("ETag", format!("\"{}\"", file.blob_id)),
        ("X-Repo-Commit", commit.sha.clone()),
        ("Content-Disposition", content_disposition("inline", path)),
    ];
    serve_file_bytes(shared, req, &file.bytes, headers)
}

fn cdn(shared: &Shared, req: &Request) -> Response {
    let s3_error = |status: u16, code: &str, message: &str| {
        Response::new(status).bytes(
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"),
        )
    };
    if req.header("Authorization").is_some() {
        return s3_error(
            400,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the signature query parameter or the Authorization header should be specified",
        );
    }
    let raw: Vec<&str> = req.path().trim_start_matches('/').split('/').collect();
    let ["lfs", sha256, path @ ..] = raw.as_slice() else {
        return s3_error(404, "NoSuchKey", "The specified key does not exist.");
    };
    let path = path
        .iter()
        .map(|p| percent_decode(p))
        .collect::<Vec<_>>()
        .join("/");
    let expires = req.query_param("expires").unwrap_or_default();
    let signature = req.query_param("signature").unwrap_or_default();
    if signature != shared.cdn_signature(sha256, &path, &expires) {
        return s3_error(403, "AccessDenied", "Request signature does not match");
    }
    let Some((bytes, s3_etag)) = shared.blobs.get(*sha256) else {
        return s3_error(404, "NoSuchKey", "The specified key does not exist.");
    };
    let headers = vec![
        ("Content-Type", "application/octet-stream".to_string()),
        ("ETag", format!("\"{s3_etag}\"")),
        (
            "Content-Disposition",
            content_disposition("attachment", &path),
        ),
        (
            "Cache-Control",
            "public, max-age=604800, immutable".to_string(),
        ),
    ];
    serve_file_bytes(shared, req, bytes, headers)
}

/// Answers with (a range of) a file: 200, 206 with `Content-Range`, or 416. Body faults whose
/// pattern is in the decoded target apply to GETs.
fn serve_file_bytes(
    shared: &Shared,
    req: &Request,
    bytes: &Arc<Vec<u8>>,
    headers: Vec<(&str, String)>,
) -> Response {
    let len = bytes.len();
    let mut resp = Response::new(200);
    for (name, value) in headers {
        resp = resp.header(name, value);
    }
    resp = resp.header("Accept-Ranges", "bytes");
    let (start, end) = match parse_range(req.header("Range"), len) {
        RangeRequest::Full => (0, len),
        RangeRequest::Part(a, b) => {
            resp.status = 206;
            resp = resp.header("Content-Range", format!("bytes {a}-{}/{len}", b - 1));
            (a, b)
        }
        RangeRequest::Unsatisfiable => {
            resp.status = 416;
            return resp.header("Content-Range", format!("bytes */{len}"));
        }
    };
    let (mut corrupt_at, mut drop_after) = (None, None);
    if req.method == "GET" {
        let target = percent_decode(&req.target);
        if shared
            .take_fault(&target, |k| matches!(k, FaultKind::Corrupt).then_some(()))
            .is_some()
        {
            corrupt_at = Some(len / 2);
        }
        drop_after = shared.take_fault(&target, |k| match k {
            FaultKind::DropAfter(n) => Some(*n),
            _ => None,
        });
    }
    resp.body = Body::File(FileBody {
        data: bytes.clone(),
        start,
        end,
        corrupt_at,
        drop_after,
    });
    resp
}
