//! The session's DHT (BEP 5) as a peer source beside the trackers.
//!
//! One [`bittern_dht::Dht`] per session, on the session's UDP socket (the
//! listen port, shared with uTP: see `udp.rs`). One thread,
//! `bittern-dht`, owns the schedule: it bootstraps (from the saved state's
//! contacts and the configured nodes), announces every public torrent when
//! it starts and every [`DhtSettings::reannounce`] (15 min), runs a
//! get_peers lookup for a torrent short of peers at most every
//! [`DhtSettings::lookup_interval`], and forwards the peers found, as the
//! replies bring them, to the session's peer-source channel (the one path
//! tracker and `--peer` addresses take, with `try_send`: a full channel
//! drops them). Private torrents (BEP 27) are never added (the controller
//! checks), so they never touch the DHT.
//!
//! Controllers only take a short lock on the schedule table and wake the
//! thread with a `try_send`; they never wait on the DHT. The node's state
//! (id and good contacts) is saved at shutdown and every
//! [`DhtSettings::save_every`] when [`DhtSettings::state_file`] is set.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_dht::{Dht, LookupResult, SendTo};
use bittern_wire::InfoHash;
use crossbeam_channel::{bounded, Receiver, Select, Sender, TrySendError};
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

/// One torrent on the DHT schedule.
struct Entry {
    info_hash: InfoHash,
    next_announce: Instant,
    next_lookup: Instant,
    wants_peers: bool,
    /// A lookup of this torrent is running (one at a time).
    running: bool,
}

#[derive(Default)]
struct Table {
    torrents: HashMap<TorrentId, Entry>,
    stop: bool,
}

/// The session's DHT: the node and the thread that schedules its work.
pub(crate) struct SessionDht {
    dht: Arc<Dht>,
    table: Arc<Mutex<Table>>,
    wake: Sender<()>,
    thread: Mutex<Option<JoinHandle<()>>>,
    state_file: Option<PathBuf>,
}

impl SessionDht {
    /// Starts the node (sending through `socket`) and its schedule thread;
    /// `port` is the TCP port announced; peers go to `sources`.
    pub(crate) fn start(
        settings: DhtSettings,
        socket: Arc<dyn SendTo>,
        port: u16,
        sources: Sender<(TorrentId, Vec<SocketAddr>)>,
    ) -> Result<Arc<SessionDht>, crate::Error> {
        let saved = settings.state_file.as_ref().and_then(|p| {
            Dht::load_state(p)
                .inspect_err(|e| {
                    if p.exists() {
                        warn!("dht: ignoring state {}: {e}", p.display());
                    }
                })
                .ok()
        });
        let state_file = settings.state_file.clone();
        let mut node = settings.node.clone();
        if let Some(s) = &saved {
            node.id = Some(s.id);
        }
        let dht = Arc::new(
            Dht::start(node, socket).map_err(|e| crate::Error::Spawn(std::io::Error::other(e)))?,
        );
        let table: Arc<Mutex<Table>> = Arc::default();
        let (wake, woken) = bounded(1);
        let saved_nodes: Vec<SocketAddr> = saved
            .map(|s| s.nodes.iter().map(|n| n.addr).collect())
            .unwrap_or_default();
        let mut schedule = Schedule {
            dht: dht.clone(),
            table: table.clone(),
            woken,
            sources,
            port,
            bootstrap: settings.bootstrap.clone(),
            saved_nodes,
            settings,
            streams: Vec::new(),
            bootstrapping: None,
            next_bootstrap: Instant::now(),
            last_save: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("bittern-dht".into())
            .spawn(move || schedule.run())
            .map_err(crate::Error::Spawn)?;
        Ok(Arc::new(SessionDht {
            state_file,
            dht,
            table,
            wake,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// The node (for the BEP 5 `port` message and inspection).
    pub(crate) fn dht(&self) -> &Arc<Dht> {
        &self.dht
    }

    /// Nodes in the routing table.
    pub(crate) fn node_count(&self) -> usize {
        self.dht.node_count()
    }

    fn poke(&self) {
        // Capacity 1: a pending wake-up is enough.
        let _ = self.wake.try_send(());
    }

    /// Puts a public torrent on the schedule: announced now, then every
    /// `reannounce`. Never call it for a private torrent.
    pub(crate) fn add(&self, id: TorrentId, info_hash: InfoHash) {
        let now = Instant::now();
        self.table.lock().torrents.insert(
            id,
            Entry {
                info_hash,
                next_announce: now,
                next_lookup: now,
                wants_peers: false,
                running: false,
            },
        );
        self.poke();
    }

    /// Takes a torrent off the schedule.
    pub(crate) fn remove(&self, id: TorrentId) {
        self.table.lock().torrents.remove(&id);
    }

    /// The torrent is short of peers: look some up (at most every
    /// `lookup_interval`).
    pub(crate) fn need_peers(&self, id: TorrentId) {
        let mut t = self.table.lock();
        if let Some(e) = t.torrents.get_mut(&id) {
            if !e.wants_peers {
                e.wants_peers = true;
                drop(t);
                self.poke();
            }
        }
    }

    /// Stops the schedule thread and saves the state.
    pub(crate) fn shutdown(&self) {
        self.table.lock().stop = true;
        self.poke();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        if let Some(p) = &self.state_file {
            save(&self.dht, p);
        }
    }
}

fn save(dht: &Dht, path: &std::path::Path) {
    if dht.node_count() == 0 {
        // An empty table would overwrite good contacts with none.
        return;
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match dht.save_state(path) {
        Ok(()) => debug!("dht: state saved to {}", path.display()),
        Err(e) => warn!("dht: cannot save state to {}: {e}", path.display()),
    }
}

/// A lookup whose peers are being forwarded.
struct Stream {
    torrent: TorrentId,
    peers: Receiver<SocketAddr>,
}

/// The `bittern-dht` thread's state.
struct Schedule {
    dht: Arc<Dht>,
    table: Arc<Mutex<Table>>,
    woken: Receiver<()>,
    sources: Sender<(TorrentId, Vec<SocketAddr>)>,
    port: u16,
    bootstrap: Vec<String>,
    saved_nodes: Vec<SocketAddr>,
    settings: DhtSettings,
    streams: Vec<Stream>,
    bootstrapping: Option<Receiver<LookupResult>>,
    next_bootstrap: Instant,
    last_save: Instant,
}

/// Longest sleep of the schedule thread.
const MAX_SLEEP: Duration = Duration::from_secs(60);

impl Schedule {
    fn run(&mut self) {
        loop {
            let now = Instant::now();
            if self.table.lock().stop {
                return;
            }
            self.maybe_bootstrap(now);
            let joined = self.bootstrapping.is_none() && self.dht.node_count() > 0;
            let mut next = now + MAX_SLEEP;
            if joined {
                next = next.min(self.start_due(now));
            } else if self.bootstrapping.is_none() {
                next = next.min(self.next_bootstrap);
            }
            if let Some(p) = &self.settings.state_file {
                if now.duration_since(self.last_save) >= self.settings.save_every {
                    self.last_save = now;
                    save(&self.dht, p);
                }
                next = next.min(self.last_save + self.settings.save_every);
            }
            self.wait(next);
        }
    }

    /// Joins (again) while the table is empty and no join is running.
    fn maybe_bootstrap(&mut self, now: Instant) {
        if self.bootstrapping.is_some() || now < self.next_bootstrap {
            return;
        }
        if self.dht.node_count() > 0 {
            return;
        }
        let mut nodes = self.saved_nodes.clone();
        for host in &self.bootstrap {
            match host.to_socket_addrs() {
                Ok(addrs) => nodes.extend(addrs),
                Err(e) => debug!("dht: cannot resolve bootstrap node {host}: {e}"),
            }
        }
        self.next_bootstrap = now + self.settings.rebootstrap;
        if nodes.is_empty() {
            return;
        }
        info!("dht: bootstrapping from {} nodes", nodes.len());
        self.bootstrapping = Some(self.dht.start_bootstrap(&nodes));
    }

    /// Starts the announces and lookups that are due; returns when the
    /// next one is.
    fn start_due(&mut self, now: Instant) -> Instant {
        let mut next = now + MAX_SLEEP;
        let mut start = Vec::new();
        {
            let mut t = self.table.lock();
            for (id, e) in t.torrents.iter_mut() {
                if e.running {
                    continue;
                }
                if now >= e.next_announce {
                    e.running = true;
                    e.next_announce = now + self.settings.reannounce;
                    e.next_lookup = now + self.settings.lookup_interval;
                    e.wants_peers = false;
                    start.push((*id, e.info_hash, true));
                } else if e.wants_peers && now >= e.next_lookup {
                    e.running = true;
                    e.wants_peers = false;
                    e.next_lookup = now + self.settings.lookup_interval;
                    start.push((*id, e.info_hash, false));
                } else {
                    next = next.min(e.next_announce);
                    if e.wants_peers {
                        next = next.min(e.next_lookup);
                    }
                }
            }
        }
        for (torrent, ih, announce) in start {
            debug!(
                "dht: {} {}",
                if announce { "announce" } else { "get_peers" },
                ih.to_hex()
            );
            let peers = if announce {
                self.dht.announce_stream(ih, Some(self.port))
            } else {
                self.dht.get_peers_stream(ih)
            };
            self.streams.push(Stream { torrent, peers });
        }
        next
    }

    /// Sleeps until `until`, a wake-up, the end of the join or peers
    /// arriving; forwards the peers.
    fn wait(&mut self, until: Instant) {
        // Clones (cheap handles) so that `self` is free while `op` lives.
        let woken = self.woken.clone();
        let boot_rx = self.bootstrapping.clone();
        let streams: Vec<Receiver<SocketAddr>> =
            self.streams.iter().map(|s| s.peers.clone()).collect();
        let mut sel = Select::new();
        sel.recv(&woken);
        let boot = boot_rx.as_ref().map(|b| sel.recv(b));
        let first_stream = if boot.is_some() { 2 } else { 1 };
        for s in &streams {
            sel.recv(s);
        }
        let Ok(op) = sel.select_deadline(until) else {
            return;
        };
        let i = op.index();
        if i == 0 {
            let _ = op.recv(&woken);
        } else if Some(i) == boot {
            if let Some(b) = &boot_rx {
                let r = op.recv(b);
                self.bootstrapping = None;
                info!(
                    "dht: joined, {} nodes ({} answered the join)",
                    self.dht.node_count(),
                    r.map_or(0, |r| r.closest.len())
                );
            }
        } else {
            let k = i - first_stream;
            match op.recv(&streams[k]) {
                Ok(first) => {
                    let mut peers = vec![first];
                    peers.extend(streams[k].try_iter());
                    self.forward(self.streams[k].torrent, peers);
                }
                Err(_) => {
                    let s = self.streams.swap_remove(k);
                    if let Some(e) = self.table.lock().torrents.get_mut(&s.torrent) {
                        e.running = false;
                    }
                }
            }
        }
    }

    fn forward(&self, torrent: TorrentId, peers: Vec<SocketAddr>) {
        if !self.table.lock().torrents.contains_key(&torrent) {
            return;
        }
        debug!("dht: {} peers for torrent {torrent}", peers.len());
        match self.sources.try_send((torrent, peers)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => debug!("peer source queue full; dropping dht peers"),
        }
    }
}
