//! Congestion control: RTT/RTO estimation and LEDBAT (RFC 6817) as BEP 29
//! and libtorrent apply it. Pure arithmetic over microsecond times passed in.
//!
//! - The delay sample is the peer's `timestamp_difference` field: how long our
//!   packets took to reach it, plus an unknown clock offset. The offset and
//!   the path's fixed delay cancel against a *base delay*, the minimum over a
//!   history of one-minute buckets ([`DelayHistory`]), so queuing delay =
//!   sample − base.
//! - Clock drift makes the base creep. We also track the base of the delay we
//!   measure on the peer's packets; when that one drops by a little (< 10 ms),
//!   the clocks drifted and our base is raised by the same amount.
//! - Below target cwnd grows by `gain · (target − queuing)/target ·
//!   acked/cwnd` per ACK (TCP-like slow start until the first sample at or
//!   above target); above target it shrinks by `min(queuing/target − 1, ½) ·
//!   acked` per ACK, i.e. by that share of itself per window (LEDBAT++'s
//!   multiplicative decrease, so a large window yields to TCP within a few
//!   RTTs); it halves on loss at most once per window and never drops below
//!   one packet.

/// Microseconds per one-minute history bucket.
const BUCKET_US: u64 = 60_000_000;
/// One-minute buckets kept (RFC 6817 BASE_HISTORY = 10).
const BUCKETS: usize = 10;
/// Samples a bucket needs before time may step it, so an idle connection
/// does not age its base away.
const MIN_SAMPLES_PER_BUCKET: u32 = 120;
/// Largest drop of the peer's base that counts as clock drift.
const MAX_DRIFT_US: u32 = 10_000;

/// Wrap-aware "a is earlier than b" for 32-bit microsecond stamps.
fn u32_less(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// Windowed minimum of 32-bit wrapping delay samples.
#[derive(Debug, Clone)]
pub struct DelayHistory {
    buckets: [Option<u32>; BUCKETS],
    current: usize,
    samples: u32,
    bucket_start_us: u64,
}

impl DelayHistory {
    /// An empty history starting at `now_us`.
    pub fn new(now_us: u64) -> Self {
        Self {
            buckets: [None; BUCKETS],
            current: 0,
            samples: 0,
            bucket_start_us: now_us,
        }
    }

    /// The base delay, if any sample was seen.
    pub fn base(&self) -> Option<u32> {
        self.buckets
            .iter()
            .flatten()
            .copied()
            .reduce(|a, b| if u32_less(b, a) { b } else { a })
    }

    /// Adds a sample; returns it relative to the base (the queuing delay).
    pub fn add(&mut self, sample: u32, now_us: u64) -> u32 {
        if now_us.saturating_sub(self.bucket_start_us) >= BUCKET_US
            && self.samples >= MIN_SAMPLES_PER_BUCKET
        {
            self.current = (self.current + 1) % BUCKETS;
            self.buckets[self.current] = None;
            self.samples = 0;
            self.bucket_start_us = now_us;
        }
        self.samples += 1;
        let slot = &mut self.buckets[self.current];
        if slot.is_none_or(|b| u32_less(sample, b)) {
            *slot = Some(sample);
        }
        let base = self.base().unwrap_or(sample);
        sample.wrapping_sub(base)
    }

    /// Raises every bucket by `by` microseconds (clock-drift correction).
    pub fn shift(&mut self, by: u32) {
        for b in self.buckets.iter_mut().flatten() {
            *b = b.wrapping_add(by);
        }
    }
}

/// TCP-style smoothed RTT and the retransmission timeout derived from it.
#[derive(Debug, Clone)]
pub struct Rtt {
    srtt_us: Option<u64>,
    rttvar_us: u64,
    min_rto_us: u64,
}

impl Rtt {
    /// No samples yet: RTO is 1 s (BEP 29).
    pub fn new(min_rto_us: u64) -> Self {
        Self {
            srtt_us: None,
            rttvar_us: 0,
            min_rto_us,
        }
    }

    /// Feeds one sample from a packet that was sent only once.
    pub fn sample(&mut self, rtt_us: u64) {
        match self.srtt_us {
            None => {
                self.srtt_us = Some(rtt_us);
                self.rttvar_us = rtt_us / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt_us);
                self.rttvar_us = (self.rttvar_us * 3 + delta) / 4;
                self.srtt_us = Some((srtt * 7 + rtt_us) / 8);
            }
        }
    }

    /// Smoothed RTT, if measured.
    pub fn srtt_us(&self) -> Option<u64> {
        self.srtt_us
    }

    /// `max(srtt + 4·rttvar, min_rto)`, or 1 s before the first sample.
    pub fn rto_us(&self) -> u64 {
        match self.srtt_us {
            None => 1_000_000.max(self.min_rto_us),
            Some(s) => (s + 4 * self.rttvar_us).max(self.min_rto_us),
        }
    }
}

/// LEDBAT tuning.
#[derive(Debug, Clone, Copy)]
pub struct LedbatConfig {
    /// Queuing delay the controller aims for (BEP 29: 100 ms).
    pub target_us: u32,
    /// Bytes cwnd may grow per RTT at zero queuing delay (libtorrent: 3000).
    pub gain_bytes: u32,
    /// One packet's payload: the floor of cwnd.
    pub mss: u32,
    /// Upper bound of cwnd, bytes.
    pub max_cwnd: u32,
}

/// The LEDBAT congestion window.
#[derive(Debug, Clone)]
pub struct Ledbat {
    cfg: LedbatConfig,
    cwnd: f64,
    slow_start: bool,
    ours: DelayHistory,
    theirs: DelayHistory,
    last_their_base: Option<u32>,
    last_queuing_us: Option<u32>,
}

impl Ledbat {
    /// Starts in slow start with cwnd = 2 packets (RFC 6817 INIT_CWND).
    pub fn new(cfg: LedbatConfig, now_us: u64) -> Self {
        Self {
            cfg,
            cwnd: f64::from(cfg.mss * 2),
            slow_start: true,
            ours: DelayHistory::new(now_us),
            theirs: DelayHistory::new(now_us),
            last_their_base: None,
            last_queuing_us: None,
        }
    }

    /// Current window in bytes.
    pub fn cwnd(&self) -> u32 {
        self.cwnd as u32
    }

    /// Whether slow start is still on.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// The most recent queuing-delay estimate, microseconds.
    pub fn queuing_delay_us(&self) -> Option<u32> {
        self.last_queuing_us
    }

    /// Records the delay we measured on a packet from the peer (their clock
    /// to ours); only used for drift correction of our own base.
    pub fn their_delay_sample(&mut self, sample: u32, now_us: u64) {
        self.theirs.add(sample, now_us);
        let base = self.theirs.base();
        if let (Some(old), Some(new)) = (self.last_their_base, base) {
            let drop = old.wrapping_sub(new);
            if drop > 0 && drop < MAX_DRIFT_US {
                self.ours.shift(drop);
            }
        }
        self.last_their_base = base;
    }

    /// One ACK: `acked` newly acknowledged bytes, `delay_sample` the peer's
    /// `timestamp_difference` (0 = none: the last estimate is reused), `window_limited` whether we were
    /// using the whole window (cwnd only grows then).
    pub fn on_ack(&mut self, acked: u32, delay_sample: u32, window_limited: bool, now_us: u64) {
        if acked == 0 {
            return;
        }
        // 0 means "no measurement yet" (a peer's first packets): reuse the
        // last estimate rather than stall the window.
        let queuing = if delay_sample == 0 {
            self.last_queuing_us.unwrap_or(0)
        } else {
            self.ours.add(delay_sample, now_us)
        };
        self.last_queuing_us = Some(queuing);
        let target = f64::from(self.cfg.target_us);
        let off_target = (target - f64::from(queuing)).max(-target) / target;
        if self.slow_start && queuing >= self.cfg.target_us {
            self.slow_start = false;
        }
        let delta = if self.slow_start {
            f64::from(acked)
        } else if queuing > self.cfg.target_us {
            // Above target: shrink in proportion to the window (LEDBAT++,
            // draft-irtf-iccrg-ledbat-plus-plus §4.2): over one window's
            // ACKs cwnd loses `min(delay/target − 1, 1/2)` of itself. The
            // RFC 6817 rule loses at most `gain` bytes per RTT, so a window
            // of a MiB takes minutes to make room for a TCP flow.
            let over = (f64::from(queuing) / target - 1.0).min(0.5);
            -f64::from(acked) * over
        } else {
            let window_factor = f64::from(acked) / self.cwnd.max(f64::from(acked));
            f64::from(self.cfg.gain_bytes) * off_target * window_factor
        };
        if delta < 0.0 || window_limited {
            self.cwnd += delta;
        }
        self.clamp();
    }

    /// A packet was lost: halve cwnd (BEP 29 revised loss factor 0.5) and
    /// leave slow start. The caller limits this to once per window.
    pub fn on_loss(&mut self) {
        self.cwnd *= 0.5;
        self.slow_start = false;
        self.clamp();
    }

    /// A retransmission timeout: back to one packet.
    pub fn on_timeout(&mut self) {
        self.cwnd = f64::from(self.cfg.mss);
        self.slow_start = false;
    }

    fn clamp(&mut self) {
        self.cwnd = self
            .cwnd
            .clamp(f64::from(self.cfg.mss), f64::from(self.cfg.max_cwnd));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: LedbatConfig = LedbatConfig {
        target_us: 100_000,
        gain_bytes: 3000,
        mss: 1452,
        max_cwnd: 8 << 20,
    };

    #[test]
    fn base_is_a_wrapping_minimum() {
        let mut h = DelayHistory::new(0);
        assert_eq!(h.add(u32::MAX - 10, 0), 0);
        // 20 after the wrap is later than MAX-10: queuing 31.
        assert_eq!(h.add(20, 1), 31);
        assert_eq!(h.base(), Some(u32::MAX - 10));
    }

    #[test]
    fn base_ages_out_after_ten_busy_minutes_but_not_when_idle() {
        let mut h = DelayHistory::new(0);
        h.add(1000, 0);
        // Idle for an hour, then one sample: the old base survives.
        assert_eq!(h.add(5000, 3600 * 1_000_000), 4000);
        // Ten busy minutes of samples at 5000 push the 1000 out.
        let mut t = 3600 * 1_000_000;
        for _ in 0..11 {
            for _ in 0..MIN_SAMPLES_PER_BUCKET {
                h.add(5000, t);
            }
            t += BUCKET_US;
        }
        h.add(5000, t);
        assert_eq!(h.base(), Some(5000));
    }

    #[test]
    fn slow_start_grows_then_target_delay_stops_growth() {
        let mut l = Ledbat::new(CFG, 0);
        l.on_ack(10_000, 50, true, 1);
        assert_eq!(l.cwnd(), 2 * 1452 + 10_000);
        assert!(l.in_slow_start());
        // A sample 100 ms above the base ends slow start and shrinks cwnd.
        let before = l.cwnd();
        l.on_ack(10_000, 50 + 150_000, true, 2);
        assert!(!l.in_slow_start());
        assert!(l.cwnd() < before);
        // At zero queuing delay it grows again, by at most gain per cwnd acked.
        let c = l.cwnd();
        l.on_ack(c, 50, true, 3);
        assert!(l.cwnd() > c && l.cwnd() <= c + 3000);
        // Not window-limited (application-limited): no growth.
        let c = l.cwnd();
        l.on_ack(c, 50, false, 4);
        assert_eq!(l.cwnd(), c);
    }

    #[test]
    fn a_large_window_above_target_shrinks_by_a_share_per_window() {
        let mut l = Ledbat::new(CFG, 0);
        // Out of slow start at 1 MiB, base 50.
        l.on_ack(1 << 20, 50, true, 1);
        l.on_ack(1452, 50 + 100_000, true, 2);
        let c = f64::from(l.cwnd());
        // One window of ACKs at 130 ms queuing (1.3 × target): −30 % of the
        // window (the RFC 6817 rule alone would take off ≤ 3000 bytes).
        let mut acked = 0;
        while acked < c as u32 {
            l.on_ack(14_520, 50 + 130_000, true, 3);
            acked += 14_520;
        }
        let after = f64::from(l.cwnd());
        assert!(after < c * 0.75 && after > c * 0.65, "{c} -> {after}");
        // Far above target the share is capped at one half per window.
        let c = f64::from(l.cwnd());
        let mut acked = 0;
        while acked < c as u32 {
            l.on_ack(1452, 50 + 900_000, true, 4);
            acked += 1452;
        }
        assert!(f64::from(l.cwnd()) >= c * 0.49, "{c} -> {}", l.cwnd());
    }

    #[test]
    fn loss_halves_and_floor_is_one_packet() {
        let mut l = Ledbat::new(CFG, 0);
        l.on_ack(100_000, 50, true, 1);
        let c = l.cwnd();
        l.on_loss();
        assert_eq!(l.cwnd(), c / 2);
        for _ in 0..40 {
            l.on_loss();
        }
        assert_eq!(l.cwnd(), 1452);
    }

    #[test]
    fn drift_of_peer_base_raises_ours() {
        let mut l = Ledbat::new(CFG, 0);
        l.their_delay_sample(50_000, 0);
        l.on_ack(1000, 10_000, true, 0);
        // Peer base drops 5 ms (drift): our base rises 5 ms, so a sample of
        // 15 ms reads as zero queuing.
        l.their_delay_sample(45_000, 1);
        l.on_ack(1000, 15_000, true, 2);
        assert_eq!(l.queuing_delay_us(), Some(0));
        // A 50 ms jump is not drift.
        l.their_delay_sample(0, 3);
        l.on_ack(1000, 15_000, true, 4);
        assert_eq!(l.queuing_delay_us(), Some(0));
    }

    #[test]
    fn rto_follows_samples_with_a_floor() {
        let mut r = Rtt::new(500_000);
        assert_eq!(r.rto_us(), 1_000_000);
        r.sample(200_000);
        assert_eq!(r.rto_us(), 200_000 + 4 * 100_000);
        for _ in 0..50 {
            r.sample(1000);
        }
        assert_eq!(r.rto_us(), 500_000);
    }
}
