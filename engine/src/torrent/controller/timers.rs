//! A torrent's timers, as deadlines for the controller's heap: nothing is
//! due for a torrent without peers, work in flight or a seed goal by time,
//! so an idle torrent costs no wakeups.
//!
//! - the tick (rates, status, interest, request deadlines, connecting, PEX messages due,
//!   choke rounds every `choke_interval`), every 250 ms while the torrent
//!   has peers and for the rate window after the last one left (status,
//!   rates falling to zero, verifications still coming back), every second
//!   while it is short of peers (addresses waiting to be dialled, or a
//!   download with trackers to ask);
//! - the HAVE batch (20 ms after the first verified piece of a batch);
//! - the cut of each closed connection that has not ended (500 ms);
//! - the periodic resume save (`resume_interval` after the last, only
//!   while something changed);
//! - a seed goal by time;
//! - a stop's deadlines.

use std::time::{Duration, Instant};

use super::*;

/// The tick while the torrent has peers.
const TICK: Duration = Duration::from_millis(250);
/// The tick while it has none but wants some.
const IDLE_TICK: Duration = Duration::from_secs(1);

impl Controller {
    /// The torrent's earliest deadline, if anything is due at all.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut arm = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if let Some(t) = self.haves_due {
            arm(t);
        }
        for p in self.peers.values() {
            if let Some(t) = p.cut_at {
                arm(t);
            }
        }
        if self.finished || self.state == TorrentState::Checking {
            return next;
        }
        if let Some(s) = &self.stopping {
            if !s.job_started {
                arm(s.drain_until);
                if let Some(t) = s.persist_until {
                    arm(t);
                }
            }
            return next;
        }
        if let Some(interval) = self.tick_interval(Instant::now()) {
            arm(self.last_tick + interval);
        }
        if let Some(t) = self.webseed_deadline(Instant::now()) {
            arm(t);
        }
        if self.may_persist() && self.epoch != self.saved_epoch && !self.persisting {
            arm(self.last_resume + self.session.config.timing.resume_interval);
        }
        if self.running() {
            if let (TorrentState::Seeding, Some(done), SeedGoal::Time(t)) =
                (&self.state, self.completed_at, self.options.seed_goal)
            {
                arm(done + t);
            }
        }
        next
    }

    /// Whether the periodic resume save may run: while the torrent runs,
    /// and while it is paused (a torrent started paused, as the daemon's
    /// queue does, records what its check found all the same).
    fn may_persist(&self) -> bool {
        self.running() || self.state == TorrentState::Paused
    }

    /// How often the tick runs now, if at all.
    fn tick_interval(&self, now: Instant) -> Option<Duration> {
        if !self.peers.is_empty()
            || self.quiet_until.is_some_and(|t| t > now)
            || self.webseeds_busy()
        {
            return Some(TICK);
        }
        // Short of peers: addresses to dial (when their wait is over), or a
        // download asking its trackers for more.
        let wants_peers = self.running()
            && (self
                .swarm
                .as_deref()
                .is_some_and(|s| !s.candidates.is_empty())
                || (self.state == TorrentState::Downloading
                    && (self.announcer.is_some() || self.on_dht)));
        wants_peers.then_some(IDLE_TICK)
    }

    /// Runs what is due at `now`.
    pub(crate) fn on_timer(&mut self, now: Instant) {
        if self.haves_due.is_some_and(|t| t <= now) {
            self.flush_haves();
        }
        self.cut_stragglers(now);
        if self.finished || self.state == TorrentState::Checking {
            return;
        }
        if self.stopping.is_some() {
            self.advance_stop(now);
            return;
        }
        if self
            .tick_interval(now)
            .is_some_and(|i| self.last_tick + i <= now)
        {
            self.on_tick(now);
        }
        self.assign_webseeds(now);
        if self.may_persist()
            && self.epoch != self.saved_epoch
            && !self.persisting
            && now.duration_since(self.last_resume) >= self.session.config.timing.resume_interval
        {
            self.start_persist();
        }
        if self.finished_by_goal() {
            self.finish();
        }
    }
}
