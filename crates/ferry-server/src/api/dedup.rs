//! Instant upload with proof of possession.
//!
//! `POST /api/dedup {size, sha256, filename, dir}`: if the tree already holds a file with
//! that content, the server answers with a challenge: a few random byte ranges. The client
//! proves it has the file by sending the SHA-256 of each range, read from its own copy
//! (`POST /api/dedup/{challenge} {proofs}`); only then is the server's copy placed at the
//! requested path. Knowing a file's hash alone therefore never gets anyone its content.
//! Challenges are single-use and expire after five minutes.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferry_core::digest::{parse_sha256_text, to_hex};
use ferry_core::{TreePath, UploadId};
use ferry_store::TreeFileRecord;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::auth::Identity;
use crate::{ApiError, AppState};

const CHALLENGE_RANGES: usize = 4;
const RANGE_LEN: u64 = 64 << 10;
const CHALLENGE_TTL: Duration = Duration::from_secs(300);
const MAX_CHALLENGES: usize = 10_000;

#[derive(Debug)]
struct Challenge {
    source: TreePath,
    dest: TreePath,
    size: u64,
    sha256: [u8; 32],
    ranges: Vec<(u64, u64)>,
    created: Instant,
}

/// Open challenges, in memory (a restart only costs the client a normal upload).
#[derive(Debug, Default)]
pub struct ChallengeStore {
    open: Mutex<HashMap<String, Challenge>>,
}

#[derive(Deserialize)]
pub(super) struct BeginRequest {
    size: u64,
    sha256: String,
    filename: String,
    #[serde(default)]
    dir: Option<String>,
}

#[derive(Serialize)]
struct RangeSpec {
    offset: u64,
    length: u64,
}

#[derive(Serialize)]
struct BeginResponse {
    challenge: String,
    ranges: Vec<RangeSpec>,
}

#[derive(Deserialize)]
pub(super) struct ProveRequest {
    proofs: Vec<String>,
}

#[derive(Serialize)]
struct Placed {
    path: String,
    size: u64,
    sha256: String,
}

/// Where the copy goes: like an upload, `dir` is relative to the caller's home unless it
/// starts with `/`.
fn destination(who: &Identity, filename: &str, dir: Option<&str>) -> Result<TreePath, ApiError> {
    let file = TreePath::parse(filename).map_err(|e| ApiError::bad(format!("filename: {e}")))?;
    if file.is_root() {
        return Err(ApiError::bad("filename is empty"));
    }
    let (base, rel) = match dir.unwrap_or("").strip_prefix('/') {
        Some(abs) => (TreePath::root(), abs),
        None => (who.home(), dir.unwrap_or("")),
    };
    let dir = TreePath::parse(rel).map_err(|e| ApiError::bad(format!("dir: {e}")))?;
    let dest = base.join(&dir).join(&file);
    if !who.may_write(&dest) {
        return Err(ApiError::Forbidden(format!("you may not write to /{}", dest.parent())));
    }
    Ok(dest)
}

pub(super) async fn begin(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Json(req): Json<BeginRequest>,
) -> Result<Response, ApiError> {
    let sha = parse_sha256_text(&req.sha256).ok_or_else(|| ApiError::bad("sha256 must be 64 hex digits"))?;
    let dest = destination(&who, &req.filename, req.dir.as_deref())?;
    state.tree.check_placeable(&dest)?;
    if let Some((user, quota)) = who.quota() {
        let used = state.meta.usage(user, &who.home().to_string()).await?;
        if used.saturating_add(req.size) > quota {
            return Err(ApiError::TooLarge(format!("quota exceeded: {used} of {quota} bytes used")));
        }
    }
    let Some(source) = find_copy(&state, &sha, req.size).await? else {
        return Err(ApiError::NotFound("the server has no file with this content; upload it".into()));
    };
    let ranges: Vec<(u64, u64)> = {
        let mut rng = rand::rng();
        (0..CHALLENGE_RANGES)
            .map(|_| {
                let len = RANGE_LEN.min(req.size);
                let offset = if req.size > len { rng.random_range(0..=req.size - len) } else { 0 };
                (offset, len)
            })
            .collect()
    };
    let id = UploadId::random().to_string();
    let body = BeginResponse {
        challenge: id.clone(),
        ranges: ranges.iter().map(|&(offset, length)| RangeSpec { offset, length }).collect(),
    };
    {
        let mut open = state.challenges.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, c| c.created.elapsed() < CHALLENGE_TTL);
        if open.len() >= MAX_CHALLENGES {
            return Err(ApiError::Unavailable("too many open dedup challenges; upload the file instead".into()));
        }
        open.insert(id, Challenge { source, dest, size: req.size, sha256: sha, ranges, created: Instant::now() });
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// A file in the tree with this digest and size whose record is still current.
async fn find_copy(state: &AppState, sha: &[u8; 32], size: u64) -> Result<Option<TreePath>, ApiError> {
    for path in state.meta.tree_paths_with_digest(sha, size).await? {
        let Ok(tree_path) = TreePath::parse(&path) else { continue };
        let Ok(real) = state.tree.resolve(&tree_path) else { continue };
        let Ok(meta) = std::fs::metadata(&real) else { continue };
        let mtime_ns =
            meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64);
        if meta.is_file() && state.meta.tree_file_digest(&path, meta.len(), mtime_ns).await?.as_ref() == Some(sha) {
            return Ok(Some(tree_path));
        }
    }
    Ok(None)
}

pub(super) async fn prove(
    State(state): State<AppState>,
    Path(challenge): Path<String>,
    Json(req): Json<ProveRequest>,
) -> Result<Response, ApiError> {
    let c = state
        .challenges
        .open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&challenge)
        .filter(|c| c.created.elapsed() < CHALLENGE_TTL)
        .ok_or_else(|| ApiError::NotFound("no such challenge (challenges are single-use and last 5 minutes)".into()))?;
    if req.proofs.len() != c.ranges.len() {
        return Err(ApiError::bad(format!("expected {} proofs, got {}", c.ranges.len(), req.proofs.len())));
    }
    let source = state.tree.resolve(&c.source)?;
    let ranges = c.ranges.clone();
    let expected = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<String>> {
        let f = File::open(source)?;
        ranges
            .iter()
            .map(|&(offset, len)| {
                let mut buf = vec![0u8; len as usize];
                f.read_exact_at(&mut buf, offset)?;
                Ok(to_hex(&Sha256::digest(&buf)))
            })
            .collect()
    })
    .await??;
    let ok = expected.iter().zip(&req.proofs).all(|(want, got)| want.eq_ignore_ascii_case(got.trim()));
    if !ok {
        tracing::warn!(dest = %c.dest, "dedup proof of possession failed");
        return Err(ApiError::Forbidden(
            "proof of possession failed: the range hashes do not match; upload the file".into(),
        ));
    }
    // Copy the server's file next to staging, make it durable, then place it atomically.
    let src = state.tree.resolve(&c.source)?;
    let tmp = state.staging.dir().join(format!("{}.dedup", UploadId::random()));
    let tmp2 = tmp.clone();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        std::fs::copy(&src, &tmp2)?;
        File::open(&tmp2)?.sync_all()
    })
    .await??;
    let tree = state.tree.clone();
    let dest = c.dest.clone();
    let placed = tokio::task::spawn_blocking(move || {
        let r = tree.place(&tmp, &dest);
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    })
    .await??;
    let meta = std::fs::metadata(&placed)?;
    let mtime_ns = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    state
        .meta
        .record_tree_file(&c.dest.to_string(), &TreeFileRecord { size: c.size, mtime_ns, sha256: c.sha256 })
        .await?;
    tracing::info!(path = %c.dest, bytes = c.size, "placed by dedup");
    let body = Placed { path: c.dest.to_string(), size: c.size, sha256: to_hex(&c.sha256) };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
