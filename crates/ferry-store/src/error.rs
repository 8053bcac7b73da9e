//! Storage errors, sorted by what the caller does next.

use std::io;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk is full: answer 507 and keep the state as it was.
    #[error("the server's disk is full")]
    DiskFull,
    /// A path resolved outside the tree (a symlink pointing out of it).
    #[error("path {0:?} leads outside the served tree")]
    Escapes(String),
    /// Something in the way of a placement (e.g. a directory where the file should go).
    #[error("{0}")]
    Conflict(String),
    /// Any other filesystem error.
    #[error("storage I/O failed: {0}")]
    Io(io::Error),
    /// The metadata database failed.
    #[error("metadata database failed: {0}")]
    Db(#[from] sqlx::Error),
    /// A group commit this write was part of failed.
    #[error("metadata database failed: {0}")]
    Batch(String),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
            Self::DiskFull
        } else {
            Self::Io(e)
        }
    }
}
