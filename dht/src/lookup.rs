//! Iterative lookups (find_node, get_peers, announce) as a pure state machine.
//!
//! A lookup keeps the candidates it knows sorted by XOR distance to the
//! target. Its *window* is the k closest candidates that have neither failed
//! nor gone slow. It keeps up to α queries in flight to fresh nodes in the
//! window, and ends when every node in the window has answered: the result
//! is the k closest nodes that answered.
//!
//! A query unanswered after `slow_after` stops counting against α and drops
//! out of the window, so one slow node never holds the lookup up: the next
//! candidate is queried instead. A late answer is still used (the node
//! re-enters the window). Only a lookup that has no answer at all waits
//! for slow nodes (e.g. a single slow bootstrap node), until they answer or
//! fail. A query unanswered after the node's hard timeout is failed by the
//! caller ([`Lookup::on_failure`]).
//!
//! The lookup sends nothing itself: [`Lookup::next_queries`] says whom to
//! query, and the node feeds answers back.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::NodeId;
use crate::krpc::{NodeInfo, Response};

/// Candidates kept per lookup (the farthest fresh ones are dropped).
const MAX_CANDIDATES: usize = 128;
/// Peers collected per get_peers lookup.
const MAX_PEERS: usize = 1000;

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// find_node: the k closest nodes.
    FindNode,
    /// get_peers: peers, plus the k closest nodes and their tokens.
    GetPeers,
    /// get_peers, then announce_peer to the k closest that gave a token.
    Announce {
        /// The port to announce (ignored by receivers when `implied_port`).
        port: u16,
        /// Ask receivers to use our UDP source port.
        implied_port: bool,
    },
}

/// Tuning of lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupParams {
    /// Queries in flight at once (α).
    pub alpha: usize,
    /// Width of the result (k).
    pub k: usize,
    /// After this long, an unanswered query no longer holds a slot.
    pub slow_after: Duration,
    /// Our own id: contacts carrying it are never queried (after a restart
    /// with a kept id, others still list our old address under it).
    pub own: NodeId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight(Instant),
    Slow,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    id: NodeId,
    addr: SocketAddr,
    state: State,
    token: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Searching,
    Announcing { outstanding: usize },
    Done,
}

/// One lookup in progress.
#[derive(Debug)]
pub struct Lookup {
    target: NodeId,
    kind: LookupKind,
    params: LookupParams,
    cands: Vec<Candidate>,
    /// Bootstrap addresses whose ids we do not know yet.
    seeds: Vec<(SocketAddr, State)>,
    peers: Vec<SocketAddr>,
    seen_peers: HashSet<SocketAddr>,
    phase: Phase,
    queries: usize,
    announced: usize,
}

/// The outcome of a finished lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupResult {
    /// The id or info hash looked up.
    pub target: NodeId,
    /// Peers found (get_peers and announce lookups), in arrival order.
    pub peers: Vec<SocketAddr>,
    /// The k closest nodes that answered, closest first.
    pub closest: Vec<NodeInfo>,
    /// Nodes that acknowledged our announce_peer.
    pub announced: usize,
    /// Queries sent by this lookup (including announces).
    pub queries: usize,
}

impl Lookup {
    /// A lookup for `target` starting from `known` nodes (our closest) and
    /// `seeds` (addresses without ids, e.g. bootstrap nodes).
    pub fn new(
        target: NodeId,
        kind: LookupKind,
        params: LookupParams,
        known: &[NodeInfo],
        seeds: &[SocketAddr],
    ) -> Lookup {
        let mut l = Lookup {
            target,
            kind,
            params,
            cands: Vec::new(),
            seeds: seeds.iter().map(|a| (*a, State::Fresh)).collect(),
            peers: Vec::new(),
            seen_peers: HashSet::new(),
            phase: Phase::Searching,
            queries: 0,
            announced: 0,
        };
        for n in known {
            l.add_candidate(*n);
        }
        l
    }

    /// Adds peers known without asking (our own peer store).
    pub fn add_peers(&mut self, peers: &[SocketAddr]) {
        for p in peers {
            if self.peers.len() < MAX_PEERS && self.seen_peers.insert(*p) {
                self.peers.push(*p);
            }
        }
    }

    /// Peers found so far (arrival order).
    pub fn peers(&self) -> &[SocketAddr] {
        &self.peers
    }

    /// The target.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The kind.
    pub fn kind(&self) -> LookupKind {
        self.kind
    }

    fn add_candidate(&mut self, n: NodeInfo) {
        if n.id == self.params.own {
            return;
        }
        if self.cands.iter().any(|c| c.id == n.id || c.addr == n.addr) {
            return;
        }
        let d = self.target.distance(&n.id);
        let pos = self
            .cands
            .partition_point(|c| self.target.distance(&c.id) < d);
        if pos >= MAX_CANDIDATES {
            return;
        }
        self.cands.insert(
            pos,
            Candidate {
                id: n.id,
                addr: n.addr,
                state: State::Fresh,
                token: None,
            },
        );
        if self.cands.len() > MAX_CANDIDATES {
            // drop the farthest fresh candidate, never one we talk to
            if let Some(i) = self.cands.iter().rposition(|c| c.state == State::Fresh) {
                self.cands.remove(i);
            }
        }
    }

    /// Nodes to query now (each is then in flight). Also turns queries
    /// older than `slow_after` slow.
    pub fn next_queries(&mut self, now: Instant) -> Vec<SocketAddr> {
        if self.phase != Phase::Searching {
            return Vec::new();
        }
        let slow_after = self.params.slow_after;
        let mut in_flight = 0;
        for s in self
            .cands
            .iter_mut()
            .map(|c| &mut c.state)
            .chain(self.seeds.iter_mut().map(|s| &mut s.1))
        {
            if let State::InFlight(t) = *s {
                if now.saturating_duration_since(t) >= slow_after {
                    *s = State::Slow;
                } else {
                    in_flight += 1;
                }
            }
        }
        let mut out = Vec::new();
        // seeds first: they are all we have when the table is empty
        let seed_slots = self.params.alpha.max(self.seeds_len_hint());
        for (addr, s) in self.seeds.iter_mut() {
            if *s == State::Fresh && in_flight < seed_slots {
                *s = State::InFlight(now);
                in_flight += 1;
                out.push(*addr);
            }
        }
        let mut window = 0;
        for c in self.cands.iter_mut() {
            if window >= self.params.k || in_flight >= self.params.alpha {
                break;
            }
            match c.state {
                State::Failed | State::Slow => continue,
                State::Fresh => {
                    c.state = State::InFlight(now);
                    in_flight += 1;
                    out.push(c.addr);
                }
                State::InFlight(_) | State::Answered => {}
            }
            window += 1;
        }
        self.queries += out.len();
        out
    }

    /// Seeds are few and given explicitly: query them all at once.
    fn seeds_len_hint(&self) -> usize {
        self.seeds.len().min(16)
    }

    /// Whether the search is over: nothing fresh or in flight in the
    /// window, and no seed in flight.
    fn search_finished(&self) -> bool {
        if self
            .seeds
            .iter()
            .any(|(_, s)| matches!(s, State::Fresh | State::InFlight(_)))
        {
            return false;
        }
        let mut window = 0;
        for c in &self.cands {
            if window >= self.params.k {
                break;
            }
            match c.state {
                State::Failed | State::Slow => continue,
                State::Fresh | State::InFlight(_) => return false,
                State::Answered => window += 1,
            }
        }
        // answers from the window end it without waiting for slow nodes;
        // only a lookup with no answer at all waits for them (e.g. one slow
        // bootstrap node), until they answer or fail
        window > 0 || !self.has_slow()
    }

    fn has_slow(&self) -> bool {
        self.cands.iter().any(|c| c.state == State::Slow)
            || self.seeds.iter().any(|s| s.1 == State::Slow)
    }

    /// Feeds the answer of the node at `from`. Returns true if `from` was
    /// queried by this lookup.
    pub fn on_response(&mut self, from: SocketAddr, r: &Response) -> bool {
        let mut ours = false;
        if let Some(seed) = self.seeds.iter_mut().find(|(a, _)| *a == from) {
            seed.1 = State::Answered;
            ours = true;
            self.add_candidate(NodeInfo {
                id: r.id,
                addr: from,
            });
        }
        if let Some(c) = self.cands.iter_mut().find(|c| c.addr == from) {
            if c.id != r.id && !ours {
                // the node answered with another id: do not trust its data
                c.state = State::Failed;
                return true;
            }
            c.state = State::Answered;
            c.token = r.token.clone();
            ours = true;
        }
        if !ours {
            return false;
        }
        self.add_peers(&r.values);
        for n in r.nodes.iter().chain(r.nodes6.iter()) {
            if n.addr.is_ipv4() == from.is_ipv4() {
                self.add_candidate(*n);
            }
        }
        true
    }

    /// The node at `from` did not answer (hard timeout or error reply).
    pub fn on_failure(&mut self, from: SocketAddr) {
        if let Some(s) = self.seeds.iter_mut().find(|(a, _)| *a == from) {
            s.1 = State::Failed;
        }
        if let Some(c) = self.cands.iter_mut().find(|c| c.addr == from) {
            c.state = State::Failed;
        }
    }

    /// If the search just ended and this is an announce, the nodes to send
    /// announce_peer to, with their tokens (the lookup then waits for
    /// [`Lookup::on_announce_reply`]). Call after feeding answers.
    pub fn advance(&mut self) -> Vec<(NodeInfo, Vec<u8>)> {
        if self.phase != Phase::Searching || !self.search_finished() {
            return Vec::new();
        }
        match self.kind {
            LookupKind::Announce { .. } => {
                let targets: Vec<(NodeInfo, Vec<u8>)> = self
                    .cands
                    .iter()
                    .filter(|c| c.state == State::Answered)
                    .filter_map(|c| {
                        c.token.clone().map(|t| {
                            (
                                NodeInfo {
                                    id: c.id,
                                    addr: c.addr,
                                },
                                t,
                            )
                        })
                    })
                    .take(self.params.k)
                    .collect();
                self.queries += targets.len();
                self.phase = if targets.is_empty() {
                    Phase::Done
                } else {
                    Phase::Announcing {
                        outstanding: targets.len(),
                    }
                };
                targets
            }
            _ => {
                self.phase = Phase::Done;
                Vec::new()
            }
        }
    }

    /// An announce_peer was acknowledged (`ok`) or failed.
    pub fn on_announce_reply(&mut self, ok: bool) {
        if let Phase::Announcing { outstanding } = &mut self.phase {
            *outstanding = outstanding.saturating_sub(1);
            if ok {
                self.announced += 1;
            }
            if *outstanding == 0 {
                self.phase = Phase::Done;
            }
        }
    }

    /// True once the lookup (and its announces) finished.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The earliest moment a query of this lookup turns slow.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.phase != Phase::Searching {
            // queries still in flight no longer matter to this lookup
            return None;
        }
        self.cands
            .iter()
            .map(|c| c.state)
            .chain(self.seeds.iter().map(|s| s.1))
            .filter_map(|s| match s {
                State::InFlight(t) => Some(t + self.params.slow_after),
                _ => None,
            })
            .min()
    }

    /// The result so far (complete once [`Lookup::is_done`]).
    pub fn result(&self) -> LookupResult {
        LookupResult {
            target: self.target,
            peers: self.peers.clone(),
            closest: self
                .cands
                .iter()
                .filter(|c| c.state == State::Answered)
                .take(self.params.k)
                .map(|c| NodeInfo {
                    id: c.id,
                    addr: c.addr,
                })
                .collect(),
            announced: self.announced,
            queries: self.queries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8, port: u16) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = b;
        NodeInfo {
            id: NodeId(id),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn params() -> LookupParams {
        LookupParams {
            alpha: 3,
            k: 2,
            slow_after: Duration::from_millis(500),
            own: NodeId([0xff; 20]),
        }
    }

    fn reply(n: NodeInfo, nodes: Vec<NodeInfo>) -> Response {
        Response {
            id: n.id,
            nodes,
            ..Response::default()
        }
    }

    #[test]
    fn alpha_bound_slow_nodes_and_convergence() {
        let t0 = Instant::now();
        let target = NodeId([0; 20]);
        let known = [node(0x80, 1), node(0x40, 2), node(0x20, 3), node(0x10, 4)];
        let mut l = Lookup::new(target, LookupKind::FindNode, params(), &known, &[]);
        // k = 2 window: only the two closest are queried, though alpha is 3
        let q = l.next_queries(t0);
        assert_eq!(q, vec![known[3].addr, known[2].addr]);
        assert!(l.next_queries(t0).is_empty());
        // node 4 answers with a closer node; node 3 stays silent
        let closer = node(0x01, 5);
        assert!(l.on_response(known[3].addr, &reply(known[3], vec![closer])));
        assert!(l.advance().is_empty());
        assert_eq!(l.next_queries(t0), vec![closer.addr]);
        // node 3 turns slow: the lookup does not wait, it asks the next one
        let t1 = t0 + Duration::from_millis(600);
        assert_eq!(l.next_queries(t1), vec![known[1].addr]);
        assert!(l.on_response(closer.addr, &reply(closer, vec![])));
        l.advance();
        assert!(l.is_done(), "window {{5, 4}} all answered");
        let r = l.result();
        assert_eq!(r.closest, vec![closer, known[3]]);
        assert_eq!(r.queries, 4);
        // an answer from a node never queried is not ours
        assert!(!l.on_response(
            SocketAddr::from(([127, 0, 0, 1], 99)),
            &reply(node(9, 99), vec![])
        ));
    }

    #[test]
    fn our_own_id_is_never_a_candidate() {
        let t0 = Instant::now();
        let me = node(0x7f, 9);
        let p = LookupParams {
            own: me.id,
            ..params()
        };
        let mut l = Lookup::new(
            NodeId([0; 20]),
            LookupKind::FindNode,
            p,
            &[me, node(0x80, 1)],
            &[],
        );
        assert_eq!(l.next_queries(t0), vec![node(0x80, 1).addr]);
        let stale_me = NodeInfo {
            id: me.id,
            addr: SocketAddr::from(([127, 0, 0, 1], 10)),
        };
        l.on_response(node(0x80, 1).addr, &reply(node(0x80, 1), vec![stale_me]));
        l.advance();
        assert!(l.is_done(), "our stale address was not queried");
    }

    #[test]
    fn a_slow_only_seed_is_waited_for() {
        let t0 = Instant::now();
        let seed = SocketAddr::from(([127, 0, 0, 1], 50));
        let mut l = Lookup::new(
            NodeId([0; 20]),
            LookupKind::FindNode,
            params(),
            &[],
            &[seed],
        );
        assert_eq!(l.next_queries(t0), vec![seed]);
        assert!(l.next_queries(t0 + Duration::from_secs(2)).is_empty());
        l.advance();
        assert!(!l.is_done(), "nothing else to ask: wait for the slow seed");
        let found = node(0x01, 51);
        l.on_response(seed, &reply(node(0x80, 50), vec![found]));
        l.advance();
        assert!(!l.is_done());
        assert_eq!(
            l.next_queries(t0 + Duration::from_secs(2)),
            vec![found.addr]
        );
    }

    #[test]
    fn queries_left_in_flight_set_no_deadline_once_announcing() {
        // regression: a query pushed out of the window stayed "in flight"
        // with a past deadline, and the node's timer spun at that instant
        let t0 = Instant::now();
        let known = [node(0x80, 1), node(0x40, 2), node(0x20, 3)];
        let kind = LookupKind::Announce {
            port: 7,
            implied_port: false,
        };
        let mut l = Lookup::new(NodeId([0; 20]), kind, params(), &known, &[]);
        assert_eq!(l.next_queries(t0), vec![known[2].addr, known[1].addr]);
        let closer = node(0x01, 4);
        let mut r = reply(known[2], vec![closer]);
        r.token = Some(b"a".to_vec());
        l.on_response(known[2].addr, &r);
        assert_eq!(l.next_queries(t0), vec![closer.addr]);
        let mut r = reply(closer, vec![]);
        r.token = Some(b"b".to_vec());
        l.on_response(closer.addr, &r);
        assert_eq!(l.advance().len(), 2, "window of closer and node 3 answered");
        assert_eq!(l.next_deadline(), None, "node 2's query no longer matters");
    }

    #[test]
    fn announce_goes_to_nodes_that_gave_tokens() {
        let t0 = Instant::now();
        let known = [node(0x80, 1), node(0x40, 2)];
        let kind = LookupKind::Announce {
            port: 7,
            implied_port: false,
        };
        let mut l = Lookup::new(NodeId([0; 20]), kind, params(), &known, &[]);
        assert_eq!(l.next_queries(t0).len(), 2);
        let mut r = reply(known[0], vec![]);
        r.token = Some(b"tok".to_vec());
        r.values = vec![SocketAddr::from(([127, 0, 0, 1], 6000))];
        l.on_response(known[0].addr, &r);
        l.on_failure(known[1].addr);
        let targets = l.advance();
        assert_eq!(targets, vec![(known[0], b"tok".to_vec())]);
        assert!(!l.is_done());
        l.on_announce_reply(true);
        assert!(l.is_done());
        let res = l.result();
        assert_eq!(res.announced, 1);
        assert_eq!(res.peers, vec![SocketAddr::from(([127, 0, 0, 1], 6000))]);
    }
}
