//! What the network looks like from this client, for `ferry doctor`: the address the relay
//! sees (reflexive, by QUIC address discovery), whether UDP works, the relay's latency,
//! whether the router offers port mapping (UPnP IGD, PCP, NAT-PMP), and whether a direct
//! path to a given peer can be made.

use std::net::SocketAddr;
use std::time::Duration;

use iroh::{Endpoint, Watcher as _};

use crate::endpoint::{self, PathKind};
use crate::{P2pError, PROBE_ALPN, RelayInfo};

/// The NAT situation as seen from this client.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diagnosis {
    /// Local addresses the endpoint listens on.
    pub local: Vec<SocketAddr>,
    /// Whether UDP reached the relay's address discovery.
    pub udp: bool,
    /// This client's address as the relay sees it (IPv4), if UDP works.
    pub reflexive: Option<SocketAddr>,
    /// Whether the public port changes with the destination (a symmetric NAT: direct paths
    /// then need port mapping or a friendlier NAT on the other side); `None`: not measured
    /// (it takes two relays).
    pub symmetric: Option<bool>,
    /// Round trip to the relay (the best probe).
    pub relay_latency: Option<Duration>,
    /// Port mapping protocols the router answered: UPnP, PCP, NAT-PMP.
    pub port_mapping: Vec<&'static str>,
}

/// Looks around from `ep`: waits up to `limit` for the first network report and (when
/// `probe_mapping`: never in tests, where nothing may leave the machine) the router's answer
/// to port-mapping probes.
pub async fn diagnose(ep: &Endpoint, limit: Duration, probe_mapping: bool) -> Diagnosis {
    let mut d = Diagnosis { local: ep.bound_sockets(), ..Diagnosis::default() };
    let mut reports = ep.net_report();
    let mapping = async {
        if !probe_mapping {
            return Vec::new();
        }
        let client = portmapper::Client::new(portmapper::Config::default());
        match tokio::time::timeout(limit, client.probe()).await {
            Ok(Ok(Ok(p))) => [(p.upnp, "UPnP"), (p.pcp, "PCP"), (p.nat_pmp, "NAT-PMP")]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect(),
            _ => Vec::new(),
        }
    };
    let report = tokio::time::timeout(limit, reports.initialized());
    let (report, mapping) = tokio::join!(report, mapping);
    d.port_mapping = mapping;
    if let Ok(r) = report {
        d.udp = r.udp_v4 || r.udp_v6;
        d.reflexive = r.global_v4.map(SocketAddr::V4);
        d.symmetric = r.mapping_varies_by_dest_ipv4;
        d.relay_latency = r.relay_latency.iter().map(|(_, _, t)| t).min();
    }
    d
}

/// Whether a direct path to `peer` comes up within `limit`: how long it took, or `None`
/// (the peer is reachable through the relay only). Errors when the peer cannot be reached.
pub async fn direct_path_to(
    ep: &Endpoint,
    relay: &RelayInfo,
    peer: iroh::EndpointId,
    limit: Duration,
) -> Result<(Option<Duration>, Option<Duration>), P2pError> {
    let conn = tokio::time::timeout(limit, ep.connect(endpoint::peer_addr(peer, relay), PROBE_ALPN))
        .await
        .map_err(|_| P2pError::Stream("the peer's client did not answer".into()))?
        .map_err(|e| P2pError::Stream(e.to_string()))?;
    let direct = endpoint::wait_for_direct(&conn, limit).await;
    let rtt = (endpoint::path_kind(&conn) != PathKind::None).then(|| conn.rtt(selected(&conn))).flatten();
    conn.close(0u32.into(), b"doctor");
    Ok((direct, rtt))
}

fn selected(conn: &iroh::endpoint::Connection) -> iroh::endpoint::PathId {
    let paths = conn.paths();
    (&paths).into_iter().find(|p| p.is_selected()).map(|p| p.id()).unwrap_or_default()
}
