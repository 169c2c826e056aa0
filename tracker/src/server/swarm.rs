//! The embedded tracker's peer table and reply encoding (pure: time is
//! passed in).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_wire::bencode::{encode, Value};
use bittern_wire::{InfoHash, PeerId};
use rand::seq::IteratorRandom;

use super::request::AnnounceRequest;
use crate::types::{AnnounceEvent, ScrapeStats};

#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    left: u64,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Swarm {
    peers: HashMap<PeerId, Peer>,
    downloaded: u32,
}

impl Swarm {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.last_seen) <= ttl);
    }

    fn stats(&self) -> ScrapeStats {
        let complete = self.peers.values().filter(|p| p.left == 0).count();
        ScrapeStats {
            complete: u32::try_from(complete).unwrap_or(u32::MAX),
            downloaded: self.downloaded,
            incomplete: u32::try_from(self.peers.len() - complete).unwrap_or(u32::MAX),
        }
    }
}

/// Bounds on the table, so that a flood of announces cannot exhaust memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub peer_ttl: Duration,
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
    pub default_numwant: u32,
    pub max_numwant: u32,
}

/// The peers returned to one announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnnounceReply {
    pub peers: Vec<(PeerId, SocketAddr)>,
    pub stats: ScrapeStats,
}

/// Every torrent the tracker knows.
#[derive(Debug, Default)]
pub(crate) struct Swarms {
    torrents: HashMap<InfoHash, Swarm>,
    last_sweep: Option<Instant>,
}

impl Swarms {
    /// Records an announce from `addr` (the peer's IP and announced port)
    /// and picks peers for it. Never returns the announcing peer itself.
    pub fn announce(
        &mut self,
        req: &AnnounceRequest,
        addr: SocketAddr,
        now: Instant,
        limits: &Limits,
    ) -> Result<AnnounceReply, &'static str> {
        self.maybe_sweep(now, limits.peer_ttl);
        if !self.torrents.contains_key(&req.info_hash) {
            if req.event == AnnounceEvent::Stopped {
                return Ok(AnnounceReply {
                    peers: Vec::new(),
                    stats: ScrapeStats::default(),
                });
            }
            if self.torrents.len() >= limits.max_torrents {
                return Err("tracker is full");
            }
        }
        let swarm = self.torrents.entry(req.info_hash).or_default();
        swarm.expire(now, limits.peer_ttl);
        if req.event == AnnounceEvent::Stopped {
            swarm.peers.remove(&req.peer_id);
            let stats = swarm.stats();
            if swarm.peers.is_empty() && swarm.downloaded == 0 {
                self.torrents.remove(&req.info_hash);
            }
            return Ok(AnnounceReply {
                peers: Vec::new(),
                stats,
            });
        }
        // A peer that restarted with a new id at the same address replaces
        // its old entry.
        swarm
            .peers
            .retain(|id, p| *id == req.peer_id || p.addr != addr);
        if !swarm.peers.contains_key(&req.peer_id)
            && swarm.peers.len() >= limits.max_peers_per_torrent
        {
            return Err("swarm is full");
        }
        if req.event == AnnounceEvent::Completed {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
        }
        swarm.peers.insert(
            req.peer_id,
            Peer {
                addr,
                left: req.left,
                last_seen: now,
            },
        );
        let want = req
            .numwant
            .unwrap_or(limits.default_numwant)
            .min(limits.max_numwant) as usize;
        let seeder = req.left == 0;
        let peers = swarm
            .peers
            .iter()
            .filter(|(id, p)| **id != req.peer_id && p.addr != addr)
            // Seeders have nothing to gain from other seeders.
            .filter(|(_, p)| !(seeder && p.left == 0))
            .map(|(id, p)| (*id, p.addr))
            .choose_multiple(&mut rand::rng(), want);
        Ok(AnnounceReply {
            peers,
            stats: swarm.stats(),
        })
    }

    /// Scrape counters for `hashes` (every torrent if empty, at most
    /// `max` of them).
    pub fn scrape(
        &mut self,
        hashes: &[InfoHash],
        now: Instant,
        ttl: Duration,
        max: usize,
    ) -> Vec<(InfoHash, ScrapeStats)> {
        self.maybe_sweep(now, ttl);
        if hashes.is_empty() {
            return self
                .torrents
                .iter_mut()
                .take(max)
                .map(|(h, s)| {
                    s.expire(now, ttl);
                    (*h, s.stats())
                })
                .collect();
        }
        hashes
            .iter()
            .take(max)
            .map(|h| {
                let stats = self
                    .torrents
                    .get_mut(h)
                    .map_or_else(ScrapeStats::default, |s| {
                        s.expire(now, ttl);
                        s.stats()
                    });
                (*h, stats)
            })
            .collect()
    }

    /// Number of peers known for a torrent (for tests and status).
    pub fn peer_count(&self, h: &InfoHash) -> usize {
        self.torrents.get(h).map_or(0, |s| s.peers.len())
    }

    fn maybe_sweep(&mut self, now: Instant, ttl: Duration) {
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= ttl / 2);
        if due {
            self.last_sweep = Some(now);
            self.torrents.retain(|_, s| {
                s.expire(now, ttl);
                !s.peers.is_empty() || s.downloaded > 0
            });
        }
    }
}

fn int(i: u64) -> Value {
    Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
}

/// A `failure reason` reply.
pub(crate) fn failure_body(reason: &str) -> Vec<u8> {
    let mut d = BTreeMap::new();
    d.insert(b"failure reason".to_vec(), Value::bytes(reason.as_bytes()));
    encode(&Value::Dict(d))
}

/// An announce reply: compact (`peers` IPv4 + `peers6` IPv6, BEP 23/7) or
/// a list of dictionaries.
pub(crate) fn announce_body(
    reply: &AnnounceReply,
    compact: bool,
    no_peer_id: bool,
    interval: Duration,
    min_interval: Duration,
) -> Vec<u8> {
    let mut d = BTreeMap::new();
    d.insert(b"interval".to_vec(), int(interval.as_secs()));
    d.insert(b"min interval".to_vec(), int(min_interval.as_secs()));
    d.insert(b"complete".to_vec(), int(reply.stats.complete.into()));
    d.insert(b"incomplete".to_vec(), int(reply.stats.incomplete.into()));
    d.insert(b"downloaded".to_vec(), int(reply.stats.downloaded.into()));
    if compact {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (_, addr) in &reply.peers {
            match addr {
                SocketAddr::V4(a) => {
                    v4.extend_from_slice(&a.ip().octets());
                    v4.extend_from_slice(&a.port().to_be_bytes());
                }
                SocketAddr::V6(a) => {
                    v6.extend_from_slice(&a.ip().octets());
                    v6.extend_from_slice(&a.port().to_be_bytes());
                }
            }
        }
        d.insert(b"peers".to_vec(), Value::Bytes(v4));
        if !v6.is_empty() {
            d.insert(b"peers6".to_vec(), Value::Bytes(v6));
        }
    } else {
        let list = reply
            .peers
            .iter()
            .map(|(id, addr)| {
                let mut p = BTreeMap::new();
                p.insert(b"ip".to_vec(), Value::bytes(addr.ip().to_string()));
                p.insert(b"port".to_vec(), int(addr.port().into()));
                if !no_peer_id {
                    p.insert(b"peer id".to_vec(), Value::bytes(id.0.to_vec()));
                }
                Value::Dict(p)
            })
            .collect();
        d.insert(b"peers".to_vec(), Value::List(list));
    }
    encode(&Value::Dict(d))
}

/// A BEP 48 scrape reply.
pub(crate) fn scrape_body(stats: &[(InfoHash, ScrapeStats)]) -> Vec<u8> {
    let files = stats
        .iter()
        .map(|(h, s)| {
            let mut f = BTreeMap::new();
            f.insert(b"complete".to_vec(), int(s.complete.into()));
            f.insert(b"downloaded".to_vec(), int(s.downloaded.into()));
            f.insert(b"incomplete".to_vec(), int(s.incomplete.into()));
            (h.0.to_vec(), Value::Dict(f))
        })
        .collect();
    let mut d = BTreeMap::new();
    d.insert(b"files".to_vec(), Value::Dict(files));
    encode(&Value::Dict(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_announce, parse_scrape};

    const H: InfoHash = InfoHash([7; 20]);

    fn limits() -> Limits {
        Limits {
            peer_ttl: Duration::from_secs(100),
            max_torrents: 2,
            max_peers_per_torrent: 3,
            default_numwant: 50,
            max_numwant: 200,
        }
    }

    fn req(id: u8, port: u16, left: u64, event: AnnounceEvent) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: H,
            peer_id: PeerId([id; 20]),
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            compact: true,
            no_peer_id: false,
            numwant: None,
            ip: None,
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn peers_see_each_other_but_not_themselves() {
        let mut s = Swarms::default();
        let t = Instant::now();
        let l = limits();
        let r1 = s
            .announce(&req(1, 1001, 10, AnnounceEvent::Started), addr(1001), t, &l)
            .unwrap();
        assert!(r1.peers.is_empty());
        let r2 = s
            .announce(&req(2, 1002, 0, AnnounceEvent::Started), addr(1002), t, &l)
            .unwrap();
        assert_eq!(r2.peers, vec![(PeerId([1; 20]), addr(1001))]);
        assert_eq!(
            r2.stats,
            ScrapeStats {
                complete: 1,
                downloaded: 0,
                incomplete: 1
            }
        );
        let r1 = s
            .announce(
                &req(1, 1001, 0, AnnounceEvent::Completed),
                addr(1001),
                t,
                &l,
            )
            .unwrap();
        assert_eq!(r1.peers, vec![], "a seeder is not sent other seeders");
        assert_eq!(
            r1.stats,
            ScrapeStats {
                complete: 2,
                downloaded: 1,
                incomplete: 0
            }
        );
    }

    #[test]
    fn stopped_removes_and_ttl_expires() {
        let mut s = Swarms::default();
        let t = Instant::now();
        let l = limits();
        s.announce(&req(1, 1001, 10, AnnounceEvent::Started), addr(1001), t, &l)
            .unwrap();
        s.announce(&req(2, 1002, 10, AnnounceEvent::Started), addr(1002), t, &l)
            .unwrap();
        s.announce(&req(1, 1001, 10, AnnounceEvent::Stopped), addr(1001), t, &l)
            .unwrap();
        assert_eq!(s.peer_count(&H), 1);
        let later = t + Duration::from_secs(101);
        assert_eq!(
            s.scrape(&[H], later, l.peer_ttl, 10),
            vec![(H, ScrapeStats::default())]
        );
        assert_eq!(s.peer_count(&H), 0);
        assert!(
            s.scrape(&[], later, l.peer_ttl, 10).is_empty(),
            "empty swarm swept"
        );
    }

    #[test]
    fn limits_bound_the_table() {
        let mut s = Swarms::default();
        let t = Instant::now();
        let l = limits();
        for i in 0..3 {
            s.announce(
                &req(i, 1000 + u16::from(i), 1, AnnounceEvent::None),
                addr(1000 + u16::from(i)),
                t,
                &l,
            )
            .unwrap();
        }
        assert_eq!(
            s.announce(&req(9, 1009, 1, AnnounceEvent::None), addr(1009), t, &l),
            Err("swarm is full")
        );
        // Re-announce of a known peer is fine; same address with a new id replaces.
        s.announce(&req(0, 1000, 1, AnnounceEvent::None), addr(1000), t, &l)
            .unwrap();
        s.announce(&req(8, 1000, 1, AnnounceEvent::None), addr(1000), t, &l)
            .unwrap();
        assert_eq!(s.peer_count(&H), 3);
        let mut other = req(1, 1, 1, AnnounceEvent::None);
        other.info_hash = InfoHash([8; 20]);
        s.announce(&other, addr(1), t, &l).unwrap();
        other.info_hash = InfoHash([9; 20]);
        assert_eq!(s.announce(&other, addr(1), t, &l), Err("tracker is full"));
    }

    #[test]
    fn numwant_limits_reply() {
        let mut s = Swarms::default();
        let t = Instant::now();
        let mut l = limits();
        l.max_peers_per_torrent = 100;
        for i in 0..20u8 {
            s.announce(
                &req(i, 2000 + u16::from(i), 1, AnnounceEvent::None),
                addr(2000 + u16::from(i)),
                t,
                &l,
            )
            .unwrap();
        }
        let mut r = req(50, 3000, 1, AnnounceEvent::None);
        r.numwant = Some(5);
        assert_eq!(s.announce(&r, addr(3000), t, &l).unwrap().peers.len(), 5);
        l.max_numwant = 3;
        r.numwant = None;
        assert_eq!(s.announce(&r, addr(3000), t, &l).unwrap().peers.len(), 3);
    }

    #[test]
    fn bodies_parse_back_with_the_client_parsers() {
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        let reply = AnnounceReply {
            peers: vec![(PeerId([1; 20]), addr(6881)), (PeerId([2; 20]), v6)],
            stats: ScrapeStats {
                complete: 3,
                downloaded: 4,
                incomplete: 5,
            },
        };
        for compact in [true, false] {
            let body = announce_body(
                &reply,
                compact,
                false,
                Duration::from_secs(60),
                Duration::from_secs(30),
            );
            let r = parse_announce(&body, 1 << 20).unwrap();
            assert_eq!(r.peers, vec![addr(6881), v6]);
            assert_eq!(r.interval, Duration::from_secs(60));
            assert_eq!(r.min_interval, Some(Duration::from_secs(30)));
            assert_eq!((r.complete, r.incomplete), (Some(3), Some(5)));
        }
        let compact = announce_body(
            &reply,
            true,
            false,
            Duration::from_secs(60),
            Duration::from_secs(30),
        );
        let expected_peers = b"5:peers6:\x7f\x00\x00\x01\x1a\xe1";
        assert!(compact
            .windows(expected_peers.len())
            .any(|w| w == expected_peers));
        let stats = [(H, reply.stats)];
        assert_eq!(
            parse_scrape(&scrape_body(&stats), &[H], 1 << 20).unwrap(),
            stats
        );
        assert!(matches!(
            parse_announce(&failure_body("nope"), 100),
            Err(crate::Error::Failure(f)) if f == "nope"
        ));
    }
}
