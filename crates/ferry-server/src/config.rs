//! The validated server configuration.

use std::path::PathBuf;
use std::time::Duration;

/// Everything `ferry serve` needs, already validated and merged from flags, environment
/// and the config file by the binary.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory: `ferry.db`, `staging/` and (without `root`) `files/`.
    pub data_dir: PathBuf,
    /// Serve this directory as the tree instead of `data_dir/files`.
    pub root: Option<PathBuf>,
    /// The metadata database: `postgres://…` or `sqlite://PATH`; `None` for
    /// `data_dir/ferry.db`.
    pub database: Option<DatabaseUrl>,
    /// Where bytes live: `s3://bucket/prefix` for an S3-compatible store; `None` for the
    /// data directory (`staging/`) and the tree directory.
    pub blobs: Option<String>,
    /// The S3 endpoint and credentials (besides the `AWS_*` environment).
    pub s3: ferry_store::S3Options,
    /// Largest upload accepted, advertised as `Tus-Max-Size`.
    pub max_size: u64,
    /// How long an unfinished upload lives after its last byte.
    pub upload_ttl: Duration,
    /// How often the sweeper looks for expired uploads.
    pub sweep_interval: Duration,
    /// A request body that sends nothing for this long is cut (its bytes are kept).
    pub network_timeout: Duration,
    /// Trust `X-Forwarded-Host`/`X-Forwarded-Proto` when building `Location`.
    pub behind_proxy: bool,
    /// While a long PATCH streams, make bytes durable and acknowledge them at least this
    /// often (bytes), so a cut loses little.
    pub commit_every_bytes: u64,
    /// Require accounts on every route but the public ones (`--no-auth` turns it off).
    pub auth: bool,
    /// How long a relayed file waits for its recipients.
    pub relay_ttl: Duration,
    /// Event-stream heartbeat and presence-report interval (offline after three missed).
    pub heartbeat: Duration,
    /// Embed the peer-to-peer relay and offer direct transfers between logged-in users
    /// (`--no-p2p` turns it off; it is off without accounts).
    pub p2p: bool,
    /// On shutdown, how long in-flight requests may run on to their end before they are
    /// stopped (keeping what is durable and verified).
    pub shutdown_grace: Duration,
    /// A connection must deliver a request's whole header within this long (slowloris).
    pub header_timeout: Duration,
    /// Connections served at once; more are closed on arrival until one ends.
    pub max_connections: usize,
    /// Unfinished uploads one user may have at once.
    pub max_open_uploads: u64,
    /// Bytes one user's unfinished uploads may hold (declared lengths), quota or not.
    pub max_staging_bytes: u64,
    /// Which copies an instant upload (`/api/dedup`) may reuse.
    pub dedup: DedupMode,
    /// Content smaller than this is never deduplicated from a file the caller cannot read.
    pub dedup_min_size: u64,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `/metrics` answers anyone (else admins only).
    pub metrics_public: bool,
    /// Browser origins (`https://app.example.com`, or `*`) allowed to call ferry from their
    /// pages *with the web UI's session cookie*; empty: any origin, but only with a bearer
    /// token or Basic credentials (see `cors.rs`).
    pub cors_origins: Vec<String>,
}

/// Which existing copies an instant upload may reuse. Reusing another user's copy tells the
/// caller that this content exists somewhere on the server, so it is the operator's choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupMode {
    /// Any copy in the tree of at least `dedup_min_size` bytes (proof of possession
    /// required); smaller ones only when the caller may read them.
    Global,
    /// Only copies the caller may read anyway (their home, folders granted to them).
    User,
    /// No instant upload; every file is uploaded.
    Off,
}

impl std::str::FromStr for DedupMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "global" => Ok(Self::Global),
            "user" => Ok(Self::User),
            "off" => Ok(Self::Off),
            _ => Err(format!("dedup must be global, user or off, not {s:?}")),
        }
    }
}

impl ServerConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            database: None,
            blobs: None,
            s3: ferry_store::S3Options::default(),
            root: None,
            max_size: 1 << 40,
            upload_ttl: Duration::from_secs(24 * 3600),
            sweep_interval: Duration::from_secs(60),
            network_timeout: Duration::from_secs(60),
            behind_proxy: false,
            commit_every_bytes: 64 << 20,
            auth: true,
            relay_ttl: Duration::from_secs(7 * 24 * 3600),
            heartbeat: Duration::from_secs(10),
            p2p: true,
            shutdown_grace: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_open_uploads: 1_000,
            max_staging_bytes: 1 << 40,
            dedup: DedupMode::User,
            dedup_min_size: 1 << 20,
            tls: None,
            metrics_public: false,
            cors_origins: Vec::new(),
        }
    }

    /// The served tree's directory.
    pub fn tree_dir(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| self.data_dir.join("files"))
    }
}

/// A database URL, which may hold a password: shown without it.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&ferry_store::redact(&self.0))
    }
}
