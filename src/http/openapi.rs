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
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::error::CliError;

    /// (METHOD, path) of every route in the router's source (`mod.rs`): routes of the `api`
    /// router are nested under `/api/v1`.
    fn routes_in_router_source() -> BTreeSet<(String, String)> {
        let source = include_str!("mod.rs");
        let body = source
            .split_once("pub fn router(")
            .expect("the router function")
            .1;
        let body = body.split_once("\n}\n").expect("the router's end").0;
        assert!(
            body.contains(".nest(\"/api/v1\", api)"),
            "the API router is nested under /api/v1"
        );
        let (api, outer) = body.split_once("let mut app").expect("the outer router");
        let mut routes = BTreeSet::new();
        for (prefix, part) in [("/api/v1", api), ("", outer)] {
            for route in part.split(".route(").skip(1) {
                // The route's own arguments end before the next builder call.
                let route = route.split([';']).next().unwrap_or(route);
                let route = route.split(".nest(").next().unwrap_or(route);
                let path = route
                    .split('"')
                    .nth(1)
                    .unwrap_or_else(|| panic!("a route without a path: {route}"));
                let methods: Vec<&str> = METHODS
                    .into_iter()
                    .filter(|m| {
                        route.match_indices(&format!("{m}(")).any(|(i, _)| {
                            i == 0 || !route.as_bytes()[i - 1].is_ascii_alphanumeric()
                        })
                    })
                    .collect();
                assert!(!methods.is_empty(), "no method found for {path}: {route}");
                for m in methods {
                    routes.insert((m.to_uppercase(), format!("{prefix}{path}")));
                }
            }
        }
        routes
    }

    fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if METHODS.contains(&method.as_str()) {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_the_router_serves_is_documented_and_nothing_else() {
        let served = routes_in_router_source();
        assert!(served.len() >= 15, "{served:?}");
        for token in [false, true] {
            assert_eq!(
                documented_routes(&document(token)),
                served,
                "documented (left) and served (right) routes differ: a new route needs a \
                 #[utoipa::path] and a place in ApiDoc's paths"
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_resolvable_references() {
        let doc = document(false);
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1."),
            "{}",
            doc["openapi"]
        );
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_string()), "operationId {id} twice");
                for (status, response) in op["responses"].as_object().unwrap() {
                    assert_eq!(
                        response["headers"]["X-Request-ID"]["required"], true,
                        "{id} {status}"
                    );
                }
                for code in ["414", "431"] {
                    assert!(op["responses"].get(code).is_some(), "{id} lacks {code}");
                }
            }
        }
    }

    #[test]
    fn the_token_decides_security_and_401() {
        let get = |doc: &Value, path: &str| doc["paths"][path]["get"].clone();
        let open = document(false);
        let closed = document(true);
        for path in ["/", "/api/v1/system/health", "/api/v1/openapi.json"] {
            for doc in [&open, &closed] {
                assert_eq!(get(doc, path)["security"], json!([]), "{path}");
                assert!(get(doc, path)["responses"].get("401").is_none(), "{path}");
            }
        }
        let list = get(&closed, "/api/v1/videos");
        assert_eq!(
            list["security"],
            json!([{ "bearer": [] }, { "access_token": [] }])
        );
        assert_eq!(
            list["responses"]["401"]["headers"]["WWW-Authenticate"]["required"],
            true
        );
        let list = get(&open, "/api/v1/videos");
        assert_eq!(list["security"][0], json!({}));
        assert!(list["responses"].get("401").is_none());
        assert!(
            get(&open, "/api/v1/system/health")["responses"]
                .get("429")
                .is_none()
        );
        assert_eq!(
            list["responses"]["429"]["headers"]["Retry-After"]["required"],
            true
        );
    }

    #[test]
    fn the_error_schema_is_the_error_shape() {
        let doc = document(false);
        let schema = &doc["components"]["schemas"]["Error"];
        let shape = CliError::new(ErrorCode::NotFound, "x").to_json();
        let keys: BTreeSet<&str> = shape
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(keys, required);
        let codes: Vec<&str> = schema["properties"]["error_code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(codes, ErrorCode::ALL.map(ErrorCode::as_str));
    }

    #[test]
    fn request_bounds_come_from_the_validation_rules() {
        use crate::request::{MAX_SEED, MAX_STEPS, MIN_STEPS};
        let doc = document(false);
        let schemas = &doc["components"]["schemas"];
        let req = &schemas["VideoRequest"];
        assert_eq!(req["required"], json!(["prompt"]));
        assert_eq!(req["additionalProperties"], false);
        let props = &req["properties"];
        assert_eq!(props["num_steps"]["minimum"], MIN_STEPS);
        assert_eq!(props["num_steps"]["maximum"], MAX_STEPS);
        assert_eq!(props["seed"]["maximum"], MAX_SEED);
        assert_eq!(props["prompt"]["type"], "string");
        for field in [
            "width", "height", "frames", "fps", "seed", "guidance", "model",
        ] {
            let kind = &props[field]["type"];
            assert!(
                kind.as_array().is_some_and(|k| k.contains(&json!("null"))),
                "{field} is nullable: {kind}"
            );
        }
        let batch = &schemas["BatchRequest"]["properties"]["requests"];
        assert_eq!(batch["maxItems"], super::super::MAX_BATCH);
        for path in ["/api/v1/videos/generate", "/api/v1/videos/batch"] {
            let too_large = &doc["paths"][path]["post"]["responses"]["413"]["description"];
            let kib = format!("{} KiB", super::super::MAX_BODY_BYTES / 1024);
            assert!(too_large.as_str().unwrap().contains(&kib), "{too_large}");
        }
        let list = &doc["paths"]["/api/v1/videos"]["get"]["parameters"];
        let limit = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["maximum"], super::super::api::MAX_PAGE);
    }
}
