//! A client's endpoint: iroh with `presets::Minimal` (no n0 DNS, pkarr or relays), the one
//! relay of the ferry server it logged in to, trusting only that relay's certificate.

use iroh::endpoint::{QuicTransportConfig, presets};
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMode, SecretKey};
use iroh_relay::tls::CaTlsConfig;
use rustls::pki_types::CertificateDer;

use crate::{ALPN, P2pError, PROBE_ALPN, RelayInfo};

/// How an endpoint may reach peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paths {
    /// Direct when a path can be made (hole punched, port mapped), else relayed.
    Any,
    /// Only through the relay (no UDP sockets of its own): `--via server`-style tests, and
    /// peers that must not reveal their addresses.
    RelayOnly,
    /// Direct on the loopback interface only, no port mapping (tests: nothing leaves the
    /// machine, not even a UPnP discovery packet).
    Loopback,
}

/// A connection with no packet from the peer for this long is over (iroh keeps live
/// connections alive every 5 s, over whichever path works): a sender then resumes with the
/// peer's client elsewhere, or turns to the server's store.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(12);
/// A path (direct or relayed) with no packet for this long is abandoned and the connection
/// carries on over its other path: a blocked direct path hands over to the relay within
/// seconds (iroh's default is 15 s), kept alive by a probe every second while it works.
const PATH_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
const PATH_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// Binds an endpoint for `relay`, with `key` as its identity (a fresh one when `None`).
pub async fn bind(relay: &RelayInfo, key: Option<SecretKey>, paths: Paths) -> Result<Endpoint, P2pError> {
    let roots = [CertificateDer::from(relay.cert_der.clone())];
    let mut builder = Endpoint::builder(presets::Minimal)
        .relay_mode(RelayMode::Custom(relay.relay_map()))
        .ca_tls_config(CaTlsConfig::custom_roots(roots))
        .alpns(vec![ALPN.to_vec(), PROBE_ALPN.to_vec()]);
    let idle = IDLE_TIMEOUT.try_into().map_err(|e| P2pError::Endpoint(format!("idle timeout: {e}")))?;
    let transport = QuicTransportConfig::builder()
        .max_idle_timeout(Some(idle))
        .default_path_max_idle_timeout(PATH_IDLE_TIMEOUT)
        .default_path_keep_alive_interval(PATH_KEEP_ALIVE)
        .build();
    builder = builder.transport_config(transport);
    if let Some(key) = key {
        builder = builder.secret_key(key);
    }
    match paths {
        Paths::Any => {}
        Paths::RelayOnly => {
            builder = builder.clear_ip_transports().portmapper_config(iroh::endpoint::PortmapperConfig::Disabled);
        }
        Paths::Loopback => {
            builder = builder
                .clear_ip_transports()
                .bind_addr("127.0.0.1:0")
                .map_err(|e| P2pError::Endpoint(e.to_string()))?
                .portmapper_config(iroh::endpoint::PortmapperConfig::Disabled);
        }
    }
    builder.bind().await.map_err(|e| P2pError::Endpoint(e.to_string()))
}

/// The address of a peer known by its id, reached through `relay` (iroh finds direct paths
/// from there).
pub fn peer_addr(id: EndpointId, relay: &RelayInfo) -> EndpointAddr {
    EndpointAddr::new(id).with_relay_url(relay.url.clone())
}

/// The path a connection uses now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// Straight between the peers (hole punched, mapped, or on one network).
    Direct,
    /// Through the relay.
    Relay,
    /// None selected (closing).
    None,
}

/// The path `conn` uses now (what progress bars show).
pub fn path_kind(conn: &iroh::endpoint::Connection) -> PathKind {
    let paths = conn.paths();
    match (&paths).into_iter().find(|p| p.is_selected()) {
        Some(p) if p.is_ip() => PathKind::Direct,
        Some(_) => PathKind::Relay,
        None => PathKind::None,
    }
}

/// Waits up to `limit` for `conn` to select a direct path; how long that took, or `None`
/// (it stays relayed; iroh keeps trying and switches later if a path appears).
pub async fn wait_for_direct(
    conn: &iroh::endpoint::Connection,
    limit: std::time::Duration,
) -> Option<std::time::Duration> {
    let start = std::time::Instant::now();
    loop {
        if path_kind(conn) == PathKind::Direct {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Asks iroh to look for a direct path to `addr` again, now: a short-lived second
/// connection makes it exchange candidates and punch at once (left alone, a relayed
/// connection retries only every 60 s); a path it finds serves every connection to that
/// peer, the transfer's too. The peer's client answers probes by waiting for them to close.
pub async fn probe_direct(ep: &Endpoint, addr: EndpointAddr, hold: std::time::Duration) {
    if let Ok(Ok(conn)) = tokio::time::timeout(hold, ep.connect(addr, PROBE_ALPN)).await {
        tokio::time::sleep(hold).await;
        conn.close(0u32.into(), b"probe");
    }
}
