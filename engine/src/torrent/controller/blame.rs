//! Per-block blame for v2 pieces (BEP 52; the logic is in
//! `crate::v2::blame`). When a piece with several senders fails its merkle
//! check, the verifier has hashed its blocks as they were on disk; a few
//! peers (those that sent none of it first) are asked for the piece's
//! leaves, and the first answer that hashes up to the trusted piece node
//! names the bad blocks: their senders are banned on that evidence, the
//! others are not blamed at all. If every asked peer rejects, the piece is
//! blamed the v1 way (shared, as mainline does). Asked peers that stay
//! silent past the request timeout (`Timing::request_timeout`, 20 s) are
//! given up on: the leaves are asked
//! once more of peers not asked yet, and when those are silent too (or
//! there are none) the piece is blamed the v1 way, so no failed piece
//! waits for an answer forever.

use super::*;
use crate::error::Violation;
use crate::v2::blame::PendingBlame;
use bittern_storage::merkle::Hash256;
use bittern_wire::hashes::HashRequest;
use std::time::Instant;

/// Failed pieces waiting for leaves at once, at most (more are blamed the
/// v1 way).
const MAX_PENDING: usize = 64;
/// Peers asked for the leaves of one failed piece.
const ASK: usize = 3;
/// Pieces whose leaves are asked ahead of their blocks at once, at most.
const MAX_LEAF_ASKS: usize = 256;
/// A failed piece's leaves, asked of some peers.
#[derive(Debug)]
pub(crate) struct Asked {
    pending: PendingBlame,
    /// Peers asked (in every round).
    asked: Vec<PeerKey>,
    /// Asked peers of this round that have not answered.
    waiting: usize,
    /// When this round's silent peers are given up on.
    deadline: Instant,
    /// The second (last) round was asked.
    retried: bool,
}

impl Controller {
    /// The verifier's block hashes of failed v2 piece `piece`.
    pub(crate) fn on_failed_leaves(&mut self, piece: usize, leaves: Vec<Hash256>) {
        if swarm!(self).failed_leaves.len() < MAX_PENDING {
            swarm!(self).failed_leaves.insert(piece, leaves);
        }
    }

    /// Asks peers for the leaves under failed v2 piece `piece`, whose
    /// blocks came from `senders`; false when that cannot be done (not v2,
    /// no block hashes, no peer to ask): blame it the v1 way then.
    pub(super) fn ask_leaves(&mut self, piece: usize, senders: Vec<Option<PeerKey>>) -> bool {
        let Some(ours) = swarm!(self).failed_leaves.remove(&piece) else {
            return false;
        };
        if swarm!(self).blames.len() >= MAX_PENDING || swarm!(self).blames.contains_key(&piece) {
            return false;
        }
        let Some(node) = self.storage.layout().piece_hash_v2(piece) else {
            return false;
        };
        let Some(request) = self.v2.as_ref().and_then(|s| s.leaf_request(piece)) else {
            return false;
        };
        let pending = PendingBlame {
            request,
            node,
            ours,
            senders,
        };
        let known = self.v2.as_ref().and_then(|s| s.known_leaves(piece));
        if let Some(guilty) = known.and_then(|leaves| pending.guilty(&leaves)) {
            // the piece's leaves were proven before (`v2::blocks`): the
            // blocks that came before them are judged at once
            self.convict(piece, guilty);
            return true;
        }
        let asked = self.ask_peers(&pending, &[]);
        if asked.is_empty() {
            return false;
        }
        debug!(
            "{}: piece {piece} failed: asked {} peers for its leaves",
            self.short(),
            asked.len()
        );
        let waiting = asked.len();
        swarm!(self).blames.insert(
            piece,
            Asked {
                pending,
                asked,
                waiting,
                deadline: Instant::now() + self.session.config.timing.request_timeout,
                retried: false,
            },
        );
        true
    }

    /// Sends `pending`'s request to up to [`ASK`] ready v2 connections
    /// (libtorrent drops a v1 one that sends hash requests) not in `skip`,
    /// those that sent none of the piece first; the peers asked.
    fn ask_peers(&self, pending: &PendingBlame, skip: &[PeerKey]) -> Vec<PeerKey> {
        let mut keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(k, p)| p.ready && p.v2 && !skip.contains(k))
            .map(|(k, _)| *k)
            .collect();
        keys.sort_by_key(|k| (pending.senders.contains(&Some(*k)), *k));
        let mut asked = Vec::new();
        for k in keys {
            if asked.len() == ASK {
                break;
            }
            if let Some(p) = self.peers.get(&k) {
                if p.commands
                    .try_send(PeerCommand::HashRequest(pending.request))
                    .is_ok()
                {
                    asked.push(k);
                }
            }
        }
        asked
    }

    /// Gives up on peers that did not answer a leaf request in time: the
    /// leaves are asked of others once, then the piece is blamed the v1
    /// way.
    pub(super) fn expire_blames(&mut self, now: Instant) {
        // leaves asked ahead of blocks: another peer may be asked later
        let timeout = self.session.config.timing.request_timeout;
        let Some(swarm) = self.swarm.as_deref_mut() else {
            return;
        };
        swarm
            .leaf_asks
            .retain(|_, at| now.saturating_duration_since(*at) < timeout);
        let due: Vec<usize> = swarm
            .blames
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(p, _)| *p)
            .collect();
        for piece in due {
            let Some(mut a) = swarm!(self).blames.remove(&piece) else {
                continue;
            };
            if !a.retried {
                let more = self.ask_peers(&a.pending, &a.asked);
                if !more.is_empty() {
                    debug!(
                        "{}: piece {piece}: no leaves in time, asked {} more peers",
                        self.short(),
                        more.len()
                    );
                    a.waiting = more.len();
                    a.asked.extend(more);
                    a.deadline = now + self.session.config.timing.request_timeout;
                    a.retried = true;
                    swarm!(self).blames.insert(piece, a);
                    continue;
                }
            }
            debug!(
                "{}: piece {piece}: no peer gave its leaves, blamed as a whole",
                self.short()
            );
            self.blame_whole(a.pending);
        }
    }

    fn blame_for(&self, request: &HashRequest) -> Option<usize> {
        self.swarm
            .as_deref()?
            .blames
            .iter()
            .find(|(_, a)| a.pending.request == *request)
            .map(|(p, _)| *p)
    }

    /// A peer's leaves for a failed piece: when they prove against the
    /// piece's node, the senders of the blocks that differ are banned.
    /// (Leaves asked ahead of blocks were kept by the reader already.)
    pub(super) fn on_leaves(&mut self, request: &HashRequest, hashes: &[Hash256]) {
        let Some(piece) = self.blame_for(request) else {
            return;
        };
        let n = request.length as usize;
        let Some(guilty) = swarm!(self).blames[&piece]
            .pending
            .guilty(hashes.get(..n).unwrap_or(&[]))
        else {
            debug!("{}: leaves for piece {piece} do not prove", self.short());
            return self.on_leaves_rejected(request);
        };
        swarm!(self).blames.remove(&piece);
        self.convict(piece, guilty);
    }

    /// The senders of the blocks of failed piece `piece` that differ from
    /// its leaves, `(block, peer)`, are banned on that evidence.
    fn convict(&mut self, piece: usize, guilty: Vec<(usize, PeerKey)>) {
        if guilty.is_empty() {
            // the blocks now match: someone else's, or rewritten under us
            debug!("{}: piece {piece}: no block to blame", self.short());
        }
        for (block, key) in guilty {
            let begin = u32::try_from(block * BLOCK_SIZE as usize).unwrap_or(u32::MAX);
            self.bad_block_from(key, piece as u32, begin);
        }
    }

    /// `key` sent block `begin` of `piece`, which fails its proven leaf:
    /// the violation is reported and the peer banned on that evidence.
    fn bad_block_from(&mut self, key: PeerKey, piece: u32, begin: u32) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        let addr = p.addr;
        warn!(
            "{addr} {}: block {begin} of piece {piece} fails its merkle leaf",
            self.short()
        );
        self.emit(TorrentEvent::PeerViolation {
            addr,
            violation: Violation::BadBlock { piece, begin },
        });
        let who = ban_key(addr);
        if swarm!(self).bad_data.record_bad(who, true) && swarm!(self).banned.insert(who) {
            warn!("{addr} {}: banned for sending bad data", self.short());
            self.emit(TorrentEvent::PeerBanned(addr));
            self.close(key);
        }
    }

    /// A block `key` sent failed its leaf on arrival (BEP 52, checked by
    /// its reader, `v2::blocks`): it was not written; the block is asked of
    /// others and its sender is to blame alone.
    pub(crate) fn on_bad_block(&mut self, key: PeerKey, block: BlockRef) {
        self.corrupt += u64::from(block.length);
        self.bad_block_from(key, block.index, block.begin);
    }

    /// Asks `key`, which the picker just gave requests in `pieces`, for
    /// the leaves of those v2 pieces not known or asked yet, so that
    /// their next blocks are checked on arrival (`v2::blocks`). Only v2
    /// connections are asked (libtorrent drops a v1 one that sends hash
    /// requests). Only with `SessionConfig::v2_leaves_ahead`.
    pub(super) fn ask_piece_leaves(&mut self, key: PeerKey, pieces: &[u32], now: Instant) {
        if !self.session.config.v2_leaves_ahead {
            return;
        }
        let Some(server) = self.v2.as_ref() else {
            return;
        };
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        if !p.v2 {
            return;
        }
        for &piece in pieces {
            let piece = piece as usize;
            let swarm = self.swarm.as_deref();
            if swarm.is_some_and(|s| {
                s.leaf_asks.len() >= MAX_LEAF_ASKS
                    || s.leaf_asks.contains_key(&piece)
                    || s.blames.contains_key(&piece)
            }) || server.knows_leaves(piece)
            {
                continue;
            }
            let Some(req) = server.leaf_request(piece) else {
                continue;
            };
            if p.commands.try_send(PeerCommand::HashRequest(req)).is_err() {
                return;
            }
            swarm!(self).leaf_asks.insert(piece, now);
        }
    }

    /// An asked peer will not give the leaves (or gave false ones); when
    /// none is left to answer, the piece is blamed the v1 way.
    pub(super) fn on_leaves_rejected(&mut self, request: &HashRequest) {
        let Some(piece) = self.blame_for(request) else {
            return;
        };
        let Some(a) = swarm!(self).blames.get_mut(&piece) else {
            return;
        };
        a.waiting = a.waiting.saturating_sub(1);
        if a.waiting > 0 {
            return;
        }
        if let Some(a) = swarm!(self).blames.remove(&piece) {
            self.blame_whole(a.pending);
        }
    }

    /// Blames every sender of a failed piece the v1 way (shared).
    fn blame_whole(&mut self, b: PendingBlame) {
        let mut senders: Vec<PeerKey> = b.senders.into_iter().flatten().collect();
        senders.sort_unstable();
        senders.dedup();
        for key in senders {
            let Some(p) = self.peers.get(&key) else {
                continue;
            };
            let (addr, who) = (p.addr, ban_key(p.addr));
            if swarm!(self).bad_data.record_bad(who, false) && swarm!(self).banned.insert(who) {
                warn!("{addr} {}: banned for sending bad data", self.short());
                self.emit(TorrentEvent::PeerBanned(addr));
                self.close(key);
            }
        }
    }
}
