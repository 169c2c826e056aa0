//! `stopped` announces in batches: which stops leave together, and how a
//! batch's answers are taken (a tracker that answers part of a batch is
//! alive; what was not sent goes back to the front of its queue while the
//! deadline allows).

use std::time::Instant;

use super::{Core, Job, JobKind, StopItem, TrackerId};
use crate::error::Error;
use crate::session::TorrentKey;
use crate::types::{AnnounceEvent, AnnounceResponse};

/// Most `stopped` announces in one job. A worker sends them one after
/// another, so a batch this size to a tracker 10 ms away takes a third of
/// the usual 3 s stop deadline; more go out on other workers at once.
pub(crate) const STOP_BATCH: usize = 32;

impl Core {
    /// The next batch of `stopped` announces for tracker `id`, if any wait:
    /// one alone while the tracker is cold (a probe), else a share of those
    /// waiting, so that every worker the tracker may use gets some.
    pub(super) fn stops_job(&mut self, now: Instant, id: TrackerId, url: &str) -> Option<Job> {
        let tr = self.trackers.get_mut(&id)?;
        let waiting = tr.stops.len();
        if waiting == 0 {
            return None;
        }
        let size = if tr.is_warm(now) {
            // Shared among the batches that may still go out at once.
            let slots = self.config.stop_per_tracker.saturating_sub(tr.in_flight);
            waiting.div_ceil(slots.max(1)).clamp(1, STOP_BATCH)
        } else {
            1
        };
        let mut stops = Vec::with_capacity(size);
        let mut deadline: Option<Instant> = None;
        while stops.len() < size {
            let Some((key, d)) = self.trackers.get_mut(&id)?.stops.pop_front() else {
                break;
            };
            if d <= now {
                self.stop_dropped(key, "the stop deadline passed");
                continue;
            }
            let Some(t) = self.torrents.get(&key) else {
                continue;
            };
            stops.push(StopItem {
                torrent: key,
                params: self.params(t, id, AnnounceEvent::Stopped),
                stats: t.stats.clone(),
            });
            deadline = Some(deadline.map_or(d, |e| e.min(d)));
        }
        (!stops.is_empty()).then(|| Job {
            tracker: id,
            url: url.to_string(),
            deadline,
            sent_at: now,
            kind: JobKind::Stops { stops },
        })
    }

    /// Takes a batch's answers. Only a batch that got no answer, from a
    /// tracker that answered nothing else since it went out, counts as the
    /// tracker failing (several batches run at once: one cut off by a
    /// tracker at its connection limit does not make it dead).
    pub(super) fn stops_done(
        &mut self,
        now: Instant,
        id: TrackerId,
        sent_at: Instant,
        stops: Vec<StopItem>,
        results: Vec<Option<Result<AnnounceResponse, Error>>>,
    ) {
        let url = self
            .trackers
            .get(&id)
            .map(|t| t.url.clone())
            .unwrap_or_default();
        let answered = |r: &Result<AnnounceResponse, Error>| {
            matches!(r, Ok(_) | Err(Error::Failure(_) | Error::Udp { .. }))
        };
        let sent = results.iter().flatten().count();
        let accepted = results.iter().flatten().filter(|r| r.is_ok()).count();
        if results.iter().flatten().any(answered) {
            self.tracker_answered(now, id);
        } else if let Some(Some(Err(e))) = results.iter().find(|r| r.is_some()) {
            let alive = self
                .trackers
                .get(&id)
                .and_then(|tr| tr.answered_at)
                .is_some_and(|a| a > sent_at);
            if !alive {
                self.tracker_failed(now, id, e);
            }
        }
        if sent > 0 {
            log::info!("announced stopped for {accepted} of {sent} torrents to {url}");
        }
        let mut results = results.into_iter();
        for stop in stops {
            let key = stop.torrent;
            match results.next().flatten() {
                Some(r) => {
                    if let Err(e) = &r {
                        log::debug!("torrent {key:?}: stopped to {url} failed: {e}");
                    }
                    if let Some(t) = self.torrents.get_mut(&key) {
                        t.stops_pending = t.stops_pending.saturating_sub(1);
                        t.started.retain(|s| *s != id);
                    }
                    self.maybe_forget(key);
                }
                None => self.stop_unsent(now, id, key),
            }
        }
    }

    /// A stop of a batch was not sent: back to the front of the queue
    /// while the tracker is up and the deadline allows, else dropped.
    fn stop_unsent(&mut self, now: Instant, id: TrackerId, key: TorrentKey) {
        let deadline = self.torrents.get(&key).and_then(|t| t.removing);
        match (deadline, self.trackers.get_mut(&id)) {
            (Some(d), Some(tr)) if d > now && tr.available(now) => {
                tr.stops.push_front((key, d));
            }
            _ => self.stop_dropped(key, "not sent before the deadline"),
        }
    }
}
