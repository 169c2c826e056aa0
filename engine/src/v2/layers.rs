//! Fetching the piece layers of a v2 torrent whose info dictionary came
//! from a magnet link (BEP 52): the info dictionary holds each file's
//! `pieces root` only, and the `piece layers` (outside it) are asked of
//! peers with hash requests (21), a chunk of up to [`CHUNK`] piece-layer
//! nodes at a time, each answer carrying the uncles up to the root. An
//! answer is kept only when it proves its nodes against the root, so one
//! peer's lie costs that peer, never the torrent.
//!
//! Pure state: the metadata fetch sends the requests this returns and feeds
//! back the answers; no IO here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bittern_storage::merkle::{block_count, hashes_prove_root, piece_layer_height, Hash256};
use bittern_wire::hashes::HashRequest;
use bittern_wire::Metainfo;

use crate::picker::PeerKey;

/// Piece-layer nodes asked in one request (libtorrent asks, and answers,
/// up to 512 at a time).
const CHUNK: u64 = 512;
/// An unanswered request is asked of another peer after this long.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// One chunk of a file's piece layer.
#[derive(Debug, Clone)]
enum Chunk {
    Missing,
    Asked(PeerKey, Instant),
    Have(Vec<Hash256>),
}

/// A file whose piece layer is missing.
#[derive(Debug)]
struct File {
    root: Hash256,
    /// 16 KiB leaves of the file.
    leaves: u64,
    /// Pieces of the file: the piece layer's real nodes.
    pieces: u64,
    /// Nodes per request: a power of two, at least 2.
    chunk: u64,
    /// Layers of the file's tree above the piece layer.
    above: u32,
    chunks: Vec<Chunk>,
    /// Peers that rejected a chunk: not asked for it again.
    refused: Vec<(usize, PeerKey)>,
}

/// What an answer did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Kept (or a late duplicate, dropped quietly).
    Stored,
    /// Not asked of this peer, or its hashes do not prove against the
    /// root: the peer broke the protocol or lied.
    Bad,
}

/// The piece layers still wanted (see the module doc).
#[derive(Debug)]
pub(crate) struct LayerFetch {
    base_layer: u32,
    files: Vec<File>,
    by_root: HashMap<Hash256, usize>,
}

impl LayerFetch {
    /// What `m` lacks: one entry per file longer than one piece without a
    /// piece layer. `None` when nothing is missing (a v1 torrent, layers
    /// from a `.torrent`, files of one piece each) or the piece length is
    /// not a v2 one.
    pub(crate) fn new(m: &Metainfo) -> Option<Self> {
        if !m.info.version.has_v2() {
            return None;
        }
        let plen = m.info.piece_length;
        let base_layer = piece_layer_height(plen).ok()?;
        let mut files = Vec::new();
        let mut by_root = HashMap::new();
        for f in &m.info.files {
            let Some(root) = f.pieces_root else { continue };
            if f.padding || f.length <= plen || m.piece_layer(f).is_some() {
                continue;
            }
            if by_root.contains_key(&root) {
                continue; // the same content twice: one layer serves both
            }
            let leaves = block_count(f.length);
            let pieces = f.length.div_ceil(plen);
            let width = pieces.next_power_of_two();
            let chunk = width.clamp(2, CHUNK);
            by_root.insert(root, files.len());
            files.push(File {
                root,
                leaves,
                pieces,
                chunk,
                above: width.trailing_zeros(),
                chunks: vec![Chunk::Missing; pieces.div_ceil(chunk) as usize],
                refused: Vec::new(),
            });
        }
        (!files.is_empty()).then_some(LayerFetch {
            base_layer,
            files,
            by_root,
        })
    }

    /// Whether every layer is in.
    pub(crate) fn is_complete(&self) -> bool {
        self.files
            .iter()
            .all(|f| f.chunks.iter().all(|c| matches!(c, Chunk::Have(_))))
    }

    /// Whether any request is outstanding.
    pub(crate) fn any_in_flight(&self) -> bool {
        self.files
            .iter()
            .flat_map(|f| &f.chunks)
            .any(|c| matches!(c, Chunk::Asked(..)))
    }

    /// Requests outstanding with `peer`.
    pub(crate) fn in_flight(&self, peer: PeerKey) -> usize {
        self.files
            .iter()
            .flat_map(|f| &f.chunks)
            .filter(|c| matches!(c, Chunk::Asked(p, _) if *p == peer))
            .count()
    }

    /// The next request for `peer` (at most `max` outstanding with it), or
    /// `None`: every chunk is in, asked of someone else, or refused by it.
    pub(crate) fn next_request(
        &mut self,
        peer: PeerKey,
        max: usize,
        now: Instant,
    ) -> Option<HashRequest> {
        if self.in_flight(peer) >= max {
            return None;
        }
        let base_layer = self.base_layer;
        for f in &mut self.files {
            for (i, c) in f.chunks.iter_mut().enumerate() {
                if matches!(c, Chunk::Missing) && !f.refused.contains(&(i, peer)) {
                    *c = Chunk::Asked(peer, now);
                    return Some(HashRequest {
                        pieces_root: f.root,
                        base_layer,
                        index: u32::try_from(i as u64 * f.chunk).ok()?,
                        length: u32::try_from(f.chunk).ok()?,
                        // uncles up to (not including) the root
                        proof_layers: f.above.saturating_sub(1),
                    });
                }
            }
        }
        None
    }

    /// The chunk `req` names, if it is one we ask for in exactly this
    /// shape.
    fn chunk_of(&self, req: &HashRequest) -> Option<(usize, usize)> {
        let &file = self.by_root.get(&req.pieces_root)?;
        let f = &self.files[file];
        let index = u64::from(req.index);
        let shape_ok = req.base_layer == self.base_layer
            && u64::from(req.length) == f.chunk
            && index % f.chunk == 0
            && req.proof_layers == f.above.saturating_sub(1);
        let i = usize::try_from(index / f.chunk).ok()?;
        (shape_ok && i < f.chunks.len()).then_some((file, i))
    }

    /// `peer` answered `req` with `hashes` (base nodes, then uncles).
    pub(crate) fn on_hashes(
        &mut self,
        peer: PeerKey,
        req: &HashRequest,
        hashes: &[Hash256],
    ) -> Outcome {
        let Some((file, i)) = self.chunk_of(req) else {
            return Outcome::Bad;
        };
        let base_layer = self.base_layer;
        let f = &mut self.files[file];
        match &f.chunks[i] {
            Chunk::Asked(p, _) if *p == peer => {}
            // asked again of someone else after a timeout, or already in
            Chunk::Asked(..) | Chunk::Have(_) => return Outcome::Stored,
            Chunk::Missing => return Outcome::Stored,
        }
        let n = req.length as usize;
        if hashes.len() < n {
            return Outcome::Bad;
        }
        let (nodes, uncles) = hashes.split_at(n);
        if !hashes_prove_root(
            f.leaves,
            &f.root,
            base_layer,
            u64::from(req.index),
            nodes,
            uncles,
        ) {
            f.chunks[i] = Chunk::Missing;
            f.refused.push((i, peer));
            return Outcome::Bad;
        }
        let start = i as u64 * f.chunk;
        let real = f.pieces.saturating_sub(start).min(f.chunk) as usize;
        f.chunks[i] = Chunk::Have(nodes[..real].to_vec());
        Outcome::Stored
    }

    /// `peer` rejected `req`: another peer is asked; false when it was
    /// not asked of `peer` (ignored).
    pub(crate) fn on_reject(&mut self, peer: PeerKey, req: &HashRequest) -> bool {
        let Some((file, i)) = self.chunk_of(req) else {
            return false;
        };
        let f = &mut self.files[file];
        if matches!(f.chunks[i], Chunk::Asked(p, _) if p == peer) {
            f.chunks[i] = Chunk::Missing;
            f.refused.push((i, peer));
            return true;
        }
        false
    }

    /// `peer` is gone: its requests go to others.
    pub(crate) fn peer_gone(&mut self, peer: PeerKey) {
        for f in &mut self.files {
            for c in &mut f.chunks {
                if matches!(c, Chunk::Asked(p, _) if *p == peer) {
                    *c = Chunk::Missing;
                }
            }
        }
    }

    /// Peers with a request unanswered past [`ANSWER_TIMEOUT`] at `now`
    /// (their requests are freed).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<PeerKey> {
        let mut slow = Vec::new();
        for f in &mut self.files {
            for c in &mut f.chunks {
                if let Chunk::Asked(p, at) = c {
                    if now.duration_since(*at) > ANSWER_TIMEOUT {
                        if !slow.contains(p) {
                            slow.push(*p);
                        }
                        *c = Chunk::Missing;
                    }
                }
            }
        }
        slow
    }

    /// The piece layers fetched, `(pieces root, layer)`, once complete.
    pub(crate) fn layers(&self) -> Option<Vec<(Hash256, Vec<Hash256>)>> {
        let mut out = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let mut layer = Vec::with_capacity(f.pieces as usize);
            for c in &f.chunks {
                let Chunk::Have(nodes) = c else { return None };
                layer.extend_from_slice(nodes);
            }
            out.push((f.root, layer));
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_storage::merkle::{root_from_piece_layer, MerkleTree};
    use bittern_wire::{MetaVersion, MetainfoBuilder};

    const PLEN: u64 = 32 * 1024;

    /// A v2 torrent of one file of `len` bytes without its piece layer (as
    /// from a magnet), and the file's tree.
    fn magnet_torrent(len: usize) -> (Metainfo, MerkleTree) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
        let tree = MerkleTree::from_data(&data).unwrap();
        let pieces = (len as u64).div_ceil(PLEN) as usize;
        let layer = if pieces > 1 {
            vec![(tree.root(), tree.layer(1)[..pieces].to_vec())]
        } else {
            Vec::new()
        };
        let full = MetainfoBuilder::new("f")
            .piece_length(PLEN)
            .single_file(len as u64)
            .version(MetaVersion::V2)
            .pieces_roots(vec![Some(tree.root())])
            .piece_layers(layer.into_iter().collect())
            .build_metainfo()
            .unwrap();
        // the info dictionary alone, as a magnet link's metadata
        let mut bytes = b"d4:info".to_vec();
        bytes.extend_from_slice(&full.info_bytes);
        bytes.push(b'e');
        (Metainfo::from_bytes_without_layers(&bytes).unwrap(), tree)
    }

    /// The honest answer to `req` from `tree`.
    fn answer(tree: &MerkleTree, req: &HashRequest) -> Vec<Hash256> {
        tree.hashes(
            req.base_layer,
            u64::from(req.index),
            u64::from(req.length),
            req.proof_layers,
        )
        .unwrap()
    }

    #[test]
    fn layers_of_several_chunks_fetched_and_proven() {
        // 1,100 pieces: three chunks of 512, a tree 2,048 pieces wide
        let (m, tree) = magnet_torrent(1100 * PLEN as usize - 5);
        let mut f = LayerFetch::new(&m).unwrap();
        let (a, b) = (PeerKey(1), PeerKey(2));
        let now = Instant::now();
        let r1 = f.next_request(a, 2, now).unwrap();
        let r2 = f.next_request(a, 2, now).unwrap();
        assert_eq!(f.next_request(a, 2, now), None, "two outstanding at most");
        let r3 = f.next_request(b, 2, now).unwrap();
        assert_eq!((r1.index, r2.index, r3.index), (0, 512, 1024));
        assert_eq!((r1.base_layer, r1.length, r1.proof_layers), (1, 512, 10));
        // a lie: one node changed, the proof fails; the peer is refused
        let mut lie = answer(&tree, &r3);
        lie[3][0] ^= 1;
        assert_eq!(f.on_hashes(b, &r3, &lie), Outcome::Bad);
        // an answer to a chunk asked of someone else (a late one, after a
        // timeout) is dropped quietly and changes nothing
        assert_eq!(f.on_hashes(b, &r1, &answer(&tree, &r1)), Outcome::Stored);
        assert_eq!(f.in_flight(a), 2);
        for r in [r1, r2] {
            assert_eq!(f.on_hashes(a, &r, &answer(&tree, &r)), Outcome::Stored);
        }
        assert!(!f.is_complete());
        // b refused the last chunk: a gets it
        assert_eq!(f.next_request(b, 2, now), None);
        let r = f.next_request(a, 2, now).unwrap();
        assert_eq!(r, r3);
        assert_eq!(f.on_hashes(a, &r, &answer(&tree, &r)), Outcome::Stored);
        let layers = f.layers().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].1.len(), 1100);
        assert_eq!(layers[0].1, tree.layer(1)[..1100].to_vec());
        assert_eq!(
            root_from_piece_layer(&layers[0].1, PLEN).unwrap(),
            tree.root()
        );
    }

    #[test]
    fn rejects_timeouts_and_departures_free_requests() {
        let (m, tree) = magnet_torrent(5 * PLEN as usize);
        let mut f = LayerFetch::new(&m).unwrap();
        let (a, b) = (PeerKey(1), PeerKey(2));
        let t0 = Instant::now();
        let r = f.next_request(a, 4, t0).unwrap();
        assert_eq!((r.index, r.length, r.proof_layers), (0, 8, 2));
        assert!(f.on_reject(a, &r));
        assert_eq!(f.next_request(a, 4, t0), None, "a refused the only chunk");
        let r = f.next_request(b, 4, t0).unwrap();
        f.peer_gone(b);
        let r2 = f.next_request(b, 4, t0).unwrap();
        assert_eq!(r, r2);
        assert!(f.expire(t0 + ANSWER_TIMEOUT / 2).is_empty());
        assert_eq!(f.expire(t0 + ANSWER_TIMEOUT * 2), vec![b]);
        let r = f.next_request(b, 4, t0).unwrap();
        // a wrong shape is not ours
        let odd = HashRequest { length: 4, ..r };
        assert_eq!(f.on_hashes(b, &odd, &answer(&tree, &odd)), Outcome::Bad);
        assert_eq!(f.on_hashes(b, &r, &answer(&tree, &r)), Outcome::Stored);
        assert_eq!(f.layers().unwrap()[0].1, tree.layer(1)[..5].to_vec());
    }

    #[test]
    fn nothing_to_fetch_for_small_files_or_given_layers() {
        let (m, _) = magnet_torrent(PLEN as usize);
        assert!(
            LayerFetch::new(&m).is_none(),
            "one piece: the root is enough"
        );
    }
}
