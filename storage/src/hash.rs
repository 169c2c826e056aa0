//! SHA-1 helpers: hashing held blocks and hashing files for torrent creation.
//!
//! SHA-1 is hidden behind these functions so implementations can be
//! compared; `sha1` 0.10 picks SHA-NI at run time where the CPU has it.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use sha1::{Digest, Sha1};

use crate::buf::{AlignedBuf, PAGE_ALIGN};
use crate::error::{Error, Result};
use crate::file::CHUNK;
use crate::layout::{FileSpec, Layout, SpanChunks};
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

/// Runs `f` with this thread's [`sha::LANES`] [`CHUNK`]-byte scratch
/// buffers, each starting on a page boundary (allocated once per thread,
/// so verification memory is bounded by the thread count).
pub(crate) fn with_scratch_lanes<T>(f: impl FnOnce([&mut [u8]; sha::LANES]) -> T) -> T {
    fn split(buf: &mut [u8]) -> [&mut [u8]; sha::LANES] {
        let skew = READ_OFFSET.load(Ordering::Relaxed);
        let (a, rest) = buf[skew..].split_at_mut(CHUNK);
        let (b, c) = rest.split_at_mut(CHUNK);
        [a, b, &mut c[..CHUNK]]
    }
    // One page spare, for the benchmark offset.
    let size = sha::LANES * CHUNK + PAGE_ALIGN;
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(split(buf.get_or_insert_with(|| AlignedBuf::zeroed(size)))),
        // Re-entered on this thread (not done by this crate): fresh buffers.
        Err(_) => f(split(&mut AlignedBuf::zeroed(size))),
    })
}

/// Hashes up to [`sha::LANES`] byte streams side by side, one per buffer
/// in `bufs`. Each source fills the buffer it is given with its next bytes
/// and returns how many (0 at its end). An error ends that stream only:
/// the others are still hashed. Returns one digest or error per source.
///
/// # Panics
/// With more than [`sha::LANES`] sources (a caller bug).
pub(crate) fn hash_streams<E, S>(
    sources: &mut [S],
    bufs: [&mut [u8]; sha::LANES],
) -> Vec<std::result::Result<[u8; 20], E>>
where
    S: FnMut(&mut [u8]) -> std::result::Result<usize, E>,
{
    let k = sources.len();
    assert!(k <= sha::LANES, "{k} streams");
    let mut hs: Vec<sha::Sha1> = (0..k).map(|_| sha::Sha1::new()).collect();
    // Some once that stream ended (cleanly or not).
    let mut ends: Vec<Option<std::result::Result<(), E>>> = (0..k).map(|_| None).collect();
    let mut lens = [0usize; sha::LANES];
    let mut refs: Vec<&mut sha::Sha1> = hs.iter_mut().collect();
    while ends.iter().any(Option::is_none) {
        for i in 0..k {
            lens[i] = 0;
            if ends[i].is_some() {
                continue;
            }
            match sources[i](&mut *bufs[i]) {
                Ok(0) => ends[i] = Some(Ok(())),
                Ok(n) => lens[i] = n.min(bufs[i].len()),
                Err(e) => ends[i] = Some(Err(e)),
            }
        }
        let data: [&[u8]; sha::LANES] = std::array::from_fn(|i| &bufs[i][..lens[i]]);
        sha::update_lanes(&mut refs, &data[..k]);
    }
    drop(refs);
    finish_lanes(hs, ends)
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

/// Piece hashes of `files` (absolute paths and expected lengths, in torrent
/// order) for torrent creation: pieces are hashed in parallel on `pool`,
/// three at a time side by side (as [`hash_many`]), streaming through three
/// 64 KiB buffers per worker, with `progress(done, total)` after each piece.
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
    if piece_length == 0 {
        return Err(Error::ZeroPieceLength);
    }
    let total = files
        .iter()
        .try_fold(0u64, |acc, (_, l)| acc.checked_add(*l))
        .ok_or(Error::TooLarge)?;
    let count = usize::try_from(total.div_ceil(piece_length)).map_err(|_| Error::TooLarge)?;
    // Reuse the layout geometry with placeholder names.
    let specs = (0..files.len())
        .map(|i| FileSpec {
            path: PathBuf::from(i.to_string()),
            length: files[i].1,
            padding: false,
        })
        .collect();
    let layout = Layout::new(specs, piece_length, vec![[0; 20]; count])?;
    let done = AtomicUsize::new(0);
    let groups: Vec<Vec<Result<[u8; 20]>>> = pool.install(|| {
        (0..count.div_ceil(sha::LANES))
            .into_par_iter()
            // Each rayon job walks a run of consecutive groups of pieces:
            // each lane keeps its last file open across them, so a file
            // spanning many pieces is opened once per job and lane rather
            // than once per piece.
            .map_init(
                || std::array::from_fn::<_, { sha::LANES }, _>(|_| None),
                |last, k| {
                    let first = k * sha::LANES;
                    let pieces = first..(first + sha::LANES).min(count);
                    let mut cursors: Vec<FileCursor<'_>> = pieces
                        .zip(last.iter_mut())
                        .map(|(p, last)| FileCursor::new(files, &layout, p, last))
                        .collect();
                    let mut sources: Vec<_> = cursors
                        .iter_mut()
                        .map(|c| move |buf: &mut [u8]| c.read(buf))
                        .collect();
                    let out = with_scratch_lanes(|bufs| hash_streams(&mut sources, bufs));
                    for _ in 0..out.len() {
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, count);
                    }
                    out
                },
            )
            .collect()
    });
    groups.into_iter().flatten().collect()
}

/// Reads one piece's bytes from the files given to [`hash_files`], chunk by
/// chunk, keeping the last file it used open in `last`.
struct FileCursor<'a> {
    files: &'a [(Option<PathBuf>, u64)],
    chunks: SpanChunks,
    last: &'a mut Option<(usize, File)>,
}

impl<'a> FileCursor<'a> {
    fn new(
        files: &'a [(Option<PathBuf>, u64)],
        layout: &Layout,
        piece: usize,
        last: &'a mut Option<(usize, File)>,
    ) -> Self {
        FileCursor {
            files,
            chunks: SpanChunks::new(layout.spans(piece, 0, layout.piece_len(piece)).collect()),
            last,
        }
    }

    /// Fills the front of `buf` with the next bytes; `Ok(0)` at the end.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let Some(c) = self.chunks.next(buf.len()) else {
            return Ok(0);
        };
        let (path, expected) = &self.files[c.span.file];
        let Some(path) = path else {
            buf[..c.len].fill(0);
            return Ok(c.len);
        };
        let file = match self.last.take() {
            Some((i, f)) if i == c.span.file => f,
            _ => File::open(path).map_err(|e| Error::from_io(path, e))?,
        };
        let file = &self.last.insert((c.span.file, file)).1;
        match file.read_exact_at(&mut buf[..c.len], c.span.file_offset + c.offset) {
            Ok(()) => Ok(c.len),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                let actual = file.metadata().map(|m| m.len()).unwrap_or(0);
                Err(Error::FileTooShort {
                    path: path.clone(),
                    expected: *expected,
                    actual,
                })
            }
            Err(e) => Err(Error::from_io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Streams of different lengths hashed side by side give each one's own
    /// digest, and a stream that fails ends alone.
    #[test]
    fn hash_streams_keeps_lanes_apart() {
        let msgs: Vec<Vec<u8>> = [300_000usize, 70_001, 0]
            .iter()
            .map(|&n| (0..n).map(|i| (i * 31 + i / 7) as u8).collect())
            .collect();
        let mut bufs: Vec<Vec<u8>> = vec![vec![0; 65_536]; sha::LANES];
        let [a, b, c] = &mut bufs[..] else {
            unreachable!()
        };
        for failing in [None, Some(0), Some(1), Some(2)] {
            let mut pos = [0usize; 3];
            let mut sources: Vec<_> = pos
                .iter_mut()
                .enumerate()
                .map(|(i, pos)| {
                    let msgs = &msgs;
                    move |buf: &mut [u8]| -> std::result::Result<usize, &'static str> {
                        if failing == Some(i) && *pos > 0 {
                            return Err("boom");
                        }
                        let m = &msgs[i];
                        // Odd sizes, so the lanes drift apart.
                        let n = (m.len() - *pos).min(buf.len() - 1000 * i);
                        buf[..n].copy_from_slice(&m[*pos..*pos + n]);
                        *pos += n;
                        Ok(n)
                    }
                })
                .collect();
            let got = hash_streams(&mut sources, [&mut a[..], &mut b[..], &mut c[..]]);
            for i in 0..3 {
                if failing == Some(i) && !msgs[i].is_empty() {
                    assert_eq!(got[i], Err("boom"), "lane {i}");
                } else {
                    assert_eq!(
                        got[i],
                        Ok(hash_blocks([&msgs[i][..]])),
                        "lane {i}, {failing:?}"
                    );
                }
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
