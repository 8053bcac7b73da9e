//! The offline-file relay: inbox, outbox, content, acknowledgement and decline.
//!
//! A file is sent through tus with `relay_to` metadata (recipient names, comma-separated).
//! When it completes and verifies, one item with a waiting delivery per recipient is
//! recorded in the same step as the upload's completion; its bytes stay in the upload's
//! staging file (so nothing is moved and nothing half-written is ever an item). Bytes are
//! deleted only when every delivery has ended: acknowledged with the right SHA-256,
//! declined, or expired.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferry_core::UploadId;
use ferry_core::digest::{parse_sha256_text, to_hex};
use ferry_store::{DeliveryState, FileStat, RelayItem};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Identity;
use crate::{ApiError, AppState};

fn user(who: &Identity) -> Result<i64, ApiError> {
    who.user_id().ok_or_else(|| ApiError::bad("the relay needs accounts; this server runs with --no-auth"))
}

fn item_json(i: &RelayItem) -> serde_json::Value {
    json!({
        "id": i.id, "from": i.sender, "name": i.name, "size": i.size,
        "sha256": to_hex(&i.sha256), "created": i.created_at, "expires": i.expires_at, "kind": i.kind.as_str(),
        "continues": i.continues.map(|c| json!({ "offset": c.offset, "size": c.size, "sha256": to_hex(&c.sha256) })),
    })
}

async fn load(state: &AppState, id: &str, me: i64) -> Result<RelayItem, ApiError> {
    if UploadId::parse(id).is_none() {
        return Err(ApiError::NotFound("no such item".into()));
    }
    state.meta.relay_item_for(id, me).await?.ok_or_else(|| ApiError::NotFound("no such item".into()))
}

/// `GET /api/relay/inbox`: items waiting for me.
pub(super) async fn inbox(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, ApiError> {
    let me = user(&who)?;
    let items: Vec<_> = state
        .meta
        .relay_inbox(me)
        .await?
        .iter()
        .map(|(i, s)| {
            let mut v = item_json(i);
            v["state"] = json!(s.as_str());
            v
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// `GET /api/relay/outbox`: what I sent, per recipient.
pub(super) async fn outbox(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, ApiError> {
    let me = user(&who)?;
    let items: Vec<_> = state
        .meta
        .relay_outbox(me)
        .await?
        .iter()
        .map(|(i, ds)| {
            let mut v = item_json(i);
            let progress = state.relay_progress.lock().unwrap_or_else(|p| p.into_inner());
            v["recipients"] = ds
                .iter()
                .map(|d| {
                    let bytes = match d.state {
                        DeliveryState::Downloading => {
                            progress.get(&(i.id.clone(), d.recipient_id)).copied().unwrap_or(0)
                        }
                        DeliveryState::Delivered => i.size,
                        _ => 0,
                    };
                    json!({ "user": d.recipient, "state": d.state.as_str(), "updated": d.updated_at, "bytes": bytes })
                })
                .collect();
            v
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// Tells the sender that a recipient's delivery changed.
async fn notify_sender(state: &AppState, item: &RelayItem, recipient: &str, to: DeliveryState) {
    if let Ok(Some((sender, _))) = state.meta.user_by_name(&item.sender).await {
        state.events.notify(
            sender.id,
            "delivery",
            json!({ "id": item.id, "name": item.name, "user": recipient, "state": to.as_str() }),
        );
    }
}

/// Frees an item's bytes once no delivery is open.
pub(crate) async fn release_if_done(state: &AppState, item_id: &str) -> Result<(), ApiError> {
    if state.meta.relay_item_done(item_id).await?
        && let Some(id) = UploadId::parse(item_id)
    {
        state.blobs.remove(&id).await?;
        tracing::info!(item = item_id, "relay item finished; bytes deleted");
    }
    Ok(())
}

/// `GET|HEAD /api/relay/items/{id}/content`: the bytes, resumable, with `Repr-Digest`.
pub(super) async fn content(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let me = user(&who)?;
    let item = load(&state, &id, me).await?;
    let upload = UploadId::parse(&item.id).ok_or_else(|| ApiError::NotFound("no such item".into()))?;
    let blob =
        state.blobs.reader(&upload, None).await.map_err(|_| ApiError::Gone("this item's bytes are gone".into()))?;
    // The bytes never change once the item exists: its creation is their version.
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(item.created_at.max(0) as u64);
    let stat = FileStat { is_dir: false, size: item.size, modified: created, version: item.created_at };
    if method == Method::GET && state.meta.set_delivery(&item.id, me, DeliveryState::Downloading).await? {
        notify_sender(&state, &item, &who_name(&who), DeliveryState::Downloading).await;
    }
    let resp = crate::files::send_file(&state, blob, &stat, &item.name, Some(item.sha256), true, &method, &headers)?;
    if method != Method::GET || resp.status() != StatusCode::OK && resp.status() != StatusCode::PARTIAL_CONTENT {
        return Ok(resp);
    }
    // Count what reaches the recipient, so the sender's outbox can show progress.
    let start = headers
        .get(axum::http::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|_| resp.status() == StatusCode::PARTIAL_CONTENT)
        .unwrap_or(0);
    let progress = state.relay_progress.clone();
    let key = (item.id.clone(), me);
    let mut sent = start;
    Ok(resp.map(move |body| {
        let counted = futures_util::StreamExt::inspect(body.into_data_stream(), move |chunk| {
            if let Ok(c) = chunk {
                sent += c.len() as u64;
                let mut map = progress.lock().unwrap_or_else(|p| p.into_inner());
                let e = map.entry(key.clone()).or_default();
                *e = (*e).max(sent);
            }
        });
        axum::body::Body::from_stream(counted)
    }))
}

fn who_name(who: &Identity) -> String {
    match who {
        Identity::User(u, _) => u.name.clone(),
        _ => String::new(),
    }
}

#[derive(Deserialize)]
pub(super) struct Ack {
    sha256: String,
}

/// `POST /api/relay/items/{id}/ack {"sha256": …}`: I have a verified copy.
pub(super) async fn ack(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
    Json(body): Json<Ack>,
) -> Result<Response, ApiError> {
    let me = user(&who)?;
    let item = load(&state, &id, me).await?;
    let sha = parse_sha256_text(&body.sha256).ok_or_else(|| ApiError::bad("sha256 must be 64 hex digits"))?;
    if sha != item.sha256 {
        return Err(ApiError::bad("the acknowledged SHA-256 is not the item's; nothing changed (download it again)"));
    }
    if !state.meta.set_delivery(&item.id, me, DeliveryState::Delivered).await? {
        // The same acknowledgement again (its answer was lost, say to a server restart).
        let mine = state.meta.relay_deliveries(&item.id).await?.into_iter().find(|d| d.recipient_id == me);
        if mine.is_some_and(|d| d.state == DeliveryState::Delivered) {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        return Err(ApiError::Conflict("this delivery has already ended".into()));
    }
    state.metrics.relay_items_delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    notify_sender(&state, &item, &who_name(&who), DeliveryState::Delivered).await;
    release_if_done(&state, &item.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/relay/items/{id}/decline`.
pub(super) async fn decline(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let me = user(&who)?;
    let item = load(&state, &id, me).await?;
    if !state.meta.set_delivery(&item.id, me, DeliveryState::Declined).await? {
        return Err(ApiError::Conflict("this delivery has already ended (or the item is not for you)".into()));
    }
    notify_sender(&state, &item, &who_name(&who), DeliveryState::Declined).await;
    release_if_done(&state, &item.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
