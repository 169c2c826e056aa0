//! Remembering who sent bad data: mainline's `BadDataGuard`, as pure logic.
//!
//! When a piece fails its hash check, [`PiecePicker::piece_failed`]
//! returns the peers whose blocks made it up. The controller maps them to a
//! stable identity (the remote IP in a real swarm; the full socket address
//! or peer id on loopback, where every peer shares one IP) and reports them
//! here. A peer is banned at once if it alone sent the whole bad piece, or
//! once it has contributed to `max_shared` bad pieces — unless it also sent
//! a great many good ones (more than 30 good per bad, as in mainline), so one
//! bad neighbour in shared pieces does not get an honest peer banned.
//!
//! [`PiecePicker::piece_failed`]: super::PiecePicker::piece_failed

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::net::IpAddr;

/// Good pieces that excuse one shared bad piece (mainline's `numgood // 30`).
const GOOD_PER_BAD: u32 = 30;

#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    bad: u32,
    good: u32,
}

/// Per-peer bad/good piece counts and the resulting bans.
#[derive(Debug, Clone)]
pub struct BadDataGuard<K = IpAddr> {
    max_shared: u32,
    stats: HashMap<K, Stats>,
    banned: HashSet<K>,
}

impl<K: Hash + Eq + Clone> Default for BadDataGuard<K> {
    fn default() -> Self {
        Self::new(3)
    }
}

impl<K: Hash + Eq + Clone> BadDataGuard<K> {
    /// A guard that bans after `max_shared` bad pieces a peer contributed
    /// to (at least 1).
    pub fn new(max_shared: u32) -> Self {
        BadDataGuard {
            max_shared: max_shared.max(1),
            stats: HashMap::new(),
            banned: HashSet::new(),
        }
    }

    /// `peer` contributed to a piece that failed its hash; `sole` if it
    /// sent every block of it. Returns true if the peer is banned now (also
    /// when it already was).
    pub fn record_bad(&mut self, peer: K, sole: bool) -> bool {
        let s = self.stats.entry(peer.clone()).or_default();
        s.bad = s.bad.saturating_add(1);
        let ban = sole || (s.bad >= self.max_shared && s.bad > s.good / GOOD_PER_BAD);
        if ban {
            self.banned.insert(peer.clone());
        }
        self.banned.contains(&peer)
    }

    /// Record one failed piece given all its contributors (duplicates
    /// allowed). Returns the peers banned by it, in input order.
    pub fn record_failed_piece(&mut self, contributors: &[K]) -> Vec<K> {
        let mut unique: Vec<K> = Vec::new();
        for c in contributors {
            if !unique.contains(c) {
                unique.push(c.clone());
            }
        }
        let sole = unique.len() == 1;
        unique
            .into_iter()
            .filter(|c| self.record_bad(c.clone(), sole))
            .collect()
    }

    /// `peer` contributed to a piece that passed its hash check.
    pub fn record_good(&mut self, peer: K) {
        let s = self.stats.entry(peer).or_default();
        s.good = s.good.saturating_add(1);
    }

    /// Whether `peer` is banned.
    pub fn is_banned(&self, peer: &K) -> bool {
        self.banned.contains(peer)
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty() && self.banned.is_empty()
    }

    /// Bad pieces `peer` contributed to so far.
    pub fn bad_count(&self, peer: &K) -> u32 {
        self.stats.get(peer).map_or(0, |s| s.bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn sole_sender_of_a_bad_piece_is_banned_at_once() {
        let mut g = BadDataGuard::default();
        assert_eq!(g.record_failed_piece(&[ip(1), ip(1), ip(1)]), vec![ip(1)]);
        assert!(g.is_banned(&ip(1)));
        assert!(!g.is_banned(&ip(2)));
    }

    #[test]
    fn shared_bad_pieces_ban_after_three() {
        let mut g = BadDataGuard::default();
        assert!(g.record_failed_piece(&[ip(1), ip(2)]).is_empty());
        assert!(g.record_failed_piece(&[ip(1), ip(3)]).is_empty());
        assert_eq!(g.record_failed_piece(&[ip(4), ip(1)]), vec![ip(1)]);
        assert!(g.is_banned(&ip(1)));
        for n in 2..=4 {
            assert!(!g.is_banned(&ip(n)));
            assert_eq!(g.bad_count(&ip(n)), 1);
        }
        assert_eq!(g.bad_count(&ip(1)), 3);
    }

    #[test]
    fn a_long_good_record_excuses_a_few_shared_bad_pieces() {
        let mut g = BadDataGuard::default();
        for _ in 0..150 {
            g.record_good(ip(1));
        }
        // 150 / 30 = 5: needs 6 shared bad pieces.
        for _ in 0..5 {
            assert!(!g.record_bad(ip(1), false));
        }
        assert!(g.record_bad(ip(1), false));
        // But a whole bad piece alone is never excused.
        g.record_good(ip(2));
        assert!(g.record_bad(ip(2), true));
    }

    #[test]
    fn works_with_socket_addresses_on_loopback() {
        use std::net::SocketAddr;
        let a: SocketAddr = "127.0.0.1:6001".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:6002".parse().unwrap();
        let mut g = BadDataGuard::<SocketAddr>::new(3);
        assert_eq!(g.record_failed_piece(&[a]), vec![a]);
        assert!(g.is_banned(&a) && !g.is_banned(&b));
    }
}
