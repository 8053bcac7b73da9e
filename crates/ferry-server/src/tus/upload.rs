//! HEAD, PATCH and DELETE on `/tus/{id}`.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_core::UploadChecksum;
use ferry_core::UploadId;
use ferry_core::digest::format_repr_digest;
use ferry_core::tus::parse_tus_integer;
use ferry_store::{ConcatKind, UploadRecord, UploadState};

use super::{
    LOCK_WAIT, UPLOAD_EXPIRES, UPLOAD_OFFSET, content_length, has_body, header_str, http_date, is_offset_stream,
    receive,
};
use crate::auth::Identity;
use crate::locks::UploadGuard;
use crate::quota;
use crate::{ApiError, AppState};

/// Takes the upload (ending an older request on it) and loads its record, refusing
/// uploads that are gone.
/// A writer (`lease`) also takes the upload's lease when nodes share the database.
pub(crate) async fn take(
    state: &AppState,
    id: &UploadId,
    who: &Identity,
    lease: bool,
) -> Result<(UploadGuard, UploadRecord), ApiError> {
    // Ownership first, without the lock, so nobody can interrupt someone else's PATCH.
    let rec = state.meta.get(id).await?.ok_or_else(|| ApiError::NotFound("no such upload".into()))?;
    if !who.owns(rec.owner) {
        return Err(ApiError::Forbidden("this upload belongs to another user".into()));
    }
    let mut guard = state.locks.acquire(id, LOCK_WAIT).await.ok_or(ApiError::Locked)?;
    if lease {
        guard.lease = crate::cluster::lease(state, id, LOCK_WAIT, guard.stop.clone()).await?;
    }
    let rec = state.meta.get(id).await?.ok_or_else(|| ApiError::NotFound("no such upload".into()))?;
    match rec.state {
        UploadState::Active | UploadState::Complete => Ok((guard, rec)),
        UploadState::Expired => Err(ApiError::Gone("the upload expired and its bytes were deleted".into())),
        UploadState::Failed => {
            Err(ApiError::Gone(format!("the upload failed: {}", rec.reason.as_deref().unwrap_or("unknown"))))
        }
        UploadState::Terminated => Err(ApiError::NotFound("no such upload (it was deleted)".into())),
    }
}

fn concat_header(rec: &UploadRecord) -> Option<HeaderValue> {
    match &rec.concat {
        ConcatKind::None => None,
        ConcatKind::Partial => Some(HeaderValue::from_static("partial")),
        ConcatKind::Final(ids) => {
            let urls: Vec<String> = ids.iter().map(|i| format!("/tus/{i}")).collect();
            HeaderValue::from_str(&format!("final;{}", urls.join(" "))).ok()
        }
    }
}

pub(super) async fn head(state: &AppState, id: &UploadId, who: &Identity) -> Result<Response, ApiError> {
    let (_guard, rec) = take(state, id, who, false).await?;
    super::complete::place_if_pending(state, &rec).await?;
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let final_pending = matches!(rec.concat, ConcatKind::Final(_)) && rec.state != UploadState::Complete;
    if !final_pending {
        h.insert(UPLOAD_OFFSET, HeaderValue::from(rec.offset));
    }
    match rec.length {
        Some(len) => {
            h.insert("upload-length", HeaderValue::from(len));
        }
        None if !final_pending => {
            h.insert("upload-defer-length", HeaderValue::from_static("1"));
        }
        None => {}
    }
    if !rec.metadata.is_empty()
        && let Ok(v) = HeaderValue::from_str(&rec.metadata)
    {
        h.insert("upload-metadata", v);
    }
    if let Some(v) = concat_header(&rec) {
        h.insert("upload-concat", v);
    }
    if rec.state == UploadState::Active
        && let Some(exp) = rec.expires_at
    {
        h.insert(UPLOAD_EXPIRES, http_date(exp));
    }
    if let Some(sha) = &rec.sha256
        && let Ok(v) = HeaderValue::from_str(&format_repr_digest(sha))
    {
        h.insert("repr-digest", v);
    }
    Ok((StatusCode::OK, h).into_response())
}

pub(super) async fn patch(state: &AppState, id: &UploadId, who: &Identity, req: Request) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    if !is_offset_stream(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let given = header_str(&headers, "upload-offset")?
        .ok_or_else(|| ApiError::bad("PATCH needs Upload-Offset"))
        .and_then(|v| {
            parse_tus_integer(v)
                .ok_or_else(|| ApiError::bad(format!("Upload-Offset {v:?} is not a non-negative integer")))
        })?;
    let checksum = header_str(&headers, "upload-checksum")?
        .map(UploadChecksum::parse)
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let new_length = header_str(&headers, "upload-length")?
        .map(|v| {
            parse_tus_integer(v)
                .ok_or_else(|| ApiError::bad(format!("Upload-Length {v:?} is not a non-negative integer")))
        })
        .transpose()?;

    let (mut guard, mut rec) = take(state, id, who, true).await?;
    if matches!(rec.concat, ConcatKind::Final(_)) {
        return Err(ApiError::Forbidden("a final upload cannot be patched; it is made of its parts".into()));
    }
    if let Some(len) = new_length {
        match rec.length {
            Some(cur) if cur != len => {
                return Err(ApiError::bad(format!("Upload-Length is already {cur} and cannot change")));
            }
            Some(_) => {}
            None => declare_length(state, who, &mut rec, len).await?,
        }
    }
    if given != rec.offset {
        return Err(ApiError::OffsetMismatch { given, actual: rec.offset });
    }
    let remaining = rec.length.unwrap_or(state.config.max_size).saturating_sub(rec.offset);
    if content_length(&headers).is_some_and(|n| n > remaining) {
        return Err(ApiError::TooLarge(format!(
            "the body is longer than the {remaining} bytes this upload can still take"
        )));
    }
    let mut out = HeaderMap::new();
    if rec.state == UploadState::Complete {
        super::complete::place_if_pending(state, &rec).await?;
        if has_body(&headers) {
            return Err(ApiError::TooLarge("the upload is already complete".into()));
        }
        out.insert(UPLOAD_OFFSET, HeaderValue::from(rec.offset));
        return Ok((StatusCode::NO_CONTENT, out).into_response());
    }
    if rec.length == Some(rec.offset) {
        // Deferred length just set to the bytes already stored: complete now.
        let digest = Box::pin(complete_as_is(state, &mut guard, &rec)).await?;
        out.insert(UPLOAD_OFFSET, HeaderValue::from(rec.offset));
        out.insert(
            "repr-digest",
            HeaderValue::from_str(&format_repr_digest(&digest)).map_err(|_| ApiError::Internal("digest".into()))?,
        );
        return Ok((StatusCode::NO_CONTENT, out).into_response());
    }
    let (_held, room) = quota::for_body(state, who, rec.length, content_length(&headers)).await?;
    // Boxed, like the other paths not taken while a body streams, so the future a slow
    // upload holds for its whole life stays small.
    let received =
        Box::pin(receive::receive(state, &mut guard, &rec, &headers, req.into_body(), checksum, room)).await?;
    out.insert(UPLOAD_OFFSET, HeaderValue::from(received.offset));
    match received.completed {
        Some(sha) => {
            if let Ok(v) = HeaderValue::from_str(&format_repr_digest(&sha)) {
                out.insert("repr-digest", v);
            }
        }
        None => {
            out.insert(UPLOAD_EXPIRES, http_date(super::next_expiry(state)));
        }
    }
    Ok((StatusCode::NO_CONTENT, out).into_response())
}

pub(crate) async fn delete(state: &AppState, id: &UploadId, who: &Identity) -> Result<Response, ApiError> {
    let (_guard, rec) = take(state, id, who, true).await?;
    state.meta.finish(&rec.id, UploadState::Terminated, Some("deleted by the client")).await?;
    state.metrics.uploads_terminated.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    super::complete::release_bytes(state, &rec.id).await?;
    state.locks.forget(&rec.id);
    tracing::info!(upload = %rec.id, "upload terminated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Declares the length of a deferred-length upload (counted against the quota at once; the
/// bytes stored so far were counted already).
pub(crate) async fn declare_length(
    state: &AppState,
    who: &Identity,
    rec: &mut UploadRecord,
    len: u64,
) -> Result<(), ApiError> {
    if len < rec.offset {
        return Err(ApiError::bad(format!("Upload-Length {len} is below the bytes already stored ({})", rec.offset)));
    }
    if len > state.config.max_size {
        return Err(ApiError::TooLarge(format!("Upload-Length {len} exceeds the server's maximum")));
    }
    let claim = quota::Claim { adds: len, replaces: rec.offset, staged: true, opens: false };
    let _admitted = quota::admit(state, who, claim).await?;
    if !state.meta.set_length(&rec.id, len).await? {
        return Err(ApiError::bad("Upload-Length was already set"));
    }
    rec.length = Some(len);
    Ok(())
}

/// Completes an upload whose length is its committed offset; returns its SHA-256.
pub(crate) async fn complete_as_is(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
) -> Result<[u8; 32], ApiError> {
    use sha2::Digest as _;
    let sha = receive::hasher_at(state, guard, rec).await?;
    let digest: [u8; 32] = sha.finalize().into();
    let progress = ferry_store::Progress { sha_state: None, blob: None, lease_token: guard.lease_token() };
    super::complete::complete_upload(state, guard, rec, rec.offset, rec.offset, digest, &progress).await?;
    Ok(digest)
}
