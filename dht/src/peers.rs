//! The peers other nodes announced to us, bounded and expiring.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
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
    /// Peers kept per announcing IP, over all info hashes; beyond it that
    /// IP's new announces are refused, so one host cannot fill the store.
    /// Loopback swarms share one IP: raise it for bigger ones.
    pub per_ip: usize,
}

impl Default for PeerLimits {
    /// 500 per info hash, 20,000 in total, 2,000 per IP, 30 minutes.
    fn default() -> Self {
        PeerLimits {
            per_hash: 500,
            total: 20_000,
            ttl: Duration::from_secs(30 * 60),
            per_ip: 2_000,
        }
    }
}

/// Announced peers by info hash.
#[derive(Debug, Default)]
pub struct PeerStore {
    limits: PeerLimits,
    by_hash: HashMap<InfoHash, Vec<(SocketAddr, Instant)>>,
    total: usize,
    /// Entries per announcing IP (no zero counts kept).
    by_ip: HashMap<IpAddr, usize>,
}

impl PeerStore {
    /// An empty store.
    pub fn new(limits: PeerLimits) -> PeerStore {
        PeerStore {
            limits,
            by_hash: HashMap::new(),
            total: 0,
            by_ip: HashMap::new(),
        }
    }

    fn forget_ip(by_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
        if let Some(n) = by_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_ip.remove(&ip);
            }
        }
    }

    /// Records that `peer` announced `info_hash`. Returns false when the
    /// store is full (in total, or for the peer's IP) and the announce was
    /// dropped.
    pub fn announce(&mut self, info_hash: InfoHash, peer: SocketAddr, now: Instant) -> bool {
        let at_total = self.total >= self.limits.total;
        let per_hash = self.limits.per_hash;
        if let Some(e) = self
            .by_hash
            .get_mut(&info_hash)
            .and_then(|list| list.iter_mut().find(|(a, _)| *a == peer))
        {
            e.1 = now;
            return true;
        }
        if at_total && !self.by_hash.contains_key(&info_hash) {
            return false;
        }
        if self.by_ip.get(&peer.ip()).copied().unwrap_or(0) >= self.limits.per_ip {
            return false;
        }
        let list = self.by_hash.entry(info_hash).or_default();
        if list.len() >= per_hash || at_total {
            // evict this hash's oldest; at the total bound this keeps the count
            if let Some(oldest) = list
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(i, _)| i)
            {
                let (gone, _) = list.swap_remove(oldest);
                Self::forget_ip(&mut self.by_ip, gone.ip());
                self.total -= 1;
            } else {
                return false;
            }
        }
        list.push((peer, now));
        self.total += 1;
        *self.by_ip.entry(peer.ip()).or_insert(0) += 1;
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
        let by_ip = &mut self.by_ip;
        self.by_hash.retain(|_, list| {
            list.retain(|(a, t)| {
                let keep = now.saturating_duration_since(*t) < ttl;
                if !keep {
                    removed += 1;
                    Self::forget_ip(by_ip, a.ip());
                }
                keep
            });
            !list.is_empty()
        });
        self.total -= removed;
        // The tables keep the room of their fullest moment otherwise.
        if self.by_hash.capacity() > 32 && self.by_hash.len() * 4 <= self.by_hash.capacity() {
            self.by_hash.shrink_to(self.by_hash.len() * 2);
        }
        if self.by_ip.capacity() > 32 && self.by_ip.len() * 4 <= self.by_ip.capacity() {
            self.by_ip.shrink_to(self.by_ip.len() * 2);
        }
    }

    /// Peers stored for announces from `ip`.
    pub fn from_ip(&self, ip: IpAddr) -> usize {
        self.by_ip.get(&ip).copied().unwrap_or(0)
    }

    /// IPs with at least one stored announce.
    pub fn ips(&self) -> usize {
        self.by_ip.len()
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
            per_ip: 100,
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
        assert_eq!(s.from_ip(peer(3).ip()), 1);
        assert_eq!(s.ips(), 1);
    }

    #[test]
    fn one_ip_cannot_fill_the_store() {
        let t0 = Instant::now();
        let limits = PeerLimits {
            per_ip: 10,
            ..PeerLimits::default()
        };
        let mut s = PeerStore::new(limits);
        let mut stored = 0;
        for i in 0..1000u16 {
            let mut ih = [0u8; 20];
            ih[..2].copy_from_slice(&i.to_be_bytes());
            stored += usize::from(s.announce(InfoHash(ih), peer(1000 + i), t0));
        }
        assert_eq!(stored, 10);
        assert_eq!(s.len(), 10);
        // a re-announce of a stored one is still a refresh
        assert!(s.announce(InfoHash([0; 20]), peer(1000), t0));
        let other = SocketAddr::from(([127, 0, 0, 2], 1));
        assert!(
            s.announce(InfoHash([7; 20]), other, t0),
            "another ip is served"
        );
        s.expire(t0 + limits.ttl);
        assert!(s.is_empty());
        assert_eq!(s.ips(), 0, "the per-ip counts go with the entries");
    }
}
