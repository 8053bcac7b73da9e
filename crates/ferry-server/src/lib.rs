//! ferry-server: the HTTP side of ferry.
//!
//! [`app`] builds the whole router from an [`AppState`]; [`serve`] binds it, runs the
//! background jobs and shuts down gracefully. Routes:
//!
//! - `/tus/`, `/tus/{id}`: tus 1.0.0 with every official extension ([`tus`]);
//! - `/files/{path}`: GET/HEAD downloads with Range, conditionals and `Repr-Digest`, and
//!   JSON listings of directories ([`files`]);
//! - `/dav/{path}`: WebDAV class 1 and 2 with resumable uploads ([`dav`]);
//! - `/api/p2p`: the embedded peer-to-peer relay and endpoint registry ([`p2p`]);
//! - `/api/dedup`: instant upload with proof of possession ([`api`]);
//! - `/healthz`: liveness; `/readyz`: readiness (the database and the byte storage answer).
#![deny(missing_docs)]

pub mod api;
pub mod auth;
mod cluster;
mod config;
pub mod cors;
pub mod dav;
mod error;
pub mod events;
mod fd_limit;
pub mod files;
mod locks;
mod logging;
pub mod metrics;
pub mod p2p;
mod password_gate;
mod quota;
mod recovery;
mod state;
mod sweeper;
pub mod tls;
mod tree_ops;
pub mod tus;
pub mod web;
pub mod web_session;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{DatabaseUrl, DedupMode, ServerConfig};
pub use error::ApiError;
pub use state::AppState;

/// `GET /readyz`: 200 when the metadata database and the byte storage both answer within
/// 2 s, else 503 naming the one that did not (for load balancers and orchestrators). The
/// route is public: the details (paths, addresses) go to the log, not to the caller.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wait = std::time::Duration::from_secs(2);
    let check = |what: &'static str, r: Result<Result<(), ferry_store::StoreError>, tokio::time::error::Elapsed>| {
        let (error, kind) = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => (e.to_string(), "failing"),
            Err(_) => (format!("no answer within {} s", wait.as_secs()), "timeout"),
        };
        tracing::warn!(part = what, %error, "not ready");
        Err(format!("{what} ({kind})"))
    };
    let db = check("database", tokio::time::timeout(wait, state.meta.ready()).await);
    let blobs = check("storage", tokio::time::timeout(wait, state.blobs.ready()).await);
    match db.and(blobs) {
        Ok(()) => "ready\n".into_response(),
        Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(tus::router())
        .merge(files::router())
        .merge(dav::router())
        .merge(api::router())
        .merge(web::router())
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::cors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), logging::log_request))
        .layer(axum::middleware::from_fn(run_to_completion))
        .with_state(state)
}

/// Runs every request to its end in a task of its own, even when the client goes away
/// first. hyper drops a connection's pending response when the connection closes: a PATCH
/// whose whole body had arrived (a browser reloading right then, a client giving up on the
/// answer) would otherwise be cancelled before it committed those bytes, and its access-log
/// line never written.
async fn run_to_completion(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match tokio::spawn(next.run(req)).await {
        Ok(resp) => resp,
        Err(e) => ApiError::Internal(format!("the request's task failed: {e}")).into_response(),
    }
}

/// Runs the server on `listener` until `shutdown` is cancelled, then drains: the listener
/// closes, idle connections close, event streams end, and in-flight requests run on to
/// their end for up to `shutdown_grace` (ferry's client bounds a PATCH to a few seconds,
/// so it finishes and is verified and acknowledged whole). Requests still running then are
/// stopped: they keep what is durable (and verified) and answer 503. The call returns when
/// every connection is closed.
pub async fn serve(config: ServerConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), ApiError> {
    let grace = config.shutdown_grace;
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let hard_stop = CancellationToken::new();
    std::fs::create_dir_all(&config.data_dir)?;
    let _lock = state::DataLock::take(&config.data_dir)?;
    let mut state = AppState::open(config, hard_stop.clone()).await?;
    state.draining = shutdown.clone();
    let descriptors = fd_limit::raise();
    let cap = fd_limit::connections_for(descriptors, state.config.max_connections);
    let open_staging = fd_limit::open_staging_for(descriptors);
    state.staging_files = std::sync::Arc::new(tokio::sync::Semaphore::new(open_staging));
    tracing::info!(descriptors = ?descriptors, connections = cap, open_staging, "file-descriptor limit and connection cap");
    recovery::recover(&state).await?;
    cluster::start(&state).await?;
    let relay = match (state.config.p2p && state.config.auth, listener.local_addr()) {
        (true, Ok(addr)) => {
            let (relay, node) = p2p::start(addr, state.config.heartbeat).await?;
            tracing::info!(relay = %node.relay.url, quic_port = node.relay.quic_port, "peer-to-peer relay");
            state.p2p = Some(std::sync::Arc::new(node));
            Some(relay)
        }
        _ => None,
    };
    let sweeper = sweeper::spawn(state.clone());
    let router = app(state.clone());
    let connections = accept_loop(listener, tls, router, &state, cap, shutdown.clone());
    let mut connections = std::pin::pin!(connections);
    tokio::select! {
        () = &mut connections => {}
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "requests still running after the grace period; stopping them");
            hard_stop.cancel();
            if tokio::time::timeout(Duration::from_secs(5), &mut connections).await.is_err() {
                tracing::warn!("connections still open 5 s after stopping requests; closing them");
            }
        }
    }
    hard_stop.cancel();
    sweeper.abort();
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    state.meta.close().await;
    Ok(())
}

/// Accepts connections until `shutdown`, then lets the open ones finish (idle ones close at
/// once, busy ones after their request). Each connection must send a request's header within
/// `header_timeout` (and finish a TLS handshake within it); at most `max_connections` are
/// served at once (more are closed on arrival), so half-sent requests cannot pile up without
/// bound. With TLS, ALPN picks HTTP/2 or HTTP/1.1.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    state: &AppState,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let config = &state.config;
    let metrics = state.metrics.clone();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let turning_away = std::sync::Arc::new(tokio::sync::Semaphore::new(fd_limit::TURNING_AWAY));
    let mut refused = 0u64;
    let mut refused_logged = std::time::Instant::now();
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new()).header_read_timeout(config.header_timeout).keep_alive(true);
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(config.header_timeout))
        .keep_alive_timeout(config.header_timeout);
    let handshake_timeout = config.header_timeout;
    loop {
        let (stream, addr) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            metrics.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if refused_logged.elapsed() >= Duration::from_secs(10) {
                tracing::warn!(refused, cap = max_connections, "at the connection cap; answering new ones 503");
                (refused, refused_logged) = (0, std::time::Instant::now());
            }
            // Turning away holds a descriptor for a moment: a bounded number at once; past
            // that, new connections wait in the kernel's backlog (holding no descriptor).
            let Ok(permit) = turning_away.clone().acquire_owned().await else { continue };
            tokio::spawn(async move {
                fd_limit::turn_away(stream).await;
                drop(permit);
            });
            continue;
        };
        metrics.connections_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let slot = (slot, metrics::Held::new(&metrics, |m| &m.connections_open));
        let service =
            tower::ServiceExt::map_request(router.clone(), move |req: hyper::Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
                req
            });
        let service = hyper_util::service::TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let Some(tls) = tls.clone() else {
            let conn = watcher.watch(h1.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                let _ = conn.await;
                drop(slot);
            });
            continue;
        };
        let (h1, h2) = (h1.clone(), h2.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(handshake_timeout, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(peer = %addr, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(peer = %addr, "TLS handshake timed out"),
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let _ = watcher.watch(h2.serve_connection(TokioIo::new(stream), service)).await;
            } else {
                let _ = watcher.watch(h1.serve_connection(TokioIo::new(stream), service)).await;
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
