//! The web app at `/`: its files are compiled into the binary (`crates/ferry-server/web/`,
//! tus-js-client and hash-wasm's SHA-256 vendored from npm with their licences, see
//! `web/vendor/VENDOR.md`), so nothing is fetched from anywhere else and nothing is built
//! with Node. Every page answer carries a strict Content-Security-Policy: scripts, styles
//! and connections only from this server, no inline script, no eval (WebAssembly may be
//! compiled, for the SHA-256), no frames.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// The policy of every web app answer.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data: blob:; \
    connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The app's files: URL name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../web/app.js")),
    ("app.css", "text/css; charset=utf-8", include_bytes!("../web/app.css")),
    ("vendor/tus.min.js", "text/javascript; charset=utf-8", include_bytes!("../web/vendor/tus.min.js")),
    (
        "vendor/hash-wasm-sha256.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../web/vendor/hash-wasm-sha256.min.js"),
    ),
    (
        "vendor/LICENSE-tus-js-client",
        "text/plain; charset=utf-8",
        include_bytes!("../web/vendor/LICENSE-tus-js-client"),
    ),
    ("vendor/LICENSE-hash-wasm", "text/plain; charset=utf-8", include_bytes!("../web/vendor/LICENSE-hash-wasm")),
    ("vendor/VENDOR.md", "text/plain; charset=utf-8", include_bytes!("../web/vendor/VENDOR.md")),
];

const INDEX: &[u8] = include_bytes!("../web/index.html");

/// `GET /` and `GET /ui/{file}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/ui/{*file}", get(asset))
}

async fn index() -> Response {
    answer("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, bytes)) => answer(kind, bytes),
        None => (StatusCode::NOT_FOUND, "no such file in the web app\n").into_response(),
    }
}

fn answer(kind: &'static str, bytes: &'static [u8]) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Always revalidated: a new binary serves its own app at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
