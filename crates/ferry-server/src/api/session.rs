//! Logging in and out: `POST /api/login` (a token, or with `cookie` the web UI's session),
//! `DELETE /api/tokens/current`, `GET /api/me`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::auth::{ClientAddr, Identity, bearer, new_token, token_sha};
use crate::web_session::CookieSession;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
pub(super) struct LoginRequest {
    user: String,
    password: String,
    #[serde(default)]
    label: Option<String>,
    /// Keep the token in the web UI's session cookie and answer a CSRF token instead.
    #[serde(default)]
    cookie: bool,
}

#[derive(Serialize)]
struct LoginResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    user: String,
    admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
}

pub(super) async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
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
    let label = req.label.as_deref().unwrap_or(if req.cookie { "web" } else { "" });
    state.meta.add_token(&sha, user.id, label).await?;
    tracing::info!(user = %user.name, web = req.cookie, "logged in");
    if !req.cookie {
        let body = LoginResponse { token: Some(token), user: user.name, admin: user.admin, csrf: None };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    // A web login from a page on a foreign origin would hand that page a session.
    crate::web_session::check(&state, &headers, &axum::http::Method::GET, &token)?;
    let secure = state.config.tls.is_some()
        || (state.config.behind_proxy
            && headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
    let csrf = Some(crate::web_session::csrf_for(&token));
    let mut resp =
        (StatusCode::OK, Json(LoginResponse { token: None, user: user.name, admin: user.admin, csrf })).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, crate::web_session::set_cookie(&token, secure));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub(super) async fn logout(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let cookie = req.extensions().get::<CookieSession>().map(|c| c.token.clone());
    let token = bearer(&req)
        .map(str::to_owned)
        .or_else(|| cookie.clone())
        .ok_or_else(|| ApiError::bad("log out with the token itself (Authorization: Bearer …)"))?;
    state.meta.revoke_token(&token_sha(&token)).await?;
    state.events.revocations.send_modify(|n| *n += 1);
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if cookie.is_some() {
        resp.headers_mut().insert(header::SET_COOKIE, crate::web_session::clear_cookie());
    }
    Ok(resp)
}

#[derive(Serialize)]
struct Me {
    user: Option<String>,
    admin: bool,
    home: String,
    quota: Option<u64>,
    used: Option<u64>,
    shared: Vec<SharedFolder>,
    /// The CSRF token, when the web UI's cookie authenticated the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
}

#[derive(Serialize)]
struct SharedFolder {
    path: String,
    write: bool,
}

pub(super) async fn me(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    cookie: Option<Extension<CookieSession>>,
) -> Result<Response, ApiError> {
    let csrf = cookie.map(|Extension(c)| crate::web_session::csrf_for(&c.token));
    let home = who.home().to_string();
    let body = match &who {
        Identity::User(u, grants) => Me {
            user: Some(u.name.clone()),
            admin: u.admin,
            used: Some(state.meta.usage(u.id, &home).await?),
            home,
            quota: u.quota,
            shared: grants.iter().map(|g| SharedFolder { path: g.path.clone(), write: g.write }).collect(),
            csrf,
        },
        _ => Me { user: None, admin: true, home, quota: None, used: None, shared: Vec::new(), csrf: None },
    };
    Ok(Json(body).into_response())
}
