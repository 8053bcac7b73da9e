//! WebDAV at `/dav/{path}`: class 1 and 2 over the same tree, accounts and confinement as
//! `/files/`, with resumable uploads in every dialect clients use.
//!
//! `dav-server` answers the RFC 4918 core (PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, DELETE,
//! LOCK, UNLOCK and the `If:` preconditions) over [`fs::FerryFs`], a view of ferry's tree
//! with dead properties and locks ([`locks::StoredLocks`]) kept in the metadata store. ferry
//! owns the rest:
//!
//! - every PUT and SabreDAV PATCH streams into an ordinary upload record bound for its path
//!   ([`write::UploadFile`]): staging → verify → atomic placement, so a half PUT is never
//!   visible, and a broken one stays a resumable upload (the same record a tus client sees);
//! - `PUT` with `Content-Range: bytes S-E/N` continues that upload at `S` (IT Hit, Apache),
//!   `PUT` with `Content-Range: bytes */N` answers how much arrived (308 + `Range`, the
//!   Google probe) and never truncates, `REPORT <upload-progress/>` and `CANCELUPLOAD` are
//!   IT Hit's ([`progress`]);
//! - GET and HEAD of a file go through `/files/`'s handler (Range, If-Range, `Repr-Digest`).

mod fs;
mod locks;
mod progress;
mod write;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use dav_server::DavHandler;
use dav_server::davpath::DavPath;
use dav_server::fs::{FsError, FsResult};
use ferry_core::{ContentRange, TreePath};

use crate::auth::Identity;
use crate::{ApiError, AppState};

/// The URL prefix WebDAV is served under.
pub(crate) const PREFIX: &str = "/dav";

/// The WebDAV routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dav", any(handle))
        .route("/dav/", any(handle))
        .route("/dav/{*path}", any(handle))
        .layer(DefaultBodyLimit::disable())
}

/// Who is asking, and what of the request the file system needs to see: it travels with
/// every call `dav-server` makes into [`fs::FerryFs`].
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub who: Identity,
    /// The request's method.
    pub method: http::Method,
    /// The request's headers (a PUT's `Content-Range` total, `Repr-Digest`).
    pub headers: Arc<HeaderMap>,
}

impl Caller {
    /// The request's `Content-Range`, if it has a well-formed one.
    pub fn content_range(&self) -> Option<ContentRange> {
        content_range(&self.headers)
    }
}

/// A request's `Content-Range`, if it has a well-formed one.
pub(crate) fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    ContentRange::parse(headers.get(header::CONTENT_RANGE)?.to_str().ok()?)
}

/// A `dav-server` path as a tree path (`None` when it cannot be one: not UTF-8, `..`, a
/// reserved name).
pub(crate) fn tree_path(path: &DavPath) -> FsResult<TreePath> {
    let text = std::str::from_utf8(path.as_bytes()).map_err(|_| FsError::NotFound)?;
    TreePath::parse(text.trim_matches('/')).map_err(|_| FsError::Forbidden)
}

/// The URL of a tree path under `/dav/`, percent-encoded.
pub(crate) fn href(path: &TreePath) -> String {
    let mut out = String::from(PREFIX);
    for c in path.components() {
        out.push('/');
        for b in c.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if path.is_root() {
        out.push('/');
    }
    out
}

async fn handle(State(state): State<AppState>, Extension(who): Extension<Identity>, req: Request) -> Response {
    let raw = req.uri().path().strip_prefix(PREFIX).unwrap_or("/").to_owned();
    let method = req.method().clone();
    // OPTIONS needs no path; every other method is gated on its own.
    let path = if method == http::Method::OPTIONS {
        TreePath::root()
    } else {
        match gate(&who, &method, &raw) {
            Ok(path) => path,
            Err(e) => return e.into_response(),
        }
    };
    let result = match method.as_str() {
        "GET" | "HEAD" if is_file(&state, &path).await => {
            let headers = req.headers().clone();
            crate::files::serve_path(&state, &who, &path, &method, &headers, false).await
        }
        "PUT" if progress::is_probe(req.headers()) => progress::probe(&state, &who, &path, req.headers()).await,
        "REPORT" => progress::report(&state, &who, &path, req).await,
        "CANCELUPLOAD" => progress::cancel(&state, &who, &path).await,
        "PROPFIND" if depth_infinity(req.headers()) => Ok(finite_depth()),
        "OPTIONS" => {
            let mut resp = dav(state, who, req).await;
            if let Some(dav) = resp.headers().get("dav").and_then(|v| v.to_str().ok())
                && let Ok(v) = HeaderValue::from_str(&format!("{dav}, resumable-upload"))
            {
                resp.headers_mut().insert("dav", v);
            }
            Ok(resp)
        }
        _ => Ok(dav(state, who, req).await),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The request's tree path (`raw` is the URL path below `/dav`), once the caller's right
/// to it is checked, before anything else: reading for GET, HEAD, PROPFIND, REPORT, COPY
/// (whose destination the file system checks), writing for the rest. (The file system
/// checks again, on where the path really leads.)
fn gate(who: &Identity, method: &http::Method, raw: &str) -> Result<TreePath, ApiError> {
    let text = percent_decode(raw).ok_or_else(|| ApiError::bad("the path is not UTF-8"))?;
    let path = TreePath::parse_url_path(&text).map_err(|e| ApiError::bad(e.to_string()))?;
    let (allowed, what) = match method.as_str() {
        "GET" | "HEAD" | "PROPFIND" | "REPORT" | "COPY" => (who.may_read(&path), "read"),
        _ => (who.may_write(&path), "write"),
    };
    if allowed { Ok(path) } else { Err(ApiError::Forbidden(format!("you may not {what} /{path}"))) }
}

/// Whether a GET/HEAD names a file (directories are `dav-server`'s).
async fn is_file(state: &AppState, path: &TreePath) -> bool {
    matches!(state.blobs.stat(path).await, Ok(Some(s)) if !s.is_dir)
}

/// Decodes `%XX` escapes of a URL path; `None` when the result is not UTF-8.
pub(crate) fn percent_decode(raw: &str) -> Option<String> {
    String::from_utf8(ferry_core::path::percent_decode(raw)).ok()
}

fn depth_infinity(headers: &HeaderMap) -> bool {
    headers.get("depth").and_then(|v| v.to_str().ok()).is_some_and(|d| d.trim().eq_ignore_ascii_case("infinity"))
}

/// PROPFIND with `Depth: infinity` is refused (RFC 4918 §9.1): its cost grows with the tree.
fn finite_depth() -> Response {
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                <D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n";
    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "application/xml; charset=utf-8")], body).into_response()
}

/// Hands a request to `dav-server`, over ferry's tree, as the caller.
async fn dav(state: AppState, who: Identity, req: Request) -> Response {
    let principal = match &who {
        Identity::User(u, _) => u.name.clone(),
        _ => String::new(),
    };
    let caller = Caller { who, method: req.method().clone(), headers: Arc::new(req.headers().clone()) };
    let handler: DavHandler<Caller> = DavHandler::builder()
        .strip_prefix(PREFIX)
        .filesystem(Box::new(fs::FerryFs::new(state.clone())))
        .locksystem(Box::new(locks::StoredLocks::new(state.meta.clone())))
        .autoindex(true)
        .build_handler();
    let resp = handler.handle_guarded(req, principal, caller).await;
    resp.map(Body::new)
}

/// The error a WebDAV client sees for an [`ApiError`] inside a file-system call.
pub(crate) fn fs_error(e: &ApiError) -> FsError {
    match e {
        ApiError::NotFound(_) | ApiError::Gone(_) => FsError::NotFound,
        ApiError::Forbidden(_) | ApiError::Unauthorized => FsError::Forbidden,
        ApiError::Conflict(_) => FsError::Exists,
        ApiError::TooLarge(_) => FsError::TooLarge,
        ApiError::InsufficientStorage => FsError::InsufficientStorage,
        _ => FsError::GeneralFailure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_are_encoded_and_paths_decoded() {
        let p = TreePath::parse("~alice/a b/ü%.txt").unwrap();
        assert_eq!(href(&p), "/dav/~alice/a%20b/%C3%BC%25.txt");
        assert_eq!(percent_decode("/~alice/a%20b/%C3%BC%25.txt").unwrap(), "/~alice/a b/ü%.txt");
        assert_eq!(href(&TreePath::root()), "/dav/");
        assert!(percent_decode("/%FF").is_none());
    }
}
