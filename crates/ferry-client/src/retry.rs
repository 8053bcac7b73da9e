//! Retries with exponential backoff and jitter, and a budget that resets on progress.

use std::time::Duration;

/// How failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts without progress before giving up.
    pub max_attempts: u32,
    /// First delay.
    pub base_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 8, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// The delay before attempt `n` (1-based): exponential, capped, with ±25% jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << n.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let jitter: f64 = 0.75 + rand::random::<f64>() * 0.5;
        capped.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let p = RetryPolicy::default();
        assert!(p.delay(1) <= Duration::from_millis(625));
        assert!(p.delay(3) >= Duration::from_millis(1500));
        assert!(p.delay(30) <= Duration::from_millis(37_500));
    }
}
