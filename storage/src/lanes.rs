//! Hashing pieces side by side (three, or sixteen for bulk hashing on a CPU
//! with AVX-512) straight from files: the lanes that
//! [`Storage`](crate::Storage) verification and [`hash_files`](crate::hash_files)
//! (torrent creation) share. Each chunk comes from the file's read-only map
//! under the `SIGBUS` guard (`sigbus.rs`) when the caller allows maps, else
//! from `pread` into page-aligned scratch buffers.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::file::{OpenFile, CHUNK};
use crate::hash::{finish_lanes, with_scratch_lanes};
use crate::layout::{Layout, SpanChunks};
use crate::merkle::{sha256, Hash256, BLOCK_LEN};

/// A leaf's length, as an index.
const BLOCK: usize = BLOCK_LEN as usize;

/// What padding files hold, hashed from here in chunks of this length
/// (rather than cleared into a lane's buffer each time: a hybrid
/// torrent of many small files is about half padding). Never written,
/// so its pages are the kernel's one zero page.
static ZEROS: [u8; CHUNK] = [0; CHUNK];
use crate::sha::{self, Sha1, MAX_LANES};
use crate::sigbus::{self, Range};

/// Where the lanes get a piece's geometry and its files from.
pub(crate) trait PieceFiles {
    /// The geometry (padding files read as zeros, never opened).
    fn layout(&self) -> &Layout;
    /// File `file`, open for reading (cached by the implementation).
    fn open_file(&self, file: usize) -> Result<Arc<OpenFile>>;
    /// Drops file `file`'s cached handle: found deleted or cut, or its map
    /// holds a zero page; the next [`open_file`](Self::open_file) reopens it.
    fn forget_file(&self, file: usize);
}

/// SHA-1 of each of `pieces` (up to [`MAX_LANES`]) as `files` hold them,
/// hashed side by side; an error ends that lane only.
///
/// Each lane holds the chunk it pulled last (the rest of a span in a
/// file's map, or a buffer read with `pread`) until all of it is
/// hashed, and every round feeds each lane as many bytes as the
/// shortest chunk left, so the lanes stay side by side even when the
/// pieces cross files of different sizes (otherwise the lane with the
/// longest chunk would finish it alone, one lane at a time). Each round
/// finishes at least one chunk.
///
/// `maps`: take each chunk straight from its file's read-only map where
/// there is one (the caller checked that the `SIGBUS` guard is installed),
/// else read it with `pread` into this thread's page-aligned scratch.
///
/// `release`: once done, drop this call's page-table entries for the
/// map pages it hashed (`madvise(MADV_DONTNEED)`: the pages stay in the
/// page cache) — for bulk hashing of whole files (verification, torrent
/// creation), where each page is hashed once. Otherwise the entries of a
/// big file's map pile up and are all torn down by the one thread that
/// drops the map at the end: 24 ms of a 1 GiB `bittern verify` was that
/// serial `munmap`, after both hashing threads had finished.
///
/// # Panics
/// With more than [`MAX_LANES`] pieces (a caller bug).
pub(crate) fn hash_lanes<F: PieceFiles + ?Sized>(
    files: &F,
    pieces: &[usize],
    maps: bool,
    release: bool,
) -> Vec<Result<[u8; 20]>> {
    hash_lanes_with_leaves(files, pieces, maps, release, None, true).0
}

/// [`hash_lanes`], and with `leaf_bytes` (one count per piece) the
/// SHA-256 of each 16 KiB block of the first `leaf_bytes[i]` bytes of
/// piece `i` (a hybrid piece's bytes of its one file, the padding after
/// them excluded; a short last block hashed as it is), from the same
/// chunks the SHA-1 lanes read: one read of a hybrid piece for both of
/// its hashes, from the file's map where allowed. A lane's leaves are
/// meaningless when its digest is an error. Without `sha1` (a v2-only
/// layout) the SHA-1 lanes are skipped and the digests are meaningless
/// too; errors still say which pieces could not be read.
pub(crate) fn hash_lanes_with_leaves<F: PieceFiles + ?Sized>(
    files: &F,
    pieces: &[usize],
    maps: bool,
    release: bool,
    leaf_bytes: Option<&[u64]>,
    sha1: bool,
) -> (Vec<Result<[u8; 20]>>, Vec<Vec<Hash256>>) {
    let k = pieces.len();
    assert!(k <= MAX_LANES, "{k} lanes");
    let mut cursors: Vec<PieceCursor<'_, F>> = pieces
        .iter()
        .map(|&p| PieceCursor::new(files, p, !sha1))
        .collect();
    let mut leaves: Vec<Leaves> = (0..k)
        .map(|i| Leaves::new(leaf_bytes.map_or(0, |b| b[i])))
        .collect();
    let out = with_scratch_lanes(k, |mut bufs| {
        let mut hs: Vec<Sha1> = (0..k).map(|_| Sha1::new()).collect();
        let mut ends: Vec<Option<Result<()>>> = (0..k).map(|_| None).collect();
        let mut held: Vec<Held> = (0..k).map(|_| Held::default()).collect();
        loop {
            for (((c, buf), end), h) in cursors
                .iter_mut()
                .zip(bufs.iter_mut())
                .zip(ends.iter_mut())
                .zip(held.iter_mut())
            {
                if h.done < h.len {
                    continue;
                }
                // All of the last chunk is hashed: check it, take the
                // next one with bytes in it (or the lane's end).
                loop {
                    c.settle(end, h.faulted);
                    *h = c.pull(end, buf, maps);
                    if h.len > 0 || end.is_some() {
                        break;
                    }
                }
            }
            let Some(step) = held
                .iter()
                .filter(|h| h.len > 0)
                .map(|h| h.len - h.done)
                .min()
            else {
                break; // every lane has ended
            };
            // Without SHA-1 nothing needs the lanes in step: each takes its
            // whole chunk, so leaves are split only where chunks end (in
            // step, one lane's short chunk would split the others' leaves).
            let step = if sha1 { step } else { usize::MAX };
            let mut data: [&[u8]; MAX_LANES] = [&[]; MAX_LANES];
            let mut ranges: [Range<'_>; MAX_LANES] = [Range::default(); MAX_LANES];
            for (i, h) in held.iter().enumerate() {
                let n = step.min(h.len - h.done);
                data[i] = match h.map {
                    // SAFETY: `map..map+len` lay inside the file's map
                    // when the chunk was pulled, and the cursor's
                    // `pending` holds the file (so the map) open until
                    // it settles the chunk. The bytes are read only
                    // inside `sigbus::guarded` below, where a page the
                    // file lost meanwhile reads as zeros and is
                    // reported (`faulted`) instead of raising SIGBUS.
                    Some(p) => {
                        let bytes = unsafe { std::slice::from_raw_parts(p.add(h.done), n) };
                        ranges[i] = Range {
                            bytes,
                            poison: cursors[i].pending.as_ref().map(|p| p.file.zeroed_mark()),
                        };
                        bytes
                    }
                    None if h.zeros => &ZEROS[h.done..h.done + n],
                    None => &bufs[i][h.done..h.done + n],
                };
            }
            let mut refs: Vec<&mut Sha1> = hs.iter_mut().collect();
            let mut hash = || {
                if sha1 {
                    sha::update_lanes(&mut refs, &data[..k]);
                }
                // SHA-1 only (the engine's piece checks): no leaves to feed
                if leaf_bytes.is_none() {
                    return;
                }
                // every lane's leaves completed this round (a carried one
                // first, then those whole in its bytes) hashed together,
                // sixteen at a time where the CPU allows
                let fed: Vec<(Option<Vec<u8>>, &[u8])> = leaves
                    .iter_mut()
                    .zip(data)
                    .map(|(l, d)| l.feed(d))
                    .collect();
                let all: Vec<&[u8]> = fed
                    .iter()
                    .flat_map(|(c, w)| c.as_deref().into_iter().chain(w.chunks_exact(BLOCK)))
                    .collect();
                let mut hashes = Vec::with_capacity(all.len());
                crate::sha256::leaf_hashes_of(&all, &mut hashes);
                let mut hashes = hashes.into_iter();
                for (l, (c, w)) in leaves.iter_mut().zip(&fed) {
                    let n = usize::from(c.is_some()) + w.len() / BLOCK;
                    l.out.extend(hashes.by_ref().take(n));
                }
            };
            let faulted = if held.iter().any(|h| h.map.is_some()) {
                sigbus::guarded(ranges, hash).1
            } else {
                hash();
                [false; MAX_LANES]
            };
            for (h, f) in held.iter_mut().zip(faulted) {
                h.done += step.min(h.len - h.done);
                if f {
                    // The lane fails: settle it (retiring the map) now
                    // rather than hash the rest of its chunk.
                    h.faulted = true;
                    h.done = h.len;
                }
            }
        }
        finish_lanes(hs, ends)
    });
    if release {
        let mut hashed: Vec<(Arc<OpenFile>, u64, u64)> = cursors
            .iter_mut()
            .flat_map(|c| c.hashed.drain(..))
            .collect();
        // Pieces of a group are consecutive: merge each file's ranges, so
        // most groups cost one `madvise` per file.
        hashed.sort_by_key(|(f, start, _)| (Arc::as_ptr(f) as usize, *start));
        let mut runs = hashed.into_iter();
        if let Some(mut run) = runs.next() {
            for next in runs {
                if Arc::ptr_eq(&run.0, &next.0) && next.1 <= run.2 {
                    run.2 = run.2.max(next.2);
                } else {
                    run.0.drop_map_pages(run.1, run.2);
                    run = next;
                }
            }
            run.0.drop_map_pages(run.1, run.2);
        }
    }
    (out, leaves.into_iter().map(Leaves::finish).collect())
}

/// One lane's 16 KiB leaves of its piece's first `want` bytes, fed the
/// chunks in order: whole blocks hashed where they lie (with the other
/// lanes', sixteen or four side by side), a block split between chunks
/// gathered in `carry` first.
struct Leaves {
    want: u64,
    seen: u64,
    carry: Vec<u8>,
    out: Vec<Hash256>,
}

impl Leaves {
    fn new(want: u64) -> Leaves {
        Leaves {
            want,
            seen: 0,
            carry: Vec::new(),
            out: Vec::with_capacity(want.div_ceil(BLOCK_LEN) as usize),
        }
    }

    /// Takes the lane's next bytes: returns the carried block if they
    /// complete it, and the whole blocks after it, for the caller to hash
    /// (with the other lanes') and append to `out` in that order before
    /// the next `feed`; keeps the tail after them.
    fn feed<'d>(&mut self, data: &'d [u8]) -> (Option<Vec<u8>>, &'d [u8]) {
        let left = self.want.saturating_sub(self.seen);
        self.seen += data.len() as u64;
        let take = (data.len() as u64).min(left) as usize;
        let mut d = &data[..take];
        let mut done = None;
        if !self.carry.is_empty() {
            let m = (BLOCK - self.carry.len()).min(d.len());
            self.carry.extend_from_slice(&d[..m]);
            d = &d[m..];
            if self.carry.len() == BLOCK {
                done = Some(std::mem::take(&mut self.carry));
            }
        }
        let whole = d.len() / BLOCK * BLOCK;
        self.carry.extend_from_slice(&d[whole..]);
        (done, &d[..whole])
    }

    fn finish(mut self) -> Vec<Hash256> {
        if !self.carry.is_empty() {
            self.out.push(sha256(&self.carry));
        }
        self.out
    }
}

/// Reads one piece's bytes in order, chunk by chunk, across its files
/// (padding reads as zeros): each chunk straight from the file's read-only
/// map when allowed, else read into a buffer. Each file range is checked
/// once, at its end, for a file deleted or cut while it was read.
struct PieceCursor<'s, F: ?Sized> {
    files: &'s F,
    chunks: SpanChunks,
    /// An out-of-range piece: reported by the first read.
    error: Option<Error>,
    /// The file the last chunk came from, with whether it was read through
    /// its map and whether it ended its range: checked by `settle` once
    /// the chunk's bytes have been hashed (for a mapped chunk that is when
    /// they are actually read).
    pending: Option<Pending>,
    /// The file ranges hashed from maps and settled intact, for
    /// [`hash_lanes`]'s `release`.
    hashed: Vec<(Arc<OpenFile>, u64, u64)>,
}

struct Pending {
    file: Arc<OpenFile>,
    index: usize,
    mapped: bool,
    last: bool,
    /// The file offset of the chunk's first byte.
    start: u64,
    /// The file offset just past the chunk.
    end: u64,
}

/// The chunk a lane of [`hash_lanes`] pulled last: `len` bytes
/// at `map` in a file's map, or of padding (`zeros`: at the start of
/// [`ZEROS`]), or at the start of the lane's buffer; `done`
/// of them hashed so far, `faulted` when a guarded read of them faulted.
#[derive(Default)]
struct Held {
    map: Option<*const u8>,
    zeros: bool,
    len: usize,
    done: usize,
    faulted: bool,
}

impl<'s, F: PieceFiles + ?Sized> PieceCursor<'s, F> {
    /// A cursor over `piece`; without its padding when `skip_padding`
    /// (nothing hashes those zeros: no SHA-1 lanes, and the leaves stop
    /// at the file's end).
    fn new(files: &'s F, piece: usize, skip_padding: bool) -> Self {
        let layout = files.layout();
        let len = layout.piece_len(piece);
        let (spans, error) = match layout.checked_spans(piece, 0, len) {
            Ok(s) => (
                s.filter(|sp| !(skip_padding && layout.files()[sp.file].padding))
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(e)),
        };
        PieceCursor {
            files,
            chunks: SpanChunks::new(spans),
            error,
            pending: None,
            hashed: Vec::new(),
        }
    }

    /// The lane's next chunk (its bytes in a file's map, or at the start
    /// of `buf`), or an empty one once the lane ended (`end` is then set:
    /// `Ok` at its end, `Err` on a read error).
    fn pull(&mut self, end: &mut Option<Result<()>>, buf: &mut [u8], maps: bool) -> Held {
        if end.is_some() {
            return Held::default();
        }
        match self.next(buf, maps) {
            Ok(Some(h)) => h,
            Ok(None) => {
                *end = Some(Ok(()));
                Held::default()
            }
            Err(e) => {
                *end = Some(Err(e));
                Held::default()
            }
        }
    }

    fn next(&mut self, buf: &mut [u8], maps: bool) -> Result<Option<Held>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let Some(span) = self.chunks.peek() else {
            return Ok(None);
        };
        let in_buf = |len| Held {
            len,
            ..Held::default()
        };
        if self.files.layout().files()[span.file].padding {
            // hashed from `ZEROS`: nothing to read, nothing to clear
            let c = self.chunks.next(ZEROS.len()).ok_or(Error::TooLarge)?;
            return Ok(Some(Held {
                zeros: true,
                ..in_buf(c.len)
            }));
        }
        let file = self.files.open_file(span.file)?;
        if maps {
            let end = span.file_offset.checked_add(span.len);
            let map = file
                .hash_map()
                .filter(|m| end.is_some_and(|e| e <= m.len() as u64));
            if let Some(m) = map {
                // The rest of the span, in one piece: `at..at+len` lies
                // inside the map (checked above against the whole span),
                // and `pending` keeps the map open until the chunk settles.
                let c = self.chunks.next(usize::MAX).ok_or(Error::TooLarge)?;
                let at =
                    usize::try_from(span.file_offset + c.offset).map_err(|_| Error::TooLarge)?;
                self.pending = Some(Pending {
                    file: Arc::clone(&file),
                    index: span.file,
                    mapped: true,
                    last: c.last,
                    start: span.file_offset + c.offset,
                    end: span.file_offset + c.offset + c.len as u64,
                });
                return Ok(Some(Held {
                    map: Some(m.as_ptr().wrapping_add(at)),
                    ..in_buf(c.len)
                }));
            }
        }
        let c = self.chunks.next(buf.len()).ok_or(Error::TooLarge)?;
        let at = c.span.file_offset + c.offset;
        if let Err(e) = file.read_chunk(at, &mut buf[..c.len]) {
            self.forget_if_missing(&e, span.file);
            return Err(e);
        }
        self.pending = Some(Pending {
            file,
            index: span.file,
            mapped: false,
            last: c.last,
            start: at,
            end: at + c.len as u64,
        });
        Ok(Some(in_buf(c.len)))
    }

    /// After the last chunk's bytes were hashed: a mapped chunk fails the
    /// lane if a read of it faulted, or if any reader of the same map had a
    /// page at or before the chunk's end replaced by zeros (the file's zero
    /// mark: this lane may have hashed that page without faulting itself),
    /// or if the file is now shorter than the chunk's end; a map with a
    /// zero page is retired.
    /// A read range that ended is checked for a file deleted or cut while
    /// it was read.
    fn settle(&mut self, end: &mut Option<Result<()>>, faulted: bool) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if end.is_some() {
            return;
        }
        let r = if p.mapped && (faulted || p.file.zeroed_before(p.end)) {
            self.files.forget_file(p.index);
            Err(p.file.map_fault_error())
        } else if p.mapped {
            p.file.check_len(p.end)
        } else if p.last {
            p.file.check_len(0)
        } else {
            Ok(())
        };
        match r {
            Err(e) => {
                self.forget_if_missing(&e, p.index);
                *end = Some(Err(e));
            }
            Ok(()) if p.mapped => self.hashed.push((p.file, p.start, p.end)),
            Ok(()) => {}
        }
    }

    fn forget_if_missing(&self, e: &Error, file: usize) {
        if e.is_missing_data() {
            self.files.forget_file(file);
        }
    }
}
