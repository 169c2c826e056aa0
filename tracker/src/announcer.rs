//! The Rerequester: one background thread per torrent that announces to
//! the torrent's trackers on the [`Schedule`] and hands new peers to the
//! engine.
//!
//! Superseded by the [`SessionAnnouncer`](crate::SessionAnnouncer) (one
//! scheduler and a fixed worker pool for every torrent); this stays only
//! until the engine has switched to it, then goes.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bittern_wire::{InfoHash, PeerId};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use crate::client::announce;
use crate::schedule::{Schedule, ScheduleConfig};
use crate::tiers::Tiers;
use crate::types::{AnnounceEvent, AnnounceParams, ClientConfig, TransferStats};

/// How many peer lists may wait in the channel for the engine.
const PEER_CHANNEL_CAPACITY: usize = 32;
/// Deadline for the `stopped` announce when a handle is dropped without
/// [`AnnouncerHandle::stop`].
const DROP_STOP_DEADLINE: Duration = Duration::from_secs(3);

/// Where a worker delivers peer lists (with the tracker's URL, for logs).
type PeerSink = Box<dyn Fn(Vec<SocketAddr>, &str) + Send>;

/// What an [`Announcer`] announces and how.
#[derive(Debug, Clone)]
pub struct AnnouncerConfig {
    /// The torrent's trackers by tier (BEP 12; a single `announce` URL is
    /// one tier of one).
    pub tiers: Vec<Vec<String>>,
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Our listening port.
    pub port: u16,
    /// Peers asked for in each announce.
    pub numwant: u32,
    /// Timeouts and limits of each request.
    pub client: ClientConfig,
    /// Intervals and backoff.
    pub schedule: ScheduleConfig,
}

impl AnnouncerConfig {
    /// A config with production defaults: `numwant` 50, default schedule,
    /// and the default client except that a UDP request is sent at most 4
    /// times (15 + 30 + 60 + 120 s) rather than BEP 15's 8, so that one
    /// silent UDP tracker cannot hold up the other tiers for an hour.
    pub fn new(
        tiers: Vec<Vec<String>>,
        info_hash: InfoHash,
        peer_id: PeerId,
        port: u16,
    ) -> AnnouncerConfig {
        AnnouncerConfig {
            tiers,
            info_hash,
            peer_id,
            port,
            numwant: 50,
            client: ClientConfig {
                udp_max_tries: 4,
                ..ClientConfig::default()
            },
            schedule: ScheduleConfig::default(),
        }
    }
}

/// One tracker's state, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerStatus {
    /// The tracker URL.
    pub url: String,
    /// Its tier (0 is tried first).
    pub tier: usize,
    /// The error of the last failed announce, cleared by a success.
    pub last_error: Option<String>,
    /// When it last answered successfully.
    pub last_success: Option<Instant>,
    /// Peers it returned last time.
    pub last_peer_count: usize,
    /// Whether it has accepted our `started` (and so gets `stopped`).
    pub started: bool,
}

/// A snapshot of an announcer's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnouncerStatus {
    /// Every tracker, in tier order.
    pub trackers: Vec<TrackerStatus>,
    /// When any tracker last answered.
    pub last_success: Option<Instant>,
    /// Seeders according to the last answer.
    pub seeders: Option<u32>,
    /// Leechers according to the last answer.
    pub leechers: Option<u32>,
    /// When the next announce is due (`None` once stopped).
    pub next_announce: Option<Instant>,
    /// Consecutive rounds in which every tracker failed.
    pub failures: u32,
    /// Successful announces so far.
    pub announces: u64,
}

/// State shared between the handle and the announcer thread.
struct Shared {
    status: Mutex<AnnouncerStatus>,
    completed: AtomicBool,
    need_peers: AtomicBool,
    stop: Mutex<Option<Instant>>,
}

/// Starts announcer threads. See [`Announcer::spawn`].
#[derive(Debug)]
pub struct Announcer;

impl Announcer {
    /// Starts the announcer thread for one torrent: `started` is announced
    /// at once, then the schedule runs until [`AnnouncerHandle::stop`].
    /// `stats` is called before each announce.
    pub fn spawn(
        config: AnnouncerConfig,
        stats: Arc<dyn Fn() -> TransferStats + Send + Sync>,
    ) -> AnnouncerHandle {
        let (peers_tx, peers_rx) = bounded(PEER_CHANNEL_CAPACITY);
        let sink: PeerSink = Box::new(move |peers, url| match peers_tx.try_send(peers) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                log::debug!("peer channel full; dropping peers from {url}")
            }
        });
        Self::start(config, stats, sink, peers_rx)
    }

    /// Like [`spawn`](Self::spawn), but each non-empty peer list goes to
    /// `sink` (called on the announcer's thread; it must not block)
    /// instead of the handle's [`peers`](AnnouncerHandle::peers) channel,
    /// which then never yields anything. An engine running many torrents
    /// on one thread funnels every torrent's tracker peers into one
    /// channel this way instead of selecting over one per torrent.
    pub fn spawn_with_sink(
        config: AnnouncerConfig,
        stats: Arc<dyn Fn() -> TransferStats + Send + Sync>,
        sink: impl Fn(Vec<SocketAddr>) + Send + 'static,
    ) -> AnnouncerHandle {
        Self::start(
            config,
            stats,
            Box::new(move |peers, _| sink(peers)),
            crossbeam_channel::never(),
        )
    }

    fn start(
        config: AnnouncerConfig,
        stats: Arc<dyn Fn() -> TransferStats + Send + Sync>,
        sink: PeerSink,
        peers_rx: Receiver<Vec<SocketAddr>>,
    ) -> AnnouncerHandle {
        let tiers = Tiers::new(config.tiers.clone());
        let shared = Arc::new(Shared {
            status: Mutex::new(AnnouncerStatus {
                trackers: tiers
                    .iter()
                    .map(|(tier, _, url)| TrackerStatus {
                        url: url.to_string(),
                        tier,
                        last_error: None,
                        last_success: None,
                        last_peer_count: 0,
                        started: false,
                    })
                    .collect(),
                ..AnnouncerStatus::default()
            }),
            completed: AtomicBool::new(false),
            need_peers: AtomicBool::new(false),
            stop: Mutex::new(None),
        });
        let (wake_tx, wake_rx) = bounded(1);
        let (done_tx, done_rx) = bounded::<()>(0);
        let worker = Worker {
            schedule: Schedule::new(config.schedule.clone(), Instant::now()),
            key: rand::random(),
            tiers,
            config,
            stats,
            shared: Arc::clone(&shared),
            peers: sink,
            wake: wake_rx,
            started: HashSet::new(),
            tracker_ids: HashMap::new(),
        };
        let name = format!("announce-{}", &worker.config.info_hash.to_hex()[..8]);
        let thread = thread::Builder::new().name(name).spawn(move || {
            let _done = done_tx;
            worker.run();
        });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("could not start announcer thread: {e}");
                None
            }
        };
        AnnouncerHandle {
            shared,
            wake: wake_tx,
            peers: peers_rx,
            done: done_rx,
            thread,
        }
    }
}

/// The engine's side of an announcer. Dropping it stops the announcer
/// (sending `stopped` with a short deadline) without waiting.
#[derive(Debug)]
pub struct AnnouncerHandle {
    shared: Arc<Shared>,
    wake: Sender<()>,
    peers: Receiver<Vec<SocketAddr>>,
    done: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl AnnouncerHandle {
    /// New peers from each successful announce.
    pub fn peers(&self) -> &Receiver<Vec<SocketAddr>> {
        &self.peers
    }

    /// The download finished: announce `completed` (once, however often
    /// this is called).
    pub fn completed(&self) {
        self.shared.completed.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// The torrent is short of peers: announce as soon as the tracker's
    /// min interval allows.
    pub fn need_peers(&self) {
        self.shared.need_peers.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// A snapshot of the announcer's state.
    pub fn status(&self) -> AnnouncerStatus {
        self.shared.status.lock().clone()
    }

    /// Stops the announcer: sends `stopped` to every tracker that was
    /// started, waiting at most `deadline` in total, then joins the thread.
    /// If an announce in flight outlives the deadline, the thread is left
    /// to finish on its own.
    pub fn stop(mut self, deadline: Duration) {
        let start = Instant::now();
        *self.shared.stop.lock() = Some(start + deadline);
        self.wake();
        let remaining = deadline.saturating_sub(start.elapsed());
        match self.done.recv_timeout(remaining) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                if let Some(t) = self.thread.take() {
                    if t.join().is_err() {
                        log::error!("announcer thread panicked");
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                log::debug!("announcer still busy after the stop deadline; detaching");
                self.thread = None;
            }
        }
    }

    fn wake(&self) {
        // A full channel means a wake-up is already pending.
        let _ = self.wake.try_send(());
    }
}

impl Drop for AnnouncerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let mut stop = self.shared.stop.lock();
            if stop.is_none() {
                *stop = Some(Instant::now() + DROP_STOP_DEADLINE);
            }
            drop(stop);
            self.wake();
        }
    }
}

struct Worker {
    config: AnnouncerConfig,
    stats: Arc<dyn Fn() -> TransferStats + Send + Sync>,
    shared: Arc<Shared>,
    peers: PeerSink,
    wake: Receiver<()>,
    schedule: Schedule,
    tiers: Tiers,
    key: u32,
    started: HashSet<String>,
    tracker_ids: HashMap<String, Vec<u8>>,
}

impl Worker {
    fn run(mut self) {
        loop {
            if let Some(deadline) = self.stop_requested() {
                self.send_stopped(deadline);
                return;
            }
            let now = Instant::now();
            if self.shared.completed.swap(false, Ordering::SeqCst) {
                self.schedule.on_completed(now);
            }
            if self.shared.need_peers.swap(false, Ordering::SeqCst) {
                self.schedule.on_need_peers(now);
            }
            self.shared.status.lock().next_announce = Some(self.schedule.next_announce());
            if self.schedule.is_due(now) {
                self.round();
                continue;
            }
            match self.wake.recv_timeout(self.schedule.time_until(now)) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The handle is gone; its Drop set a stop deadline.
                    let deadline = self
                        .stop_requested()
                        .unwrap_or_else(|| Instant::now() + DROP_STOP_DEADLINE);
                    self.send_stopped(deadline);
                    return;
                }
            }
        }
    }

    fn stop_requested(&self) -> Option<Instant> {
        *self.shared.stop.lock()
    }

    fn params(&self, url: &str, event: AnnounceEvent) -> AnnounceParams {
        let stats = (self.stats)();
        AnnounceParams {
            info_hash: self.config.info_hash,
            peer_id: self.config.peer_id,
            port: self.config.port,
            uploaded: stats.uploaded,
            downloaded: stats.downloaded,
            left: stats.left,
            event,
            numwant: (event != AnnounceEvent::Stopped).then_some(self.config.numwant),
            key: self.key,
            tracker_id: self.tracker_ids.get(url).cloned(),
        }
    }

    /// One announce round: trackers in tier order until one answers.
    fn round(&mut self) {
        let order: Vec<(usize, usize, String)> = self
            .tiers
            .iter()
            .map(|(t, i, u)| (t, i, u.to_string()))
            .collect();
        for (tier, index, url) in order {
            if self.stop_requested().is_some() {
                return;
            }
            let event = self.schedule.event(self.started.contains(&url));
            let params = self.params(&url, event);
            match announce(&url, &params, &self.config.client) {
                Ok(resp) => {
                    let now = Instant::now();
                    log::info!(
                        "announced {event:?} to {url}: {} peers, interval {:?}",
                        resp.peers.len(),
                        resp.interval
                    );
                    if let Some(w) = &resp.warning {
                        log::warn!("tracker {url} warns: {w}");
                    }
                    self.started.insert(url.clone());
                    if let Some(id) = &resp.tracker_id {
                        self.tracker_ids.insert(url.clone(), id.clone());
                    }
                    self.tiers.promote(tier, index);
                    self.schedule
                        .on_success(now, event, resp.interval, resp.min_interval);
                    {
                        let mut st = self.shared.status.lock();
                        st.last_success = Some(now);
                        st.seeders = resp.complete.or(st.seeders);
                        st.leechers = resp.incomplete.or(st.leechers);
                        st.failures = 0;
                        st.announces += 1;
                        st.next_announce = Some(self.schedule.next_announce());
                        if let Some(t) = st.trackers.iter_mut().find(|t| t.url == url) {
                            t.last_error = None;
                            t.last_success = Some(now);
                            t.last_peer_count = resp.peers.len();
                            t.started = true;
                        }
                    }
                    if !resp.peers.is_empty() {
                        (self.peers)(resp.peers, &url);
                    }
                    return;
                }
                Err(e) => {
                    log::warn!("announce to {url} failed: {e}");
                    let mut st = self.shared.status.lock();
                    if let Some(t) = st.trackers.iter_mut().find(|t| t.url == url) {
                        t.last_error = Some(error_chain(&e));
                    }
                }
            }
        }
        let now = Instant::now();
        let delay = self.schedule.on_failure(now, rand::random::<f64>());
        log::debug!("every tracker failed; retrying in {delay:?}");
        let mut st = self.shared.status.lock();
        st.failures = self.schedule.failures();
        st.next_announce = Some(self.schedule.next_announce());
    }

    /// Sends `stopped` to every started tracker before `deadline`.
    fn send_stopped(&mut self, deadline: Instant) {
        let urls: Vec<String> = self
            .tiers
            .iter()
            .map(|(_, _, u)| u.to_string())
            .filter(|u| self.started.contains(u))
            .collect();
        for url in urls {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                log::debug!("stop deadline passed before `stopped` reached {url}");
                break;
            }
            let params = self.params(&url, AnnounceEvent::Stopped);
            match announce(&url, &params, &self.config.client.within(remaining)) {
                Ok(_) => log::info!("announced Stopped to {url}"),
                Err(e) => log::debug!("stopped announce to {url} failed: {e}"),
            }
            self.started.remove(&url);
            if let Some(t) = self
                .shared
                .status
                .lock()
                .trackers
                .iter_mut()
                .find(|t| t.url == url)
            {
                t.started = false;
            }
        }
        self.shared.status.lock().next_announce = None;
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
