//! Tests of the OpenAPI document: its version and references, the token's effect, and that
//! it lists exactly the routes the router serves.

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
                    route
                        .match_indices(&format!("{m}("))
                        .any(|(i, _)| i == 0 || !route.as_bytes()[i - 1].is_ascii_alphanumeric())
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
