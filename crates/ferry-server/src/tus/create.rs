//! POST /tus/: creation, creation-with-upload, creation-defer-length, concatenation.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferry_core::tus::{UploadConcat, parse_tus_integer};
use ferry_core::{UploadChecksum, UploadId, UploadMetadata};
use ferry_store::{ConcatKind, NewUpload, unix_now};

use super::complete::{declared_sha256, destination};
use super::{
    LOCK_WAIT, UPLOAD_EXPIRES, UPLOAD_OFFSET, concat, content_length, has_body, header_str, http_date,
    is_offset_stream, next_expiry, receive,
};
use crate::auth::Identity;
use crate::quota;
use crate::{ApiError, AppState};

/// For a file sent through the relay (`relay_to` metadata: user names, comma-separated),
/// the recipients' ids, each checked to exist.
pub(crate) async fn relay_recipients(
    state: &AppState,
    who: &Identity,
    meta: &UploadMetadata,
) -> Result<Option<String>, ApiError> {
    let Some(raw) = meta.get("relay_to") else { return Ok(None) };
    let Some(caller) = who.user_id() else {
        return Err(ApiError::bad("the relay needs accounts; this server runs with --no-auth"));
    };
    state.passwords.may_look_up_names(caller)?;
    let names = std::str::from_utf8(raw).map_err(|_| ApiError::bad("relay_to is not UTF-8"))?;
    let mut ids = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some((user, _)) = state.meta.user_by_name(name).await? else {
            state.passwords.unknown_name(caller);
            return Err(ApiError::bad(format!("unknown recipient {name:?}")));
        };
        if !ids.contains(&user.id) {
            ids.push(user.id);
        }
    }
    if ids.is_empty() {
        return Err(ApiError::bad("relay_to names no recipient"));
    }
    if ids.len() > 100 {
        return Err(ApiError::bad("at most 100 recipients per item"));
    }
    Ok(Some(ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")))
}

/// Most partial uploads one final upload may name.
const MAX_PARTS: usize = 10_000;

pub(super) async fn create(state: AppState, req: Request) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let who = req.extensions().get::<Identity>().cloned().unwrap_or(Identity::Anonymous);
    let concat = header_str(&headers, "upload-concat")?
        .map(UploadConcat::parse)
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let defer = match header_str(&headers, "upload-defer-length")? {
        None => false,
        Some("1") => true,
        Some(other) => return Err(ApiError::bad(format!("Upload-Defer-Length must be 1, not {other:?}"))),
    };
    let length = header_str(&headers, "upload-length")?
        .map(|v| {
            parse_tus_integer(v)
                .ok_or_else(|| ApiError::bad(format!("Upload-Length {v:?} is not a non-negative integer")))
        })
        .transpose()?;
    let body = has_body(&headers);
    let metadata = UploadMetadata::parse(header_str(&headers, "upload-metadata")?.unwrap_or(""))
        .map_err(|e| ApiError::bad(e.to_string()))?;
    declared_sha256(&metadata)?;

    let is_final = matches!(concat, Some(UploadConcat::Final(_)));
    if is_final {
        if length.is_some() || defer {
            return Err(ApiError::bad("a final upload takes its length from its parts; send no Upload-Length"));
        }
        if body {
            return Err(ApiError::bad("a final upload cannot carry data"));
        }
    } else {
        match (length, defer) {
            (Some(_), true) => return Err(ApiError::bad("send Upload-Length or Upload-Defer-Length, not both")),
            (None, false) => return Err(ApiError::bad("Upload-Length or Upload-Defer-Length: 1 is required")),
            _ => {}
        }
    }
    if let Some(len) = length
        && len > state.config.max_size
    {
        return Err(ApiError::TooLarge(format!(
            "Upload-Length {len} exceeds the server's maximum of {} bytes (Tus-Max-Size)",
            state.config.max_size
        )));
    }
    if body && !is_offset_stream(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let checksum = header_str(&headers, "upload-checksum")?
        .map(UploadChecksum::parse)
        .transpose()
        .map_err(|e| ApiError::bad(e.to_string()))?;

    if state.config.auth && who.user_id().is_none() {
        return Err(ApiError::Unauthorized); // every upload, partial ones included, has an owner
    }
    let id = UploadId::random();
    let relay_to = relay_recipients(&state, &who, &metadata).await?;
    if relay_to.is_some() {
        // Parts of a parallel upload are checked as the whole they join, at completion (a
        // text is never sent in parts: it must name its length).
        let whole = if concat.is_none() { length } else { None };
        super::complete::item_shape(&metadata, whole)?;
        super::complete::item_name(&metadata, id.as_str())?;
    }
    let tree_path = if matches!(concat, Some(UploadConcat::Partial)) || relay_to.is_some() {
        None
    } else {
        let dest = destination(&metadata, &id, &who.home())?;
        super::complete::authorise_destination(&state, &who, &dest).await?;
        Some(dest.to_string())
    };
    let mut final_admitted = None;
    let (concat_kind, final_length) = match &concat {
        None => (ConcatKind::None, length),
        Some(UploadConcat::Partial) => (ConcatKind::Partial, length),
        Some(UploadConcat::Final(ids)) => {
            if ids.len() > MAX_PARTS {
                return Err(ApiError::bad(format!("a final upload may have at most {MAX_PARTS} parts")));
            }
            let parts = concat::load_parts(&state, ids, &who).await?;
            let sum = parts.iter().map(|p| p.length).try_fold(0u64, |acc, l| l.map(|l| acc.saturating_add(l)));
            if sum.is_some_and(|s| s > state.config.max_size) {
                return Err(ApiError::TooLarge("the parts add up to more than the server's maximum".into()));
            }
            // The joined length counts against the quota at once; the parts it is made of
            // are counted already (each once, however often it is listed).
            let mut unique = std::collections::HashMap::new();
            for p in &parts {
                unique.insert(p.id.clone(), p.length.unwrap_or(0));
            }
            let claim =
                quota::Claim { adds: sum.unwrap_or(0), replaces: unique.values().sum(), staged: true, opens: true };
            final_admitted = Some(quota::admit(&state, &who, claim).await?);
            // Under the owner's admission lock, so two finals cannot both take a part.
            for p in &parts {
                if let Some(other) = state.meta.final_using(&p.id).await? {
                    return Err(ApiError::bad(format!(
                        "partial upload {} is already used by the final upload {other}; a part is used once",
                        p.id
                    )));
                }
            }
            (ConcatKind::Final(ids.clone()), sum)
        }
    };
    // The quota and the staging limit hold across parallel requests: the new row is written
    // while the user's admission lock is held.
    let admitted = match final_admitted {
        Some(a) => a,
        None => {
            let claim = quota::Claim { adds: length.unwrap_or(0), replaces: 0, staged: true, opens: true };
            quota::admit(&state, &who, claim).await?
        }
    };
    let expires_at = next_expiry(&state);
    let new = NewUpload {
        id: id.clone(),
        length: if is_final { final_length } else { length },
        metadata: metadata.raw().to_owned(),
        concat: concat_kind,
        expires_at: Some(expires_at),
        owner: who.user_id(),
        tree_path,
        relay_to,
    };
    if !is_final {
        state.blobs.create(&id, length == Some(0)).await?;
    }
    state.meta.create_upload(&new, unix_now()).await?;
    drop(admitted);
    tracing::info!(upload = %id, length = ?new.length, "upload created");

    let mut out = HeaderMap::new();
    out.insert(header::LOCATION, location(&state, &headers, &id)?);
    out.insert(UPLOAD_EXPIRES, http_date(expires_at));

    if let Some(UploadConcat::Final(ids)) = &concat {
        if concat::adopt_parts(&state, &id, ids).await? {
            tracing::info!(upload = %id, parts = ids.len(), "final upload holds its parts in place");
        }
        concat::try_assemble(&state, &id).await?;
        return Ok((StatusCode::CREATED, out).into_response());
    }
    if length != Some(0) && !body {
        return Ok((StatusCode::CREATED, out).into_response());
    }
    let rec = state.meta.get(&id).await?.ok_or_else(|| ApiError::Internal("new upload vanished".into()))?;
    if length == Some(0) {
        let mut guard = state.locks.acquire(&id, LOCK_WAIT).await.ok_or(ApiError::Locked)?;
        let empty = sha2::Sha256::digest([]);
        super::complete::complete_upload(&state, &mut guard, &rec, 0, 0, empty.into(), &Default::default()).await?;
    } else if body {
        let mut guard = state.locks.acquire(&id, LOCK_WAIT).await.ok_or(ApiError::Locked)?;
        let (_held, room) = quota::for_body(&state, &who, rec.length, content_length(&headers)).await?;
        let result = receive::receive(&state, &mut guard, &rec, &headers, req.into_body(), checksum, room).await;
        match result {
            Ok(r) => {
                out.insert(UPLOAD_OFFSET, HeaderValue::from(r.offset));
            }
            Err(e) => {
                // The upload exists; tell the client where, so it can resume.
                let mut resp = e.into_response();
                resp.headers_mut().extend(out);
                return Ok(resp);
            }
        }
    }
    Ok((StatusCode::CREATED, out).into_response())
}

use sha2::Digest as _;

/// `Location` of a new upload: relative, or absolute from `X-Forwarded-*` only when the
/// server is configured to sit behind a proxy.
fn location(state: &AppState, headers: &HeaderMap, id: &UploadId) -> Result<HeaderValue, ApiError> {
    let path = format!("/tus/{id}");
    let forwarded = state.config.behind_proxy.then(|| header_str(headers, "x-forwarded-host").ok().flatten()).flatten();
    let value = match forwarded {
        Some(host) if host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b)) => {
            let proto = match header_str(headers, "x-forwarded-proto").ok().flatten() {
                Some("https") => "https",
                _ => "http",
            };
            format!("{proto}://{host}{path}")
        }
        _ => path,
    };
    HeaderValue::from_str(&value).map_err(|_| ApiError::Internal("bad Location".into()))
}

/// A relay item made from a file the server holds already (instant send, `api/dedup`):
/// a new relay upload of `size` bytes for `recipients` (ids, as [`relay_recipients`] gives
/// them) with `metadata`, filled from `source` through the ordinary data path, so it is
/// staged, hashed, checked against the metadata's `sha256` and made an item exactly as if
/// the sender had uploaded it. Returns the item's id. A copy that fails is deleted.
pub(crate) async fn relay_from_stored(
    state: &AppState,
    who: &Identity,
    metadata: String,
    recipients: String,
    source: std::sync::Arc<dyn ferry_store::BlobRead>,
    size: u64,
) -> Result<UploadId, ApiError> {
    let claim = quota::Claim { adds: size, replaces: 0, staged: true, opens: true };
    let admitted = quota::admit(state, who, claim).await?;
    let id = UploadId::random();
    let new = NewUpload {
        id: id.clone(),
        length: Some(size),
        metadata,
        concat: ConcatKind::None,
        expires_at: Some(next_expiry(state)),
        owner: who.user_id(),
        tree_path: None,
        relay_to: Some(recipients),
    };
    state.blobs.create(&id, size == 0).await?;
    state.meta.create_upload(&new, unix_now()).await?;
    drop(admitted);
    let copied = async {
        let (mut guard, rec) = super::upload::take(state, &id, who, true).await?;
        if size == 0 {
            return super::upload::complete_as_is(state, &mut guard, &rec).await.map(|_| ());
        }
        let (held, room) = quota::for_body(state, who, rec.length, None).await?;
        let body = axum::body::Body::from_stream(crate::files::body::region(
            source,
            0,
            size,
            tokio_util::sync::CancellationToken::new(),
        ));
        let r = Box::pin(receive::receive(state, &mut guard, &rec, &HeaderMap::new(), body, None, room)).await;
        drop(held);
        match r?.completed {
            Some(_) => Ok(()),
            None => Err(ApiError::Internal("the server's copy ended early".into())),
        }
    };
    if let Err(e) = copied.await {
        let _ = super::upload::delete(state, &id, who).await;
        return Err(e);
    }
    tracing::info!(item = %id, bytes = size, "relay item made from a stored copy");
    Ok(id)
}
