//! One announcer for a whole session: every torrent's trackers served by
//! one scheduler thread and a small, fixed pool of worker threads.
//!
//! [`SessionAnnouncer::spawn`] starts one scheduler thread; it starts
//! worker threads as requests need them, at most `workers`, whatever the
//! number of torrents. The scheduler thread owns all state (see the
//! decisions in `session/core.rs`): a deadline heap, so a torrent with
//! nothing due costs no wake-up; one queue per tracker, so many torrents on
//! one tracker never open a connection each at once; and one backoff per
//! tracker, so an unreachable tracker costs one attempt per backoff step,
//! not one per torrent. Workers only run requests (HTTP and UDP announces
//! and batched scrapes); a UDP tracker's connection id is shared by all its
//! torrents (BEP 15: valid one minute).
//!
//! The scheduler never does IO and never blocks, so the handle's methods
//! (a send on a bounded channel the scheduler drains at once) return in
//! microseconds: the engine's controller can call them from its loop.
//! Transfer counters are read through a [`StatsSource`] on a worker, just
//! before each announce, so the engine need not push updates.
//!
//! It replaced the mainline Rerequester's announcer thread per torrent.

mod core;
mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bittern_wire::{InfoHash, PeerId};
use crossbeam_channel::{after, bounded, never, select, Receiver, Sender, TrySendError};

use self::core::{Core, CoreConfig, Output};
use crate::error::Result;
use crate::schedule::ScheduleConfig;
use crate::types::{AnnouncerStatus, ClientConfig, ScrapeStats, TransferStats};

/// Commands queued for the scheduler at most (the scheduler drains them at
/// once; a send only waits while it does).
const COMMAND_CAPACITY: usize = 4096;
/// Deadline for the `stopped` announces when the handle is dropped
/// without [`SessionHandle::shutdown`].
const DROP_STOP_DEADLINE: Duration = Duration::from_secs(3);
/// How long `status` waits for the scheduler's answer.
const STATUS_WAIT: Duration = Duration::from_secs(5);

/// The engine's name for a torrent; any value unique among the torrents
/// of one announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TorrentKey(pub u64);

/// Reads a torrent's transfer counters; called on a worker thread just
/// before each announce, so it must be cheap and must not block (the
/// engine reads its atomics).
pub type StatsSource = Arc<dyn Fn() -> TransferStats + Send + Sync>;

/// What the announcer tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerEvent {
    /// Peers a tracker returned for the torrent (IPv4 and IPv6 together,
    /// without duplicates).
    Peers(TorrentKey, Vec<SocketAddr>),
    /// Swarm counters from a scrape.
    Scraped(TorrentKey, ScrapeStats),
}

/// How a [`SessionAnnouncer`] runs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Our peer id, the same for every torrent.
    pub peer_id: PeerId,
    /// Our listening port.
    pub port: u16,
    /// Peers asked for in each announce.
    pub numwant: u32,
    /// Timeouts and limits of each request.
    pub client: ClientConfig,
    /// Intervals and backoff, per torrent; the backoff also applies per
    /// tracker when a tracker cannot be reached.
    pub schedule: ScheduleConfig,
    /// Worker threads, i.e. requests in flight at once.
    pub workers: usize,
    /// Requests in flight at once to one tracker that answered within
    /// `warm_for` (one while it has not).
    pub per_tracker: usize,
    /// Worker threads while `stopped` announces wait (at least
    /// `workers`): a shutdown's stops leave in batches, this many at once.
    pub stop_workers: usize,
    /// Batches of `stopped` announces in flight at once to one warm
    /// tracker (one while it is cold).
    pub stop_per_tracker: usize,
    /// How long an answer keeps a tracker warm; BEP 15's connection id
    /// lifetime.
    pub warm_for: Duration,
    /// Deadline of the `stopped` announces of [`SessionHandle::remove`].
    pub stop_deadline: Duration,
    /// Capacity of the event channel; events that do not fit are dropped
    /// (peers come again with the next announce).
    pub event_capacity: usize,
    /// Prefix of the thread names (`{name}-s`, `{name}-w0`, ...).
    pub thread_name: String,
    /// When set, the announcer ends by itself (threads and channels) once
    /// it has had no torrent, no request in flight and no command for this
    /// long; [`SessionHandle::add`] then returns false and the owner starts
    /// a new one when a torrent needs it. `None`: it runs until shut down.
    pub idle_exit: Option<Duration>,
}

impl SessionConfig {
    /// Production defaults: 4 workers, 2 requests per tracker (16 and 16
    /// for the batches of `stopped` announces), `numwant` 50, a 3 s stop
    /// deadline, the default schedule, and UDP requests sent
    /// at most 4 times rather than BEP 15's 8, so that one silent UDP
    /// tracker cannot hold up a torrent's other tiers for an hour.
    pub fn new(peer_id: PeerId, port: u16) -> SessionConfig {
        SessionConfig {
            peer_id,
            port,
            numwant: 50,
            client: ClientConfig {
                udp_max_tries: 4,
                ..ClientConfig::default()
            },
            schedule: ScheduleConfig::default(),
            workers: 4,
            per_tracker: 2,
            stop_workers: 16,
            stop_per_tracker: 16,
            warm_for: Duration::from_secs(60),
            stop_deadline: Duration::from_secs(3),
            event_capacity: 1024,
            thread_name: "announce".to_string(),
            idle_exit: None,
        }
    }
}

enum Command {
    Add {
        key: TorrentKey,
        info_hash: InfoHash,
        tiers: Vec<Vec<String>>,
        stats: StatsSource,
    },
    Completed(TorrentKey),
    NeedPeers(TorrentKey),
    Scrape(Option<TorrentKey>),
    Remove(TorrentKey, Instant, Sender<()>),
    /// A snapshot of one torrent's state, asked for by `status`.
    Status(TorrentKey, Sender<Option<AnnouncerStatus>>),
    Shutdown(Instant),
}

/// Starts the session announcer. See [`SessionAnnouncer::spawn`].
#[derive(Debug)]
pub struct SessionAnnouncer;

impl SessionAnnouncer {
    /// Starts the scheduler thread and `config.workers` worker threads.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if a thread cannot be started.
    pub fn spawn(config: SessionConfig) -> Result<SessionHandle> {
        let workers = config.workers.max(1);
        let (commands_tx, commands_rx) = bounded(COMMAND_CAPACITY);
        let (events_tx, events_rx) = bounded(config.event_capacity.max(1));
        let stop_workers = config.stop_workers.max(workers);
        let pool = pool::Pool::new(
            &config.thread_name,
            workers,
            stop_workers,
            config.client.clone(),
        );
        let threads = Arc::new(AtomicUsize::new(1));
        let open = Arc::new(Mutex::new(true));
        let core = Core::new(
            CoreConfig {
                peer_id: config.peer_id,
                port: config.port,
                numwant: config.numwant,
                key: rand::random(),
                schedule: config.schedule.clone(),
                max_in_flight: workers,
                per_tracker: config.per_tracker,
                stop_in_flight: stop_workers,
                stop_per_tracker: config.stop_per_tracker,
                warm_for: config.warm_for,
            },
            Box::new(rand::random::<f64>),
        );
        let scheduler = Scheduler {
            core,
            pool,
            commands: commands_rx,
            events: events_tx,
            waiters: HashMap::new(),
            shutdown: None,
            threads: Arc::clone(&threads),
            open: Arc::clone(&open),
            idle_exit: config.idle_exit,
            idle_since: None,
        };
        let thread = thread::Builder::new()
            .name(format!("{}-s", config.thread_name))
            .spawn(move || scheduler.run())?;
        Ok(SessionHandle {
            commands: commands_tx,
            events: events_rx,
            stop_deadline: config.stop_deadline,
            threads,
            open,
            thread: Some(thread),
        })
    }
}

/// The engine's side of the session announcer. Dropping it shuts the
/// announcer down (sending `stopped` within a short deadline) without
/// waiting.
pub struct SessionHandle {
    commands: Sender<Command>,
    events: Receiver<TrackerEvent>,
    stop_deadline: Duration,
    /// Threads held: the scheduler and the workers running.
    threads: Arc<AtomicUsize>,
    /// False once the scheduler ended idle (see
    /// [`SessionConfig::idle_exit`]). `add` holds it while it sends, so
    /// the scheduler never ends with an addition queued.
    open: Arc<Mutex<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("threads", &self.threads())
            .finish_non_exhaustive()
    }
}

/// Waits for one torrent's `stopped` announces (see
/// [`SessionHandle::remove`]); dropping it does not cancel them.
#[derive(Debug)]
pub struct Stopping(Receiver<()>);

impl Stopping {
    /// Waits at most `timeout`; true if the torrent's `stopped` announces
    /// finished (sent, failed, or given up at their deadline).
    pub fn wait(&self, timeout: Duration) -> bool {
        self.0.recv_timeout(timeout).is_ok()
    }

    /// The channel that receives `()` when done, for `select!`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.0
    }
}

impl SessionHandle {
    /// Adds a torrent under `key` (unique among this announcer's torrents;
    /// a key in use is ignored): `started` goes to its trackers (BEP 12
    /// `tiers`) at once, then every `interval`. `stats` is read before each
    /// announce.
    ///
    /// False if the announcer has ended (idle, see
    /// [`SessionConfig::idle_exit`], or shut down): the torrent was not
    /// added; start a new announcer for it.
    #[must_use = "an ended announcer takes no torrent"]
    pub fn add(
        &self,
        key: TorrentKey,
        info_hash: InfoHash,
        tiers: Vec<Vec<String>>,
        stats: StatsSource,
    ) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        *open
            && self
                .commands
                .send(Command::Add {
                    key,
                    info_hash,
                    tiers,
                    stats,
                })
                .is_ok()
    }

    /// Whether the announcer has ended: idle (see
    /// [`SessionConfig::idle_exit`]), shut down, or its thread gone.
    pub fn has_ended(&self) -> bool {
        !*self.open.lock().unwrap_or_else(|e| e.into_inner())
            || self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// The torrent finished downloading: announce `completed` (once).
    pub fn completed(&self, key: TorrentKey) {
        self.send(Command::Completed(key));
    }

    /// The torrent is short of peers: announce as early as the tracker's
    /// `min interval` allows.
    pub fn need_peers(&self, key: TorrentKey) {
        self.send(Command::NeedPeers(key));
    }

    /// Scrapes the torrent; the counters arrive as
    /// [`TrackerEvent::Scraped`]. Scrapes for one tracker are batched.
    pub fn scrape(&self, key: TorrentKey) {
        self.send(Command::Scrape(Some(key)));
    }

    /// Scrapes every torrent, in batches per tracker.
    pub fn scrape_all(&self) {
        self.send(Command::Scrape(None));
    }

    /// Removes a torrent: `stopped` goes to every tracker that accepted
    /// its `started`, within the configured stop deadline. Returns at once.
    pub fn remove(&self, key: TorrentKey) -> Stopping {
        let (done_tx, done_rx) = bounded(1);
        self.send(Command::Remove(
            key,
            Instant::now() + self.stop_deadline,
            done_tx,
        ));
        Stopping(done_rx)
    }

    /// Peers and scrape results, for every torrent.
    pub fn events(&self) -> &Receiver<TrackerEvent> {
        &self.events
    }

    /// A snapshot of one torrent's tracker state, asked of the scheduler
    /// (no copy is kept per torrent for this); `None` for an unknown key
    /// or once the announcer has ended.
    pub fn status(&self, key: TorrentKey) -> Option<AnnouncerStatus> {
        let (tx, rx) = bounded(1);
        self.commands.send(Command::Status(key, tx)).ok()?;
        rx.recv_timeout(STATUS_WAIT).ok().flatten()
    }

    /// Threads this announcer holds: the scheduler, and the workers
    /// running (a worker starts when a request finds none free, up to
    /// [`SessionConfig::workers`], none before the first request, and ends
    /// after 10 s without a job). Updated when the scheduler wakes.
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    /// Sends `stopped` for every torrent, in parallel over the workers,
    /// and stops every thread, all within `deadline`. Returns true if
    /// everything finished in time (otherwise threads still busy are left
    /// to finish on their own).
    pub fn shutdown(mut self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        self.send(Command::Shutdown(end));
        self.join(end)
    }

    fn join(&mut self, end: Instant) -> bool {
        let Some(thread) = self.thread.take() else {
            return true;
        };
        // The scheduler joins the workers before it ends; poll for it.
        while !thread.is_finished() {
            if Instant::now() >= end {
                log::debug!("session announcer still busy at its deadline; detaching");
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        if thread.join().is_err() {
            log::error!("session announcer thread panicked");
            return false;
        }
        true
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            log::debug!("session announcer is gone; command dropped");
        }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if !thread.is_finished() {
            let _ = self
                .commands
                .try_send(Command::Shutdown(Instant::now() + DROP_STOP_DEADLINE));
        } else if thread.join().is_err() {
            // It ended (idle): nothing was left to send.
            log::error!("session announcer thread panicked");
        }
    }
}

struct Scheduler {
    core: Core,
    pool: pool::Pool,
    commands: Receiver<Command>,
    events: Sender<TrackerEvent>,
    waiters: HashMap<TorrentKey, Sender<()>>,
    shutdown: Option<Instant>,
    threads: Arc<AtomicUsize>,
    /// See [`SessionHandle::open`].
    open: Arc<Mutex<bool>>,
    /// See [`SessionConfig::idle_exit`].
    idle_exit: Option<Duration>,
    /// Since when the announcer has had nothing to do.
    idle_since: Option<Instant>,
}

impl Scheduler {
    fn run(mut self) {
        loop {
            let now = Instant::now();
            for job in self.core.poll(now) {
                // Jobs in flight never exceed the pool's queue capacity.
                if let Some(job) = self.pool.submit(job) {
                    log::error!("announcer worker queue refused a job");
                    let result = pool::not_run(&job);
                    self.core.on_done(now, job, result);
                }
            }
            self.threads
                .store(1 + self.pool.threads(), Ordering::Relaxed);
            self.deliver();
            if let Some(end) = self.shutdown {
                if self.core.torrent_count() == 0 && self.core.in_flight() == 0 || now >= end {
                    break;
                }
            }
            let idle_end = self.idle_end(now);
            if idle_end.is_some_and(|at| at <= now) && self.close_idle() {
                log::debug!("session announcer idle; ending its threads");
                break;
            }
            let wake = [self.core.next_wakeup(), self.shutdown, idle_end]
                .into_iter()
                .flatten()
                .min();
            let timer = wake.map_or_else(never, |at| after(at.saturating_duration_since(now)));
            select! {
                recv(self.commands) -> cmd => match cmd {
                    Ok(cmd) => {
                        self.command(cmd);
                        while let Ok(cmd) = self.commands.try_recv() {
                            self.command(cmd);
                        }
                    }
                    Err(_) => {
                        // Every handle is gone without a shutdown.
                        self.commands = never();
                        self.command(Command::Shutdown(Instant::now() + DROP_STOP_DEADLINE));
                    }
                },
                recv(self.pool.done()) -> done => {
                    if let Ok((job, result)) = done {
                        self.core.on_done(Instant::now(), job, result);
                    }
                }
                recv(timer) -> _ => {}
            }
        }
        self.deliver();
        let end = self.shutdown.unwrap_or_else(Instant::now);
        self.pool.join(end);
        self.threads.store(0, Ordering::Relaxed);
    }

    /// When the announcer may end idle (see [`SessionConfig::idle_exit`]):
    /// it has had no torrent, nothing in flight and nobody waiting for a
    /// `stopped` since `idle_since`. `None` while it is busy.
    fn idle_end(&mut self, now: Instant) -> Option<Instant> {
        let limit = self.idle_exit?;
        let idle = self.shutdown.is_none()
            && self.core.torrent_count() == 0
            && self.core.in_flight() == 0
            && self.waiters.is_empty();
        if !idle {
            self.idle_since = None;
            return None;
        }
        Some(*self.idle_since.get_or_insert(now) + limit)
    }

    /// Closes the announcer to additions if no command waits; false if one
    /// does, or an addition is being sent now (it runs on then).
    fn close_idle(&mut self) -> bool {
        let Ok(mut open) = self.open.try_lock() else {
            self.idle_since = None;
            return false;
        };
        if !self.commands.is_empty() {
            self.idle_since = None;
            return false;
        }
        *open = false;
        true
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Add {
                key,
                info_hash,
                tiers,
                stats,
            } => {
                if self.shutdown.is_some() {
                    return;
                }
                if !self.core.add(now, key, info_hash, tiers, stats) {
                    log::warn!("torrent key {key:?} is already in the announcer");
                }
            }
            Command::Completed(key) => self.core.completed(now, key),
            Command::NeedPeers(key) => self.core.need_peers(now, key),
            Command::Scrape(Some(key)) => self.core.scrape(key),
            Command::Scrape(None) => self.core.scrape_all(),
            Command::Remove(key, deadline, done) => {
                if self.core.remove(now, key, deadline) {
                    self.waiters.insert(key, done);
                    // It may be gone already (nothing to stop).
                    self.deliver();
                } else {
                    let _ = done.try_send(());
                }
            }
            Command::Status(key, reply) => {
                let _ = reply.try_send(self.core.status(key).cloned());
            }
            Command::Shutdown(end) => {
                let end = self.shutdown.map_or(end, |e| e.min(end));
                self.shutdown = Some(end);
                self.core.remove_all(now, end);
            }
        }
    }

    fn deliver(&mut self) {
        for out in self.core.take_outputs() {
            match out {
                Output::Event(e) => match self.events.try_send(e) {
                    Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                    Err(TrySendError::Full(_)) => {
                        log::debug!("tracker event channel full; dropping an event")
                    }
                },
                Output::Removed(key) => {
                    if let Some(w) = self.waiters.remove(&key) {
                        let _ = w.try_send(());
                    }
                }
            }
        }
    }
}
