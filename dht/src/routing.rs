//! The routing table (BEP 5): k = 8 buckets over the 160-bit id space,
//! split only on the range that holds our own id.
//!
//! Bucket `i` (for `i` below the last) holds nodes whose id shares exactly
//! `i` leading bits with ours; the last bucket holds every node sharing at
//! least `buckets - 1` bits. That is the same tree as BEP 5's "split the
//! bucket holding our own id", stored as a list. A bucket that is full and
//! is not the last one never splits; a newcomer then waits in that bucket's
//! replacement cache until an entry goes bad.
//!
//! Node states follow BEP 5: *good* if it answered one of our queries in the
//! last 15 minutes, or answered ever and queried us in the last 15 minutes;
//! *bad* after [`MAX_FAILURES`] queries in a row went unanswered;
//! *questionable* otherwise. Only nodes that answered a query of ours are
//! inserted (a querier is pinged first), so a spoofed source cannot enter.
//!
//! Several nodes per IP are allowed (needed on loopback, where every node
//! is 127.0.0.1), up to [`RoutingTable::per_ip`] (16 by default) in
//! the table: one host answering on many ports with made-up ids cannot
//! take over the table.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::id::NodeId;
use crate::krpc::NodeInfo;

/// Nodes per bucket (BEP 5's k).
pub const K: usize = 8;
/// Replacement candidates kept per bucket.
pub const REPLACEMENTS: usize = 8;
/// How long an answer keeps a node good.
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);
/// Unanswered queries in a row that make a node bad.
pub const MAX_FAILURES: u8 = 2;
/// Default most entries one IP may hold in the table (of at most 160 x 8).
pub const DEFAULT_PER_IP: usize = 16;
/// A questionable node is pinged at most this often.
const PING_EVERY: Duration = Duration::from_secs(60);

/// BEP 5 node state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Answered recently.
    Good,
    /// Silent for 15 minutes.
    Questionable,
    /// Stopped answering.
    Bad,
}

/// One routing-table entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Id and address.
    pub info: NodeInfo,
    /// When it last answered one of our queries.
    pub last_response: Option<Instant>,
    /// When it last sent us a query.
    pub last_query: Option<Instant>,
    /// Unanswered queries in a row.
    pub failures: u8,
    /// When we last pinged it to check it (bounds re-pings).
    pub pinged_at: Option<Instant>,
}

impl Entry {
    /// The BEP 5 state at `now`.
    pub fn state(&self, now: Instant) -> NodeState {
        if self.failures >= MAX_FAILURES {
            return NodeState::Bad;
        }
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < GOOD_FOR);
        if recent(self.last_response) || (self.last_response.is_some() && recent(self.last_query)) {
            NodeState::Good
        } else {
            NodeState::Questionable
        }
    }
}

#[derive(Debug)]
struct Bucket {
    nodes: Vec<Entry>,
    /// Newest last; bounded by [`REPLACEMENTS`].
    replacements: Vec<Entry>,
    last_changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::with_capacity(K),
            replacements: Vec::new(),
            last_changed: now,
        }
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// The node is now in the table.
    Added,
    /// It was there already; its timestamps were refreshed.
    Updated,
    /// The bucket is full of live nodes: the node went to the replacement
    /// cache, and these questionable entries should be pinged (an entry that
    /// fails twice is replaced).
    Replacement(Vec<NodeInfo>),
    /// Refused (our own id, a known id claimed from another address, or
    /// an IP that holds its share of the table already).
    Rejected,
}

/// The routing table.
#[derive(Debug)]
pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
    per_ip: usize,
}

impl RoutingTable {
    /// An empty table (one bucket covering everything) for `own`, with at
    /// most 16 entries per IP (`DEFAULT_PER_IP`).
    pub fn new(own: NodeId, now: Instant) -> RoutingTable {
        RoutingTable::with_per_ip(own, now, DEFAULT_PER_IP)
    }

    /// An empty table holding at most `per_ip` entries (at least 1) per IP.
    pub fn with_per_ip(own: NodeId, now: Instant, per_ip: usize) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
            per_ip: per_ip.max(1),
        }
    }

    /// Most entries one IP may hold.
    pub fn per_ip(&self) -> usize {
        self.per_ip
    }

    /// Entries held by nodes at `ip`.
    pub fn count_ip(&self, ip: IpAddr) -> usize {
        self.entries().filter(|e| e.info.addr.ip() == ip).count()
    }

    /// True when `ip` holds as many entries as it may (a new node there
    /// would be refused).
    pub fn ip_full(&self, ip: IpAddr) -> bool {
        self.count_ip(ip) >= self.per_ip
    }

    /// Our node id.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn bucket_of(&self, id: &NodeId) -> usize {
        self.own.common_prefix(id).min(self.buckets.len() - 1)
    }

    /// Nodes in the table (all states).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// True when the table holds no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of buckets (grows as the own bucket splits; at most 160).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Nodes per bucket, farthest bucket (prefix 0) first.
    pub fn bucket_sizes(&self) -> Vec<usize> {
        self.buckets.iter().map(|b| b.nodes.len()).collect()
    }

    /// The same contacts arranged around another own id (after our id
    /// changed, BEP 42): every entry keeps its history where there is room
    /// for it; replacement candidates are offered after the entries.
    pub fn with_own_id(&self, own: NodeId, now: Instant) -> RoutingTable {
        let mut t = RoutingTable::new(own, now);
        let old: Vec<&Entry> = self
            .buckets
            .iter()
            .flat_map(|b| b.nodes.iter())
            .chain(self.buckets.iter().flat_map(|b| b.replacements.iter()))
            .collect();
        for e in old {
            if t.insert(e.info, true, now) == Inserted::Added {
                let i = t.bucket_of(&e.info.id);
                if let Some(n) = t.buckets[i]
                    .nodes
                    .iter_mut()
                    .find(|n| n.info.id == e.info.id)
                {
                    *n = e.clone();
                }
            }
        }
        t
    }

    /// Every entry, bucket by bucket.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// Replacement candidates held over all buckets.
    pub fn replacement_count(&self) -> usize {
        self.buckets.iter().map(|b| b.replacements.len()).sum()
    }

    /// The entry with this id, if any.
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.buckets[self.bucket_of(id)]
            .nodes
            .iter()
            .find(|e| e.info.id == *id)
    }

    /// Whether a node with this id would be inserted if it answered: the id
    /// is not ours, not known, and its bucket has room, can split, or holds
    /// a node that is not good. Used to decide whether to ping a querier.
    pub fn would_accept(&self, id: &NodeId, now: Instant) -> bool {
        if *id == self.own {
            return false;
        }
        let i = self.bucket_of(id);
        let b = &self.buckets[i];
        if b.nodes.iter().any(|e| e.info.id == *id) {
            return false;
        }
        b.nodes.len() < K
            || (i == self.buckets.len() - 1 && self.buckets.len() < 160)
            || b.nodes.iter().any(|e| e.state(now) != NodeState::Good)
    }

    /// Records that `info` answered one of our queries (`responded`) or
    /// queried us, inserting it if it answered and there is room.
    pub fn insert(&mut self, info: NodeInfo, responded: bool, now: Instant) -> Inserted {
        if info.id == self.own {
            return Inserted::Rejected;
        }
        loop {
            let count = self.buckets.len();
            let last = count - 1;
            let i = self.bucket_of(&info.id);
            let bucket = &mut self.buckets[i];
            if let Some(e) = bucket.nodes.iter_mut().find(|e| e.info.id == info.id) {
                if e.info.addr != info.addr {
                    return Inserted::Rejected;
                }
                if responded {
                    e.last_response = Some(now);
                    e.failures = 0;
                } else {
                    e.last_query = Some(now);
                }
                return Inserted::Updated;
            }
            if !responded {
                return Inserted::Rejected;
            }
            // a node that changed its id: the old entry (in any bucket) is
            // stale, so one address never holds two slots
            for b in self.buckets.iter_mut() {
                b.nodes.retain(|e| e.info.addr != info.addr);
                b.replacements.retain(|e| e.info.addr != info.addr);
            }
            if self.ip_full(info.addr.ip()) {
                return Inserted::Rejected;
            }
            let bucket = &mut self.buckets[i];
            let entry = Entry {
                info,
                last_response: Some(now),
                last_query: None,
                failures: 0,
                pinged_at: None,
            };
            if bucket.nodes.len() < K {
                bucket.nodes.push(entry);
                bucket.last_changed = now;
                bucket.replacements.retain(|e| e.info.id != info.id);
                return Inserted::Added;
            }
            if i == last && count < 160 {
                self.split(now);
                continue;
            }
            if let Some(pos) = bucket
                .nodes
                .iter()
                .position(|e| e.state(now) == NodeState::Bad)
            {
                bucket.nodes[pos] = entry;
                bucket.last_changed = now;
                return Inserted::Added;
            }
            bucket
                .replacements
                .retain(|e| e.info.id != info.id && e.info.addr != info.addr);
            if bucket.replacements.len() >= REPLACEMENTS {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(entry);
            let mut ping = Vec::new();
            for e in bucket.nodes.iter_mut() {
                if e.state(now) == NodeState::Questionable
                    && e.pinged_at
                        .is_none_or(|t| now.saturating_duration_since(t) >= PING_EVERY)
                {
                    e.pinged_at = Some(now);
                    ping.push(e.info);
                }
            }
            return Inserted::Replacement(ping);
        }
    }

    /// Splits the last bucket: entries sharing more bits with our id move
    /// to a new last bucket.
    fn split(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let old = &mut self.buckets[depth];
        let mut new = Bucket::new(now);
        let (stay, go): (Vec<Entry>, Vec<Entry>) = old
            .nodes
            .drain(..)
            .partition(|e| own.common_prefix(&e.info.id) == depth);
        old.nodes = stay;
        new.nodes = go;
        let (stay, go): (Vec<Entry>, Vec<Entry>) = old
            .replacements
            .drain(..)
            .partition(|e| own.common_prefix(&e.info.id) == depth);
        old.replacements = stay;
        new.replacements = go;
        self.buckets.push(new);
    }

    /// Records an unanswered query to the node at `addr` with id `id`. A
    /// node that turns bad is replaced by the newest replacement candidate.
    pub fn failed(&mut self, id: &NodeId, addr: SocketAddr, now: Instant) {
        let i = self.bucket_of(id);
        let bucket = &mut self.buckets[i];
        let Some(pos) = bucket
            .nodes
            .iter()
            .position(|e| e.info.id == *id && e.info.addr == addr)
        else {
            return;
        };
        let e = &mut bucket.nodes[pos];
        e.failures = e.failures.saturating_add(1);
        if e.state(now) != NodeState::Bad {
            return;
        }
        let victim_ip = e.info.addr.ip();
        // the newest candidate whose IP has room once the victim is gone
        let room: Vec<bool> = self.buckets[i]
            .replacements
            .iter()
            .map(|r| {
                let ip = r.info.addr.ip();
                self.count_ip(ip) - usize::from(ip == victim_ip) < self.per_ip
            })
            .collect();
        let bucket = &mut self.buckets[i];
        if let Some(r) = room.iter().rposition(|ok| *ok) {
            bucket.nodes[pos] = bucket.replacements.remove(r);
            bucket.last_changed = now;
        }
    }

    /// Up to `n` non-bad nodes closest to `target`, closest first.
    pub fn closest(&self, target: &NodeId, n: usize, now: Instant) -> Vec<NodeInfo> {
        let mut all: Vec<&Entry> = self
            .entries()
            .filter(|e| e.state(now) != NodeState::Bad)
            .collect();
        all.sort_by_key(|e| target.distance(&e.info.id));
        all.into_iter().take(n).map(|e| e.info).collect()
    }

    /// Targets for buckets nobody touched for 15 minutes (BEP 5 refresh):
    /// a random id in each such bucket's range. Marks them refreshed.
    pub fn refresh_targets(&mut self, now: Instant, rng: &mut impl rand::Rng) -> Vec<NodeId> {
        let mut out = Vec::new();
        let last = self.buckets.len() - 1;
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(b.last_changed) >= GOOD_FOR {
                b.last_changed = now;
                let prefix = if i == last { i + 1 } else { i };
                out.push(self.own.random_at_prefix(prefix, rng));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn info(id: NodeId, port: u16) -> NodeInfo {
        NodeInfo {
            id,
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
        }
    }

    #[test]
    fn only_answering_nodes_enter_and_buckets_split_on_own_range() {
        let mut rng = StdRng::seed_from_u64(1);
        let now = Instant::now();
        let own = NodeId::random(&mut rng);
        // every node here is 127.0.0.1: no per-ip limit for this test
        let mut t = RoutingTable::with_per_ip(own, now, usize::MAX);
        let stranger = info(NodeId::random(&mut rng), 1);
        assert_eq!(t.insert(stranger, false, now), Inserted::Rejected);
        assert!(t.is_empty());
        // 8 far nodes (prefix 0) and 8 near nodes (prefix >= 5)
        for p in 0..8u16 {
            assert_eq!(
                t.insert(info(own.random_at_prefix(0, &mut rng), 100 + p), true, now),
                Inserted::Added
            );
        }
        for p in 0..8u16 {
            assert_eq!(
                t.insert(
                    info(own.random_at_prefix(5 + p as usize, &mut rng), 200 + p),
                    true,
                    now
                ),
                Inserted::Added
            );
        }
        assert_eq!(t.len(), 16);
        assert!(t.bucket_count() >= 2);
        // bucket 0 is full and cannot split: a ninth far node is a replacement
        let ninth = info(own.random_at_prefix(0, &mut rng), 300);
        assert!(matches!(
            t.insert(ninth, true, now),
            Inserted::Replacement(_)
        ));
        assert_eq!(t.len(), 16);
        assert_eq!(t.replacement_count(), 1);
        // two failures make an entry bad: the replacement takes its place
        let victim = t
            .entries()
            .find(|e| own.common_prefix(&e.info.id) == 0)
            .map(|e| e.info)
            .unwrap();
        t.failed(&victim.id, victim.addr, now);
        assert!(t.get(&victim.id).is_some());
        t.failed(&victim.id, victim.addr, now);
        assert!(t.get(&victim.id).is_none());
        assert!(t.get(&ninth.id).is_some());
        // an id claimed from another address is refused
        let near = t.entries().last().map(|e| e.info).unwrap();
        assert_eq!(t.insert(info(near.id, 9), true, now), Inserted::Rejected);
        // one address with a new id (in another bucket) keeps one slot
        let before = t.len();
        let moved = info(own.random_at_prefix(1, &mut rng), near.addr.port());
        assert_eq!(t.insert(moved, true, now), Inserted::Added);
        assert_eq!(t.len(), before);
        assert!(t.get(&near.id).is_none());
    }

    #[test]
    fn states_follow_bep5() {
        let now = Instant::now();
        let mut e = Entry {
            info: info(NodeId([1; 20]), 1),
            last_response: Some(now),
            last_query: None,
            failures: 0,
            pinged_at: None,
        };
        assert_eq!(e.state(now), NodeState::Good);
        let later = now + GOOD_FOR + Duration::from_secs(1);
        assert_eq!(e.state(later), NodeState::Questionable);
        e.last_query = Some(later);
        assert_eq!(e.state(later), NodeState::Good);
        e.failures = MAX_FAILURES;
        assert_eq!(e.state(later), NodeState::Bad);
    }

    #[test]
    fn closest_is_sorted_by_xor_distance() {
        let mut rng = StdRng::seed_from_u64(2);
        let now = Instant::now();
        let mut t = RoutingTable::new(NodeId::random(&mut rng), now);
        for p in 0..200u16 {
            t.insert(info(NodeId::random(&mut rng), 1000 + p), true, now);
        }
        let target = NodeId::random(&mut rng);
        let got = t.closest(&target, 8, now);
        assert_eq!(got.len(), 8);
        let mut all: Vec<NodeInfo> = t.entries().map(|e| e.info).collect();
        all.sort_by_key(|n| target.distance(&n.id));
        assert_eq!(got, all[..8].to_vec());
        assert_eq!(t.len(), DEFAULT_PER_IP, "all from one ip");
    }

    #[test]
    fn one_ip_holds_at_most_its_share_of_the_table() {
        let mut rng = StdRng::seed_from_u64(3);
        let now = Instant::now();
        let own = NodeId::random(&mut rng);
        let mut t = RoutingTable::with_per_ip(own, now, 4);
        // a liar answering on 1,000 ports with ids next to ours
        for p in 0..1000u16 {
            let id = own.random_at_prefix(20 + usize::from(p % 100), &mut rng);
            t.insert(info(id, 2000 + p), true, now);
        }
        assert_eq!(t.len(), 4);
        assert!(t.ip_full(Ipv4Addr::LOCALHOST.into()));
        let other = NodeInfo {
            id: NodeId::random(&mut rng),
            addr: "127.0.0.2:1".parse().unwrap(),
        };
        assert_eq!(t.insert(other, true, now), Inserted::Added);
    }
}
