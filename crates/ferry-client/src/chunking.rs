//! How much one PATCH carries.
//!
//! A PATCH carries a crc32c trailer and the server keeps it only whole, so whatever a
//! PATCH has sent is lost if the server dies before its end. `Auto` (the default) therefore
//! bounds every PATCH in time: the body ends cleanly at the first block after [`TARGET`]
//! once it has sent at least a floor. The floor follows the link: on an unknown link (the
//! first PATCH) it is [`MIN_FLOOR`], after that what the last PATCH would have sent in
//! [`TARGET`] at its measured rate, capped at [`FLOOR`] shared by the parallel parts. So a
//! server kill, restart or crash costs at most max(floor, ~1.5 s of transfer), whatever the
//! link, and a slow link never sees a multi-minute first request. One round trip per PATCH
//! is the price: about 3 % of a 40 ms link and unmeasurable on a LAN. After a failure the
//! target and the floor shrink (a link that breaks every second still makes progress) and
//! grow back with every success.
//! `Fixed` sends exactly that many bytes per PATCH.

use std::time::Duration;

/// How long a PATCH runs before it ends at the next block.
pub const TARGET: Duration = Duration::from_millis(1500);
/// Shortest target after failures.
const MIN_TARGET: Duration = Duration::from_millis(250);
/// Largest floor: bytes a PATCH sends before it may end on time, shared by the parts in
/// flight.
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
    /// The last PATCH's rate (bytes/s), once known.
    rate: Option<f64>,
}

/// Smallest and largest read block of a PATCH body, and the block before the rate is known.
const MIN_BLOCK: u64 = 64 << 10;
const MAX_BLOCK: u64 = 1 << 20;
const FIRST_BLOCK: u64 = 256 << 10;

impl Chunker {
    /// A chunker following `policy` for one of `parts` parts sent at once.
    pub fn new(policy: ChunkSize, parts: usize) -> Self {
        let full_floor = (FLOOR / parts.max(1) as u64).max(MIN_FLOOR);
        Self { policy, target: TARGET, floor: MIN_FLOOR, full_floor, rate: None }
    }

    /// The next PATCH, given what is left of the part.
    pub fn plan(&self, remaining: u64) -> ChunkPlan {
        match self.policy {
            ChunkSize::Fixed(n) => ChunkPlan { len: n.max(1).min(remaining), soft_end: None },
            ChunkSize::Auto => ChunkPlan { len: remaining, soft_end: Some((self.target, self.floor)) },
        }
    }

    /// A PATCH ended well after sending `sent` bytes in `took`.
    pub fn succeeded(&mut self, sent: u64, took: Duration) {
        self.target = (self.target * 2).min(TARGET);
        let rate = sent as f64 / took.as_secs_f64().max(1e-3);
        self.rate = Some(rate);
        self.floor = ((rate * TARGET.as_secs_f64()) as u64).clamp(MIN_FLOOR, self.full_floor);
    }

    /// The read block for the next PATCH body: ~1/20 s of transfer at the last rate, so what
    /// a slow connection has been handed stays close to what it delivered (rates and
    /// progress stay honest) while a fast one reads big blocks.
    pub fn block(&self) -> u64 {
        match self.rate {
            None => FIRST_BLOCK,
            Some(r) => ((r / 20.0) as u64).clamp(MIN_BLOCK, MAX_BLOCK),
        }
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
    fn the_first_patch_is_bounded_in_time_then_the_floor_follows_the_rate() {
        let mut one = Chunker::new(ChunkSize::Auto, 1);
        assert_eq!(one.plan(1 << 40), ChunkPlan { len: 1 << 40, soft_end: Some((TARGET, MIN_FLOOR)) });
        // A slow link: 450 kB/s. The floor stays what ~1.5 s carries, not 32 MiB.
        one.succeeded(900_000, Duration::from_secs(2));
        assert_eq!(one.plan(1 << 40).soft_end, Some((TARGET, 675_000)));
        // A fast one: capped at the floor shared by the parts.
        one.succeeded(1 << 30, Duration::from_secs(1));
        assert_eq!(one.plan(1 << 40).soft_end, Some((TARGET, FLOOR)));
        let mut four = Chunker::new(ChunkSize::Auto, 4);
        four.succeeded(1 << 30, Duration::from_secs(1));
        assert_eq!(four.plan(1 << 30).soft_end, Some((TARGET, FLOOR / 4)));
        assert_eq!(Chunker::new(ChunkSize::Auto, 1000).plan(10).soft_end, Some((TARGET, MIN_FLOOR)));
    }

    #[test]
    fn blocks_follow_the_rate() {
        let mut c = Chunker::new(ChunkSize::Auto, 1);
        assert_eq!(c.block(), FIRST_BLOCK);
        c.succeeded(600_000, Duration::from_secs(2));
        assert_eq!(c.block(), MIN_BLOCK, "300 kB/s: 64 KiB blocks");
        c.succeeded(1 << 30, Duration::from_secs(1));
        assert_eq!(c.block(), MAX_BLOCK);
    }

    #[test]
    fn failures_shrink_and_successes_restore() {
        let mut c = Chunker::new(ChunkSize::Auto, 1);
        c.succeeded(1 << 30, Duration::from_secs(1));
        c.failed(1 << 20);
        assert_eq!(c.plan(u64::MAX).soft_end, Some((TARGET / 2, 1 << 20)));
        for _ in 0..10 {
            c.failed(0);
        }
        assert_eq!(c.plan(u64::MAX).soft_end, Some((MIN_TARGET, MIN_FLOOR)));
        for _ in 0..20 {
            c.succeeded(1 << 30, Duration::from_secs(1));
        }
        assert_eq!(c.plan(u64::MAX).soft_end, Some((TARGET, FLOOR)));
    }

    #[test]
    fn fixed_is_fixed() {
        let mut f = Chunker::new(ChunkSize::Fixed(5), 1);
        f.failed(0);
        f.succeeded(5, Duration::from_secs(1));
        assert_eq!(f.plan(100), ChunkPlan { len: 5, soft_end: None });
        assert_eq!(f.plan(3).len, 3);
    }
}
