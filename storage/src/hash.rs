//! SHA-1 helpers: hashing held blocks and hashing files for torrent creation.
//!
//! SHA-1 is hidden behind these functions so implementations can be
//! compared; `sha1` 0.10 picks SHA-NI at run time where the CPU has it.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rayon::prelude::*;
use sha1::{Digest, Sha1};

use crate::buf::{AlignedBuf, PAGE_ALIGN};
use crate::error::{Error, Result};
use crate::file::{OpenFile, CHUNK};
use crate::lanes::{hash_lanes, PieceFiles};
use crate::layout::{FileSpec, Layout};
use crate::pool::{FilePool, DEFAULT_MAX_OPEN};
use crate::sha;

thread_local! {
    static SCRATCH: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}

/// How far past a page boundary the scratch buffers start (0 but in
/// benchmarks: [`set_read_buffer_offset`]).
static READ_OFFSET: AtomicUsize = AtomicUsize::new(0);

/// For benchmarks only: makes the buffers that hashing reads file data
/// into (verification with [`HashSource::Read`](crate::HashSource::Read),
/// torrent creation) start `offset` bytes past a page boundary instead of
/// on one (`offset` is taken modulo the page size), to measure what the
/// alignment is worth on this CPU. Process-wide.
#[doc(hidden)]
pub fn set_read_buffer_offset(offset: usize) {
    READ_OFFSET.store(offset % PAGE_ALIGN, Ordering::Relaxed);
}

/// Runs `f` with this thread's first `lanes` (up to [`sha::MAX_LANES`])
/// [`CHUNK`]-byte scratch buffers, each starting on a page boundary, and
/// empty slices for the rest (allocated once per thread and grown to the
/// most lanes asked for, so verification memory is bounded by the thread
/// count).
pub(crate) fn with_scratch_lanes<T>(
    lanes: usize,
    f: impl FnOnce([&mut [u8]; sha::MAX_LANES]) -> T,
) -> T {
    fn split(buf: &mut [u8], lanes: usize) -> [&mut [u8]; sha::MAX_LANES] {
        let skew = READ_OFFSET.load(Ordering::Relaxed);
        let mut rest = &mut buf[skew..];
        std::array::from_fn(|i| {
            if i < lanes {
                let (a, r) = std::mem::take(&mut rest).split_at_mut(CHUNK);
                rest = r;
                a
            } else {
                &mut []
            }
        })
    }
    let lanes = lanes.min(sha::MAX_LANES);
    // One page spare, for the benchmark offset.
    let size = lanes * CHUNK + PAGE_ALIGN;
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            if !matches!(&*slot, Some(b) if b.len() >= size) {
                *slot = Some(AlignedBuf::zeroed(size));
            }
            f(split(
                slot.get_or_insert_with(|| AlignedBuf::zeroed(size)),
                lanes,
            ))
        }
        // Re-entered on this thread (not done by this crate): fresh buffers.
        Err(_) => f(split(&mut AlignedBuf::zeroed(size), lanes)),
    })
}

/// Each lane's digest, or the error that ended its stream (`ends[i]` is
/// `None` or `Some(Ok(()))` for a lane that ran to its end).
pub(crate) fn finish_lanes<E>(
    hs: Vec<sha::Sha1>,
    ends: Vec<Option<std::result::Result<(), E>>>,
) -> Vec<std::result::Result<[u8; 20], E>> {
    hs.into_iter()
        .zip(ends)
        .map(|(h, end)| match end {
            Some(Err(e)) => Err(e),
            _ => Ok(h.finish()),
        })
        .collect()
}

/// SHA-1 of the concatenation of `blocks`: hashes a piece the caller still
/// holds in memory, without reading it back from disk.
pub fn hash_blocks<'a>(blocks: impl IntoIterator<Item = &'a [u8]>) -> [u8; 20] {
    let mut h = Sha1::new();
    for b in blocks {
        h.update(b);
    }
    h.finalize().into()
}

/// SHA-1 of each of `msgs`, hashed up to three side by side: about 0.5x
/// the CPU time of one [`hash_blocks`] call each on a CPU with the SHA
/// extensions, the same digests everywhere.
pub fn hash_many(msgs: &[&[u8]]) -> Vec<[u8; 20]> {
    let mut out = Vec::with_capacity(msgs.len());
    for group in msgs.chunks(sha::LANES) {
        let mut hs: Vec<sha::Sha1> = group.iter().map(|_| sha::Sha1::new()).collect();
        let mut refs: Vec<&mut sha::Sha1> = hs.iter_mut().collect();
        sha::update_lanes(&mut refs, group);
        out.extend(hs.into_iter().map(sha::Sha1::finish));
    }
    out
}

/// An incremental SHA-1 of one piece, fed block by block while the caller
/// still holds each block (so a completed piece needs no read-back).
#[derive(Clone, Default)]
pub struct PieceHasher(Sha1);

impl PieceHasher {
    /// A hasher with nothing fed yet.
    pub fn new() -> Self {
        PieceHasher(Sha1::new())
    }

    /// Feeds the next bytes of the piece.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The SHA-1 of everything fed.
    pub fn finish(self) -> [u8; 20] {
        self.0.finalize().into()
    }
}

impl std::fmt::Debug for PieceHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PieceHasher")
    }
}

/// Piece hashes of `files` (paths and expected lengths, in torrent order)
/// for torrent creation: pieces are hashed in parallel on `pool`, three at
/// a time side by side (as [`hash_many`]; sixteen in AVX-512 lanes where
/// the CPU has it), with `progress(done, total)` after each piece.
///
/// Files are opened by the paths given (symlinks are followed: the caller
/// decides which paths are acceptable), read-only, at most
/// [`DEFAULT_MAX_OPEN`] at a time. While [`install_sigbus_guard`](crate::install_sigbus_guard)'s
/// guard is installed, files of 256 KiB or more are hashed straight from
/// read-only maps (no copy; a file cut by another program meanwhile gives
/// [`Error::FileTooShort`], never a wrong hash nor a dead process), as
/// [`HashSource::Map`](crate::HashSource::Map) verification does; smaller
/// files, and every file without the guard, are read with `pread` into
/// page-aligned 64 KiB buffers (three per worker).
///
/// # Errors
/// [`Error::ZeroPieceLength`]; [`Error::FileMissing`]; [`Error::FileTooShort`]
/// when a file is shorter than its given length; other IO errors.
pub fn hash_files(
    files: &[(PathBuf, u64)],
    piece_length: u64,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<[u8; 20]>> {
    let inputs: Vec<(Option<PathBuf>, u64)> =
        files.iter().map(|(p, l)| (Some(p.clone()), *l)).collect();
    hash_files_padded(&inputs, piece_length, pool, progress)
}

/// [`hash_files`] where a `None` path stands for BEP 47 padding: that many
/// zero bytes, never read from disk (a hybrid v1 + v2 torrent's SHA-1
/// pieces cover the piece-aligned layout).
///
/// # Errors
/// As [`hash_files`].
pub fn hash_files_padded(
    files: &[(Option<PathBuf>, u64)],
    piece_length: u64,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<[u8; 20]>> {
    let source = CreateFiles::new(files, piece_length)?;
    let maps = crate::sigbus::available();
    if !maps {
        log::debug!("no SIGBUS guard installed: hashing files with pread");
    }
    source.hash(maps, pool, progress)
}

/// A hybrid torrent's two sets of hashes from one read of its files:
/// the SHA-1 pieces of the padded layout `files` describes (as
/// [`hash_files_padded`]: `None` paths are BEP 47 padding, and every file
/// that does not end on a piece boundary must be followed by its padding),
/// and each real file's merkle root and piece layer (as
/// [`merkle::hash_files_v2`](crate::merkle::hash_files_v2), in the order
/// of the `Some` entries), each chunk read feeding both hashes
/// (`lanes::hash_lanes_with_leaves`).
///
/// # Errors
/// As [`hash_files`]; [`Error::InvalidV2PieceLength`];
/// [`Error::NotPieceAligned`] when a file starts inside a piece.
pub fn hash_files_hybrid(
    files: &[(Option<PathBuf>, u64)],
    piece_length: u64,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<[u8; 20]>, Vec<crate::merkle::FileHashes>)> {
    hash_files_aligned(files, piece_length, true, pool, progress)
}

/// [`hash_files_hybrid`]'s v2 half alone (a v2-only torrent), through the
/// same lanes (from maps where the guard is installed): `files` padded
/// the same way, the SHA-1 lanes skipped. Equal to
/// [`merkle::hash_files_v2`](crate::merkle::hash_files_v2) of the `Some`
/// entries.
///
/// # Errors
/// As [`hash_files_hybrid`].
pub fn hash_files_v2_aligned(
    files: &[(Option<PathBuf>, u64)],
    piece_length: u64,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<crate::merkle::FileHashes>> {
    Ok(hash_files_aligned(files, piece_length, false, pool, progress)?.1)
}

fn hash_files_aligned(
    files: &[(Option<PathBuf>, u64)],
    piece_length: u64,
    sha1_too: bool,
    pool: &rayon::ThreadPool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<(Vec<[u8; 20]>, Vec<crate::merkle::FileHashes>)> {
    use crate::merkle::{merkle_root, piece_layer_height, FileHashes};
    let h = piece_layer_height(piece_length)?;
    let source = CreateFiles::new(files, piece_length)?;
    // each piece's real file (index among the `Some` entries), its bytes
    // of that file and the width its node pads the leaves to
    let mut plan: Vec<(usize, u64, u64)> = Vec::with_capacity(source.layout.piece_count());
    let (mut offset, mut real) = (0u64, 0usize);
    for (path, len) in files {
        if path.is_some() {
            if *len > 0 && offset % piece_length != 0 {
                return Err(Error::NotPieceAligned {
                    piece: (offset / piece_length) as usize,
                });
            }
            let width = if *len > piece_length { 1u64 << h } else { 1 };
            for p in 0..len.div_ceil(piece_length) {
                plan.push((real, (len - p * piece_length).min(piece_length), width));
            }
            real += 1;
        }
        offset += len;
    }
    if plan.len() != source.layout.piece_count() {
        return Err(Error::NotPieceAligned { piece: plan.len() });
    }
    let maps = crate::sigbus::available();
    let count = plan.len();
    let pieces: Vec<usize> = (0..count).collect();
    let done = AtomicUsize::new(0);
    type Group = Result<Vec<([u8; 20], crate::merkle::Hash256)>>;
    let groups: Vec<Group> = pool.install(|| {
        pieces
            .par_chunks(sha::bulk_lanes())
            .map(|group| {
                let bytes: Vec<u64> = group.iter().map(|&p| plan[p].1).collect();
                let (sha1, leaves) = crate::lanes::hash_lanes_with_leaves(
                    &source,
                    group,
                    maps,
                    true,
                    Some(&bytes),
                    sha1_too,
                );
                let mut out = Vec::with_capacity(group.len());
                for ((&p, d), l) in group.iter().zip(sha1).zip(leaves) {
                    out.push((d?, merkle_root(&l, 0, plan[p].2)));
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, count);
                }
                Ok(out)
            })
            .collect()
    });
    let mut sha1 = Vec::with_capacity(count);
    let mut layers: Vec<Vec<crate::merkle::Hash256>> = vec![Vec::new(); real];
    let mut at = 0;
    for g in groups {
        for (d, node) in g? {
            if sha1_too {
                sha1.push(d);
            }
            layers[plan[at].0].push(node);
            at += 1;
        }
    }
    let hashes = layers
        .into_iter()
        .map(|layer| FileHashes::from_layer(layer, h))
        .collect();
    Ok((sha1, hashes))
}

/// The files given to [`hash_files`], opened read-only by path through a
/// bounded pool of their own.
struct CreateFiles<'a> {
    paths: &'a [(Option<PathBuf>, u64)],
    layout: Layout,
    open: FilePool,
}

impl<'a> CreateFiles<'a> {
    fn new(paths: &'a [(Option<PathBuf>, u64)], piece_length: u64) -> Result<Self> {
        if piece_length == 0 {
            return Err(Error::ZeroPieceLength);
        }
        let total = paths
            .iter()
            .try_fold(0u64, |acc, (_, l)| acc.checked_add(*l))
            .ok_or(Error::TooLarge)?;
        let count = usize::try_from(total.div_ceil(piece_length)).map_err(|_| Error::TooLarge)?;
        // Reuse the layout geometry with placeholder names.
        let specs = (0..paths.len())
            .map(|i| FileSpec {
                path: PathBuf::from(i.to_string()),
                length: paths[i].1,
                padding: paths[i].0.is_none(),
            })
            .collect();
        Ok(CreateFiles {
            paths,
            layout: Layout::new(specs, piece_length, vec![[0; 20]; count])?,
            open: FilePool::new(DEFAULT_MAX_OPEN),
        })
    }

    /// Every piece's hash, from maps where `maps` (the guard is installed).
    fn hash(
        &self,
        maps: bool,
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<[u8; 20]>> {
        let count = self.layout.piece_count();
        let pieces: Vec<usize> = (0..count).collect();
        let done = AtomicUsize::new(0);
        let groups: Vec<Vec<Result<[u8; 20]>>> = pool.install(|| {
            pieces
                .par_chunks(sha::bulk_lanes())
                .map(|group| {
                    let out = hash_lanes(self, group, maps, true);
                    for _ in 0..out.len() {
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, count);
                    }
                    out
                })
                .collect()
        });
        groups.into_iter().flatten().collect()
    }
}

impl PieceFiles for CreateFiles<'_> {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn open_file(&self, file: usize) -> Result<Arc<OpenFile>> {
        let (path, expected) = &self.paths[file];
        // Padding files are read as zeros by the lanes, never opened.
        let Some(path) = path else {
            return Err(Error::OutOfRange {
                piece: 0,
                offset: 0,
                len: *expected,
            });
        };
        self.open
            .get((0, file), false, || OpenFile::open_path(path, *expected))
    }

    fn forget_file(&self, file: usize) {
        self.open.forget((0, file));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One pass for a hybrid gives what the two passes give: SHA-1 pieces
    /// of the padded layout and each file's v2 hashes, with empty files,
    /// a file of less than a piece and files whose blocks end mid-chunk.
    #[test]
    fn hybrid_hashes_equal_the_two_passes() {
        let dir = tempfile::tempdir().unwrap();
        let plen = 65536u64;
        let sizes = [3 * 65536 + 20000, 0, 40000, 100, 5 * 65536 + 16385, 65536];
        let mut real = Vec::new();
        let mut padded = Vec::new();
        for (i, len) in sizes.iter().enumerate() {
            let p = dir.path().join(format!("f{i}"));
            let data: Vec<u8> = (0..*len as u32)
                .map(|x| (x.wrapping_mul(2654435761) >> (i + 3)) as u8)
                .collect();
            std::fs::write(&p, &data).unwrap();
            real.push((p.clone(), *len as u64));
            padded.push((Some(p), *len as u64));
            let pad = (plen - *len as u64 % plen) % plen;
            if pad > 0 {
                padded.push((None, pad));
            }
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let (sha1, v2) = hash_files_hybrid(&padded, plen, &pool, &|_, _| {}).unwrap();
        assert_eq!(
            sha1,
            hash_files_padded(&padded, plen, &pool, &|_, _| {}).unwrap()
        );
        let want = crate::merkle::hash_files_v2(&real, plen, &pool, &|_, _| {}).unwrap();
        let alone = hash_files_v2_aligned(&padded, plen, &pool, &|_, _| {}).unwrap();
        assert_eq!(v2.len(), want.len());
        assert_eq!(alone.len(), want.len());
        for ((a, b), c) in v2.iter().zip(&want).zip(&alone) {
            assert_eq!((a.root, &a.piece_layer), (b.root, &b.piece_layer));
            assert_eq!((c.root, &c.piece_layer), (b.root, &b.piece_layer));
        }
        // a file starting inside a piece is refused
        let bad = [
            (Some(real[3].0.clone()), 100),
            (Some(real[2].0.clone()), 40000),
        ];
        assert!(matches!(
            hash_files_hybrid(&bad, plen, &pool, &|_, _| {}),
            Err(Error::NotPieceAligned { .. })
        ));
    }

    #[test]
    fn hash_many_equals_hash_blocks_each() {
        let a: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let b: Vec<u8> = (0..123_457u32).map(|i| (i * 13 + i / 97) as u8).collect();
        for msgs in [
            &[&a[..], &b[..]][..],
            &[&b[..], &a[..], &a[..64], &a[..0]][..],
        ] {
            let each: Vec<[u8; 20]> = msgs.iter().map(|m| hash_blocks([*m])).collect();
            assert_eq!(hash_many(msgs), each);
        }
    }

    /// Files of odd sizes (empty ones, a byte, around page and chunk
    /// boundaries) under `dir`, with their concatenation.
    fn odd_files(dir: &std::path::Path) -> (Vec<(PathBuf, u64)>, Vec<u8>) {
        let lens = [0usize, 1, 4095, 4097, 100_003, 65_536, 3, 300_001, 0, 17];
        let data = crate::testutil::random_bytes(lens.iter().sum(), 17);
        let mut files = Vec::new();
        let mut at = 0;
        for (i, &l) in lens.iter().enumerate() {
            let p = dir.join(format!("f{i}"));
            std::fs::write(&p, &data[at..at + l]).unwrap();
            files.push((p, l as u64));
            at += l;
        }
        (files, data)
    }

    /// The `sha1` crate's digest of each `pl`-byte piece of `data`.
    fn reference(data: &[u8], pl: u64) -> Vec<[u8; 20]> {
        data.chunks(pl as usize)
            .map(|c| Sha1::digest(c).into())
            .collect()
    }

    /// Creation hashes from guarded maps and from aligned reads are the
    /// `sha1` crate's digests of the concatenation, for piece lengths
    /// that cut files anywhere; the map run really read maps (every
    /// non-empty file has one: tests map files of any size) and the read
    /// run made none.
    #[test]
    fn create_from_maps_equals_create_from_reads() {
        crate::install_sigbus_guard().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (files, data) = odd_files(dir.path());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for pl in [16_384u64, 32_768, 1 << 18, 1 << 20] {
            let want = reference(&data, pl);
            for maps in [false, true] {
                let padded: Vec<_> = files.iter().map(|(p, l)| (Some(p.clone()), *l)).collect();
                let source = CreateFiles::new(&padded, pl).unwrap();
                let got = source.hash(maps, &pool, &|_, _| {}).unwrap();
                assert_eq!(got, want, "piece length {pl}, maps {maps}");
                for (i, &(_, len)) in files.iter().enumerate().filter(|f| f.1 .1 > 0) {
                    let made = source.open_file(i).unwrap().upload_map_made().is_some();
                    assert_eq!(made, maps, "file {i} ({len} bytes), maps {maps}");
                }
            }
            assert_eq!(hash_files(&files, pl, &pool, &|_, _| {}).unwrap(), want);
        }
    }

    /// A file cut by another program after hashing mapped it (mid-create)
    /// fails the creation with `FileTooShort`: whether its lost bytes are
    /// read through the map (a fault the guard turns into zeros, or the
    /// zeros past the new end in the last page) or with `pread`, never a
    /// hash of zeros and never a dead process.
    #[test]
    fn file_cut_during_create_is_an_error_not_a_wrong_hash() {
        crate::install_sigbus_guard().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for maps in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let data = crate::testutil::random_bytes(300_000, 5);
            let (a, b) = (dir.path().join("a"), dir.path().join("b"));
            std::fs::write(&a, &data[..200_000]).unwrap();
            std::fs::write(&b, &data[200_000..]).unwrap();
            let files = vec![(Some(a.clone()), 200_000), (Some(b), 100_000)];
            let source = CreateFiles::new(&files, 16_384).unwrap();
            // The first piece hashes (mapping the file when `maps`) ...
            let first = hash_lanes(&source, &[0], maps, true);
            assert_eq!(first[0].as_ref().unwrap(), &reference(&data, 16_384)[0]);
            assert_eq!(
                source.open_file(0).unwrap().upload_map_made().is_some(),
                maps
            );
            // ... then the file is cut inside a page, mid-piece.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&a)
                .unwrap()
                .set_len(50_000)
                .unwrap();
            let r = source.hash(maps, &pool, &|_, _| {});
            assert!(
                matches!(
                    r,
                    Err(Error::FileTooShort {
                        expected: 200_000,
                        actual: 50_000,
                        ..
                    })
                ),
                "maps {maps}: {r:?}"
            );
            // Piece by piece: before the cut intact, across and after it errors.
            let each = hash_lanes(&source, &[2, 3, 5], maps, true);
            assert_eq!(each[0].as_ref().unwrap(), &reference(&data, 16_384)[2]);
            assert!(each[1].is_err() && each[2].is_err(), "{each:?}");
        }
    }

    /// Resident kilobytes of the mapping starting at `addr`, from
    /// `/proc/self/smaps`.
    fn mapped_rss_kib(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        while let Some(l) = lines.next() {
            let start = l.split('-').next().unwrap_or("");
            if usize::from_str_radix(start, 16) != Ok(addr) {
                continue;
            }
            for l in lines.by_ref() {
                if let Some(kb) = l.strip_prefix("Rss:") {
                    return kb.trim().trim_end_matches("kB").trim().parse().unwrap();
                }
            }
        }
        panic!("no mapping at {addr:#x}");
    }

    /// Hashing with `release` leaves (almost) none of the map's pages
    /// mapped, without it every hashed page stays mapped until the map is
    /// dropped; the hashes are the same either way.
    #[test]
    fn release_drops_hashed_pages_from_the_map() {
        crate::install_sigbus_guard().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = crate::testutil::random_bytes(4 << 20, 9);
        let p = dir.path().join("big");
        std::fs::write(&p, &data).unwrap();
        let files = vec![(Some(p), data.len() as u64)];
        let want = reference(&data, 65_536);
        for release in [false, true] {
            let source = CreateFiles::new(&files, 65_536).unwrap();
            let pieces: Vec<usize> = (0..64).collect();
            let got: Vec<[u8; 20]> = pieces
                .chunks(sha::LANES)
                .flat_map(|g| hash_lanes(&source, g, true, release))
                .map(|h| h.unwrap())
                .collect();
            assert_eq!(got, want);
            let file = source.open_file(0).unwrap();
            let Some(Some(map)) = file.upload_map_made() else {
                panic!("not hashed from a map");
            };
            let rss = mapped_rss_kib(map.as_ptr() as usize);
            if release {
                assert!(rss <= 64, "{rss} KiB still mapped");
            } else {
                assert!(rss >= 4096 - 64, "only {rss} KiB mapped");
            }
        }
    }

    #[test]
    fn piece_hasher_equals_hash_blocks() {
        let a = vec![1u8; 16384];
        let b = vec![2u8; 1000];
        let mut h = PieceHasher::new();
        h.update(&a);
        h.update(&b);
        assert_eq!(h.finish(), hash_blocks([&a[..], &b[..]]));
    }
}
