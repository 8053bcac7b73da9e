//! Asking where an upload is, and giving one up: IT Hit's `REPORT <upload-progress/>` (on a
//! file, or on a folder for every upload in progress below it) and `CANCELUPLOAD`, and the
//! Google-style probe `PUT` with `Content-Range: bytes */N` (308 with `Range: bytes=0-K`,
//! never a truncation). Each upload is also named by its tus URL, so a transfer started in
//! one dialect can go on in the other. The caller's right to the path was checked by the
//! gate in `mod.rs`.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_core::TreePath;
use http_body_util::BodyExt;

use super::href;
use super::write::upload_in_progress;
use crate::auth::Identity;
use crate::{ApiError, AppState};

/// Largest REPORT body read.
const MAX_REPORT_BODY: usize = 64 << 10;

/// Whether a PUT is the probe `Content-Range: bytes */N` (or `bytes */*`).
pub(crate) fn is_probe(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().starts_with("bytes */"))
}

/// Answers the probe: 308 with `Range: bytes=0-(K-1)` for an upload in progress that holds
/// K bytes (no `Range` when it holds none, or when nothing is in progress), 200 when the
/// file is complete at the named length. Changes nothing.
pub(crate) async fn probe(
    state: &AppState,
    who: &Identity,
    path: &TreePath,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0") {
        return Err(ApiError::bad("a Content-Range: bytes */N request asks for progress and carries no body"));
    }
    let total = super::content_range(headers).and_then(|c| c.total);
    let mut h = HeaderMap::new();
    match upload_in_progress(state, who, path).await? {
        Some(rec) => {
            if rec.offset > 0 {
                h.insert(header::RANGE, value(&format!("bytes=0-{}", rec.offset - 1))?);
            }
            h.insert("upload-offset", HeaderValue::from(rec.offset));
            h.insert(header::LOCATION, value(&format!("/tus/{}", rec.id))?);
            Ok((StatusCode::PERMANENT_REDIRECT, h).into_response())
        }
        None => match state.blobs.stat(path).await? {
            Some(s) if !s.is_dir && total.is_none_or(|n| n == s.size) => {
                h.insert("upload-offset", HeaderValue::from(s.size));
                Ok((StatusCode::OK, h).into_response())
            }
            _ => {
                h.insert("upload-offset", HeaderValue::from(0));
                Ok((StatusCode::PERMANENT_REDIRECT, h).into_response())
            }
        },
    }
}

fn value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|_| ApiError::Internal(format!("invalid header value {s:?}")))
}

/// `REPORT` with `<upload-progress xmlns="ithit"/>`: a 207 multistatus with, for every
/// upload of the caller's in progress at or below the path, its bytes uploaded, the time
/// the last chunk was saved and its total length (when known), and its tus URL.
pub(crate) async fn report(
    state: &AppState,
    who: &Identity,
    path: &TreePath,
    req: Request,
) -> Result<Response, ApiError> {
    let body = Body::new(req.into_body());
    let bytes = http_body_util::Limited::new(body, MAX_REPORT_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::TooLarge(format!("a REPORT body is at most {MAX_REPORT_BODY} bytes")))?
        .to_bytes();
    let root = xmltree::Element::parse(bytes.as_ref()).map_err(|_| ApiError::bad("the REPORT body is not XML"))?;
    if root.name != "upload-progress" {
        return Ok((StatusCode::NOT_IMPLEMENTED, "ferry answers only the upload-progress report\n").into_response());
    }
    let uploads: Vec<_> = state
        .meta
        .uploads_in_progress(&path.to_string())
        .await?
        .into_iter()
        .filter(|r| who.owns(r.owner) && r.tree_path.is_some())
        .collect();
    if uploads.is_empty() && state.blobs.stat(path).await?.is_none() && !path.is_root() {
        return Err(ApiError::NotFound(format!("nothing at /{path} and no upload in progress to it")));
    }
    let ttl = state.config.upload_ttl;
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:multistatus xmlns:d=\"DAV:\" xmlns:f=\"urn:ferry\">\n",
    );
    for rec in uploads {
        let Some(target) = rec.tree_path.as_deref().and_then(|p| TreePath::parse(p).ok()) else { continue };
        let saved = rec.expires_at.map_or(rec.created_at, |e| e - ttl.as_secs() as i64).max(rec.created_at);
        let saved = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(saved.max(0) as u64));
        let total = rec
            .length
            .map(|n| format!("<total-content-length xmlns=\"ithit\">{n}</total-content-length>"))
            .unwrap_or_default();
        xml.push_str(&format!(
            "<d:response><d:href>{}</d:href><d:propstat><d:prop>\
             <bytes-uploaded xmlns=\"ithit\">{}</bytes-uploaded>\
             <last-chunk-saved xmlns=\"ithit\">{saved}</last-chunk-saved>{total}\
             <f:tus-upload>/tus/{}</f:tus-upload>\
             </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>\n",
            escape(&href(&target)),
            rec.offset,
            rec.id
        ));
    }
    xml.push_str("</d:multistatus>\n");
    Ok((StatusCode::MULTI_STATUS, [(header::CONTENT_TYPE, "application/xml; charset=utf-8")], xml).into_response())
}

/// `CANCELUPLOAD`: discards the caller's upload in progress to the path.
pub(crate) async fn cancel(state: &AppState, who: &Identity, path: &TreePath) -> Result<Response, ApiError> {
    let mut cancelled = 0;
    while let Some(rec) = upload_in_progress(state, who, path).await? {
        crate::tus::upload::delete(state, &rec.id, who).await?;
        cancelled += 1;
    }
    if cancelled == 0 {
        return Err(ApiError::NotFound(format!("no upload in progress to /{path}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
