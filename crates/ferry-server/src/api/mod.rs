//! The JSON API under `/api/`.

mod dedup;
pub(crate) mod files;
pub mod openapi;
mod p2p;
pub(crate) mod relay;
mod session;
pub mod users;

use axum::Router;
use axum::routing::{delete, get, post, put};

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
        .route("/api/files/move", post(files::move_path))
        .route("/api/files/mkdir", post(files::mkdir))
        .route("/api/uploads", get(files::uploads))
        .route("/api/users", get(users::list).post(users::add))
        .route("/api/users/{name}", delete(users::remove))
        .route("/api/users/{name}/password", put(users::passwd))
        .route("/api/users/{name}/grants", post(users::grant))
        .route("/api/dedup", post(dedup::begin))
        .route("/api/dedup/{challenge}", post(dedup::prove))
}
