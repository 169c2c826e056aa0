//! Per-block blame for v2 pieces (BEP 52; the logic is in
//! `crate::v2::blame`). When a piece with several senders fails its merkle
//! check, the verifier has hashed its blocks as they were on disk; a few
//! peers (those that sent none of it first) are asked for the piece's
//! leaves, and the first answer that hashes up to the trusted piece node
//! names the bad blocks: their senders are banned on that evidence, the
//! others are not blamed at all. If every asked peer rejects, the piece is
//! blamed the v1 way (shared, as mainline does).

use super::*;
use crate::error::Violation;
use crate::v2::blame::PendingBlame;
use bittern_storage::merkle::Hash256;
use bittern_wire::hashes::HashRequest;

/// Failed pieces waiting for leaves at once, at most (more are blamed the
/// v1 way).
const MAX_PENDING: usize = 64;
/// Peers asked for the leaves of one failed piece.
const ASK: usize = 3;

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
        let mut keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ready)
            .map(|(k, _)| *k)
            .collect();
        // peers that sent none of the piece first
        keys.sort_by_key(|k| (senders.contains(&Some(*k)), *k));
        let mut asked = 0;
        for k in keys {
            if asked == ASK {
                break;
            }
            if let Some(p) = self.peers.get(&k) {
                if p.commands
                    .try_send(PeerCommand::HashRequest(request))
                    .is_ok()
                {
                    asked += 1;
                }
            }
        }
        if asked == 0 {
            return false;
        }
        debug!(
            "{}: piece {piece} failed: asked {asked} peers for its leaves",
            self.short()
        );
        let pending = PendingBlame {
            request,
            node,
            ours,
            senders,
        };
        swarm!(self).blames.insert(piece, (pending, asked));
        true
    }

    fn blame_for(&self, request: &HashRequest) -> Option<usize> {
        self.swarm
            .as_deref()?
            .blames
            .iter()
            .find(|(_, (b, _))| b.request == *request)
            .map(|(p, _)| *p)
    }

    /// A peer's leaves for a failed piece: when they prove against the
    /// piece's node, the senders of the blocks that differ are banned.
    pub(super) fn on_leaves(&mut self, request: &HashRequest, hashes: &[Hash256]) {
        let Some(piece) = self.blame_for(request) else {
            return;
        };
        let n = request.length as usize;
        let Some(guilty) = swarm!(self).blames[&piece]
            .0
            .guilty(hashes.get(..n).unwrap_or(&[]))
        else {
            debug!("{}: leaves for piece {piece} do not prove", self.short());
            return self.on_leaves_rejected(request);
        };
        swarm!(self).blames.remove(&piece);
        if guilty.is_empty() {
            // the blocks now match: someone else's, or rewritten under us
            debug!("{}: piece {piece}: no block to blame", self.short());
        }
        for (block, key) in guilty {
            let begin = u32::try_from(block * BLOCK_SIZE as usize).unwrap_or(u32::MAX);
            let Some(p) = self.peers.get(&key) else {
                continue;
            };
            let addr = p.addr;
            warn!(
                "{addr} {}: block {begin} of piece {piece} fails its merkle leaf",
                self.short()
            );
            self.emit(TorrentEvent::PeerViolation {
                addr,
                violation: Violation::BadBlock {
                    piece: piece as u32,
                    begin,
                },
            });
            let who = ban_key(addr);
            if swarm!(self).bad_data.record_bad(who, true) && swarm!(self).banned.insert(who) {
                warn!("{addr} {}: banned for sending bad data", self.short());
                self.emit(TorrentEvent::PeerBanned(addr));
                self.close(key);
            }
        }
    }

    /// An asked peer will not give the leaves (or gave false ones); when
    /// none is left to answer, the piece is blamed the v1 way.
    pub(super) fn on_leaves_rejected(&mut self, request: &HashRequest) {
        let Some(piece) = self.blame_for(request) else {
            return;
        };
        let Some((_, waiting)) = swarm!(self).blames.get_mut(&piece) else {
            return;
        };
        *waiting = waiting.saturating_sub(1);
        if *waiting > 0 {
            return;
        }
        let Some((b, _)) = swarm!(self).blames.remove(&piece) else {
            return;
        };
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
