//! Managing the tree over HTTP: `DELETE /files/{path}`, `POST /api/files/move`,
//! `POST /api/files/mkdir`, and the caller's unfinished uploads (`GET /api/uploads`; cancel
//! one with tus `DELETE /tus/{id}`). Paths are tree paths as under `/files/` (`~alice/x`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferry_core::{TreePath, UploadMetadata};
use ferry_store::ConcatKind;
use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::{ApiError, AppState, tree_ops};

fn tree_path(raw: &str) -> Result<TreePath, ApiError> {
    TreePath::parse(raw.trim_matches('/')).map_err(|e| ApiError::bad(e.to_string()))
}

#[derive(Deserialize)]
pub(crate) struct RemoveQuery {
    #[serde(default)]
    recursive: bool,
}

/// `DELETE /files/{path}[?recursive=true]`.
pub(crate) async fn remove(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(raw): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Response, ApiError> {
    let p = TreePath::parse_url_path(&raw).map_err(|e| ApiError::bad(e.to_string()))?;
    tree_ops::remove(&state, &who, &p, q.recursive).await?;
    tracing::info!(path = %p, recursive = q.recursive, "removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct MoveRequest {
    from: String,
    to: String,
    #[serde(default)]
    overwrite: bool,
}

/// `POST /api/files/move` `{"from", "to", "overwrite"}`.
pub(super) async fn move_path(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Json(req): Json<MoveRequest>,
) -> Result<Response, ApiError> {
    let (from, to) = (tree_path(&req.from)?, tree_path(&req.to)?);
    tree_ops::move_path(&state, &who, &from, &to, req.overwrite).await?;
    tracing::info!(%from, %to, "moved");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct MkdirRequest {
    path: String,
    #[serde(default)]
    parents: bool,
}

/// `POST /api/files/mkdir` `{"path", "parents"}`.
pub(super) async fn mkdir(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Json(req): Json<MkdirRequest>,
) -> Result<Response, ApiError> {
    let p = tree_path(&req.path)?;
    tree_ops::make_dir(&state, &who, &p, req.parents).await?;
    Ok(StatusCode::CREATED.into_response())
}

#[derive(Serialize)]
struct Unfinished {
    id: String,
    /// `single`, `partial` (one part of a parallel upload) or `final` (the parts joined).
    kind: &'static str,
    /// Where the file lands (`/~alice/x.iso`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    length: Option<u64>,
    offset: u64,
    created_at: i64,
    expires_at: Option<i64>,
    /// For a final upload: its parts' ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parts: Vec<String>,
}

/// The most uploads one listing returns.
const LIST_LIMIT: i64 = 10_000;

/// `GET /api/uploads`: the caller's unfinished uploads, oldest first.
pub(super) async fn uploads(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, ApiError> {
    let records = state.meta.unfinished_uploads(who.user_id(), LIST_LIMIT).await?;
    let list: Vec<Unfinished> = records
        .into_iter()
        .map(|r| {
            let meta = UploadMetadata::parse(&r.metadata).unwrap_or_default();
            let (kind, parts) = match &r.concat {
                ConcatKind::None => ("single", Vec::new()),
                ConcatKind::Partial => ("partial", Vec::new()),
                ConcatKind::Final(parts) => ("final", parts.iter().map(ToString::to_string).collect()),
            };
            Unfinished {
                id: r.id.to_string(),
                kind,
                path: r.tree_path.map(|p| format!("/{p}")),
                filename: meta.get_str("filename").map(str::to_owned),
                length: r.length,
                offset: r.offset,
                created_at: r.created_at,
                expires_at: r.expires_at,
                parts,
            }
        })
        .collect();
    Ok(Json(serde_json::json!({ "uploads": list })).into_response())
}
