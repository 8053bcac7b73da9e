//! Shared server state.

use std::sync::Arc;

use ferry_store::{Blobs, LocalBlobs, Metadata};
use tokio_util::sync::CancellationToken;

use crate::locks::UploadLocks;
use crate::{ApiError, ServerConfig};

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The configuration.
    pub config: Arc<ServerConfig>,
    /// Upload records, accounts, the relay and file digests (SQLite or PostgreSQL).
    pub meta: Arc<dyn Metadata>,
    /// Bytes: unfinished uploads and the served tree (local directories, or S3).
    pub blobs: Arc<dyn Blobs>,
    pub(crate) locks: Arc<UploadLocks>,
    /// This process's name in upload leases (random per start).
    pub(crate) node: String,
    pub(crate) challenges: Arc<crate::api::ChallengeStore>,
    /// Permits for staging files held open by writers (see `tus/sink.rs`), sized from the
    /// file-descriptor limit when the server starts.
    pub(crate) staging_files: Arc<tokio::sync::Semaphore>,
    /// Per-user quota admission (see [`crate::quota`]).
    pub(crate) quotas: Arc<crate::quota::Quotas>,
    /// Every password check goes through it (bounded, throttled, remembered).
    pub(crate) passwords: Arc<crate::password_gate::PasswordGate>,
    /// Push to online users.
    pub events: Arc<crate::events::Events>,
    /// Bytes of each relay item (id, recipient) that have reached the recipient, as far as
    /// this process has seen (for the sender's outbox).
    pub(crate) relay_progress: Arc<std::sync::Mutex<std::collections::HashMap<(String, i64), u64>>>,
    /// Counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The peer-to-peer relay and endpoint registry, when the server runs one.
    pub p2p: Option<Arc<crate::p2p::P2pNode>>,
    /// Cancelled when the server starts draining (SIGTERM): no new connections, event
    /// streams end, in-flight requests run on.
    pub draining: CancellationToken,
    /// Cancelled when the drain's grace period is over: in-flight PATCHes stop at once,
    /// keep what is durable (and verified), and answer.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Opens the data directory: database, staging area and tree. `shutdown` is the hard
    /// stop (see [`AppState::shutdown`]).
    pub async fn open(config: ServerConfig, shutdown: CancellationToken) -> Result<Self, ApiError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let meta = ferry_store::open_metadata(config.database.as_ref().map(|d| d.0.as_str()), &config.data_dir).await?;
        let blobs: Arc<dyn Blobs> = match &config.blobs {
            Some(url) => Arc::new(ferry_store::S3Blobs::open(url, &config.s3, meta.clone()).await?),
            None => Arc::new(LocalBlobs::open(config.data_dir.join("staging"), config.tree_dir())?),
        };
        Ok(Self {
            config: Arc::new(config),
            meta,
            blobs,
            locks: Arc::default(),
            node: ferry_core::UploadId::random().to_string(),
            challenges: Arc::default(),
            quotas: Arc::default(),
            staging_files: Arc::new(tokio::sync::Semaphore::new(crate::fd_limit::DEFAULT_OPEN_STAGING)),
            passwords: Arc::default(),
            events: Arc::default(),
            relay_progress: Arc::default(),
            metrics: Arc::default(),
            p2p: None,
            draining: CancellationToken::new(),
            shutdown,
        })
    }
}

/// Exclusive use of a data directory by one server process (`DATA/ferry.lock`, an `flock`
/// released when the process exits, even by `kill -9`).
#[derive(Debug)]
pub(crate) struct DataLock(#[allow(dead_code)] std::fs::File);

impl DataLock {
    /// Takes the lock, or explains who has it.
    pub(crate) fn take(data_dir: &std::path::Path) -> Result<Self, ApiError> {
        let path = data_dir.join("ferry.lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Self(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(ApiError::Conflict(format!(
                "another ferry serve is already using the data directory {} (it holds {}); stop it first or pass another --data",
                data_dir.display(),
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
        }
    }
}
