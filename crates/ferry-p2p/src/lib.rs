//! ferry-p2p: direct transfers between ferry clients over iroh (QUIC with hole punching and
//! UPnP/NAT-PMP/PCP port mapping), relayed through the relay `ferry serve` embeds when no
//! direct path exists. Never n0's public relays or discovery: endpoints are built with
//! `presets::Minimal` and a relay map naming only the operator's server, trusting only its
//! certificate.
//!
//! - [`relay`]: the embedded relay ([`EmbeddedRelay`]) and what clients need of it
//!   ([`RelayInfo`]);
//! - [`endpoint`]: a client's endpoint;
//! - [`doctor`]: what the network looks like from a client;
//! - [`registry`]: which endpoints belong to logged-in users (the relay admits only those);
//! - [`transfer`]: the resumable, chunk-verified transfer protocol on one stream.
#![deny(missing_docs)]

mod disk;
pub mod doctor;
pub mod endpoint;
pub mod registry;
pub mod relay;
pub mod transfer;

pub use iroh::endpoint::Connection;
pub use iroh::{EndpointId, SecretKey};
pub use registry::{RegisteredOnly, Registry};
pub use relay::{EmbeddedRelay, RelayInfo};

/// The ALPN of ferry's transfer protocol.
pub const ALPN: &[u8] = b"ferry/transfer/2"; // 2: BLAKE3 chunk hashes
/// The ALPN of a probe connection (see [`endpoint::probe_direct`]): nothing is sent on it.
pub const PROBE_ALPN: &[u8] = b"ferry/probe/1";

/// What went wrong, sorted by what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P2pError {
    /// The relay could not start.
    #[error("relay: {0}")]
    Relay(String),
    /// The endpoint could not bind or connect.
    #[error("endpoint: {0}")]
    Endpoint(String),
    /// The stream broke (peer gone, path lost): try again; the transfer resumes.
    #[error("connection: {0}")]
    Stream(String),
    /// The peer broke the protocol (or lied): give up on this peer.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Bytes failed verification beyond repair.
    #[error("verification: {0}")]
    Verification(String),
    /// The receiver declined the file.
    #[error("the receiver declined the file")]
    Declined,
    /// A local file could not be read or written.
    #[error("file: {0}")]
    Io(String),
}
