//! The session (mainline MultiTorrent): one listening port routed by info
//! hash (SingleportListener), one FilePool, global rate limiters and
//! connection limit, and the torrents.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use bittern_storage::FilePool;
use bittern_tracker::{
    SessionAnnouncer, SessionConfig as TrackerSessionConfig, SessionHandle, TorrentKey,
    TrackerEvent,
};
use bittern_wire::mse::ObfuscatedHashes;
use bittern_wire::{InfoHash, Magnet, MagnetPeer, Metainfo, PeerId};
use crossbeam_channel::{Sender, TrySendError};
use log::{debug, info, warn};
use parking_lot::Mutex;

mod discovery;
mod filter;

pub use filter::Incoming;

use crate::config::{SessionConfig, TorrentOptions};
use crate::error::Error;
use crate::listener::{Listener, Pending};
use crate::ratelimit::RateLimiter;
use crate::status::{Events, EVENT_QUEUE};
use crate::torrent::{
    build_controller, Central, ControllerSetup, Ctl, FetchSetup, MetadataFetch, PeerSource,
    Published, TorrentCommand, TorrentHandle, TorrentId,
};

/// Torrents by info hash, for the listener's routing.
pub(crate) type Registry = Arc<Mutex<Routes>>;

/// Counts of what a [`Session`] holds for its torrents
/// ([`Session::held`]); a session whose torrents were all removed holds
/// none of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Held {
    /// Handles on the session's list ([`Session::torrents`] before pruning).
    pub listed: usize,
    /// Info hashes the listener routes (v2 aliases included).
    pub routed: usize,
    /// `HASH('req2', ·)` entries for MSE handshakes.
    pub obfuscated: usize,
    /// Torrents and metadata fetches the controller thread runs.
    pub running: usize,
    /// Torrents on the DHT nodes' announce schedules.
    pub dht_scheduled: usize,
    /// Live peer connections.
    pub connections: usize,
}

/// The session's torrents, in the order they were added (see
/// [`Session::torrents`]).
pub(crate) type Listed = Mutex<Vec<TorrentHandle>>;

/// Takes torrent `id` off the session's list (its handle was removed),
/// and gives back the list's room once it is mostly empty.
pub(crate) fn unlist(listed: &Listed, id: TorrentId) {
    let mut l = listed.lock();
    l.retain(|h| h.id != id);
    crate::shrink::vec(&mut l);
}

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
    pub(crate) fn find_obfuscated(&self, obfuscated: &[u8; 20]) -> Option<InfoHash> {
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
/// Its other names ([`add_alias`]) go with it.
pub(crate) fn unregister(registry: &Registry, info_hash: InfoHash, id: TorrentId) {
    let mut r = registry.lock();
    if r.ids.get(&info_hash) == Some(&id) {
        let names: Vec<InfoHash> = r
            .ids
            .iter()
            .filter(|&(_, v)| *v == id)
            .map(|(k, _)| *k)
            .collect();
        for h in names {
            r.ids.remove(&h);
            r.obfuscated.remove(&h);
        }
        crate::shrink::map(&mut r.ids);
    }
}

/// Routes `alias` (a hybrid torrent's truncated v2 hash, BEP 52) to torrent
/// `id` too, unless another torrent has that name; false then.
pub(crate) fn add_alias(registry: &Registry, alias: InfoHash, id: TorrentId) -> bool {
    let mut r = registry.lock();
    if r.ids.contains_key(&alias) {
        return false;
    }
    r.ids.insert(alias, id);
    r.obfuscated.insert(alias);
    true
}

/// Our own addresses learnt from peers' `yourip` kept at once (one per
/// interface or NAT a peer may see us through).
const MAX_EXTERNAL_IPS: usize = 8;

/// What every torrent of a session shares.
pub(crate) struct SessionShared {
    pub config: SessionConfig,
    pub peer_id: PeerId,
    pub files: Arc<FilePool>,
    pub hashers: Arc<rayon::ThreadPool>,
    /// Verifies completed pieces by reading them back (sleeping workers).
    pub verifiers: crate::hashpool::HashPool,
    /// Writes resume state (periodic saves, a stop's last save).
    pub savers: crate::hashpool::SavePool,
    /// The resume-state folders in use, one copy each for all the torrents
    /// that save there (see [`SessionShared::resume_dir`]).
    pub resume_dirs: Mutex<HashMap<PathBuf, std::sync::Weak<Path>>>,
    /// Starts writeback of verified pieces off the controllers.
    pub writeback: crate::writeback::Writeback,
    pub upload: Arc<RateLimiter>,
    pub download: Arc<RateLimiter>,
    /// Live peer connections across all torrents (each peer thread holds a
    /// `peer::Connection` that counts itself here).
    pub connections: Arc<AtomicUsize>,
    /// The port we listen on, announced to trackers.
    pub port: u16,
    /// Every address we listen on (on `port`): a candidate that is one of
    /// these is ourselves.
    pub listen_addrs: Vec<SocketAddr>,
    /// Addresses peers said they see us at (`yourip`, BEP 10), newest last.
    pub external_ips: Mutex<Vec<std::net::IpAddr>>,
    /// The one tracker announcer of the session, started by the first
    /// torrent that has a tracker to announce to.
    pub announcer: Mutex<AnnouncerSlot>,
    /// Where the announcer's forwarding thread sends tracker peers (the
    /// controller's peer-source channel).
    pub tracker_peers: Sender<(TorrentId, Vec<SocketAddr>)>,
    /// Generations of announcer keys: a torrent that restarts gets a new
    /// key, so its old `stopped` and its new `started` never collide.
    pub announce_generation: AtomicU64,
    /// Local Service Discovery, when on and its socket could join the
    /// group (`None` once the session has shut it down).
    pub lsd: Mutex<Option<crate::lsd::Lsd>>,
    /// Our address as the last peer that told us (`yourip`, BEP 10) saw
    /// it.
    pub external_ip: Mutex<Option<std::net::IpAddr>>,
    /// The session's DHT node and its schedule (`None`: DHT off).
    pub dht: Option<Arc<crate::dht::SessionDht>>,
    /// How peer connections are dialled (uTP, TCP).
    pub dial: crate::peer::Dial,
    /// The encryption policy of new connections: `config.encryption`
    /// until [`Session::set_encryption`] changes it.
    pub encryption: Mutex<crate::config::Encryption>,
    /// Peer exchange on (`config.pex` until [`Session::set_pex`]).
    pub pex: std::sync::atomic::AtomicBool,
    /// The blocklist: peers in it are never dialled nor accepted (see
    /// [`Session::set_ip_filter`]). Swapped whole; readers clone the Arc.
    pub ip_filter: Mutex<Arc<crate::ipfilter::IpFilter>>,
    /// Changes of `ip_filter` so far.
    pub ip_filter_generation: AtomicU64,
    /// The last incoming connection whose handshake named one of our
    /// torrents (see [`Session::last_incoming`]).
    pub last_incoming: Mutex<Option<Incoming>>,
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
    /// `dir`, shared with every torrent that keeps its resume state there
    /// (`<save dir>/.bittern`): 10,000 torrents in one folder hold one copy
    /// of its path, not one each.
    pub(crate) fn resume_dir(&self, dir: PathBuf) -> Arc<Path> {
        let mut dirs = self.resume_dirs.lock();
        if let Some(d) = dirs.get(&dir).and_then(std::sync::Weak::upgrade) {
            return d;
        }
        if dirs.len() >= 64 {
            dirs.retain(|_, d| d.strong_count() > 0);
        }
        let shared: Arc<Path> = Arc::from(dir.as_path());
        dirs.insert(dir, Arc::downgrade(&shared));
        shared
    }

    /// The encryption policy for a connection made or accepted now.
    pub(crate) fn encryption(&self) -> crate::config::Encryption {
        *self.encryption.lock()
    }

    /// Whether peer exchange is on for the session now.
    pub(crate) fn pex(&self) -> bool {
        self.pex.load(Ordering::Relaxed)
    }

    /// Whether `addr` is our own listener: on our port at a loopback
    /// address, at one of the addresses we listen on, or at an address
    /// peers told us they see us at (`yourip`).
    pub(crate) fn is_own_addr(&self, addr: SocketAddr) -> bool {
        addr.port() == self.port
            && (addr.ip().is_loopback()
                || self.listen_addrs.iter().any(|l| l.ip() == addr.ip())
                || self.external_ips.lock().contains(&addr.ip()))
    }

    /// Our own address of each family for `ipv4` / `ipv6` in extension
    /// handshakes (BEP 10): the newest a peer told us it sees us at
    /// (`yourip`), else an address we listen on that is not unspecified;
    /// `None` for a family we know nothing of.
    pub(crate) fn own_ips(&self) -> (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>) {
        use std::net::IpAddr;
        let learnt: Vec<IpAddr> = self.external_ips.lock().iter().rev().copied().collect();
        let listening = self
            .listen_addrs
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified());
        let all: Vec<IpAddr> = learnt.into_iter().chain(listening).collect();
        let v4 = all.iter().find_map(|ip| match ip {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        });
        let v6 = all.iter().find_map(|ip| match ip {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => Some(*a),
            _ => None,
        });
        (v4, v6)
    }

    /// Records an address a peer says it sees us at (its `yourip`): a
    /// candidate there on our port is ourselves. Bounded: the newest
    /// [`MAX_EXTERNAL_IPS`] are kept.
    /// `voter` is the peer's address; the DHT counts it as a vote for
    /// our external address (BEP 42 node id).
    pub(crate) fn learn_external_ip(&self, ip: std::net::IpAddr, voter: std::net::IpAddr) {
        if ip.is_unspecified() || ip.is_multicast() {
            return;
        }
        if let Some(d) = &self.dht {
            d.vote_external_ip(voter, ip);
        }
        *self.external_ip.lock() = Some(ip);
        let mut ips = self.external_ips.lock();
        if !ips.contains(&ip) {
            if ips.len() >= MAX_EXTERNAL_IPS {
                ips.remove(0);
            }
            debug!("a peer sees us at {ip}");
            ips.push(ip);
        }
    }

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

    /// Tells LSD (if it runs) to announce a torrent, or to stop.
    pub(crate) fn lsd_send(&self, cmd: crate::lsd::LsdCommand) {
        if let Some(l) = self.lsd.lock().as_ref() {
            if let Err(e) = l.send(cmd) {
                debug!("lsd command dropped: {e}");
            }
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
    /// Shared (weakly) with the handles, so that a removed one leaves it.
    torrents: Arc<Listed>,
    /// One listening socket per address, all on one port (see `listener`).
    listeners: Vec<Listener>,
    /// The UDP sockets on the listen port (uTP, and the DHT on the first),
    /// when either is on.
    udp: Vec<bittern_utp::UtpSocket>,
    /// One thread per UDP socket admitting incoming uTP connections.
    utp_acceptors: Vec<crate::listener::UtpAcceptor>,
    /// The controller thread running every torrent, and its inputs.
    controller: Option<JoinHandle<()>>,
    commands: Sender<Ctl>,
    links: crate::torrent::central::Links,
    next_id: AtomicU64,
    /// Torrents and metadata fetches on the controller thread.
    running: Arc<AtomicUsize>,
}

impl Session {
    /// Opens the listening socket and starts the listener thread.
    ///
    /// # Errors
    /// [`Error::Listen`] when the address cannot be bound (port in use).
    pub fn new(config: SessionConfig) -> Result<Session, Error> {
        let crate::udp::Bound {
            tcp: sockets,
            udp,
            dht: dht_slot,
        } = crate::udp::bind_all(&config)?;
        let addrs: Vec<SocketAddr> = sockets
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<_, _>>()
            .map_err(|source| Error::Listen {
                addr: config.listen,
                source,
            })?;
        let port = addrs.first().map_or(config.listen.port(), SocketAddr::port);
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
        let running = Arc::new(AtomicUsize::new(0));
        let (central, commands, links) = Central::new(running.clone());
        let dht = match &config.dht {
            Some(settings) => {
                // The first UDP socket of each address family runs a node.
                let mut picked: Vec<(Arc<std::net::UdpSocket>, crate::udp::DhtSlot)> = Vec::new();
                for (u, slot) in udp.iter().zip(&dht_slot) {
                    let v6 = u.local_addr().is_ipv6();
                    if picked
                        .iter()
                        .all(|(p, _)| p.local_addr().is_ok_and(|a| a.is_ipv6() != v6))
                    {
                        info!("dht node on udp {}", u.local_addr());
                        picked.push((u.udp().clone(), slot.clone()));
                    }
                }
                if picked.is_empty() {
                    None
                } else {
                    Some(Arc::new(crate::dht::SessionDht::start(
                        settings,
                        picked,
                        port,
                        &links.sources,
                    )?))
                }
            }
            None => None,
        };
        let dial = crate::peer::Dial {
            utp: if config.utp {
                udp.iter()
                    .map(|u| (u.local_addr(), u.multiplexer().clone()))
                    .collect()
            } else {
                Vec::new()
            },
            utp_timeout: config.utp_connect_timeout,
            tcp: config.tcp,
            utp_first: false,
        };
        let shared = Arc::new(SessionShared {
            peer_id: PeerId::generate(&config.peer_id_prefix),
            files: Arc::new(FilePool::new(config.max_open_files)),
            hashers: Arc::new(hashers),
            verifiers: crate::hashpool::HashPool::new(threads).map_err(Error::Spawn)?,
            savers: crate::hashpool::SavePool::default(),
            resume_dirs: Mutex::new(HashMap::new()),
            writeback: crate::writeback::Writeback::spawn(config.writeback_delay)
                .map_err(Error::Spawn)?,
            upload: Arc::new(RateLimiter::new(config.upload_limit)),
            download: Arc::new(RateLimiter::new(config.download_limit)),
            connections: Arc::default(),
            port,
            listen_addrs: addrs.clone(),
            external_ips: Mutex::new(Vec::new()),
            announcer: Mutex::new(if config.announce {
                AnnouncerSlot::Idle
            } else {
                AnnouncerSlot::Closed
            }),
            tracker_peers: links.sources.clone(),
            announce_generation: AtomicU64::new(1),
            lsd: Mutex::new(None),
            external_ip: Mutex::new(None),
            dht,
            dial,
            encryption: Mutex::new(config.encryption),
            pex: std::sync::atomic::AtomicBool::new(config.pex),
            ip_filter: Mutex::default(),
            ip_filter_generation: AtomicU64::new(0),
            last_incoming: Mutex::new(None),
            config,
        });
        let registry: Registry = Arc::default();
        if let Some(cfg) = &shared.config.lsd {
            // The IPv4 group always; the IPv6 one when we listen on IPv6.
            let v4 = addrs
                .iter()
                .copied()
                .find(SocketAddr::is_ipv4)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port)));
            let v6 = addrs.iter().copied().find(SocketAddr::is_ipv6);
            let lsd = discovery::spawn_lsd(cfg, (v4, v6), registry.clone(), links.sources.clone());
            *shared.lsd.lock() = lsd;
        }
        let controller = std::thread::Builder::new()
            .name("bittern-ctl".into())
            .spawn(move || central.run())
            .map_err(Error::Spawn)?;
        let pending = Pending::default();
        let mut listeners = Vec::with_capacity(sockets.len());
        for socket in sockets {
            listeners.push(Listener::spawn(
                socket,
                registry.clone(),
                commands.clone(),
                shared.clone(),
                pending.clone(),
            )?);
        }
        let mut utp_acceptors = Vec::new();
        for (_, mux) in &shared.dial.utp {
            utp_acceptors.push(crate::listener::UtpAcceptor::spawn(
                mux.clone(),
                registry.clone(),
                commands.clone(),
                shared.clone(),
                pending.clone(),
            )?);
        }
        for addr in &addrs {
            info!("listening on {addr}");
        }
        Ok(Session {
            shared,
            registry,
            torrents: Arc::default(),
            listeners,
            udp,
            utp_acceptors,
            controller: Some(controller),
            commands,
            links,
            next_id: AtomicU64::new(1),
            running,
        })
    }

    /// The address the session listens on (with the real port when 0 was
    /// asked): the first of [`local_addrs`](Self::local_addrs), the one
    /// `SessionConfig::listen` named.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .listen_addrs
            .first()
            .copied()
            .unwrap_or(self.shared.config.listen)
    }

    /// Every address the session listens on, all on one port: `listen`,
    /// then the other family's when dual stack applies, then
    /// `listen_also`.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.shared.listen_addrs.clone()
    }

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.shared.peer_id
    }

    /// The address of the session's first UDP socket (uTP and the DHT),
    /// when it has one.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.first().map(bittern_utp::UtpSocket::local_addr)
    }

    /// Nodes in the DHT's routing table (`None`: DHT off).
    pub fn dht_nodes(&self) -> Option<usize> {
        self.shared.dht.as_ref().map(|d| d.node_count())
    }

    /// Our (first) DHT node's id (`None`: DHT off).
    pub fn dht_id(&self) -> Option<bittern_dht::NodeId> {
        self.shared.dht.as_ref().and_then(|d| d.id())
    }

    /// The external addresses the DHT nodes settled on (from the `ip` key
    /// of replies and peers' `yourip`; empty with the DHT off).
    pub fn dht_external_ips(&self) -> Vec<std::net::IpAddr> {
        self.shared
            .dht
            .as_ref()
            .map_or_else(Vec::new, |d| d.external_ips())
    }

    /// Each DHT node's id and whether it is the IPv6 node (one node per
    /// address family the session listens on; empty with the DHT off).
    pub fn dht_ids(&self) -> Vec<(bittern_dht::NodeId, bool)> {
        self.shared.dht.as_ref().map_or_else(Vec::new, |d| d.ids())
    }

    /// The addresses of the session's UDP sockets (uTP, and the DHT on the
    /// first of each address family).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .map(bittern_utp::UtpSocket::local_addr)
            .collect()
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
        for alias in metainfo.wire_hashes().into_iter().skip(1) {
            if !add_alias(&self.registry, alias, id) {
                warn!("{}: v2 info hash taken by another torrent", alias.to_hex());
            }
        }
        let setup = ControllerSetup {
            id,
            metainfo,
            save_dir: save_dir.into(),
            options,
            session: self.shared.clone(),
            registry: self.registry.clone(),
            commands: self.commands.clone(),
            links: self.links.clone(),
            reuse: None,
        };
        let (controller, mut handle) = build_controller(setup)?;
        handle.listed = Arc::downgrade(&self.torrents);
        self.commands
            .send(Ctl::Add(Box::new(controller)))
            .map_err(|_| Error::Closed)?;
        reserved.keep();
        let mut torrents = self.torrents.lock();
        self.prune(&mut torrents);
        torrents.push(handle.clone());
        Ok(handle)
    }

    /// Adds a torrent known only by a magnet link (BEP 9). It first fetches
    /// the info dictionary from peers (state
    /// [`FetchingMetadata`](crate::TorrentState::FetchingMetadata)): those
    /// of the link's `x.pe` (addresses; `host:port` peers are resolved on a
    /// thread of their own and offered like [`TorrentHandle::add_peers`]
    /// once known, so a slow name lookup never holds this call), those its
    /// `tr=` trackers return, and those given later with
    /// [`TorrentHandle::add_peers`]. Once the metadata has passed the info
    /// hash it is saved as `<info hash>.torrent` beside the resume state
    /// (see [`TorrentOptions::resume_file`]) and the torrent carries on
    /// exactly as one added with [`add_torrent`](Self::add_torrent), under
    /// the same handle. If that `.torrent` exists already (a restart), no
    /// fetch happens.
    ///
    /// # Errors
    /// A file selection (it needs the metadata), a torrent already in the
    /// session. A `btmh`-only link (BEP 52, v2) is fetched under its
    /// truncated v2 hash, the piece layers by hash request after the info
    /// dictionary; a hybrid link (`btih` and `btmh`) is routed by both.
    pub fn add_magnet(
        &self,
        magnet: &Magnet,
        save_dir: impl Into<PathBuf>,
        mut options: TorrentOptions,
    ) -> Result<TorrentHandle, Error> {
        // v1 (`btih`), or for a v2-only link the truncated v2 hash (BEP 52)
        let info_hash = magnet.swarm_hash();
        if !options.wanted_files.is_empty() {
            return Err(Error::InvalidOptions(
                "a file selection needs the metadata; a magnet link has none yet",
            ));
        }
        let save_dir = save_dir.into();
        let torrent_file = magnet_torrent_file(&save_dir, &options, info_hash);
        let mut hosts = Vec::new();
        for p in magnet.peer_addrs() {
            match p {
                MagnetPeer::Addr(a) => {
                    if !options.peers.contains(&a) {
                        options.peers.push(a);
                    }
                }
                MagnetPeer::Host { host, port } => hosts.push((host, port)),
            }
        }
        let trackers: Vec<Vec<String>> = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
        // A restart: the metadata was fetched and saved before.
        if let Ok(bytes) = std::fs::read(&torrent_file) {
            match Metainfo::from_bytes_without_layers(&bytes) {
                Ok(meta) if meta.info_hash == info_hash => {
                    info!(
                        "{}: metadata from {}",
                        &info_hash.to_hex()[..8],
                        torrent_file.display()
                    );
                    let handle = self.add_torrent(meta, save_dir, options)?;
                    *handle.published.torrent_file.lock() = Some(Arc::from(bytes));
                    resolve_hosts(&handle, hosts);
                    return Ok(handle);
                }
                _ => warn!(
                    "{}: not the torrent's metadata, fetching again",
                    torrent_file.display()
                ),
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let reserved = register(&self.registry, info_hash, id)?;
        if let (Some(_), Some(v2)) = (magnet.info_hash, magnet.info_hash_v2) {
            // a hybrid: peers may name it by its truncated v2 hash too
            let alias = InfoHash(v2[..20].try_into().unwrap_or_default());
            if !add_alias(&self.registry, alias, id) {
                warn!("{}: v2 info hash taken by another torrent", alias.to_hex());
            }
        }
        let name = magnet
            .display_name
            .clone()
            .unwrap_or_else(|| info_hash.to_hex());
        let published = Published::new(MetadataFetch::initial_status(name), &options);
        // The queue the torrent's controller takes over with the handle.
        let events = Arc::new(Events::new(EVENT_QUEUE));
        let fetch = MetadataFetch::new(FetchSetup {
            id,
            info_hash,
            info_hash_v2: magnet.info_hash_v2,
            trackers,
            web_seeds: magnet.web_seeds.clone(),
            torrent_file,
            save_dir,
            options,
            session: self.shared.clone(),
            registry: self.registry.clone(),
            commands: self.commands.clone(),
            links: self.links.clone(),
            published: published.clone(),
            events: Arc::clone(&events),
        });
        let handle = TorrentHandle {
            info_hash,
            id,
            commands: self.commands.clone(),
            source: PeerSource::new(id, self.links.sources.clone()),
            published,
            events,
            registry: self.registry.clone(),
            session: Arc::downgrade(&self.shared),
            listed: Arc::downgrade(&self.torrents),
        };
        self.commands
            .send(Ctl::Fetch(Box::new(fetch)))
            .map_err(|_| Error::Closed)?;
        reserved.keep();
        let mut torrents = self.torrents.lock();
        self.prune(&mut torrents);
        torrents.push(handle.clone());
        resolve_hosts(&handle, hosts);
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

    /// Changes the session-wide rate limits (bytes per second, `None` =
    /// unlimited) while torrents run; every peer thread takes tokens from
    /// these limiters besides its torrent's own.
    pub fn set_limits(&self, download: Option<u64>, upload: Option<u64>) {
        self.shared.download.set_rate(download);
        self.shared.upload.set_rate(upload);
    }

    /// The session-wide rate limits (download, upload), bytes per second.
    pub fn limits(&self) -> (Option<u64>, Option<u64>) {
        (self.shared.download.rate(), self.shared.upload.rate())
    }

    /// Changes the encryption policy while torrents run. It applies to
    /// every connection accepted or dialled from now on (incoming
    /// handshakes, dials, metadata fetches, and whether our extension
    /// handshake says `e`); connections already up keep the policy they
    /// were made under, as Transmission's do.
    pub fn set_encryption(&self, policy: crate::config::Encryption) {
        *self.shared.encryption.lock() = policy;
    }

    /// The encryption policy in effect.
    pub fn encryption(&self) -> crate::config::Encryption {
        self.shared.encryption()
    }

    /// Turns peer exchange on or off while torrents run. Off: no
    /// `ut_pex` message is sent or taken from now on, and extension
    /// handshakes sent from now on leave `ut_pex` out. On: handshakes
    /// sent from now on offer it again, and peers whose extension
    /// handshake came while it was on exchange peers again (those that
    /// connected while it was off do not, until they reconnect). Private
    /// torrents never use it either way.
    pub fn set_pex(&self, on: bool) {
        self.shared.pex.store(on, Ordering::Relaxed);
    }

    /// Whether peer exchange is on.
    pub fn pex(&self) -> bool {
        self.shared.pex()
    }

    /// What the session holds for its torrents: every count is back at
    /// zero once the last torrent was removed and its connections ended
    /// (the controller thread's count follows within a loop turn).
    pub fn held(&self) -> Held {
        let routes = self.registry.lock();
        Held {
            listed: self.torrents.lock().len(),
            routed: routes.ids.len(),
            obfuscated: routes.obfuscated.len(),
            running: self.running.load(Ordering::Relaxed),
            dht_scheduled: self.shared.dht.as_ref().map_or(0, |d| d.scheduled()),
            connections: self.connections(),
        }
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
        let lsd = self.shared.lsd.lock().take();
        if let Some(l) = lsd {
            l.join();
        }
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
        if let Some(d) = &self.shared.dht {
            d.shutdown();
        }
        for mut l in std::mem::take(&mut self.listeners) {
            debug!("closing the listener on {}", l.addr());
            l.stop();
        }
        for mut a in std::mem::take(&mut self.utp_acceptors) {
            a.stop();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Where the `.torrent` of a torrent started from a magnet link is kept:
/// beside its resume state.
fn magnet_torrent_file(save_dir: &Path, options: &TorrentOptions, info_hash: InfoHash) -> PathBuf {
    match &options.resume_file {
        Some(r) => r.with_extension("torrent"),
        None => save_dir
            .join(".bittern")
            .join(format!("{}.torrent", info_hash.to_hex())),
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

/// Resolves a magnet link's `x.pe` host names (`host:port`) on a thread of
/// its own and offers every address found to the torrent, as
/// [`TorrentHandle::add_peers`] does. A name that does not resolve is
/// logged and skipped; the torrent carries on with its other peers.
fn resolve_hosts(handle: &TorrentHandle, hosts: Vec<(String, u16)>) {
    if hosts.is_empty() {
        return;
    }
    let handle = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("bittern-resolve".into())
        .spawn(move || {
            for (host, port) in hosts {
                let addrs: Vec<SocketAddr> = match (host.as_str(), port).to_socket_addrs() {
                    Ok(found) => found.collect(),
                    Err(e) => {
                        warn!("magnet peer {host}:{port}: cannot resolve: {e}");
                        continue;
                    }
                };
                info!("magnet peer {host}:{port} is {addrs:?}");
                if handle.add_peers(addrs).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        warn!("cannot start a thread to resolve magnet peers: {e}");
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

    #[test]
    fn a_hybrid_is_routed_by_both_hashes_and_leaves_by_both() {
        let registry: Registry = Arc::default();
        let (v1, v2, other) = (InfoHash([1; 20]), InfoHash([2; 20]), InfoHash([3; 20]));
        let reservation = register(&registry, v1, 1).unwrap();
        assert!(add_alias(&registry, v2, 1));
        // a torrent that failed to start gives both back
        drop(reservation);
        assert!(registry.lock().is_empty());
        register(&registry, v1, 1).unwrap().keep();
        assert!(add_alias(&registry, v2, 1));
        register(&registry, other, 2).unwrap().keep();
        assert!(!add_alias(&registry, v2, 2), "taken by torrent 1");
        assert_eq!(registry.lock().get(&v2), Some(&1));
        assert_eq!(registry.lock().find_obfuscated(&mse_req2(v2)), Some(v2));
        unregister(&registry, v1, 1);
        assert_eq!(registry.lock().get(&v2), None);
        assert_eq!(registry.lock().find_obfuscated(&mse_req2(v2)), None);
        assert_eq!(registry.lock().get(&other), Some(&2));
    }

    /// `HASH('req2', info_hash)`, as an MSE initiator sends it.
    fn mse_req2(h: InfoHash) -> [u8; 20] {
        use sha1::Digest;
        let mut d = sha1::Sha1::new();
        d.update(b"req2");
        d.update(h.0);
        d.finalize().into()
    }
}
