//! The metadata phase of a torrent started from a magnet link (BEP 9): the
//! info dictionary is fetched with `ut_metadata` from several peers at
//! once, checked against the info hash, saved as a `.torrent` beside the
//! resume state, and the torrent then carries on as if a `.torrent` had
//! been given, under the same [`TorrentHandle`](super::TorrentHandle).
//!
//! Run by the session's controller thread like a torrent's state (same
//! events, commands, peer sources and timer heap), it never blocks: the
//! connections are metadata-only peer threads (`peer::meta`), and the
//! `.torrent` is written by a short-lived thread. When the metadata is
//! complete it builds the torrent's [`Controller`] and hands it to the
//! controller thread, closing its own connections; the new controller
//! dials those peers again (see DESIGN.md, "Magnet links").
//!
//! A peer that breaks the exchange is dropped (closed and not dialled
//! again): a `metadata_size` over [`MAX_METADATA_SIZE`], a piece out of
//! range, of the wrong length or total size, one we did not ask it for,
//! rejecting every request, or silence past [`REQUEST_TIMEOUT`]. Metadata
//! failing the hash drops the peer when it alone sent it; when several
//! contributed, the fetch starts over taking every piece from one peer at
//! a time, so the liar is found by the next failure.
//!
//! Every connection of the fetch has a deadline at each stage, so none can
//! hold a slot while neither serving nor failing: up (handshakes done)
//! within [`ready_deadline`](MetadataFetch::ready_deadline), its extension
//! handshake within [`EXTENSION_DEADLINE`] of that, a `metadata_size`
//! within [`SIZE_DEADLINE`] when it has none (BEP 9: a peer without the
//! metadata sends none), and pieces within [`REQUEST_TIMEOUT`] of asking.
//! A connection that misses one is closed and its address dialled again
//! after [`RETRY_AFTER`] (such a peer may be slow, or fetch the metadata
//! itself meanwhile).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_tracker::TorrentKey;
use bittern_wire::{
    Accepted, Extension, ExtensionHandshake, InfoHash, MetadataAssembler, MetadataError,
    MetadataHash, MetadataMessage, Metainfo, MAX_METADATA_SIZE,
};
use crossbeam_channel::{bounded, Sender};
use log::{debug, info, warn};

use super::central::Links;
use super::controller::{Controller, Transfer};
use super::{Published, TorrentCommand, TorrentId};

mod file;
mod handover;
mod layers;
mod requests;

use crate::config::TorrentOptions;
use crate::error::{PeerError, Violation};
use crate::peer::{
    spawn_meta, Connection, MetaContext, Origin, PeerCommand, PeerEvent, PeerMsg, SocketSlot,
};
use crate::picker::PeerKey;
use crate::session::{add_alias, Registry, SessionShared};
use crate::status::{Events, TorrentEvent, TorrentState, TorrentStatus};

/// A peer asked for metadata pieces that sends nothing for this long is
/// dropped (its pieces go to others).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the fetch looks at its peers (timeouts, dialling, status).
const TICK: Duration = Duration::from_secs(1);
/// A connection up (BitTorrent handshake done) that has sent no extension
/// handshake this long is closed.
const EXTENSION_DEADLINE: Duration = Duration::from_secs(10);
/// A peer speaking `ut_metadata` without a `metadata_size` (it lacks the
/// metadata, BEP 9) is closed this long after its extension handshake.
const SIZE_DEADLINE: Duration = Duration::from_secs(10);
/// Most pieces asked of one peer at once.
const MAX_PER_PEER: usize = 16;
/// Connections of one metadata fetch.
const MAX_FETCH_PEERS: usize = 30;
/// Candidate addresses kept.
const MAX_CANDIDATES: usize = 10_000;
/// How long an address whose connection failed or ended waits before it
/// is dialled again during the fetch.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Peer keys of the metadata phase start here, so that no late event of
/// one of its connections is taken for one of the torrent's own
/// connections (which count from 0) after the hand-over.
const FIRST_KEY: u64 = 1 << 48;

/// Everything needed to start a metadata fetch.
pub(crate) struct FetchSetup {
    pub id: TorrentId,
    pub info_hash: InfoHash,
    /// The magnet's full v2 hash (`btmh`): the metadata must have it; the
    /// metadata is checked by it alone when there is no `btih`.
    pub info_hash_v2: Option<[u8; 32]>,
    /// Tracker tiers for the `.torrent` and the announcer (`tr=`).
    pub trackers: Vec<Vec<String>>,
    /// Web seeds for the `.torrent` (`ws=`).
    pub web_seeds: Vec<String>,
    /// Where the `.torrent` is written once fetched.
    pub torrent_file: PathBuf,
    pub save_dir: PathBuf,
    /// The torrent's options; `peers` holds the magnet's `x.pe` peers.
    pub options: TorrentOptions,
    pub session: Arc<SessionShared>,
    pub registry: Registry,
    pub commands: Sender<Ctl>,
    pub links: Links,
    pub published: Arc<Published>,
    pub events: Arc<Events>,
}

use super::central::Ctl;

/// The first 20 bytes of a v2 hash: its name on the wire (BEP 52).
fn v2_truncated(h: &[u8; 32]) -> [u8; 20] {
    let mut t = [0u8; 20];
    t.copy_from_slice(&h[..20]);
    t
}

/// One metadata-phase connection.
struct MetaPeer {
    addr: SocketAddr,
    /// We dialled it (an incoming peer's address is not dialable).
    outgoing: bool,
    commands: Sender<PeerCommand>,
    socket: Arc<SocketSlot>,
    ready: bool,
    /// When the thread was started (the dial or the incoming handshake).
    started: Instant,
    /// When the connection came up (`Ready`).
    ready_at: Option<Instant>,
    /// When its extension handshake came (with `ut_metadata`).
    extension_at: Option<Instant>,
    /// The peer speaks `ut_metadata` and announced this size.
    size: Option<u64>,
    /// A v2 connection (BEP 52): it may be sent hash requests.
    v2: bool,
    /// Its handshake set the v2 bit.
    v2_bit: bool,
    /// When we last asked it, or it last answered, while it had pieces
    /// outstanding.
    last_progress: Instant,
    closing: bool,
}

/// The metadata phase of one torrent (see the module doc).
pub(crate) struct MetadataFetch {
    setup: FetchSetup,
    /// The deadline the controller's timer heap holds for this fetch.
    pub(super) scheduled: Option<Instant>,
    peers: HashMap<PeerKey, MetaPeer>,
    next_key: u64,
    candidates: VecDeque<SocketAddr>,
    /// Every address heard of, dialled again by the torrent afterwards.
    known: HashSet<SocketAddr>,
    banned: HashSet<SocketAddr>,
    /// Peers without `ut_metadata`: not dialled again during the fetch (the
    /// torrent dials them afterwards).
    skip: HashSet<SocketAddr>,
    /// Addresses to dial again, and when.
    retry: Vec<(SocketAddr, Instant)>,
    assembler: Option<MetadataAssembler<PeerKey>>,
    /// After a hash failure with several contributors: one peer at a time.
    single_source: bool,
    /// The one peer of the current attempt in that mode.
    source: Option<PeerKey>,
    announcer: Option<TorrentKey>,
    /// A hybrid link's second key, for its truncated v2 hash.
    announcer_v2: Option<TorrentKey>,
    transfer: Arc<Transfer>,
    paused: bool,
    next_tick: Option<Instant>,
    /// The torrent's controller, once the metadata is complete.
    handover: Option<Box<Controller>>,
    /// [`start`](Self::start) ran, on the controller thread: nothing is
    /// dialled before, so that no event of a connection can reach the
    /// controller before the fetch it belongs to.
    started: bool,
    /// A v2 or hybrid torrent's metadata, waiting for its piece layers.
    layers: Option<layers::LayerPhase>,
    finished: bool,
}

impl MetadataFetch {
    /// A fetch that has not started (see [`start`](Self::start)).
    pub(crate) fn new(setup: FetchSetup) -> Self {
        let mut f = MetadataFetch {
            scheduled: None,
            peers: HashMap::new(),
            next_key: FIRST_KEY,
            candidates: VecDeque::new(),
            known: HashSet::new(),
            banned: HashSet::new(),
            retry: Vec::new(),
            skip: HashSet::new(),
            assembler: None,
            single_source: false,
            source: None,
            announcer: None,
            announcer_v2: None,
            transfer: Arc::default(),
            paused: setup.options.paused,
            next_tick: None,
            handover: None,
            started: false,
            layers: None,
            finished: false,
            setup,
        };
        let peers = f.setup.options.peers.clone();
        f.add_candidates(peers);
        f
    }

    /// The status a fetch publishes before any size is known.
    pub(crate) fn initial_status(name: String) -> TorrentStatus {
        TorrentStatus::initial(name, TorrentState::FetchingMetadata, 0)
    }

    pub(crate) fn id(&self) -> TorrentId {
        self.setup.id
    }

    /// Starts announcing and dialling.
    pub(crate) fn start(&mut self) {
        info!("{}: fetching metadata", self.short());
        self.started = true;
        if !self.paused {
            self.start_announcer();
            self.connect_more();
        }
        self.publish();
    }

    /// What the metadata must hash to: SHA-1 (`btih`) when the magnet has
    /// it, else SHA-256 (`btmh`).
    fn metadata_hash(&self) -> MetadataHash {
        match self.setup.info_hash_v2 {
            Some(v2) if InfoHash(v2_truncated(&v2)) == self.setup.info_hash => MetadataHash::V2(v2),
            _ => MetadataHash::V1(self.setup.info_hash),
        }
    }

    /// Whether `m` is the torrent the magnet names: by its v1 hash (and its
    /// v2 hash too, when the link has both), or by its v2 hash alone (a
    /// `btmh`-only link, whose torrent may be a hybrid with a v1 hash of
    /// its own).
    fn names(&self, m: &Metainfo) -> bool {
        let v2_ok = self
            .setup
            .info_hash_v2
            .is_none_or(|h| m.info_hash_v2.is_some_and(|ours| ours.0 == h));
        match self.metadata_hash() {
            MetadataHash::V2(_) => v2_ok,
            MetadataHash::V1(h) => m.info_hash == h && v2_ok,
            _ => false,
        }
    }

    /// The torrent's truncated v2 hash, when the magnet has one.
    fn v2_wire_hash(&self) -> Option<InfoHash> {
        self.setup.info_hash_v2.map(|h| InfoHash(v2_truncated(&h)))
    }

    fn short(&self) -> String {
        self.setup.info_hash.to_hex()[..8].to_string()
    }

    /// The torrent's controller, once the metadata is in.
    pub(crate) fn take_handover(&mut self) -> Option<Box<Controller>> {
        self.handover.take()
    }

    /// Whether the fetch has ended (handed over, removed or failed).
    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.finished {
            None
        } else {
            self.next_tick
        }
    }

    // ---- inputs -------------------------------------------------------

    pub(crate) fn on_command(&mut self, cmd: TorrentCommand) {
        match cmd {
            TorrentCommand::Incoming(stream, hs) => {
                if self.paused || self.peers.len() >= MAX_FETCH_PEERS {
                    return;
                }
                let addr = stream
                    .socket()
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                if !self.banned.contains(&addr) {
                    self.spawn_peer(Origin::Incoming(stream, hs), addr, false);
                }
            }
            TorrentCommand::Pause => {
                self.paused = true;
                let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
                for k in keys {
                    self.close(k);
                }
                self.remove_from_announcer();
                self.publish_state(TorrentState::Paused);
            }
            TorrentCommand::Resume => {
                if self.paused {
                    self.paused = false;
                    let known: Vec<SocketAddr> = self.known.iter().copied().collect();
                    self.add_candidates(known);
                    self.start_announcer();
                    self.publish();
                }
            }
            TorrentCommand::Shutdown => self.end(TorrentState::Stopped),
            TorrentCommand::Reannounce => {
                if !self.paused {
                    for key in self.announcer.into_iter().chain(self.announcer_v2) {
                        self.setup.session.with_announcer(|a| a.need_peers(key));
                    }
                }
            }
        }
    }

    pub(crate) fn add_candidates(&mut self, peers: Vec<SocketAddr>) {
        log::trace!("{}: candidates {peers:?}", self.short());
        for a in peers {
            if self.known.len() < MAX_CANDIDATES {
                self.known.insert(a);
            }
            if !self.banned.contains(&a)
                && !self.skip.contains(&a)
                && !self.retry.iter().any(|(r, _)| *r == a)
                && self.candidates.len() < MAX_CANDIDATES
                && !self.candidates.contains(&a)
                && !self.peers.values().any(|p| p.addr == a)
            {
                self.candidates.push_back(a);
            }
        }
        self.connect_more();
    }

    pub(crate) fn on_timer(&mut self, now: Instant) {
        if self.next_tick.is_some_and(|t| t <= now) {
            self.next_tick = None;
        }
        let stalled: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| {
                !p.closing
                    && self.assembler.as_ref().is_some_and(|a| a.in_flight(k) > 0)
                    && now.duration_since(p.last_progress) > REQUEST_TIMEOUT
            })
            .map(|(k, _)| *k)
            .collect();
        for k in stalled {
            debug!("{}: peer {} sent no metadata in time", self.short(), k.0);
            self.drop_peer(k, None);
        }
        self.cut_late(now);
        self.layers_timer(now);
        let due: Vec<SocketAddr> = self
            .retry
            .iter()
            .filter(|(_, t)| *t <= now)
            .map(|(a, _)| *a)
            .collect();
        self.retry.retain(|(_, t)| *t > now);
        self.add_candidates(due);
        // Short of peers: ask the DHT again (it spaces the lookups by its
        // `lookup_interval`), as the torrent's controller does.
        if !self.paused && self.peers.len() < 5 {
            if let Some(d) = &self.setup.session.dht {
                d.need_peers(self.setup.id);
            }
        }
        self.request_all();
        self.publish();
    }

    /// How long a connection may take to come up: the dial bounds each of
    /// its steps (MSE, then in the clear, then uTP) by the connect timeout
    /// for the connect and as long again for the handshakes; this bounds
    /// the whole, whatever it would wait on.
    fn ready_deadline(&self) -> Duration {
        self.setup.session.config.timing.connect_timeout * 6
    }

    /// Closes the connections that missed a deadline of their stage (see
    /// the module doc); each is dialled again after [`RETRY_AFTER`].
    fn cut_late(&mut self, now: Instant) {
        let ready_deadline = self.ready_deadline();
        let late: Vec<(PeerKey, &'static str)> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.closing)
            .filter_map(|(k, p)| {
                let why = match (p.ready_at, p.extension_at) {
                    (None, _) if now.duration_since(p.started) > ready_deadline => {
                        "no handshake in time"
                    }
                    (Some(at), None) if now.duration_since(at) > EXTENSION_DEADLINE => {
                        "no extension handshake in time"
                    }
                    (Some(_), Some(at))
                        if p.size.is_none() && now.duration_since(at) > SIZE_DEADLINE =>
                    {
                        "no metadata_size (it lacks the metadata)"
                    }
                    _ => return None,
                };
                Some((*k, why))
            })
            .collect();
        for (k, why) in late {
            if let Some(p) = self.peers.get(&k) {
                info!("{} {}: metadata peer closed: {why}", p.addr, self.short());
            }
            self.close(k);
        }
    }

    pub(crate) fn on_peer_msg(&mut self, PeerMsg { key, event, .. }: PeerMsg) {
        log::trace!("{}: peer {}: {event:?}", self.short(), key.0);
        if let PeerEvent::Gone(reason) = event {
            self.peer_gone(key, &reason);
            return;
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if p.closing {
            return;
        }
        match event {
            PeerEvent::Ready {
                addr, v2, v2_bit, ..
            } => {
                p.ready = true;
                p.v2 = v2;
                p.v2_bit = v2_bit;
                p.ready_at = Some(Instant::now());
                p.addr = addr;
                self.publish();
            }
            PeerEvent::ExtensionHandshake(hs) => self.on_handshake(key, &hs),
            PeerEvent::Extended {
                ext: Extension::UtMetadata,
                payload,
            } => self.on_metadata(key, &payload),
            PeerEvent::Hashes { request, hashes } => self.on_hashes(key, &request, &hashes),
            PeerEvent::HashReject(request) => self.on_hash_reject(key, &request),
            _ => {}
        }
    }

    fn on_handshake(&mut self, key: PeerKey, hs: &ExtensionHandshake) {
        if let (Some(ip), Some(p)) = (hs.yourip, self.peers.get(&key)) {
            self.setup.session.learn_external_ip(ip, p.addr.ip());
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if hs.id_for(Extension::UtMetadata).is_none() {
            // Of no use until we have the metadata: free the slot; the
            // torrent dials it again afterwards.
            let addr = p.addr;
            debug!("{addr} {}: no ut_metadata", self.short());
            self.skip.insert(addr);
            self.close(key);
            return;
        }
        match hs.metadata_size {
            Some(size) if size > MAX_METADATA_SIZE => {
                let e = MetadataError::TooLarge {
                    size,
                    max: MAX_METADATA_SIZE,
                };
                self.drop_peer(key, Some(e));
            }
            Some(0) => self.drop_peer(key, Some(MetadataError::Empty)),
            size => {
                p.size = size;
                p.extension_at = Some(Instant::now());
                self.request_all();
            }
        }
    }

    fn on_metadata(&mut self, key: PeerKey, payload: &[u8]) {
        let msg = match MetadataMessage::decode(payload) {
            Ok(m) => m,
            Err(e) => return self.drop_peer(key, Some(e)),
        };
        let Some(a) = self.assembler.as_mut() else {
            // Nothing was asked: a data or reject now is unsolicited.
            if let MetadataMessage::Data { piece, .. } | MetadataMessage::Reject { piece } = msg {
                self.drop_peer(key, Some(MetadataError::Unsolicited { piece }));
            }
            return;
        };
        let result = match msg {
            MetadataMessage::Request { .. } => return,
            MetadataMessage::Reject { piece } => match a.reject(&key, piece) {
                Ok(false) => Ok(None),
                Ok(true) => {
                    debug!("{}: peer {} rejects every piece", self.short(), key.0);
                    return self.drop_peer(key, None);
                }
                Err(e) => Err(e),
            },
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => a.accept(&key, piece, total_size, data).map(Some),
        };
        if let Some(p) = self.peers.get_mut(&key) {
            p.last_progress = Instant::now();
        }
        match result {
            Err(MetadataError::Finished) => {}
            Err(e) => self.drop_peer(key, Some(e)),
            Ok(None | Some(Accepted::Stored | Accepted::Duplicate)) => self.request_all(),
            Ok(Some(Accepted::HashFailed { contributors })) => {
                self.hash_failed(contributors);
                self.request_all();
            }
            Ok(Some(Accepted::Complete(bytes))) => self.complete(bytes),
        }
    }

    fn hash_failed(&mut self, contributors: Vec<PeerKey>) {
        warn!(
            "{}: metadata from {} peer(s) failed the info hash",
            self.short(),
            contributors.len()
        );
        if let [one] = contributors.as_slice() {
            self.emit_violation(*one, Violation::MetadataHash);
            self.drop_peer(*one, None);
        } else {
            self.single_source = true;
        }
    }

    // ---- peers --------------------------------------------------------

    pub(crate) fn connect_more(&mut self) {
        if self.paused || self.finished || !self.started {
            return;
        }
        let max = MAX_FETCH_PEERS.min(self.setup.session.config.max_peers_per_torrent);
        let mut tries = self.candidates.len();
        while tries > 0
            && self.peers.len() < max
            && self.setup.session.connections.load(Ordering::Relaxed)
                < self.setup.session.config.max_connections
        {
            tries -= 1;
            let Some(addr) = self.candidates.pop_front() else {
                break;
            };
            if self.banned.contains(&addr)
                || self.peers.values().any(|p| p.addr == addr)
                || (addr.port() == self.setup.session.port && addr.ip().is_loopback())
                || self.setup.session.blocked(addr.ip())
            {
                continue;
            }
            if !self.setup.session.half_open.turn(self.setup.id) {
                // The session's half-open bound (see `halfopen`).
                self.candidates.push_front(addr);
                break;
            }
            self.spawn_peer(Origin::Outgoing(addr), addr, false);
        }
        self.arm_tick();
    }

    fn arm_tick(&mut self) {
        if self.next_tick.is_none() && !self.finished {
            self.next_tick = Some(Instant::now() + TICK);
        }
    }

    /// Starts a connection; `name_v2`: an outgoing one names the torrent
    /// by its truncated v2 hash (a hybrid's v2 connection, see `layers`).
    pub(super) fn spawn_peer(&mut self, origin: Origin, addr: SocketAddr, name_v2: bool) {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let outgoing = matches!(origin, Origin::Outgoing(_));
        let (tx, rx) = bounded(64);
        let socket = Arc::new(SocketSlot::default());
        let mut conn = Connection::new(self.setup.session.connections.clone(), socket.clone());
        if outgoing {
            conn = conn.dialing(self.setup.session.half_open.count.clone());
        }
        let ctx = MetaContext {
            torrent: self.setup.id,
            key,
            info_hash: match (name_v2, self.v2_wire_hash()) {
                (true, Some(v2)) => v2,
                _ => self.setup.info_hash,
            },
            v2: self.v2_wire_hash(),
            our_id: self.setup.session.peer_id,
            listen_port: self.setup.session.port,
            events: self.setup.links.peers.clone(),
            timing: self.setup.session.config.timing.clone(),
            encryption: self.setup.session.encryption(),
            dial: self.setup.session.dial.clone(),
            own_ips: self.setup.session.own_ips(),
        };
        // The thread is not joined: it ends on its own once closed or cut
        // (its `Gone` may reach the torrent's controller after the
        // hand-over, which ignores keys it does not know).
        match spawn_meta(ctx, origin, rx, conn) {
            Ok(_thread) => {
                self.peers.insert(
                    key,
                    MetaPeer {
                        addr,
                        outgoing,
                        commands: tx,
                        socket,
                        ready: false,
                        started: Instant::now(),
                        ready_at: None,
                        extension_at: None,
                        v2: false,
                        v2_bit: false,
                        size: None,
                        last_progress: Instant::now(),
                        closing: false,
                    },
                );
            }
            Err(e) => warn!("cannot start a metadata peer thread: {e}"),
        }
    }

    fn close(&mut self, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.closing = true;
            let _ = p.commands.try_send(PeerCommand::Close);
            p.socket.cut();
        }
    }

    /// Closes a peer that broke the exchange and never dials it again.
    fn drop_peer(&mut self, key: PeerKey, error: Option<MetadataError>) {
        if let Some(e) = error {
            debug!("{}: peer {}: {e}", self.short(), key.0);
            self.emit_violation(key, Violation::Metadata(e));
        }
        if let Some(p) = self.peers.get(&key) {
            self.banned.insert(p.addr);
        }
        if let Some(a) = self.assembler.as_mut() {
            a.peer_gone(&key);
        }
        self.layers_peer_gone(key);
        self.close(key);
    }

    fn emit_violation(&self, key: PeerKey, violation: Violation) {
        if let Some(p) = self.peers.get(&key) {
            self.emit(TorrentEvent::PeerViolation {
                addr: p.addr,
                violation,
            });
        }
    }

    fn peer_gone(&mut self, key: PeerKey, reason: &PeerError) {
        let Some(p) = self.peers.remove(&key) else {
            return;
        };
        debug!("{} {}: metadata peer gone: {reason}", p.addr, self.short());
        if let PeerError::Protocol(v) = reason {
            self.banned.insert(p.addr);
            self.emit(TorrentEvent::PeerViolation {
                addr: p.addr,
                violation: v.clone(),
            });
        }
        if let Some(a) = self.assembler.as_mut() {
            a.peer_gone(&key);
        }
        self.layers_peer_gone(key);
        if p.outgoing
            && !self.banned.contains(&p.addr)
            && !self.skip.contains(&p.addr)
            && !self.finished
        {
            self.retry.push((p.addr, Instant::now() + RETRY_AFTER));
        }
        // No peer left with the assembler's size: start over with another.
        let size = self.assembler.as_ref().map(MetadataAssembler::size);
        if size.is_some() && !self.peers.values().any(|q| !q.closing && q.size == size) {
            self.assembler = None;
        }
        self.connect_more();
        self.request_all();
        self.publish();
    }

    // ---- status -------------------------------------------------------

    fn emit(&self, e: TorrentEvent) {
        self.setup.events.push(e);
    }

    fn publish(&self) {
        let mut st = self.setup.published.status.lock();
        st.peers_connected = self
            .peers
            .values()
            .filter(|p| p.ready && !p.closing)
            .count();
        st.peers_connecting = self
            .peers
            .values()
            .filter(|p| !p.ready && !p.closing)
            .count();
        st.peers_known = self.known.len();
        if let Some(a) = &self.assembler {
            // Progress of the metadata itself, until the size is known.
            st.progress = a.pieces_have() as f64 / a.piece_count() as f64;
        }
        if !self.paused {
            st.state = TorrentState::FetchingMetadata;
        }
    }

    fn publish_state(&self, state: TorrentState) {
        self.setup.published.status.lock().state = state.clone();
        self.emit(TorrentEvent::StateChanged(state));
    }
}
