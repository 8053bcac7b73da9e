//! tus 1.0.0 at `/tus/`: core plus creation, creation-with-upload, creation-defer-length,
//! termination, checksum, checksum-trailer, expiration, concatenation and
//! concatenation-unfinished.
//!
//! Handlers are bare functions; [`router`] wires them. Method dispatch happens here rather
//! than in axum's method router so that `X-HTTP-Method-Override` is honoured as the real
//! method everywhere.

mod complete;
mod concat;
mod create;
pub(crate) mod receive;
mod sink;
pub(crate) mod upload;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use ferry_core::UploadId;
use ferry_core::checksum::SUPPORTED_ALGORITHMS;
use ferry_core::tus::{TUS_EXTENSIONS, TUS_VERSION};

use crate::auth::Identity;
use crate::{ApiError, AppState};

pub(crate) use complete::{authorise_destination, place, record_placed, release_bytes};
pub(crate) use complete::{item_name, item_shape};
pub(crate) use concat::try_assemble;
pub(crate) use create::{relay_from_stored, relay_recipients};

/// How long a request waits for another request to let go of an upload.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The tus routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tus", any(collection))
        .route("/tus/", any(collection))
        .route("/tus/{id}", any(upload_resource))
        .route_layer(axum::middleware::from_fn(tus_resumable))
        .layer(DefaultBodyLimit::disable())
}

/// The method a request really means: `X-HTTP-Method-Override` wins when present. The
/// access rules are chosen by this method too (`auth::authenticate`).
pub(crate) fn effective_method(req: &Request) -> Method {
    req.headers()
        .get("x-http-method-override")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Method::from_bytes(v.trim().to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or_else(|| req.method().clone())
}

/// Refuses non-OPTIONS requests without `Tus-Resumable: 1.0.0` (412) and stamps
/// `Tus-Resumable` on every answer.
async fn tus_resumable(req: Request, next: Next) -> Response {
    let method = effective_method(&req);
    let version_ok = req.headers().get("tus-resumable").is_some_and(|v| v == TUS_VERSION);
    let mut resp = if method != Method::OPTIONS && !version_ok {
        ApiError::TusVersion.into_response()
    } else {
        next.run(req).await
    };
    resp.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    resp
}

async fn collection(State(state): State<AppState>, req: Request) -> Response {
    match effective_method(&req) {
        Method::POST => create::create(state, req).await.unwrap_or_else(IntoResponse::into_response),
        Method::OPTIONS => options(&state),
        _ => ApiError::MethodNotAllowed.into_response(),
    }
}

async fn upload_resource(State(state): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let method = effective_method(&req);
    if method == Method::OPTIONS {
        return options(&state);
    }
    let Some(id) = UploadId::parse(&id) else {
        return ApiError::NotFound("no such upload".into()).into_response();
    };
    let who = req.extensions().get::<Identity>().cloned().unwrap_or(Identity::Anonymous);
    let result = match method {
        Method::HEAD => upload::head(&state, &id, &who).await,
        Method::PATCH => upload::patch(&state, &id, &who, req).await,
        Method::DELETE => upload::delete(&state, &id, &who).await,
        _ => Err(ApiError::MethodNotAllowed),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn options(state: &AppState) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert("tus-max-size", HeaderValue::from(state.config.max_size));
    headers.insert("tus-checksum-algorithm", HeaderValue::from_static(SUPPORTED_ALGORITHMS));
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// An IMF-fixdate for `Upload-Expires`.
fn http_date(unix: i64) -> HeaderValue {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap_or(HeaderValue::from_static(""))
}

/// The expiry a fresh activity gives an unfinished upload.
pub(crate) fn next_expiry(state: &AppState) -> i64 {
    let ttl = state.config.upload_ttl;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (now + ttl).as_secs() as i64
}

/// A header value as text, `None` when absent.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    headers.get(name).map(|v| v.to_str().map_err(|_| ApiError::bad(format!("{name} is not ASCII text")))).transpose()
}

/// True when the request carries a body (a positive Content-Length or chunked encoding).
fn has_body(headers: &HeaderMap) -> bool {
    let chunked = headers
        .get(axum::http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    chunked || content_length(headers).is_some_and(|n| n > 0)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(axum::http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case(ferry_core::tus::OFFSET_OCTET_STREAM)
    })
}

const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
