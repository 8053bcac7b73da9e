//! Concatenation: a final upload assembled from its partial uploads.
//!
//! The final's bytes are written to its own staging file by one sequential copy that also
//! computes the SHA-256, then completed like any named upload. Partial uploads stay (until
//! they expire) so a client that retries the final POST still finds them.

use std::fs::File;
use std::io::{self, Read, Write};

use ferry_core::UploadId;
use ferry_store::{ConcatKind, UploadRecord, UploadState};
use sha2::{Digest, Sha256};

use super::{LOCK_WAIT, complete};
use crate::{ApiError, AppState};

/// The partial uploads of a final upload, checked to exist and be partials.
pub(crate) async fn load_parts(state: &AppState, ids: &[UploadId]) -> Result<Vec<UploadRecord>, ApiError> {
    let mut parts = Vec::with_capacity(ids.len());
    for id in ids {
        let rec =
            state.meta.get(id).await?.ok_or_else(|| ApiError::bad(format!("partial upload {id} does not exist")))?;
        if rec.concat != ConcatKind::Partial {
            return Err(ApiError::bad(format!("upload {id} is not a partial upload (Upload-Concat: partial)")));
        }
        if !matches!(rec.state, UploadState::Active | UploadState::Complete) {
            return Err(ApiError::bad(format!("partial upload {id} is gone (expired, failed or deleted)")));
        }
        parts.push(rec);
    }
    Ok(parts)
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
    let parts = match load_parts(state, ids).await {
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
    let sources: Vec<_> = parts.iter().map(|p| state.staging.path_of(&p.id)).collect();
    let staging = state.staging.clone();
    let target = id.clone();
    let sha = tokio::task::spawn_blocking(move || -> io::Result<[u8; 32]> {
        let mut out = staging.open_at(&target, 0)?;
        let mut sha = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for src in sources {
            let mut f = File::open(src)?;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                sha.update(&buf[..n]);
            }
        }
        out.sync_data()?;
        Ok(sha.finalize().into())
    })
    .await??;
    complete::finish_named(state, &rec, 0, length, sha).await?;
    Ok(true)
}
