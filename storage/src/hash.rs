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

use crate::error::{Error, Result};
use crate::file::CHUNK;
use crate::layout::{FileSpec, Layout};

/// Zero bytes for hashing padding files.
pub(crate) static ZEROS: [u8; 16384] = [0; 16384];

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's [`CHUNK`]-byte scratch buffer (allocated once
/// per thread, so verification memory is bounded by the thread count).
pub(crate) fn with_scratch<T>(f: impl FnOnce(&mut [u8]) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < CHUNK {
                buf.resize(CHUNK, 0);
            }
            f(&mut buf)
        }
        // Re-entered on this thread (not done by this crate): use a fresh buffer.
        Err(_) => f(&mut vec![0; CHUNK]),
    })
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
/// streaming through one 64 KiB buffer per worker, with
/// `progress(done, total)` after each piece.
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
    pool.install(|| {
        (0..count)
            .into_par_iter()
            // Each rayon job walks a run of consecutive pieces: keep the
            // last file open across them, so a file spanning many pieces is
            // opened once per job rather than once per piece.
            .map_init(
                || None,
                |last, piece| {
                    let r = hash_file_piece(files, &layout, piece, last);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, count);
                    r
                },
            )
            .collect()
    })
}

fn hash_file_piece(
    files: &[(PathBuf, u64)],
    layout: &Layout,
    piece: usize,
    last: &mut Option<(usize, File)>,
) -> Result<[u8; 20]> {
    let mut h = Sha1::new();
    with_scratch(|scratch| {
        for span in layout.spans(piece, 0, layout.piece_len(piece)) {
            let (path, expected) = &files[span.file];
            let file = match last.take() {
                Some((i, f)) if i == span.file => f,
                _ => File::open(path).map_err(|e| Error::from_io(path, e))?,
            };
            let file = &last.insert((span.file, file)).1;
            let mut pos = span.file_offset;
            let end = span.file_offset + span.len;
            while pos < end {
                let n = ((end - pos) as usize).min(scratch.len());
                match file.read_exact_at(&mut scratch[..n], pos) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        let actual = file.metadata().map(|m| m.len()).unwrap_or(0);
                        return Err(Error::FileTooShort {
                            path: path.clone(),
                            expected: *expected,
                            actual,
                        });
                    }
                    Err(e) => return Err(Error::from_io(path, e)),
                }
                h.update(&scratch[..n]);
                pos += n as u64;
            }
        }
        Ok(())
    })?;
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
