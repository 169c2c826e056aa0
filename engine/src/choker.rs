//! Who gets unchoked: mainline's `Choker`, as pure logic.
//!
//! The controller calls [`Choker::rechoke`] every 10 s with `round_tick =
//! true`, and also (with `round_tick = false`) whenever a peer connects,
//! leaves, or changes interest. It gets back the set of peers that must be
//! unchoked; everyone else is choked. The choker keeps only a little state
//! of its own: the round counter, the current optimistic unchoke, and when
//! each peer was last unchoked or choked (for seeding round-robin).
//!
//! - **Leeching**: the `slots - 1` interested, non-snubbed peers with the best
//!   download rate (from them) are unchoked — tit for tat.
//! - **Seeding**: upload slots rotate so every interested peer gets a turn:
//!   a peer unchoked less than `optimistic_every` rounds ago keeps its slot
//!   (best upload rate first); then peers waiting longest since they were
//!   choked; then long-time unchoked peers by upload rate.
//! - **Optimistic unchoke**: one more interested peer, chosen at random and
//!   rotated every `optimistic_every` rounds (30 s). Peers connected in the
//!   last [`NEW_PEER_WINDOW`] get three times the weight, as in mainline
//!   4.x, so new peers quickly get something to trade. If fewer peers
//!   qualify for the regular slots than there are, the spare slots are
//!   filled with further optimistic unchokes.
//! - **Idle unchokes**: slots still free after that go to peers that are not
//!   interested (yet), as mainline and libtorrent do. It costs nothing (they
//!   request nothing) and a peer that turns interested can request at once,
//!   in the same message as its INTERESTED, instead of waiting for our
//!   UNCHOKE. Transmission sends requests only on its 1 s peer pulse, so the
//!   wait costs it a second or more. An idle unchoke holds no seeding turn.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::picker::PeerKey;

/// Peers connected more recently than this are "new" and weigh 3x in the
/// optimistic unchoke draw.
pub const NEW_PEER_WINDOW: Duration = Duration::from_secs(60);

/// Weight of a new peer in the optimistic draw (an old peer weighs 1).
const NEW_PEER_WEIGHT: u32 = 3;

/// Choker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Total upload slots, including the optimistic one (at least 1).
    pub upload_slots: usize,
    /// Rotate the optimistic unchoke every this many rounds (3 rounds of
    /// 10 s = 30 s). Also the length of a seeding round-robin turn.
    pub optimistic_every: u32,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            upload_slots: 4,
            optimistic_every: 3,
        }
    }
}

impl ChokerConfig {
    /// A config whose slot count follows the upload limit, like mainline.
    pub fn for_upload_limit(upload_limit: Option<u64>) -> Self {
        ChokerConfig {
            upload_slots: slots_for_rate(upload_limit),
            ..Self::default()
        }
    }
}

/// Upload slots for an upload rate limit in bytes/s, as mainline's
/// `_max_uploads` computes them: unlimited 7; below 9 KiB/s 2; below 15 3;
/// below 42 4; else `sqrt(KiB/s * 0.6)`.
pub fn slots_for_rate(upload_limit: Option<u64>) -> usize {
    let Some(limit) = upload_limit.filter(|&l| l > 0) else {
        return 7;
    };
    let kib = limit as f64 / 1024.0;
    if kib < 9.0 {
        2
    } else if kib < 15.0 {
        3
    } else if kib < 42.0 {
        4
    } else {
        ((kib * 0.6).sqrt() as usize).max(4)
    }
}

/// What the choker needs to know about one connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChokeCandidate {
    /// The connection.
    pub peer: PeerKey,
    /// The peer is interested in our pieces.
    pub interested: bool,
    /// The peer has sent us nothing for a while though we asked.
    pub snubbed: bool,
    /// Bytes/s we receive from the peer.
    pub download_rate: f64,
    /// Bytes/s we send to the peer.
    pub upload_rate: f64,
    /// When the connection was made.
    pub connected_at: Instant,
    /// We currently unchoke this peer.
    pub unchoked: bool,
}

/// The choking policy. See the module docs.
#[derive(Debug)]
pub struct Choker {
    config: ChokerConfig,
    rng: SmallRng,
    /// Rounds seen (`round_tick` calls).
    round: u64,
    /// The current optimistic unchoke and the round it was chosen in.
    optimistic: Option<(PeerKey, u64)>,
    /// Round in which a currently unchoked, interested peer was unchoked
    /// (its seeding turn).
    unchoked_round: HashMap<PeerKey, u64>,
    /// When a peer was last choked by us (seeding round-robin order).
    choked_at: HashMap<PeerKey, Instant>,
}

impl Choker {
    /// A choker; `seed` makes the optimistic draws reproducible.
    pub fn new(config: ChokerConfig, seed: u64) -> Self {
        Choker {
            config,
            rng: SmallRng::seed_from_u64(seed),
            round: 0,
            optimistic: None,
            unchoked_round: HashMap::new(),
            choked_at: HashMap::new(),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// Change the slot count (e.g. after the upload limit changed).
    pub fn set_upload_slots(&mut self, slots: usize) {
        self.config.upload_slots = slots;
    }

    /// The current optimistic unchoke, if any.
    pub fn optimistic(&self) -> Option<PeerKey> {
        self.optimistic.map(|(p, _)| p)
    }

    /// Decide who is unchoked. `round_tick` marks the regular 10 s round
    /// (which may rotate the optimistic unchoke); other calls only react to
    /// changes. Returns the peers to unchoke, sorted; all others are choked.
    pub fn rechoke(
        &mut self,
        now: Instant,
        seeding: bool,
        peers: &[ChokeCandidate],
        round_tick: bool,
    ) -> Vec<PeerKey> {
        if round_tick {
            self.round += 1;
        }
        self.sync_state(now, peers);
        let slots = self.config.upload_slots.max(1);
        let regular_slots = slots - 1;

        let regular = if seeding {
            self.seeding_order(peers)
        } else {
            let mut v: Vec<&ChokeCandidate> = peers
                .iter()
                .filter(|c| c.interested && !c.snubbed)
                .collect();
            v.sort_by(|a, b| {
                b.download_rate
                    .total_cmp(&a.download_rate)
                    .then(a.peer.cmp(&b.peer))
            });
            v
        };
        let mut unchoke: Vec<PeerKey> =
            regular.iter().take(regular_slots).map(|c| c.peer).collect();

        // The optimistic unchoke: keep it unless it is time to rotate or it
        // is no longer eligible.
        let eligible: Vec<&ChokeCandidate> = peers
            .iter()
            .filter(|c| c.interested && !unchoke.contains(&c.peer))
            .collect();
        let every = u64::from(self.config.optimistic_every.max(1));
        let current = self
            .optimistic
            .filter(|(p, _)| eligible.iter().any(|c| c.peer == *p));
        let rotate = match current {
            None => true,
            Some((_, since)) => round_tick && self.round >= since + every,
        };
        if rotate {
            let exclude = current.map(|(p, _)| p);
            let pick = self.draw(now, &eligible, exclude, &unchoke).or(exclude);
            self.optimistic = pick.map(|p| (p, self.round));
        } else {
            self.optimistic = current;
        }
        if let Some((p, _)) = self.optimistic {
            unchoke.push(p);
        }
        // Spare slots (not enough peers for the regular ones): more
        // optimistic unchokes.
        while unchoke.len() < slots {
            match self.draw(now, &eligible, None, &unchoke) {
                Some(p) => unchoke.push(p),
                None => break,
            }
        }
        // Still spare: idle unchokes, those we already unchoke first (no
        // churn), then in key order.
        let spare = slots.saturating_sub(unchoke.len());
        if spare > 0 {
            let mut idle: Vec<&ChokeCandidate> = peers
                .iter()
                .filter(|c| !c.interested && !unchoke.contains(&c.peer))
                .collect();
            idle.sort_by_key(|c| (!c.unchoked, c.peer));
            unchoke.extend(idle.iter().take(spare).map(|c| c.peer));
        }

        unchoke.sort();
        self.record(now, peers, &unchoke);
        unchoke
    }

    /// Forget peers that left; adopt the controller's view of who is
    /// unchoked.
    fn sync_state(&mut self, now: Instant, peers: &[ChokeCandidate]) {
        let present: HashSet<PeerKey> = peers.iter().map(|c| c.peer).collect();
        self.unchoked_round.retain(|p, _| present.contains(p));
        self.choked_at.retain(|p, _| present.contains(p));
        for c in peers {
            // Only an interested peer holds a turn; one that lost interest
            // has ended its turn, as if choked.
            if c.unchoked && c.interested {
                self.unchoked_round.entry(c.peer).or_insert(self.round);
            } else if self.unchoked_round.remove(&c.peer).is_some() {
                self.choked_at.insert(c.peer, now);
            }
        }
    }

    /// Remember when peers got unchoked or choked by this decision.
    fn record(&mut self, now: Instant, peers: &[ChokeCandidate], unchoke: &[PeerKey]) {
        for c in peers {
            if unchoke.contains(&c.peer) && c.interested {
                self.unchoked_round.entry(c.peer).or_insert(self.round);
                self.choked_at.remove(&c.peer);
            } else if self.unchoked_round.remove(&c.peer).is_some() {
                self.choked_at.insert(c.peer, now);
            }
        }
    }

    /// Interested peers in seeding preference order (see module docs).
    fn seeding_order<'a>(&self, peers: &'a [ChokeCandidate]) -> Vec<&'a ChokeCandidate> {
        let turn = u64::from(self.config.optimistic_every.max(1));
        let mut keep = Vec::new();
        let mut waiting = Vec::new();
        let mut expired = Vec::new();
        for c in peers.iter().filter(|c| c.interested) {
            match self.unchoked_round.get(&c.peer) {
                Some(&r) if self.round < r + turn => keep.push(c),
                Some(_) => expired.push(c),
                None => waiting.push(c),
            }
        }
        let by_upload = |a: &&ChokeCandidate, b: &&ChokeCandidate| {
            b.upload_rate
                .total_cmp(&a.upload_rate)
                .then(a.peer.cmp(&b.peer))
        };
        keep.sort_by(by_upload);
        expired.sort_by(by_upload);
        // Longest waiting first: choked longest ago, or (never unchoked)
        // connected longest ago.
        waiting.sort_by_key(|c| {
            (
                self.choked_at
                    .get(&c.peer)
                    .copied()
                    .unwrap_or(c.connected_at),
                c.peer,
            )
        });
        keep.into_iter().chain(waiting).chain(expired).collect()
    }

    /// A weighted random pick among `eligible` minus `exclude` and `taken`.
    fn draw(
        &mut self,
        now: Instant,
        eligible: &[&ChokeCandidate],
        exclude: Option<PeerKey>,
        taken: &[PeerKey],
    ) -> Option<PeerKey> {
        let pool: Vec<(PeerKey, u32)> = eligible
            .iter()
            .filter(|c| Some(c.peer) != exclude && !taken.contains(&c.peer))
            .map(|c| {
                let new = now.saturating_duration_since(c.connected_at) < NEW_PEER_WINDOW;
                (c.peer, if new { NEW_PEER_WEIGHT } else { 1 })
            })
            .collect();
        let total: u32 = pool.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.rng.random_range(0..total);
        for (p, w) in pool {
            if x < w {
                return Some(p);
            }
            x -= w;
        }
        None
    }
}

#[cfg(test)]
mod tests;
