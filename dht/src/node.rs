//! The sans-IO DHT node: datagrams and time in, datagrams and events out.
//!
//! [`Node`] owns the routing table, tokens, peer store, transactions and
//! lookups, and does no IO and reads no clock: every call takes `now`.
//! After each call, drain [`Node::poll_transmit`] (datagrams to send) and
//! [`Node::poll_event`] (peers as found, finished lookups), and call [`Node::tick`] again at
//! [`Node::next_timeout`]. The same code runs under the socket layer
//! ([`crate::Dht`]) and under the in-process simulation in the tests.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bittern_wire::InfoHash;
use rand::rngs::StdRng;
use rand::SeedableRng;

mod serve;

use crate::id::NodeId;
use crate::krpc::{Body, Message, NodeInfo, Query, QueryKind, Response, Want};
use crate::lookup::{Lookup, LookupKind, LookupParams, LookupResult};
use crate::peers::{PeerLimits, PeerStore};
use crate::ratelimit::{DropLog, RateLimiter};
use crate::routing::{Inserted, RoutingTable, DEFAULT_PER_IP, K};
use crate::state::{SavedState, SAVED_NODES};
use crate::token::Tokens;

/// Our KRPC client version (`v`): "BN" and version 0.1.
pub const VERSION: &[u8; 4] = b"BN\x00\x01";
/// Peers put in one get_peers reply (keeps the reply near the size of the
/// query times a small factor: 50 x 6 bytes).
const MAX_VALUES: usize = 50;
/// Routine maintenance (token rotation, expiry, bucket refresh) period.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Settings of a [`Node`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Our id; random when `None`.
    pub id: Option<NodeId>,
    /// Queries in flight per lookup (α).
    pub alpha: usize,
    /// After this long an unanswered lookup query stops holding a slot.
    pub slow_after: Duration,
    /// After this long an unanswered query has failed.
    pub query_timeout: Duration,
    /// A lookup ends after this long whatever its state.
    pub lookup_timeout: Duration,
    /// Most transactions outstanding at once; queries beyond are not sent.
    pub max_pending: usize,
    /// Bounds of the announced-peer store.
    pub peer_limits: PeerLimits,
    /// Queries answered per second per source IP (bursts of twice that);
    /// beyond it queries are dropped unanswered. 0: no limit.
    pub query_rate: u32,
    /// Queries answered per second from all sources together (bursts of
    /// twice that): bounds the CPU and the bytes sent when a flood comes
    /// from many addresses. 0: no limit.
    pub global_query_rate: u32,
    /// Most routing-table entries one IP may hold.
    pub max_nodes_per_ip: usize,
    /// Seed of the node's random numbers (ids, secrets, samples); from the
    /// OS when `None`. Fixed seeds make simulations repeatable.
    pub seed: Option<u64>,
    /// BEP 42 enforced: a node whose id does not match its IP never
    /// enters the routing table (local-network addresses are exempt).
    /// Off by default, as in libtorrent; our own id follows BEP 42 either
    /// way once our external address is known.
    pub enforce_node_id: bool,
    /// Replies (from this many different IPs) that must name the same
    /// external address in their `ip` key before we take it as ours.
    pub external_ip_votes: usize,
}

impl Default for Config {
    /// α = 3, slow after 1 s, failed after 4 s, lookups end after 60 s,
    /// 2048 transactions, 500 queries/s per source IP and 5,000/s in all,
    /// 16 table entries per IP.
    fn default() -> Self {
        Config {
            id: None,
            alpha: 3,
            slow_after: Duration::from_secs(1),
            query_timeout: Duration::from_secs(4),
            lookup_timeout: Duration::from_secs(60),
            max_pending: 2048,
            peer_limits: PeerLimits::default(),
            query_rate: 500,
            global_query_rate: 5_000,
            max_nodes_per_ip: DEFAULT_PER_IP,
            seed: None,
            enforce_node_id: false,
            external_ip_votes: 3,
        }
    }
}

/// Identifies a lookup started on a [`Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// Something the node reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A get_peers or announce lookup learned new peers (sent as they
    /// arrive, before the lookup converges; they are in the final result too).
    PeersFound {
        /// Which lookup.
        id: LookupId,
        /// Peers not reported before.
        peers: Vec<SocketAddr>,
    },
    /// A lookup started by the user finished.
    LookupDone {
        /// Which one.
        id: LookupId,
        /// What it found.
        result: LookupResult,
    },
}

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// KRPC payload.
    pub bytes: Vec<u8>,
}

/// Counters, for stats and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams handled.
    pub received: u64,
    /// Datagrams that were not KRPC (dropped).
    pub malformed: u64,
    /// Replies with an unknown transaction id or from an address other
    /// than the one queried (dropped).
    pub unexpected: u64,
    /// Queries answered.
    pub queries_answered: u64,
    /// Queries we sent.
    pub queries_sent: u64,
    /// Our queries that timed out.
    pub timeouts: u64,
    /// announce_peer refused for a bad token.
    pub bad_tokens: u64,
    /// Queries dropped by the per-IP rate limit.
    pub rate_limited: u64,
    /// Nodes kept out of the routing table for an id that does not match
    /// their IP (BEP 42, when enforced).
    pub insecure_ids: u64,
    /// Times our id was replaced by one secure for our external address.
    pub id_changes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A lookup query.
    Lookup(u64),
    /// An announce_peer of a lookup.
    Announce(u64),
    /// A ping to verify a node before it enters the table.
    Ping,
}

#[derive(Debug)]
struct Pending {
    to: SocketAddr,
    id: Option<NodeId>,
    sent: Instant,
    purpose: Purpose,
}

#[derive(Debug)]
struct Running {
    lookup: Lookup,
    started: Instant,
    /// Internal lookups (bucket refresh) report no event.
    report: bool,
    /// A bootstrap: when done, fill the buckets it left short.
    bootstrap: bool,
}

/// A DHT node without IO.
#[derive(Debug)]
pub struct Node {
    config: Config,
    table: RoutingTable,
    tokens: Tokens,
    peers: PeerStore,
    rng: StdRng,
    pending: HashMap<u16, Pending>,
    next_tid: u16,
    lookups: HashMap<u64, Running>,
    next_lookup: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<Event>,
    maintenance_at: Instant,
    limiter: RateLimiter,
    /// The all-sources budget: one bucket keyed by the unspecified IP.
    global: RateLimiter,
    drop_limited: DropLog,
    drop_unexpected: DropLog,
    drop_malformed: DropLog,
    stats: Stats,
    /// Our external address as the `ip` key of replies tells it: each
    /// candidate address with the IPs that named it (bounded).
    votes: HashMap<IpAddr, Vec<IpAddr>>,
    /// Our external address, once enough replies agree.
    external: Option<IpAddr>,
    /// Good contacts of the other address family's node on a dual-stack
    /// host, for BEP 32 `want` (bounded by [`MAX_OTHER_FAMILY`]).
    other_family: Vec<NodeInfo>,
}

/// Other-family contacts kept for BEP 32 `want` answers.
pub const MAX_OTHER_FAMILY: usize = 64;

/// Candidate external addresses remembered (votes beyond are dropped).
const MAX_VOTE_CANDIDATES: usize = 16;

impl Node {
    /// A node with an empty routing table.
    pub fn new(config: Config, now: Instant) -> Node {
        let mut rng = match config.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let id = config.id.unwrap_or_else(|| NodeId::random(&mut rng));
        let tokens = Tokens::new(now, &mut rng);
        Node {
            table: RoutingTable::with_per_ip(id, now, config.max_nodes_per_ip),
            tokens,
            peers: PeerStore::new(config.peer_limits),
            rng,
            pending: HashMap::new(),
            next_tid: 0,
            lookups: HashMap::new(),
            next_lookup: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            maintenance_at: now + MAINTENANCE_EVERY,
            limiter: RateLimiter::new(config.query_rate, config.query_rate.saturating_mul(2), 4096),
            global: RateLimiter::new(
                config.global_query_rate,
                config.global_query_rate.saturating_mul(2),
                1,
            ),
            drop_limited: DropLog::new("queries over the rate limit", log::Level::Warn),
            drop_unexpected: DropLog::new("replies to no query of ours", log::Level::Info),
            drop_malformed: DropLog::new("malformed datagrams", log::Level::Info),
            stats: Stats::default(),
            votes: HashMap::new(),
            external: None,
            other_family: Vec::new(),
            config,
        }
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.table.own_id()
    }

    /// The routing table (read-only).
    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// The peers announced to us.
    pub fn peer_store(&self) -> &PeerStore {
        &self.peers
    }

    /// Our id and up to [`SAVED_NODES`] good contacts (most recently
    /// heard from first), to rejoin after a restart.
    pub fn saved_state(&self, now: Instant) -> SavedState {
        let mut good: Vec<&crate::routing::Entry> = self
            .table
            .entries()
            .filter(|e| e.state(now) == crate::routing::NodeState::Good)
            .collect();
        good.sort_by_key(|e| std::cmp::Reverse(e.last_response));
        SavedState {
            id: self.id(),
            nodes: good.into_iter().take(SAVED_NODES).map(|e| e.info).collect(),
        }
    }

    /// On a dual-stack host, the other address family's node's good
    /// contacts (e.g. its [`Node::saved_state`] nodes): a querier whose
    /// BEP 32 `want` names that family gets the closest of them (our own
    /// table has none of that family). At most [`MAX_OTHER_FAMILY`] kept.
    pub fn set_other_family(&mut self, nodes: &[NodeInfo]) {
        self.other_family = nodes.iter().take(MAX_OTHER_FAMILY).copied().collect();
    }

    /// Our external address, once `external_ip_votes` replies from
    /// different IPs agreed on it (BEP 42 `ip` key).
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external
    }

    /// Counts one word on our external address from `voter`: the `ip` key
    /// of a reply we asked for (counted by the node itself), or what a
    /// peer said (`yourip`, BEP 10) through the caller. When
    /// `external_ip_votes` different IPs agree on a new address, adopts it
    /// and, unless it is a local-network address, takes a BEP 42 id for it
    /// if ours is not one (the routing table is rebuilt around the new id).
    pub fn vote_external_ip(&mut self, voter: IpAddr, ours: IpAddr, now: Instant) {
        if ours.is_unspecified() || self.external == Some(ours) {
            return;
        }
        if !self.votes.contains_key(&ours) && self.votes.len() >= MAX_VOTE_CANDIDATES {
            return;
        }
        let voters = self.votes.entry(ours).or_default();
        if !voters.contains(&voter) {
            voters.push(voter);
        }
        if voters.len() < self.config.external_ip_votes.max(1) {
            return;
        }
        self.votes.clear();
        self.external = Some(ours);
        log::info!("dht: our external address is {ours}");
        let own = self.id();
        if crate::bep42::is_exempt(ours) || crate::bep42::is_secure(&own, ours) {
            return;
        }
        let id = crate::bep42::secure_id(ours, &mut self.rng);
        log::info!("dht: new node id {id} (BEP 42, for {ours})");
        self.table = self.table.with_own_id(id, now);
        self.stats.id_changes += 1;
    }

    /// Whether a node may enter the routing table under BEP 42.
    fn id_allowed(&mut self, info: &NodeInfo) -> bool {
        if !self.config.enforce_node_id || crate::bep42::id_allowed(&info.id, info.addr.ip()) {
            return true;
        }
        self.stats.insecure_ids += 1;
        false
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Lookups in progress.
    pub fn lookups_running(&self) -> usize {
        self.lookups.len()
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::tick`] must run next.
    pub fn next_timeout(&self) -> Instant {
        let mut t = self.maintenance_at;
        for p in self.pending.values() {
            t = t.min(p.sent + self.config.query_timeout);
        }
        for r in self.lookups.values() {
            t = t.min(r.started + self.config.lookup_timeout);
            if let Some(d) = r.lookup.next_deadline() {
                t = t.min(d);
            }
        }
        t
    }

    /// Pings `addr`; if it answers it enters the routing table (like
    /// libtorrent's `add_dht_node`).
    pub fn add_node(&mut self, addr: SocketAddr, now: Instant) {
        self.send_query(addr, None, QueryKind::Ping, Purpose::Ping, now);
    }

    /// Joins the DHT through `nodes`: a find_node lookup for our own id
    /// seeded with them (and whatever the table holds).
    pub fn bootstrap(&mut self, nodes: &[SocketAddr], now: Instant) -> LookupId {
        let own = self.id();
        let id = self.start(own, LookupKind::FindNode, nodes, true, now);
        if let Some(run) = self.lookups.get_mut(&id.0) {
            run.bootstrap = true;
        }
        id
    }

    /// After a bootstrap: a find_node lookup into every bucket that is not
    /// full (BEP 5 refresh), so the far buckets fill too, not only ours.
    fn fill_buckets(&mut self, now: Instant) {
        let sizes = self.table.bucket_sizes();
        let own = self.id();
        for (prefix, size) in sizes.into_iter().enumerate() {
            if size < K {
                let target = own.random_at_prefix(prefix, &mut self.rng);
                self.start(target, LookupKind::FindNode, &[], false, now);
            }
        }
    }

    /// Starts a find_node lookup.
    pub fn find_node(&mut self, target: NodeId, now: Instant) -> LookupId {
        self.start(target, LookupKind::FindNode, &[], true, now)
    }

    /// Starts a get_peers lookup.
    pub fn get_peers(&mut self, info_hash: InfoHash, now: Instant) -> LookupId {
        self.start(info_hash.into(), LookupKind::GetPeers, &[], true, now)
    }

    /// Starts an announce: a get_peers lookup, then announce_peer to the k
    /// closest nodes that gave a token. `port: None` announces our UDP
    /// source port (`implied_port`), which is the uTP port when DHT and uTP
    /// share a socket.
    pub fn announce(&mut self, info_hash: InfoHash, port: Option<u16>, now: Instant) -> LookupId {
        let kind = LookupKind::Announce {
            port: port.unwrap_or(0),
            implied_port: port.is_none(),
        };
        self.start(info_hash.into(), kind, &[], true, now)
    }

    fn start(
        &mut self,
        target: NodeId,
        kind: LookupKind,
        seeds: &[SocketAddr],
        report: bool,
        now: Instant,
    ) -> LookupId {
        let params = LookupParams {
            alpha: self.config.alpha.max(1),
            k: K,
            slow_after: self.config.slow_after,
            own: self.id(),
        };
        let known = self.table.closest(&target, K * 2, now);
        let id = self.next_lookup;
        self.next_lookup += 1;
        let mut lookup = Lookup::new(target, kind, params, &known, seeds);
        if kind != LookupKind::FindNode {
            // peers announced to us count too (in a small swarm we may be
            // one of the k closest nodes ourselves)
            let local = self
                .peers
                .get(&InfoHash(target.0), MAX_VALUES, now, &mut self.rng);
            lookup.add_peers(&local);
            if report && !local.is_empty() {
                self.events.push_back(Event::PeersFound {
                    id: LookupId(id),
                    peers: local,
                });
            }
        }
        self.lookups.insert(
            id,
            Running {
                lookup,
                started: now,
                report,
                bootstrap: false,
            },
        );
        self.drive(id, now);
        LookupId(id)
    }

    /// Sends what lookup `id` wants sent and reports it when done.
    fn drive(&mut self, id: u64, now: Instant) {
        let Some(run) = self.lookups.get_mut(&id) else {
            return;
        };
        let target = run.lookup.target();
        let kind = run.lookup.kind();
        let queries = run.lookup.next_queries(now);
        let announces = run.lookup.advance();
        let expired = now.saturating_duration_since(run.started) >= self.config.lookup_timeout;
        let want = Want::default();
        for addr in queries {
            let q = match kind {
                LookupKind::FindNode => QueryKind::FindNode { target, want },
                _ => QueryKind::GetPeers {
                    info_hash: InfoHash(target.0),
                    want,
                },
            };
            if !self.send_query(addr, None, q, Purpose::Lookup(id), now) {
                if let Some(run) = self.lookups.get_mut(&id) {
                    run.lookup.on_failure(addr);
                }
            }
        }
        if let LookupKind::Announce { port, implied_port } = kind {
            for (node, token) in announces {
                let q = QueryKind::AnnouncePeer {
                    info_hash: InfoHash(target.0),
                    port,
                    token,
                    implied_port,
                };
                if !self.send_query(node.addr, Some(node.id), q, Purpose::Announce(id), now) {
                    if let Some(run) = self.lookups.get_mut(&id) {
                        run.lookup.on_announce_reply(false);
                    }
                }
            }
        }
        let done = self.lookups.get(&id).is_some_and(|r| r.lookup.is_done());
        if done || expired {
            if let Some(run) = self.lookups.remove(&id) {
                // queries still in flight stay pending: a late reply still
                // refreshes the routing table, and silence still counts
                if run.bootstrap {
                    self.fill_buckets(now);
                }
                if run.report {
                    self.events.push_back(Event::LookupDone {
                        id: LookupId(id),
                        result: run.lookup.result(),
                    });
                }
            }
        }
    }

    /// Encodes and queues a query; false when the transaction table is full.
    fn send_query(
        &mut self,
        to: SocketAddr,
        id: Option<NodeId>,
        kind: QueryKind,
        purpose: Purpose,
        now: Instant,
    ) -> bool {
        if self.pending.len() >= self.config.max_pending {
            log::debug!("dht: transaction table full, not querying {to}");
            return false;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        let msg = Message {
            tid: tid.to_be_bytes().to_vec(),
            version: Some(VERSION.to_vec()),
            ip: None,
            read_only: false,
            body: Body::Query(Query {
                id: self.id(),
                kind,
            }),
        };
        self.out.push_back(Transmit {
            to,
            bytes: msg.encode(),
        });
        self.pending.insert(
            tid,
            Pending {
                to,
                id,
                sent: now,
                purpose,
            },
        );
        self.stats.queries_sent += 1;
        true
    }

    /// Handles one datagram received from `from`. Anything that is not a
    /// well-formed KRPC message, and any reply we did not ask `from` for, is
    /// counted and dropped.
    pub fn handle_datagram(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        self.stats.received += 1;
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                log::trace!("dht: dropped malformed packet from {from}: {e}");
                self.drop_malformed.note(from, now);
                return;
            }
        };
        match msg.body {
            Body::Query(q) => {
                let everyone = std::net::IpAddr::from([0u8, 0, 0, 0]);
                if self.limiter.allow(from.ip(), now) && self.global.allow(everyone, now) {
                    self.on_query(from, msg.tid, msg.read_only, q, now);
                } else {
                    self.stats.rate_limited += 1;
                    self.drop_limited.note(from, now);
                }
            }
            Body::Response(r) => self.on_reply(from, &msg.tid, Some(r), msg.ip, now),
            Body::Error { code, message } => {
                log::debug!("dht: error {code} from {from}: {message}");
                self.on_reply(from, &msg.tid, None, None, now);
            }
        }
    }

    fn on_reply(
        &mut self,
        from: SocketAddr,
        tid: &[u8],
        r: Option<Response>,
        ours: Option<SocketAddr>,
        now: Instant,
    ) {
        let key = match <[u8; 2]>::try_from(tid) {
            Ok(b) => u16::from_be_bytes(b),
            Err(_) => {
                self.stats.unexpected += 1;
                self.drop_unexpected.note(from, now);
                return;
            }
        };
        match self.pending.get(&key) {
            Some(p) if p.to == from => {}
            _ => {
                self.stats.unexpected += 1;
                self.drop_unexpected.note(from, now);
                return;
            }
        }
        let Some(p) = self.pending.remove(&key) else {
            return;
        };
        if let Some(ours) = ours {
            // only a reply we asked for votes, so a spoofer cannot
            self.vote_external_ip(from.ip(), ours.ip(), now);
        }
        if let Some(r) = &r {
            if p.id.is_some_and(|id| id != r.id) {
                log::debug!("dht: {from} answered with another id");
            }
            let info = NodeInfo {
                id: r.id,
                addr: from,
            };
            if !self.id_allowed(&info) {
                log::debug!("dht: {from} has an id not secure for its ip (BEP 42)");
            } else if let Inserted::Replacement(ping) = self.table.insert(info, true, now) {
                for n in ping {
                    self.send_query(n.addr, Some(n.id), QueryKind::Ping, Purpose::Ping, now);
                }
            }
        }
        match p.purpose {
            Purpose::Ping => {}
            Purpose::Lookup(id) => {
                if let Some(run) = self.lookups.get_mut(&id) {
                    match &r {
                        Some(r) => {
                            let before = run.lookup.peers().len();
                            run.lookup.on_response(from, r);
                            let new = &run.lookup.peers()[before..];
                            if run.report && !new.is_empty() {
                                self.events.push_back(Event::PeersFound {
                                    id: LookupId(id),
                                    peers: new.to_vec(),
                                });
                            }
                        }
                        None => run.lookup.on_failure(from),
                    }
                }
                self.drive(id, now);
            }
            Purpose::Announce(id) => {
                if let Some(run) = self.lookups.get_mut(&id) {
                    run.lookup.on_announce_reply(r.is_some());
                }
                self.drive(id, now);
            }
        }
    }

    /// Gives back the room of the query and lookup tables once mostly
    /// empty: a burst (a daemon announcing 2,000 torrents at start) sizes
    /// them for thousands of entries, which std's maps keep for good.
    fn shrink(&mut self) {
        fn sparse(len: usize, capacity: usize) -> Option<usize> {
            (capacity > 32 && len * 4 <= capacity).then_some(len * 2)
        }
        if let Some(n) = sparse(self.pending.len(), self.pending.capacity()) {
            self.pending.shrink_to(n);
        }
        if let Some(n) = sparse(self.lookups.len(), self.lookups.capacity()) {
            self.lookups.shrink_to(n);
        }
        if let Some(n) = sparse(self.out.len(), self.out.capacity()) {
            self.out.shrink_to(n);
        }
        if let Some(n) = sparse(self.events.len(), self.events.capacity()) {
            self.events.shrink_to(n);
        }
    }

    /// Runs timers: failed queries, slow lookup queries, lookup deadlines,
    /// and every minute token rotation, peer expiry and bucket refresh.
    pub fn tick(&mut self, now: Instant) {
        let timeout = self.config.query_timeout;
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        let mut touched = Vec::new();
        for key in expired {
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            self.stats.timeouts += 1;
            if let Some(id) = p.id {
                self.table.failed(&id, p.to, now);
            } else {
                let known = self
                    .table
                    .entries()
                    .find(|e| e.info.addr == p.to)
                    .map(|e| e.info.id);
                if let Some(id) = known {
                    self.table.failed(&id, p.to, now);
                }
            }
            match p.purpose {
                Purpose::Ping => {}
                Purpose::Lookup(id) => {
                    if let Some(run) = self.lookups.get_mut(&id) {
                        run.lookup.on_failure(p.to);
                        touched.push(id);
                    }
                }
                Purpose::Announce(id) => {
                    if let Some(run) = self.lookups.get_mut(&id) {
                        run.lookup.on_announce_reply(false);
                        touched.push(id);
                    }
                }
            }
        }
        touched.extend(self.lookups.keys().copied());
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            self.drive(id, now);
        }
        if now >= self.maintenance_at {
            self.maintenance_at = now + MAINTENANCE_EVERY;
            self.tokens.maybe_rotate(now, &mut self.rng);
            self.peers.expire(now);
            self.shrink();
            if !self.table.is_empty() {
                for target in self.table.refresh_targets(now, &mut self.rng) {
                    self.start(target, LookupKind::FindNode, &[], false, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::krpc::ERR_PROTOCOL;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn node(seed: u64) -> Node {
        let config = Config {
            seed: Some(seed),
            ..Config::default()
        };
        Node::new(config, Instant::now())
    }

    fn query(id: NodeId, tid: &[u8], kind: QueryKind) -> Vec<u8> {
        Message {
            tid: tid.to_vec(),
            version: None,
            ip: None,
            read_only: false,
            body: Body::Query(Query { id, kind }),
        }
        .encode()
    }

    /// The one reply `n` queued to `to`, decoded.
    fn reply_to(n: &mut Node, to: SocketAddr) -> Message {
        let mut found = None;
        while let Some(t) = n.poll_transmit() {
            let m = Message::decode(&t.bytes).unwrap();
            if t.to == to && !matches!(m.body, Body::Query(_)) {
                found = Some(m);
            }
        }
        found.expect("no reply")
    }

    #[test]
    fn announce_needs_a_token_bound_to_the_ip_and_honours_implied_port() {
        let now = Instant::now();
        let mut n = node(1);
        let me = NodeId([5; 20]);
        let ih = InfoHash([9; 20]);
        let from = addr(4000);
        n.handle_datagram(
            from,
            &query(
                me,
                b"g1",
                QueryKind::GetPeers {
                    info_hash: ih,
                    want: Want::default(),
                },
            ),
            now,
        );
        let Body::Response(r) = reply_to(&mut n, from).body else {
            panic!("not a response")
        };
        let token = r.token.expect("get_peers reply has a token");
        assert!(r.values.is_empty());
        // a token from another ip is refused with error 203
        let other: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        let ann = |token: Vec<u8>, implied_port| QueryKind::AnnouncePeer {
            info_hash: ih,
            port: 7000,
            token,
            implied_port,
        };
        n.handle_datagram(other, &query(me, b"a1", ann(token.clone(), false)), now);
        let m = reply_to(&mut n, other);
        assert!(
            matches!(
                m.body,
                Body::Error {
                    code: ERR_PROTOCOL,
                    ..
                }
            ),
            "{m:?}"
        );
        assert_eq!(n.stats().bad_tokens, 1);
        assert!(n.peer_store().is_empty());
        // the right ip stores the UDP source port when implied_port is set
        n.handle_datagram(from, &query(me, b"a2", ann(token, true)), now);
        assert!(matches!(reply_to(&mut n, from).body, Body::Response(_)));
        n.handle_datagram(
            from,
            &query(
                me,
                b"g2",
                QueryKind::GetPeers {
                    info_hash: ih,
                    want: Want::default(),
                },
            ),
            now,
        );
        let Body::Response(r) = reply_to(&mut n, from).body else {
            panic!("not a response")
        };
        assert_eq!(r.values, vec![from]);
    }

    #[test]
    fn replies_are_matched_to_the_address_queried() {
        let now = Instant::now();
        let mut n = node(2);
        let b = addr(5000);
        n.add_node(b, now);
        let t = n.poll_transmit().unwrap();
        assert_eq!(t.to, b);
        let tid = Message::decode(&t.bytes).unwrap().tid;
        let resp = |tid: Vec<u8>| {
            Message {
                tid,
                version: None,
                ip: None,
                read_only: false,
                body: Body::Response(Response {
                    id: NodeId([1; 20]),
                    ..Response::default()
                }),
            }
            .encode()
        };
        // right tid, wrong source: dropped
        n.handle_datagram(addr(5001), &resp(tid.clone()), now);
        // wrong tid, right source: dropped
        n.handle_datagram(b, &resp(vec![0xff, 0xfe]), now);
        assert_eq!(n.stats().unexpected, 2);
        assert!(n.routing_table().is_empty());
        // the real answer enters the table; a replay of it is unexpected
        n.handle_datagram(b, &resp(tid.clone()), now);
        assert_eq!(n.routing_table().len(), 1);
        n.handle_datagram(b, &resp(tid), now);
        assert_eq!(n.stats().unexpected, 3);
        // garbage is counted
        n.handle_datagram(b, b"d1:xe", now);
        n.handle_datagram(b, b"\x01\x02garbage", now);
        assert_eq!(n.stats().malformed, 2);
    }

    #[test]
    fn unanswered_queries_time_out_and_a_querier_is_pinged_before_it_enters() {
        let t0 = Instant::now();
        let mut n = node(3);
        let q = addr(6000);
        n.handle_datagram(q, &query(NodeId([7; 20]), b"p1", QueryKind::Ping), t0);
        // a reply, and a ping to verify the querier
        let sent: Vec<Transmit> = std::iter::from_fn(|| n.poll_transmit()).collect();
        assert_eq!(sent.len(), 2);
        assert!(
            n.routing_table().is_empty(),
            "a querier does not enter unverified"
        );
        assert!(n.next_timeout() <= t0 + Config::default().query_timeout);
        n.tick(t0 + Config::default().query_timeout);
        assert_eq!(n.stats().timeouts, 1);
        assert!(n.routing_table().is_empty());
    }

    #[test]
    fn ten_thousand_ids_from_one_address_take_one_slot() {
        let now = Instant::now();
        // no rate limit: this is about the table
        let config = Config {
            query_rate: 0,
            seed: Some(4),
            ..Config::default()
        };
        let mut n = Node::new(config, now);
        let liar = addr(7000);
        let mut pings = 0;
        for i in 0..10_000u32 {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[19] = 0x5a;
            n.handle_datagram(liar, &query(NodeId(id), b"q1", QueryKind::Ping), now);
            while let Some(t) = n.poll_transmit() {
                let m = Message::decode(&t.bytes).unwrap();
                if let Body::Query(_) = m.body {
                    pings += 1;
                    // the liar answers every ping, each time with a new id
                    let mut rid = id;
                    rid[18] = 1;
                    let r = Message {
                        tid: m.tid,
                        version: None,
                        ip: None,
                        read_only: false,
                        body: Body::Response(Response {
                            id: NodeId(rid),
                            ..Response::default()
                        }),
                    };
                    n.handle_datagram(liar, &r.encode(), now);
                }
            }
        }
        assert_eq!(n.routing_table().len(), 1, "one address, one entry");
        assert!(n.routing_table().replacement_count() <= 1);
        assert_eq!(n.stats().queries_answered, 10_000);
        assert!(pings <= 10_000);
        assert!(n.pending.len() <= 1, "{} pending", n.pending.len());
    }

    #[test]
    fn transactions_are_bounded() {
        let now = Instant::now();
        let config = Config {
            max_pending: 16,
            seed: Some(5),
            ..Config::default()
        };
        let mut n = Node::new(config, now);
        for p in 0..100 {
            n.add_node(addr(8000 + p), now);
        }
        assert_eq!(std::iter::from_fn(|| n.poll_transmit()).count(), 16);
        // a read-only querier is answered but never pinged
        let mut ro = Message::decode(&query(NodeId([3; 20]), b"r1", QueryKind::Ping)).unwrap();
        ro.read_only = true;
        n.tick(now + Duration::from_secs(10));
        n.handle_datagram(addr(9000), &ro.encode(), now + Duration::from_secs(10));
        let sent: Vec<Transmit> = std::iter::from_fn(|| n.poll_transmit()).collect();
        assert_eq!(sent.len(), 1);
        assert!(matches!(
            Message::decode(&sent[0].bytes).unwrap().body,
            Body::Response(_)
        ));
    }

    /// A burst of lookups (a daemon announcing 2,000 torrents at start)
    /// sizes the query and lookup tables for it; once they are over, the
    /// next maintenance gives the room back.
    #[test]
    fn a_burst_of_lookups_gives_its_tables_back() {
        let t0 = Instant::now();
        let config = Config {
            max_pending: 4096,
            query_rate: 0,
            seed: Some(6),
            ..Config::default()
        };
        let mut n = Node::new(config, t0);
        for p in 0..2000u16 {
            n.bootstrap(&[addr(10_000 + p)], t0);
        }
        while n.poll_transmit().is_some() {}
        let busy = (n.pending.capacity(), n.lookups.capacity());
        assert!(busy.0 >= 2000 && busy.1 >= 2000, "{busy:?}");
        // Nobody answers: the queries time out, the lookups end.
        let mut t = t0;
        for _ in 0..30 {
            t += Duration::from_secs(10);
            n.tick(t);
            while n.poll_transmit().is_some() {}
            while n.poll_event().is_some() {}
        }
        assert!(n.lookups.is_empty() && n.pending.is_empty());
        let idle = (
            n.pending.capacity(),
            n.lookups.capacity(),
            n.out.capacity(),
            n.events.capacity(),
        );
        assert!(
            idle.0 < 64 && idle.1 < 64 && idle.2 < 64 && idle.3 < 64,
            "capacities {idle:?} after a burst of {busy:?}"
        );
    }

    #[test]
    fn a_query_flood_from_one_ip_is_rate_limited() {
        let t0 = Instant::now();
        let config = Config {
            query_rate: 100,
            seed: Some(6),
            ..Config::default()
        };
        let mut n = Node::new(config, t0);
        let flood = addr(9100);
        for i in 0..10_000u32 {
            let tid = (i as u16).to_be_bytes();
            n.handle_datagram(flood, &query(NodeId([8; 20]), &tid, QueryKind::Ping), t0);
        }
        assert_eq!(n.stats().queries_answered, 200, "the burst");
        assert_eq!(n.stats().rate_limited, 9_800);
        // another address on another IP is still served
        let other: SocketAddr = "127.0.0.9:9100".parse().unwrap();
        n.handle_datagram(other, &query(NodeId([9; 20]), b"x", QueryKind::Ping), t0);
        assert_eq!(n.stats().queries_answered, 201);
        // a second later the flooder has 100 more
        let t1 = t0 + Duration::from_secs(1);
        for i in 0..1000u32 {
            let tid = (i as u16).to_be_bytes();
            n.handle_datagram(flood, &query(NodeId([8; 20]), &tid, QueryKind::Ping), t1);
        }
        assert_eq!(n.stats().queries_answered, 301);
    }

    #[test]
    fn sample_infohashes_lists_what_we_store() {
        let now = Instant::now();
        let mut n = node(7);
        let from = addr(4100);
        let ih = InfoHash([0x31; 20]);
        let me = NodeId([5; 20]);
        n.handle_datagram(
            from,
            &query(
                me,
                b"g",
                QueryKind::GetPeers {
                    info_hash: ih,
                    want: Want::default(),
                },
            ),
            now,
        );
        let Body::Response(r) = reply_to(&mut n, from).body else {
            panic!("not a response")
        };
        let token = r.token.expect("token");
        let ann = QueryKind::AnnouncePeer {
            info_hash: ih,
            port: 1,
            token,
            implied_port: false,
        };
        n.handle_datagram(from, &query(me, b"a", ann), now);
        let _ = reply_to(&mut n, from);
        let sample = QueryKind::SampleInfohashes {
            target: NodeId([0; 20]),
        };
        n.handle_datagram(from, &query(me, b"s", sample), now);
        let Body::Response(r) = reply_to(&mut n, from).body else {
            panic!("not a response")
        };
        assert_eq!(r.samples, vec![ih]);
        assert_eq!(r.num, Some(1));
        assert_eq!(r.interval, Some(21600));
    }
}
