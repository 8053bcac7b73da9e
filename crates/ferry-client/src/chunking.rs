//! How much one PATCH carries.
//!
//! `Max` sends each part in as few PATCHes as possible (each at most [`MAX_CHUNK`], so a
//! checksummed request that is cut loses a bounded amount) and turns adaptive after the
//! first failure. `Auto` aims for [`TARGET`] seconds per PATCH from the measured
//! throughput, growing or shrinking at most 4× a step, within [`MIN_CHUNK`]..[`MAX_CHUNK`]:
//! small on a slow or flaky link, so little progress is ever lost; large on a fast one, so
//! round trips never throttle it.

use std::time::Duration;

/// Smallest adaptive PATCH.
pub const MIN_CHUNK: u64 = 256 << 10;
/// Largest PATCH.
pub const MAX_CHUNK: u64 = 256 << 20;
/// Time an adaptive PATCH aims to take.
pub const TARGET: Duration = Duration::from_secs(3);
/// First adaptive PATCH.
const START: u64 = 4 << 20;

/// The chunking policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSize {
    /// As few PATCHes as possible; adaptive after a failure.
    Max,
    /// Adaptive from the start.
    Auto,
    /// Always this many bytes.
    Fixed(u64),
}

/// The running chunk size of one part.
#[derive(Debug, Clone)]
pub struct Chunker {
    policy: ChunkSize,
    size: u64,
}

impl Chunker {
    /// A chunker following `policy`.
    pub fn new(policy: ChunkSize) -> Self {
        let size = match policy {
            ChunkSize::Max => MAX_CHUNK,
            ChunkSize::Auto => START,
            ChunkSize::Fixed(n) => n.max(1),
        };
        Self { policy, size }
    }

    /// Bytes for the next PATCH, given what is left.
    pub fn next_len(&self, remaining: u64) -> u64 {
        self.size.min(remaining)
    }

    /// The current size.
    #[cfg(test)]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A PATCH of `bytes` took `elapsed`.
    pub fn succeeded(&mut self, bytes: u64, elapsed: Duration) {
        if self.policy != ChunkSize::Auto || bytes < self.size / 2 {
            return; // a short tail says little about the link
        }
        let rate = bytes as f64 / elapsed.as_secs_f64().max(0.001);
        let ideal = (rate * TARGET.as_secs_f64()) as u64;
        self.size = ideal.clamp(self.size / 4, self.size.saturating_mul(4)).clamp(MIN_CHUNK, MAX_CHUNK);
    }

    /// A PATCH failed after `delivered` bytes reached the server.
    pub fn failed(&mut self, delivered: u64) {
        match self.policy {
            ChunkSize::Fixed(_) => {}
            ChunkSize::Max => {
                self.policy = ChunkSize::Auto;
                self.size = delivered.clamp(MIN_CHUNK, START);
            }
            ChunkSize::Auto => self.size = (self.size / 4).max(MIN_CHUNK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_grows_on_a_fast_link_and_shrinks_on_a_slow_one() {
        let mut c = Chunker::new(ChunkSize::Auto);
        let s0 = c.size();
        c.succeeded(s0, Duration::from_millis(10)); // 400 MB/s
        assert_eq!(c.size(), s0 * 4, "growth is capped at 4x a step");
        for _ in 0..10 {
            let n = c.size();
            c.succeeded(n, Duration::from_millis(10));
        }
        assert_eq!(c.size(), MAX_CHUNK);
        let n = c.size();
        c.succeeded(n, Duration::from_secs(60)); // the link got slow
        assert_eq!(c.size(), MAX_CHUNK / 4);
        for _ in 0..10 {
            let n = c.size();
            c.succeeded(n, Duration::from_secs(30));
        }
        assert_eq!(c.size(), MIN_CHUNK);
    }

    #[test]
    fn max_turns_adaptive_after_a_drop() {
        let mut c = Chunker::new(ChunkSize::Max);
        assert_eq!(c.next_len(u64::MAX), MAX_CHUNK);
        c.failed(1 << 20);
        assert_eq!(c.size(), 1 << 20);
        c.failed(0);
        assert_eq!(c.size(), MIN_CHUNK);
        let mut f = Chunker::new(ChunkSize::Fixed(5));
        f.failed(0);
        f.succeeded(5, Duration::from_millis(1));
        assert_eq!(f.next_len(100), 5);
    }
}
