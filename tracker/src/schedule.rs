//! The re-announce schedule, as pure logic over an injected clock.

use std::time::{Duration, Instant};

use crate::types::AnnounceEvent;

/// Timing policy of a [`Schedule`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// The first retry after a failed round waits about this long; each
    /// further failure doubles it.
    pub backoff_base: Duration,
    /// Retries never wait longer than this.
    pub backoff_max: Duration,
    /// A tracker's `interval` (and `min interval`) is raised to at least
    /// this, so a hostile tracker cannot make us announce in a loop.
    pub min_interval_floor: Duration,
    /// A tracker's `interval` is lowered to at most this.
    pub max_interval: Duration,
    /// How soon after an announce an early one (short of peers) may be
    /// made when the tracker gave no `min interval`.
    pub default_min_interval: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            backoff_base: Duration::from_secs(15),
            backoff_max: Duration::from_secs(30 * 60),
            min_interval_floor: Duration::from_secs(30),
            max_interval: Duration::from_secs(2 * 3600),
            default_min_interval: Duration::from_secs(5 * 60),
        }
    }
}

/// Exponential backoff with jitter over consecutive failures: the n-th
/// failure in a row waits `backoff_base * 2^(n-1)` capped at `backoff_max`,
/// of which jitter takes up to half off. Used by [`Schedule`] for a
/// torrent whose trackers all refused, and by the session announcer for a
/// tracker that cannot be reached (one backoff for all its torrents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Consecutive failures so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures (the other side answered).
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// Counts one more failure and returns how long to wait before the
    /// next try; `jitter` in `[0, 1]` (random in production; NaN counts
    /// as 1) picks a point in the upper half of the full delay.
    pub(crate) fn next_delay(&mut self, config: &ScheduleConfig, jitter: f64) -> Duration {
        let exp = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let full = config
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(config.backoff_max);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        full / 2 + full.mul_f64(jitter / 2.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completed {
    NotYet,
    Pending,
    Sent,
}

/// When to announce next and with which event.
///
/// Starts due at once; after a successful announce waits the tracker's
/// interval; after a failed round backs off exponentially with jitter;
/// `completed` makes an announce due at once and stays pending until one
/// carrying it succeeds; a request for more peers brings the next announce
/// forward, but never sooner than the min interval after the last one.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Shared by every torrent of a session announcer.
    config: std::sync::Arc<ScheduleConfig>,
    next: Instant,
    last_announce: Option<Instant>,
    min_interval: Option<Duration>,
    backoff: Backoff,
    completed: Completed,
}

impl Schedule {
    /// A schedule whose first announce is due at `now`.
    pub fn new(config: ScheduleConfig, now: Instant) -> Schedule {
        Schedule::shared(std::sync::Arc::new(config), now)
    }

    /// As [`Schedule::new`], with a configuration shared by many
    /// schedules (no copy of it each).
    pub fn shared(config: std::sync::Arc<ScheduleConfig>, now: Instant) -> Schedule {
        Schedule {
            config,
            next: now,
            last_announce: None,
            min_interval: None,
            backoff: Backoff::default(),
            completed: Completed::NotYet,
        }
    }

    /// When the next announce is due.
    pub fn next_announce(&self) -> Instant {
        self.next
    }

    /// True if an announce is due at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Time left until the next announce (zero if due).
    pub fn time_until(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }

    /// Consecutive failed rounds.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// The event for the next announce to a tracker; `started` says whether
    /// that tracker has already accepted our `started`.
    pub fn event(&self, started: bool) -> AnnounceEvent {
        if self.completed == Completed::Pending {
            AnnounceEvent::Completed
        } else if !started {
            AnnounceEvent::Started
        } else {
            AnnounceEvent::None
        }
    }

    /// The download finished: announce `completed` at once (only the first
    /// call has an effect).
    pub fn on_completed(&mut self, now: Instant) {
        if self.completed == Completed::NotYet {
            self.completed = Completed::Pending;
            if self.backoff.failures() == 0 {
                self.next = self.next.min(now);
            }
        }
    }

    /// The torrent is short of peers: bring the next announce forward to
    /// the earliest time the min interval allows. Has no effect while
    /// backing off after failures. Returns true if the schedule moved.
    pub fn on_need_peers(&mut self, now: Instant) -> bool {
        if self.backoff.failures() > 0 {
            return false;
        }
        let earliest = match self.last_announce {
            Some(last) => last + self.effective_min_interval(),
            None => now,
        }
        .max(now);
        if earliest < self.next {
            self.next = earliest;
            true
        } else {
            false
        }
    }

    /// An announce carrying `event` succeeded at `now` with the tracker's
    /// `interval` and `min_interval`.
    pub fn on_success(
        &mut self,
        now: Instant,
        event: AnnounceEvent,
        interval: Duration,
        min_interval: Option<Duration>,
    ) {
        self.backoff.reset();
        self.last_announce = Some(now);
        if event == AnnounceEvent::Completed {
            self.completed = Completed::Sent;
        }
        self.min_interval = min_interval.map(|m| m.max(self.config.min_interval_floor));
        let interval = interval
            .max(self.config.min_interval_floor)
            .min(self.config.max_interval)
            .max(self.min_interval.unwrap_or_default());
        self.next = if self.completed == Completed::Pending {
            // `completed` arrived while this announce was in flight.
            now
        } else {
            now + interval
        };
    }

    /// A whole round (every tracker) failed at `now`. `jitter` in `[0, 1]`
    /// (random in production) spreads the retry over the upper half of the
    /// backoff delay. Returns the delay chosen.
    pub fn on_failure(&mut self, now: Instant, jitter: f64) -> Duration {
        let delay = self.backoff.next_delay(&self.config, jitter);
        self.next = now + delay;
        delay
    }

    fn effective_min_interval(&self) -> Duration {
        self.min_interval
            .unwrap_or(self.config.default_min_interval)
            .max(self.config.min_interval_floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn cfg() -> ScheduleConfig {
        ScheduleConfig {
            backoff_base: S(10),
            backoff_max: S(100),
            min_interval_floor: S(30),
            max_interval: S(3600),
            default_min_interval: S(300),
        }
    }

    #[test]
    fn started_at_once_then_every_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(cfg(), t0);
        assert!(s.is_due(t0));
        assert_eq!(s.event(false), AnnounceEvent::Started);
        s.on_success(t0, AnnounceEvent::Started, S(1800), None);
        assert_eq!(s.next_announce(), t0 + S(1800));
        assert!(!s.is_due(t0 + S(1799)));
        assert!(s.is_due(t0 + S(1800)));
        assert_eq!(s.time_until(t0 + S(800)), S(1000));
        assert_eq!(s.event(true), AnnounceEvent::None);
        // A new tracker in the rotation still gets `started`.
        assert_eq!(s.event(false), AnnounceEvent::Started);
    }

    #[test]
    fn interval_is_clamped_and_respects_min_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(cfg(), t0);
        s.on_success(t0, AnnounceEvent::Started, S(0), None);
        assert_eq!(s.next_announce(), t0 + S(30), "floor");
        s.on_success(t0, AnnounceEvent::None, S(100_000), None);
        assert_eq!(s.next_announce(), t0 + S(3600), "ceiling");
        s.on_success(t0, AnnounceEvent::None, S(60), Some(S(120)));
        assert_eq!(
            s.next_announce(),
            t0 + S(120),
            "never sooner than min interval"
        );
    }

    #[test]
    fn completed_once_and_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(cfg(), t0);
        s.on_success(t0, AnnounceEvent::Started, S(1800), None);
        let t1 = t0 + S(100);
        s.on_completed(t1);
        assert!(s.is_due(t1));
        assert_eq!(s.event(true), AnnounceEvent::Completed);
        s.on_success(t1, AnnounceEvent::Completed, S(1800), None);
        assert_eq!(s.event(true), AnnounceEvent::None);
        s.on_completed(t1 + S(5));
        assert_eq!(s.next_announce(), t1 + S(1800), "second completed ignored");
        assert_eq!(s.event(true), AnnounceEvent::None);
    }

    #[test]
    fn completed_survives_failures_and_inflight_success() {
        let t0 = Instant::now();
        let mut s = Schedule::new(cfg(), t0);
        s.on_completed(t0);
        s.on_failure(t0, 1.0);
        assert_eq!(s.event(true), AnnounceEvent::Completed);
        // The downloads finished while a plain announce was in flight.
        let mut s = Schedule::new(cfg(), t0);
        s.on_completed(t0);
        s.on_success(t0 + S(1), AnnounceEvent::None, S(1800), None);
        assert!(s.is_due(t0 + S(1)));
        assert_eq!(s.event(true), AnnounceEvent::Completed);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let t0 = Instant::now();
        let mut s = Schedule::new(cfg(), t0);
        assert_eq!(s.on_failure(t0, 1.0), S(10));
        assert_eq!(s.on_failure(t0, 1.0), S(20));
        assert_eq!(s.on_failure(t0, 0.0), S(20), "jitter takes up to half off");
        assert_eq!(s.on_failure(t0, 0.5), S(60));
        assert_eq!(s.on_failure(t0, 1.0), S(100), "capped");
        assert_eq!(s.on_failure(t0, f64::NAN), S(100));
        assert_eq!(s.next_announce(), t0 + S(100));
        assert_eq!(s.failures(), 6);
        s.on_success(t0 + S(100), AnnounceEvent::Started, S(1800), None);
        assert_eq!(s.failures(), 0);
        assert_eq!(s.on_failure(t0, 1.0), S(10), "reset after success");
    }

    #[test]
    fn need_peers_respects_min_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(cfg(), t0);
        s.on_success(t0, AnnounceEvent::Started, S(1800), Some(S(60)));
        assert!(s.on_need_peers(t0 + S(10)));
        assert_eq!(s.next_announce(), t0 + S(60));
        assert!(!s.on_need_peers(t0 + S(20)), "already as early as allowed");
        // Without a min interval the default applies.
        let mut s = Schedule::new(cfg(), t0);
        s.on_success(t0, AnnounceEvent::Started, S(1800), None);
        assert!(s.on_need_peers(t0 + S(1000)));
        assert_eq!(s.next_announce(), t0 + S(1000), "past min interval: now");
        // Not while backing off.
        let mut s = Schedule::new(cfg(), t0);
        s.on_failure(t0, 1.0);
        assert!(!s.on_need_peers(t0 + S(1)));
        assert_eq!(s.next_announce(), t0 + S(10));
    }
}
