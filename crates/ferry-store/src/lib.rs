//! ferry-store: where ferry keeps bytes and facts, behind traits the server holds as
//! `Arc<dyn …>`, so it never knows (or does the I/O of) the backend.
//!
//! - [`Blobs`]: bytes. [`UploadBlobs`] holds uploads in progress, written through one blocking
//!   [`BlobWriter`] per request (write, flush, then acknowledge what is durable or discard; a
//!   failed sync is final); [`TreeBlobs`] is the served tree, where a finished upload appears
//!   by one atomic publish and every client-supplied path stays confined. [`LocalBlobs`] is the
//!   embedded backend (a staging directory and the tree directory).
//! - [`Metadata`] (its parts [`UploadStore`], [`AccountStore`], [`RelayStore`], [`TreeIndex`]):
//!   upload records, accounts, the relay and known file digests. [`SqliteMeta`] is the
//!   embedded backend (WAL, `synchronous=FULL`). Every offset change is a compare-and-set on
//!   the expected offset, so a stale writer can never move an offset backwards or skip bytes.
//! - [`StoreError`]: what went wrong, as ferry's own kinds (no backend's error types).
//!
//! Every backend passes the suite in `tests/conformance.rs`.
#![deny(missing_docs)]

mod accounts;
mod blobs;
mod error;
mod group_commit;
mod local;
mod meta;
mod metadata;
mod relay;
mod staging;
mod staging_writer;
mod tree;

pub use accounts::{Grant, Usage, User};
pub use blobs::{BlobFlush, BlobRead, BlobWriter, Blobs, DirEntry, FileStat, Host, TreeBlobs, UploadBlobs};
pub use error::StoreError;
pub use local::LocalBlobs;
pub use meta::{ConcatKind, NewUpload, SqliteMeta, TreeFileRecord, UploadRecord, UploadState};
pub use metadata::{AccountStore, Metadata, RelayStore, TreeIndex, UploadStore};
pub use relay::{Delivery, DeliveryState, RelayItem};
pub(crate) use staging::StagingArea;
pub use staging_writer::FaultPlan;
pub(crate) use tree::Tree;

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
