//! The OpenAPI 3.1 document of the HTTP API, served at `GET /api/v1/openapi.json`: the
//! handlers' `#[utoipa::path]` attributes and the bodies' `ToSchema`, collected here and
//! completed with what the guards add to every route (`X-Request-ID`, 401, 414, 429, 431,
//! 500, 503), the token's security schemes and the page at `/`.

use std::borrow::Cow;

use axum::Json;
use axum::extract::State;
use serde_json::{Map, Value, json};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema,
    SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use super::AppState;
use super::guard::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES, is_public};
use super::types::{
    BatchRequest, BatchResponse, Health, HealthStatus, VideoList, VideoRequest, VideoResponse,
};
use crate::error::ErrorCode;
use crate::store::{Job, JobProgress, JobStatus};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "aivideo",
        description = "Text-to-video jobs over HTTP: submit requests, follow their progress, \
            download the MP4 and its thumbnail. Every response carries `X-Request-ID`; errors have \
            the shape `{\"error\", \"error_code\", \"details\", \"timestamp\"}`. With an API token \
            set, every route but the health check, this document and the page needs \
            `Authorization: Bearer <token>` (or `?access_token=<token>`)."
    ),
    paths(
        super::api::generate,
        super::api::batch,
        super::api::list,
        super::api::get_video,
        super::api::cancel,
        super::files::download,
        super::files::thumbnail,
        super::events::sse,
        super::events::websocket,
        super::api::system_status,
        super::api::health,
        super::api::metrics,
        openapi_json,
    ),
    components(schemas(
        VideoRequest,
        BatchRequest,
        VideoResponse,
        VideoList,
        BatchResponse,
        Job,
        JobProgress,
        JobStatus,
        Health,
        HealthStatus,
        ErrorBody,
        SystemStatusBody,
        JobEventBody,
    )),
    tags(
        (name = "videos", description = "Submit, list, look up and cancel jobs"),
        (name = "files", description = "A completed job's MP4 and thumbnail"),
        (name = "events", description = "A job's live progress"),
        (name = "system", description = "Status, health, metrics and this document"),
        (name = "page", description = "The browser page"),
    )
)]
struct ApiDoc;

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "system",
    operation_id = "openapi",
    summary = "This document",
    description = "Needs no token: it holds no data.",
    responses((status = 200, description = "The OpenAPI document of this server", body = Value))
)]
pub async fn openapi_json(State(state): State<AppState>) -> Json<Value> {
    Json(document(state.config.token.is_some()))
}

/// The document of a server that needs an API token (`token`) or not.
pub fn document(token: bool) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    complete(&mut doc, token);
    doc
}

/// The error shape every error response has (the body of [`super::types::ApiError`]).
pub struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some(
                "An error: the message with its causes, a machine-readable code, facts about it \
                 (the invalid field, the job's id and status, ...) and when it happened.",
            ))
            .property("error", ObjectBuilder::new().schema_type(Type::String))
            .required("error")
            .property(
                "error_code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(ErrorCode::ALL.map(ErrorCode::as_str))),
            )
            .required("error_code")
            .property("details", free_object())
            .required("details")
            .property("timestamp", date_time())
            .required("timestamp")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for ErrorBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Error")
    }
}

/// `GET /system/status`: what `aivideo status --json` shows, plus the server's workers and
/// queue (built from `commands::status::SystemStatus` as a JSON value).
pub struct SystemStatusBody;

impl PartialSchema for SystemStatusBody {
    fn schema() -> RefOr<Schema> {
        let counts = [
            "pending",
            "processing",
            "completed",
            "failed",
            "canceled",
            "total",
        ]
        .into_iter()
        .fold(ObjectBuilder::new(), |o, name| {
            o.property(name, count()).required(name)
        });
        ObjectBuilder::new()
            .property("version", ObjectBuilder::new().schema_type(Type::String))
            .required("version")
            .property(
                "database",
                ObjectBuilder::new()
                    .property("path", ObjectBuilder::new().schema_type(Type::String))
                    .required("path")
                    .property("size_bytes", count())
                    .required("size_bytes")
                    .property("schema_version", integer())
                    .required("schema_version"),
            )
            .required("database")
            .property(
                "jobs",
                counts.description(Some("Jobs by status, and in all")),
            )
            .required("jobs")
            .property(
                "in_progress",
                ArrayBuilder::new().items(Ref::from_schema_name(Job::name())),
            )
            .required("in_progress")
            .property(
                "devices",
                ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
            )
            .required("devices")
            .property(
                "model",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
                    .description(Some(
                        "The server's model as inspected (name, kind, family, source, limits, \
                         files, bytes, weights_sha256, hub); null when it cannot be read",
                    )),
            )
            .required("model")
            .property(
                "server",
                ObjectBuilder::new()
                    .property("workers", count())
                    .required("workers")
                    .property("queue_depth", count())
                    .required("queue_depth"),
            )
            .required("server")
            .into()
    }
}

impl ToSchema for SystemStatusBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SystemStatus")
    }
}

/// One Server-Sent Event of `GET /videos/{id}/events`: its name and its JSON data (OpenAPI
/// 3.1 describes an event stream by its events).
pub struct JobEventBody;

impl PartialSchema for JobEventBody {
    fn schema() -> RefOr<Schema> {
        let end = ObjectBuilder::new()
            .property("video_id", ObjectBuilder::new().schema_type(Type::String))
            .required("video_id")
            .property(
                "status",
                OneOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .item(Ref::from_schema_name(JobStatus::name())),
            )
            .required("status")
            .description(Some(
                "The job's final status; null when it could no longer be read",
            ));
        let event = |name: &str, data: Value| -> ObjectBuilder {
            ObjectBuilder::new()
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .required("event")
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/json")
                        // `contentSchema` is a JSON Schema keyword that utoipa's `Object`
                        // lacks: written as an extension, renamed by `complete`.
                        .extensions(Some(
                            ExtensionsBuilder::new()
                                .add(CONTENT_SCHEMA_EXTENSION, data)
                                .build(),
                        )),
                )
                .required("data")
        };
        let reference =
            |name: Cow<'static, str>| json!({ "$ref": format!("#/components/schemas/{name}") });
        OneOfBuilder::new()
            .item(event("status", reference(VideoResponse::name())))
            .item(event("progress", reference(JobProgress::name())))
            .item(event(
                "end",
                serde_json::to_value(Schema::from(end.build())).unwrap_or_default(),
            ))
            .into()
    }
}

impl ToSchema for JobEventBody {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JobEvent")
    }
}

/// The name utoipa gives the `contentSchema` extension (it prefixes `x-`).
const CONTENT_SCHEMA_EXTENSION: &str = "x-contentSchema";

/// Renames every `x-contentSchema` to the JSON Schema keyword `contentSchema`.
fn content_schemas(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(schema) = m.remove(CONTENT_SCHEMA_EXTENSION) {
                m.insert("contentSchema".into(), schema);
            }
            m.values_mut().for_each(content_schemas);
        }
        Value::Array(a) => a.iter_mut().for_each(content_schemas),
        _ => {}
    }
}

/// A file's bytes.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for Binary {}

fn free_object() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Object)
}

fn date_time() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

fn integer() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

fn count() -> ObjectBuilder {
    integer().minimum(Some(0))
}

/// The routes outside `/api/v1` and the aliases the router serves beside the documented
/// paths: (path, same operation as, operation id).
const ALIASES: [(&str, &str, &str); 1] =
    [("/api/v1/videos/", "/api/v1/videos", "list_videos_slash")];

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The error response the guards and handlers share.
fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    })
}

/// Adds to the derived document what no handler states: the page at `/`, the `/videos/`
/// alias, the security schemes, the guards' responses and the headers every response has.
fn complete(doc: &mut Value, token: bool) {
    let paths = doc["paths"].as_object_mut().expect("paths");
    paths.insert(
        "/".into(),
        json!({ "get": {
            "tags": ["page"],
            "operationId": "page",
            "summary": "The browser page",
            "description": "Submits requests and follows jobs from a browser; asks for the token when the server needs one.",
            "responses": { "200": {
                "description": "The page",
                "content": { "text/html": { "schema": { "type": "string" } } },
            } },
        } }),
    );
    for (alias, of, operation_id) in ALIASES {
        let mut item = paths[of].clone();
        for op in item
            .as_object_mut()
            .into_iter()
            .flat_map(|o| o.values_mut())
        {
            op["operationId"] = json!(operation_id);
        }
        paths.insert(alias.into(), item);
    }
    for (path, item) in paths.iter_mut() {
        for (method, op) in item.as_object_mut().expect("path item").iter_mut() {
            if METHODS.contains(&method.as_str()) {
                complete_operation(path, op, token);
            }
        }
    }
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The server's API token (`aivideo serve --token`)",
        },
        "access_token": {
            "type": "apiKey",
            "in": "query",
            "name": "access_token",
            "description": "The same token as a query parameter, for what a browser fetches by URL (`<video>`, `EventSource`)",
        },
    });
    doc["servers"] = json!([{ "url": "/" }]);
    content_schemas(doc);
}

fn complete_operation(path: &str, op: &mut Value, token: bool) {
    let public = is_public(path);
    let credentials = [json!({ "bearer": [] }), json!({ "access_token": [] })];
    op["security"] = match (public, token) {
        (true, _) => json!([]),
        (false, true) => json!(credentials),
        // Without a token the server accepts any request, with or without credentials.
        (false, false) => json!([{}, credentials[0], credentials[1]]),
    };
    let responses = op["responses"].as_object_mut().expect("responses");
    let mut add = |status: &str, response: Value| {
        responses.entry(status).or_insert(response);
    };
    if token && !public {
        let mut r = error_response("The API token is missing or wrong");
        r["headers"] = json!({ "WWW-Authenticate": {
            "description": "`Bearer`",
            "schema": { "type": "string" },
        } });
        add("401", r);
    }
    add(
        "414",
        error_response(&format!(
            "The request URL is longer than {MAX_URI_BYTES} bytes"
        )),
    );
    add(
        "431",
        error_response(&format!(
            "The request headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields"
        )),
    );
    // The rate limit spares only the health check.
    if path != "/api/v1/system/health" {
        let mut r = error_response("Too many requests from this client");
        r["headers"] = json!({ "Retry-After": {
            "description": "Seconds until the client may send again",
            "schema": { "type": "integer", "minimum": 1 },
        } });
        add("429", r);
    }
    // Everything but the page and this document reads the job history.
    if !matches!(path, "/" | "/api/v1/openapi.json") {
        add(
            "500",
            error_response("An unexpected failure (see the error and its causes)"),
        );
        add(
            "503",
            error_response("The job history is busy, missing or unreadable"),
        );
    }
    for response in responses.values_mut() {
        let headers = response
            .as_object_mut()
            .expect("response")
            .entry("headers")
            .or_insert_with(|| Value::Object(Map::new()));
        // Every documented header is always sent.
        for header in headers.as_object_mut().expect("headers").values_mut() {
            header["required"] = json!(true);
        }
        headers["X-Request-ID"] = json!({
            "description": "The client's own `X-Request-ID` when it is 1 to 128 visible ASCII characters, else a new UUID",
            "required": true,
            "schema": { "type": "string", "pattern": "^[!-~]{1,128}$" },
        });
    }
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
