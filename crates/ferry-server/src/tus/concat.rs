//! Concatenation: a final upload assembled from its partial uploads.
//!
//! The final's bytes are its parts' bytes in place when the store hosts parts (one pass to
//! hash them), or else one sequential copy into its own blob that also computes the
//! SHA-256; then it is completed like any named upload. Partial uploads stay (until
//! they expire) so a client that retries the final POST still finds them.

use ferry_core::UploadId;
use ferry_store::{ConcatKind, StoreError, UploadRecord, UploadState};
use sha2::{Digest, Sha256};

use super::{LOCK_WAIT, complete};
use crate::auth::Identity;
use crate::{ApiError, AppState};

/// The partial uploads of a final upload, checked to exist and be partials.
pub(crate) async fn load_parts(
    state: &AppState,
    ids: &[UploadId],
    who: &Identity,
) -> Result<Vec<UploadRecord>, ApiError> {
    let mut parts = Vec::with_capacity(ids.len());
    for id in ids {
        let rec =
            state.meta.get(id).await?.ok_or_else(|| ApiError::bad(format!("partial upload {id} does not exist")))?;
        if !who.owns(rec.owner) {
            return Err(ApiError::Forbidden(format!("partial upload {id} belongs to another user")));
        }
        if rec.concat != ConcatKind::Partial {
            return Err(ApiError::bad(format!("upload {id} is not a partial upload (Upload-Concat: partial)")));
        }
        if !matches!(rec.state, UploadState::Active | UploadState::Complete) {
            return Err(ApiError::bad(format!("partial upload {id} is gone (expired, failed or deleted)")));
        }
        if let Some((host, _)) = &rec.host
            && state.meta.get(host).await?.is_some_and(|h| h.state == UploadState::Complete)
        {
            return Err(ApiError::bad(format!(
                "partial upload {id} was already joined into a file and cannot be reused"
            )));
        }
        parts.push(rec);
    }
    Ok(parts)
}

/// Lets a new final upload hold its parts' bytes when every part is still empty, so its
/// assembly needs no copy. Takes each part's lock (ending any in-flight PATCH, which then
/// commits, making that part ineligible). Returns whether the parts were adopted.
pub(crate) async fn adopt_parts(state: &AppState, final_id: &UploadId, ids: &[UploadId]) -> Result<bool, ApiError> {
    if !state.blobs.hosts_parts() {
        return Ok(false);
    }
    let mut seen = std::collections::HashSet::new();
    if !ids.iter().all(|i| seen.insert(i.clone())) {
        return Ok(false); // a part listed twice cannot live in two places
    }
    let mut guards = Vec::with_capacity(ids.len());
    for id in ids {
        guards.push(state.locks.acquire(id, LOCK_WAIT).await.ok_or(ApiError::Locked)?);
    }
    let parts = load_parts(state, ids, &Identity::Open).await?;
    if parts.iter().any(|p| p.state != UploadState::Active || p.offset != 0 || p.host.is_some() || p.length.is_none()) {
        return Ok(false);
    }
    let mut base = 0;
    let plan: Vec<(UploadId, u64)> = parts
        .iter()
        .map(|p| {
            let here = base;
            base += p.length.unwrap_or(0);
            (p.id.clone(), here)
        })
        .collect();
    state.blobs.create_host(final_id, base).await?;
    if !state.meta.adopt(final_id, &plan).await? {
        state.blobs.remove(final_id).await?;
        return Ok(false);
    }
    for (id, _) in &plan {
        state.blobs.remove(id).await?;
    }
    drop(guards);
    Ok(true)
}

/// Assembles final upload `id` if all its parts are complete. Returns whether the final
/// upload is complete afterwards.
pub(crate) async fn try_assemble(state: &AppState, id: &UploadId) -> Result<bool, ApiError> {
    let _guard = state.locks.acquire(id, LOCK_WAIT).await.ok_or(ApiError::Locked)?;
    let Some(rec) = state.meta.get(id).await? else { return Ok(false) };
    if rec.state != UploadState::Active {
        return Ok(rec.state == UploadState::Complete);
    }
    let ConcatKind::Final(ids) = &rec.concat else { return Ok(false) };
    let parts = match load_parts(state, ids, &Identity::Open).await {
        Ok(parts) => parts,
        Err(e) => {
            complete::fail(state, id, &e.to_string()).await?;
            return Err(e);
        }
    };
    if parts.iter().any(|p| p.state != UploadState::Complete) {
        return Ok(false);
    }
    let length: u64 = parts.iter().filter_map(|p| p.length).sum();
    if length > state.config.max_size {
        let reason = format!("the parts add up to {length} bytes, more than the server's maximum");
        complete::fail(state, id, &reason).await?;
        return Err(ApiError::TooLarge(reason));
    }
    // Parts adopted by this final upload already sit in its file, in order: hash, no copy.
    let mut expected_base = 0;
    let in_place = parts.iter().all(|p| {
        let ok = p.host.as_ref().is_some_and(|(h, base)| h == id && *base == expected_base);
        expected_base += p.length.unwrap_or(0);
        ok
    });
    let (sha, blob) = if in_place {
        let reader = state.blobs.reader(id, None).await?;
        blocking(move || {
            let mut sha = Sha256::new();
            reader.scan(0, length, &mut |b| sha.update(b))?;
            Ok((sha.finalize().into(), None))
        })
        .await?
    } else {
        let mut sources = Vec::with_capacity(parts.len());
        for p in &parts {
            sources.push((state.blobs.reader(&p.id, p.host.as_ref()).await?, p.length.unwrap_or(0)));
        }
        let mut out = state.blobs.writer(id, None, 0).await?;
        blocking(move || {
            let mut sha = Sha256::new();
            for (src, len) in sources {
                let mut failed = None;
                src.scan(0, len, &mut |b| {
                    if failed.is_none() {
                        failed = out.write(b).err();
                        sha.update(b);
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            out.sync()?;
            Ok((sha.finalize().into(), out.progress(length)))
        })
        .await?
    };
    let progress = ferry_store::Progress { blob, ..Default::default() };
    complete::finish_named(state, &rec, 0, length, sha, &progress).await?;
    Ok(true)
}

/// Runs store reads and writes on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}
