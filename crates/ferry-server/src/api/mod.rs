//! The JSON API under `/api/`.

mod dedup;

use axum::Router;
use axum::routing::post;

use crate::AppState;

pub use dedup::ChallengeStore;

/// The API routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/dedup", post(dedup::begin)).route("/api/dedup/{challenge}", post(dedup::prove))
}
