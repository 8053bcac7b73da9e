//! `GET /api/openapi.json`: an OpenAPI 3.1 document generated from the route table
//! ([`crate::auth::ROUTE_RULES`]), so it can never list a route the server lacks or miss
//! one it has, with each route's access rule as its security requirement.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::auth::{Access, ROUTE_RULES};

/// The methods an OpenAPI 3.1 path item can hold.
const HTTP_METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"];

/// The document.
pub fn document() -> Value {
    let mut paths: std::collections::BTreeMap<String, Map<String, Value>> = Default::default();
    for rule in ROUTE_RULES {
        let (path, params) = openapi_path(rule.path);
        let entry = paths.entry(path).or_default();
        for method in rule.methods.split('|') {
            let mut op = json!({
                "summary": rule.summary,
                "operationId": format!("{}{}", method.to_lowercase(), rule.path.replace(['/', '{', '}', '*', '.'], "_")),
                "responses": responses(rule.access),
            });
            if !params.is_empty() {
                op["parameters"] = Value::Array(params.clone());
            }
            if rule.access == Access::Public {
                op["security"] = json!([]);
            }
            if HTTP_METHODS.contains(&method) {
                entry.insert(method.to_lowercase(), op);
            } else {
                // OpenAPI 3.1 has no place for WebDAV's own methods: they are listed apart.
                let extra = entry.entry("x-webdav-methods").or_insert_with(|| json!({}));
                extra[method] = op;
            }
        }
    }
    let paths: Map<String, Value> = paths.into_iter().map(|(k, v)| (k, Value::Object(v))).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ferry",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Resumable uploads (tus 1.0 at /tus/), verified Range downloads (/files/), WebDAV with resumable uploads (/dav/), the offline-file relay and accounts. Every route but the public ones needs a bearer token from POST /api/login, or HTTP Basic.",
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "basic": { "type": "http", "scheme": "basic" },
            }
        },
        "security": [{ "bearer": [] }, { "basic": [] }],
        "paths": Value::Object(paths),
    })
}

/// `/files/{*path}` → `/files/{path}` plus the path parameters.
fn openapi_path(pattern: &str) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let path: Vec<String> = pattern
        .split('/')
        .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                let name = name.trim_start_matches('*');
                params.push(json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }));
                format!("{{{name}}}")
            }
            None => seg.to_owned(),
        })
        .collect();
    (path.join("/"), params)
}

fn responses(access: Access) -> Value {
    let mut r = json!({
        "2XX": { "description": "Success" },
        "4XX": { "description": "Refused; the body is a one-line reason", "content": { "text/plain": { "schema": { "type": "string" } } } },
    });
    if access == Access::User {
        r["401"] = json!({ "description": "No or invalid credentials" });
        r["403"] = json!({ "description": "Not this user's resource" });
    }
    r
}

/// `GET /api/openapi.json`.
pub(super) async fn openapi() -> Response {
    Json(document()).into_response()
}
