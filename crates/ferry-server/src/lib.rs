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
mod password_gate;
mod recovery;
mod state;
mod sweeper;
pub mod tus;

use std::future::IntoFuture;
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

/// Runs the server on `listener` until `shutdown` is cancelled, then drains: the listener
/// closes, idle connections close, event streams end, and in-flight requests run on to
/// their end for up to `shutdown_grace` (ferry's client bounds a PATCH to a few seconds,
/// so it finishes and is verified and acknowledged whole). Requests still running then are
/// stopped: they keep what is durable (and verified) and answer 503. The call returns when
/// every connection is closed.
pub async fn serve(config: ServerConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ApiError> {
    let grace = config.shutdown_grace;
    let hard_stop = CancellationToken::new();
    std::fs::create_dir_all(&config.data_dir)?;
    let _lock = state::DataLock::take(&config.data_dir)?;
    let mut state = AppState::open(config, hard_stop.clone()).await?;
    state.draining = shutdown.clone();
    recovery::recover(&state).await?;
    let sweeper = sweeper::spawn(state.clone());
    let router = app(state.clone());
    let graceful = {
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    };
    let server = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(graceful)
        .into_future();
    let mut server = std::pin::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "requests still running after the grace period; stopping them");
            hard_stop.cancel();
            match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("connections still open 5 s after stopping requests; closing them");
                    Ok(())
                }
            }
        }
    };
    hard_stop.cancel();
    sweeper.abort();
    state.meta.close().await;
    result.map_err(|e| ApiError::Internal(format!("server failed: {e}")))
}
