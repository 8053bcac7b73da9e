//! Instant upload with proof of possession.
//!
//! `POST /api/dedup {size, sha256, filename, dir}`: if the tree holds a copy of that content
//! the caller may reuse, the server answers with a challenge chosen after the client
//! committed to the content: a one-time nonce and a few random byte ranges, together much
//! shorter than the file. The client proves it has the bytes with
//! HMAC-SHA256(nonce, offset ‖ range bytes) per range (`POST /api/dedup/{challenge}
//! {proofs}`); only then is the server's copy placed at the requested path, within the
//! caller's quota (checked again, atomically, at proof time). With `relay_to` the proven
//! copy becomes a relay item for those users instead (instant send). Knowing a file's hash, or
//! having seen a proof, never gets anyone its content.
//!
//! Which copies may be reused is the operator's choice ([`DedupMode`]): in `user` mode only
//! files the caller may read anyway, so nothing is revealed; in `global` mode any file of at
//! least `dedup_min_size` bytes, which tells the caller that this content exists somewhere.
//! "No copy" and "a copy you may not reuse" get the same answer. Challenges are single-use,
//! bound to the caller and expire after five minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferry_core::digest::{parse_sha256_text, possession_proof, to_hex};
use ferry_core::{TreePath, UploadId};
use ferry_store::{StoreError, TreeFileRecord};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::quota::{self, Claim};
use crate::{ApiError, AppState, DedupMode};

/// Ranges per challenge.
const CHALLENGE_RANGES: u64 = 4;
/// Longest range; ranges are at most 1/32 of the file each (1/8 together).
const MAX_RANGE_LEN: u64 = 64 << 10;
const CHALLENGE_TTL: Duration = Duration::from_secs(300);
const MAX_CHALLENGES: usize = 10_000;
/// Copies of one content looked at before giving up (the same bytes may be in many places).
const MAX_CANDIDATES: usize = 32;
/// The one answer for "no copy" and "a copy you may not reuse".
const NO_COPY: &str = "the server has no copy of this content you may reuse; upload it";

#[derive(Debug)]
struct Challenge {
    caller: Option<i64>,
    source: TreePath,
    target: Target,
    size: u64,
    sha256: [u8; 32],
    nonce: [u8; 32],
    ranges: Vec<(u64, u64)>,
    created: Instant,
}

/// Where a proven copy goes.
#[derive(Debug)]
enum Target {
    /// A path in the tree.
    Tree(TreePath),
    /// A relay item: the upload metadata it is made with and its recipients' ids.
    Relay { metadata: String, recipients: String },
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
    /// Send the copy through the relay to these users (names, comma-separated) instead of
    /// placing it in the tree; `dir` is then ignored.
    #[serde(default)]
    relay_to: Option<String>,
    /// With `relay_to`: the folder the item belongs to (see `relay_folder` on uploads).
    #[serde(default)]
    relay_folder: Option<String>,
}

#[derive(Serialize)]
struct RangeSpec {
    offset: u64,
    length: u64,
}

#[derive(Serialize)]
struct BeginResponse {
    challenge: String,
    /// Hex; the key of each range's HMAC.
    nonce: String,
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

#[derive(Serialize)]
struct Sent {
    /// The relay item's id.
    id: String,
    size: u64,
    sha256: String,
}

/// Where the copy goes: like an upload, `dir` is relative to the caller's home unless it
/// starts with `/` (the right to write there is checked by the caller).
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
    Ok(base.join(&dir).join(&file))
}

pub(super) async fn begin(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Json(req): Json<BeginRequest>,
) -> Result<Response, ApiError> {
    if state.config.dedup == DedupMode::Off {
        return Err(ApiError::NotFound("instant upload is off on this server; upload the file".into()));
    }
    let sha = parse_sha256_text(&req.sha256).ok_or_else(|| ApiError::bad("sha256 must be 64 hex digits"))?;
    let target = match &req.relay_to {
        None => {
            let dest = destination(&who, &req.filename, req.dir.as_deref())?;
            crate::tus::authorise_destination(&state, &who, &dest).await?;
            Target::Tree(dest)
        }
        Some(to) => relay_target(&state, &who, &req, to, &sha).await?,
    };
    let staged = matches!(target, Target::Relay { .. });
    drop(quota::admit(&state, &who, Claim { adds: req.size, staged, ..Claim::default() }).await?);
    let Some(source) = find_copy(&state, &who, &sha, req.size).await? else {
        return Err(ApiError::NotFound(NO_COPY.into()));
    };
    let len = (req.size / 32).clamp(1, MAX_RANGE_LEN);
    let mut rng = rand::rng();
    let ranges: Vec<(u64, u64)> = (0..CHALLENGE_RANGES.min(req.size))
        .map(|_| {
            let len = len.min(req.size);
            (rng.random_range(0..=req.size - len), len)
        })
        .collect();
    let nonce: [u8; 32] = rng.random();
    let id = UploadId::random().to_string();
    let body = BeginResponse {
        challenge: id.clone(),
        nonce: to_hex(&nonce),
        ranges: ranges.iter().map(|&(offset, length)| RangeSpec { offset, length }).collect(),
    };
    let challenge = Challenge {
        caller: who.user_id(),
        source,
        target,
        size: req.size,
        sha256: sha,
        nonce,
        ranges,
        created: Instant::now(),
    };
    {
        let mut open = state.challenges.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, c| c.created.elapsed() < CHALLENGE_TTL);
        if open.len() >= MAX_CHALLENGES {
            return Err(ApiError::Unavailable("too many open dedup challenges; upload the file instead".into()));
        }
        open.insert(id, challenge);
    }
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// A relay item's metadata and recipients, checked as a relay upload's are at creation.
async fn relay_target(
    state: &AppState,
    who: &Identity,
    req: &BeginRequest,
    to: &str,
    sha: &[u8; 32],
) -> Result<Target, ApiError> {
    use base64::Engine as _;
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let mut metadata = format!("filename {},relay_to {},sha256 {}", b64(&req.filename), b64(to), b64(&to_hex(sha)));
    if let Some(folder) = &req.relay_folder {
        metadata.push_str(&format!(",relay_folder {}", b64(folder)));
    }
    let meta = ferry_core::UploadMetadata::parse(&metadata).map_err(|e| ApiError::bad(e.to_string()))?;
    let recipients = crate::tus::relay_recipients(state, who, &meta)
        .await?
        .ok_or_else(|| ApiError::bad("relay_to names no recipient"))?;
    crate::tus::item_shape(&meta, Some(req.size))?;
    crate::tus::item_name(&meta, "file")?;
    Ok(Target::Relay { metadata, recipients })
}

/// Whether `path` (as recorded) is still a regular file with this digest.
async fn is_current(state: &AppState, path: &TreePath, sha: &[u8; 32]) -> Result<bool, ApiError> {
    let Ok(Some(stat)) = state.blobs.stat(path).await else { return Ok(false) };
    Ok(!stat.is_dir
        && state.meta.tree_file_digest(&path.to_string(), stat.size, stat.version).await?.as_ref() == Some(sha))
}

/// A current copy of this content in the tree that the caller may reuse (see the module
/// documentation for which ones).
async fn find_copy(state: &AppState, who: &Identity, sha: &[u8; 32], size: u64) -> Result<Option<TreePath>, ApiError> {
    let anyone = state.config.dedup == DedupMode::Global && size >= state.config.dedup_min_size;
    for path in state.meta.tree_paths_with_digest(sha, size).await?.into_iter().take(MAX_CANDIDATES) {
        let Ok(tree_path) = TreePath::parse(&path) else { continue };
        let Ok(real_tree) = state.blobs.real_tree_path(&tree_path).await else { continue };
        if (anyone || who.may_read(&real_tree)) && is_current(state, &tree_path, sha).await? {
            return Ok(Some(tree_path));
        }
    }
    Ok(None)
}

pub(super) async fn prove(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(challenge): Path<String>,
    Json(req): Json<ProveRequest>,
) -> Result<Response, ApiError> {
    let c = state
        .challenges
        .open
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&challenge)
        .filter(|c| c.created.elapsed() < CHALLENGE_TTL && c.caller == who.user_id())
        .ok_or_else(|| ApiError::NotFound("no such challenge (challenges are single-use and last 5 minutes)".into()))?;
    if req.proofs.len() != c.ranges.len() {
        return Err(ApiError::bad(format!("expected {} proofs, got {}", c.ranges.len(), req.proofs.len())));
    }
    // The ranges are read from the version whose digest is checked.
    let (source, stat) = state.blobs.open(&c.source).await.map_err(|_| ApiError::NotFound(NO_COPY.into()))?;
    let digest = state.meta.tree_file_digest(&c.source.to_string(), stat.size, stat.version).await?;
    if stat.is_dir || digest != Some(c.sha256) {
        return Err(ApiError::NotFound(NO_COPY.into()));
    }
    let (ranges, nonce, reader) = (c.ranges.clone(), c.nonce, source.clone());
    let expected = tokio::task::spawn_blocking(move || -> Result<Vec<String>, StoreError> {
        let source = reader;
        ranges
            .iter()
            .map(|&(offset, len)| Ok(possession_proof(&nonce, offset, &source.read_vec(offset, len as usize)?)))
            .collect()
    })
    .await??;
    let ok = expected.iter().zip(&req.proofs).all(|(want, got)| want.eq_ignore_ascii_case(got.trim()));
    if !ok {
        tracing::warn!(source = %c.source, "dedup proof of possession failed");
        return Err(ApiError::Forbidden(
            "proof of possession failed: the range proofs do not match; upload the file".into(),
        ));
    }
    let dest = match c.target {
        Target::Tree(dest) => dest,
        Target::Relay { metadata, recipients } => {
            // Through the data path from the version proven: hashed again and checked
            // against the digest committed to, so a file changed since cannot slip in.
            let id = crate::tus::relay_from_stored(&state, &who, metadata, recipients, source, c.size).await?;
            let body = Sent { id: id.to_string(), size: c.size, sha256: to_hex(&c.sha256) };
            return Ok((StatusCode::CREATED, Json(body)).into_response());
        }
    };
    // The quota holds at proof time too: the copy's bytes are reserved until recorded.
    let _held = quota::admit(&state, &who, Claim { adds: c.size, ..Claim::default() }).await?.reserve(c.size);
    // A durable copy of the server's file, published atomically.
    let placed = state.blobs.publish_copy(&c.source, &dest).await?;
    let rec = TreeFileRecord { size: placed.size, mtime_ns: placed.version, sha256: c.sha256 };
    state.meta.record_tree_file(&dest.to_string(), &rec).await?;
    tracing::info!(path = %dest, bytes = c.size, "placed by dedup");
    let body = Placed { path: dest.to_string(), size: c.size, sha256: to_hex(&c.sha256) };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
