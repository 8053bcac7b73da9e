//! ferry-store: where ferry keeps bytes and facts.
//!
//! - [`StagingArea`]: uploads in progress, one file per upload, written through one
//!   [`StagingWriter`] per request (write, flush, then commit what is durable or discard);
//!   `sync_data` comes before any offset is acknowledged, and a failed sync is final.
//! - [`Tree`]: the served tree; a finished upload enters it by one atomic rename, and every
//!   client-supplied path is confined to it (symlinks out of the tree included).
//! - [`MetaStore`]: upload records and known file digests in SQLite (WAL, `synchronous=FULL`).
//!   Every offset change is a compare-and-set on the expected offset, so a stale writer can
//!   never move an offset backwards or skip bytes.
//!
//! The embedded backends are the only ones today; the S3 and PostgreSQL backends planned in
//! DESIGN.md §4 will sit behind the same operations.
#![deny(missing_docs)]

mod accounts;
mod error;
mod group_commit;
mod meta;
mod relay;
mod staging;
mod staging_writer;
mod tree;

pub use accounts::{Grant, Usage, User};
pub use error::StoreError;
pub use meta::{ConcatKind, MetaStore, NewUpload, TreeFileRecord, UploadRecord, UploadState};
pub use relay::{Delivery, DeliveryState, RelayItem};
pub use staging::StagingArea;
pub use staging_writer::{FaultPlan, FlushJob, StagingWriter};
pub use tree::{DirEntry, Tree};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}
