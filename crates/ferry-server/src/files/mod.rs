//! Downloads at `/files/{path}`: GET and HEAD with single and multiple ranges, strong
//! ETags, If-Range and the other conditionals, `Repr-Digest` when the SHA-256 is known,
//! and JSON listings for directories.
//!
//! This handler is ferry's own (DESIGN.md §4.7): tower-http's ServeFile has neither
//! If-Range nor multipart ranges.

pub(crate) mod body;
pub mod conditional;
pub mod html;

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json};
use ferry_core::digest::{format_repr_digest, to_hex};
use ferry_core::{RangeRequest, TreePath};
use ferry_store::{BlobRead, FileStat, StoreError};
use serde::Serialize;

use self::conditional::{Precondition, Validators, evaluate, if_range_allows};
use crate::auth::Identity;
use crate::{ApiError, AppState};

/// The download routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/files", get(root))
        .route("/files/", get(root))
        .route("/files/{*path}", get(path).delete(crate::api::files::remove))
}

async fn root(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve(&state, &who, "", &method, &headers).await.unwrap_or_else(IntoResponse::into_response)
}

async fn path(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(path): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    serve(&state, &who, &path, &method, &headers).await.unwrap_or_else(IntoResponse::into_response)
}

async fn serve(
    state: &AppState,
    who: &Identity,
    raw: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let tree_path = TreePath::parse_url_path(raw).map_err(|e| ApiError::bad(e.to_string()))?;
    serve_path(state, who, &tree_path, method, headers, true).await
}

/// GET/HEAD of a tree path: a file's bytes, or a directory's JSON listing. `sha_etag`: the
/// ETag is the SHA-256 when known (else, as WebDAV's, size and modification time).
pub(crate) async fn serve_path(
    state: &AppState,
    who: &Identity,
    tree_path: &TreePath,
    method: &Method,
    headers: &HeaderMap,
    sha_etag: bool,
) -> Result<Response, ApiError> {
    if !who.may_read(tree_path) {
        return Err(ApiError::Forbidden(format!("you may not read /{tree_path}")));
    }
    let not_found = || ApiError::NotFound(format!("no such file: /{tree_path}"));
    let missing = |e: StoreError| match e {
        StoreError::NotFound(_) | StoreError::Escapes(_) => not_found(),
        e => e.into(),
    };
    let Some(stat) = state.blobs.stat(tree_path).await.map_err(missing)? else {
        // A user's home exists from their first upload on; before that it is empty.
        if !tree_path.is_root() && *tree_path == who.home() {
            return Ok(render_listing(tree_path, Vec::new(), html::wants_html(headers)));
        }
        return Err(not_found());
    };
    // Decide on where the path really leads: a link must not open another user's folder.
    match state.blobs.real_tree_path(tree_path).await {
        Ok(p) if who.may_read(&p) => {}
        Ok(_) => return Err(ApiError::Forbidden(format!("you may not read /{tree_path}"))),
        Err(_) => return Err(not_found()),
    }
    if stat.is_dir {
        return listing(state, who, tree_path, html::wants_html(headers)).await;
    }
    let (blob, stat) = state.blobs.open(tree_path).await.map_err(missing)?;
    let sha = state.meta.tree_file_digest(&tree_path.to_string(), stat.size, stat.version).await?;
    send_file(state, blob, &stat, tree_path.file_name().unwrap_or("download"), sha, sha_etag, method, headers)
}

/// Answers GET/HEAD for one stored file (`stat` describes the version `file` reads):
/// validators, conditionals, ranges, `Repr-Digest` when the SHA-256 is known (and the ETag
/// with it, when `sha_etag`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_file(
    state: &AppState,
    file: Arc<dyn BlobRead>,
    stat: &FileStat,
    name: &str,
    sha: Option<[u8; 32]>,
    sha_etag: bool,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let size = stat.size;
    let v = Validators::new(size, stat.modified, sha.as_ref().filter(|_| sha_etag));

    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, value(&v.etag)?);
    h.insert(header::LAST_MODIFIED, value(&httpdate::fmt_http_date(v.last_modified))?);
    if let Some(sha) = &sha {
        h.insert("repr-digest", value(&format_repr_digest(sha))?);
    }
    match evaluate(headers, &v) {
        Precondition::Proceed => {}
        Precondition::NotModified => return Ok((StatusCode::NOT_MODIFIED, h).into_response()),
        Precondition::Failed => return Err(ApiError::PreconditionFailed),
    }
    h.insert(header::CONTENT_DISPOSITION, value(&content_disposition(name))?);

    let ranges = match headers.get(header::RANGE).and_then(|r| r.to_str().ok()) {
        Some(r) if if_range_allows(headers, &v) => RangeRequest::parse(r, size),
        _ => RangeRequest::Full,
    };
    let head_only = method == Method::HEAD;
    match ranges {
        RangeRequest::Unsatisfiable => Err(ApiError::RangeNotSatisfiable(size)),
        RangeRequest::Full => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            let body = if head_only {
                Body::empty()
            } else {
                Body::from_stream(body::region(file, 0, size, state.draining.clone()))
            };
            Ok((StatusCode::OK, h, body).into_response())
        }
        RangeRequest::Ranges(ranges) if ranges.len() == 1 => {
            let r = ranges[0];
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            h.insert(header::CONTENT_RANGE, value(&r.content_range(size))?);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.len()));
            let body = if head_only {
                Body::empty()
            } else {
                Body::from_stream(body::region(file, r.start, r.len(), state.draining.clone()))
            };
            Ok((StatusCode::PARTIAL_CONTENT, h, body).into_response())
        }
        RangeRequest::Ranges(ranges) => {
            let boundary = format!("ferry-{:016x}", rand::random::<u64>());
            let (body, len) = body::multipart(file, &ranges, size, &boundary, state.draining.clone());
            h.insert(header::CONTENT_TYPE, value(&format!("multipart/byteranges; boundary={boundary}"))?);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            let body = if head_only { Body::empty() } else { body };
            Ok((StatusCode::PARTIAL_CONTENT, h, body).into_response())
        }
    }
}

fn value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|_| ApiError::Internal(format!("invalid header value {s:?}")))
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266/8187).
fn content_disposition(name: &str) -> String {
    let fallback: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[derive(Serialize)]
struct Listing {
    path: String,
    entries: Vec<ListingEntry>,
}

#[derive(Serialize)]
struct ListingEntry {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    /// Seconds since the Unix epoch.
    mtime: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

async fn listing(state: &AppState, who: &Identity, dir: &TreePath, as_html: bool) -> Result<Response, ApiError> {
    let entries = state.blobs.list(dir).await?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let Ok(child) = TreePath::parse(&e.name).map(|c| dir.join(&c)) else { continue };
        // The folder's own real path was checked; only a link can lead elsewhere.
        let readable = who.may_read(&child)
            && (!e.link || state.blobs.real_tree_path(&child).await.is_ok_and(|r| who.may_read(&r)));
        if !readable {
            continue; // another user's home, or a folder not shared with this one
        }
        let sha256 = if e.stat.is_dir {
            None
        } else {
            state.meta.tree_file_digest(&child.to_string(), e.stat.size, e.stat.version).await?.map(|d| to_hex(&d))
        };
        let mtime = e.stat.modified.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        out.push(ListingEntry {
            name: e.name,
            kind: if e.stat.is_dir { "dir" } else { "file" },
            size: e.stat.size,
            mtime,
            sha256,
        });
    }
    Ok(render_listing(dir, out, as_html))
}

/// A folder's listing as JSON, or as HTML for a browser.
fn render_listing(dir: &TreePath, out: Vec<ListingEntry>, as_html: bool) -> Response {
    if as_html {
        let rows: Vec<html::Row<'_>> = out
            .iter()
            .map(|e| html::Row { name: &e.name, dir: e.kind == "dir", size: e.size, mtime: e.mtime })
            .collect();
        let page = html::page(&format!("/{dir}"), &rows);
        let headers = [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'self'; frame-ancestors 'none'"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::VARY, "Accept"),
        ];
        return (StatusCode::OK, headers, page).into_response();
    }
    let body = Listing { path: format!("/{dir}"), entries: out };
    ([(header::CONTENT_TYPE, "application/json")], Json(body)).into_response()
}
