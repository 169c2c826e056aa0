//! Checking each 16 KiB block of a v2 piece as it arrives (BEP 52), with
//! `SessionConfig::v2_leaves_ahead` (off by default: leaves are then asked
//! only for a failed piece, `blame`); and the cache of leaves a seeder
//! answers leaf requests from (always).
//!
//! A piece's node in the piece layer is trusted (it comes with the
//! torrent); the leaves under it, one SHA-256 per block, are not in the
//! torrent. The controller asks them of the peer it first requests the
//! piece from (a hash request for base layer 0, `blame::leaf_request`);
//! the peer's reader thread checks the answer against the piece node
//! ([`HashServer::learn_leaves`]: a few dozen SHA-256 of 64 bytes) and
//! keeps it here, so the readers of every connection of the torrent can
//! check each block of that piece before writing it
//! ([`HashServer::check_block`]: one SHA-256 of the block on the peer's
//! own thread, never on the controller). A block that does not hash to
//! its leaf is not written; its sender is named by that block alone.
//! Blocks that came before the leaves are covered by the piece check,
//! which stays the final word on whether a piece is had.
//!
//! At most [`MAX_KNOWN`] pieces' leaves are kept for pieces being
//! downloaded. A piece that passes moves its leaves to a cache of
//! [`MAX_CACHED_LEAVES`] leaves at most (emptied when full), from which
//! leaf requests of other peers are answered, as are those whose answer
//! was hashed from disk once: a seeder hashes each piece's leaves once,
//! not once per leecher.

use std::collections::HashMap;
use std::sync::Arc;

use bittern_storage::merkle::{merkle_root, sha256, Hash256};
use bittern_wire::hashes::HashRequest;

use super::HashServer;

/// Pieces whose leaves are kept at once, at most (16 leaves of 32 bytes
/// each for 256 KiB pieces: 2 MiB at most).
pub(crate) const MAX_KNOWN: usize = 4096;

/// Leaves kept in the cache for answering leaf requests, at most (4 MiB
/// of hashes, the leaves of 2 GiB of data).
pub(crate) const MAX_CACHED_LEAVES: usize = 131_072;

const BLOCK: u64 = 16 * 1024;

/// The leaves known of pieces being downloaded, and those cached for
/// answers.
#[derive(Debug, Default)]
pub(crate) struct KnownLeaves {
    pieces: HashMap<usize, Known>,
    cached: HashMap<usize, Arc<[Hash256]>>,
    cached_leaves: usize,
}

/// A piece's proven leaves, and which of its blocks passed their leaf on
/// arrival while they were known (and so were written as checked).
#[derive(Debug)]
struct Known {
    leaves: Arc<[Hash256]>,
    checked: Vec<bool>,
}

impl KnownLeaves {
    fn cache(&mut self, piece: usize, leaves: Arc<[Hash256]>) {
        if self.cached.contains_key(&piece) || leaves.len() > MAX_CACHED_LEAVES {
            return;
        }
        if self.cached_leaves + leaves.len() > MAX_CACHED_LEAVES {
            self.cached.clear();
            self.cached_leaves = 0;
        }
        self.cached_leaves += leaves.len();
        self.cached.insert(piece, leaves);
    }
}

impl HashServer {
    /// The torrent piece whose leaves `req` asks for, exactly in the
    /// shape [`HashServer::leaf_request`] asks them.
    pub(crate) fn piece_of_leaf_request(&self, req: &HashRequest) -> Option<usize> {
        let f = self.files.get(&req.pieces_root)?;
        if req.base_layer != 0 || req.length == 0 {
            return None;
        }
        let file_piece = u64::from(req.index) / u64::from(req.length);
        let piece = f.first_piece + usize::try_from(file_piece).ok()?;
        (file_piece < f.pieces as u64 && self.leaf_request(piece).as_ref() == Some(req))
            .then_some(piece)
    }

    /// Keeps the leaves in `hashes` (an answer to `req`) when `req` asks
    /// for a piece's leaves and they hash up to `node(piece)`, the piece's
    /// trusted node; the piece, when kept.
    pub(crate) fn learn_leaves(
        &self,
        req: &HashRequest,
        hashes: &[Hash256],
        node: impl Fn(usize) -> Option<Hash256>,
    ) -> Option<usize> {
        let piece = self.piece_of_leaf_request(req)?;
        let width = req.length as usize;
        let leaves = hashes.get(..width)?;
        if Some(merkle_root(leaves, 0, width as u64)) != node(piece) {
            return None;
        }
        let mut known = self.known.lock();
        if let Some(k) = known.pieces.get(&piece) {
            // the same leaves again (they proved): what was checked stays
            return (k.leaves[..] == *leaves).then_some(piece);
        }
        if known.pieces.len() >= MAX_KNOWN {
            return None;
        }
        let known_piece = Known {
            leaves: Arc::from(leaves),
            checked: vec![false; width],
        };
        known.pieces.insert(piece, known_piece);
        Some(piece)
    }

    /// The proven leaves of `piece`, if known.
    pub(crate) fn known_leaves(&self, piece: usize) -> Option<Arc<[Hash256]>> {
        self.known
            .lock()
            .pieces
            .get(&piece)
            .map(|k| k.leaves.clone())
    }

    /// Whether the leaves of `piece` are known.
    pub(crate) fn knows_leaves(&self, piece: usize) -> bool {
        self.known.lock().pieces.contains_key(&piece)
    }

    /// Forgets the leaves of `piece` for checking blocks (it passed);
    /// they stay cached for answering others.
    pub(crate) fn forget_leaves(&self, piece: usize) {
        let mut known = self.known.lock();
        if let Some(k) = known.pieces.remove(&piece) {
            known.cache(piece, k.leaves);
        }
    }

    /// The leaves of `piece` for an answer: known or cached.
    pub(crate) fn cached_leaves(&self, piece: usize) -> Option<Arc<[Hash256]>> {
        let known = self.known.lock();
        known
            .pieces
            .get(&piece)
            .map(|k| &k.leaves)
            .or_else(|| known.cached.get(&piece))
            .cloned()
    }

    /// Caches `leaves`, an answer hashed from disk for `piece`.
    pub(crate) fn cache_leaves(&self, piece: usize, leaves: &[Hash256]) {
        self.known.lock().cache(piece, Arc::from(leaves));
    }

    /// Whether `data`, the block at `begin` of torrent piece `piece`,
    /// hashes to its leaf: `None` when that cannot be told (the leaves are
    /// not known, or the block lies in padding past its file's end).
    /// A block that passes is marked checked (see
    /// [`HashServer::all_blocks_checked`]).
    pub(crate) fn check_block(&self, piece: usize, begin: u32, data: &[u8]) -> Option<bool> {
        let leaves = self.known_leaves(piece)?;
        let n = self.file_bytes_in(piece)?;
        let begin = u64::from(begin);
        if begin % BLOCK != 0 || begin >= n {
            return None;
        }
        let take = (n - begin).min(data.len() as u64) as usize;
        let at = usize::try_from(begin / BLOCK).ok()?;
        let leaf = leaves.get(at)?;
        let ok = sha256(&data[..take]) == *leaf;
        if ok {
            let mut known = self.known.lock();
            // the same leaves still (else the mark would vouch for nothing)
            if let Some(k) = known.pieces.get_mut(&piece) {
                if Arc::ptr_eq(&k.leaves, &leaves) {
                    if let Some(c) = k.checked.get_mut(at) {
                        *c = true;
                    }
                }
            }
        }
        Some(ok)
    }

    /// The bytes of its file in torrent piece `piece` (a hybrid pads
    /// after them, a v2-only torrent's last piece may be short).
    fn file_bytes_in(&self, piece: usize) -> Option<u64> {
        let (_, f) = self.file_of_piece(piece)?;
        let in_file = (piece - f.first_piece) as u64 * self.piece_length;
        Some(f.length.saturating_sub(in_file).min(self.piece_length))
    }

    /// Whether every block of `piece` (its file's bytes) passed its proven
    /// leaf on arrival: the piece then hashes to its node (the leaves
    /// proved against it) without being read back, as a v1 piece hashed as
    /// it arrived (`inline_hash`) is. A block that failed was not written;
    /// leaves learnt again start with nothing checked.
    pub(crate) fn all_blocks_checked(&self, piece: usize) -> bool {
        let Some(n) = self.file_bytes_in(piece) else {
            return false;
        };
        let blocks = usize::try_from(n.div_ceil(BLOCK)).unwrap_or(usize::MAX);
        let known = self.known.lock();
        known.pieces.get(&piece).is_some_and(|k| {
            blocks > 0 && blocks <= k.checked.len() && k.checked[..blocks].iter().all(|c| *c)
        })
    }
}

#[cfg(test)]
mod tests {
    use bittern_storage::merkle::{leaf_hashes, MerkleTree};
    use bittern_storage::{FileSpec, Layout};

    use super::*;

    #[test]
    fn blocks_are_checked_against_proven_leaves_only() {
        const PLEN: u64 = 64 * 1024;
        // one file of 3 pieces and a bit: 4 blocks a piece, a short last one
        let data: Vec<u8> = (0..3 * PLEN as usize + 20_000)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let tree = MerkleTree::from_data(&data).unwrap();
        let layer = tree.layer(2).to_vec();
        let files = vec![FileSpec {
            path: "f".into(),
            length: data.len() as u64,
            padding: false,
        }];
        let layout = Layout::new_v2(files, PLEN, &[layer[..4].to_vec()]).unwrap();
        let server = HashServer::new(&layout).unwrap();
        let node = |p: usize| layout.piece_hash_v2(p);
        let req = server.leaf_request(1).unwrap();
        assert_eq!(server.piece_of_leaf_request(&req), Some(1));
        let piece1 = &data[PLEN as usize..2 * PLEN as usize];
        // unknown leaves: no verdict
        assert_eq!(server.check_block(1, 0, &piece1[..16384]), None);
        // false leaves are refused
        let mut lie = leaf_hashes(piece1);
        lie[2][0] ^= 1;
        assert_eq!(server.learn_leaves(&req, &lie, node), None);
        assert!(!server.knows_leaves(1));
        // true ones are kept
        let leaves = tree
            .hashes(0, u64::from(req.index), u64::from(req.length), 0)
            .unwrap();
        assert_eq!(server.learn_leaves(&req, &leaves, node), Some(1));
        assert_eq!(
            server.check_block(1, 32768, &piece1[32768..49152]),
            Some(true)
        );
        let mut bad = piece1[32768..49152].to_vec();
        bad[9] ^= 0x40;
        assert_eq!(server.check_block(1, 32768, &bad), Some(false));
        // a piece passes without a read-back once each block passed
        assert!(!server.all_blocks_checked(1), "one block of four");
        for at in [0usize, 16384] {
            assert_eq!(
                server.check_block(1, at as u32, &piece1[at..at + 16384]),
                Some(true)
            );
        }
        assert_eq!(server.check_block(1, 49152, &bad), Some(false));
        assert!(!server.all_blocks_checked(1), "the last block failed");
        assert_eq!(server.check_block(1, 49152, &piece1[49152..]), Some(true));
        assert!(server.all_blocks_checked(1));
        assert_eq!(server.learn_leaves(&req, &leaves, node), Some(1));
        assert!(server.all_blocks_checked(1), "the same leaves again");
        // the last piece: one short block of 20,000 - 16,384 bytes
        let req3 = server.leaf_request(3).unwrap();
        let l3 = tree
            .hashes(0, u64::from(req3.index), u64::from(req3.length), 0)
            .unwrap();
        assert_eq!(server.learn_leaves(&req3, &l3, node), Some(3));
        let tail = &data[3 * PLEN as usize + 16384..];
        assert_eq!(server.check_block(3, 16384, tail), Some(true));
        assert_eq!(
            server.check_block(3, 32768, &[0; 16384]),
            None,
            "past the file"
        );
        assert!(!server.all_blocks_checked(3), "block 0 not seen");
        let head = &data[3 * PLEN as usize..3 * PLEN as usize + 16384];
        assert_eq!(server.check_block(3, 0, head), Some(true));
        assert!(server.all_blocks_checked(3), "the file's two blocks");
        server.forget_leaves(1);
        assert!(!server.all_blocks_checked(1), "leaves forgotten");
        assert_eq!(server.check_block(1, 0, &piece1[..16384]), None);
        // ... but still answered to others from the cache
        assert_eq!(server.cached_leaves(1).as_deref(), Some(&leaves[..]));
    }

    #[test]
    fn the_answer_cache_is_bounded() {
        let mut k = KnownLeaves::default();
        let leaves: Arc<[Hash256]> = Arc::from(vec![[7u8; 32]; 16]);
        let per = MAX_CACHED_LEAVES / 16;
        for p in 0..per {
            k.cache(p, leaves.clone());
        }
        assert_eq!((k.cached.len(), k.cached_leaves), (per, MAX_CACHED_LEAVES));
        k.cache(per, leaves.clone());
        assert_eq!(
            (k.cached.len(), k.cached_leaves),
            (1, 16),
            "emptied when full"
        );
        assert!(k.cached.contains_key(&per));
    }
}
