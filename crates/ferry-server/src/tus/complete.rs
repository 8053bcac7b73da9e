//! Completion: the last byte is durable, now verify and publish.
//!
//! Order matters for crash safety: the database first records the upload as complete with
//! its digest and destination (`placed = 0`), then the staging file is renamed into the
//! tree, then `placed = 1`. A crash between the two steps is finished by recovery at the
//! next start; a crash before the first leaves the upload resumable at its old offset.

use ferry_core::digest::{parse_sha256_text, to_hex};
use ferry_core::{TreePath, UploadId, UploadMetadata};
use ferry_store::{ConcatKind, FileStat, Progress, TreeFileRecord, UploadRecord, UploadState};

use super::{concat, next_expiry};
use crate::locks::UploadGuard;
use crate::{ApiError, AppState};

/// Where a finished upload goes: `dir`/`filename` from its metadata (`name` is accepted
/// for `filename`), or its id when it has no name. `dir` is relative to `home` (the
/// user's home, or the tree root without accounts) unless it starts with `/`.
/// Whether `who` may place a file at `dest`: the right to write, checked on the path as
/// given and again where it really leads (links followed), and the filesystem checks of
/// placement, run off the async threads (bounded by the path's depth).
pub(crate) async fn authorise_destination(
    state: &crate::AppState,
    who: &crate::auth::Identity,
    dest: &TreePath,
) -> Result<(), ApiError> {
    if !who.may_write(dest) {
        return Err(ApiError::Forbidden(format!("you may not write to /{}", dest.parent())));
    }
    state.blobs.check_placeable(dest).await?;
    let real = state.blobs.real_tree_path(dest).await?;
    if !who.may_write(&real) {
        return Err(ApiError::Forbidden(format!("you may not write to /{} (a link leads there)", real.parent())));
    }
    Ok(())
}

pub(crate) fn destination(meta: &UploadMetadata, id: &UploadId, home: &TreePath) -> Result<TreePath, ApiError> {
    let name = meta.get("filename").or_else(|| meta.get("name"));
    let name = match name {
        Some(raw) => std::str::from_utf8(raw).map_err(|_| ApiError::bad("metadata filename is not UTF-8"))?,
        None => id.as_str(),
    };
    let file = TreePath::parse(name).map_err(|e| ApiError::bad(format!("metadata filename: {e}")))?;
    if file.is_root() {
        return Err(ApiError::bad("metadata filename is empty"));
    }
    let dir = match meta.get("dir") {
        Some(raw) => {
            let dir = std::str::from_utf8(raw).map_err(|_| ApiError::bad("metadata dir is not UTF-8"))?;
            let (base, rel) = match dir.strip_prefix('/') {
                Some(abs) => (TreePath::root(), abs),
                None => (home.clone(), dir),
            };
            base.checked_join(&TreePath::parse(rel).map_err(|e| ApiError::bad(format!("metadata dir: {e}")))?)
                .map_err(|e| ApiError::bad(format!("metadata dir: {e}")))?
        }
        None => home.clone(),
    };
    dir.checked_join(&file).map_err(|e| ApiError::bad(format!("destination: {e}")))
}

/// The whole-file SHA-256 a client declared in metadata (`sha256`, hex or base64).
pub(crate) fn declared_sha256(meta: &UploadMetadata) -> Result<Option<[u8; 32]>, ApiError> {
    match meta.get_str("sha256") {
        None => Ok(None),
        Some(text) => parse_sha256_text(text)
            .map(Some)
            .ok_or_else(|| ApiError::bad("metadata sha256 must be 64 hex digits or base64 of 32 bytes")),
    }
}

/// Completes `rec`, whose bytes `0..length` are durable in staging and whose committed
/// offset is `expected`.
pub(crate) async fn complete_upload(
    state: &AppState,
    guard: &mut UploadGuard,
    rec: &UploadRecord,
    expected: u64,
    length: u64,
    sha: [u8; 32],
    progress: &Progress,
) -> Result<(), ApiError> {
    guard.state.hasher = None;
    match &rec.concat {
        ConcatKind::Partial => {
            let ok =
                state.meta.complete(&rec.id, expected, length, &sha, None, Some(next_expiry(state)), progress).await?;
            if !ok {
                return Err(ApiError::Conflict("the upload changed under this request".into()));
            }
            for waiting in state.meta.finals_waiting_on(&rec.id).await? {
                if let Err(e) = concat::try_assemble(state, &waiting.id).await {
                    tracing::warn!(upload = %waiting.id, error = %e, "final upload could not be assembled");
                }
            }
            Ok(())
        }
        ConcatKind::None | ConcatKind::Final(_) => finish_named(state, rec, expected, length, sha, progress).await,
    }
}

/// Verifies a declared digest, records completion, and moves the staging file into the tree.
pub(crate) async fn finish_named(
    state: &AppState,
    rec: &UploadRecord,
    expected: u64,
    length: u64,
    sha: [u8; 32],
    progress: &Progress,
) -> Result<(), ApiError> {
    let meta = UploadMetadata::parse(&rec.metadata).unwrap_or_default();
    if let Some(declared) = declared_sha256(&meta)?
        && declared != sha
    {
        let reason = format!(
            "whole-file SHA-256 mismatch: declared {}, received {}; the upload was discarded",
            to_hex(&declared),
            to_hex(&sha)
        );
        fail(state, &rec.id, &reason).await?;
        return Err(ApiError::ChecksumMismatch(reason));
    }
    if let Some(recipients) = &rec.relay_to {
        return finish_relay(state, rec, &meta, recipients, expected, (length, sha), progress).await;
    }
    let dest = match &rec.tree_path {
        Some(p) => TreePath::parse(p).map_err(|e| ApiError::Internal(e.to_string()))?,
        None => destination(&meta, &rec.id, &TreePath::root())?,
    };
    let dest_text = dest.to_string();
    if !state.meta.complete(&rec.id, expected, length, &sha, Some(&dest_text), None, progress).await? {
        return Err(ApiError::Conflict("the upload changed under this request".into()));
    }
    // A placement that fails (a directory in the way, a full disk) keeps the complete,
    // verified upload: it is placed on its next HEAD or PATCH, or at the next start.
    place(state, &rec.id, &dest, &sha).await.map_err(unplaced)?;
    state.locks.forget(&rec.id);
    Ok(())
}

/// The answer when a complete upload could not be placed (it is kept).
fn unplaced(e: ApiError) -> ApiError {
    let kept = "the upload is complete and kept on the server, but placing it failed";
    let retry = "it is placed on the next HEAD or PATCH once that is fixed";
    match e {
        ApiError::Conflict(m) => ApiError::Conflict(format!("{kept}: {m}; {retry}")),
        ApiError::BadRequest(m) => ApiError::Conflict(format!("{kept}: {m}")),
        ApiError::InsufficientStorage => ApiError::InsufficientStorage,
        other => ApiError::Internal(format!("{kept}: {other}; {retry}")),
    }
}

/// Places a complete upload that an earlier attempt could not place (its staging file is
/// still there). Nothing to do for anything else.
pub(crate) async fn place_if_pending(state: &AppState, rec: &UploadRecord) -> Result<(), ApiError> {
    let (Some(path), Some(sha), UploadState::Complete) = (rec.tree_path.as_deref(), rec.sha256, rec.state) else {
        return Ok(());
    };
    if rec.relay_to.is_some() || !state.blobs.exists(&rec.id).await? {
        return Ok(());
    }
    let dest = TreePath::parse(path).map_err(|e| ApiError::Internal(e.to_string()))?;
    place(state, &rec.id, &dest, &sha).await.map_err(unplaced)
}

/// A relay upload is complete: it becomes an item for its recipients, in the same
/// transaction; its bytes stay where they are (the staging file) until every delivery ends.
async fn finish_relay(
    state: &AppState,
    rec: &UploadRecord,
    meta: &UploadMetadata,
    recipients: &str,
    expected: u64,
    (length, sha): (u64, [u8; 32]),
    progress: &Progress,
) -> Result<(), ApiError> {
    let sender = rec.owner.ok_or_else(|| ApiError::bad("the relay needs accounts"))?;
    let ids: Vec<i64> = recipients.split(',').filter_map(|r| r.parse().ok()).collect();
    let shape = item_shape(meta, Some(length)).and_then(|shape| Ok((shape, item_name(meta, rec.id.as_str())?)));
    let ((kind, continues), name) = match shape {
        Ok(shape) => shape,
        Err(e) => {
            fail(state, &rec.id, &e.to_string()).await?;
            return Err(e);
        }
    };
    let now = ferry_store::unix_now();
    let item = ferry_store::RelayItem {
        id: rec.id.to_string(),
        sender: String::new(),
        name,
        size: length,
        sha256: sha,
        created_at: now,
        expires_at: now + state.config.relay_ttl.as_secs() as i64,
        kind,
        continues,
    };
    if !state.meta.complete_relay(&rec.id, expected, &item, sender, &ids, progress).await? {
        return Err(ApiError::Conflict("the upload changed under this request".into()));
    }
    state.locks.forget(&rec.id);
    state.metrics.uploads_completed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state.metrics.relay_items_created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let json = serde_json::json!({ "id": item.id, "name": item.name, "size": item.size, "sha256": to_hex(&sha) });
    for r in &ids {
        state.events.notify(*r, "item", json.clone());
    }
    tracing::info!(item = %rec.id, recipients = ids.len(), bytes = length, "relay item ready");
    Ok(())
}

/// Longest text message sent through the relay (bytes of UTF-8).
pub(crate) const MAX_TEXT: u64 = 64 << 10;

/// What a relay upload's metadata says it is: `relay_kind` (`file` or `text`; a text is at
/// most [`MAX_TEXT`] bytes) and `relay_continues` (`OFFSET SIZE SHA256HEX`: the rest of a
/// direct transfer, its bytes the whole file's from OFFSET on). `length` is the upload's,
/// when known.
pub(crate) fn item_shape(
    meta: &UploadMetadata,
    length: Option<u64>,
) -> Result<(ferry_store::ItemKind, Option<ferry_store::Continuation>), ApiError> {
    let kind = match meta.get_str("relay_kind") {
        None => ferry_store::ItemKind::File,
        Some(k) => ferry_store::ItemKind::parse(k).ok_or_else(|| ApiError::bad(format!("unknown relay_kind {k:?}")))?,
    };
    if kind == ferry_store::ItemKind::Text && length.is_none_or(|l| l > MAX_TEXT) {
        return Err(ApiError::bad(format!("a text message has a known length of at most {MAX_TEXT} bytes")));
    }
    if kind == ferry_store::ItemKind::Folder && (length != Some(0) || meta.get("relay_continues").is_some()) {
        return Err(ApiError::bad("a folder item has length 0"));
    }
    let continues = match meta.get_str("relay_continues") {
        None => None,
        Some(c) => {
            let c = ferry_store::Continuation::parse(c)
                .filter(|c| c.offset > 0 && c.offset < c.size && kind == ferry_store::ItemKind::File)
                .ok_or_else(|| {
                    ApiError::bad("relay_continues must be OFFSET SIZE SHA256 (hex) of a file, 0 < OFFSET < SIZE")
                })?;
            if length.is_some_and(|l| c.offset.checked_add(l) != Some(c.size)) {
                return Err(ApiError::bad("relay_continues: OFFSET plus the upload's length is not SIZE"));
            }
            Some(c)
        }
    };
    Ok((kind, continues))
}

/// The name a relay item shows its recipients: the file name (`filename` metadata, its last
/// component; `fallback` without one), inside `relay_folder` when the item is part of a
/// folder sent whole (a relative path, confined as any tree path: no `..`, no absolute
/// path, at most 1024 bytes and 32 levels together).
pub(crate) fn item_name(meta: &UploadMetadata, fallback: &str) -> Result<String, ApiError> {
    let leaf = meta.get_str("filename").or_else(|| meta.get_str("name")).unwrap_or(fallback);
    let leaf = TreePath::parse(leaf).ok().and_then(|p| p.file_name().map(str::to_owned)).unwrap_or(fallback.to_owned());
    let Some(folder) = meta.get_str("relay_folder") else { return Ok(leaf) };
    let folder = TreePath::parse(folder).map_err(|e| ApiError::bad(format!("relay_folder: {e}")))?;
    let leaf = TreePath::parse(&leaf).map_err(|e| ApiError::bad(format!("filename: {e}")))?;
    let name = folder.checked_join(&leaf).map_err(|e| ApiError::bad(format!("relay_folder: {e}")))?;
    Ok(name.to_string())
}

/// Publishes the bytes of `id` at `dest` and records its digest. Idempotent enough for
/// recovery: the caller only calls it while the upload's blob exists.
pub(crate) async fn place(state: &AppState, id: &UploadId, dest: &TreePath, sha: &[u8; 32]) -> Result<(), ApiError> {
    let placed = state.blobs.publish(id, dest).await?;
    record_placed(state, id, dest, &placed, sha).await?;
    tracing::info!(upload = %id, path = %dest, bytes = placed.size, sha256 = %to_hex(sha), "upload complete");
    Ok(())
}

/// Records the digest of an upload's file now in the tree at `dest` (as `placed`
/// describes it), and the upload as placed.
pub(crate) async fn record_placed(
    state: &AppState,
    id: &UploadId,
    dest: &TreePath,
    placed: &FileStat,
    sha: &[u8; 32],
) -> Result<(), ApiError> {
    let rec = TreeFileRecord { size: placed.size, mtime_ns: placed.version, sha256: *sha };
    state.meta.record_tree_file(&dest.to_string(), &rec).await?;
    state.meta.mark_placed(id).await?;
    state.metrics.uploads_completed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Marks an upload failed and frees its bytes.
pub(crate) async fn fail(state: &AppState, id: &UploadId, reason: &str) -> Result<(), ApiError> {
    state.meta.finish(id, UploadState::Failed, Some(reason)).await?;
    state.metrics.uploads_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    release_bytes(state, id).await?;
    state.locks.forget(id);
    Ok(())
}

/// Frees the staging bytes of an upload that reached a final state (expired, terminated,
/// failed). A final upload's file is kept while live partial uploads still have their
/// bytes in it; a partial upload's end may be what lets its dead host's file go.
pub(crate) async fn release_bytes(state: &AppState, id: &UploadId) -> Result<(), ApiError> {
    if !state.meta.hosts_live_parts(id).await? {
        state.blobs.remove(id).await?;
    }
    if let Some(rec) = state.meta.get(id).await?
        && let Some((host, _)) = &rec.host
        && let Some(h) = state.meta.get(host).await?
        && !matches!(h.state, UploadState::Active | UploadState::Complete)
        && !state.meta.hosts_live_parts(host).await?
    {
        state.blobs.remove(host).await?;
    }
    Ok(())
}
