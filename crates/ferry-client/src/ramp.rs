//! How many streams a transfer runs at once when nobody said: start small, add streams
//! while the aggregate rate keeps rising, stop at the knee.
//!
//! One TCP stream cannot fill a long, lossy path (a loss-based congestion control such as
//! Reno gets about MSS/RTT · 1.22/√loss: ~3.6 Mbit/s at 40 ms and 1 %), while on a LAN or
//! loopback the disk is the limit and more streams only add work. So a transfer to a
//! server more than [`NEAR`] away starts with [`START`] streams and doubles them while the
//! rate (measured over a [`STEP`] after a [`WARM`]-up) rose by at least [`GAIN`]. A step
//! that gains less is measured once more at the same count (new connections spend their
//! first second in slow start, and the ones before them overshoot in theirs); if it still
//! gains less, the count settles (giving back the last doubling if it made things worse).
//! Up to a cap per server. Links change (a burst of loss, other traffic ending), so a
//! settled count below the cap is probed again every [`REPROBE`] steps, and at once when its
//! own rate rises by [`GAIN`] (the link got better): one more doubling, kept only if it
//! gains at least [`GAIN`]. Streams that each carry less than [`SMALL_WINDOW`] per round
//! trip (a lossy path under Reno: ~18 KB at 40 ms and 1 %) are limited one by one, not by
//! the link, so their count grows fourfold instead. A nearby server gets one stream and
//! none of this.

use std::time::Duration;

/// A server whose round trip is under this is near: one stream.
pub const NEAR: Duration = Duration::from_millis(5);
/// Streams a transfer to a far server starts with.
pub const START: usize = 4;
/// Default cap on streams to one server.
pub const DEFAULT_MAX: usize = 16;
/// How long the rate is measured at each stream count.
pub const STEP: Duration = Duration::from_millis(1000);
/// How long a new count runs before its rate is measured: new connections spend it in
/// their handshake and slow start, new upload connections filling their buffers.
pub const WARM: Duration = Duration::from_millis(500);
/// The rate must rise by this factor for the next doubling.
pub const GAIN: f64 = 1.15;
/// Steps a settled count below the cap runs before it is probed again.
pub const REPROBE: u32 = 3;
/// A stream carrying less than this per round trip is held back by loss or a slow path,
/// not by the others: the count is then grown fourfold instead of doubled.
pub const SMALL_WINDOW: f64 = 64.0 * 1024.0;
/// A stream that delivers nothing for this long is dropped and replaced.
pub const STALL: Duration = Duration::from_secs(10);

/// The rate (per second) at which `counter` grows over one [`STEP`], measured after
/// [`WARM`].
pub async fn step_rate(counter: impl Fn() -> u64) -> f64 {
    tokio::time::sleep(WARM).await;
    let (before, at) = (counter(), std::time::Instant::now());
    tokio::time::sleep(STEP).await;
    counter().saturating_sub(before) as f64 / at.elapsed().as_secs_f64().max(1e-3)
}

/// The stream-count controller.
#[derive(Debug, Clone)]
pub struct Ramp {
    streams: usize,
    max: usize,
    /// The rate at the previous count, and that count.
    before: Option<(f64, usize)>,
    settled: bool,
    /// Steps since the count settled, and the lowest rate seen at it since.
    quiet: u32,
    settled_rate: f64,
    /// The current doubling is a probe from a settled count: kept only if it gains.
    probing: bool,
    /// The last step gained too little; the next one at the same count decides.
    doubtful: bool,
    /// Round trip to the server, when measured.
    rtt: Option<Duration>,
}

impl Ramp {
    /// Starts at `start` streams (at most `max`); `start == max` never changes.
    pub fn new(start: usize, max: usize) -> Self {
        let max = max.max(1);
        let streams = start.clamp(1, max);
        Self {
            streams,
            max,
            before: None,
            settled: streams == max,
            quiet: 0,
            settled_rate: f64::MAX,
            probing: false,
            doubtful: false,
            rtt: None,
        }
    }

    /// Knowing the round trip lets the count grow faster while each stream carries less
    /// than [`SMALL_WINDOW`] per round trip.
    pub fn with_rtt(mut self, rtt: Duration) -> Self {
        self.rtt = Some(rtt);
        self
    }

    /// The stream count now.
    pub fn streams(&self) -> usize {
        self.streams
    }

    /// Whether the count stays as it is (at the cap for good, or until the next probe).
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Whether the count can never change again.
    pub fn fixed(&self) -> bool {
        self.settled && self.streams == self.max
    }

    /// The aggregate rate (bytes/s) over the last step at the current count; returns the
    /// count for the next step.
    pub fn observe(&mut self, rate: f64) -> usize {
        if self.settled {
            self.quiet += 1;
            let recovered = rate >= self.settled_rate * GAIN;
            self.settled_rate = self.settled_rate.min(rate);
            if self.streams < self.max && (self.quiet >= REPROBE || recovered) {
                self.settled = false;
                self.probing = true;
                self.grow(rate);
            }
            return self.streams;
        }
        match self.before {
            Some((prev, _)) if rate < prev * GAIN && !self.doubtful && !self.probing => {
                self.doubtful = true;
            }
            Some((prev, fewer)) if rate < prev * GAIN => {
                self.doubtful = false;
                self.settled = true;
                self.quiet = 0;
                self.settled_rate = rate;
                if rate < prev || self.probing {
                    // The last doubling made it worse (or a probe did not pay): give it back.
                    self.streams = fewer;
                }
                self.probing = false;
            }
            _ => {
                (self.probing, self.doubtful) = (false, false);
                self.grow(rate);
            }
        }
        self.streams
    }

    fn grow(&mut self, rate: f64) {
        let window = self.rtt.map(|rtt| rate / self.streams as f64 * rtt.as_secs_f64());
        let factor = if window.is_some_and(|w| w < SMALL_WINDOW) { 4 } else { 2 };
        self.before = Some((rate, self.streams));
        self.streams = (self.streams * factor).min(self.max);
        if self.before.is_some_and(|b| b.1 == self.streams) {
            self.settled = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_limited_link_grows_to_the_cap() {
        // Each stream gets 0.45 MB/s whatever the others do.
        let mut r = Ramp::new(START, DEFAULT_MAX);
        while !r.fixed() {
            let n = r.streams();
            r.observe(n as f64 * 450e3);
        }
        assert_eq!(r.streams(), DEFAULT_MAX);
    }

    #[test]
    fn a_full_link_stops_at_the_knee() {
        // 4 streams already fill 10 MB/s; 8 gain a little, 16 would not be tried.
        let mut r = Ramp::new(START, DEFAULT_MAX);
        assert_eq!(r.observe(10e6), 8);
        assert_eq!(r.observe(10.5e6), 8, "a small gain is measured once more");
        assert!(!r.settled());
        assert_eq!(r.observe(10.4e6), 8, "and then settles at the count that had it");
        assert!(r.settled() && !r.fixed());
        for _ in 1..REPROBE {
            assert_eq!(r.observe(10.5e6), 8, "settled until the next probe");
        }
        assert_eq!(r.observe(10.5e6), 16, "then probed again");
        assert_eq!(r.observe(11e6), 8, "a probe that does not pay is given back");
    }

    #[test]
    fn a_link_that_recovers_is_probed_and_grows_again() {
        let mut r = Ramp::new(START, DEFAULT_MAX);
        assert_eq!(r.observe(1.6e6), 8);
        assert_eq!(r.observe(1.7e6), 8);
        assert_eq!(r.observe(1.7e6), 8, "a burst of loss: no gain, settled at 8");
        assert!(r.settled());
        assert_eq!(r.observe(1.6e6), 8, "still in the burst");
        assert_eq!(r.observe(3.6e6), 16, "the burst is over: probed at once");
        assert_eq!(r.observe(7.2e6), 16, "it paid: kept, at the cap");
        assert!(r.fixed());
    }

    #[test]
    fn a_doubling_that_hurts_is_given_back() {
        let mut r = Ramp::new(2, 64);
        assert_eq!(r.observe(1e6), 4);
        assert_eq!(r.observe(2e6), 8);
        assert_eq!(r.observe(1.5e6), 8);
        assert_eq!(r.observe(1.6e6), 4);
        assert!(r.settled());
    }

    #[test]
    fn a_slow_first_step_is_measured_again_before_settling() {
        let mut r = Ramp::new(START, DEFAULT_MAX);
        assert_eq!(r.observe(4e6), 8, "4 streams overshooting in slow start");
        assert_eq!(r.observe(4.2e6), 8, "8 look no better at first");
        assert_eq!(r.observe(6.4e6), 16, "warm, they are");
    }

    #[test]
    fn streams_held_back_by_loss_grow_fourfold() {
        let rtt = Duration::from_millis(40);
        // 0.45 MB/s per stream at 40 ms: 18 KB per round trip.
        let mut r = Ramp::new(START, 64).with_rtt(rtt);
        assert_eq!(r.observe(4.0 * 450e3), 16);
        assert_eq!(r.observe(16.0 * 450e3), 64);
        // 5 MB/s per stream at 40 ms: 200 KB per round trip, the link may be the limit.
        let mut r = Ramp::new(START, 64).with_rtt(rtt);
        assert_eq!(r.observe(20e6), 8);
        // A fourfold step that did not pay is given back like a doubling.
        let mut r = Ramp::new(START, 64).with_rtt(rtt);
        assert_eq!(r.observe(4.0 * 450e3), 16);
        assert_eq!(r.observe(1.9e6), 16);
        assert_eq!(r.observe(1.7e6), 4);
    }

    #[test]
    fn a_fixed_count_never_changes() {
        let mut r = Ramp::new(8, 8);
        assert!(r.fixed());
        assert_eq!(r.observe(1.0), 8);
        assert_eq!(Ramp::new(100, 16).streams(), 16);
        assert_eq!(Ramp::new(0, 16).streams(), 1);
    }
}
