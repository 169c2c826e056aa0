//! The peers other nodes announced to us, bounded and expiring.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_wire::InfoHash;
use rand::seq::IndexedRandom;
use rand::Rng;

/// Bounds of a [`PeerStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Peers kept per info hash; a newcomer evicts the oldest.
    pub per_hash: usize,
    /// Peers kept in total; beyond it announces for new entries are refused.
    pub total: usize,
    /// An announce is forgotten this long after it was (re)made.
    pub ttl: Duration,
}

impl Default for PeerLimits {
    /// 500 per info hash, 20,000 in total, 30 minutes.
    fn default() -> Self {
        PeerLimits {
            per_hash: 500,
            total: 20_000,
            ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// Announced peers by info hash.
#[derive(Debug, Default)]
pub struct PeerStore {
    limits: PeerLimits,
    by_hash: HashMap<InfoHash, Vec<(SocketAddr, Instant)>>,
    total: usize,
}

impl PeerStore {
    /// An empty store.
    pub fn new(limits: PeerLimits) -> PeerStore {
        PeerStore {
            limits,
            by_hash: HashMap::new(),
            total: 0,
        }
    }

    /// Records that `peer` announced `info_hash`. Returns false when the
    /// store is full and the announce was dropped.
    pub fn announce(&mut self, info_hash: InfoHash, peer: SocketAddr, now: Instant) -> bool {
        let at_total = self.total >= self.limits.total;
        let per_hash = self.limits.per_hash;
        if at_total && !self.by_hash.contains_key(&info_hash) {
            return false;
        }
        let list = self.by_hash.entry(info_hash).or_default();
        if let Some(e) = list.iter_mut().find(|(a, _)| *a == peer) {
            e.1 = now;
            return true;
        }
        if list.len() >= per_hash || at_total {
            // evict this hash's oldest; at the total bound this keeps the count
            if let Some(oldest) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(i, _)| i)
            {
                list.swap_remove(oldest);
                self.total -= 1;
            } else {
                return false;
            }
        }
        list.push((peer, now));
        self.total += 1;
        true
    }

    /// Up to `max` peers for `info_hash` (a random sample when there are
    /// more), leaving out expired ones.
    pub fn get(
        &self,
        info_hash: &InfoHash,
        max: usize,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        let Some(list) = self.by_hash.get(info_hash) else {
            return Vec::new();
        };
        let live: Vec<SocketAddr> = list
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(*t) < self.limits.ttl)
            .map(|(a, _)| *a)
            .collect();
        if live.len() <= max {
            return live;
        }
        live.choose_multiple(rng, max).copied().collect()
    }

    /// Up to `max` info hashes we store peers for (a random sample when
    /// there are more), for BEP 51.
    pub fn sample(&self, max: usize, rng: &mut impl Rng) -> Vec<InfoHash> {
        let all: Vec<InfoHash> = self.by_hash.keys().copied().collect();
        if all.len() <= max {
            return all;
        }
        all.choose_multiple(rng, max).copied().collect()
    }

    /// Drops announces older than the ttl.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.limits.ttl;
        let mut removed = 0;
        self.by_hash.retain(|_, list| {
            let before = list.len();
            list.retain(|(_, t)| now.saturating_duration_since(*t) < ttl);
            removed += before - list.len();
            !list.is_empty()
        });
        self.total -= removed;
    }

    /// Peers stored, over all info hashes.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Info hashes with at least one peer.
    pub fn torrents(&self) -> usize {
        self.by_hash.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn bounded_per_hash_and_total_and_expires() {
        let mut rng = StdRng::seed_from_u64(4);
        let t0 = Instant::now();
        let limits = PeerLimits {
            per_hash: 3,
            total: 5,
            ttl: Duration::from_secs(60),
        };
        let mut s = PeerStore::new(limits);
        let a = InfoHash([1; 20]);
        let b = InfoHash([2; 20]);
        let c = InfoHash([3; 20]);
        for p in 0..4u16 {
            assert!(s.announce(a, peer(p), t0 + Duration::from_secs(u64::from(p))));
        }
        let got = s.get(&a, 10, t0, &mut rng);
        assert_eq!(got.len(), 3, "per-hash bound");
        assert!(!got.contains(&peer(0)), "the oldest was evicted");
        assert!(s.announce(b, peer(10), t0));
        assert!(s.announce(b, peer(11), t0));
        assert_eq!(s.len(), 5);
        assert!(
            !s.announce(c, peer(20), t0),
            "total bound refuses a new hash"
        );
        assert!(
            s.announce(b, peer(12), t0),
            "an existing hash recycles its oldest"
        );
        assert_eq!(s.len(), 5);
        assert_eq!(s.get(&b, 2, t0, &mut rng).len(), 2);
        // re-announce refreshes, expiry drops the rest
        assert!(s.announce(a, peer(3), t0 + Duration::from_secs(50)));
        s.expire(t0 + Duration::from_secs(63));
        assert_eq!(
            s.get(&a, 10, t0 + Duration::from_secs(63), &mut rng),
            vec![peer(3)]
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s.torrents(), 1);
    }
}
