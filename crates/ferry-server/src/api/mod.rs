//! The JSON API under `/api/`.

mod dedup;
mod session;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::AppState;

pub use dedup::ChallengeStore;

/// The API routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/login", post(session::login))
        .route("/api/tokens/current", delete(session::logout))
        .route("/api/me", get(session::me))
        .route("/api/dedup", post(dedup::begin))
        .route("/api/dedup/{challenge}", post(dedup::prove))
}
