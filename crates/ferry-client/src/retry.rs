//! Retries with exponential backoff and jitter, and a budget that resets on progress.

use std::sync::Arc;
use std::time::Duration;

use crate::ClientError;

/// Told about each retry: the attempt (1-based), the most attempts, the wait before it, and
/// what failed — so a user sees "retrying 3/8 in 4 s" instead of a silent pause.
pub type RetryFn = Arc<dyn Fn(u32, u32, Duration, &ClientError) + Send + Sync>;

/// How failures are retried.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Attempts without progress before giving up.
    pub max_attempts: u32,
    /// First delay.
    pub base_delay: Duration,
    /// Largest delay.
    pub max_delay: Duration,
    /// Called before each retry's wait.
    pub on_retry: Option<RetryFn>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            on_retry: None,
        }
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

    /// The delay before attempt `n`, after telling [`RetryPolicy::on_retry`] about it.
    pub fn announce(&self, n: u32, why: &ClientError) -> Duration {
        let delay = self.delay(n);
        if let Some(f) = &self.on_retry {
            f(n, self.max_attempts, delay, why);
        }
        delay
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
