//! BitTorrent v2 (BEP 52) per-file SHA-256 merkle trees.
//!
//! A file's leaves are the SHA-256 of each 16 KiB block ([`BLOCK_LEN`];
//! the last block may be short). The leaf count is padded to a power of
//! two with zero hashes (32 zero bytes, not the hash of zeros); a padding
//! node higher up is the root of an all-padding subtree,
//! `pad(h) = SHA256(pad(h-1) || pad(h-1))` ([`pad_hash`]). The root is the
//! file's `pieces root`; empty files have none.
//!
//! The *piece layer* is the layer where one node covers `piece length`
//! bytes (`log2(piece_length / 16 KiB)` above the leaves). A file longer
//! than one piece has one entry per piece in the torrent's `piece layers`;
//! a file of at most one piece has none, and its pieces verify against the
//! root directly.
//!
//! SHA-256 is the `sha2` crate, which uses the x86 SHA extensions when the
//! CPU has them (checked at run time). Measured on this 2-core Xeon with
//! `sha_ni`, 16 KiB messages, per core in thread CPU time (the machine was
//! loaded, so wall-clock rates were lower for both): `sha2` 1.72-1.76
//! GB/s, `openssl speed -evp sha256 -bytes 16384` 1.68-1.82 GB/s (ratio
//! about 1.0), and `sha2` built with `force-soft` 0.36 GB/s; the binary
//! holds `sha256rnds2`. `cargo bench -p bittern-benches --bench storage --
//! sha256/` in wall time on the loaded machine: 498 MiB/s against
//! `openssl speed -elapsed` 630 MB/s.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hash::with_scratch_lanes;

mod serve;

pub use serve::LayerTree;

/// Bytes per leaf: 16 KiB.
pub const BLOCK_LEN: u64 = 16 * 1024;

/// A SHA-256 digest: a leaf, an interior node or a root.
pub type Hash256 = [u8; 32];

/// Deepest tree handled: 2^63 leaves is far beyond any file.
const MAX_HEIGHT: usize = 64;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash256 {
    Sha256::digest(data).into()
}

/// The parent of two nodes: SHA-256 of their concatenation.
pub fn hash_pair(left: &Hash256, right: &Hash256) -> Hash256 {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of an all-padding subtree of `height` (0 = a padding leaf,
/// 32 zero bytes).
///
/// # Panics
/// For `height >= 64` (no file has that many leaves).
pub fn pad_hash(height: u32) -> Hash256 {
    static PADS: OnceLock<[Hash256; MAX_HEIGHT]> = OnceLock::new();
    let pads = PADS.get_or_init(|| {
        let mut p = [[0u8; 32]; MAX_HEIGHT];
        for h in 1..MAX_HEIGHT {
            p[h] = hash_pair(&p[h - 1], &p[h - 1]);
        }
        p
    });
    pads[height as usize]
}

/// `ceil(log2(n))` (0 for `n <= 1`).
fn ceil_log2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

/// Number of 16 KiB leaves of `len` bytes.
pub fn block_count(len: u64) -> u64 {
    len.div_ceil(BLOCK_LEN)
}

/// The root over `nodes`, which sit `height` layers above the leaves,
/// padded with [`pad_hash`]`(height)` nodes to a power of two; with at
/// least `min_width` nodes counted (so the result sits at least
/// `ceil(log2(min_width))` layers above `nodes`). An empty `nodes` gives
/// the padding root of that width.
///
/// # Panics
/// When the layers reached pass 63 (see [`pad_hash`]).
pub fn merkle_root(nodes: &[Hash256], height: u32, min_width: u64) -> Hash256 {
    let width = (nodes.len() as u64).max(min_width).max(1);
    let levels = ceil_log2(width);
    let mut layer: Vec<Hash256> = nodes.to_vec();
    for l in 0..levels {
        let pad = pad_hash(height + l);
        if layer.is_empty() {
            layer.push(pad);
        }
        layer = layer
            .chunks(2)
            .map(|c| hash_pair(&c[0], c.get(1).unwrap_or(&pad)))
            .collect();
    }
    layer.first().copied().unwrap_or_else(|| pad_hash(height))
}

/// SHA-256 of each 16 KiB block of `data` (the last may be short); full
/// blocks are hashed four side by side where the CPU has the SHA
/// extensions (`sha256.rs`).
pub fn leaf_hashes(data: &[u8]) -> Vec<Hash256> {
    let mut out = Vec::with_capacity(block_count(data.len() as u64) as usize);
    crate::sha256::leaf_hashes_into(data, &mut out);
    out
}

/// Leaves per piece, `log2` of it: the piece layer's height.
///
/// # Errors
/// [`Error::InvalidV2PieceLength`] unless `piece_length` is a power of two
/// of at least 16 KiB.
pub fn piece_layer_height(piece_length: u64) -> Result<u32> {
    if piece_length < BLOCK_LEN || !piece_length.is_power_of_two() {
        return Err(Error::InvalidV2PieceLength(piece_length));
    }
    Ok((piece_length / BLOCK_LEN).trailing_zeros())
}

/// The hash a piece of a v2 file must have: for a file longer than one
/// piece, the piece-layer node (the piece's leaves padded with zero
/// hashes to `piece_length / 16 KiB`); for a file of at most one piece,
/// the file's root (leaves padded to a power of two). `data` is the whole
/// piece (short at the end of the file).
///
/// # Errors
/// [`Error::InvalidV2PieceLength`].
pub fn piece_hash(data: &[u8], piece_length: u64, file_length: u64) -> Result<Hash256> {
    let h = piece_layer_height(piece_length)?;
    let leaves = leaf_hashes(data);
    let width = if file_length > piece_length {
        1u64 << h
    } else {
        1
    };
    Ok(merkle_root(&leaves, 0, width))
}

/// Whether a piece of a v2 file matches `expected`: its entry in the
/// piece layer, or the file's root for a file of at most one piece (see
/// [`piece_hash`]). False for an invalid piece length or an overlong piece.
pub fn verify_piece(data: &[u8], piece_length: u64, file_length: u64, expected: &Hash256) -> bool {
    data.len() as u64 <= piece_length
        && piece_hash(data, piece_length, file_length).is_ok_and(|h| h == *expected)
}

/// The file root implied by a piece layer (`layer` padded to a power of
/// two with the padding root of a piece's subtree).
///
/// # Errors
/// [`Error::InvalidV2PieceLength`].
pub fn root_from_piece_layer(layer: &[Hash256], piece_length: u64) -> Result<Hash256> {
    let h = piece_layer_height(piece_length)?;
    Ok(merkle_root(layer, h, 1))
}

/// Whether `layer` is the piece layer of a file of `file_length` bytes
/// with root `root`: one hash per piece, and they hash up to the root.
pub fn verify_piece_layer(
    layer: &[Hash256],
    piece_length: u64,
    file_length: u64,
    root: &Hash256,
) -> bool {
    piece_length > 0
        && layer.len() as u64 == file_length.div_ceil(piece_length)
        && root_from_piece_layer(layer, piece_length).is_ok_and(|r| r == *root)
}

/// Folds `node` (at `index` in its layer) up through `proof` (uncles,
/// nearest first) and returns the root reached.
pub fn root_from_proof(node: Hash256, index: u64, proof: &[Hash256]) -> Hash256 {
    let mut n = node;
    let mut i = index;
    for uncle in proof {
        n = if i & 1 == 0 {
            hash_pair(&n, uncle)
        } else {
            hash_pair(uncle, &n)
        };
        i >>= 1;
    }
    n
}

/// Whether a single 16 KiB `block` (the `leaf`-th of its file; short only
/// at the end of the file) belongs to the file with `root`, given the
/// uncle hashes from the leaf layer up (see [`MerkleTree::proof`]). The
/// proof must reach exactly the root: `leaf` must fit its height.
pub fn verify_block(block: &[u8], leaf: u64, proof: &[Hash256], root: &Hash256) -> bool {
    block.len() as u64 <= BLOCK_LEN
        && proof.len() < MAX_HEIGHT
        && (leaf >> proof.len()) == 0
        && root_from_proof(sha256(block), leaf, proof) == *root
}

/// A file's whole merkle tree: every layer from the leaves to the root,
/// holding only the nodes over real data (padding nodes are implied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `layers[0]` the leaves, the last one the root alone.
    layers: Vec<Vec<Hash256>>,
}

impl MerkleTree {
    /// The tree over `leaves` (at least one; `None` for an empty file,
    /// which has no root).
    pub fn from_leaves(leaves: Vec<Hash256>) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let height = ceil_log2(leaves.len() as u64);
        let mut layers = vec![leaves];
        for h in 0..height {
            let pad = pad_hash(h);
            let below = &layers[h as usize];
            let next = below
                .chunks(2)
                .map(|c| hash_pair(&c[0], c.get(1).unwrap_or(&pad)))
                .collect();
            layers.push(next);
        }
        Some(MerkleTree { layers })
    }

    /// The tree of a file held in memory (`None` when empty).
    pub fn from_data(data: &[u8]) -> Option<Self> {
        Self::from_leaves(leaf_hashes(data))
    }

    /// The `pieces root`.
    pub fn root(&self) -> Hash256 {
        self.layers[self.layers.len() - 1][0]
    }

    /// Layers above the leaves (0 for a one-leaf file).
    pub fn height(&self) -> u32 {
        (self.layers.len() - 1) as u32
    }

    /// The nodes over real data at `height` above the leaves (empty above
    /// the root).
    pub fn layer(&self, height: u32) -> &[Hash256] {
        self.layers.get(height as usize).map_or(&[], Vec::as_slice)
    }

    /// Node `index` at `height`, padding included; `None` outside the tree.
    pub fn node(&self, height: u32, index: u64) -> Option<Hash256> {
        if height > self.height() || index >= 1u64 << (self.height() - height) {
            return None;
        }
        let layer = self.layer(height);
        Some(
            usize::try_from(index)
                .ok()
                .and_then(|i| layer.get(i).copied())
                .unwrap_or_else(|| pad_hash(height)),
        )
    }

    /// The piece layer for `piece_length`: one hash per piece when the
    /// file is longer than one piece, else empty (the root stands for the
    /// only piece), as in a torrent's `piece layers`.
    ///
    /// # Errors
    /// [`Error::InvalidV2PieceLength`].
    pub fn piece_layer(&self, piece_length: u64) -> Result<Vec<Hash256>> {
        let h = piece_layer_height(piece_length)?;
        if self.layers[0].len() as u64 <= 1u64 << h {
            return Ok(Vec::new());
        }
        Ok(self.layer(h).to_vec())
    }

    /// The uncle hashes that prove node `index` at `height` against the
    /// root, nearest first; `None` outside the tree.
    pub fn proof_at(&self, height: u32, index: u64) -> Option<Vec<Hash256>> {
        self.node(height, index)?;
        (height..self.height())
            .map(|h| self.node(h, (index >> (h - height)) ^ 1))
            .collect()
    }

    /// The proof for leaf `leaf` (see [`verify_block`]).
    pub fn proof(&self, leaf: u64) -> Option<Vec<Hash256>> {
        self.proof_at(0, leaf)
    }

    /// The answer to a BEP 52 hash request: `length` nodes of layer
    /// `base` from `index` (padding included), then the uncles of
    /// `proof_layers` layers above `base`, leaving out the first
    /// `log2(length) - 1`, which the nodes themselves imply. `None` for a
    /// request that does not fit the tree: `length` not a power of two of
    /// at least 2 (BEP 52's rule: one node alone could not be proven),
    /// `index` not a multiple of it, nodes past the layer's end, or a
    /// proof reaching the root (which has no uncle).
    pub fn hashes(
        &self,
        base: u32,
        index: u64,
        length: u64,
        proof_layers: u32,
    ) -> Option<Vec<Hash256>> {
        let height = self.height();
        if length < 2
            || !length.is_power_of_two()
            || !index.is_multiple_of(length)
            || base >= height
        {
            return None;
        }
        let width = 1u64 << (height - base);
        if index.checked_add(length)? > width
            || u64::from(base) + u64::from(proof_layers) >= u64::from(height)
        {
            return None;
        }
        let m = length.trailing_zeros();
        let mut out: Vec<Hash256> = (index..index + length)
            .map(|i| self.node(base, i))
            .collect::<Option<_>>()?;
        // uncles from the layer of the requested subtree's root up
        let sub = index >> m;
        for layer in base + m..=base + proof_layers {
            out.push(self.node(layer, (sub >> (layer - base - m)) ^ 1)?);
        }
        Some(out)
    }
}

/// Checks the answer to a hash request against a known node: hashes the
/// `nodes` of layer `base` from `index` (a power of two of them, at least
/// 2, `index` a multiple of their count) up to their subtree root, folds in `uncles`
/// (as [`MerkleTree::hashes`] lists them after the nodes), and returns the
/// layer, index and hash of the node reached, to compare with the root or
/// a piece-layer hash the caller trusts. `None` for a malformed answer.
pub fn fold_hashes(
    base: u32,
    index: u64,
    nodes: &[Hash256],
    uncles: &[Hash256],
) -> Option<(u32, u64, Hash256)> {
    let n = nodes.len() as u64;
    if n < 2 || !n.is_power_of_two() || !index.is_multiple_of(n) {
        return None;
    }
    let m = n.trailing_zeros();
    // a peer chooses `base` and the uncle count: check the layer reached
    // before hashing (padding nodes exist below MAX_HEIGHT only)
    let layer = u64::from(base) + u64::from(m) + uncles.len() as u64;
    if layer >= MAX_HEIGHT as u64 {
        return None;
    }
    let top = merkle_root(nodes, base, 1);
    let sub = index >> m;
    Some((
        layer as u32,
        sub >> uncles.len(),
        root_from_proof(top, sub, uncles),
    ))
}

/// Whether the answer to a hash request (`nodes` of layer `base` from
/// `index`, then `uncles`, as [`MerkleTree::hashes`] gives them and a BEP
/// 52 `hashes` message carries them) proves those nodes against `root`, the
/// root of a file of `leaves` 16 KiB leaves: the proof must fold up to
/// exactly the root's layer, at index 0, to `root`. An answer whose proof
/// stops below the root is checked with [`fold_hashes`] against a node the
/// caller already trusts instead.
pub fn hashes_prove_root(
    leaves: u64,
    root: &Hash256,
    base: u32,
    index: u64,
    nodes: &[Hash256],
    uncles: &[Hash256],
) -> bool {
    fold_hashes(base, index, nodes, uncles)
        .is_some_and(|(layer, i, node)| layer == ceil_log2(leaves) && i == 0 && node == *root)
}

/// Root and piece layer of one file, from [`hash_files_v2`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHashes {
    /// `pieces root`; `None` for an empty file.
    pub root: Option<Hash256>,
    /// The piece layer; empty for a file of at most one piece.
    pub piece_layer: Vec<Hash256>,
}

impl FileHashes {
    /// A file's hashes from its piece-layer nodes (`height` layers above
    /// the 16 KiB leaves): none for an empty file, the one node as root
    /// for a file of one piece.
    pub(crate) fn from_layer(layer: Vec<Hash256>, height: u32) -> FileHashes {
        match layer.len() {
            0 => FileHashes {
                root: None,
                piece_layer: Vec::new(),
            },
            1 => FileHashes {
                root: Some(layer[0]),
                piece_layer: Vec::new(),
            },
            _ => FileHashes {
                root: Some(merkle_root(&layer, height, 1)),
                piece_layer: layer,
            },
        }
    }
}

/// The merkle root and piece layer of each of `files` (absolute paths
/// and expected lengths), for creating or checking a v2 torrent: every
/// piece of every file is hashed in parallel on `pool` (streaming through
/// the per-worker scratch buffers of [`hash_files`](crate::hash_files)),
/// with `progress(done, total)` after each piece.
///
/// # Errors
/// [`Error::InvalidV2PieceLength`]; [`Error::FileMissing`];
/// [`Error::FileTooShort`] when a file is shorter than its given length;
/// other IO errors.
pub fn hash_files_v2(
    files: &[(PathBuf, u64)],
    piece_length: u64,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<FileHashes>> {
    let h = piece_layer_height(piece_length)?;
    let mut nodes = piece_nodes(files, piece_length, pool, progress)?.into_iter();
    let mut out = Vec::with_capacity(files.len());
    for (_, len) in files {
        let pieces = len.div_ceil(piece_length) as usize;
        let layer: Vec<Hash256> = nodes.by_ref().take(pieces).collect::<Result<_>>()?;
        out.push(FileHashes::from_layer(layer, h));
    }
    Ok(out)
}

/// The piece hash of every piece of every file, in order (see
/// [`piece_hash`]), hashed in parallel on `pool`, one job per piece.
fn piece_nodes(
    files: &[(PathBuf, u64)],
    piece_length: u64,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Result<Hash256>>> {
    let h = piece_layer_height(piece_length)?;
    let mut jobs: Vec<(usize, u64)> = Vec::new();
    for (i, (_, len)) in files.iter().enumerate() {
        for p in 0..len.div_ceil(piece_length) {
            jobs.push((i, p));
        }
    }
    let total = jobs.len();
    let done = AtomicUsize::new(0);
    Ok(pool.install(|| {
        jobs.par_iter()
            .map_init(
                || None::<(usize, File)>,
                |open, &(i, p)| {
                    let (path, len) = &files[i];
                    let start = p * piece_length;
                    let n = (*len - start).min(piece_length);
                    let width = if *len > piece_length { 1u64 << h } else { 1 };
                    let r = piece_node(open, i, path, *len, start, n, width);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    r
                },
            )
            .collect()
    }))
}

/// Rechecks v2 data: for each of `files` (path and length, in torrent
/// order) and its `expected` hashes (its piece layer, or for a file of at
/// most one piece its root alone; nothing for an empty file), whether each
/// piece on disk matches. Every piece is hashed in parallel on `pool`,
/// with `progress(done, total)` after each. A missing or short file fails
/// its pieces rather than the call.
///
/// # Errors
/// [`Error::InvalidV2PieceLength`]; [`Error::LengthMismatch`] when
/// `expected` does not hold one list per file with one hash per piece;
/// IO errors other than missing data.
pub fn verify_files_v2(
    files: &[(PathBuf, u64)],
    expected: &[Vec<Hash256>],
    piece_length: u64,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Vec<bool>>> {
    piece_layer_height(piece_length)?;
    if expected.len() != files.len() {
        return Err(Error::LengthMismatch {
            expected: files.len(),
            actual: expected.len(),
        });
    }
    for ((_, len), want) in files.iter().zip(expected) {
        let pieces = len.div_ceil(piece_length) as usize;
        if want.len() != pieces {
            return Err(Error::LengthMismatch {
                expected: pieces,
                actual: want.len(),
            });
        }
    }
    let mut nodes = piece_nodes(files, piece_length, pool, progress)?.into_iter();
    let mut out = Vec::with_capacity(files.len());
    for want in expected {
        let mut ok = Vec::with_capacity(want.len());
        for w in want {
            match nodes.next() {
                Some(Ok(h)) => ok.push(h == *w),
                Some(Err(e)) if e.is_missing_data() => ok.push(false),
                Some(Err(e)) => return Err(e),
                None => ok.push(false),
            }
        }
        out.push(ok);
    }
    Ok(out)
}

/// Reads `n` bytes of a file from `start` and returns their subtree root
/// over at least `width` leaves, keeping the file open in `open`.
fn piece_node(
    open: &mut Option<(usize, File)>,
    index: usize,
    path: &PathBuf,
    expected: u64,
    start: u64,
    n: u64,
    width: u64,
) -> Result<Hash256> {
    let file = match open.take() {
        Some((i, f)) if i == index => f,
        _ => File::open(path).map_err(|e| Error::from_io(path, e))?,
    };
    let file = &open.insert((index, file)).1;
    let mut leaves = Vec::with_capacity(block_count(n) as usize);
    with_scratch_lanes(1, |[buf, ..]| -> Result<()> {
        let mut off = 0;
        while off < n {
            let take = (n - off).min(buf.len() as u64) as usize;
            match file.read_exact_at(&mut buf[..take], start + off) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    let actual = file.metadata().map(|m| m.len()).unwrap_or(0);
                    return Err(Error::FileTooShort {
                        path: path.clone(),
                        expected,
                        actual,
                    });
                }
                Err(e) => return Err(Error::from_io(path, e)),
            }
            leaves.extend(leaf_hashes(&buf[..take]));
            off += take as u64;
        }
        Ok(())
    })?;
    Ok(merkle_root(&leaves, 0, width))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(seed) ^ (i >> 7)) as u8)
            .collect()
    }

    #[test]
    fn known_values() {
        // SHA-256 of "abc" (FIPS 180-2 example)
        assert_eq!(
            sha256(b"abc")[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "sha256 test vector"
        );
        assert_eq!(pad_hash(0), [0; 32]);
        assert_eq!(pad_hash(1), sha256(&[0; 64]));
        assert_eq!(pad_hash(2), hash_pair(&pad_hash(1), &pad_hash(1)));
        // one leaf: the root is the leaf hash itself
        let one = MerkleTree::from_data(b"hello").unwrap();
        assert_eq!((one.root(), one.height()), (sha256(b"hello"), 0));
        assert_eq!(MerkleTree::from_data(b""), None);
        // three leaves pad to four with a zero leaf
        let d = data(2 * 16384 + 5, 7);
        let l = leaf_hashes(&d);
        assert_eq!(l.len(), 3);
        let want = hash_pair(&hash_pair(&l[0], &l[1]), &hash_pair(&l[2], &[0; 32]));
        assert_eq!(MerkleTree::from_data(&d).unwrap().root(), want);
        assert_eq!(merkle_root(&l, 0, 1), want);
    }

    #[test]
    fn piece_layers_and_roots_agree() {
        // 5 pieces of 32 KiB (2 leaves each), last piece one short leaf
        let d = data(4 * 32768 + 100, 13);
        let tree = MerkleTree::from_data(&d).unwrap();
        assert_eq!(tree.height(), 4); // 9 leaves -> 16
        let layer = tree.piece_layer(32768).unwrap();
        assert_eq!(layer.len(), 5);
        for (i, piece) in d.chunks(32768).enumerate() {
            assert_eq!(piece_hash(piece, 32768, d.len() as u64).unwrap(), layer[i]);
            assert!(verify_piece(piece, 32768, d.len() as u64, &layer[i]));
            let mut bad = piece.to_vec();
            bad[0] ^= 1;
            assert!(!verify_piece(&bad, 32768, d.len() as u64, &layer[i]));
        }
        assert_eq!(root_from_piece_layer(&layer, 32768).unwrap(), tree.root());
        assert!(verify_piece_layer(
            &layer,
            32768,
            d.len() as u64,
            &tree.root()
        ));
        assert!(!verify_piece_layer(
            &layer[..4],
            32768,
            d.len() as u64,
            &tree.root()
        ));
        let mut wrong = layer.clone();
        wrong[4][0] ^= 1;
        assert!(!verify_piece_layer(
            &wrong,
            32768,
            d.len() as u64,
            &tree.root()
        ));
        // a file of one piece has no layer; its piece verifies against the root
        let small = data(20000, 3);
        let t = MerkleTree::from_data(&small).unwrap();
        assert!(t.piece_layer(65536).unwrap().is_empty());
        assert!(verify_piece(&small, 65536, 20000, &t.root()));
        // piece length must be a power of two of at least 16 KiB
        assert!(matches!(
            piece_hash(&small, 8192, 20000),
            Err(Error::InvalidV2PieceLength(8192))
        ));
        assert!(piece_layer_height(49152).is_err());
    }

    #[test]
    fn block_proofs() {
        for len in [1usize, 16384, 16385, 5 * 16384 + 3, 8 * 16384] {
            let d = data(len, 31);
            let tree = MerkleTree::from_data(&d).unwrap();
            for (i, block) in d.chunks(16384).enumerate() {
                let proof = tree.proof(i as u64).unwrap();
                assert_eq!(proof.len() as u32, tree.height());
                assert!(
                    verify_block(block, i as u64, &proof, &tree.root()),
                    "{len} {i}"
                );
                let mut bad = block.to_vec();
                let last = bad.len() - 1;
                bad[last] ^= 0x80;
                assert!(!verify_block(&bad, i as u64, &proof, &tree.root()));
                if !proof.is_empty() {
                    // a wrong uncle, a short proof, a wrong index
                    let mut p = proof.clone();
                    p[0][5] ^= 1;
                    assert!(!verify_block(block, i as u64, &p, &tree.root()));
                    assert!(!verify_block(block, i as u64, &proof[1..], &tree.root()));
                    assert!(!verify_block(block, i as u64 ^ 1, &proof, &tree.root()));
                }
                // an index beyond the tree never verifies
                assert!(!verify_block(
                    block,
                    i as u64 + (1 << 40),
                    &proof,
                    &tree.root()
                ));
            }
            assert_eq!(tree.proof(1 << tree.height()), None);
        }
    }

    #[test]
    fn hash_request_answers() {
        // 20 leaves -> height 5 (32 leaves); 32 KiB pieces: piece layer 1
        let d = data(20 * 16384 - 77, 17);
        let tree = MerkleTree::from_data(&d).unwrap();
        assert_eq!(tree.height(), 5);
        // leaves 8..12 with the full proof: 4 hashes + uncles at layers 2..=4
        let h = tree.hashes(0, 8, 4, 4).unwrap();
        assert_eq!(h.len(), 4 + 4 - 1);
        assert_eq!(&h[..4], &tree.layer(0)[8..12]);
        let (layer, index, node) = fold_hashes(0, 8, &h[..4], &h[4..]).unwrap();
        assert_eq!((layer, index, node), (5, 0, tree.root()));
        // a truncated proof ends at an interior node
        let h = tree.hashes(0, 8, 4, 2).unwrap();
        assert_eq!(h.len(), 5);
        let (layer, index, node) = fold_hashes(0, 8, &h[..4], &h[4..]).unwrap();
        assert_eq!((layer, index), (3, 1));
        assert_eq!(Some(node), tree.node(3, 1));
        // the piece layer (base 1), past the data: padding nodes
        let h = tree.hashes(1, 8, 8, 3).unwrap();
        assert_eq!(h[2..8], [pad_hash(1); 6]);
        let (_, _, node) = fold_hashes(1, 8, &h[..8], &h[8..]).unwrap();
        assert_eq!(node, tree.root());
        // a changed hash no longer folds to the root
        let mut bad = tree.hashes(0, 16, 2, 4).unwrap();
        assert_eq!(
            fold_hashes(0, 16, &bad[..2], &bad[2..]).unwrap().2,
            tree.root()
        );
        bad[1][0] ^= 1;
        assert_ne!(
            fold_hashes(0, 16, &bad[..2], &bad[2..]).unwrap().2,
            tree.root()
        );
        // a full proof reaches the root; short ones, other trees and
        // other positions do not
        let full = tree.hashes(1, 8, 8, 3).unwrap();
        assert!(hashes_prove_root(
            20,
            &tree.root(),
            1,
            8,
            &full[..8],
            &full[8..]
        ));
        assert!(!hashes_prove_root(
            20,
            &tree.root(),
            1,
            0,
            &full[..8],
            &full[8..]
        ));
        assert!(!hashes_prove_root(
            40,
            &tree.root(),
            1,
            8,
            &full[..8],
            &full[8..]
        ));
        assert!(!hashes_prove_root(
            20,
            &[1; 32],
            1,
            8,
            &full[..8],
            &full[8..]
        ));
        let short = tree.hashes(0, 8, 4, 2).unwrap();
        assert!(!hashes_prove_root(
            20,
            &tree.root(),
            0,
            8,
            &short[..4],
            &short[4..]
        ));
        let mut forged = full.clone();
        forged[8][31] ^= 1;
        assert!(!hashes_prove_root(
            20,
            &tree.root(),
            1,
            8,
            &forged[..8],
            &forged[8..]
        ));
        // requests that do not fit
        assert_eq!(tree.hashes(0, 8, 3, 0), None);
        assert_eq!(tree.hashes(0, 6, 4, 0), None);
        assert_eq!(tree.hashes(0, 32, 2, 0), None);
        assert_eq!(tree.hashes(0, 0, 64, 0), None);
        assert_eq!(tree.hashes(0, 8, 4, 5), None);
        assert_eq!(tree.hashes(5, 0, 1, 0), None);
        assert_eq!(tree.hashes(0, u64::MAX - 1, 2, 0), None);
        assert_eq!(fold_hashes(0, 8, &h[..3], &[]), None);
        // hostile layers and proof lengths (found by fuzz/hashes: base
        // u32::MAX panicked in pad_hash)
        assert_eq!(fold_hashes(u32::MAX, 0, &h[..2], &[]), None);
        assert_eq!(fold_hashes(63, 0, &h[..2], &[]), None);
        assert_eq!(fold_hashes(60, 0, &h[..2], &[[1; 32]; 3]), None);
        assert_eq!(fold_hashes(0, 0, &h[..2], &[[1; 32]; 100]), None);
        assert!(fold_hashes(62, 0, &h[..2], &[]).is_some());
        assert!(!hashes_prove_root(
            20,
            &tree.root(),
            u32::MAX,
            0,
            &h[..2],
            &h[2..]
        ));
        assert_eq!(fold_hashes(0, 6, &h[..4], &[]), None);
    }

    #[test]
    fn padding_nodes_are_implied() {
        let d = data(5 * 16384, 5);
        let tree = MerkleTree::from_data(&d).unwrap();
        assert_eq!(tree.node(0, 7), Some([0; 32]));
        assert_eq!(tree.node(1, 3), Some(pad_hash(1)));
        assert_eq!(tree.node(0, 8), None);
        assert_eq!(tree.node(4, 0), None);
        assert_eq!(tree.node(3, 0), Some(tree.root()));
        // the proof of a node one layer up
        let p = tree.proof_at(1, 2).unwrap();
        assert_eq!(
            root_from_proof(tree.node(1, 2).unwrap(), 2, &p),
            tree.root()
        );
    }
}
