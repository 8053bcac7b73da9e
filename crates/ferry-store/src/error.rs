//! Storage errors, sorted by what the caller does next. Backends turn their own errors
//! (filesystem, database) into these, so nothing above the store knows which backend failed.

use std::io;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk is full: answer 507 and keep the state as it was.
    #[error("the server's disk is full")]
    DiskFull,
    /// Out of file descriptors (process or system): a moment later it may work.
    #[error("the server is out of file descriptors")]
    OutOfDescriptors,
    /// What was asked for does not exist (or is not the kind of thing asked for).
    #[error("not found: {0}")]
    NotFound(String),
    /// A path resolved outside the tree (a symlink pointing out of it).
    #[error("path {0:?} leads outside the served tree")]
    Escapes(String),
    /// Something in the way of a placement (e.g. a directory where the file should go).
    #[error("{0}")]
    Conflict(String),
    /// Any other failure of the byte storage.
    #[error("storage I/O failed: {0}")]
    Storage(String),
    /// The metadata database failed.
    #[error("metadata database failed: {0}")]
    Database(String),
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        match (e.kind(), e.raw_os_error()) {
            (io::ErrorKind::StorageFull, _) | (_, Some(28)) => Self::DiskFull,
            (_, Some(23 | 24)) => Self::OutOfDescriptors,
            (io::ErrorKind::NotFound | io::ErrorKind::NotADirectory, _) => Self::NotFound(e.to_string()),
            _ => Self::Storage(e.to_string()),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e.to_string())
    }
}
