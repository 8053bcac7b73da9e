//! The server side of peer-to-peer transfers: the embedded relay (on the listen address's
//! IP, ports chosen by the system; clients learn them from `GET /api/p2p`) admitting only
//! endpoints that logged-in users registered, and the registry behind it.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_p2p::{EmbeddedRelay, RegisteredOnly, Registry, RelayInfo};

use crate::ApiError;

/// The relay's description and the endpoint registry.
#[derive(Debug)]
pub struct P2pNode {
    /// What clients need to use the relay.
    pub relay: RelayInfo,
    /// Registered endpoints.
    pub registry: Arc<Registry>,
    /// How often clients renew their registration (the presence heartbeat; an entry
    /// lapses after three).
    pub renew_every: std::time::Duration,
}

/// Starts the relay on `listen`'s IP. The returned relay must live as long as the server.
pub(crate) async fn start(
    listen: SocketAddr,
    heartbeat: std::time::Duration,
) -> Result<(EmbeddedRelay, P2pNode), ApiError> {
    let registry = Arc::new(Registry::new(heartbeat * 3));
    let bind = SocketAddr::new(listen.ip(), 0);
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    let relay = EmbeddedRelay::spawn(bind, bind, names, Arc::new(RegisteredOnly(registry.clone())))
        .await
        .map_err(|e| ApiError::Internal(format!("cannot start the peer-to-peer relay: {e}")))?;
    let node = P2pNode { relay: relay.info().clone(), registry, renew_every: heartbeat };
    Ok((relay, node))
}
