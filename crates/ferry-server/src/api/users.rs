//! Managing accounts over HTTP (admins only): `GET|POST /api/users`,
//! `DELETE /api/users/{name}`, `PUT /api/users/{name}/password`,
//! `POST /api/users/{name}/grants`. The same operations `ferry user …` runs against a data
//! directory, for an admin who is not on the server machine.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use ferry_core::TreePath;
use serde::{Deserialize, Serialize};

use crate::auth::{Identity, hash_password};
use crate::{ApiError, AppState};

fn admin_only(who: &Identity) -> Result<(), ApiError> {
    if who.is_admin() { Ok(()) } else { Err(ApiError::Forbidden("only admins manage users".into())) }
}

/// User names: 1-64 letters, digits, `.`, `_` or `-` (they name home folders).
pub fn valid_name(name: &str) -> Result<(), ApiError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok { Ok(()) } else { Err(ApiError::bad("user names are 1-64 letters, digits, '.', '_' or '-'")) }
}

async fn hash(password: String) -> Result<String, ApiError> {
    if password.is_empty() {
        return Err(ApiError::bad("the password is empty"));
    }
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

#[derive(Serialize)]
struct UserView {
    name: String,
    admin: bool,
    quota: Option<u64>,
}

/// `GET /api/users`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let users: Vec<UserView> = state
        .meta
        .users()
        .await?
        .into_iter()
        .map(|u| UserView { name: u.name, admin: u.admin, quota: u.quota })
        .collect();
    Ok(Json(serde_json::json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
pub(super) struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    quota: Option<u64>,
}

/// `POST /api/users` `{"name", "password", "admin", "quota"}`.
pub(super) async fn add(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Json(req): Json<NewUser>,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    valid_name(&req.name)?;
    let hash = hash(req.password).await?;
    if !state.meta.add_user(&req.name, &hash, req.admin, req.quota).await? {
        return Err(ApiError::Conflict(format!("user {} already exists", req.name)));
    }
    tracing::info!(user = %req.name, admin = req.admin, "user added");
    Ok(StatusCode::CREATED.into_response())
}

/// `DELETE /api/users/{name}`.
pub(super) async fn remove(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    if !state.meta.remove_user(&name).await? {
        return Err(ApiError::NotFound(format!("no user {name}")));
    }
    state.events.revocations.send_modify(|n| *n += 1);
    tracing::info!(user = %name, "user removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct NewPassword {
    password: String,
}

/// `PUT /api/users/{name}/password` `{"password"}`: also revokes the user's tokens.
pub(super) async fn passwd(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(name): Path<String>,
    Json(req): Json<NewPassword>,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let hash = hash(req.password).await?;
    if !state.meta.set_password(&name, &hash).await? {
        return Err(ApiError::NotFound(format!("no user {name}")));
    }
    state.events.revocations.send_modify(|n| *n += 1);
    tracing::info!(user = %name, "password changed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct NewGrant {
    path: String,
    #[serde(default)]
    write: bool,
}

/// `POST /api/users/{name}/grants` `{"path", "write"}`: share a top-level folder.
pub(super) async fn grant(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(name): Path<String>,
    Json(req): Json<NewGrant>,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let (user, _) =
        state.meta.user_by_name(&name).await?.ok_or_else(|| ApiError::NotFound(format!("no user {name}")))?;
    let folder = shared_folder(&req.path)?;
    state.meta.grant(user.id, &folder.to_string(), req.write).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A folder that may be shared: in the tree, neither the root nor a home.
pub fn shared_folder(path: &str) -> Result<TreePath, ApiError> {
    let folder = TreePath::parse(path.trim_matches('/')).map_err(|e| ApiError::bad(e.to_string()))?;
    if folder.is_root() || folder.components().next().is_some_and(|c| c.starts_with('~')) {
        return Err(ApiError::bad("share a folder of the tree, not the root or a home"));
    }
    Ok(folder)
}
