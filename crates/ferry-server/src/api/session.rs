//! Logging in and out: `POST /api/login`, `DELETE /api/tokens/current`, `GET /api/me`.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::auth::{ClientAddr, Identity, bearer, new_token, token_sha};
use crate::{ApiError, AppState};

#[derive(Deserialize)]
pub(super) struct LoginRequest {
    user: String,
    password: String,
    #[serde(default)]
    label: Option<String>,
}

#[derive(Serialize)]
struct LoginResponse {
    token: String,
    user: String,
    admin: bool,
}

pub(super) async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let client = client.map_or(ClientAddr(None), |Extension(c)| c);
    let found = state.meta.user_by_name(&req.user).await?;
    let hash = found.as_ref().map(|(_, h)| h.as_str());
    let ok = state.passwords.check(&req.user, &req.password, hash, client.0).await?;
    let Some(user) = found.filter(|_| ok).map(|(user, _)| user) else {
        tracing::warn!(user = ?req.user, "failed login"); // Debug-escaped: a name cannot forge log lines
        return Err(ApiError::Unauthorized);
    };
    let (token, sha) = new_token();
    state.meta.add_token(&sha, user.id, req.label.as_deref().unwrap_or("")).await?;
    tracing::info!(user = %user.name, "logged in");
    Ok((StatusCode::OK, Json(LoginResponse { token, user: user.name, admin: user.admin })).into_response())
}

pub(super) async fn logout(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let token = bearer(&req).ok_or_else(|| ApiError::bad("log out with the token itself (Authorization: Bearer …)"))?;
    state.meta.revoke_token(&token_sha(token)).await?;
    state.events.revocations.send_modify(|n| *n += 1);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct Me {
    user: Option<String>,
    admin: bool,
    home: String,
    quota: Option<u64>,
    used: Option<u64>,
    shared: Vec<SharedFolder>,
}

#[derive(Serialize)]
struct SharedFolder {
    path: String,
    write: bool,
}

pub(super) async fn me(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
) -> Result<Response, ApiError> {
    let home = who.home().to_string();
    let body = match &who {
        Identity::User(u, grants) => Me {
            user: Some(u.name.clone()),
            admin: u.admin,
            used: Some(state.meta.usage(u.id, &home).await?),
            home,
            quota: u.quota,
            shared: grants.iter().map(|g| SharedFolder { path: g.path.clone(), write: g.write }).collect(),
        },
        _ => Me { user: None, admin: true, home, quota: None, used: None, shared: Vec::new() },
    };
    Ok(Json(body).into_response())
}
