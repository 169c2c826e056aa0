//! Answering BEP 52 hash requests for a file from what a seeder keeps:
//! the file's piece layer (from the torrent), and the leaves of the few
//! pieces a request reaches below that layer, hashed from disk on demand.

use super::{ceil_log2, hash_pair, pad_hash, piece_layer_height, Hash256, MerkleTree};
use crate::error::Result;

/// One file's tree above its piece layer, for serving hash requests
/// without holding every leaf: nodes at or above the piece layer come from
/// it, nodes below from the leaves of the piece they lie in (see
/// [`LayerTree::hashes`]).
#[derive(Debug, Clone)]
pub struct LayerTree {
    /// Height of the file's whole tree (its root's layer).
    height: u32,
    /// Layer of the piece nodes: `log2(piece length / 16 KiB)`, capped at
    /// `height` for a file of at most one piece.
    piece_height: u32,
    /// Layers from `piece_height` up to the root, nodes over real data
    /// only (padding implied).
    upper: Vec<Vec<Hash256>>,
}

impl LayerTree {
    /// The tree of a file of `file_length` bytes (not empty) from its
    /// piece layer, or from its root alone for a file of at most one
    /// piece (as a torrent's `piece layers` and `pieces root` hold them).
    /// `None` when `nodes` is not one hash per piece (or the root).
    ///
    /// # Errors
    /// [`crate::Error::InvalidV2PieceLength`].
    pub fn new(file_length: u64, piece_length: u64, nodes: &[Hash256]) -> Result<Option<Self>> {
        let h = piece_layer_height(piece_length)?;
        let height = ceil_log2(super::block_count(file_length));
        let pieces = file_length.div_ceil(piece_length);
        if file_length == 0 || (pieces > 1 && nodes.len() as u64 != pieces) || nodes.is_empty() {
            return Ok(None);
        }
        if pieces == 1 && nodes.len() != 1 {
            return Ok(None);
        }
        let piece_height = h.min(height);
        let mut upper = vec![nodes.to_vec()];
        for l in piece_height..height {
            let pad = pad_hash(l);
            let next = upper[upper.len() - 1]
                .chunks(2)
                .map(|c| hash_pair(&c[0], c.get(1).unwrap_or(&pad)))
                .collect();
            upper.push(next);
        }
        Ok(Some(LayerTree {
            height,
            piece_height,
            upper,
        }))
    }

    /// The file's root (its `pieces root` when the layer was right).
    pub fn root(&self) -> Hash256 {
        self.upper[self.upper.len() - 1][0]
    }

    /// Height of the file's tree.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Node `index` at `layer >= piece layer`, padding included.
    fn upper_node(&self, layer: u32, index: u64) -> Hash256 {
        let nodes = &self.upper[(layer - self.piece_height) as usize];
        usize::try_from(index)
            .ok()
            .and_then(|i| nodes.get(i).copied())
            .unwrap_or_else(|| pad_hash(layer))
    }

    /// The answer to a hash request, as [`MerkleTree::hashes`] gives it
    /// for the whole tree. `piece_leaves(p)` gives the leaf hashes of the
    /// file's piece `p` (called only for pieces holding requested nodes or
    /// uncles below the piece layer, once each). `Ok(None)` for a request
    /// that does not fit the tree (see [`MerkleTree::hashes`]), or when a
    /// piece's leaves do not hash to its node in the layer (the data on
    /// disk is not the torrent's: reject the request).
    ///
    /// # Errors
    /// What `piece_leaves` returns.
    pub fn hashes(
        &self,
        base: u32,
        index: u64,
        length: u64,
        proof_layers: u32,
        mut piece_leaves: impl FnMut(u64) -> Result<Vec<Hash256>>,
    ) -> Result<Option<Vec<Hash256>>> {
        let height = self.height;
        if length < 2
            || !length.is_power_of_two()
            || !index.is_multiple_of(length)
            || base >= height
        {
            return Ok(None);
        }
        let fits = index
            .checked_add(length)
            .is_some_and(|end| end <= 1u64 << (height - base));
        if !fits || u64::from(base) + u64::from(proof_layers) >= u64::from(height) {
            return Ok(None);
        }
        let ph = self.piece_height;
        let mut piece: Option<(u64, MerkleTree)> = None;
        let mut node = |layer: u32, i: u64| -> Result<Option<Hash256>> {
            if layer >= ph {
                return Ok(Some(self.upper_node(layer, i)));
            }
            let p = i >> (ph - layer);
            if p >= self.upper[0].len() as u64 {
                return Ok(Some(pad_hash(layer)));
            }
            if piece.as_ref().is_none_or(|(q, _)| *q != p) {
                let mut leaves = piece_leaves(p)?;
                leaves.resize(1usize << ph, [0; 32]);
                let Some(t) = MerkleTree::from_leaves(leaves) else {
                    return Ok(None);
                };
                if t.root() != self.upper[0][p as usize] {
                    return Ok(None);
                }
                piece = Some((p, t));
            }
            let local = i & ((1u64 << (ph - layer)) - 1);
            Ok(piece.as_ref().and_then(|(_, t)| t.node(layer, local)))
        };
        let m = length.trailing_zeros();
        let mut out = Vec::with_capacity(length as usize + proof_layers as usize);
        for i in index..index + length {
            let Some(n) = node(base, i)? else {
                return Ok(None);
            };
            out.push(n);
        }
        let sub = index >> m;
        for layer in base + m..=base + proof_layers {
            let Some(n) = node(layer, (sub >> (layer - base - m)) ^ 1)? else {
                return Ok(None);
            };
            out.push(n);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hashes, BLOCK_LEN};

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(seed).rotate_left(i % 7) ^ (i >> 12)) as u8)
            .collect()
    }

    /// Every request that fits (and some that do not) gets the whole
    /// tree's answer, for files of many pieces, one piece, and less.
    #[test]
    fn answers_equal_the_whole_tree() {
        let b = BLOCK_LEN as usize;
        for (len, plen) in [
            (13 * b + 100, 4 * BLOCK_LEN),
            (16 * b, 2 * BLOCK_LEN),
            (3 * b, 4 * BLOCK_LEN),
            (5 * b + 1, 8 * BLOCK_LEN),
            (9 * b, BLOCK_LEN),
            (100, 4 * BLOCK_LEN),
        ] {
            let d = data(len, 2_246_822_519);
            let whole = MerkleTree::from_data(&d).unwrap();
            let chunks: Vec<&[u8]> = d.chunks(plen as usize).collect();
            let layer: Vec<Hash256> = if chunks.len() > 1 {
                whole.piece_layer(plen).unwrap()
            } else {
                vec![whole.root()]
            };
            let tree = LayerTree::new(len as u64, plen, &layer).unwrap().unwrap();
            assert_eq!((tree.root(), tree.height()), (whole.root(), whole.height()));
            let mut asked = 0;
            for base in 0..=whole.height() + 1 {
                for log in 0..6 {
                    let length = 1u64 << log;
                    for index in (0..40).step_by(length as usize) {
                        for proof in 0..whole.height() + 2 {
                            let got = tree
                                .hashes(base, index, length, proof, |p| {
                                    asked += 1;
                                    Ok(leaf_hashes(chunks[p as usize]))
                                })
                                .unwrap();
                            assert_eq!(
                                got,
                                whole.hashes(base, index, length, proof),
                                "len {len} plen {plen}: {base} {index} {length} {proof}"
                            );
                        }
                    }
                }
            }
            // below the piece layer leaves are read (none with 16 KiB pieces,
            // nor for a one-leaf file, whose tree has no request)
            assert_eq!(asked > 0, plen > BLOCK_LEN && len > b, "len {len}");
        }
    }

    #[test]
    fn wrong_layers_and_wrong_data() {
        let d = data(6 * BLOCK_LEN as usize, 7);
        let whole = MerkleTree::from_data(&d).unwrap();
        let plen = 2 * BLOCK_LEN;
        let layer = whole.piece_layer(plen).unwrap();
        assert!(LayerTree::new(d.len() as u64, plen, &layer[..2])
            .unwrap()
            .is_none());
        assert!(LayerTree::new(0, plen, &layer).unwrap().is_none());
        assert!(LayerTree::new(100, plen, &layer).unwrap().is_none());
        assert!(LayerTree::new(d.len() as u64, 3 * BLOCK_LEN, &layer).is_err());
        let tree = LayerTree::new(d.len() as u64, plen, &layer)
            .unwrap()
            .unwrap();
        // leaves from corrupt data: rejected, not answered
        let mut bad = d.clone();
        bad[BLOCK_LEN as usize * 2 + 3] ^= 1;
        let got = tree
            .hashes(0, 0, 4, 1, |p| {
                Ok(leaf_hashes(
                    &bad[(p * plen) as usize..((p + 1) * plen) as usize],
                ))
            })
            .unwrap();
        assert_eq!(got, None);
        // an error reading a piece is the caller's
        let e = tree.hashes(0, 0, 2, 0, |_| Err(crate::Error::ZeroPieceLength));
        assert!(e.is_err());
        // requests at and above the piece layer read nothing
        let got = tree
            .hashes(1, 0, 4, 1, |_| panic!("no leaves needed"))
            .unwrap();
        assert_eq!(got, whole.hashes(1, 0, 4, 1));
    }
}
