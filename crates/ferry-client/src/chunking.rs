//! How much one PATCH carries.
//!
//! A PATCH carries a crc32c trailer and the server keeps it only whole, so whatever a
//! PATCH has sent is lost if the server dies before its end. `Auto` (the default) therefore
//! bounds every PATCH in time: the body ends cleanly at the first block after
//! [`TARGET`] once it has sent at least a floor (32 MiB shared by the parallel parts), so
//! a server kill, restart or crash costs at most max(floor, ~1.5 s of transfer), whatever
//! the link. One round trip per PATCH is the price: about 3 % of a 40 ms link and
//! unmeasurable on a LAN. After a failure the target and the floor shrink (a link that
//! breaks every second still makes progress) and grow back with every success.
//! `Fixed` sends exactly that many bytes per PATCH.

use std::time::Duration;

/// How long a PATCH runs before it ends at the next block.
pub const TARGET: Duration = Duration::from_millis(1500);
/// Shortest target after failures.
const MIN_TARGET: Duration = Duration::from_millis(250);
/// Bytes a PATCH sends before it may end on time, shared by the parts in flight.
pub const FLOOR: u64 = 32 << 20;
/// Smallest floor of one part, and after failures.
pub const MIN_FLOOR: u64 = 256 << 10;

/// The chunking policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkSize {
    /// Each PATCH bounded in time (and at least a floor in bytes); adaptive on failures.
    Auto,
    /// Always this many bytes.
    Fixed(u64),
}

/// What the next PATCH sends: at most `len` bytes, and it ends early at the first block
/// after `soft_end.0` has passed once `soft_end.1` bytes were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Largest body.
    pub len: u64,
    /// (time, bytes) after which the body ends at the next block.
    pub soft_end: Option<(Duration, u64)>,
}

/// The running chunk plan of one part.
#[derive(Debug, Clone)]
pub struct Chunker {
    policy: ChunkSize,
    target: Duration,
    floor: u64,
    full_floor: u64,
}

impl Chunker {
    /// A chunker following `policy` for one of `parts` parts sent at once.
    pub fn new(policy: ChunkSize, parts: usize) -> Self {
        let full_floor = (FLOOR / parts.max(1) as u64).max(MIN_FLOOR);
        Self { policy, target: TARGET, floor: full_floor, full_floor }
    }

    /// The next PATCH, given what is left of the part.
    pub fn plan(&self, remaining: u64) -> ChunkPlan {
        match self.policy {
            ChunkSize::Fixed(n) => ChunkPlan { len: n.max(1).min(remaining), soft_end: None },
            ChunkSize::Auto => ChunkPlan { len: remaining, soft_end: Some((self.target, self.floor)) },
        }
    }

    /// A PATCH ended well.
    pub fn succeeded(&mut self) {
        self.target = (self.target * 2).min(TARGET);
        self.floor = self.floor.saturating_mul(2).min(self.full_floor);
    }

    /// A PATCH failed after `delivered` bytes reached the connection.
    pub fn failed(&mut self, delivered: u64) {
        if self.policy == ChunkSize::Auto {
            self.target = (self.target / 2).max(MIN_TARGET);
            self.floor = (self.floor / 4).min(delivered.max(MIN_FLOOR)).max(MIN_FLOOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_bounded_in_time_with_a_floor_shared_by_the_parts() {
        let one = Chunker::new(ChunkSize::Auto, 1);
        assert_eq!(one.plan(1 << 40), ChunkPlan { len: 1 << 40, soft_end: Some((TARGET, FLOOR)) });
        let four = Chunker::new(ChunkSize::Auto, 4);
        assert_eq!(four.plan(1 << 30).soft_end, Some((TARGET, FLOOR / 4)));
        assert_eq!(Chunker::new(ChunkSize::Auto, 1000).plan(10).soft_end, Some((TARGET, MIN_FLOOR)));
    }

    #[test]
    fn failures_shrink_and_successes_restore() {
        let mut c = Chunker::new(ChunkSize::Auto, 1);
        c.failed(1 << 20);
        assert_eq!(c.plan(u64::MAX).soft_end, Some((TARGET / 2, 1 << 20)));
        for _ in 0..10 {
            c.failed(0);
        }
        assert_eq!(c.plan(u64::MAX).soft_end, Some((MIN_TARGET, MIN_FLOOR)));
        for _ in 0..20 {
            c.succeeded();
        }
        assert_eq!(c.plan(u64::MAX).soft_end, Some((TARGET, FLOOR)));
    }

    #[test]
    fn fixed_is_fixed() {
        let mut f = Chunker::new(ChunkSize::Fixed(5), 1);
        f.failed(0);
        f.succeeded();
        assert_eq!(f.plan(100), ChunkPlan { len: 5, soft_end: None });
        assert_eq!(f.plan(3).len, 3);
    }
}
