//! ferry-server: the HTTP side of ferry.
//!
//! [`app`] builds the whole router from an [`AppState`]; [`serve`] binds it, runs the
//! background jobs and shuts down gracefully. Routes:
//!
//! - `/tus/`, `/tus/{id}`: tus 1.0.0 with every official extension ([`tus`]);
//! - `/files/{path}`: GET/HEAD downloads with Range, conditionals and `Repr-Digest`, and
//!   JSON listings of directories ([`files`]);
//! - `/api/dedup`: instant upload with proof of possession ([`api`]);
//! - `/healthz`: liveness.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
mod config;
mod error;
pub mod events;
pub mod files;
mod locks;
mod logging;
mod recovery;
mod state;
mod sweeper;
pub mod tus;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ServerConfig;
pub use error::ApiError;
pub use state::AppState;

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(tus::router())
        .merge(files::router())
        .merge(api::router())
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn(logging::log_request))
        .with_state(state)
}

/// Runs the server on `listener` until `shutdown` is cancelled. In-flight PATCHes then
/// commit what is durable and answer; the call returns once connections are closed
/// (or after a grace period).
pub async fn serve(config: ServerConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ApiError> {
    let state = AppState::open(config, shutdown.clone()).await?;
    recovery::recover(&state).await?;
    let sweeper = sweeper::spawn(state.clone());
    let router = app(state.clone());
    let graceful = {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(graceful);
    let result = tokio::select! {
        r = server => r.map_err(|e| ApiError::Internal(format!("server failed: {e}"))),
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        } => {
            tracing::warn!("connections still open 10 s after shutdown; closing them");
            Ok(())
        }
    };
    sweeper.abort();
    state.meta.close().await;
    result
}
