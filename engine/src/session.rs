//! The session (mainline MultiTorrent): one listening port routed by info
//! hash (SingleportListener), one FilePool, global rate limiters and
//! connection limit, and the torrents.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bittern_storage::FilePool;
use bittern_wire::{InfoHash, Magnet, MagnetPeer, Metainfo, PeerId};
use crossbeam_channel::Sender;
use log::{info, warn};
use parking_lot::Mutex;

mod discovery;
mod filter;
mod routes;
mod shared;
mod shutdown;

pub use filter::Incoming;
pub(crate) use routes::{add_alias, register, unregister, Registry};
pub(crate) use shared::{AnnouncerSlot, SessionShared};

use crate::config::{SessionConfig, TorrentOptions};
use crate::error::Error;
use crate::listener::{Listener, Pending};
use crate::ratelimit::RateLimiter;
use crate::status::{Events, EVENT_QUEUE};
use crate::torrent::{
    build_controller, Central, ControllerSetup, Ctl, FetchSetup, MetadataFetch, PeerSource,
    Published, TorrentHandle,
};

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
    /// Session tracker announcers held (0 or 1, with their command and
    /// event channels): one ends `Timing::announcer_linger` after its last
    /// torrent left, and the session then drops it.
    pub announcers: usize,
    /// Threads of the session's tracker announcer (scheduler and
    /// workers).
    pub announcer_threads: usize,
}

/// The session's torrents, in the order they were added (see
/// [`Session::torrents`]).
pub(crate) type Listed = Mutex<Vec<TorrentHandle>>;

/// Takes torrent `id` off the session's list (its handle was removed),
/// and gives back the list's room once it is mostly empty.
pub(crate) fn unlist(listed: &Listed, id: crate::torrent::TorrentId) {
    let mut l = listed.lock();
    l.retain(|h| h.id != id);
    crate::shrink::vec(&mut l);
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
        let half_open = Arc::new(crate::halfopen::HalfOpen::new(config.max_half_open));
        let (central, commands, links) = Central::new(running.clone(), half_open.clone());
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
            tiers: crate::torrent::TierInterner::default(),
            writeback: crate::writeback::Writeback::spawn(config.writeback_delay)
                .map_err(Error::Spawn)?,
            upload: Arc::new(RateLimiter::new(config.upload_limit)),
            download: Arc::new(RateLimiter::new(config.download_limit)),
            connections: Arc::default(),
            half_open,
            port,
            listen_addrs: addrs.clone(),
            external_ips: Mutex::new(Vec::new()),
            announcer: Arc::new(Mutex::new(if config.announce {
                AnnouncerSlot::Idle
            } else {
                AnnouncerSlot::Closed
            })),
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
            routed: routes.routed(),
            obfuscated: routes.obfuscated_len(),
            running: self.running.load(Ordering::Relaxed),
            dht_scheduled: self.shared.dht.as_ref().map_or(0, |d| d.scheduled()),
            connections: self.connections(),
            announcers: self.shared.announcer_held().0,
            announcer_threads: self.shared.announcer_held().1,
        }
    }

    /// Live peer connections across all torrents.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Outgoing connections still being opened (dialling or handshaking),
    /// across all torrents: at most `SessionConfig::max_half_open`.
    pub fn half_open(&self) -> usize {
        self.shared.half_open.count.load(Ordering::Relaxed)
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
