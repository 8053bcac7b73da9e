//! Progress reporting.

use std::sync::Arc;

/// How far a transfer is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes the server (or the local file) holds so far.
    pub done: u64,
    /// Total bytes, when known.
    pub total: Option<u64>,
}

/// A callback that receives progress; called often, so keep it cheap.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;
