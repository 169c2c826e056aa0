//! Transfer rate measurement: mainline's `Measure` / `RateMeasure`.
//!
//! [`RateMeasure`] keeps a running total and a smoothed bytes-per-second
//! rate over a sliding window, the way mainline's `Measure` does: the rate
//! is the amount seen since `rate_since` divided by the time elapsed since
//! then, and `rate_since` is never older than `window`. A one-second fudge
//! at the start keeps the first sample from producing an absurd rate.
//!
//! Time is always passed in as an [`Instant`], so the measure is pure logic
//! and tests drive it with a synthetic clock.

use std::time::{Duration, Instant};

/// Seconds of "virtual history" at creation, so the first sample is not
/// divided by a near-zero span (mainline's `fudge`).
const FUDGE_SECS: f64 = 1.0;

/// The smallest span a rate is divided by, to avoid dividing by zero.
const MIN_SPAN_SECS: f64 = 1e-3;

/// A smoothed transfer rate over a sliding window, plus a running total.
#[derive(Debug, Clone)]
pub struct RateMeasure {
    /// All times are seconds relative to this instant (avoids `Instant`
    /// underflow for the fudge start).
    origin: Instant,
    /// Length of the sliding window in seconds.
    window: f64,
    /// Start of the span the current rate covers (seconds since `origin`).
    rate_since: f64,
    /// Time of the last update (seconds since `origin`).
    last: f64,
    /// Rate in bytes per second as of `last`.
    rate: f64,
    /// All bytes ever added.
    total: u64,
}

impl RateMeasure {
    /// A measure with a sliding `window` (mainline uses 20 s for transfer
    /// rates), starting at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        let window = window.as_secs_f64().max(MIN_SPAN_SECS);
        RateMeasure {
            origin: now,
            window,
            rate_since: -FUDGE_SECS.min(window),
            last: 0.0,
            rate: 0.0,
            total: 0,
        }
    }

    fn secs(&self, now: Instant) -> f64 {
        // An `Instant` before `origin` is treated as `origin`.
        now.saturating_duration_since(self.origin).as_secs_f64()
    }

    /// Record `bytes` transferred at `now`.
    pub fn add(&mut self, bytes: u64, now: Instant) {
        self.total = self.total.saturating_add(bytes);
        let t = self.secs(now).max(self.last);
        let covered = self.rate * (self.last - self.rate_since);
        self.rate = (covered + bytes as f64) / (t - self.rate_since).max(MIN_SPAN_SECS);
        self.last = t;
        if self.rate_since < t - self.window {
            self.rate_since = t - self.window;
        }
    }

    /// The smoothed rate in bytes per second as seen at `now`: it decays
    /// while nothing is added.
    pub fn rate(&self, now: Instant) -> f64 {
        let t = self.secs(now).max(self.last);
        let covered = self.rate * (self.last - self.rate_since);
        // Like mainline's `update_rate(0)`: what was seen since `rate_since`
        // spread over the time elapsed since then.
        let span = (t - self.rate_since).max(MIN_SPAN_SECS);
        (covered / span).max(0.0)
    }

    /// All bytes ever added.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Time to transfer `left` more bytes at the current rate; `None` when
    /// the rate is zero (stalled) and `left` is not.
    pub fn eta(&self, left: u64, now: Instant) -> Option<Duration> {
        if left == 0 {
            return Some(Duration::ZERO);
        }
        let rate = self.rate(now);
        if rate <= 0.0 {
            return None;
        }
        let secs = left as f64 / rate;
        // Cap absurd values instead of overflowing `Duration`.
        Some(Duration::from_secs_f64(secs.min(100.0 * 365.0 * 86_400.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn steady_rate_is_measured() {
        let t0 = Instant::now();
        let mut m = RateMeasure::new(Duration::from_secs(20), t0);
        // 100 KiB every 100 ms = 1000 KiB/s for 60 s (the start-up fudge
        // has decayed after a few windows).
        for i in 1..=600u64 {
            m.add(100 * 1024, t0 + ms(100 * i));
        }
        let now = t0 + ms(60_000);
        let r = m.rate(now);
        let want = 1000.0 * 1024.0;
        assert!((r - want).abs() / want < 0.01, "rate {r}, want {want}");
        assert_eq!(m.total(), 600 * 100 * 1024);
    }

    #[test]
    fn first_sample_is_fudged() {
        let t0 = Instant::now();
        let mut m = RateMeasure::new(Duration::from_secs(20), t0);
        m.add(1000, t0 + ms(1));
        // Divided by ~1 s of fudge, not by 1 ms.
        let r = m.rate(t0 + ms(1));
        assert!(r > 900.0 && r < 1000.0, "{r}");
    }

    #[test]
    fn rate_decays_when_idle_and_follows_changes() {
        let t0 = Instant::now();
        let mut m = RateMeasure::new(Duration::from_secs(20), t0);
        for i in 1..=200u64 {
            m.add(10_000, t0 + ms(100 * i)); // 100 kB/s for 20 s
        }
        let at20 = m.rate(t0 + ms(20_000));
        assert!((at20 - 100_000.0).abs() < 5_000.0, "{at20}");
        let idle = m.rate(t0 + ms(40_000));
        assert!(idle < at20 / 1.5, "idle {idle} vs {at20}");
        assert!(idle > 0.0);
        // Much later the rate is near zero.
        assert!(m.rate(t0 + ms(600_000)) < 5_000.0);

        // A new, slower steady rate is reached within a few windows (the smoothing is exponential
        // with a time constant of about one window).
        let mut m2 = RateMeasure::new(Duration::from_secs(20), t0);
        for i in 1..=200u64 {
            m2.add(10_000, t0 + ms(100 * i));
        }
        for i in 201..=1400u64 {
            m2.add(1_000, t0 + ms(100 * i)); // 10 kB/s
        }
        let r = m2.rate(t0 + ms(140_000));
        assert!((r - 10_000.0).abs() < 1_000.0, "{r}");
    }

    #[test]
    fn eta_from_rate() {
        let t0 = Instant::now();
        let mut m = RateMeasure::new(Duration::from_secs(20), t0);
        assert_eq!(m.eta(0, t0), Some(Duration::ZERO));
        assert_eq!(m.eta(10, t0), None);
        for i in 1..=400u64 {
            m.add(1_000, t0 + ms(100 * i)); // 10 kB/s for 40 s
        }
        let eta = m.eta(100_000, t0 + ms(40_000)).unwrap();
        assert!(
            eta > Duration::from_secs(9) && eta < Duration::from_secs(11),
            "{eta:?}"
        );
    }

    #[test]
    fn instants_before_origin_do_not_panic() {
        let t0 = Instant::now();
        let mut m = RateMeasure::new(Duration::from_secs(20), t0 + ms(5_000));
        m.add(10, t0);
        assert!(m.rate(t0).is_finite());
        assert_eq!(m.total(), 10);
    }
}
