//! The relay `ferry serve` embeds: iroh's relay server (HTTPS for relayed packets, QUIC
//! address discovery so peers learn their public address) with a certificate made at start.
//! Clients trust exactly that certificate (they get it from the server they log in to), so
//! nothing depends on n0's infrastructure or on a public CA.

use std::net::SocketAddr;
use std::sync::Arc;

use iroh::{RelayMap, RelayUrl};
use iroh_relay::server::{CertConfig, DynAccessControl, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::P2pError;

/// What a client needs to use a relay: its URL, QUIC port and certificate.
#[derive(Debug, Clone)]
pub struct RelayInfo {
    /// `https://IP:PORT` of the relay.
    pub url: RelayUrl,
    /// UDP port of QUIC address discovery.
    pub quic_port: u16,
    /// The relay's certificate (DER), the one root a client trusts for it.
    pub cert_der: Vec<u8>,
}

impl RelayInfo {
    /// The relay map an endpoint is built with.
    pub fn relay_map(&self) -> RelayMap {
        iroh::RelayConfig::new(self.url.clone(), Some(iroh_relay::RelayQuicConfig::new(self.quic_port))).into()
    }
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct EmbeddedRelay {
    server: Server,
    info: RelayInfo,
}

impl EmbeddedRelay {
    /// Starts the relay on `https` (TCP) and `quic` (UDP) with a fresh self-signed
    /// certificate for `names` (the addresses clients reach it by), admitting the endpoints
    /// `access` allows.
    pub async fn spawn(
        https: SocketAddr,
        quic: SocketAddr,
        names: Vec<String>,
        access: Arc<dyn DynAccessControl>,
    ) -> Result<Self, P2pError> {
        let cert = rcgen::generate_simple_self_signed(names).map_err(|e| P2pError::Relay(e.to_string()))?;
        let der = cert.cert.der().clone();
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let tls_config = |der: CertificateDer<'static>, key: PrivateKeyDer<'static>| {
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| P2pError::Relay(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(vec![der], key)
                .map_err(|e| P2pError::Relay(e.to_string()))
        };
        let https_tls = tls_config(der.clone(), key.clone_key())?;
        let quic_tls = tls_config(der.clone(), key)?;
        let mut relay = RelayConfig::new(SocketAddr::new(https.ip(), 0));
        relay.tls = Some(TlsConfig::new(https, CertConfig::Manual { server_config: https_tls }));
        relay.access = access;
        let mut quic_config = QuicConfig::new(quic);
        quic_config.server_config = Some(quic_tls);
        let mut config = ServerConfig::default();
        config.relay = Some(relay);
        config.quic = Some(quic_config);
        let server = Server::spawn(config).await.map_err(|e| P2pError::Relay(e.to_string()))?;
        let https_addr = server.https_addr().ok_or_else(|| P2pError::Relay("no HTTPS address".into()))?;
        let quic_port =
            server.quic_addr().map(|a| a.port()).ok_or_else(|| P2pError::Relay("no QUIC address".into()))?;
        let url: RelayUrl = format!("https://{https_addr}")
            .parse()
            .map_err(|e: iroh::RelayUrlParseError| P2pError::Relay(e.to_string()))?;
        Ok(Self { server, info: RelayInfo { url, quic_port, cert_der: der.to_vec() } })
    }

    /// What clients need to use it.
    pub fn info(&self) -> &RelayInfo {
        &self.info
    }

    /// Stops the relay.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
    }
}
