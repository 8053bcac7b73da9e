//! `/api/p2p`: what a client needs for direct transfers — the embedded relay (port and
//! certificate), registering its endpoint, finding another user's.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use crate::auth::Identity;
use crate::{ApiError, AppState};

fn node(state: &AppState) -> Result<&crate::p2p::P2pNode, ApiError> {
    state.p2p.as_deref().ok_or_else(|| ApiError::NotFound("this server runs without peer-to-peer (--no-p2p)".into()))
}

fn user_name(who: &Identity) -> Result<&str, ApiError> {
    match who {
        Identity::User(u, _) => Ok(&u.name),
        _ => Err(ApiError::bad("peer-to-peer transfers need accounts; this server runs with --no-auth")),
    }
}

/// `GET /api/p2p`: the relay's ports and certificate (its host is the server's), and how
/// often a registration must be renewed.
pub(super) async fn info(State(state): State<AppState>) -> Response {
    match node(&state) {
        Ok(n) => Json(serde_json::json!({
            "relay_port": n.relay.url.port(),
            "quic_port": n.relay.quic_port,
            "cert": base64::engine::general_purpose::STANDARD.encode(&n.relay.cert_der),
            "renew_ms": n.renew_every.as_millis() as u64,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct Registration {
    endpoint_id: String,
    signature: String,
    /// The endpoint takes transfers (a watching inbox), rather than only sending.
    #[serde(default)]
    receive: bool,
}

/// `POST /api/p2p/endpoint`: registers (or renews) the caller's endpoint, proven by a
/// signature with its key.
pub(super) async fn register(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Json(body): Json<Registration>,
) -> Response {
    let result = (|| {
        let n = node(&state)?;
        let user = user_name(&who)?;
        let id = ferry_p2p::registry::verify_registration(&body.endpoint_id, &body.signature, user)
            .map_err(|e| ApiError::bad(e.to_string()))?;
        n.registry.register(id, user, body.receive);
        if let Some(me) = who.user_id() {
            state.events.seen(me); // a registration renewed every heartbeat is a presence report
        }
        Ok::<_, ApiError>(StatusCode::NO_CONTENT)
    })();
    result.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `GET /api/p2p/peers/{user}`: the user's endpoint while their client is online.
pub(super) async fn peer(State(state): State<AppState>, Path(user): Path<String>) -> Response {
    let result = node(&state).and_then(|n| {
        n.registry
            .endpoint_of(&user)
            .ok_or_else(|| ApiError::NotFound(format!("{user} is not online for direct transfers")))
    });
    match result {
        Ok(id) => Json(serde_json::json!({ "user": user, "endpoint_id": id.to_string() })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /api/p2p/endpoints/{id}`: the caller's client with that endpoint goes offline
/// for direct transfers (at once, rather than after three missed heartbeats).
pub(super) async fn unregister(
    State(state): State<AppState>,
    Extension(who): Extension<Identity>,
    Path(id): Path<String>,
) -> Response {
    let result = node(&state).and_then(|n| {
        let user = user_name(&who)?;
        let id = id.parse::<ferry_p2p::EndpointId>().map_err(|_| ApiError::bad("not an endpoint id"))?;
        if !n.registry.forget(&id, user) {
            return Err(ApiError::NotFound("you have no online client with that endpoint".into()));
        }
        Ok(StatusCode::NO_CONTENT)
    });
    result.map_or_else(IntoResponse::into_response, IntoResponse::into_response)
}

/// `GET /api/p2p/endpoints/{id}`: whose client a fresh endpoint is (a receiver names who is
/// connecting to it).
pub(super) async fn owner(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let result = node(&state).and_then(|n| {
        id.parse::<ferry_p2p::EndpointId>()
            .ok()
            .and_then(|id| n.registry.user_of(&id))
            .ok_or_else(|| ApiError::NotFound("no online client has that endpoint".into()))
    });
    match result {
        Ok(user) => Json(serde_json::json!({ "user": user, "endpoint_id": id })).into_response(),
        Err(e) => e.into_response(),
    }
}
