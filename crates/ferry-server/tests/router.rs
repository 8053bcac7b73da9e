//! In-process router tests: `app(state)` driven with `tower::ServiceExt::oneshot`, the same
//! router `ferry serve` runs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on failure

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ferry_server::{AppState, ServerConfig, app};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn state() -> (tempfile::TempDir, AppState) {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(tmp.path().join("data"));
    config.auth = false;
    let state = AppState::open(config, CancellationToken::new()).await.unwrap();
    (tmp, state)
}

#[tokio::test]
async fn healthz_and_unknown_routes() {
    let (_t, s) = state().await;
    let r = app(s.clone()).oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app(s).oneshot(Request::get("/nope").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn readyz_says_which_store_is_down() {
    let (t, s) = state().await;
    let ready = |s: &AppState| app(s.clone()).oneshot(Request::get("/readyz").body(Body::empty()).unwrap());
    assert_eq!(ready(&s).await.unwrap().status(), StatusCode::OK);
    std::fs::remove_dir_all(t.path().join("data").join("staging")).unwrap();
    let r = ready(&s).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), "not ready: storage (failing)\n", "no paths to an anonymous caller");
    std::fs::create_dir(t.path().join("data").join("staging")).unwrap();
    assert_eq!(ready(&s).await.unwrap().status(), StatusCode::OK);
    s.meta.close().await;
    let r = ready(&s).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&body), "not ready: database (failing)\n");
}

#[tokio::test]
async fn create_then_patch_in_process() {
    let (_t, s) = state().await;
    let r = app(s.clone())
        .oneshot(
            Request::post("/tus/")
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "4")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = app(s.clone())
        .oneshot(
            Request::patch(&loc)
                .header("tus-resumable", "1.0.0")
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(Body::from("abcd"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["upload-offset"], "4");
    let id = loc.trim_start_matches("/tus/");
    let r = app(s).oneshot(Request::get(format!("/files/{id}")).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "an unnamed upload lands under its id");
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "abcd");
}

#[tokio::test]
async fn missing_tus_version_is_refused_with_the_supported_one() {
    let (_t, s) = state().await;
    let r =
        app(s).oneshot(Request::post("/tus/").header("upload-length", "4").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.iter().filter(|b| **b == b'\n').count(), 1, "one line");
}

#[tokio::test]
async fn with_accounts_every_non_public_route_needs_a_login() {
    let tmp = tempfile::tempdir().unwrap();
    let state = AppState::open(ServerConfig::new(tmp.path().join("data")), CancellationToken::new()).await.unwrap();
    for rule in ferry_server::auth::ROUTE_RULES {
        let method = rule.methods.split('|').next().unwrap();
        let path = rule
            .path
            .replace("{*path}", "x/y")
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace("{challenge}", "c");
        let req = Request::builder()
            .method(method)
            .uri(&path)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let status = app(state.clone()).oneshot(req).await.unwrap().status();
        match rule.access {
            ferry_server::auth::Access::User => assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}"),
            ferry_server::auth::Access::Public => assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}"),
        }
    }
    let r = app(state).oneshot(Request::get("/no/rule/here").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "a route without a rule is closed");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_with_its_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let state = AppState::open(ServerConfig::new(tmp.path().join("data")), CancellationToken::new()).await.unwrap();
    let r = app(state).oneshot(Request::get("/api/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "public even with accounts on");
    let doc: serde_json::Value = serde_json::from_slice(&r.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for rule in ferry_server::auth::ROUTE_RULES {
        let path = rule.path.replace("{*", "{");
        for method in rule.methods.split('|') {
            let standard = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH"].contains(&method);
            let op = if standard {
                &doc["paths"][&path][method.to_lowercase()]
            } else {
                &doc["paths"][&path]["x-webdav-methods"][method]
            };
            assert!(op.is_object(), "{method} {path} missing from the document");
            let public = op.get("security").is_some_and(|s| s.as_array().is_some_and(Vec::is_empty));
            assert_eq!(public, rule.access == ferry_server::auth::Access::Public, "{method} {path}");
        }
    }
}
