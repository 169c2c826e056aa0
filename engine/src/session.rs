//! The session (mainline MultiTorrent): one listening port routed by info
//! hash (SingleportListener), one FilePool, global rate limiters and
//! connection limit, and the torrents.

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_storage::FilePool;
use bittern_tracker::{
    SessionAnnouncer, SessionConfig as TrackerSessionConfig, SessionHandle, TorrentKey,
    TrackerEvent,
};
use bittern_wire::{Handshake, InfoHash, Metainfo, PeerId};
use crossbeam_channel::{Sender, TrySendError};
use log::{debug, info, warn};
use parking_lot::Mutex;

use crate::config::{SessionConfig, TorrentOptions};
use crate::error::Error;
use crate::ratelimit::RateLimiter;
use crate::torrent::{
    build_controller, Central, ControllerSetup, Ctl, TorrentCommand, TorrentHandle, TorrentId,
};

/// Torrents by info hash, for the listener's routing.
pub(crate) type Registry = Arc<Mutex<HashMap<InfoHash, TorrentId>>>;

/// Registers a torrent's id under its info hash, in one step with the
/// check that no other torrent has it. The entry is given back when the
/// returned reservation is dropped without [`Reservation::keep`] (the
/// torrent failed to start).
pub(crate) fn register(
    registry: &Registry,
    info_hash: InfoHash,
    id: TorrentId,
) -> Result<Reservation<'_>, Error> {
    match registry.lock().entry(info_hash) {
        std::collections::hash_map::Entry::Occupied(_) => {
            return Err(Error::DuplicateTorrent(info_hash.to_hex()))
        }
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(id);
        }
    }
    Ok(Reservation {
        registry,
        info_hash,
        id,
        kept: false,
    })
}

/// A registry entry taken by [`register`] for a torrent being set up.
pub(crate) struct Reservation<'a> {
    registry: &'a Registry,
    info_hash: InfoHash,
    id: TorrentId,
    kept: bool,
}

impl Reservation<'_> {
    /// The torrent started: the entry stays until its handle removes it.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            unregister(self.registry, self.info_hash, self.id);
        }
    }
}

/// Removes the entry for `info_hash` if it is still the one torrent `id`
/// registered (a torrent added again since has its own).
pub(crate) fn unregister(registry: &Registry, info_hash: InfoHash, id: TorrentId) {
    let mut r = registry.lock();
    if r.get(&info_hash) == Some(&id) {
        r.remove(&info_hash);
    }
}

/// Handshakes being read at once before new connections are dropped.
const MAX_PENDING_HANDSHAKES: usize = 256;
/// Handshakes pending from one host (127.0.0.1 exempt), so that silent
/// connections from one attacker cannot shut every other peer out.
const MAX_PENDING_PER_HOST: usize = 8;

/// What every torrent of a session shares.
pub(crate) struct SessionShared {
    pub config: SessionConfig,
    pub peer_id: PeerId,
    pub files: Arc<FilePool>,
    pub hashers: Arc<rayon::ThreadPool>,
    /// Verifies completed pieces by reading them back (sleeping workers).
    pub verifiers: crate::hashpool::HashPool,
    /// Starts writeback of verified pieces off the controllers.
    pub writeback: crate::writeback::Writeback,
    pub upload: Arc<RateLimiter>,
    pub download: Arc<RateLimiter>,
    /// Live peer connections across all torrents (each peer thread holds a
    /// `peer::Connection` that counts itself here).
    pub connections: Arc<AtomicUsize>,
    /// The port we listen on, announced to trackers.
    pub port: u16,
    /// The one tracker announcer of the session, started by the first
    /// torrent that has a tracker to announce to.
    pub announcer: Mutex<AnnouncerSlot>,
    /// Where the announcer's forwarding thread sends tracker peers (the
    /// controller's peer-source channel).
    pub tracker_peers: Sender<(TorrentId, Vec<SocketAddr>)>,
    /// Generations of announcer keys: a torrent that restarts gets a new
    /// key, so its old `stopped` and its new `started` never collide.
    pub announce_generation: AtomicU64,
}

/// The session announcer's life: a session whose torrents have no
/// trackers never starts its threads.
pub(crate) enum AnnouncerSlot {
    /// Not started yet.
    Idle,
    /// Running: the scheduler, the workers it has started and the
    /// forwarding thread.
    Running(SessionHandle),
    /// Announcing is off, or the session has shut the announcer down:
    /// never started (again).
    Closed,
}

impl SessionShared {
    /// Runs `f` on the session announcer, if it runs.
    pub(crate) fn with_announcer(&self, f: impl FnOnce(&SessionHandle)) {
        if let AnnouncerSlot::Running(a) = &*self.announcer.lock() {
            f(a);
        }
    }

    /// Runs `f` on the session announcer, starting it first if it has not
    /// been yet (a failure to start is logged, and the next torrent with a
    /// tracker tries again). Nothing runs once the session shut it down.
    pub(crate) fn with_announcer_started(&self, f: impl FnOnce(&SessionHandle)) {
        let mut slot = self.announcer.lock();
        if matches!(*slot, AnnouncerSlot::Idle) {
            match spawn_announcer(self, self.tracker_peers.clone()) {
                Ok(handle) => *slot = AnnouncerSlot::Running(handle),
                Err(e) => warn!("cannot start the tracker announcer: {e}"),
            }
        }
        if let AnnouncerSlot::Running(a) = &*slot {
            f(a);
        }
    }

    /// A fresh announcer key for torrent `id`: the low 32 bits name the
    /// torrent (see [`announce_torrent`]), the high ones the generation.
    pub(crate) fn announce_key(&self, id: TorrentId) -> TorrentKey {
        let generation = self.announce_generation.fetch_add(1, Ordering::Relaxed);
        TorrentKey((generation << 32) | (id & 0xffff_ffff))
    }
}

/// The torrent an announcer key names (see [`SessionShared::announce_key`]).
fn announce_torrent(key: TorrentKey) -> TorrentId {
    key.0 & 0xffff_ffff
}

/// A BitTorrent session: owns the listening socket, the file pool, the
/// rate limiters and the torrents. Dropping it shuts everything down.
pub struct Session {
    shared: Arc<SessionShared>,
    registry: Registry,
    torrents: Mutex<Vec<TorrentHandle>>,
    listener: Option<ListenerHandle>,
    /// The controller thread running every torrent, and its inputs.
    controller: Option<JoinHandle<()>>,
    commands: Sender<Ctl>,
    links: crate::torrent::central::Links,
    next_id: AtomicU64,
}

struct ListenerHandle {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl Session {
    /// Opens the listening socket and starts the listener thread.
    ///
    /// # Errors
    /// [`Error::Listen`] when the address cannot be bound (port in use).
    pub fn new(config: SessionConfig) -> Result<Session, Error> {
        let listener = TcpListener::bind(config.listen).map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let threads = if config.hash_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.hash_threads
        };
        let (central, commands, links) = Central::new();
        let hashers = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("bittern-hash-{i}"))
            .build()
            .map_err(|e| Error::Spawn(std::io::Error::other(e)))?;
        let shared = Arc::new(SessionShared {
            peer_id: PeerId::generate(&config.peer_id_prefix),
            files: Arc::new(FilePool::new(config.max_open_files)),
            hashers: Arc::new(hashers),
            verifiers: crate::hashpool::HashPool::new(threads).map_err(Error::Spawn)?,
            writeback: crate::writeback::Writeback::spawn(config.writeback_delay)
                .map_err(Error::Spawn)?,
            upload: Arc::new(RateLimiter::new(config.upload_limit)),
            download: Arc::new(RateLimiter::new(config.download_limit)),
            connections: Arc::default(),
            port: addr.port(),
            announcer: Mutex::new(if config.announce {
                AnnouncerSlot::Idle
            } else {
                AnnouncerSlot::Closed
            }),
            tracker_peers: links.sources.clone(),
            announce_generation: AtomicU64::new(1),
            config,
        });
        let registry: Registry = Arc::default();
        let controller = std::thread::Builder::new()
            .name("bittern-ctl".into())
            .spawn(move || central.run())
            .map_err(Error::Spawn)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (registry, stop, shared) = (registry.clone(), stop.clone(), shared.clone());
            let commands = commands.clone();
            std::thread::Builder::new()
                .name("bittern-listener".into())
                .spawn(move || listen(listener, &registry, &commands, &stop, &shared))
                .map_err(Error::Spawn)?
        };
        info!("listening on {addr}");
        Ok(Session {
            shared,
            registry,
            torrents: Mutex::new(Vec::new()),
            listener: Some(ListenerHandle {
                stop,
                addr,
                thread: Some(thread),
            }),
            controller: Some(controller),
            commands,
            links,
            next_id: AtomicU64::new(1),
        })
    }

    /// The address the session listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .as_ref()
            .map_or(self.shared.config.listen, |l| l.addr)
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// Adds a torrent whose data lives under `save_dir` (single-file
    /// torrents at `save_dir/<name>`, multi-file at `save_dir/<name>/...`).
    /// The torrent first checks what is on disk, then downloads or seeds.
    ///
    /// # Errors
    /// A torrent already in the session, options that do not fit the
    /// metainfo, or storage that cannot be set up.
    pub fn add_torrent(
        &self,
        metainfo: Metainfo,
        save_dir: impl Into<PathBuf>,
        options: TorrentOptions,
    ) -> Result<TorrentHandle, Error> {
        if !options.wanted_files.is_empty()
            && options.wanted_files.len() != metainfo.info.files.len()
        {
            return Err(Error::InvalidOptions(
                "wanted_files must have one flag per file",
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // Reserve the info hash before anything else, under one lock;
        // every failure below gives it back.
        let reserved = register(&self.registry, metainfo.info_hash, id)?;
        let setup = ControllerSetup {
            id,
            metainfo,
            save_dir: save_dir.into(),
            options,
            session: self.shared.clone(),
            registry: self.registry.clone(),
            commands: self.commands.clone(),
            links: self.links.clone(),
        };
        let (controller, handle) = build_controller(setup)?;
        self.commands
            .send(Ctl::Add(Box::new(controller)))
            .map_err(|_| Error::Closed)?;
        reserved.keep();
        let mut torrents = self.torrents.lock();
        self.prune(&mut torrents);
        torrents.push(handle.clone());
        Ok(handle)
    }

    /// The torrents of this session; removed ones are forgotten.
    pub fn torrents(&self) -> Vec<TorrentHandle> {
        let mut torrents = self.torrents.lock();
        self.prune(&mut torrents);
        torrents.clone()
    }

    /// Drops removed torrents (controller ended, no longer routed), so that
    /// a long-lived session adding and removing torrents does not keep each
    /// one's channels and status forever.
    fn prune(&self, torrents: &mut Vec<TorrentHandle>) {
        let registry = self.registry.lock();
        torrents.retain(|h| !h.is_finished() || registry.get(&h.info_hash) == Some(&h.id));
    }

    /// Live peer connections across all torrents.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Stops every torrent gracefully (stopped announces bounded by a short
    /// deadline, resume state saved) and closes the listener.
    pub fn shutdown(&mut self) {
        let began = Instant::now();
        let torrents = std::mem::take(&mut *self.torrents.lock());
        for t in &torrents {
            let _ = self
                .commands
                .send(Ctl::Command(t.id, TorrentCommand::Shutdown));
        }
        for t in &torrents {
            t.wait();
        }
        self.registry.lock().clear();
        // Every torrent has asked for its `stopped` (their stop jobs waited
        // for them); send what is left, in parallel, within what remains of
        // the one stop deadline (never twice the deadline in all).
        let announcer =
            std::mem::replace(&mut *self.shared.announcer.lock(), AnnouncerSlot::Closed);
        if let AnnouncerSlot::Running(a) = announcer {
            let left = self
                .shared
                .config
                .timing
                .stop_announce_deadline
                .saturating_sub(began.elapsed());
            if !a.shutdown(left) {
                debug!("tracker announcer still busy at the stop deadline");
            }
        }
        if let Some(c) = self.controller.take() {
            let _ = self.commands.send(Ctl::Exit);
            let _ = c.join();
        }
        if let Some(mut l) = self.listener.take() {
            l.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept.
            let mut wake = l.addr;
            if wake.ip().is_unspecified() {
                wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            if let Some(t) = l.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the session announcer and the thread that forwards its peers to
/// each torrent's peer source (the controller never waits on trackers).
fn spawn_announcer(
    shared: &SessionShared,
    sources: Sender<(TorrentId, Vec<SocketAddr>)>,
) -> Result<SessionHandle, Error> {
    let mut config = TrackerSessionConfig::new(shared.peer_id, shared.port);
    config.client = shared.config.tracker.clone();
    config.schedule = shared.config.tracker_schedule.clone();
    config.stop_deadline = shared.config.timing.stop_announce_deadline;
    config.thread_name = "bittern-announce".into();
    let handle = SessionAnnouncer::spawn(config).map_err(|e| match e {
        bittern_tracker::Error::Io(e) => Error::Spawn(e),
        other => Error::Spawn(std::io::Error::other(other)),
    })?;
    let events = handle.events().clone();
    std::thread::Builder::new()
        .name("bittern-announce-fwd".into())
        .spawn(move || {
            // Ends when the announcer does (its sender is dropped).
            for event in events {
                if let TrackerEvent::Peers(key, peers) = event {
                    match sources.try_send((announce_torrent(key), peers)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            debug!("peer source queue full; dropping tracker peers");
                        }
                        Err(TrySendError::Disconnected(_)) => break,
                    }
                }
            }
        })
        .map_err(Error::Spawn)?;
    Ok(handle)
}

fn listen(
    listener: TcpListener,
    registry: &Registry,
    commands: &Sender<Ctl>,
    stop: &AtomicBool,
    shared: &Arc<SessionShared>,
) {
    let pending = Arc::new(AtomicUsize::new(0));
    // Handshakes pending per remote host: one host cannot take every slot.
    let per_host: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if pending.load(Ordering::Relaxed) >= MAX_PENDING_HANDSHAKES
            || shared.connections.load(Ordering::Relaxed) >= shared.config.max_connections
        {
            debug!("dropping incoming connection: too many");
            continue;
        }
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let host = peer.ip();
        {
            let mut hosts = per_host.lock();
            let n = hosts.entry(host).or_insert(0);
            // 127.0.0.1 and ::1 are exempt: every peer of a local test or
            // demo swarm comes from there.
            let local =
                host == std::net::Ipv4Addr::LOCALHOST || host == std::net::Ipv6Addr::LOCALHOST;
            if *n >= MAX_PENDING_PER_HOST && !local {
                debug!("{peer}: dropping incoming connection: too many pending from this host");
                continue;
            }
            *n += 1;
        }
        pending.fetch_add(1, Ordering::Relaxed);
        let (registry, pending2, per_host2) = (registry.clone(), pending.clone(), per_host.clone());
        let commands = commands.clone();
        let timeout = shared.config.timing.connect_timeout;
        let spawned = std::thread::Builder::new()
            .name("bittern-handshake".into())
            .spawn(move || {
                route(stream, &registry, &commands, timeout);
                release_slot(&pending2, &per_host2, host);
            });
        if spawned.is_err() {
            release_slot(&pending, &per_host, host);
        }
    }
}

/// Frees a handshake slot taken by `listen`.
fn release_slot(
    pending: &AtomicUsize,
    per_host: &Mutex<HashMap<std::net::IpAddr, usize>>,
    host: std::net::IpAddr,
) {
    pending.fetch_sub(1, Ordering::Relaxed);
    let mut hosts = per_host.lock();
    if let Some(n) = hosts.get_mut(&host) {
        *n -= 1;
        if *n == 0 {
            hosts.remove(&host);
        }
    }
}

/// `read_exact` that gives up at `deadline`, however the bytes trickle in
/// (a read timeout alone restarts with every byte: a peer sending one byte
/// every few seconds would hold a handshake slot for minutes).
pub(crate) fn read_exact_by(
    stream: &mut TcpStream,
    mut buf: &mut [u8],
    deadline: Instant,
) -> std::io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the 68-byte handshake and hands the socket to its torrent.
fn route(mut stream: TcpStream, registry: &Registry, commands: &Sender<Ctl>, timeout: Duration) {
    let peer = stream.peer_addr().ok();
    let mut buf = [0u8; Handshake::LEN];
    if let Err(e) = read_exact_by(&mut stream, &mut buf, Instant::now() + timeout) {
        debug!("{peer:?}: no handshake: {e}");
        return;
    }
    let hs = match Handshake::decode(&buf) {
        Ok(hs) => hs,
        Err(e) => {
            debug!("{peer:?}: bad handshake: {e}");
            return;
        }
    };
    let target = registry.lock().get(&hs.info_hash).copied();
    match target {
        Some(id) => {
            if commands
                .try_send(Ctl::Command(id, TorrentCommand::Incoming(stream, hs)))
                .is_err()
            {
                debug!("{peer:?}: torrent busy, dropping connection");
            }
        }
        None => debug!(
            "{peer:?}: handshake for unknown torrent {}",
            hs.info_hash.to_hex()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_entries_belong_to_their_torrent() {
        let registry: Registry = Arc::default();
        let hash = InfoHash([7; 20]);
        let (a, b) = (1, 2);
        // A torrent that failed to start gives its reservation back.
        drop(register(&registry, hash, a).unwrap());
        assert!(registry.lock().is_empty());
        register(&registry, hash, a).unwrap().keep();
        assert!(matches!(
            register(&registry, hash, b),
            Err(Error::DuplicateTorrent(_))
        ));
        // Another torrent's id (a stale handle) removes nothing.
        unregister(&registry, hash, b);
        assert_eq!(registry.lock().get(&hash), Some(&a));
        unregister(&registry, hash, a);
        assert!(registry.lock().is_empty());
    }
}
