//! Super-seeding (BEP 16) for a seeding torrent started with
//! `TorrentOptions::super_seed`: an initial seeder with a slow uplink
//! pretends to have nothing, reveals one piece at a time to each peer (the
//! one fewest peers were shown and fewest have), and reveals the next only
//! once the piece was seen spreading: another peer announced it. So the
//! seeder's upload goes to pieces the swarm lacks, close to one copy.
//!
//! - Each peer connected while seeding gets its own revealed set; its
//!   opening bitfield is that (empty) set and its requests for pieces
//!   outside it are refused (see `PeerContext::revealed`).
//! - A peer's pending piece counts as spread when another peer announces
//!   it (HAVE or its bitfield), or, when the peer itself announces it,
//!   when some other peer already had it or no other peer is connected
//!   (nobody could spread it: without this a lone leecher would stall),
//!   or [`SPREAD_WAIT`] after it announced it without anyone else doing so
//!   (leechers that cannot reach each other would stall too).

use super::*;

/// How long a peer that got its revealed piece waits for it to spread
/// before it is shown the next one anyway.
pub(crate) const SPREAD_WAIT: Duration = Duration::from_secs(5);

/// One peer's super-seeding state.
struct SuperPeer {
    /// The pieces revealed to it (shared with its writer).
    revealed: Arc<HaveSet>,
    /// The revealed pieces not yet seen spreading (one, or the last two).
    pending: Vec<u32>,
    /// When the peer itself announced `pending`.
    got_own: Option<Instant>,
}

/// The torrent's super-seeding state.
#[derive(Default)]
pub(crate) struct SuperSeed {
    peers: HashMap<PeerKey, SuperPeer>,
    /// How many peers each piece was revealed to.
    shown: Vec<u32>,
    /// Rotates the starting point of the search among equals.
    turn: usize,
}

impl Controller {
    /// The revealed set for a new connection when super-seeding applies.
    pub(super) fn superseed_set(&mut self, key: PeerKey) -> Option<Arc<HaveSet>> {
        if !self.options.super_seed || self.state != TorrentState::Seeding {
            return None;
        }
        let n = self.have.len();
        let s = self.superseed.get_or_insert_with(Box::default);
        if s.shown.len() != n {
            s.shown = vec![0; n];
        }
        let revealed = Arc::new(HaveSet::new(n));
        s.peers.insert(
            key,
            SuperPeer {
                revealed: revealed.clone(),
                pending: Vec::new(),
                got_own: None,
            },
        );
        Some(revealed)
    }

    /// A super-seeded peer finished its handshake: reveal its first piece.
    pub(super) fn superseed_ready(&mut self, key: PeerKey) {
        if self
            .superseed
            .as_ref()
            .is_some_and(|s| s.peers.contains_key(&key))
        {
            self.reveal_next(key);
        }
    }

    /// Peer `from` announced `pieces` (a HAVE, or its bitfield).
    pub(super) fn superseed_seen(&mut self, from: PeerKey, pieces: &[u32]) {
        let Some(s) = self.superseed.as_ref() else {
            return;
        };
        let lone = self
            .peers
            .values()
            .filter(|p| p.ready && !p.closing)
            .count()
            <= 1;
        let mut spread = Vec::new();
        let mut own = Vec::new();
        for &piece in pieces {
            for (&k, sp) in &s.peers {
                if !sp.pending.contains(&piece) {
                    continue;
                }
                let seen = if k == from {
                    // Its own copy: spread only if others had it already.
                    lone || self.peers.iter().any(|(o, p)| {
                        *o != k && p.bits.as_ref().is_some_and(|b| b.get(piece as usize))
                    })
                } else {
                    true
                };
                if seen {
                    spread.push((k, piece));
                } else {
                    own.push(k);
                }
            }
        }
        let now = Instant::now();
        for k in own {
            if let Some(sp) = self.superseed.as_mut().and_then(|s| s.peers.get_mut(&k)) {
                sp.got_own.get_or_insert(now);
            }
        }
        for (k, piece) in spread {
            if let Some(sp) = self.superseed.as_mut().and_then(|s| s.peers.get_mut(&k)) {
                sp.pending.retain(|&p| p != piece);
                sp.got_own = None;
            }
            self.reveal_next(k);
        }
    }

    /// Peers that have held their piece for [`SPREAD_WAIT`] without it
    /// spreading get the next one (called by the tick).
    pub(super) fn superseed_tick(&mut self, now: Instant) {
        let Some(s) = self.superseed.as_mut() else {
            return;
        };
        let mut due = Vec::new();
        for (&k, sp) in &mut s.peers {
            if sp
                .got_own
                .is_some_and(|t| now.duration_since(t) >= SPREAD_WAIT)
            {
                sp.pending.clear();
                sp.got_own = None;
                due.push(k);
            }
        }
        for k in due {
            self.reveal_next(k);
        }
    }

    /// Peer `from`'s bitfield arrived: every piece in it is announced.
    pub(super) fn superseed_bits(&mut self, from: PeerKey) {
        if self.superseed.is_none() {
            return;
        }
        let pieces: Vec<u32> = self
            .peers
            .get(&from)
            .and_then(|p| p.bits.as_ref())
            .map(|b| b.iter_ones().map(|p| p as u32).collect())
            .unwrap_or_default();
        self.superseed_seen(from, &pieces);
    }

    pub(super) fn superseed_gone(&mut self, key: PeerKey) {
        if let Some(s) = self.superseed.as_mut() {
            s.peers.remove(&key);
        }
    }

    /// Reveals to `key` the piece it lacks that was shown to the fewest
    /// peers, then held by the fewest (one HAVE). When only one more piece
    /// would be left to show it, that one goes too: the HAVE that makes us
    /// look complete must reach a peer still busy (interested), or
    /// libtorrent drops us at once as an "uninteresting upload-only peer"
    /// and does not come back.
    fn reveal_next(&mut self, key: PeerKey) {
        let bits = self.peers.get(&key).and_then(|p| p.bits.clone());
        let Some(s) = self.superseed.as_mut() else {
            return;
        };
        let Some(sp) = s.peers.get(&key) else {
            return;
        };
        if !sp.pending.is_empty() {
            return;
        }
        let n = s.shown.len();
        if n == 0 {
            return;
        }
        s.turn = s.turn.wrapping_add(7919);
        let start = s.turn % n;
        let mut left: Vec<usize> = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&p| {
                !sp.revealed.contains(p)
                    && self.have.contains(p)
                    && !bits.as_ref().is_some_and(|b| b.get(p))
            })
            .collect();
        // Fewest shown, then fewest held; the search order breaks ties.
        left.sort_by_key(|&p| (s.shown[p], picker!(self).availability(p)));
        let take = if left.len() == 2 { 2 } else { 1 };
        let chosen: Vec<u32> = left.iter().take(take).map(|&p| p as u32).collect();
        if chosen.is_empty() {
            return;
        }
        for &p in &chosen {
            sp.revealed.insert(p as usize);
            s.shown[p as usize] += 1;
        }
        if let Some(sp) = s.peers.get_mut(&key) {
            sp.pending = chosen.clone();
        }
        let haves: Arc<[u32]> = chosen.into();
        let sent = self
            .peers
            .get(&key)
            .is_some_and(|q| q.commands.try_send(PeerCommand::Haves(haves)).is_ok());
        if !sent {
            self.close(key);
        }
    }
}
