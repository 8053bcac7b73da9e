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

    /// Reserves `n` bytes; returns how long to wait before sending them.
    pub fn reserve(&self, n: u64) -> Duration {
        let now = Instant::now();
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        // Idle time does not bank credit beyond a quarter second.
        let start = (*next).max(now.checked_sub(Duration::from_millis(250)).unwrap_or(now));
        *next = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        start.saturating_duration_since(now)
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
        // Ten 100 kB blocks at 1 MB/s: the tenth may start ~0.65-0.9 s from now.
        assert!(total >= Duration::from_millis(600) && total <= Duration::from_millis(950), "{total:?}");
    }
}
