//! Piece <-> file geometry: which byte ranges of which files hold a piece.
//!
//! The torrent is one flat byte space made of its files in order (mainline's
//! `Storage._intervals`). A piece is a fixed-size window of that space (the
//! last one shorter); a [`Span`] is the part of one window that falls in one
//! file.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::merkle::{piece_layer_height, Hash256};

/// One file of the torrent, as the metainfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Path relative to the storage root. Checked again by [`Layout::new`]:
    /// it must be relative, non-empty and made of plain names only.
    pub path: PathBuf,
    /// Length in bytes (may be zero).
    pub length: u64,
    /// A BEP 47 padding file: part of the piece space (all zero bytes) but
    /// never created, read or written on disk.
    pub padding: bool,
}

/// The part of a piece (or block) that lies inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index into [`Layout::files`].
    pub file: usize,
    /// Byte offset inside the file.
    pub file_offset: u64,
    /// Length in bytes (never zero).
    pub len: u64,
    /// Byte offset of this span inside the piece.
    pub piece_offset: u64,
}

#[derive(Debug, Clone)]
struct Inner {
    files: Vec<FileSpec>,
    /// `starts[i]` = offset of file `i` in the flat torrent byte space.
    starts: Vec<u64>,
    total: u64,
    piece_length: u64,
    /// SHA-1 per piece; empty for a v2-only layout.
    hashes: Vec<[u8; 20]>,
    piece_count: usize,
    /// v2 (BEP 52) expectation per piece; empty without v2 hashes.
    v2: Vec<V2Piece>,
}

/// What one piece of a v2 or hybrid layout must hash to: the merkle node
/// over its bytes in the one file it lies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V2Piece {
    /// The file holding the piece's data (the rest of the piece, if any,
    /// is padding or past the end of the torrent).
    pub file: usize,
    /// Its piece-layer hash, or the file's root for a file of one piece.
    pub hash: Hash256,
}

/// The geometry of a torrent: files, piece length and piece hashes:
/// SHA-1 per piece ([`Layout::new`]), SHA-256 merkle hashes per file
/// ([`Layout::new_v2`], BEP 52), or both for a hybrid torrent
/// ([`Layout::with_v2`]).
///
/// Cheap to clone (shared behind an `Arc`), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Layout {
    inner: Arc<Inner>,
}

/// Checks that `path` is a safe relative path: non-empty, plain names only
/// (no root, no `.`/`..`, no prefix), no NUL bytes.
pub(crate) fn check_relative(path: &Path) -> Result<()> {
    let escapes = || Error::PathEscapes {
        path: path.to_path_buf(),
    };
    let mut any = false;
    for c in path.components() {
        match c {
            Component::Normal(name) => {
                if name.as_encoded_bytes().contains(&0) {
                    return Err(escapes());
                }
                any = true;
            }
            _ => return Err(escapes()),
        }
    }
    if any {
        Ok(())
    } else {
        Err(escapes())
    }
}

impl Layout {
    /// Builds a layout, checking it.
    ///
    /// # Errors
    /// [`Error::ZeroPieceLength`]; [`Error::TooLarge`] when lengths overflow;
    /// [`Error::PieceCountMismatch`] unless `piece_hashes.len()` equals
    /// `ceil(total / piece_length)`; [`Error::PathEscapes`] for a non-padding
    /// file whose path is absolute, empty or contains `..`/`.`;
    /// [`Error::DuplicatePath`] for two files with the same path.
    pub fn new(
        files: Vec<FileSpec>,
        piece_length: u64,
        piece_hashes: Vec<[u8; 20]>,
    ) -> Result<Layout> {
        if piece_length == 0 {
            return Err(Error::ZeroPieceLength);
        }
        let mut starts = Vec::with_capacity(files.len());
        let mut total: u64 = 0;
        let mut seen = HashSet::new();
        for f in &files {
            starts.push(total);
            total = total.checked_add(f.length).ok_or(Error::TooLarge)?;
            if !f.padding {
                check_relative(&f.path)?;
                if !seen.insert(f.path.as_path()) {
                    return Err(Error::DuplicatePath {
                        path: f.path.clone(),
                    });
                }
            }
        }
        let expected =
            usize::try_from(total.div_ceil(piece_length)).map_err(|_| Error::TooLarge)?;
        if piece_hashes.len() != expected {
            return Err(Error::PieceCountMismatch {
                expected,
                actual: piece_hashes.len(),
            });
        }
        Ok(Layout {
            inner: Arc::new(Inner {
                files,
                starts,
                total,
                piece_length,
                hashes: piece_hashes,
                piece_count: expected,
                v2: Vec::new(),
            }),
        })
    }

    /// A v2-only (BEP 52) layout: no SHA-1 hashes, and for each of `files`
    /// its expected merkle hashes: its piece layer, or for a file of at
    /// most one piece its root alone, nothing for padding and empty files.
    /// Every piece must lie in exactly one non-padding file (files start
    /// on piece boundaries, as v2 lays them out).
    /// [`Storage::verify_pieces`](crate::Storage::verify_pieces) and
    /// [`check_pieces`](crate::Storage::check_pieces) check such a layout's
    /// pieces against the merkle hashes.
    ///
    /// # Errors
    /// As [`Layout::new`]; [`Error::InvalidV2PieceLength`];
    /// [`Error::LengthMismatch`] unless `file_hashes` holds one list per
    /// file with one hash per piece of it; [`Error::NotPieceAligned`].
    pub fn new_v2(
        files: Vec<FileSpec>,
        piece_length: u64,
        file_hashes: &[Vec<Hash256>],
    ) -> Result<Layout> {
        let total = files
            .iter()
            .try_fold(0u64, |t, f| t.checked_add(f.length))
            .ok_or(Error::TooLarge)?;
        let count =
            usize::try_from(total.div_ceil(piece_length.max(1))).map_err(|_| Error::TooLarge)?;
        let v1 = Layout::new(files, piece_length, vec![[0; 20]; count])?;
        let mut inner = Arc::unwrap_or_clone(v1.inner);
        inner.hashes = Vec::new();
        Layout {
            inner: Arc::new(inner),
        }
        .with_v2(file_hashes)
    }

    /// This layout with v2 merkle hashes added (a hybrid torrent, whose
    /// SHA-1 pieces stay): see [`Layout::new_v2`] for `file_hashes`.
    ///
    /// # Errors
    /// As [`Layout::new_v2`].
    pub fn with_v2(self, file_hashes: &[Vec<Hash256>]) -> Result<Layout> {
        let inner = &self.inner;
        piece_layer_height(inner.piece_length)?;
        if file_hashes.len() != inner.files.len() {
            return Err(Error::LengthMismatch {
                expected: inner.files.len(),
                actual: file_hashes.len(),
            });
        }
        let mut v2: Vec<Option<V2Piece>> = vec![None; inner.piece_count];
        for (file, (spec, want)) in inner.files.iter().zip(file_hashes).enumerate() {
            let pieces = if spec.padding {
                0..0
            } else {
                self.file_pieces(file)
            };
            if want.len() != pieces.len() {
                return Err(Error::LengthMismatch {
                    expected: pieces.len(),
                    actual: want.len(),
                });
            }
            if !pieces.is_empty() && !inner.starts[file].is_multiple_of(inner.piece_length) {
                return Err(Error::NotPieceAligned {
                    piece: pieces.start,
                });
            }
            for (piece, hash) in pieces.zip(want) {
                if v2[piece].is_some() {
                    return Err(Error::NotPieceAligned { piece });
                }
                v2[piece] = Some(V2Piece { file, hash: *hash });
            }
        }
        let v2 = v2
            .into_iter()
            .enumerate()
            .map(|(piece, p)| p.ok_or(Error::NotPieceAligned { piece }))
            .collect::<Result<Vec<_>>>()?;
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.v2 = v2;
        Ok(Layout {
            inner: Arc::new(inner),
        })
    }

    /// True when the layout has SHA-1 piece hashes (v1 and hybrid).
    pub fn has_v1(&self) -> bool {
        !self.inner.hashes.is_empty() || self.inner.piece_count == 0
    }

    /// True when the layout has v2 merkle hashes (v2-only and hybrid).
    pub fn has_v2(&self) -> bool {
        !self.inner.v2.is_empty()
    }

    /// The v2 hash piece `piece` must have (see [`Layout::new_v2`]);
    /// `None` without v2 hashes or out of range.
    pub fn piece_hash_v2(&self, piece: usize) -> Option<Hash256> {
        self.inner.v2.get(piece).map(|p| p.hash)
    }

    /// The file and expected hash of v2 piece `piece`.
    pub(crate) fn v2_piece(&self, piece: usize) -> Option<V2Piece> {
        self.inner.v2.get(piece).copied()
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> usize {
        self.inner.piece_count
    }

    /// Nominal piece length (every piece but the last).
    pub fn piece_length(&self) -> u64 {
        self.inner.piece_length
    }

    /// Length of piece `piece`: the nominal length, shorter for the last
    /// piece, 0 for an index out of range.
    pub fn piece_len(&self, piece: usize) -> u64 {
        if piece >= self.piece_count() {
            return 0;
        }
        let start = piece as u64 * self.inner.piece_length;
        (self.inner.total - start).min(self.inner.piece_length)
    }

    /// Total length of all files (padding included).
    pub fn total_length(&self) -> u64 {
        self.inner.total
    }

    /// The files, in torrent order.
    pub fn files(&self) -> &[FileSpec] {
        &self.inner.files
    }

    /// Offset of file `file` in the flat torrent byte space.
    ///
    /// # Panics
    /// If `file` is out of range.
    pub fn file_start(&self, file: usize) -> u64 {
        self.inner.starts[file]
    }

    /// The expected SHA-1 of piece `piece`; all zeros for a v2-only
    /// layout, which has none (see [`Layout::has_v1`]).
    ///
    /// # Panics
    /// If `piece >= piece_count()`.
    pub fn piece_hash(&self, piece: usize) -> [u8; 20] {
        assert!(piece < self.piece_count(), "piece {piece} out of range");
        self.inner.hashes.get(piece).copied().unwrap_or([0; 20])
    }

    /// True when `(piece, offset, len)` lies inside the torrent.
    pub fn in_range(&self, piece: usize, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| piece < self.piece_count() && end <= self.piece_len(piece))
    }

    /// The spans holding bytes `offset..offset + len` of piece `piece`, in
    /// order, skipping zero-length files.
    ///
    /// Out-of-range input (bad piece index, or a range past the end of the
    /// piece) yields an **empty** iterator; use [`Layout::checked_spans`] to
    /// get an error instead. A zero `len` also yields nothing.
    pub fn spans(&self, piece: usize, offset: u64, len: u64) -> Spans<'_> {
        if !self.in_range(piece, offset, len) || len == 0 {
            return Spans {
                layout: self,
                file: 0,
                pos: 0,
                end: 0,
                piece_start: 0,
            };
        }
        let piece_start = piece as u64 * self.inner.piece_length;
        let pos = piece_start + offset;
        // Last file starting at or before `pos`; zero-length files sharing a
        // start with the next file are skipped by the iterator.
        let file = self
            .inner
            .starts
            .partition_point(|&s| s <= pos)
            .saturating_sub(1);
        Spans {
            layout: self,
            file,
            pos,
            end: pos + len,
            piece_start,
        }
    }

    /// Like [`Layout::spans`], but out-of-range input is an error.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] when the range is not inside the piece.
    pub fn checked_spans(&self, piece: usize, offset: u64, len: u64) -> Result<Spans<'_>> {
        if self.in_range(piece, offset, len) {
            Ok(self.spans(piece, offset, len))
        } else {
            Err(Error::OutOfRange { piece, offset, len })
        }
    }

    /// The pieces that hold at least one byte of file `file` (for file
    /// selection and per-file progress). Empty for a zero-length file or an
    /// index out of range.
    pub fn file_pieces(&self, file: usize) -> Range<usize> {
        let Some(spec) = self.inner.files.get(file) else {
            return 0..0;
        };
        let start = self.inner.starts[file];
        let pl = self.inner.piece_length;
        let first = (start / pl) as usize;
        if spec.length == 0 {
            let p = first.min(self.piece_count());
            return p..p;
        }
        first..((start + spec.length - 1) / pl) as usize + 1
    }
}

/// Iterator over the [`Span`]s of a piece range; see [`Layout::spans`].
#[derive(Debug, Clone)]
pub struct Spans<'a> {
    layout: &'a Layout,
    file: usize,
    pos: u64,
    end: u64,
    piece_start: u64,
}

impl Iterator for Spans<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        let inner = &self.layout.inner;
        while self.pos < self.end {
            let file = self.file;
            let start = *inner.starts.get(file)?;
            let file_end = start + inner.files[file].length;
            if file_end <= self.pos {
                self.file += 1;
                continue;
            }
            let stop = file_end.min(self.end);
            let span = Span {
                file,
                file_offset: self.pos - start,
                len: stop - self.pos,
                piece_offset: self.pos - self.piece_start,
            };
            self.pos = stop;
            return Some(span);
        }
        None
    }
}

/// Walks a list of spans in chunks of at most a given size, for readers
/// that stream a piece through a fixed buffer.
#[derive(Debug)]
pub(crate) struct SpanChunks {
    spans: Vec<Span>,
    /// Current span and bytes of it already handed out.
    idx: usize,
    pos: u64,
}

/// One chunk of a span: `len` bytes at `offset` into `span`; `last` when it
/// ends the span.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpanChunk {
    pub span: Span,
    pub offset: u64,
    pub len: usize,
    pub last: bool,
}

impl SpanChunks {
    pub(crate) fn new(spans: Vec<Span>) -> Self {
        SpanChunks {
            spans,
            idx: 0,
            pos: 0,
        }
    }

    /// The span the next chunk comes from; `None` at the end.
    pub(crate) fn peek(&self) -> Option<Span> {
        self.spans.get(self.idx).copied()
    }

    /// The next chunk of at most `max` bytes (`max` > 0); `None` at the end.
    pub(crate) fn next(&mut self, max: usize) -> Option<SpanChunk> {
        let span = *self.spans.get(self.idx)?;
        let offset = self.pos;
        let len = (span.len - offset).min(max as u64);
        self.pos += len;
        let last = self.pos == span.len;
        if last {
            self.idx += 1;
            self.pos = 0;
        }
        Some(SpanChunk {
            span,
            offset,
            len: len as usize,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(path: &str, length: u64) -> FileSpec {
        FileSpec {
            path: PathBuf::from(path),
            length,
            padding: false,
        }
    }

    fn layout(lengths: &[u64], pl: u64) -> Layout {
        let files: Vec<_> = lengths
            .iter()
            .enumerate()
            .map(|(i, &l)| spec(&format!("f{i}"), l))
            .collect();
        let total: u64 = lengths.iter().sum();
        let n = total.div_ceil(pl) as usize;
        Layout::new(files, pl, vec![[0; 20]; n]).unwrap()
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            Layout::new(vec![spec("a", 10)], 0, vec![]),
            Err(Error::ZeroPieceLength)
        ));
        assert!(matches!(
            Layout::new(vec![spec("a", 10)], 4, vec![[0; 20]; 2]),
            Err(Error::PieceCountMismatch {
                expected: 3,
                actual: 2
            })
        ));
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "./a", "a/../b"] {
            let r = Layout::new(vec![spec(bad, 1)], 4, vec![[0; 20]]);
            assert!(matches!(r, Err(Error::PathEscapes { .. })), "{bad}: {r:?}");
        }
        assert!(matches!(
            Layout::new(vec![spec("a", 1), spec("a", 1)], 4, vec![[0; 20]]),
            Err(Error::DuplicatePath { .. })
        ));
        assert!(matches!(
            Layout::new(vec![spec("a", u64::MAX), spec("b", 1)], 4, vec![]),
            Err(Error::TooLarge)
        ));
        // A padding file's path is never used, so it is not checked.
        let pad = FileSpec {
            path: PathBuf::from("/.pad/1"),
            length: 3,
            padding: true,
        };
        assert!(Layout::new(vec![spec("a", 1), pad], 4, vec![[0; 20]]).is_ok());
    }

    #[test]
    fn spans_cross_files_and_skip_empty() {
        let l = layout(&[3, 0, 5, 0, 0, 2], 4);
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.piece_len(2), 2);
        assert_eq!(l.piece_len(3), 0);
        let p0: Vec<_> = l.spans(0, 0, 4).collect();
        assert_eq!(
            p0,
            vec![
                Span {
                    file: 0,
                    file_offset: 0,
                    len: 3,
                    piece_offset: 0
                },
                Span {
                    file: 2,
                    file_offset: 0,
                    len: 1,
                    piece_offset: 3
                },
            ]
        );
        let p1: Vec<_> = l.spans(1, 1, 3).collect();
        assert_eq!(
            p1,
            vec![Span {
                file: 2,
                file_offset: 2,
                len: 3,
                piece_offset: 1
            }]
        );
        let p2: Vec<_> = l.spans(2, 0, 2).collect();
        assert_eq!(
            p2,
            vec![Span {
                file: 5,
                file_offset: 0,
                len: 2,
                piece_offset: 0
            }]
        );
        assert_eq!(l.spans(2, 0, 3).count(), 0);
        assert_eq!(l.spans(3, 0, 1).count(), 0);
        assert!(matches!(
            l.checked_spans(2, 1, 2),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            l.checked_spans(0, u64::MAX, 2),
            Err(Error::OutOfRange { .. })
        ));
        assert_eq!(l.file_pieces(0), 0..1);
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(2), 0..2);
        assert_eq!(l.file_pieces(4), 2..2);
        assert_eq!(l.file_pieces(5), 2..3);
        assert_eq!(l.file_pieces(6), 0..0);
    }

    #[test]
    fn one_file_many_pieces_and_many_files_one_piece() {
        let l = layout(&[1 << 30], 1 << 14);
        assert_eq!(l.piece_count(), 65536);
        let s: Vec<_> = l.spans(40000, 100, 200).collect();
        assert_eq!(
            s,
            vec![Span {
                file: 0,
                file_offset: 40000 * 16384 + 100,
                len: 200,
                piece_offset: 100
            }]
        );
        let lens = vec![7u64; 3000];
        let l = layout(&lens, 1 << 16);
        assert_eq!(l.piece_count(), 1);
        let s: Vec<_> = l.spans(0, 0, 21000).collect();
        assert_eq!(s.len(), 3000);
        assert!(s.iter().all(|s| s.len == 7 && s.file_offset == 0));
    }

    proptest! {
        #[test]
        fn span_invariants(
            lengths in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..50, 50u64..5000], 1..40),
            pl in 1u64..3000,
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            prop_assume!(lengths.iter().sum::<u64>() > 0);
            let l = layout(&lengths, pl);
            let total: u64 = lengths.iter().sum();
            prop_assert_eq!(l.piece_count() as u64, total.div_ceil(pl));
            let mut covered = 0u64;
            for piece in 0..l.piece_count() {
                let plen = l.piece_len(piece);
                covered += plen;
                let spans: Vec<_> = l.spans(piece, 0, plen).collect();
                let mut expect_off = 0;
                let mut prev_file = None;
                for s in &spans {
                    prop_assert!(s.len > 0);
                    prop_assert_eq!(s.piece_offset, expect_off);
                    prop_assert!(s.file_offset + s.len <= lengths[s.file]);
                    // Global position agrees with the file start.
                    prop_assert_eq!(
                        l.file_start(s.file) + s.file_offset,
                        piece as u64 * pl + s.piece_offset
                    );
                    if let Some(p) = prev_file {
                        prop_assert!(s.file > p);
                        // Contiguous: the previous span ended its file.
                        prop_assert_eq!(s.file_offset, 0);
                    }
                    prop_assert!(l.file_pieces(s.file).contains(&piece));
                    prev_file = Some(s.file);
                    expect_off += s.len;
                }
                prop_assert_eq!(expect_off, plen);
                // A block inside the piece: same bytes as the piece spans restricted.
                let off = a % plen;
                let len = b % (plen - off) + 1;
                let block: Vec<_> = l.spans(piece, off, len).collect();
                prop_assert_eq!(block.iter().map(|s| s.len).sum::<u64>(), len);
                prop_assert_eq!(block[0].piece_offset, off);
                for w in block.windows(2) {
                    prop_assert_eq!(w[0].piece_offset + w[0].len, w[1].piece_offset);
                }
                prop_assert_eq!(l.spans(piece, off, plen - off + 1).count(), 0);
            }
            prop_assert_eq!(covered, total);
        }
    }
}
