//! ferry-store: where ferry keeps bytes and facts, behind traits the server holds as
//! `Arc<dyn …>`, so it never knows (or does the I/O of) the backend.
//!
//! - [`Blobs`]: bytes. [`UploadBlobs`] holds uploads in progress, written through one blocking
//!   [`BlobWriter`] per request (write, flush, then acknowledge what is durable or discard; a
//!   failed sync is final); [`TreeBlobs`] is the served tree, where a finished upload appears
//!   by one atomic publish and every client-supplied path stays confined. [`LocalBlobs`] is the
//!   embedded backend (a staging directory and the tree directory).
//! - [`Metadata`] (its parts [`UploadStore`], [`AccountStore`], [`RelayStore`], [`TreeIndex`],
//!   [`DavStore`]): upload records, accounts, the relay, known file digests and WebDAV's
//!   properties and locks. [`SqliteMeta`] is the
//!   embedded backend (WAL, `synchronous=FULL`). Every offset change is a compare-and-set on
//!   the expected offset, so a stale writer can never move an offset backwards or skip bytes.
//! - [`StoreError`]: what went wrong, as ferry's own kinds (no backend's error types).
//!
//! Every backend passes the suite in `tests/conformance.rs`.
#![deny(missing_docs)]

mod accounts;
mod blobs;
mod dav;
mod error;
mod group_commit;
mod ledger;
mod local;
mod meta;
mod metadata;
#[cfg(feature = "postgres")]
mod pg;
mod relay;
#[cfg(feature = "s3")]
mod s3;
mod staging;
mod staging_writer;
mod tree;

pub use accounts::{Grant, Usage, User};
pub use blobs::{BlobFlush, BlobRead, BlobWriter, Blobs, DirEntry, FileStat, Host, TreeBlobs, UploadBlobs};
pub use dav::{DavStore, DeadProp, MAX_DEAD_PROP_BYTES, MAX_DEAD_PROPS, PropChange, StoredLock};
pub use error::StoreError;
pub use ledger::{BlobLedger, BlobProgress, PartRecord, Progress, TailChunk};
pub use local::LocalBlobs;
pub use meta::{ConcatKind, NewUpload, SqliteMeta, TreeFileRecord, UploadRecord, UploadState};
pub use metadata::{AccountStore, Metadata, RelayStore, TreeIndex, UploadStore};
#[cfg(feature = "postgres")]
pub use pg::PgMeta;
pub use relay::{Continuation, Delivery, DeliveryState, ItemKind, RelayItem};
#[cfg(feature = "s3")]
pub use s3::{S3Blobs, S3Options};
pub(crate) use staging::StagingArea;
pub use staging_writer::{FSYNC_LATENCY, FaultPlan};
pub(crate) use tree::Tree;

/// Opens the metadata backend `database` names: `postgres://…` (or `postgresql://…`) for
/// PostgreSQL, `sqlite://PATH` for a SQLite file; `None` for `data_dir/ferry.db`.
pub async fn open_metadata(
    database: Option<&str>,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn Metadata>, StoreError> {
    match database {
        None => Ok(std::sync::Arc::new(SqliteMeta::open(&data_dir.join("ferry.db")).await?)),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => postgres(url).await,
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(path) => Ok(std::sync::Arc::new(SqliteMeta::open(std::path::Path::new(path)).await?)),
            None => Err(StoreError::Database(format!(
                "unknown database {:?}: use postgres://USER@HOST:PORT/DB or sqlite://PATH",
                redact(url)
            ))),
        },
    }
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<std::sync::Arc<dyn Metadata>, StoreError> {
    Ok(std::sync::Arc::new(
        PgMeta::open(url)
            .await
            .map_err(|e| StoreError::Database(format!("cannot use PostgreSQL at {}: {e}", redact(url))))?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<std::sync::Arc<dyn Metadata>, StoreError> {
    Err(StoreError::Database("this ferry was built without PostgreSQL support (feature `postgres`)".into()))
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_lose_their_password_in_messages() {
        assert_eq!(super::redact("postgres://ferry:s3cret@db:5432/ferry"), "postgres://ferry@db:5432/ferry");
        assert_eq!(super::redact("postgres://ferry@db/ferry"), "postgres://ferry@db/ferry");
        assert_eq!(super::redact("sqlite:///var/lib/ferry.db"), "sqlite:///var/lib/ferry.db");
    }
}
