//! Uploading blocks with one copy: a block is located in its files and
//! checked present, then `writev` hands the kernel the block's pages
//! through a read-only memory map, so the bytes go from the page cache
//! into the socket without a `pread` into a buffer first.
//!
//! Measured against `pread` + `writev` and against `sendfile(2)`: see
//! `send_vectored`.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;

use crate::buf::AlignedBuf;
use crate::error::{Error, Result};
use crate::file::OpenFile;
use crate::path::Access;
use crate::storage::Storage;

/// One contiguous piece of a block: bytes of one file, or padding zeros.
#[derive(Debug)]
enum Part {
    File {
        file: Arc<OpenFile>,
        offset: u64,
        len: u64,
    },
    Zeros(u64),
}

/// A block of a piece, resolved to open files whose lengths were checked,
/// ready to be written to a socket with [`send_vectored`].
///
/// Made by [`Storage::block_source`]. Splitting "locate and check" from
/// "send" lets a caller write a message header only once it knows the data
/// is there: a missing or short file is an error before any byte goes out.
#[derive(Debug)]
pub struct BlockSource {
    parts: Vec<Part>,
    len: u64,
}

/// Why [`send_vectored`] stopped. In both cases part of the block
/// may already have been written, so the stream is no longer at a message
/// boundary and should be closed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The data ran out or could not be read: a file shrank or was removed
    /// after [`Storage::block_source`] checked it, or a read failed
    /// ([`Error::is_missing_data`] tells the first case).
    #[error("reading block data failed")]
    Source(#[source] Error),
    /// Writing to the sink failed (closed, reset, or its write timeout).
    #[error("writing block data failed")]
    Sink(#[source] io::Error),
}

impl Storage {
    /// Locates `len` bytes at `offset` inside piece `piece` for a zero-copy
    /// send with [`send_vectored`]: opens each file the block spans and
    /// checks (one `fstat` each) that it is still there and long enough.
    ///
    /// # Errors
    /// As [`Storage::read_block`]: [`Error::OutOfRange`],
    /// [`Error::FileMissing`], [`Error::FileTooShort`], [`Error::PathEscapes`],
    /// [`Error::Io`]. Nothing has been sent when this fails.
    pub fn block_source(&self, piece: usize, offset: u64, len: u64) -> Result<BlockSource> {
        self.source_checked(piece, offset, len, &mut Vec::new())
    }

    /// [`block_source`](Self::block_source) for each `(piece, offset,
    /// len)` of an upload batch: each file is checked with one `fstat` for
    /// the whole batch rather than one per block. The check still comes
    /// before any of the batch's headers is written, which is what it is
    /// for; a block the size seen does not cover gets a fresh check and
    /// its own error.
    pub fn block_sources(&self, blocks: &[(usize, u64, u64)]) -> Vec<Result<BlockSource>> {
        let mut seen = Vec::new();
        blocks
            .iter()
            .map(|&(piece, offset, len)| self.source_checked(piece, offset, len, &mut seen))
            .collect()
    }

    /// One block's source, reusing the file sizes in `seen` (file index,
    /// handle, length when it was there and linked).
    fn source_checked(
        &self,
        piece: usize,
        offset: u64,
        len: u64,
        seen: &mut Vec<(usize, Arc<OpenFile>, Option<u64>)>,
    ) -> Result<BlockSource> {
        let mut parts = Vec::with_capacity(1);
        for span in self.layout().checked_spans(piece, offset, len)? {
            if self.layout().files()[span.file].padding {
                parts.push(Part::Zeros(span.len));
                continue;
            }
            let end = span.file_offset + span.len;
            let known = match seen.iter().find(|(i, _, _)| *i == span.file) {
                Some((_, f, size)) => Some((Arc::clone(f), *size)),
                None => {
                    let f = self.handle(span.file, Access::Read)?;
                    let size = f.live_len();
                    seen.push((span.file, Arc::clone(&f), size));
                    Some((f, size))
                }
            };
            let file = match known {
                Some((f, Some(size))) if size >= end => f,
                // Gone, short or unreadable: a fresh check gives the error.
                _ => self.open_checked(span.file, end)?,
            };
            parts.push(Part::File {
                file,
                offset: span.file_offset,
                len: span.len,
            });
        }
        Ok(BlockSource { parts, len })
    }

    /// File `file`'s handle after checking it holds at least `end` bytes; a
    /// handle found stale is dropped from the pool as in `with_file`.
    fn open_checked(&self, file: usize, end: u64) -> Result<Arc<OpenFile>> {
        let f = self.handle(file, Access::Read)?;
        if let Err(e) = f.check_len(end) {
            if e.is_missing_data() {
                self.pool_forget(file);
            }
            return Err(e);
        }
        Ok(f)
    }
}

impl BlockSource {
    /// Length of the block in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One part of what [`send_vectored`] writes.
#[derive(Debug, Clone, Copy)]
pub enum Chunk<'a> {
    /// Bytes of the caller's (message headers, small messages).
    Bytes(&'a [u8]),
    /// A block of torrent data.
    Block(&'a BlockSource),
}

/// Zeros for padding files, written from here.
static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

/// One iovec of the write and, for file data, the file it maps.
struct Seg<'a> {
    ptr: *const u8,
    len: usize,
    file: Option<&'a OpenFile>,
}

/// Writes `chunks` in order to `out` (a blocking socket, pipe or file) with
/// as few `writev` calls as the kernel allows.
///
/// Block bytes are passed to `writev` as addresses in the files' read-only
/// maps (made on first use for files of 256 KiB or more), so the kernel copies them once, from
/// the page cache into the socket; they are never read in user space. Data
/// of files too small to map is `pread` into a buffer first, and padding
/// comes from a static zero buffer.
///
/// Why not `sendfile(2)`: measured on loopback (Linux 6.18, 1 GiB, 256 KiB
/// pieces, bittern seeding bittern), `sendfile` + `TCP_CORK` used as much
/// seeder CPU as `pread` + `writev` and cost the *receiver* 25-30% more
/// system time (page-cache pages as 4 KiB skb fragments, one `sendmsg` per
/// block and per header), so transfers were ~15% slower.
///
/// # Errors
/// [`SendError::Source`] when a file shrank after its [`BlockSource`] was
/// made (`writev` reports `EFAULT` for map pages past the new end) or a
/// fallback read fails; [`SendError::Sink`] when writing fails, including
/// a write timeout (`SO_SNDTIMEO`: kind `WouldBlock`). In both cases part
/// of the chunks may have been written.
pub fn send_vectored<W: AsFd>(
    out: &mut W,
    chunks: &[Chunk<'_>],
) -> std::result::Result<(), SendError> {
    // Fallback reads first, so their buffers stay put while we point at them.
    // Page-aligned: the kernel's copy into a destination just past a page
    // boundary is several times slower on some CPUs (see `AlignedBuf`).
    let mut reads: Vec<AlignedBuf> = Vec::new();
    for c in chunks {
        if let Chunk::Block(b) = c {
            for part in &b.parts {
                if let Part::File { file, offset, len } = part {
                    if file.upload_map().is_none() {
                        let mut buf = AlignedBuf::zeroed(*len as usize);
                        file.read_at(*offset, &mut buf).map_err(SendError::Source)?;
                        reads.push(buf);
                    }
                }
            }
        }
    }
    let mut reads = reads.iter();
    let mut segs: Vec<Seg<'_>> = Vec::with_capacity(chunks.len() * 2);
    for c in chunks {
        match c {
            Chunk::Bytes(b) => segs.push(Seg {
                ptr: b.as_ptr(),
                len: b.len(),
                file: None,
            }),
            Chunk::Block(b) => {
                for part in &b.parts {
                    match part {
                        Part::File { file, offset, len } => match file.upload_map() {
                            Some(m) => segs.push(Seg {
                                // In bounds: block_source checked that the
                                // file is at least offset + len long, and
                                // the map covers the expected length, which
                                // the layout's spans never exceed.
                                ptr: m.as_ptr().wrapping_add(*offset as usize),
                                len: *len as usize,
                                file: Some(file),
                            }),
                            None => {
                                let buf = reads.next().ok_or_else(|| {
                                    SendError::Sink(io::Error::other("read buffer missing"))
                                })?;
                                segs.push(Seg {
                                    ptr: buf.as_ptr(),
                                    len: buf.len(),
                                    file: None,
                                });
                            }
                        },
                        Part::Zeros(len) => {
                            let mut left = *len as usize;
                            while left > 0 {
                                let n = left.min(ZEROS.len());
                                segs.push(Seg {
                                    ptr: ZEROS.as_ptr(),
                                    len: n,
                                    file: None,
                                });
                                left -= n;
                            }
                        }
                    }
                }
            }
        }
    }
    write_segs(out.as_fd().as_raw_fd(), &segs)
}

/// `writev` until every byte of `segs` is written.
fn write_segs(fd: i32, segs: &[Seg<'_>]) -> std::result::Result<(), SendError> {
    let mut first = 0; // index of the first unfinished segment
    let mut skip = 0; // bytes of it already written
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(segs.len());
    while first < segs.len() {
        iov.clear();
        for (k, s) in segs[first..].iter().enumerate().take(1024) {
            let off = if k == 0 { skip } else { 0 };
            iov.push(libc::iovec {
                iov_base: s.ptr.wrapping_add(off) as *mut libc::c_void,
                iov_len: s.len - off,
            });
        }
        // SAFETY: every iovec points into memory that outlives this call:
        // caller slices, our read buffers, the static zeros, or a map kept
        // alive by the `Arc<OpenFile>` in the borrowed `BlockSource`. Map
        // pages are only read by the kernel, which reports a page past the
        // end of a truncated file as EFAULT instead of a signal.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EFAULT) => {
                    // The unwritten rest includes a mapped page that is no
                    // longer backed: the first mapped file from here on
                    // (the kernel may fail the call before the bytes
                    // ahead of that page) tells how short it is now.
                    let file = segs[first..].iter().find_map(|s| s.file);
                    return Err(SendError::Source(match file {
                        Some(f) => f.short_read(),
                        None => Error::Io {
                            path: Default::default(),
                            source: e,
                        },
                    }));
                }
                _ => return Err(SendError::Sink(e)),
            }
        }
        if n == 0 {
            return Err(SendError::Sink(io::ErrorKind::WriteZero.into()));
        }
        let mut n = n as usize;
        while n > 0 && first < segs.len() {
            let left = segs[first].len - skip;
            if n >= left {
                n -= left;
                first += 1;
                skip = 0;
            } else {
                skip += n;
                n = 0;
            }
        }
        // Skip empty segments so a finished write ends the loop.
        while first < segs.len() && segs[first].len == skip {
            first += 1;
            skip = 0;
        }
    }
    Ok(())
}
