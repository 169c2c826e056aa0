//! Per-block blame for v2 pieces (BEP 52): a piece that fails its merkle
//! check was made of 16 KiB blocks, each from some peer. Its piece-layer
//! node is trusted (it comes with the torrent), the leaves below it are
//! not known; a peer is asked for them with a hash request (base layer 0),
//! the answer kept only when it hashes up to that node, and then each
//! block's SHA-256 as written is compared with its leaf: exactly the
//! blocks that differ are bad, and exactly their senders are to blame.
//!
//! Pure: the controller sends the request, keeps the [`PendingBlame`] and
//! feeds the answer back.

use bittern_storage::merkle::{merkle_root, Hash256};
use bittern_wire::hashes::HashRequest;

use crate::picker::PeerKey;

/// The hash request for the leaves under `piece`'s node, and that node:
/// `file_piece` is the piece's index within its file, `file_len` the
/// file's length.
pub(crate) fn leaf_request(
    root: Hash256,
    file_len: u64,
    piece_length: u64,
    file_piece: u64,
) -> Option<HashRequest> {
    const BLOCK: u64 = 16 * 1024;
    let leaves_per_piece = if file_len > piece_length {
        piece_length / BLOCK
    } else {
        // a file of one piece: its node is the root, over the padded leaves
        file_len.div_ceil(BLOCK).next_power_of_two()
    };
    if leaves_per_piece < 2 {
        return None; // one block per piece: the piece's sender is the block's
    }
    Some(HashRequest {
        pieces_root: root,
        base_layer: 0,
        index: u32::try_from(file_piece.checked_mul(leaves_per_piece)?).ok()?,
        length: u32::try_from(leaves_per_piece).ok()?,
        proof_layers: 0,
    })
}

/// A failed v2 piece waiting for its leaves.
#[derive(Debug, Clone)]
pub(crate) struct PendingBlame {
    /// The request sent (answers are matched by it).
    pub request: HashRequest,
    /// The piece's trusted node (piece layer entry, or the file's root).
    pub node: Hash256,
    /// SHA-256 of each block as it was on disk when the piece failed.
    pub ours: Vec<Hash256>,
    /// Who sent each block (`None`: not from a peer, e.g. a web seed).
    pub senders: Vec<Option<PeerKey>>,
}

impl PendingBlame {
    /// The blocks that differ from `leaves` (an answer to `request`) and
    /// their senders, `(block, peer)`, or `None` when `leaves` does not
    /// hash up to the trusted node (the answering peer lied or erred: wait
    /// for another answer).
    pub(crate) fn guilty(&self, leaves: &[Hash256]) -> Option<Vec<(usize, PeerKey)>> {
        let width = u64::from(self.request.length);
        if leaves.len() as u64 != width || merkle_root(leaves, 0, width) != self.node {
            return None;
        }
        let mut out = Vec::new();
        for (i, ours) in self.ours.iter().enumerate() {
            if leaves.get(i) != Some(ours) {
                if let Some(Some(p)) = self.senders.get(i) {
                    out.push((i, *p));
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_storage::merkle::{leaf_hashes, MerkleTree};

    #[test]
    fn the_sender_of_the_one_bad_block_is_found() {
        const PLEN: u64 = 64 * 1024;
        // a file of three pieces of four blocks; piece 1 gets one bad block
        let data: Vec<u8> = (0..3 * PLEN as usize - 100)
            .map(|i| (i % 249) as u8)
            .collect();
        let tree = MerkleTree::from_data(&data).unwrap();
        let req = leaf_request(tree.root(), data.len() as u64, PLEN, 1).unwrap();
        assert_eq!((req.base_layer, req.index, req.length), (0, 4, 4));
        let node = tree.layer(2)[1];
        let mut piece = data[PLEN as usize..2 * PLEN as usize].to_vec();
        piece[2 * 16384 + 5] ^= 0xff;
        let (good, bad) = (PeerKey(1), PeerKey(2));
        let pending = PendingBlame {
            request: req,
            node,
            ours: leaf_hashes(&piece),
            senders: vec![Some(good), Some(good), Some(bad), Some(good)],
        };
        let answer = tree
            .hashes(0, u64::from(req.index), u64::from(req.length), 0)
            .unwrap();
        assert_eq!(pending.guilty(&answer), Some(vec![(2, bad)]));
        // a lying answer does not hash to the node: no verdict
        let mut lie = answer.clone();
        lie[0][0] ^= 1;
        assert_eq!(pending.guilty(&lie), None);
        assert_eq!(pending.guilty(&answer[..2]), None);
    }

    #[test]
    fn small_files_and_one_block_pieces() {
        // a file of 3 blocks in one 64 KiB piece: 4 leaves under the root
        let r = leaf_request([1; 32], 3 * 16384, 65536, 0).unwrap();
        assert_eq!((r.index, r.length), (0, 4));
        // 16 KiB pieces: nothing to ask
        assert!(leaf_request([1; 32], 1 << 20, 16384, 3).is_none());
    }
}
