//! Token-bucket rate limiting shared by peer threads (mainline's
//! `RateLimiter`).
//!
//! One [`RateLimiter`] per direction exists for the whole session and one
//! per torrent; a peer thread about to send (or read) `n` bytes calls
//! [`acquire_all`] with the chain `[torrent, global]`. A limiter without a
//! rate returns at once.
//!
//! The bucket holds at most [`BURST_SECS`] worth of tokens. A request larger
//! than what is available is granted as soon as the bucket holds
//! `min(n, capacity)` tokens and may drive the balance negative ("debt"), so
//! a 16 KiB block still goes through at 1 KiB/s: later callers wait until the
//! debt is paid back. Over any long span the bytes granted are therefore
//! at most `capacity + rate * span + largest request`.
//!
//! The core, [`RateLimiter::try_take`], takes the time as an argument so it
//! is tested with a synthetic clock; [`RateLimiter::acquire`] wraps it with
//! real sleeps.

use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How many seconds of tokens the bucket holds at most: large enough to
/// absorb scheduling jitter, small enough that an idle period cannot be
/// followed by a long burst above the limit.
pub const BURST_SECS: f64 = 0.25;

/// The smallest bucket, in bytes, so that tiny rates still make progress
/// with whole messages.
const MIN_CAPACITY: f64 = 1024.0;

/// A token bucket. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter {
    inner: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes per second; `None` is unlimited.
    rate: Option<u64>,
    /// Current balance in bytes; negative while in debt.
    tokens: f64,
    /// When `tokens` was last refilled; `None` until first used.
    last: Option<Instant>,
}

impl Bucket {
    fn capacity(rate: u64) -> f64 {
        (rate as f64 * BURST_SECS).max(MIN_CAPACITY)
    }

    fn refill(&mut self, rate: u64, now: Instant) {
        let cap = Self::capacity(rate);
        match self.last {
            None => self.tokens = cap,
            Some(last) => {
                let dt = now.saturating_duration_since(last).as_secs_f64();
                self.tokens = (self.tokens + dt * rate as f64).min(cap);
            }
        }
        if self.last.is_none_or(|l| now > l) {
            self.last = Some(now);
        }
    }
}

impl RateLimiter {
    /// A limiter at `bytes_per_sec`; `None` (or `Some(0)`) means unlimited.
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        RateLimiter {
            inner: Mutex::new(Bucket {
                rate: bytes_per_sec.filter(|&r| r > 0),
                tokens: 0.0,
                last: None,
            }),
        }
    }

    /// Change the rate; `None` (or `Some(0)`) means unlimited. Debt and
    /// saved-up tokens are kept, but never more than the new capacity.
    pub fn set_rate(&self, bytes_per_sec: Option<u64>) {
        let mut b = self.inner.lock();
        let rate = bytes_per_sec.filter(|&r| r > 0);
        match rate {
            Some(r) if b.rate.is_some() => b.tokens = b.tokens.min(Bucket::capacity(r)),
            // From unlimited to limited: start with a full bucket from now.
            _ => b.last = None,
        }
        b.rate = rate;
    }

    /// The configured rate; `None` is unlimited.
    pub fn rate(&self) -> Option<u64> {
        self.inner.lock().rate
    }

    /// Take `n` bytes of tokens at `now` if allowed; otherwise how long to
    /// wait before trying again. Never waits for an unlimited limiter.
    pub fn try_take(&self, n: u64, now: Instant) -> Result<(), Duration> {
        let mut b = self.inner.lock();
        let Some(rate) = b.rate else {
            return Ok(());
        };
        b.refill(rate, now);
        let need = (n as f64).min(Bucket::capacity(rate));
        if b.tokens >= need {
            b.tokens -= n as f64;
            Ok(())
        } else {
            let secs = (need - b.tokens) / rate as f64;
            // Round up to a whole microsecond so a caller that sleeps exactly
            // this long is not refused again for a rounding error.
            Err(Duration::from_micros((secs * 1e6).ceil() as u64 + 1))
        }
    }

    /// Block (sleeping) until `n` bytes may pass. Returns at once when
    /// unlimited. `n` larger than the bucket is allowed and puts the bucket
    /// into debt.
    pub fn acquire(&self, n: u64) {
        while let Err(wait) = self.try_take(n, Instant::now()) {
            thread::sleep(wait);
        }
    }
}

/// Acquire `n` bytes from each limiter in turn (e.g. `[torrent, global]`).
pub fn acquire_all(limiters: &[&RateLimiter], n: u64) {
    for l in limiters {
        l.acquire(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Drive a limiter with a synthetic clock: a greedy sender of `chunk`
    /// bytes that sleeps exactly as long as it is told. Returns bytes sent.
    fn simulate(l: &RateLimiter, t0: Instant, span: Duration, chunk: u64) -> u64 {
        let mut now = t0;
        let mut sent = 0;
        while now < t0 + span {
            match l.try_take(chunk, now) {
                Ok(()) => sent += chunk,
                Err(wait) => now += wait,
            }
        }
        sent
    }

    #[test]
    fn holds_rate_within_ten_percent_over_20s() {
        for (rate, chunk) in [
            (1024 * 1024, 16 * 1024),
            (100 * 1024, 16 * 1024),
            (10 * 1024, 16 * 1024), // chunk larger than the bucket
            (5_000_000, 1500),
        ] {
            let l = RateLimiter::new(Some(rate));
            let sent = simulate(&l, Instant::now(), Duration::from_secs(20), chunk);
            let got = sent as f64 / 20.0;
            let err = (got - rate as f64).abs() / rate as f64;
            assert!(
                err < 0.10,
                "rate {rate} chunk {chunk}: got {got:.0} B/s ({err:.3})"
            );
        }
    }

    #[test]
    fn unlimited_never_waits() {
        let l = RateLimiter::new(None);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.try_take(1 << 30, t), Ok(()));
        }
        assert_eq!(RateLimiter::new(Some(0)).rate(), None);
    }

    #[test]
    fn debt_must_be_paid_back() {
        let l = RateLimiter::new(Some(1000)); // capacity 1024 (minimum)
        let t0 = Instant::now();
        assert_eq!(l.try_take(16_000, t0), Ok(())); // 1024 - 16000 = -14976
        let wait = l.try_take(100, t0).unwrap_err();
        // Needs 100 + 14976 tokens at 1000/s ≈ 15.08 s.
        assert!(
            wait > Duration::from_secs(15) && wait < Duration::from_millis(15_100),
            "{wait:?}"
        );
        assert!(l.try_take(100, t0 + wait).is_ok());
    }

    #[test]
    fn idle_does_not_build_a_big_burst() {
        let l = RateLimiter::new(Some(100_000));
        let t0 = Instant::now();
        assert!(l.try_take(1, t0).is_ok());
        // After an hour idle only BURST_SECS worth passes at once.
        let later = t0 + Duration::from_secs(3600);
        let mut got = 0;
        while l.try_take(1000, later).is_ok() {
            got += 1000;
        }
        assert_eq!(got, 25_000);
    }

    #[test]
    fn set_rate_switches_modes() {
        let l = RateLimiter::new(None);
        let t0 = Instant::now();
        l.set_rate(Some(10_000));
        assert_eq!(l.rate(), Some(10_000));
        let sent = simulate(&l, t0, Duration::from_secs(20), 1000);
        assert!((sent as f64 / 20.0 - 10_000.0).abs() < 1_000.0, "{sent}");
        l.set_rate(None);
        assert_eq!(l.try_take(1 << 40, t0), Ok(()));
    }

    #[test]
    fn threads_share_the_bucket_in_real_time() {
        // 4 threads through a chain [per torrent 400 KiB/s, global 8 MiB/s]
        // for 0.6 s: the torrent limit governs.
        let torrent = Arc::new(RateLimiter::new(Some(400 * 1024)));
        let global = Arc::new(RateLimiter::new(Some(8 * 1024 * 1024)));
        let sent = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let span = Duration::from_millis(600);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (t, g, s) = (torrent.clone(), global.clone(), sent.clone());
                thread::spawn(move || {
                    while start.elapsed() < span {
                        acquire_all(&[&t, &g], 16 * 1024);
                        s.fetch_add(16 * 1024, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let total = sent.load(Ordering::Relaxed) as f64;
        // Allowed: initial bucket (100 KiB) + rate * time + one chunk per
        // thread granted right at the end.
        let max = 100.0 * 1024.0 + 400.0 * 1024.0 * secs + 4.0 * 16.0 * 1024.0;
        let min = 400.0 * 1024.0 * 0.6 * 0.8;
        assert!(
            total <= max && total >= min,
            "sent {total} in {secs:.2}s, max {max}"
        );
    }
}
