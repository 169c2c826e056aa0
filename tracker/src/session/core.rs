//! The session announcer's scheduler as pure logic: every torrent's
//! [`Schedule`] and BEP 12 [`Tiers`], one queue and one [`Backoff`] per
//! tracker, and a deadline heap. Time is passed in and the random jitter
//! injected, so the unit tests below run on a synthetic clock.
//!
//! Decisions:
//! - A torrent due for an announce joins the queue of the first tracker of
//!   its tiers that is not backing off; jobs leave a tracker's queue at most
//!   `per_tracker` at a time, and only one while the tracker is *cold* (no
//!   answer in the last `warm_for`): a dead tracker costs one connection
//!   attempt per backoff step however many torrents wait for it, and a UDP
//!   tracker hands out one connection id that the others then reuse.
//! - A tracker that cannot be reached or answers garbage backs off once for
//!   all its torrents: those waiting for it move on to their next tracker,
//!   or wait in its queue if none is available. A tracker that answers with
//!   a refusal (`failure reason`, UDP error) is alive; only that torrent
//!   moves on, and if every tracker refused it, the torrent backs off alone.
//! - `stopped` announces go first in each queue and are dropped once their
//!   deadline passes or when the tracker is backing off. They leave in
//!   batches (`session/core/stops.rs`): each batch is one job that a worker
//!   sends one after another on one kept-alive HTTP connection, or all at
//!   once over UDP, and a warm tracker takes `stop_per_tracker` batches at
//!   once, so 10,000 torrents stopping cost a few hundred jobs, not 10,000
//!   round trips through the scheduler.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_wire::{InfoHash, PeerId};

mod answers;
mod stops;

use super::{StatsSource, TorrentKey, TrackerEvent};
use crate::error::Error;
use crate::schedule::{Backoff, Schedule, ScheduleConfig};
use crate::tiers::Tiers;
use crate::types::{AnnounceEvent, AnnounceParams, AnnounceResponse, ScrapeStats};
use crate::types::{AnnouncerStatus, TrackerStatus};

/// Most info-hashes in one HTTP scrape (keeps the URL under ~4 KiB).
const HTTP_SCRAPE_BATCH: usize = 50;
/// Most info-hashes in one UDP scrape (one BEP 15 packet).
const UDP_SCRAPE_BATCH: usize = 74;

/// The scheduler's policy.
#[derive(Debug, Clone)]
pub(crate) struct CoreConfig {
    pub peer_id: PeerId,
    pub port: u16,
    pub numwant: u32,
    pub key: u32,
    pub schedule: ScheduleConfig,
    /// Requests in flight at once, over all trackers (the pool size).
    pub max_in_flight: usize,
    /// Requests in flight at once to one tracker that answered recently.
    pub per_tracker: usize,
    /// Jobs in flight at once, over all trackers, while `stopped`
    /// announces wait (at least `max_in_flight`).
    pub stop_in_flight: usize,
    /// Batches of `stopped` announces in flight at once to one tracker
    /// that answered recently.
    pub stop_per_tracker: usize,
    /// How long after an answer a tracker counts as warm.
    pub warm_for: Duration,
}

/// A tracker, by the order it was first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TrackerId(u64);

/// One request for a worker.
pub(crate) struct Job {
    pub tracker: TrackerId,
    pub url: String,
    /// After this the request is pointless (`stopped` at shutdown).
    pub deadline: Option<Instant>,
    /// When the scheduler handed it out.
    pub sent_at: Instant,
    pub kind: JobKind,
}

/// One torrent's `stopped` announce in a [`JobKind::Stops`] batch.
pub(crate) struct StopItem {
    pub torrent: TorrentKey,
    pub params: AnnounceParams,
    pub stats: StatsSource,
}

/// What a [`Job`] asks.
pub(crate) enum JobKind {
    /// An announce; the worker fills in the transfer counters from `stats`.
    Announce {
        torrent: TorrentKey,
        params: AnnounceParams,
        stats: StatsSource,
    },
    /// One multi-torrent scrape.
    Scrape {
        torrents: Vec<(TorrentKey, InfoHash)>,
    },
    /// `stopped` announces of several torrents to one tracker.
    Stops { stops: Vec<StopItem> },
}

/// A worker's answer to a [`Job`].
pub(crate) enum JobResult {
    Announce(Result<AnnounceResponse, Error>),
    Scrape(Result<Vec<(InfoHash, ScrapeStats)>, Error>),
    /// One entry per stop of the batch, in order: `None` for one not sent
    /// (the deadline came, or the tracker stopped answering).
    Stops(Vec<Option<Result<AnnounceResponse, Error>>>),
}

/// What the scheduler thread must pass on.
#[derive(Debug)]
pub(crate) enum Output {
    /// For the engine's event channel.
    Event(TrackerEvent),
    /// A removed torrent is gone: its `stopped` announces are done.
    Removed(TorrentKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Wake {
    /// The torrent's schedule may be due (stale unless `gen` matches).
    Torrent(TorrentKey, u64),
    /// A tracker's backoff ends, or a stop deadline passes: dispatch.
    Dispatch,
}

struct TrackerState {
    /// Shared with the tiers and status of every torrent on it.
    url: Arc<str>,
    /// Torrents waiting to announce here.
    queue: VecDeque<TorrentKey>,
    /// `stopped` announces waiting, with their deadlines.
    stops: VecDeque<(TorrentKey, Instant)>,
    /// Torrents waiting to be scraped here.
    scrapes: Vec<TorrentKey>,
    in_flight: usize,
    backoff: Backoff,
    retry_at: Option<Instant>,
    warm_until: Option<Instant>,
    /// When it last answered anything.
    answered_at: Option<Instant>,
    last_error: Option<String>,
    /// Torrents that list this tracker.
    users: usize,
}

impl TrackerState {
    fn available(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|r| now >= r)
    }

    fn is_warm(&self, now: Instant) -> bool {
        self.warm_until.is_some_and(|w| now < w)
    }

    fn can_send(&self, now: Instant, per_tracker: usize) -> bool {
        let limit = if self.is_warm(now) {
            per_tracker.max(1)
        } else {
            1
        };
        self.available(now) && self.in_flight < limit
    }

    fn scrape_batch(&self) -> Option<usize> {
        if self.url.starts_with("udp://") {
            Some(UDP_SCRAPE_BATCH)
        } else {
            crate::http::scrape_url(&self.url).map(|_| HTTP_SCRAPE_BATCH)
        }
    }
}

/// The trackers of one announce round, in the order to try them.
struct Round {
    order: Vec<(usize, usize, TrackerId)>,
    cursor: usize,
}

struct TorrentState {
    info_hash: InfoHash,
    stats: StatsSource,
    tiers: Tiers,
    schedule: Schedule,
    /// Trackers that took our `started` (a list: one or two entries).
    started: Vec<TrackerId>,
    /// `tracker id`s trackers gave (BEP 3), rarely any: a list, not a map.
    tracker_ids: Vec<(TrackerId, Vec<u8>)>,
    /// Boxed: most torrents are between rounds.
    round: Option<Box<Round>>,
    queued_on: Option<TrackerId>,
    in_flight: bool,
    scrape_queued: bool,
    gen: u64,
    status: AnnouncerStatus,
    /// Set by `remove`: the `stopped` deadline.
    removing: Option<Instant>,
    /// `stopped` announces queued or in flight.
    stops_pending: usize,
}

/// The scheduler.
pub(crate) struct Core {
    config: CoreConfig,
    /// `config.schedule`, shared by every torrent's schedule.
    schedule: Arc<crate::schedule::ScheduleConfig>,
    jitter: Box<dyn FnMut() -> f64 + Send>,
    /// Boxed, so that the table's free slots stay small.
    torrents: HashMap<TorrentKey, Box<TorrentState>>,
    trackers: HashMap<TrackerId, TrackerState>,
    by_url: HashMap<Arc<str>, TrackerId>,
    next_tracker: u64,
    heap: BinaryHeap<Reverse<(Instant, Wake)>>,
    in_flight: usize,
    outputs: Vec<Output>,
}

impl Core {
    /// A scheduler; `jitter` returns values in `[0, 1]`.
    pub fn new(config: CoreConfig, jitter: Box<dyn FnMut() -> f64 + Send>) -> Core {
        Core {
            schedule: Arc::new(config.schedule.clone()),
            config,
            jitter,
            torrents: HashMap::new(),
            trackers: HashMap::new(),
            by_url: HashMap::new(),
            next_tracker: 0,
            heap: BinaryHeap::new(),
            in_flight: 0,
            outputs: Vec::new(),
        }
    }

    /// Torrents known (including those still sending `stopped`).
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Requests handed out and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// When [`Core::poll`] next has something to do (`None`: nothing is
    /// scheduled, only a command or an answer can make work).
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// What happened since the last call.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Adds a torrent: its first announce (`started`) is due at `now`.
    /// A key already in use is ignored (returns false).
    pub fn add(
        &mut self,
        now: Instant,
        key: TorrentKey,
        info_hash: InfoHash,
        tiers: Vec<Vec<String>>,
        stats: StatsSource,
    ) -> bool {
        if self.torrents.contains_key(&key) {
            return false;
        }
        let mut tiers = Tiers::new(tiers);
        // One copy of each URL for all the torrents on that tracker.
        tiers.intern(|url| {
            let id = self.tracker_id(url);
            self.trackers
                .get(&id)
                .map_or_else(|| Arc::from(url), |t| t.url.clone())
        });
        let mut status = AnnouncerStatus {
            // Exactly one entry per tracker: 10,000 torrents on one tracker
            // would otherwise each hold room for four.
            trackers: Vec::with_capacity(tiers.iter().count()),
            ..AnnouncerStatus::default()
        };
        for (tier, index, _) in tiers.iter() {
            let url = tiers.tiers()[tier][index].clone();
            let id = self.tracker_id(&url);
            if let Some(t) = self.trackers.get_mut(&id) {
                t.users += 1;
            }
            status.trackers.push(TrackerStatus {
                url,
                tier,
                last_error: None,
                last_success: None,
                ..TrackerStatus::default()
            });
        }
        let schedule = Schedule::shared(self.schedule.clone(), now);
        status.next_announce = (!tiers.is_empty()).then(|| schedule.next_announce());
        let has_trackers = !tiers.is_empty();
        self.torrents.insert(
            key,
            Box::new(TorrentState {
                info_hash,
                stats,
                tiers,
                schedule,
                started: Vec::new(),
                tracker_ids: Vec::new(),
                round: None,
                queued_on: None,
                in_flight: false,
                scrape_queued: false,
                gen: 0,
                status,
                removing: None,
                stops_pending: 0,
            }),
        );
        if has_trackers {
            self.heap.push(Reverse((now, Wake::Torrent(key, 0))));
        }
        true
    }

    /// The torrent finished downloading: announce `completed` now.
    pub fn completed(&mut self, now: Instant, key: TorrentKey) {
        if let Some(t) = self.torrents.get_mut(&key) {
            t.schedule.on_completed(now);
            Self::reschedule(&mut self.heap, key, t);
        }
    }

    /// The torrent is short of peers: announce as early as `min interval`
    /// allows.
    pub fn need_peers(&mut self, now: Instant, key: TorrentKey) {
        if let Some(t) = self.torrents.get_mut(&key) {
            if t.schedule.on_need_peers(now) {
                Self::reschedule(&mut self.heap, key, t);
            }
        }
    }

    /// Queues a scrape of the torrent on its first tracker that supports
    /// scraping; scrapes wait in that tracker's queue and go out batched.
    pub fn scrape(&mut self, key: TorrentKey) {
        let Some(t) = self.torrents.get_mut(&key) else {
            return;
        };
        if t.scrape_queued || t.removing.is_some() {
            return;
        }
        let target = t.tiers.iter().find_map(|(_, _, url)| {
            let id = *self.by_url.get(url)?;
            let tr = self.trackers.get(&id)?;
            tr.scrape_batch().map(|_| id)
        });
        match target.and_then(|id| self.trackers.get_mut(&id)) {
            Some(tr) => {
                tr.scrapes.push(key);
                t.scrape_queued = true;
            }
            None => log::debug!("torrent {key:?}: no tracker supports scrape"),
        }
    }

    /// Scrapes every torrent (see [`Core::scrape`]).
    pub fn scrape_all(&mut self) {
        let keys: Vec<TorrentKey> = self.torrents.keys().copied().collect();
        for key in keys {
            self.scrape(key);
        }
    }

    /// Stops a torrent: `stopped` to every tracker that accepted its
    /// `started`, before `deadline`. [`Output::Removed`] follows when done.
    /// False if the key is unknown or already being removed.
    pub fn remove(&mut self, now: Instant, key: TorrentKey, deadline: Instant) -> bool {
        let Some(t) = self.torrents.get_mut(&key) else {
            return false;
        };
        if t.removing.is_some() {
            return false;
        }
        t.removing = Some(deadline);
        t.gen += 1;
        t.status.next_announce = None;
        let mut started: Vec<TrackerId> = t.started.to_vec();
        started.sort();
        for id in started {
            if let Some(tr) = self.trackers.get_mut(&id) {
                if tr.available(now) {
                    tr.stops.push_back((key, deadline));
                    t.stops_pending += 1;
                } else {
                    log::debug!("{} is backing off; not sending stopped", tr.url);
                }
            }
        }
        self.heap.push(Reverse((deadline, Wake::Dispatch)));
        self.maybe_forget(key);
        true
    }

    /// Removes every torrent (see [`Core::remove`]).
    pub fn remove_all(&mut self, now: Instant, deadline: Instant) {
        let mut keys: Vec<TorrentKey> = self.torrents.keys().copied().collect();
        keys.sort();
        for key in keys {
            self.remove(now, key, deadline);
        }
    }

    /// Starts the announces that are due and hands out every job the
    /// limits allow.
    pub fn poll(&mut self, now: Instant) -> Vec<Job> {
        while let Some(Reverse((at, wake))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if let Wake::Torrent(key, gen) = wake {
                let due = self.torrents.get(&key).is_some_and(|t| {
                    t.gen == gen
                        && t.removing.is_none()
                        && t.round.is_none()
                        && t.schedule.is_due(now)
                });
                if due {
                    self.start_round(now, key);
                }
            }
        }
        self.dispatch(now)
    }

    fn tracker_id(&mut self, url: &str) -> TrackerId {
        if let Some(id) = self.by_url.get(url) {
            return *id;
        }
        let id = TrackerId(self.next_tracker);
        self.next_tracker += 1;
        let url: Arc<str> = Arc::from(url);
        self.by_url.insert(url.clone(), id);
        self.trackers.insert(
            id,
            TrackerState {
                url,
                queue: VecDeque::new(),
                stops: VecDeque::new(),
                scrapes: Vec::new(),
                in_flight: 0,
                backoff: Backoff::default(),
                retry_at: None,
                warm_until: None,
                answered_at: None,
                last_error: None,
                users: 0,
            },
        );
        id
    }

    fn reschedule(
        heap: &mut BinaryHeap<Reverse<(Instant, Wake)>>,
        key: TorrentKey,
        t: &mut TorrentState,
    ) {
        if t.removing.is_some() {
            return;
        }
        t.gen += 1;
        t.status.next_announce = Some(t.schedule.next_announce());
        if t.round.is_none() {
            heap.push(Reverse((
                t.schedule.next_announce(),
                Wake::Torrent(key, t.gen),
            )));
        }
    }

    fn start_round(&mut self, now: Instant, key: TorrentKey) {
        let Some(t) = self.torrents.get_mut(&key) else {
            return;
        };
        let order = t
            .tiers
            .iter()
            .filter_map(|(tier, i, url)| self.by_url.get(url).map(|id| (tier, i, *id)))
            .collect();
        t.round = Some(Box::new(Round { order, cursor: 0 }));
        self.route(now, key);
    }

    /// Queues the torrent on the next tracker of its round that is not
    /// backing off; if none is, on the one whose backoff ends first; if
    /// every tracker refused it, ends the round with a torrent backoff.
    fn route(&mut self, now: Instant, key: TorrentKey) {
        let Some(t) = self.torrents.get_mut(&key) else {
            return;
        };
        let Some(round) = t.round.as_mut() else {
            return;
        };
        t.queued_on = None;
        while let Some(&(_, _, id)) = round.order.get(round.cursor) {
            if let Some(tr) = self.trackers.get_mut(&id) {
                if tr.available(now) {
                    tr.queue.push_back(key);
                    t.queued_on = Some(id);
                    return;
                }
            }
            round.cursor += 1;
        }
        let parked = round
            .order
            .iter()
            .enumerate()
            .filter_map(|(pos, &(_, _, id))| {
                let tr = self.trackers.get(&id)?;
                Some((tr.retry_at.filter(|_| !tr.available(now))?, pos, id))
            })
            .min();
        if let Some((_, pos, id)) = parked {
            round.cursor = pos;
            if let Some(tr) = self.trackers.get_mut(&id) {
                tr.queue.push_back(key);
                t.queued_on = Some(id);
            }
            return;
        }
        // Every tracker answered and refused this torrent.
        t.round = None;
        let delay = t.schedule.on_failure(now, (self.jitter)());
        log::debug!("torrent {key:?}: every tracker refused; retrying in {delay:?}");
        t.status.failures = t.schedule.failures();
        Self::reschedule(&mut self.heap, key, t);
    }

    fn dispatch(&mut self, now: Instant) -> Vec<Job> {
        let mut jobs = Vec::new();
        let mut ids: Vec<TrackerId> = self.trackers.keys().copied().collect();
        ids.sort();
        let most = self.config.max_in_flight.max(self.config.stop_in_flight);
        let mut progress = true;
        while progress && self.in_flight < most {
            progress = false;
            for &id in &ids {
                self.expire_stops(now, id);
                let can_send = self.trackers.get(&id).is_some_and(|tr| {
                    if tr.stops.is_empty() {
                        self.in_flight < self.config.max_in_flight
                            && tr.can_send(now, self.config.per_tracker)
                    } else {
                        self.in_flight < most && tr.can_send(now, self.config.stop_per_tracker)
                    }
                });
                if !can_send {
                    continue;
                }
                if let Some(job) = self.next_job(now, id) {
                    self.in_flight += 1;
                    if let Some(tr) = self.trackers.get_mut(&id) {
                        tr.in_flight += 1;
                    }
                    jobs.push(job);
                    progress = true;
                }
            }
        }
        jobs
    }

    /// Drops the tracker's `stopped` announces whose deadline has passed.
    fn expire_stops(&mut self, now: Instant, id: TrackerId) {
        // Deadlines are queued nearly in order; a later-queued one that
        // expires first is dropped when it reaches the front (`next_job`).
        while let Some(tr) = self.trackers.get_mut(&id) {
            match tr.stops.front() {
                Some(&(key, d)) if d <= now => {
                    tr.stops.pop_front();
                    self.stop_dropped(key, "the stop deadline passed");
                }
                _ => return,
            }
        }
    }

    /// A queued `stopped` will not be sent.
    pub(super) fn stop_dropped(&mut self, key: TorrentKey, why: &str) {
        log::debug!("torrent {key:?}: stopped not sent: {why}");
        if let Some(t) = self.torrents.get_mut(&key) {
            t.stops_pending = t.stops_pending.saturating_sub(1);
        }
        self.maybe_forget(key);
    }

    fn next_job(&mut self, now: Instant, id: TrackerId) -> Option<Job> {
        let tr = self.trackers.get_mut(&id)?;
        let url = tr.url.to_string();
        let batch = tr.scrape_batch();
        if let Some(job) = self.stops_job(now, id, &url) {
            return Some(job);
        }
        while let Some(key) = self.trackers.get_mut(&id)?.queue.pop_front() {
            let Some(t) = self.torrents.get_mut(&key) else {
                continue;
            };
            if t.queued_on != Some(id) || t.removing.is_some() {
                continue;
            }
            t.queued_on = None;
            t.in_flight = true;
            let event = t.schedule.event(t.started.contains(&id));
            let t = &self.torrents[&key];
            return Some(self.announce_job(id, url, key, t, event, now));
        }
        let mut torrents = Vec::new();
        while torrents.len() < batch? {
            let Some(key) = self.trackers.get_mut(&id)?.scrapes.pop() else {
                break;
            };
            if let Some(t) = self.torrents.get_mut(&key) {
                t.scrape_queued = false;
                if t.removing.is_none() {
                    torrents.push((key, t.info_hash));
                }
            }
        }
        (!torrents.is_empty()).then_some(Job {
            tracker: id,
            url,
            deadline: None,
            sent_at: now,
            kind: JobKind::Scrape { torrents },
        })
    }

    fn announce_job(
        &self,
        id: TrackerId,
        url: String,
        key: TorrentKey,
        t: &TorrentState,
        event: AnnounceEvent,
        now: Instant,
    ) -> Job {
        Job {
            tracker: id,
            url,
            deadline: None,
            sent_at: now,
            kind: JobKind::Announce {
                torrent: key,
                params: self.params(t, id, event),
                stats: t.stats.clone(),
            },
        }
    }

    fn params(&self, t: &TorrentState, id: TrackerId, event: AnnounceEvent) -> AnnounceParams {
        AnnounceParams {
            info_hash: t.info_hash,
            peer_id: self.config.peer_id,
            port: self.config.port,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event,
            numwant: (event != AnnounceEvent::Stopped).then_some(self.config.numwant),
            key: self.config.key,
            tracker_id: t
                .tracker_ids
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, tid)| tid.clone()),
        }
    }

    /// Forgets a removed torrent once nothing of it is queued or in flight.
    fn maybe_forget(&mut self, key: TorrentKey) {
        let done = self
            .torrents
            .get(&key)
            .is_some_and(|t| t.removing.is_some() && t.stops_pending == 0 && !t.in_flight);
        if !done {
            return;
        }
        if let Some(t) = self.torrents.remove(&key) {
            for (_, _, url) in t.tiers.iter() {
                if let Some(id) = self.by_url.get(url).copied() {
                    if let Some(tr) = self.trackers.get_mut(&id) {
                        tr.users = tr.users.saturating_sub(1);
                    }
                    self.forget_tracker_if_unused(id);
                }
            }
            self.outputs.push(Output::Removed(key));
        }
        if self.torrents.is_empty() {
            // Only stale wake-ups are left.
            self.heap.clear();
        }
    }

    fn forget_tracker_if_unused(&mut self, id: TrackerId) {
        let unused = self
            .trackers
            .get(&id)
            .is_some_and(|tr| tr.users == 0 && tr.in_flight == 0);
        if unused {
            if let Some(tr) = self.trackers.remove(&id) {
                self.by_url.remove(&tr.url);
            }
        }
    }

    /// One torrent's tracker state.
    pub fn status(&self, key: TorrentKey) -> Option<&AnnouncerStatus> {
        self.torrents.get(&key).map(|t| &t.status)
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TransferStats;
    use std::sync::Arc;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const A: &str = "http://127.0.0.1:1/announce";
    const B: &str = "http://127.0.0.1:2/announce";

    fn core() -> Core {
        Core::new(
            CoreConfig {
                peer_id: PeerId([7; 20]),
                port: 6881,
                numwant: 50,
                key: 9,
                schedule: ScheduleConfig {
                    backoff_base: S(10),
                    backoff_max: S(100),
                    min_interval_floor: S(1),
                    max_interval: S(3600),
                    default_min_interval: S(60),
                },
                max_in_flight: 4,
                per_tracker: 2,
                stop_in_flight: 4,
                stop_per_tracker: 4,
                warm_for: S(60),
            },
            Box::new(|| 1.0),
        )
    }

    fn stats() -> StatsSource {
        Arc::new(TransferStats::default)
    }

    fn add(c: &mut Core, now: Instant, n: u64, tiers: &[&[&str]]) {
        let tiers: Vec<Vec<String>> = tiers
            .iter()
            .map(|t| t.iter().map(|u| u.to_string()).collect())
            .collect();
        for k in 0..n {
            let mut hash = [0u8; 20];
            hash[..8].copy_from_slice(&k.to_be_bytes());
            assert!(c.add(now, TorrentKey(k), InfoHash(hash), tiers.clone(), stats()));
        }
    }

    fn ok(interval: u64) -> JobResult {
        JobResult::Announce(Ok(AnnounceResponse {
            interval: S(interval),
            min_interval: None,
            tracker_id: None,
            complete: Some(1),
            incomplete: Some(2),
            peers: vec!["127.0.0.1:9".parse().unwrap()],
            warning: None,
        }))
    }

    fn what(job: &Job) -> (TorrentKey, AnnounceEvent, &str) {
        match &job.kind {
            JobKind::Announce {
                torrent, params, ..
            } => (*torrent, params.event, &job.url),
            JobKind::Scrape { .. } => panic!("unexpected scrape"),
            JobKind::Stops { .. } => panic!("unexpected batch of stops"),
        }
    }

    /// Answers every job with `answer` until nothing is left at `now`;
    /// returns the jobs run. A batch of stops is answered with what
    /// `answer` gives its first stop (an error ends the batch there, as
    /// over HTTP) and listed as one job per stop sent.
    fn drain(c: &mut Core, now: Instant, answer: impl Fn(&Job) -> JobResult) -> Vec<Job> {
        let mut run = Vec::new();
        loop {
            let jobs = c.poll(now);
            if jobs.is_empty() {
                return run;
            }
            for job in jobs {
                let copy =
                    |torrent: TorrentKey, params: &AnnounceParams, stats: &StatsSource| Job {
                        tracker: job.tracker,
                        url: job.url.clone(),
                        deadline: job.deadline,
                        sent_at: job.sent_at,
                        kind: JobKind::Announce {
                            torrent,
                            params: params.clone(),
                            stats: stats.clone(),
                        },
                    };
                let (r, copies) = match &job.kind {
                    JobKind::Announce {
                        torrent,
                        params,
                        stats,
                    } => (answer(&job), vec![copy(*torrent, params, stats)]),
                    JobKind::Scrape { torrents } => {
                        let c = Job {
                            tracker: job.tracker,
                            url: job.url.clone(),
                            deadline: job.deadline,
                            sent_at: job.sent_at,
                            kind: JobKind::Scrape {
                                torrents: torrents.clone(),
                            },
                        };
                        (answer(&job), vec![c])
                    }
                    JobKind::Stops { stops } => {
                        let first = copy(stops[0].torrent, &stops[0].params, &stops[0].stats);
                        let results: Vec<_> = match answer(&first) {
                            JobResult::Announce(Ok(resp)) => {
                                stops.iter().map(|_| Some(Ok(resp.clone()))).collect()
                            }
                            JobResult::Announce(Err(e)) => std::iter::once(Some(Err(e)))
                                .chain(stops.iter().skip(1).map(|_| None))
                                .collect(),
                            _ => panic!("a stop answered with a scrape"),
                        };
                        let copies = stops
                            .iter()
                            .zip(&results)
                            .filter(|(_, r)| r.is_some())
                            .map(|(s, _)| copy(s.torrent, &s.params, &s.stats))
                            .collect();
                        (JobResult::Stops(results), copies)
                    }
                };
                c.on_done(now, job, r);
                run.extend(copies);
            }
        }
    }

    #[test]
    fn nothing_wakes_without_work() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 1, &[]);
        assert_eq!(c.next_wakeup(), None, "a torrent without trackers");
        add_one(&mut c, t0, 1, A);
        assert_eq!(c.next_wakeup(), Some(t0));
        let jobs = c.poll(t0);
        assert_eq!(jobs.len(), 1);
        assert_eq!(what(&jobs[0]), (TorrentKey(1), AnnounceEvent::Started, A));
        assert_eq!(c.next_wakeup(), None, "nothing due while the announce runs");
        for job in jobs {
            c.on_done(t0, job, ok(1800));
        }
        assert_eq!(c.next_wakeup(), Some(t0 + S(1800)));
        assert!(c.poll(t0 + S(1799)).is_empty());
        let jobs = c.poll(t0 + S(1800));
        assert_eq!(what(&jobs[0]), (TorrentKey(1), AnnounceEvent::None, A));
    }

    fn add_one(c: &mut Core, now: Instant, k: u64, url: &str) {
        assert!(c.add(
            now,
            TorrentKey(k),
            InfoHash([k as u8; 20]),
            vec![vec![url.to_string()]],
            stats()
        ));
    }

    #[test]
    fn one_tracker_serves_many_torrents_one_probe_then_a_few_at_a_time() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 10, &[&[A]]);
        let first = c.poll(t0);
        assert_eq!(first.len(), 1, "a cold tracker gets one request");
        assert!(c.poll(t0).is_empty());
        for job in first {
            c.on_done(t0, job, ok(100));
        }
        let warm = c.poll(t0);
        assert_eq!(warm.len(), 2, "then `per_tracker` at a time");
        for job in warm {
            c.on_done(t0, job, ok(100));
        }
        let rest = drain(&mut c, t0, |_| ok(100));
        assert_eq!(rest.len(), 7);
        let mut out = c.take_outputs();
        out.retain(|o| matches!(o, Output::Event(TrackerEvent::Peers(..))));
        assert_eq!(out.len(), 10, "peers for each torrent");
        // Exactly one announce per torrent per interval.
        assert_eq!(c.next_wakeup(), Some(t0 + S(100)));
        assert!(drain(&mut c, t0 + S(99), |_| ok(100)).is_empty());
        let again = drain(&mut c, t0 + S(100), |_| ok(100));
        assert_eq!(again.len(), 10);
        assert!(again.iter().all(|j| what(j).1 == AnnounceEvent::None));
    }

    #[test]
    fn an_unreachable_tracker_backs_off_once_for_all_its_torrents() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 50, &[&[A]]);
        let fail = |_: &Job| JobResult::Announce(Err(Error::Connect));
        let mut attempts = Vec::new();
        let mut now = t0;
        for _ in 0..4 {
            let run = drain(&mut c, now, fail);
            assert_eq!(run.len(), 1, "one attempt per backoff step");
            attempts.push(now);
            now = c.next_wakeup().expect("a retry is scheduled");
        }
        // Backoff 10, 20, 40 s (jitter 1.0), shared by all 50 torrents.
        assert_eq!(attempts[1] - attempts[0], S(10));
        assert_eq!(attempts[2] - attempts[1], S(20));
        assert_eq!(attempts[3] - attempts[2], S(40));
        // The tracker comes back: every torrent announces once.
        let run = drain(&mut c, now, |_| ok(1800));
        assert_eq!(run.len(), 50);
        let mut keys: Vec<u64> = run.iter().map(|j| what(j).0 .0).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 50);
    }

    #[test]
    fn torrents_fall_through_to_the_next_tier_when_a_tracker_is_down() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 3, &[&[A], &[B]]);
        let run = drain(&mut c, t0, |j| {
            if j.url == A {
                JobResult::Announce(Err(Error::Timeout))
            } else {
                ok(1800)
            }
        });
        let to_a = run.iter().filter(|j| j.url == A).count();
        let to_b = run.iter().filter(|j| j.url == B).count();
        assert_eq!((to_a, to_b), (1, 3), "one probe to A, then all go to B");
        // Next round: A is still backing off, so B at once.
        let t1 = t0 + S(1800);
        let run = drain(&mut c, t1, |_| ok(1800));
        assert_eq!(run.len(), 3);
        assert!(
            run.iter().all(|j| j.url == A),
            "A's backoff is over by then"
        );
    }

    #[test]
    fn a_refusal_backs_off_only_that_torrent() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 2, &[&[A]]);
        let run = drain(&mut c, t0, |j| {
            if what(j).0 == TorrentKey(0) {
                JobResult::Announce(Err(Error::Failure("unregistered torrent".into())))
            } else {
                ok(1800)
            }
        });
        assert_eq!(run.len(), 2, "the tracker is not backing off");
        let st = c.torrents[&TorrentKey(0)].status.clone();
        assert_eq!(st.failures, 1);
        let tr = &st.trackers[0];
        assert_eq!(tr.last_announce, Some(t0), "a failed announce is dated too");
        assert!(tr
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("unregistered")));
        assert_eq!(tr.last_success, None);
        assert_eq!(c.next_wakeup(), Some(t0 + S(10)), "torrent 0 retries alone");
        let run = drain(&mut c, t0 + S(10), |_| ok(1800));
        assert_eq!(run.len(), 1);
        assert_eq!(what(&run[0]).0, TorrentKey(0));
    }

    #[test]
    fn completed_and_need_peers_are_scheduled() {
        let t0 = Instant::now();
        let mut c = core();
        add_one(&mut c, t0, 1, A);
        drain(&mut c, t0, |_| ok(1800));
        let t1 = t0 + S(5);
        c.completed(t1, TorrentKey(1));
        let run = drain(&mut c, t1, |_| ok(1800));
        assert_eq!(what(&run[0]).1, AnnounceEvent::Completed);
        c.need_peers(t1, TorrentKey(1));
        assert_eq!(c.next_wakeup(), Some(t1 + S(60)), "default min interval");
        assert!(drain(&mut c, t1 + S(59), |_| ok(1800)).is_empty());
        assert_eq!(drain(&mut c, t1 + S(60), |_| ok(1800)).len(), 1);
    }

    #[test]
    fn remove_sends_stopped_to_started_trackers_within_the_deadline() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 3, &[&[A, B]]);
        drain(&mut c, t0, |_| ok(1800));
        c.take_outputs();
        assert!(c.remove(t0, TorrentKey(0), t0 + S(2)));
        assert!(!c.remove(t0, TorrentKey(0), t0 + S(2)), "only once");
        let run = drain(&mut c, t0, |_| ok(0));
        assert_eq!(run.len(), 1);
        assert_eq!(what(&run[0]).0, TorrentKey(0));
        assert_eq!(what(&run[0]).1, AnnounceEvent::Stopped);
        assert_eq!(run[0].deadline, Some(t0 + S(2)));
        assert!(c
            .take_outputs()
            .iter()
            .any(|o| matches!(o, Output::Removed(TorrentKey(0)))));
        // Past the deadline, nothing is sent and the torrents are gone.
        c.remove_all(t0, t0 + S(1));
        assert_eq!(c.poll(t0 + S(1)).len(), 0);
        assert_eq!(c.torrent_count(), 0);
        assert_eq!(c.next_wakeup(), None, "nothing left to wake for");
    }

    #[test]
    fn removed_while_started_is_in_flight_still_gets_stopped() {
        let t0 = Instant::now();
        let mut c = core();
        add_one(&mut c, t0, 1, A);
        let jobs = c.poll(t0);
        assert!(c.remove(t0, TorrentKey(1), t0 + S(3)));
        assert!(c.poll(t0).is_empty(), "nothing started yet");
        for job in jobs {
            c.on_done(t0, job, ok(1800));
        }
        let run = drain(&mut c, t0, |_| ok(0));
        assert_eq!(run.len(), 1);
        assert_eq!(what(&run[0]), (TorrentKey(1), AnnounceEvent::Stopped, A));
        assert_eq!(c.torrent_count(), 0);
    }

    #[test]
    fn no_stopped_for_a_tracker_that_backs_off() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 40, &[&[A]]);
        drain(&mut c, t0, |_| ok(1800));
        c.remove_all(t0, t0 + S(3));
        // The first `stopped` of each batch (four at once to a warm
        // tracker) finds the tracker gone; the rest are dropped rather
        // than tried one by one.
        let run = drain(&mut c, t0, |_| JobResult::Announce(Err(Error::Connect)));
        assert_eq!(run.len(), 4);
        assert_eq!(c.torrent_count(), 0);
        let removed = c
            .take_outputs()
            .iter()
            .filter(|o| matches!(o, Output::Removed(_)))
            .count();
        assert_eq!(removed, 40);
    }

    /// The stops handed out at `now` (one batch per job), not answered.
    fn stop_batches(c: &mut Core, now: Instant) -> Vec<Job> {
        let jobs = c.poll(now);
        assert!(jobs.iter().all(|j| matches!(j.kind, JobKind::Stops { .. })));
        jobs
    }

    fn batch_len(job: &Job) -> usize {
        match &job.kind {
            JobKind::Stops { stops } => stops.len(),
            _ => 0,
        }
    }

    #[test]
    fn stops_leave_in_batches_over_every_worker() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 1000, &[&[A]]);
        drain(&mut c, t0, |_| ok(1800));
        c.remove_all(t0, t0 + S(3));
        let jobs = stop_batches(&mut c, t0);
        // A warm tracker takes `stop_per_tracker` batches at once, each of
        // at most STOP_BATCH.
        assert_eq!(jobs.len(), 4);
        assert!(jobs.iter().all(|j| batch_len(j) == stops::STOP_BATCH));
        assert!(jobs.iter().all(|j| j.deadline == Some(t0 + S(3))));
        for job in jobs {
            let n = batch_len(&job);
            c.on_done(
                t0,
                job,
                JobResult::Stops((0..n).map(|_| Some(ok_response())).collect()),
            );
        }
        let run = drain(&mut c, t0, |_| ok(0));
        assert_eq!(run.len(), 1000 - 4 * stops::STOP_BATCH, "the rest");
        assert_eq!(c.torrent_count(), 0);
        // Few stops are spread over the workers, not one batch.
        add(&mut c, t0, 8, &[&[A]]);
        drain(&mut c, t0, |_| ok(1800));
        c.remove_all(t0, t0 + S(3));
        let sizes: Vec<usize> = stop_batches(&mut c, t0).iter().map(batch_len).collect();
        assert_eq!(sizes, [2, 2, 2, 2]);
    }

    #[test]
    fn a_cold_tracker_gets_one_stop_first() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 100, &[&[A]]);
        drain(&mut c, t0, |_| ok(1800));
        // Two minutes later it is no longer warm.
        let t1 = t0 + S(120);
        c.remove_all(t1, t1 + S(3));
        let probe = stop_batches(&mut c, t1);
        assert_eq!(probe.iter().map(batch_len).collect::<Vec<_>>(), [1]);
        for job in probe {
            c.on_done(t1, job, JobResult::Stops(vec![Some(ok_response())]));
        }
        let sizes: Vec<usize> = stop_batches(&mut c, t1).iter().map(batch_len).collect();
        assert_eq!(sizes, [25, 25, 25, 24], "then batches in parallel");
    }

    fn ok_response() -> Result<AnnounceResponse, Error> {
        match ok(0) {
            JobResult::Announce(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn stops_not_sent_go_back_while_the_tracker_answers() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 40, &[&[A]]);
        drain(&mut c, t0, |_| ok(1800));
        c.remove_all(t0, t0 + S(3));
        let mut jobs = stop_batches(&mut c, t0).into_iter();
        let (a, b) = (jobs.next().unwrap(), jobs.next().unwrap());
        let all = |job: &Job| {
            JobResult::Stops((0..batch_len(job)).map(|_| Some(ok_response())).collect())
        };
        // Batch `a` is cut off after two (the tracker at its connection
        // limit), while batch `b` is answered after `a` went out: the
        // tracker is alive, and a's unsent stops are queued again.
        let t1 = t0 + Duration::from_millis(10);
        let r = all(&b);
        c.on_done(t1, b, r);
        let n = batch_len(&a);
        let mut cut: Vec<_> = vec![Some(ok_response()), Some(Err(Error::Connect))];
        cut.resize_with(n, || None);
        c.on_done(t1, a, JobResult::Stops(cut));
        assert!(c.trackers.values().all(|t| t.available(t1)), "no backoff");
        // The other two batches and the 8 stops put back all go out.
        let mut sent = 0;
        for job in jobs {
            sent += batch_len(&job);
            let r = all(&job);
            c.on_done(t1, job, r);
        }
        loop {
            let jobs = c.poll(t1);
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                sent += batch_len(&job);
                let r = all(&job);
                c.on_done(t1, job, r);
            }
        }
        assert_eq!(sent, 10 + 10 + 8);
        assert_eq!(c.torrent_count(), 0);
        // Past the deadline, what was not sent is dropped.
        add(&mut c, t1, 4, &[&[A]]);
        drain(&mut c, t1, |_| ok(1800));
        c.remove_all(t1, t1 + S(3));
        let t2 = t1 + S(4);
        for job in stop_batches(&mut c, t1) {
            let n = batch_len(&job);
            c.on_done(t2, job, JobResult::Stops((0..n).map(|_| None).collect()));
        }
        assert!(c.poll(t2).is_empty());
        assert_eq!(c.torrent_count(), 0);
    }

    #[test]
    fn scrapes_are_batched_per_tracker() {
        let t0 = Instant::now();
        let mut c = core();
        add(&mut c, t0, 120, &[&[A]]);
        drain(&mut c, t0, |_| ok(1800));
        c.take_outputs();
        c.scrape_all();
        let mut sizes = Vec::new();
        let run = drain(&mut c, t0, |j| match &j.kind {
            JobKind::Scrape { torrents } => JobResult::Scrape(Ok(torrents
                .iter()
                .map(|(_, h)| {
                    (
                        *h,
                        ScrapeStats {
                            complete: 3,
                            downloaded: 0,
                            incomplete: 4,
                        },
                    )
                })
                .collect())),
            JobKind::Announce { .. } | JobKind::Stops { .. } => panic!("no announce due"),
        });
        for j in &run {
            if let JobKind::Scrape { torrents } = &j.kind {
                sizes.push(torrents.len());
            }
        }
        sizes.sort();
        assert_eq!(sizes, [20, 50, 50]);
        let scraped = c
            .take_outputs()
            .into_iter()
            .filter(|o| matches!(o, Output::Event(TrackerEvent::Scraped(_, s)) if s.complete == 3))
            .count();
        assert_eq!(scraped, 120);
        let tr = &c.torrents[&TorrentKey(7)].status.trackers[0];
        assert_eq!(
            (tr.seeders, tr.leechers, tr.downloaded, tr.last_scrape),
            (Some(3), Some(4), Some(0), Some(t0)),
            "each torrent's tracker keeps its scrape"
        );
        assert_eq!(tr.last_scrape_error, None);
    }
}
