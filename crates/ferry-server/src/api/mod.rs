//! The JSON API under `/api/`.

mod dedup;
pub mod openapi;
mod p2p;
pub(crate) mod relay;
mod session;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;

pub use dedup::ChallengeStore;

/// The API routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi::openapi))
        .route("/api/login", post(session::login))
        .route("/api/tokens/current", delete(session::logout))
        .route("/api/me", get(session::me))
        .route("/api/events", get(crate::events::events))
        .route("/api/presence", post(crate::events::report))
        .route("/api/presence/{user}", get(crate::events::presence))
        .route("/api/relay/inbox", get(relay::inbox))
        .route("/api/relay/outbox", get(relay::outbox))
        .route("/api/relay/items/{id}/content", get(relay::content))
        .route("/api/relay/items/{id}/ack", post(relay::ack))
        .route("/api/relay/items/{id}/decline", post(relay::decline))
        .route("/api/p2p", get(p2p::info))
        .route("/api/p2p/endpoint", post(p2p::register))
        .route("/api/p2p/endpoints/{id}", get(p2p::owner).delete(p2p::unregister))
        .route("/api/p2p/peers/{user}", get(p2p::peer))
        .route("/api/dedup", post(dedup::begin))
        .route("/api/dedup/{challenge}", post(dedup::prove))
}
