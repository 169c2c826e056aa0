//! Download and seed queues (Transmission's model): among the torrents a
//! user has started, in queue order, at most `download-queue-size` download
//! and `seed-queue-size` seed at once when their queue is enabled; the
//! others wait, paused in the engine, reported as status 3 (queued to
//! download) or 5 (queued to seed). A torrent that moved no data for
//! `queue-stalled-minutes` (when `queue-stalled-enabled`) keeps running but
//! holds no slot, so the next one starts. `torrent-start-now` bypasses the
//! queue. Torrents still checking their data are left alone until they
//! know whether they are complete.
//!
//! The queue holds: a torrent earlier in the queue takes the slot of a
//! later one (which then waits), as qBittorrent does, so `queue-move-top`
//! starts the torrent moved.

use std::time::{Duration, Instant};

use bittern_engine::TorrentState;

use super::{Inner, Torrents};
use crate::backend::Backend;
use crate::settings::Settings;

/// What the planner knows of one torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    /// Started by the user, runnable, done checking.
    pub wants: bool,
    /// Its wanted data is complete (a seed).
    pub complete: bool,
    /// Started with `torrent-start-now`.
    pub bypass: bool,
    /// Running without moving data for the stall time.
    pub stalled: bool,
}

/// Which torrents run, in queue order.
pub fn plan(items: &[Slot], s: &Settings) -> Vec<bool> {
    let size = |on: bool, n: u64| if on { n } else { u64::MAX };
    let mut down = size(s.download_queue_enabled, s.download_queue_size);
    let mut seed = size(s.seed_queue_enabled, s.seed_queue_size);
    items
        .iter()
        .map(|it| {
            if !it.wants {
                return false;
            }
            if it.bypass || it.stalled {
                return true;
            }
            let slots = if it.complete { &mut seed } else { &mut down };
            if *slots > 0 {
                *slots -= 1;
                true
            } else {
                false
            }
        })
        .collect()
}

impl<B: Backend> Torrents<B> {
    /// Starts and queues torrents as [`plan`] says; called after every
    /// change of the queue and every tick.
    pub(super) fn schedule_queue(&self, inner: &mut Inner) {
        let now = Instant::now();
        let stall = Duration::from_secs(inner.settings.queue_stalled_minutes.saturating_mul(60));
        let stall_on = inner.settings.queue_stalled_enabled;
        let mut slots = Vec::with_capacity(inner.entries.len());
        let mut checking = Vec::with_capacity(inner.entries.len());
        for e in &inner.entries {
            let st = self.backend.status(e.hash);
            let is_checking = st
                .as_ref()
                .is_some_and(|s| s.state == TorrentState::Checking);
            checking.push(is_checking);
            let complete = st
                .as_ref()
                .is_some_and(|s| s.wanted_bytes > 0 && s.have_bytes >= s.wanted_bytes);
            slots.push(Slot {
                wants: !e.record.paused && e.error.is_none() && !is_checking,
                complete,
                bypass: e.bypass_queue,
                stalled: stall_on && !e.queued && now.duration_since(e.last_active) >= stall,
            });
        }
        let active = plan(&slots, &inner.settings);
        let settings = inner.settings.clone();
        for (i, e) in inner.entries.iter_mut().enumerate() {
            if checking[i] || e.record.paused || e.error.is_some() {
                continue;
            }
            if active[i] && e.queued {
                e.queued = false;
                e.last_active = now;
                e.touched = now;
                let ended = self
                    .backend
                    .status(e.hash)
                    .is_none_or(|s| s.state == TorrentState::Stopped);
                if ended || self.backend.resume(e.hash).is_err() {
                    self.relaunch(&settings, e);
                }
            } else if !active[i] && !e.queued {
                e.queued = true;
                e.touched = now;
                // One the engine no longer runs waits all the same.
                let _ = self.backend.pause(e.hash);
            }
        }
    }

    /// Whether a new download could start now: its queue is off, or fewer
    /// running, unstalled downloads than its size.
    pub(super) fn download_slot_free(&self, inner: &Inner) -> bool {
        let s = &inner.settings;
        if !s.download_queue_enabled {
            return true;
        }
        let stall = Duration::from_secs(s.queue_stalled_minutes.saturating_mul(60));
        let size = usize::try_from(s.download_queue_size).unwrap_or(usize::MAX);
        let running = inner
            .entries
            .iter()
            .filter(|e| !e.queued && !e.record.paused && e.error.is_none())
            .filter(|e| !(s.queue_stalled_enabled && e.last_active.elapsed() >= stall))
            .filter(|e| {
                self.backend
                    .status(e.hash)
                    .is_some_and(|st| st.state == TorrentState::Downloading)
            })
            .take(size)
            .count();
        running < size
    }

    /// Notes data moving for the stall rule: a running torrent that
    /// downloads (or, complete, uploads) at least 1 B/s is active now.
    pub(super) fn note_activity(&self, inner: &mut Inner) {
        let now = Instant::now();
        for e in &mut inner.entries {
            if e.queued || e.record.paused {
                continue;
            }
            let Some(s) = self.backend.status(e.hash) else {
                continue;
            };
            let moving = match s.state {
                TorrentState::Downloading => s.download_rate >= 1.0,
                TorrentState::Seeding => s.upload_rate >= 1.0,
                TorrentState::Checking => true,
                _ => false,
            };
            if moving {
                e.last_active = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(down: Option<u64>, seed: Option<u64>) -> Settings {
        Settings {
            download_queue_enabled: down.is_some(),
            download_queue_size: down.unwrap_or(0),
            seed_queue_enabled: seed.is_some(),
            seed_queue_size: seed.unwrap_or(0),
            ..Settings::default()
        }
    }

    const D: Slot = Slot {
        wants: true,
        complete: false,
        bypass: false,
        stalled: false,
    };
    const SEED: Slot = Slot {
        complete: true,
        ..D
    };

    #[test]
    fn slots_in_queue_order() {
        assert_eq!(plan(&[D, D, D], &s(Some(2), None)), [true, true, false]);
        assert_eq!(plan(&[D, D, D], &s(None, Some(0))), [true, true, true]);
        assert_eq!(
            plan(&[SEED, D, SEED, D], &s(Some(1), Some(1))),
            [true, true, false, false]
        );
        // Stopped ones hold nothing; start-now and stalled ones run without a slot.
        let stopped = Slot { wants: false, ..D };
        let now = Slot { bypass: true, ..D };
        let stalled = Slot { stalled: true, ..D };
        assert_eq!(
            plan(&[stopped, now, stalled, D, D], &s(Some(1), None)),
            [false, true, true, true, false]
        );
        assert_eq!(plan(&[D, D], &s(Some(0), None)), [false, false]);
    }
}
