//! The session (mainline MultiTorrent): one listening port routed by info
//! hash (SingleportListener), one FilePool, global rate limiters and
//! connection limit, and the torrents.

use std::collections::HashMap;
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
use bittern_wire::mse::ObfuscatedHashes;
use bittern_wire::{InfoHash, Metainfo, PeerId};
use crossbeam_channel::{Sender, TrySendError};
use log::{debug, info, warn};
use parking_lot::Mutex;

use crate::config::{Encryption, SessionConfig, TorrentOptions};
use crate::error::Error;
use crate::ratelimit::RateLimiter;
use crate::torrent::{
    build_controller, Central, ControllerSetup, Ctl, TorrentCommand, TorrentHandle, TorrentId,
};
use crate::transport::Socket;

/// Torrents by info hash, for the listener's routing.
pub(crate) type Registry = Arc<Mutex<Routes>>;

/// The listener's routing table: torrents by info hash, and by
/// `HASH('req2', info_hash)` for MSE handshakes, which name their torrent
/// only that way.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    ids: HashMap<InfoHash, TorrentId>,
    obfuscated: ObfuscatedHashes,
}

impl Routes {
    /// The torrent with this info hash.
    pub(crate) fn get(&self, info_hash: &InfoHash) -> Option<&TorrentId> {
        self.ids.get(info_hash)
    }

    /// The info hash whose `HASH('req2', ·)` is `obfuscated`.
    fn find_obfuscated(&self, obfuscated: &[u8; 20]) -> Option<InfoHash> {
        self.obfuscated.find(obfuscated)
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.obfuscated = ObfuscatedHashes::new();
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.obfuscated.is_empty()
    }
}

/// Registers a torrent's id under its info hash, in one step with the
/// check that no other torrent has it. The entry is given back when the
/// returned reservation is dropped without [`Reservation::keep`] (the
/// torrent failed to start).
pub(crate) fn register(
    registry: &Registry,
    info_hash: InfoHash,
    id: TorrentId,
) -> Result<Reservation<'_>, Error> {
    {
        let mut r = registry.lock();
        if r.ids.contains_key(&info_hash) {
            return Err(Error::DuplicateTorrent(info_hash.to_hex()));
        }
        r.ids.insert(info_hash, id);
        r.obfuscated.insert(info_hash);
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
    if r.ids.get(&info_hash) == Some(&id) {
        r.ids.remove(&info_hash);
        r.obfuscated.remove(&info_hash);
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
    /// The one tracker announcer of the session (`None` when announcing
    /// is off, or once the session has shut it down).
    pub announcer: Mutex<Option<SessionHandle>>,
    /// Generations of announcer keys: a torrent that restarts gets a new
    /// key, so its old `stopped` and its new `started` never collide.
    pub announce_generation: AtomicU64,
    /// The session's DHT node and its schedule (`None`: DHT off).
    pub dht: Option<Arc<crate::dht::SessionDht>>,
    /// How peer connections are dialled (uTP, TCP).
    pub dial: crate::peer::Dial,
}

impl SessionShared {
    /// Runs `f` on the session announcer, if it runs.
    pub(crate) fn with_announcer(&self, f: impl FnOnce(&SessionHandle)) {
        if let Some(a) = self.announcer.lock().as_ref() {
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
    /// The UDP socket on the listen port (uTP and DHT), when either is on.
    udp: Option<bittern_utp::UtpSocket>,
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
    /// Accepts uTP connections (when uTP is on).
    utp_thread: Option<JoinHandle<()>>,
}

impl Session {
    /// Opens the listening socket and starts the listener thread.
    ///
    /// # Errors
    /// [`Error::Listen`] when the address cannot be bound (port in use).
    pub fn new(config: SessionConfig) -> Result<Session, Error> {
        let (listener, udp) = bind_listen(&config)?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
        let threads = if config.hash_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.hash_threads
        };
        let hashers = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("bittern-hash-{i}"))
            .build()
            .map_err(|e| Error::Spawn(std::io::Error::other(e)))?;
        let (central, commands, links) = Central::new();
        let dht = match (&config.dht, &udp) {
            (Some(settings), Some((socket, slot))) => {
                info!("dht node on udp {}", socket.local_addr());
                Some(crate::dht::SessionDht::start(
                    settings.clone(),
                    socket.udp().clone(),
                    slot,
                    addr.port(),
                    links.sources.clone(),
                )?)
            }
            _ => None,
        };
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
            announcer: Mutex::new(None),
            announce_generation: AtomicU64::new(1),
            dht,
            dial: crate::peer::Dial {
                utp: match &udp {
                    Some((socket, _)) if config.utp => Some(socket.multiplexer().clone()),
                    _ => None,
                },
                utp_timeout: config.utp_connect_timeout,
                tcp: config.tcp,
            },
            config,
        });
        let registry: Registry = Arc::default();
        let udp = udp.map(|(socket, _)| socket);
        if shared.config.announce {
            let handle = spawn_announcer(&shared, links.sources.clone())?;
            *shared.announcer.lock() = Some(handle);
        }
        let controller = std::thread::Builder::new()
            .name("bittern-ctl".into())
            .spawn(move || central.run())
            .map_err(Error::Spawn)?;
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Gate {
            pending: Arc::default(),
            per_host: Arc::default(),
            registry: registry.clone(),
            commands: commands.clone(),
            shared: shared.clone(),
        };
        let utp_thread = match &shared.dial.utp {
            Some(mux) => {
                let (mux, gate, stop) = (mux.clone(), gate.clone(), stop.clone());
                Some(
                    std::thread::Builder::new()
                        .name("bittern-utp-accept".into())
                        .spawn(move || accept_utp(&mux, &gate, &stop))
                        .map_err(Error::Spawn)?,
                )
            }
            None => None,
        };
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bittern-listener".into())
                .spawn(move || listen(listener, &gate, &stop))
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
                utp_thread,
            }),
            udp,
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

    /// The address of the session's UDP socket (uTP and DHT), when it has one.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().map(bittern_utp::UtpSocket::local_addr)
    }

    /// Nodes in the DHT's routing table (`None`: DHT off).
    pub fn dht_nodes(&self) -> Option<usize> {
        self.shared.dht.as_ref().map(|d| d.node_count())
    }

    /// Our DHT node id (`None`: DHT off).
    pub fn dht_id(&self) -> Option<bittern_dht::NodeId> {
        self.shared.dht.as_ref().map(|d| d.id())
    }

    /// The addresses in the DHT's routing table (empty with the DHT off).
    pub fn dht_contacts(&self) -> Vec<SocketAddr> {
        self.shared
            .dht
            .as_ref()
            .map_or_else(Vec::new, |d| d.contacts())
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
        let announcer = self.shared.announcer.lock().take();
        if let Some(a) = announcer {
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
        if let Some(d) = &self.shared.dht {
            d.shutdown();
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
            if let Some(t) = l.utp_thread.take() {
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

/// Binds the TCP listener and, when uTP or the DHT is on, the UDP socket
/// on the same address and port. With port 0 the TCP port is picked first;
/// if its UDP twin is taken, both are tried again (a few times).
#[allow(clippy::type_complexity)]
fn bind_listen(
    config: &SessionConfig,
) -> Result<
    (
        TcpListener,
        Option<(bittern_utp::UtpSocket, crate::udp::DhtSlot)>,
    ),
    Error,
> {
    let listen_err = |source| Error::Listen {
        addr: config.listen,
        source,
    };
    let tries = if config.listen.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let listener = TcpListener::bind(config.listen).map_err(listen_err)?;
        if !config.wants_udp() {
            return Ok((listener, None));
        }
        let addr = listener.local_addr().map_err(listen_err)?;
        match crate::udp::bind(addr, config.utp) {
            Ok(udp) => return Ok((listener, Some(udp))),
            Err(e) => last = Some(e),
        }
    }
    Err(listen_err(
        last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()),
    ))
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

fn listen(listener: TcpListener, gate: &Gate, stop: &AtomicBool) {
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
        if !gate.shared.config.tcp {
            debug!("dropping incoming tcp connection: tcp is off");
            continue;
        }
        gate.admit(Socket::Tcp(stream));
    }
}

/// Hands incoming uTP connections of the session's multiplexer to the
/// same gate as TCP ones, until `stop`.
fn accept_utp(mux: &bittern_utp::Multiplexer, gate: &Gate, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match mux.accept_timeout(Duration::from_millis(200)) {
            Ok(stream) => gate.admit(Socket::Utp(stream)),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => {
                debug!("utp accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Admission of incoming connections, TCP and uTP alike: bounded pending
/// handshakes in all and per host, then a short-lived thread reads the
/// handshake and routes the connection to its torrent.
#[derive(Clone)]
struct Gate {
    pending: Arc<AtomicUsize>,
    /// Handshakes pending per remote host: one host cannot take every slot.
    per_host: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
    registry: Registry,
    commands: Sender<Ctl>,
    shared: Arc<SessionShared>,
}

impl Gate {
    fn admit(&self, socket: Socket) {
        let shared = &self.shared;
        if self.pending.load(Ordering::Relaxed) >= MAX_PENDING_HANDSHAKES
            || shared.connections.load(Ordering::Relaxed) >= shared.config.max_connections
        {
            debug!("dropping incoming connection: too many");
            return;
        }
        let Ok(peer) = socket.peer_addr() else {
            return;
        };
        let host = peer.ip();
        {
            let mut hosts = self.per_host.lock();
            let n = hosts.entry(host).or_insert(0);
            // 127.0.0.1 and ::1 are exempt: every peer of a local test or
            // demo swarm comes from there.
            let local =
                host == std::net::Ipv4Addr::LOCALHOST || host == std::net::Ipv6Addr::LOCALHOST;
            if *n >= MAX_PENDING_PER_HOST && !local {
                debug!("{peer}: dropping incoming connection: too many pending from this host");
                return;
            }
            *n += 1;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let gate = self.clone();
        let timeout = shared.config.timing.connect_timeout;
        let policy = shared.config.encryption;
        let spawned = std::thread::Builder::new()
            .name("bittern-handshake".into())
            .spawn(move || {
                route(socket, &gate.registry, &gate.commands, timeout, policy);
                release_slot(&gate.pending, &gate.per_host, host);
            });
        if spawned.is_err() {
            release_slot(&self.pending, &self.per_host, host);
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

/// Reads the handshake (plain or MSE, as `policy` allows) and hands the
/// connection to its torrent.
fn route(
    socket: Socket,
    registry: &Registry,
    commands: &Sender<Ctl>,
    timeout: Duration,
    policy: Encryption,
) {
    let peer = socket.peer_addr().ok();
    let lookup = |h: &[u8; 20]| registry.lock().find_obfuscated(h);
    let deadline = Instant::now() + timeout;
    let (stream, hs) = match crate::handshake::accept(socket, policy, lookup, deadline) {
        Ok(x) => x,
        Err(e) => {
            debug!("{peer:?}: incoming connection dropped: {e}");
            return;
        }
    };
    let target = registry.lock().get(&hs.info_hash).copied();
    match target {
        Some(id) => {
            if commands
                .try_send(Ctl::Command(
                    id,
                    TorrentCommand::Incoming(Box::new(stream), hs),
                ))
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
