//! How the scheduler takes a worker's answer: tracker health (warm, or one
//! backoff for all its torrents), the torrent's schedule and tiers, peers
//! and scrape counters out, and the bookkeeping of `stopped`.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::Instant;

use bittern_wire::InfoHash;

use super::{error_chain, Core, Job, JobKind, JobResult, Output, TorrentState, TrackerId, Wake};
use crate::error::Error;
use crate::session::{TorrentKey, TrackerEvent};
use crate::types::{AnnounceEvent, AnnounceResponse, ScrapeStats};

impl Core {
    /// Takes a worker's answer.
    pub fn on_done(&mut self, now: Instant, job: Job, result: JobResult) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(tr) = self.trackers.get_mut(&job.tracker) {
            tr.in_flight = tr.in_flight.saturating_sub(1);
        }
        match (job.kind, result) {
            (
                JobKind::Announce {
                    torrent, params, ..
                },
                JobResult::Announce(r),
            ) => self.announce_done(now, job.tracker, torrent, params.event, r),
            (JobKind::Scrape { torrents }, JobResult::Scrape(r)) => {
                self.scrape_done(now, job.tracker, torrents, r)
            }
            (JobKind::Stops { stops }, JobResult::Stops(r)) => {
                self.stops_done(now, job.tracker, job.sent_at, stops, r)
            }
            _ => log::error!("announcer job and result do not match"),
        }
        self.forget_tracker_if_unused(job.tracker);
    }

    /// The tracker answered (whatever it said): it is reachable.
    pub(super) fn tracker_answered(&mut self, now: Instant, id: TrackerId) {
        if let Some(tr) = self.trackers.get_mut(&id) {
            tr.answered_at = Some(now);
            tr.backoff.reset();
            tr.retry_at = None;
            tr.warm_until = Some(now + self.config.warm_for);
            tr.last_error = None;
        }
    }

    /// The tracker could not be reached or answered garbage: back off once
    /// (a failure of a request sent before the backoff began does not
    /// count again), and move its waiting torrents on.
    pub(super) fn tracker_failed(&mut self, now: Instant, id: TrackerId, error: &Error) {
        let Some(tr) = self.trackers.get_mut(&id) else {
            return;
        };
        tr.warm_until = None;
        tr.last_error = Some(error_chain(error));
        if tr.available(now) {
            let delay = tr
                .backoff
                .next_delay(&self.config.schedule, (self.jitter)());
            tr.retry_at = Some(now + delay);
            log::warn!(
                "tracker {} failed ({error}); backing off {delay:?} for all its torrents",
                tr.url
            );
            self.heap.push(Reverse((now + delay, Wake::Dispatch)));
        }
        let stops: Vec<TorrentKey> = tr.stops.drain(..).map(|(key, _)| key).collect();
        let waiting: Vec<TorrentKey> = tr.queue.drain(..).collect();
        for key in stops {
            self.stop_dropped(key, "the tracker is backing off");
        }
        for key in waiting {
            if let Some(t) = self.torrents.get_mut(&key) {
                if t.queued_on == Some(id) {
                    if let Some(r) = t.round.as_mut() {
                        r.cursor += 1;
                    }
                    self.route(now, key);
                }
            }
        }
    }

    fn announce_done(
        &mut self,
        now: Instant,
        id: TrackerId,
        key: TorrentKey,
        event: AnnounceEvent,
        result: Result<AnnounceResponse, Error>,
    ) {
        let url = self
            .trackers
            .get(&id)
            .map(|t| t.url.clone())
            .unwrap_or_default();
        match &result {
            Ok(_) | Err(Error::Failure(_) | Error::Udp { .. }) => self.tracker_answered(now, id),
            Err(e) => self.tracker_failed(now, id, e),
        }
        if event == AnnounceEvent::Stopped {
            match result {
                Ok(_) => log::info!("announced stopped to {url}"),
                Err(e) => log::debug!("stopped announce to {url} failed: {e}"),
            }
            if let Some(t) = self.torrents.get_mut(&key) {
                t.stops_pending = t.stops_pending.saturating_sub(1);
                t.started.retain(|s| *s != id);
            }
            self.maybe_forget(key);
            return;
        }
        let Some(t) = self.torrents.get_mut(&key) else {
            return;
        };
        t.in_flight = false;
        let status_of =
            |t: &mut TorrentState| t.status.trackers.iter_mut().position(|s| s.url == url);
        match result {
            Ok(resp) => {
                log::info!(
                    "announced {event:?} to {url}: {} peers, interval {:?}",
                    resp.peers.len(),
                    resp.interval
                );
                if let Some(w) = &resp.warning {
                    log::warn!("tracker {url} warns: {w}");
                }
                if !t.started.contains(&id) {
                    t.started.push(id);
                }
                if let Some(tid) = resp.tracker_id {
                    match t.tracker_ids.iter_mut().find(|(i, _)| *i == id) {
                        Some((_, old)) => *old = tid,
                        None => t.tracker_ids.push((id, tid)),
                    }
                }
                if let Some(deadline) = t.removing {
                    // Removed while this announce was in flight: the tracker
                    // now lists us, so it gets a `stopped` too.
                    if deadline > now {
                        if let Some(tr) = self.trackers.get_mut(&id) {
                            tr.stops.push_back((key, deadline));
                            t.stops_pending += 1;
                        }
                    }
                    self.maybe_forget(key);
                    return;
                }
                if let Some(round) = t.round.take() {
                    if let Some(&(tier, index, _)) = round.order.get(round.cursor) {
                        t.tiers.promote(tier, index);
                    }
                }
                t.schedule
                    .on_success(now, event, resp.interval, resp.min_interval);
                let st = &mut t.status;
                st.last_success = Some(now);
                st.seeders = resp.complete.or(st.seeders);
                st.leechers = resp.incomplete.or(st.leechers);
                st.failures = 0;
                st.announces += 1;
                if let Some(i) = status_of(t) {
                    let ts = &mut t.status.trackers[i];
                    ts.last_error = None;
                    ts.last_success = Some(now);
                    ts.last_peer_count = resp.peers.len();
                    ts.started = true;
                    ts.last_announce = Some(now);
                    ts.seeders = resp.complete.or(ts.seeders);
                    ts.leechers = resp.incomplete.or(ts.leechers);
                }
                Self::reschedule(&mut self.heap, key, t);
                if !resp.peers.is_empty() {
                    self.outputs
                        .push(Output::Event(TrackerEvent::Peers(key, resp.peers)));
                }
            }
            Err(e) => {
                log::debug!("torrent {key:?}: announce to {url} failed: {e}");
                if let Some(i) = status_of(t) {
                    let ts = &mut t.status.trackers[i];
                    ts.last_error = Some(error_chain(&e));
                    ts.last_announce = Some(now);
                }
                if t.removing.is_some() {
                    self.maybe_forget(key);
                    return;
                }
                // A failed tracker already re-routed its queue; this torrent
                // was in flight, not queued, so it moves on here.
                if let Some(r) = t.round.as_mut() {
                    r.cursor += 1;
                }
                self.route(now, key);
            }
        }
    }

    fn scrape_done(
        &mut self,
        now: Instant,
        id: TrackerId,
        torrents: Vec<(TorrentKey, InfoHash)>,
        result: Result<Vec<(InfoHash, ScrapeStats)>, Error>,
    ) {
        let url = self
            .trackers
            .get(&id)
            .map(|t| t.url.clone())
            .unwrap_or_default();
        // Each torrent's view of this tracker: when it was scraped, and
        // what came of it.
        let noted = |t: &mut TorrentState, outcome: Result<Option<ScrapeStats>, String>| {
            if let Some(ts) = t.status.trackers.iter_mut().find(|s| s.url == url) {
                ts.last_scrape = Some(now);
                match outcome {
                    Ok(stats) => {
                        ts.last_scrape_error = None;
                        if let Some(s) = stats {
                            ts.seeders = Some(s.complete);
                            ts.leechers = Some(s.incomplete);
                            ts.downloaded = Some(s.downloaded);
                        }
                    }
                    Err(e) => ts.last_scrape_error = Some(e),
                }
            }
        };
        match result {
            Ok(stats) => {
                self.tracker_answered(now, id);
                let by_hash: HashMap<InfoHash, ScrapeStats> = stats.into_iter().collect();
                for (key, hash) in torrents {
                    let found = by_hash.get(&hash).copied();
                    if let Some(t) = self.torrents.get_mut(&key) {
                        noted(t, Ok(found));
                    }
                    let Some(s) = found else {
                        continue;
                    };
                    if let Some(t) = self.torrents.get_mut(&key) {
                        t.status.seeders = Some(s.complete);
                        t.status.leechers = Some(s.incomplete);
                        self.outputs
                            .push(Output::Event(TrackerEvent::Scraped(key, s)));
                    }
                }
            }
            Err(e) if e.is_unreachable() => {
                for (key, _) in &torrents {
                    if let Some(t) = self.torrents.get_mut(key) {
                        noted(t, Err(error_chain(&e)));
                    }
                }
                self.tracker_failed(now, id, &e);
                // Try again once the tracker is back.
                if let Some(tr) = self.trackers.get_mut(&id) {
                    for (key, _) in torrents {
                        if let Some(t) = self.torrents.get_mut(&key) {
                            if !t.scrape_queued && t.removing.is_none() {
                                t.scrape_queued = true;
                                tr.scrapes.push(key);
                            }
                        }
                    }
                }
            }
            Err(e) => {
                // The tracker is there but does not scrape: drop the request.
                for (key, _) in &torrents {
                    if let Some(t) = self.torrents.get_mut(key) {
                        noted(t, Err(error_chain(&e)));
                    }
                }
                self.tracker_answered(now, id);
                log::debug!("scrape failed: {e}");
            }
        }
    }
}
