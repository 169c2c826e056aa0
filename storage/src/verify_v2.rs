//! Checking pieces of a v2 or hybrid layout against their BEP 52 merkle
//! hashes ([`Layout::new_v2`](crate::Layout::new_v2),
//! [`Layout::with_v2`](crate::Layout::with_v2)).
//!
//! A v2 piece lies in one file (files start on piece boundaries); its hash
//! is the merkle node over the piece's 16 KiB blocks of that file only,
//! never the padding after it: for a file longer than one piece, the
//! blocks padded with zero leaves to `piece length / 16 KiB` (the file's
//! piece-layer entry); for a file of at most one piece, padded to the next
//! power of two (the file's root). Whole-torrent checks
//! ([`Storage::verify_pieces_v2`], [`Storage::verify_all_hybrid`]) take
//! three pieces per rayon job through the same lanes as the SHA-1 check
//! (`lanes::hash_lanes_with_leaves`): each chunk comes from the file's
//! read-only map under the `SIGBUS` guard where the storage hashes from
//! maps (`bittern verify` does), else by `pread` through the storage's
//! file handles, and feeds the 16 KiB SHA-256 leaves (four side by side
//! with the SHA extensions) and, for a hybrid, the SHA-1 lanes from the
//! same bytes. One-piece checks ([`Storage::hash_piece_v2`],
//! [`Storage::check_piece_hybrid`]) read with `pread`.
//!
//! Cost: `benches/RESULTS-v2.md` (`benches/v2/tools_bench.py`, against
//! libtorrent 2.0.8's check). Before the lanes, a hybrid was read once per
//! piece by `pread` (256 MiB: 0.42 s CPU against libtorrent's 0.78) and a
//! v2-only torrent the same way, the `pread` copy being most of the
//! system time.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::hash::with_scratch_lanes;
use crate::merkle::{block_count, leaf_hashes, merkle_root, piece_layer_height, Hash256};
use crate::storage::Storage;

impl Storage {
    /// The v2 merkle hash of piece `piece` as it is on disk: the node over
    /// its 16 KiB blocks of the one file it lies in (padding excluded),
    /// padded to `piece length / 16 KiB` leaves for a file longer than a
    /// piece, else to a power of two (the file's root).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad index or a layout without v2
    /// hashes; [`Error::FileMissing`] / [`Error::FileTooShort`] when its
    /// data is not there; other IO errors.
    pub fn hash_piece_v2(&self, piece: usize) -> Result<Hash256> {
        let (leaves, width) = self.leaves_v2(piece)?;
        Ok(merkle_root(&leaves, 0, width))
    }

    /// The SHA-256 of each 16 KiB block of piece `piece` as it is on disk
    /// (the file's bytes only), for answering hash requests below the
    /// piece layer ([`crate::merkle::LayerTree::hashes`]; the file's piece
    /// `p` is torrent piece `file start / piece length + p`).
    ///
    /// # Errors
    /// As [`Storage::hash_piece_v2`].
    pub fn piece_leaves_v2(&self, piece: usize) -> Result<Vec<Hash256>> {
        Ok(self.leaves_v2(piece)?.0)
    }

    /// The leaves of `piece` and the width its node pads them to.
    fn leaves_v2(&self, piece: usize) -> Result<(Vec<Hash256>, u64)> {
        let layout = self.layout();
        let out_of_range = || Error::OutOfRange {
            piece,
            offset: 0,
            len: 0,
        };
        let v2 = layout.v2_piece(piece).ok_or_else(out_of_range)?;
        let plen = layout.piece_length();
        let file_len = layout.files()[v2.file].length;
        let in_file = piece as u64 * plen - layout.file_start(v2.file);
        let n = (file_len - in_file).min(plen);
        let width = if file_len > plen {
            1u64 << piece_layer_height(plen)?
        } else {
            1
        };
        let mut leaves = Vec::with_capacity(block_count(n) as usize);
        with_scratch_lanes(1, |[buf, ..]| -> Result<()> {
            let mut off = 0;
            while off < n {
                let take = (n - off).min(buf.len() as u64) as usize;
                self.read_block(piece, off, &mut buf[..take])?;
                leaves.extend(leaf_hashes(&buf[..take]));
                off += take as u64;
            }
            Ok(())
        })?;
        Ok((leaves, width))
    }

    /// True when piece `piece` on disk matches its v2 hash.
    ///
    /// # Errors
    /// As [`Storage::hash_piece_v2`].
    pub fn check_piece_v2(&self, piece: usize) -> Result<bool> {
        let want = self.layout().piece_hash_v2(piece);
        Ok(Some(self.hash_piece_v2(piece)?) == want)
    }

    /// Rechecks `pieces` against their v2 hashes in parallel on `pool`,
    /// as [`Storage::verify_pieces`] does with SHA-1: one bool per entry
    /// of `pieces`; missing or short files make their pieces `false`;
    /// `progress(done, total)` after each piece.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad index or a layout without v2
    /// hashes; IO errors other than missing data.
    pub fn verify_pieces_v2(
        &self,
        pieces: &[usize],
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<bool>> {
        let done = AtomicUsize::new(0);
        let total = pieces.len();
        let maps = self.maps_allowed();
        // three (sixteen with AVX-512) pieces per job through the lanes (reads or maps), the
        // SHA-1 half skipped
        let groups: Vec<Result<Vec<bool>>> = pool.install(|| {
            pieces
                .par_chunks(crate::sha::bulk_lanes())
                .map(|group| {
                    let mut out = Vec::with_capacity(group.len());
                    for r in self.check_group_v2(group, maps, true)? {
                        out.push(match r {
                            Ok(ok) => ok,
                            Err(e) if e.is_missing_data() => false,
                            Err(e) => return Err(e),
                        });
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    }
                    Ok(out)
                })
                .collect()
        });
        let mut out = Vec::with_capacity(total);
        for g in groups {
            out.extend(g?);
        }
        Ok(out)
    }

    /// Whether each of `group` (up to [`crate::sha::bulk_lanes`] pieces)
    /// matches its v2 hash, hashed side by side through the lanes
    /// (`lanes::hash_lanes_with_leaves`, the SHA-1 half skipped), from the
    /// files' maps when `maps`, dropping the hashed pages' map entries
    /// when `release`; an entry's error is that piece's read error.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] when a piece of `group` has no v2 hash.
    pub(crate) fn check_group_v2(
        &self,
        group: &[usize],
        maps: bool,
        release: bool,
    ) -> Result<Vec<Result<bool>>> {
        let mut want = Vec::with_capacity(group.len());
        for &p in group {
            want.push(self.hybrid_geometry(p)?);
        }
        let bytes: Vec<u64> = want.iter().map(|w| w.0).collect();
        let (read, leaves) =
            crate::lanes::hash_lanes_with_leaves(self, group, maps, release, Some(&bytes), false);
        Ok(read
            .into_iter()
            .zip(leaves)
            .zip(want)
            .map(|((r, l), (_, width, root))| r.map(|_| merkle_root(&l, 0, width) == root))
            .collect())
    }

    /// Both checks of hybrid piece `piece` from one read of its bytes:
    /// SHA-1 over the whole piece (padding as zeros) and the merkle node
    /// over its file's 16 KiB blocks, fed from the same buffer. Returns
    /// (SHA-1 matches, merkle hash matches).
    ///
    /// # Errors
    /// As [`Storage::hash_piece_v2`].
    pub fn check_piece_hybrid(&self, piece: usize) -> Result<(bool, bool)> {
        let layout = self.layout();
        let (n, width, root) = self.hybrid_geometry(piece)?;
        let total = layout.piece_len(piece);
        let mut sha = crate::sha::Sha1::new();
        let mut leaves = Vec::with_capacity(block_count(n) as usize);
        with_scratch_lanes(1, |[buf, ..]| -> Result<()> {
            let mut off = 0;
            while off < total {
                let take = (total - off).min(buf.len() as u64) as usize;
                self.read_block(piece, off, &mut buf[..take])?;
                sha.update(&buf[..take]);
                if off < n {
                    let m = (n - off).min(take as u64) as usize;
                    leaves.extend(leaf_hashes(&buf[..m]));
                }
                off += take as u64;
            }
            Ok(())
        })?;
        let v1_ok = sha.finish() == layout.piece_hash(piece);
        Ok((v1_ok, merkle_root(&leaves, 0, width) == root))
    }

    /// [`Storage::check_piece_hybrid`] of every piece in parallel on
    /// `pool`: one read of the data for both halves of a hybrid torrent,
    /// three pieces side by side per job as the SHA-1 check does, from the
    /// files' maps where allowed (`lanes::hash_lanes_with_leaves`: each
    /// chunk feeds the SHA-1 lanes and the 16 KiB SHA-256 leaves).
    /// Missing or short files make their pieces fail both.
    ///
    /// # Errors
    /// As [`Storage::verify_pieces_v2`].
    pub fn verify_all_hybrid(
        &self,
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<(bool, bool)>> {
        let done = AtomicUsize::new(0);
        let layout = self.layout();
        let total = layout.piece_count();
        let maps = self.maps_allowed();
        let all: Vec<usize> = (0..total).collect();
        let groups: Vec<Result<Vec<(bool, bool)>>> = pool.install(|| {
            all.par_chunks(crate::sha::bulk_lanes())
                .map(|group| {
                    let mut want = Vec::with_capacity(group.len());
                    for &p in group {
                        want.push(self.hybrid_geometry(p)?);
                    }
                    let bytes: Vec<u64> = want.iter().map(|w| w.0).collect();
                    let (sha1, leaves) = crate::lanes::hash_lanes_with_leaves(
                        self,
                        group,
                        maps,
                        true,
                        Some(&bytes),
                        true,
                    );
                    let mut out = Vec::with_capacity(group.len());
                    for (((&p, h), l), (_, width, root)) in
                        group.iter().zip(sha1).zip(leaves).zip(want)
                    {
                        out.push(match h {
                            Ok(h) => (h == layout.piece_hash(p), merkle_root(&l, 0, width) == root),
                            Err(e) if e.is_missing_data() => (false, false),
                            Err(e) => return Err(e),
                        });
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    }
                    Ok(out)
                })
                .collect()
        });
        let mut out = Vec::with_capacity(total);
        for g in groups {
            out.extend(g?);
        }
        Ok(out)
    }

    /// A v2 piece's bytes of its file, the width its node pads the leaves
    /// to, and its hash.
    fn hybrid_geometry(&self, piece: usize) -> Result<(u64, u64, Hash256)> {
        let layout = self.layout();
        let v2 = layout.v2_piece(piece).ok_or(Error::OutOfRange {
            piece,
            offset: 0,
            len: 0,
        })?;
        let plen = layout.piece_length();
        let file_len = layout.files()[v2.file].length;
        let in_file = piece as u64 * plen - layout.file_start(v2.file);
        let width = if file_len > plen {
            1u64 << piece_layer_height(plen)?
        } else {
            1
        };
        Ok(((file_len - in_file).min(plen), width, v2.hash))
    }

    /// [`Storage::verify_pieces_v2`] of every piece.
    ///
    /// # Errors
    /// As [`Storage::verify_pieces_v2`].
    pub fn verify_all_v2(
        &self,
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<bool>> {
        let all: Vec<usize> = (0..self.layout().piece_count()).collect();
        self.verify_pieces_v2(&all, pool, progress)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::merkle::{hash_files_v2, MerkleTree};
    use crate::{Backend, FilePool, FileSpec, Layout};

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(seed).rotate_left(seed % 13) ^ (i >> 9)) as u8)
            .collect()
    }

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    /// Files (name, length) laid out v2-style: padding after each file
    /// that does not end on a piece boundary (except the last), and the
    /// per-file hashes from the merkle module.
    fn v2_layout(root: &Path, files: &[(&str, usize)], plen: u64) -> (Layout, Vec<Vec<u8>>) {
        let mut specs = Vec::new();
        let mut hashes = Vec::new();
        let mut contents = Vec::new();
        for (i, (name, len)) in files.iter().enumerate() {
            let d = data(*len, 7 + i as u32 * 3);
            std::fs::write(root.join(name), &d).unwrap();
            specs.push(FileSpec {
                path: name.into(),
                length: *len as u64,
                padding: false,
            });
            let fh = hash_files_v2(&[(root.join(name), *len as u64)], plen, &pool(), &|_, _| {})
                .unwrap()
                .remove(0);
            hashes.push(match (fh.root, fh.piece_layer.is_empty()) {
                (None, _) => Vec::new(),
                (Some(r), true) => vec![r],
                (Some(_), false) => fh.piece_layer,
            });
            let tail = *len as u64 % plen;
            if tail != 0 && i + 1 < files.len() {
                specs.push(FileSpec {
                    path: format!(".pad/{}", plen - tail).into(),
                    length: plen - tail,
                    padding: true,
                });
                hashes.push(Vec::new());
            }
            contents.push(d);
        }
        (Layout::new_v2(specs, plen, &hashes).unwrap(), contents)
    }

    #[test]
    fn v2_pieces_verify_and_corruption_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let plen = 65536;
        // a multi-piece file with a short last piece, a file smaller than a
        // piece (3 leaves, padded to 4), an empty file, a one-block file
        let files = [("a", 3 * 65536 + 20000), ("b", 40000), ("e", 0), ("c", 100)];
        let (layout, contents) = v2_layout(dir.path(), &files, plen);
        assert!(layout.has_v2() && !layout.has_v1());
        assert_eq!(layout.piece_count(), 4 + 1 + 1);
        // b's only piece verifies against its root
        let b = MerkleTree::from_data(&contents[1]).unwrap();
        assert_eq!(layout.piece_hash_v2(4), Some(b.root()));
        let s = Storage::new(
            layout,
            dir.path().into(),
            Arc::new(FilePool::default()),
            Backend::PositionedIo,
        )
        .unwrap();
        assert_eq!(s.hash_piece_v2(4).unwrap(), b.root());
        assert_eq!(s.verify_all_v2(&pool(), &|_, _| {}).unwrap(), [true; 6]);
        // verify_pieces on a v2-only layout checks the merkle hashes
        assert_eq!(s.verify_all(&pool(), &|_, _| {}).unwrap(), [true; 6]);
        assert_eq!(
            s.check_pieces(&[3, 5])
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>(),
            [true, true]
        );

        // one flipped byte in a's third piece, one in c
        let mut a = contents[0].clone();
        a[2 * 65536 + 5] ^= 1;
        std::fs::write(dir.path().join("a"), &a).unwrap();
        let mut c = contents[3].clone();
        c[99] ^= 0x80;
        std::fs::write(dir.path().join("c"), &c).unwrap();
        let want = [true, true, false, true, true, false];
        assert_eq!(s.verify_all_v2(&pool(), &|_, _| {}).unwrap(), want);
        assert_eq!(s.verify_all(&pool(), &|_, _| {}).unwrap(), want);
        // a short file fails its missing pieces, a missing one all of its own
        std::fs::write(dir.path().join("a"), &contents[0][..65536 + 10]).unwrap();
        std::fs::remove_file(dir.path().join("b")).unwrap();
        assert_eq!(
            s.verify_all_v2(&pool(), &|_, _| {}).unwrap(),
            [true, false, false, false, false, false]
        );
        assert!(matches!(s.hash_piece_v2(6), Err(Error::OutOfRange { .. })));
        // hash requests for a served from the piece layer and the disk
        std::fs::write(dir.path().join("a"), &contents[0]).unwrap();
        let whole = MerkleTree::from_data(&contents[0]).unwrap();
        let layer: Vec<Hash256> = (0..4)
            .map(|p| s.layout().piece_hash_v2(p).unwrap())
            .collect();
        let tree = crate::merkle::LayerTree::new(contents[0].len() as u64, plen, &layer)
            .unwrap()
            .unwrap();
        assert_eq!(tree.root(), whole.root());
        for (base, index, length, proof) in
            [(0, 4, 4, 3), (0, 12, 2, 3), (2, 0, 4, 1), (1, 6, 2, 2)]
        {
            let got = tree
                .hashes(base, index, length, proof, |p| {
                    s.piece_leaves_v2(p as usize)
                })
                .unwrap();
            assert_eq!(
                got,
                whole.hashes(base, index, length, proof),
                "{base} {index}"
            );
            assert!(got.is_some());
        }
    }

    /// `v2_layout`'s files as a hybrid: the SHA-1 of each piece over the
    /// files and their zero padding added.
    fn hybrid_layout(root: &Path, files: &[(&str, usize)], plen: u64) -> Layout {
        let (v2, _) = v2_layout(root, files, plen);
        let mut all = Vec::new();
        for f in v2.files() {
            if f.padding {
                all.resize(all.len() + f.length as usize, 0u8);
            } else {
                all.extend(std::fs::read(root.join(&f.path)).unwrap());
            }
        }
        let sha1: Vec<[u8; 20]> = all
            .chunks(plen as usize)
            .map(|c| crate::hash::hash_blocks([c]))
            .collect();
        let hashes: Vec<Vec<Hash256>> = (0..v2.files().len())
            .map(|f| {
                let spec = &v2.files()[f];
                if spec.padding || spec.length == 0 {
                    return Vec::new();
                }
                v2.file_pieces(f)
                    .map(|p| v2.piece_hash_v2(p).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        Layout::new(v2.files().to_vec(), plen, sha1)
            .unwrap()
            .with_v2(&hashes)
            .unwrap()
    }

    /// The hybrid check in lanes (from reads and from maps) agrees with
    /// the one-piece check, with blocks split across chunks (pieces of
    /// files of odd sizes side by side), and pins a flipped byte to its
    /// piece in both halves.
    #[test]
    fn hybrid_lanes_equal_one_piece_checks() {
        let dir = tempfile::tempdir().unwrap();
        let plen = 65536;
        let files = [
            ("a", 3 * 65536 + 20000),
            ("b", 40000),
            ("c", 100),
            ("d", 5 * 65536 + 16384 + 1),
            ("e", 65536),
        ];
        let layout = hybrid_layout(dir.path(), &files, plen);
        assert!(layout.has_v1() && layout.has_v2());
        let n = layout.piece_count();
        for source in [crate::HashSource::Read, crate::HashSource::Map] {
            if source == crate::HashSource::Map {
                crate::install_sigbus_guard().unwrap();
            }
            let s = Storage::new(
                layout.clone(),
                dir.path().into(),
                Arc::new(FilePool::default()),
                Backend::PositionedIo,
            )
            .unwrap()
            .with_hash_source(source);
            let each: Vec<(bool, bool)> =
                (0..n).map(|p| s.check_piece_hybrid(p).unwrap()).collect();
            assert_eq!(each, vec![(true, true); n]);
            assert_eq!(s.verify_all_hybrid(&pool(), &|_, _| {}).unwrap(), each);
            // a flipped byte in d's fourth piece: both halves fail there
            let path = dir.path().join("d");
            let good = std::fs::read(&path).unwrap();
            let mut bad = good.clone();
            bad[3 * 65536 + 17000] ^= 4;
            std::fs::write(&path, &bad).unwrap();
            s.release_files();
            let got = s.verify_all_hybrid(&pool(), &|_, _| {}).unwrap();
            let each: Vec<(bool, bool)> =
                (0..n).map(|p| s.check_piece_hybrid(p).unwrap()).collect();
            assert_eq!(got, each);
            let failed: Vec<usize> = (0..n).filter(|&p| got[p] != (true, true)).collect();
            let d0 = (0..n)
                .find(|&p| layout.v2_piece(p).is_some_and(|v| v.file == 6))
                .unwrap();
            assert_eq!(failed, [d0 + 3]);
            assert_eq!(got[d0 + 3], (false, false));
            std::fs::write(&path, &good).unwrap();
            s.release_files();
        }
    }

    /// A v2-only layout's piece checks on the hashing pool
    /// (`check_pieces`, side by side in the lanes, from reads and from
    /// maps) agree with the one-piece check, pin a flipped byte to its
    /// piece, and give missing data as that piece's error.
    #[test]
    fn v2_check_pieces_in_lanes_equal_one_piece_checks() {
        let dir = tempfile::tempdir().unwrap();
        let plen = 65536;
        let files = [
            ("a", 3 * 65536 + 20000),
            ("b", 40000),
            ("c", 100),
            ("d", 5 * 65536 + 16384 + 1),
            ("e", 65536),
        ];
        let (layout, _) = v2_layout(dir.path(), &files, plen);
        let n = layout.piece_count();
        let all: Vec<usize> = (0..n).collect();
        for source in [crate::HashSource::Read, crate::HashSource::Map] {
            if source == crate::HashSource::Map {
                crate::install_sigbus_guard().unwrap();
            }
            let s = Storage::new(
                layout.clone(),
                dir.path().into(),
                Arc::new(FilePool::default()),
                Backend::PositionedIo,
            )
            .unwrap()
            .with_hash_source(source);
            let check = |s: &Storage| -> Vec<Option<bool>> {
                s.check_pieces(&all).into_iter().map(Result::ok).collect()
            };
            assert_eq!(check(&s), vec![Some(true); n]);
            let path = dir.path().join("d");
            let good = std::fs::read(&path).unwrap();
            let mut bad = good.clone();
            bad[3 * 65536 + 17000] ^= 4;
            std::fs::write(&path, &bad).unwrap();
            s.release_files();
            let each: Vec<Option<bool>> = all.iter().map(|&p| s.check_piece_v2(p).ok()).collect();
            let got = check(&s);
            assert_eq!(got, each);
            let d0 = (0..n)
                .find(|&p| layout.v2_piece(p).is_some_and(|v| v.file == 6))
                .unwrap();
            let failed: Vec<usize> = (0..n).filter(|&p| got[p] != Some(true)).collect();
            assert_eq!(failed, [d0 + 3]);
            assert_eq!(got[d0 + 3], Some(false));
            // a missing file: its pieces are errors, the others unharmed
            std::fs::remove_file(&path).unwrap();
            s.release_files();
            let got = s.check_pieces(&all);
            for (p, r) in got.iter().enumerate() {
                let in_d = layout.v2_piece(p).is_some_and(|v| v.file == 6);
                assert_eq!(r.is_err(), in_d, "piece {p}: {r:?}");
            }
            std::fs::write(&path, &good).unwrap();
            s.release_files();
        }
    }

    #[test]
    fn layouts_that_are_not_v2() {
        let f = |len, padding| FileSpec {
            path: format!("f{len}").into(),
            length: len,
            padding,
        };
        // a file starting inside a piece
        let e = Layout::new_v2(
            vec![f(100, false), f(50, false)],
            16384,
            &[vec![[0; 32]], vec![[0; 32]]],
        );
        assert!(
            matches!(e, Err(Error::NotPieceAligned { piece: 0 })),
            "{e:?}"
        );
        // wrong hash counts, bad piece length
        let e = Layout::new_v2(vec![f(40000, false)], 16384, &[vec![[0; 32]; 2]]);
        assert!(
            matches!(
                e,
                Err(Error::LengthMismatch {
                    expected: 3,
                    actual: 2
                })
            ),
            "{e:?}"
        );
        let e = Layout::new_v2(vec![f(100, false)], 16384, &[]);
        assert!(matches!(e, Err(Error::LengthMismatch { .. })), "{e:?}");
        let e = Layout::new_v2(vec![f(100, false)], 20000, &[vec![[0; 32]]]);
        assert!(
            matches!(e, Err(Error::InvalidV2PieceLength(20000))),
            "{e:?}"
        );
        // a piece of padding only
        let e = Layout::new_v2(
            vec![f(100, false), f(16384 * 2 - 100, true)],
            16384,
            &[vec![[0; 32]], vec![]],
        );
        assert!(
            matches!(e, Err(Error::NotPieceAligned { piece: 1 })),
            "{e:?}"
        );
        // a v1 layout has no v2 pieces
        let v1 = Layout::new(vec![f(100, false)], 16384, vec![[1; 20]]).unwrap();
        assert!(v1.has_v1() && !v1.has_v2());
        assert_eq!(v1.piece_hash_v2(0), None);
        let hybrid = v1.with_v2(&[vec![[2; 32]]]).unwrap();
        assert!(hybrid.has_v1() && hybrid.has_v2());
        assert_eq!(
            (hybrid.piece_hash(0), hybrid.piece_hash_v2(0)),
            ([1; 20], Some([2; 32]))
        );
    }
}
