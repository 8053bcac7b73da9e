//! A byte-rate limiter shared by every connection of a transfer (`--limit-rate`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits the average rate to `bytes_per_sec`: each block reserves its send time on a
/// virtual clock and waits until then (GCRA, no burst beyond one block).
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    next_free: Mutex<Instant>,
}

impl RateLimiter {
    /// A limiter at `bytes_per_sec` (at least 1).
    pub fn new(bytes_per_sec: u64) -> Self {
        Self { bytes_per_sec: bytes_per_sec.max(1), next_free: Mutex::new(Instant::now()) }
    }

    /// Reserves `n` bytes; returns how long to wait before sending them: until the moment
    /// the rate has paid for them, so even the first block is paced.
    pub fn reserve(&self, n: u64) -> Duration {
        let now = Instant::now();
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let start = (*next).max(now);
        *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        next.saturating_duration_since(now)
    }

    /// Reserves `n` bytes and waits.
    pub async fn acquire(&self, n: u64) {
        let wait = self.reserve(n);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_space_blocks_at_the_rate() {
        let l = RateLimiter::new(1_000_000);
        let mut total = Duration::ZERO;
        for _ in 0..10 {
            total = l.reserve(100_000);
        }
        // Ten 100 kB blocks at 1 MB/s: the tenth is paid for one second from now.
        assert!(total >= Duration::from_millis(950) && total <= Duration::from_millis(1000), "{total:?}");
    }
}
