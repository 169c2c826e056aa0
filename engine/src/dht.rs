//! The session's DHT (BEP 5) as a peer source beside the trackers.
//!
//! A session listening on IPv4 and IPv6 runs two nodes (BEP 32), one on
//! the first UDP socket of each family, each with its own id, routing
//! table, bootstrap nodes (of its family), state file and thread; every
//! public torrent is announced and looked up on both. Each node works as
//! follows.
//!
//! One thread, `bittern-dht` (`bittern-dht6`), owns a sans-IO
//! [`bittern_dht::Node`] and its whole schedule; nothing else touches the
//! node, so it needs no lock:
//!
//! - the UDP reader (`udp.rs`) hands it KRPC datagrams with `try_send` on
//!   a bounded channel (a full channel drops the datagram, as a full socket
//!   buffer would), so the reader never waits on the DHT;
//! - controllers put public torrents on the schedule ([`SessionDht::add`],
//!   [`SessionDht::need_peers`], [`SessionDht::remove`]: a short lock on
//!   the schedule table and a `try_send` wake-up), peer threads pass on
//!   BEP 5 `port` messages ([`SessionDht::add_node`]); none of them waits;
//! - the thread sleeps until the earliest of the node's `next_timeout`, a
//!   torrent's next announce or lookup, and the next state save, or until a
//!   datagram or a wake-up arrives; it sends what the node wants sent from
//!   the shared UDP socket.
//!
//! It bootstraps from the saved state's contacts and the configured nodes
//! (again every [`DhtSettings::rebootstrap`] while the table is empty),
//! announces every public torrent when it starts and every
//! [`DhtSettings::reannounce`] (15 min), runs a get_peers lookup for a
//! torrent short of peers at most every [`DhtSettings::lookup_interval`],
//! and forwards the peers found, as replies bring them, to the session's
//! peer-source channel (the path tracker and `--peer` addresses take;
//! `try_send`, a full channel drops them). Private torrents (BEP 27) are
//! never added (the controller checks), so they never touch the DHT. The
//! node's id and good contacts are saved (atomically) every
//! [`DhtSettings::save_every`] and at shutdown when
//! [`DhtSettings::state_file`] is set.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_dht::{Event, LookupId, Node, SavedState};
use bittern_wire::InfoHash;
use crossbeam_channel::{bounded, select, Receiver, Sender, TrySendError};
use log::{debug, info, warn};
use parking_lot::Mutex;

use crate::torrent::TorrentId;

/// DHT settings of a session ([`SessionConfig::dht`](crate::SessionConfig::dht)).
#[derive(Debug, Clone)]
pub struct DhtSettings {
    /// Nodes to join through, as `HOST:PORT` (resolved on the DHT thread,
    /// never on the caller's). Empty: only the saved state's contacts.
    /// [`bittern_dht::PUBLIC_ROUTERS`] is the usual user default; tests give
    /// loopback nodes.
    pub bootstrap: Vec<String>,
    /// Where the node's id and good contacts are kept between runs.
    pub state_file: Option<PathBuf>,
    /// How often each public torrent is announced again.
    pub reannounce: Duration,
    /// Least time between two get_peers lookups of one torrent short of peers.
    pub lookup_interval: Duration,
    /// How often the state is saved while running (and once at shutdown).
    pub save_every: Duration,
    /// How long to wait before bootstrapping again while the table is empty.
    pub rebootstrap: Duration,
    /// The node's own settings.
    pub node: bittern_dht::Config,
}

impl Default for DhtSettings {
    fn default() -> Self {
        DhtSettings {
            bootstrap: Vec::new(),
            state_file: None,
            reannounce: Duration::from_secs(15 * 60),
            lookup_interval: Duration::from_secs(60),
            save_every: Duration::from_secs(10 * 60),
            rebootstrap: Duration::from_secs(30),
            node: bittern_dht::Config::default(),
        }
    }
}

/// KRPC datagrams queued for the DHT thread before the reader drops them.
const DATAGRAM_QUEUE: usize = 1024;
/// Datagrams handled in a row before the thread sends and schedules.
const DATAGRAM_BATCH: usize = 64;
/// Longest sleep of the DHT thread.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// One torrent on the DHT schedule.
struct Entry {
    /// The hashes it is announced and looked up under: its info hash and,
    /// for a hybrid (BEP 52), its truncated v2 hash.
    info_hashes: Vec<InfoHash>,
    next_announce: Instant,
    next_lookup: Instant,
    wants_peers: bool,
    /// Lookups of this torrent running (one round at a time: one per hash).
    running: usize,
}

/// What the DHT thread is asked besides datagrams.
enum Cmd {
    /// Look at the schedule table again.
    Wake,
    /// Ping this node (BEP 5 `port` message); it enters the table if it answers.
    AddNode(SocketAddr),
    /// Send the routing table's contacts back.
    Contacts(Sender<Vec<SocketAddr>>),
    /// A peer at `voter` says it sees us at `ours` (`yourip`).
    ExternalIp { voter: IpAddr, ours: IpAddr },
    /// Save the state and end.
    Stop,
}

/// A KRPC datagram for the DHT thread.
pub(crate) type Datagram = (SocketAddr, Vec<u8>);

/// The session's DHT: one node per address family the session listens on
/// (BEP 32: an IPv4 node and an IPv6 node, each with its own id, routing
/// table, schedule and thread). Torrents are announced and looked up on
/// every node; peers from all of them go to the same peer-source channel.
pub(crate) struct SessionDht {
    nodes: Vec<FamilyNode>,
}

impl SessionDht {
    /// Starts a node on each of `sockets` (the first UDP socket of each
    /// address family, with the slot its reader hands KRPC datagrams to);
    /// `port` is the TCP port announced; peers go to `sources`. The first
    /// node keeps its state in `settings.state_file`, a second one in the
    /// same name with `6` (or `4`) added to the stem (`dht6.dat`).
    pub(crate) fn start(
        settings: &DhtSettings,
        sockets: Vec<(Arc<UdpSocket>, crate::udp::DhtSlot)>,
        port: u16,
        sources: &Sender<(TorrentId, Vec<SocketAddr>)>,
    ) -> Result<SessionDht, crate::Error> {
        let mut nodes = Vec::new();
        // Each node's good contacts, for the other node's BEP 32 answers.
        let contacts: Vec<Contacts> = sockets.iter().map(|_| Contacts::default()).collect();
        for (i, (socket, slot)) in sockets.into_iter().enumerate() {
            let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
            let mut s = settings.clone();
            if i > 0 {
                s.state_file = s.state_file.map(|p| family_file(&p, v6));
            }
            let share = Share {
                mine: contacts[i].clone(),
                // two nodes at most: the other one, if any
                sibling: contacts.get(1 - i.min(1)).cloned(),
            };
            nodes.push(FamilyNode::start(
                s,
                socket,
                &slot,
                port,
                sources.clone(),
                v6,
                share,
            )?);
        }
        Ok(SessionDht { nodes })
    }

    /// The first node's id (kept across restarts through the state file).
    pub(crate) fn id(&self) -> Option<bittern_dht::NodeId> {
        self.nodes.first().map(|n| *n.id.lock())
    }

    /// Each node's id and whether it is the IPv6 node.
    pub(crate) fn ids(&self) -> Vec<(bittern_dht::NodeId, bool)> {
        self.nodes.iter().map(|n| (*n.id.lock(), n.v6)).collect()
    }

    /// The external addresses the nodes have settled on (BEP 42 votes).
    pub(crate) fn external_ips(&self) -> Vec<IpAddr> {
        self.nodes
            .iter()
            .filter_map(|n| *n.external.lock())
            .collect()
    }

    /// A peer at `voter` says it sees us at `ours` (`yourip`, BEP 10): one
    /// vote for our external address at the node of its family; never
    /// waits.
    pub(crate) fn vote_external_ip(&self, voter: IpAddr, ours: IpAddr) {
        if let Some(n) = self.nodes.iter().find(|n| n.v6 == ours.is_ipv6()) {
            let _ = n.cmds.try_send(Cmd::ExternalIp { voter, ours });
        }
    }

    /// Torrents on the nodes' announce schedules.
    pub(crate) fn scheduled(&self) -> usize {
        self.nodes.iter().map(|n| n.table.lock().len()).sum()
    }

    /// Nodes in all routing tables.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.iter().map(FamilyNode::node_count).sum()
    }

    /// The routing tables' contacts (waits up to a second per node).
    pub(crate) fn contacts(&self) -> Vec<SocketAddr> {
        self.nodes.iter().flat_map(FamilyNode::contacts).collect()
    }

    /// Pings a peer's DHT node (its BEP 5 `port` message) from the node of
    /// its address family; never waits.
    pub(crate) fn add_node(&self, addr: SocketAddr) {
        if let Some(n) = self.nodes.iter().find(|n| n.v6 == addr.is_ipv6()) {
            n.add_node(addr);
        }
    }

    /// Puts a public torrent on every node's schedule under each of
    /// `info_hashes` (a hybrid's two): announced now, then every
    /// `reannounce`. Never call it for a private torrent.
    pub(crate) fn add(&self, id: TorrentId, info_hashes: Vec<InfoHash>) {
        for n in &self.nodes {
            n.add(id, info_hashes.clone());
        }
    }

    /// Takes a torrent off the schedules.
    pub(crate) fn remove(&self, id: TorrentId) {
        for n in &self.nodes {
            n.remove(id);
        }
    }

    /// The torrent is short of peers: look some up on every node (at most
    /// every `lookup_interval`).
    pub(crate) fn need_peers(&self, id: TorrentId) {
        for n in &self.nodes {
            n.need_peers(id);
        }
    }

    /// Stops the threads, which save their state first.
    pub(crate) fn shutdown(&self) {
        for n in &self.nodes {
            n.shutdown();
        }
    }
}

/// A node's good contacts as last published by its thread.
type Contacts = Arc<Mutex<Vec<bittern_dht::NodeInfo>>>;

/// What a node shares with the other family's node (BEP 32 `want`).
struct Share {
    /// Where this node publishes its good contacts.
    mine: Contacts,
    /// The other node's, handed to this node (`None`: single stack).
    sibling: Option<Contacts>,
}

/// How often a node publishes its contacts and takes its sibling's.
const SHARE_EVERY: Duration = Duration::from_secs(1);

/// `dir/dht.dat` → `dir/dht6.dat` (or `dht4.dat`).
fn family_file(path: &Path, v6: bool) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = format!("{stem}{}", if v6 { '6' } else { '4' });
    if let Some(ext) = path.extension() {
        name.push('.');
        name.push_str(&ext.to_string_lossy());
    }
    path.with_file_name(name)
}

/// One address family's node: the schedule table and the channels into
/// its thread.
struct FamilyNode {
    table: Arc<Mutex<HashMap<TorrentId, Entry>>>,
    cmds: Sender<Cmd>,
    nodes: Arc<AtomicUsize>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The node's id (it changes when BEP 42 asks for one that fits our
    /// external address; updated by the DHT thread).
    id: Arc<Mutex<bittern_dht::NodeId>>,
    /// Our external address once the node settled on one.
    external: Arc<Mutex<Option<IpAddr>>>,
    v6: bool,
}

impl FamilyNode {
    /// Starts the DHT thread, sending from `socket` and fed through
    /// `slot` (filled before the thread sends anything, so no reply can
    /// arrive unheard); `port` is the TCP port announced; peers go to
    /// `sources`. `v6`: the socket's family (bootstrap and saved contacts
    /// of the other family are skipped).
    fn start(
        settings: DhtSettings,
        socket: Arc<UdpSocket>,
        slot: &crate::udp::DhtSlot,
        port: u16,
        sources: Sender<(TorrentId, Vec<SocketAddr>)>,
        v6: bool,
        share: Share,
    ) -> Result<FamilyNode, crate::Error> {
        let saved = settings.state_file.as_ref().and_then(|p| {
            let bytes = std::fs::read(p).ok()?;
            SavedState::decode(&bytes)
                .inspect_err(|e| warn!("dht: ignoring state {}: {e}", p.display()))
                .ok()
        });
        let mut config = settings.node.clone();
        if let Some(s) = &saved {
            config.id = Some(s.id);
        }
        let table: Arc<Mutex<HashMap<TorrentId, Entry>>> = Arc::default();
        let (cmds, cmd_rx) = bounded(256);
        let (datagrams, datagram_rx) = bounded(DATAGRAM_QUEUE);
        let _ = slot.set(datagrams.clone());
        let nodes = Arc::new(AtomicUsize::new(0));
        let now = Instant::now();
        let node = Node::new(config, now);
        let id = Arc::new(Mutex::new(node.id()));
        let external = Arc::new(Mutex::new(None));
        let mut driver = Driver {
            share,
            last_share: now,
            id: id.clone(),
            external: external.clone(),
            node,
            socket,
            table: table.clone(),
            sources,
            port,
            saved_nodes: saved
                .map(|s| {
                    s.nodes
                        .iter()
                        .map(|n| n.addr)
                        .filter(|a| a.is_ipv6() == v6)
                        .collect()
                })
                .unwrap_or_default(),
            v6,
            settings,
            lookups: HashMap::new(),
            bootstrapping: None,
            next_bootstrap: now,
            last_save: now,
            nodes: nodes.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(if v6 { "bittern-dht6" } else { "bittern-dht" }.into())
            .spawn(move || driver.run(&datagram_rx, &cmd_rx))
            .map_err(crate::Error::Spawn)?;
        Ok(FamilyNode {
            table,
            cmds,
            nodes,
            thread: Mutex::new(Some(thread)),
            id,
            external,
            v6,
        })
    }

    /// Nodes in the routing table (updated by the DHT thread).
    fn node_count(&self) -> usize {
        self.nodes.load(Ordering::Relaxed)
    }

    /// The routing table's contacts (waits up to a second for the thread).
    fn contacts(&self) -> Vec<SocketAddr> {
        let (tx, rx) = bounded(1);
        if self.cmds.try_send(Cmd::Contacts(tx)).is_err() {
            return Vec::new();
        }
        rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
    }

    /// Pings a peer's DHT node (its BEP 5 `port` message); never waits.
    fn add_node(&self, addr: SocketAddr) {
        let _ = self.cmds.try_send(Cmd::AddNode(addr));
    }

    fn poke(&self) {
        // A full queue already holds work that makes the thread look.
        let _ = self.cmds.try_send(Cmd::Wake);
    }

    /// Puts a public torrent on the schedule: announced now, then every
    /// `reannounce`.
    fn add(&self, id: TorrentId, info_hashes: Vec<InfoHash>) {
        let now = Instant::now();
        self.table.lock().insert(
            id,
            Entry {
                info_hashes,
                next_announce: now,
                next_lookup: now,
                wants_peers: false,
                running: 0,
            },
        );
        self.poke();
    }

    /// Takes a torrent off the schedule.
    fn remove(&self, id: TorrentId) {
        let mut t = self.table.lock();
        t.remove(&id);
        crate::shrink::map(&mut t);
    }

    /// The torrent is short of peers: look some up (at most every
    /// `lookup_interval`).
    fn need_peers(&self, id: TorrentId) {
        let mut t = self.table.lock();
        if let Some(e) = t.get_mut(&id) {
            if !e.wants_peers {
                e.wants_peers = true;
                drop(t);
                self.poke();
            }
        }
    }

    /// Stops the thread, which saves the state first.
    fn shutdown(&self) {
        let Some(t) = self.thread.lock().take() else {
            return;
        };
        // Blocking send: the thread drains its queue, so this never waits long.
        let _ = self.cmds.send(Cmd::Stop);
        let _ = t.join();
    }
}

impl Drop for FamilyNode {
    /// A session that failed half-way through its start stops the thread too.
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a running lookup is for.
#[derive(Clone, Copy)]
struct Running {
    torrent: TorrentId,
}

/// The `bittern-dht` thread's state.
struct Driver {
    node: Node,
    socket: Arc<UdpSocket>,
    table: Arc<Mutex<HashMap<TorrentId, Entry>>>,
    sources: Sender<(TorrentId, Vec<SocketAddr>)>,
    port: u16,
    saved_nodes: Vec<SocketAddr>,
    /// The IPv6 node (else IPv4).
    v6: bool,
    settings: DhtSettings,
    lookups: HashMap<LookupId, Running>,
    share: Share,
    last_share: Instant,
    /// Where the node's id and external address are shown to the session.
    id: Arc<Mutex<bittern_dht::NodeId>>,
    external: Arc<Mutex<Option<IpAddr>>>,
    bootstrapping: Option<LookupId>,
    next_bootstrap: Instant,
    last_save: Instant,
    nodes: Arc<AtomicUsize>,
}

impl Driver {
    /// `dht` or `dht6`, for the log.
    fn tag(&self) -> &'static str {
        if self.v6 {
            "dht6"
        } else {
            "dht"
        }
    }

    fn run(&mut self, datagrams: &Receiver<Datagram>, cmds: &Receiver<Cmd>) {
        loop {
            let now = Instant::now();
            if now >= self.node.next_timeout() {
                self.node.tick(now);
            }
            // A finished lookup or join can make something due at once.
            if self.flush() {
                continue;
            }
            let next = self.schedule(now);
            if self.flush() {
                continue;
            }
            let wait = next
                .min(self.node.next_timeout())
                .saturating_duration_since(Instant::now());
            select! {
                recv(datagrams) -> d => {
                    let Ok((from, bytes)) = d else {
                        // The UDP reader is gone: the session is ending.
                        self.save();
                        return;
                    };
                    self.node.handle_datagram(from, &bytes, Instant::now());
                    for (from, bytes) in datagrams.try_iter().take(DATAGRAM_BATCH) {
                        self.node.handle_datagram(from, &bytes, Instant::now());
                    }
                }
                recv(cmds) -> c => match c {
                    Ok(Cmd::Wake) => {}
                    Ok(Cmd::AddNode(addr)) => self.node.add_node(addr, Instant::now()),
                    Ok(Cmd::ExternalIp { voter, ours }) => {
                        self.node.vote_external_ip(voter, ours, Instant::now());
                    }
                    Ok(Cmd::Contacts(tx)) => {
                        let list = self.node.routing_table().entries().map(|e| e.info.addr).collect();
                        let _ = tx.try_send(list);
                    }
                    Ok(Cmd::Stop) | Err(_) => {
                        self.save();
                        return;
                    }
                },
                default(wait) => {}
            }
        }
    }

    /// Sends what the node wants sent and handles its events; true when a
    /// lookup or the join ended.
    fn flush(&mut self) -> bool {
        let mut ended = false;
        while let Some(t) = self.node.poll_transmit() {
            // The socket reports ICMP errors (uTP's reader enables them):
            // an earlier datagram's error may fail this send; once more.
            let sent = bittern_utp::icmp::send_retrying(|| self.socket.send_to(&t.bytes, t.to));
            if let Err(e) = sent {
                debug!("dht: send to {} failed: {e}", t.to);
            }
        }
        while let Some(ev) = self.node.poll_event() {
            match ev {
                Event::PeersFound { id, peers } => {
                    if let Some(r) = self.lookups.get(&id).copied() {
                        self.forward(r.torrent, peers);
                    }
                }
                Event::LookupDone { id, result } => {
                    ended = true;
                    if self.bootstrapping == Some(id) {
                        self.bootstrapping = None;
                        info!(
                            "{}: joined, {} nodes ({} answered the join)",
                            self.tag(),
                            self.node.routing_table().len(),
                            result.closest.len()
                        );
                    } else if let Some(r) = self.lookups.remove(&id) {
                        debug!(
                            "dht: lookup for torrent {} done: {} peers, announced at {}",
                            r.torrent,
                            result.peers.len(),
                            result.announced
                        );
                        if let Some(e) = self.table.lock().get_mut(&r.torrent) {
                            e.running = e.running.saturating_sub(1);
                        }
                        crate::shrink::map(&mut self.lookups);
                    }
                }
            }
        }
        self.nodes
            .store(self.node.routing_table().len(), Ordering::Relaxed);
        *self.id.lock() = self.node.id();
        *self.external.lock() = self.node.external_ip();
        ended
    }

    /// Bootstraps, starts what is due and saves; returns when something
    /// is due next.
    fn schedule(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_SLEEP;
        let joined = !self.node.routing_table().is_empty();
        if !joined && self.bootstrapping.is_none() {
            if now >= self.next_bootstrap {
                self.bootstrap(now);
            }
            next = next.min(self.next_bootstrap);
        }
        if joined && self.bootstrapping.is_none() {
            next = next.min(self.start_due(now));
        }
        if now.duration_since(self.last_share) >= SHARE_EVERY {
            self.last_share = now;
            if let Some(sibling) = &self.share.sibling {
                *self.share.mine.lock() = self.node.saved_state(now).nodes;
                let theirs = sibling.lock().clone();
                self.node.set_other_family(&theirs);
            }
        }
        if self.share.sibling.is_some() {
            next = next.min(self.last_share + SHARE_EVERY);
        }
        if self.settings.state_file.is_some() {
            if now.duration_since(self.last_save) >= self.settings.save_every {
                self.save();
            }
            next = next.min(self.last_save + self.settings.save_every);
        }
        next
    }

    fn bootstrap(&mut self, now: Instant) {
        self.next_bootstrap = now + self.settings.rebootstrap;
        let mut nodes = self.saved_nodes.clone();
        for host in &self.settings.bootstrap {
            match host.to_socket_addrs() {
                Ok(addrs) => nodes.extend(addrs.filter(|a| a.is_ipv6() == self.v6)),
                Err(e) => debug!("dht: cannot resolve bootstrap node {host}: {e}"),
            }
        }
        if nodes.is_empty() {
            return;
        }
        info!("{}: bootstrapping from {} nodes", self.tag(), nodes.len());
        self.bootstrapping = Some(self.node.bootstrap(&nodes, now));
    }

    /// Starts the announces and lookups that are due; returns when the
    /// next one is.
    fn start_due(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_SLEEP;
        let mut start = Vec::new();
        {
            let mut t = self.table.lock();
            for (id, e) in t.iter_mut() {
                if e.running > 0 {
                    continue;
                }
                let announce = if now >= e.next_announce {
                    e.next_announce = now + self.settings.reannounce;
                    true
                } else if e.wants_peers && now >= e.next_lookup {
                    false
                } else {
                    next = next.min(e.next_announce);
                    if e.wants_peers {
                        next = next.min(e.next_lookup);
                    }
                    continue;
                };
                e.wants_peers = false;
                e.next_lookup = now + self.settings.lookup_interval;
                e.running = e.info_hashes.len();
                for ih in &e.info_hashes {
                    start.push((*id, *ih, announce));
                }
            }
        }
        for (torrent, ih, announce) in start {
            debug!(
                "dht: {} {}",
                if announce { "announce" } else { "get_peers" },
                ih.to_hex()
            );
            let id = if announce {
                self.node.announce(ih, Some(self.port), now)
            } else {
                self.node.get_peers(ih, now)
            };
            self.lookups.insert(id, Running { torrent });
        }
        next
    }

    fn forward(&self, torrent: TorrentId, peers: Vec<SocketAddr>) {
        if !self.table.lock().contains_key(&torrent) {
            return;
        }
        debug!("dht: {} peers for torrent {torrent}", peers.len());
        match self.sources.try_send((torrent, peers)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => debug!("peer source queue full; dropping dht peers"),
        }
    }

    fn save(&mut self) {
        self.last_save = Instant::now();
        let Some(path) = self.settings.state_file.clone() else {
            return;
        };
        if self.node.routing_table().is_empty() {
            // An empty table would overwrite good contacts with none.
            return;
        }
        let bytes = self.node.saved_state(Instant::now()).encode();
        match write_atomically(&path, &bytes) {
            Ok(()) => debug!("dht: state saved to {}", path.display()),
            Err(e) => warn!("dht: cannot save state to {}: {e}", path.display()),
        }
    }
}

/// Writes `bytes` to `path` through a temporary file beside it (fsync,
/// rename), so a crash leaves the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
