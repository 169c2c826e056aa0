//! One open data file: its descriptor, an optional memory map, and
//! positioned IO that never turns a short file into `SIGBUS`.
//!
//! # Memory-map safety
//! Touching a mapped page past the end of the file raises `SIGBUS`, and so
//! does a page whose disk block cannot be allocated on writeback. So:
//! - a file opened for writing is first *reserved* with `fallocate` (blocks
//!   allocated, length set); a full disk is then a typed
//!   [`Error::DiskFull`] at reservation time. Where `fallocate` is not
//!   supported the length is set with `set_len` and writes to that file go
//!   through `pwrite` instead of the map, so `ENOSPC` stays an error;
//! - a read-only file is mapped only if it is at least as long as the
//!   layout says;
//! - before **every** access through a map the file length is re-checked
//!   with `fstat`, so a file truncated by someone else while we seed gives
//!   [`Error::FileTooShort`], not a crash;
//! - the same `fstat` (also done after each positioned read, and after each
//!   flush) sees a file deleted while open (`st_nlink == 0`) and reports
//!   [`Error::FileMissing`] instead of serving or "syncing" the orphaned
//!   inode; the storage then drops the handle so the path is reopened. A
//!   file *replaced* by rename keeps being read from the old inode until the
//!   pool evicts it (detecting that would need a path `stat` per access).
//!
//! Remaining race for [`Backend::Mmap`] (documented, not closed): a
//! truncation that lands between that `fstat` and the copy can still raise
//! `SIGBUS`. The window is one block copy. (Hashing never reads the
//! writable map: it reads with `pread` or the guarded read-only map.)
//! Copy-on-write filesystems (btrfs, zfs) may also fail writeback despite
//! `fallocate`. Use [`Backend::PositionedIo`] where other processes may
//! truncate the files.
//!
//! [`Backend::PositionedIo`] reads and writes with `pread`/`pwrite`, and
//! uses maps only read-only: uploads hand map addresses to `writev` (the
//! kernel reads them: a cut file is `EFAULT`, never `SIGBUS`), and hashing
//! with [`HashSource::Map`](crate::HashSource::Map) reads them in user
//! space under the guard of `sigbus.rs` (a cut file is
//! [`Error::FileTooShort`]; the handler raises the file's poison flag,
//! every reader of the map checks it, and the map is retired). An upload whose `writev` is under way at the
//! instant a hash faults may send that one page as zeros instead of failing
//! with `EFAULT`; the file was cut, so the piece is lost either way, and
//! the receiving peer's hash check rejects it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::path::{Access, DirCache};
use crate::storage::Backend;

/// Size of the scratch buffer used to hash through positioned reads: small
/// enough to stay in L2 between the read and the hash.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Files shorter than this are never mapped, whatever the backend: for a
/// file of a few pages the `mmap`, the fault and the `munmap` (a TLB
/// shootdown on every core running the process) cost more than copying the
/// bytes with `pread`. (Tests map every non-empty file, to exercise maps
/// on small layouts.)
pub(crate) const MIN_MAP_LEN: u64 = if cfg!(test) { 1 } else { 256 * 1024 };

/// Allocates `0..len` of `file`; returns 0 or an errno value.
///
/// Linux `fallocate(2)` mode 0 (allocate and extend, never discard). Not
/// glibc's `posix_fallocate`, which on filesystems without support
/// silently emulates by writing every block: here such filesystems report
/// `EOPNOTSUPP` and the caller falls back to `set_len`.
#[cfg(target_os = "linux")]
fn fallocate(file: &File, len: libc::off_t) -> i32 {
    // SAFETY: the descriptor is open for writing for the duration of the call.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
        0
    } else {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }
}

/// Allocates `0..len` of `file`; returns 0 or an errno value.
#[cfg(not(target_os = "linux"))]
fn fallocate(file: &File, len: libc::off_t) -> i32 {
    // SAFETY: the descriptor is open for writing for the duration of the call.
    unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) }
}

/// An open data file (see the module doc for the mapping rules).
#[derive(Debug)]
pub(crate) struct OpenFile {
    file: File,
    path: PathBuf,
    writable: bool,
    expected: u64,
    /// Mapping of `expected` bytes, when the backend is mmap and mapping was safe.
    map: Option<MmapRaw>,
    /// Read-only mapping made on first upload when `map` is `None` (see
    /// [`OpenFile::upload_map`]); `Some(None)`: not mappable.
    upload_map: OnceLock<Option<MmapRaw>>,
    /// The lowest address in `upload_map` where the `SIGBUS` guard placed
    /// a zero page in place of the file's (`usize::MAX`: none). Raised by
    /// the signal handler itself, before the zero page goes in, so every
    /// reader of the map (any lane, any thread) can tell whether the bytes
    /// it hashed were intact; a map with a zero page is never used again.
    zeroed_from: AtomicUsize,
    /// Blocks for `expected` bytes are allocated (fallocate succeeded), so
    /// writing through the map cannot hit ENOSPC at writeback.
    reserved: bool,
}

impl OpenFile {
    /// Opens `rel` under the root of `dirs` (expected to be `expected`
    /// bytes long). Returns the file and whether this call created it.
    pub(crate) fn open(
        dirs: &DirCache,
        rel: &Path,
        expected: u64,
        access: Access,
        backend: Backend,
    ) -> Result<(OpenFile, bool)> {
        let opened = dirs.open(rel, access)?;
        let path = dirs.root().join(rel);
        let mut of = OpenFile {
            file: opened.file,
            path,
            writable: access == Access::Write,
            expected,
            map: None,
            upload_map: OnceLock::new(),
            zeroed_from: AtomicUsize::new(usize::MAX),
            reserved: false,
        };
        if of.writable {
            of.reserve(&opened.stat)?;
        }
        if backend == Backend::Mmap && expected >= MIN_MAP_LEN {
            of.map = of.try_map(&opened.stat)?;
        }
        Ok((of, opened.created))
    }

    /// Opens `path` read-only as it is given (symlinks followed: the
    /// caller chose the path), expected to be `expected` bytes long; for
    /// hashing files outside any [`Storage`](crate::Storage) root (torrent
    /// creation). Never maps it here: hashing maps it on first use
    /// ([`hash_map`](Self::hash_map)) if it is long enough.
    pub(crate) fn open_path(path: &Path, expected: u64) -> Result<OpenFile> {
        let file = File::open(path).map_err(|e| Error::from_io(path, e))?;
        Ok(OpenFile {
            file,
            path: path.to_path_buf(),
            writable: false,
            expected,
            map: None,
            upload_map: OnceLock::new(),
            zeroed_from: AtomicUsize::new(usize::MAX),
            reserved: false,
        })
    }

    fn fstat(&self) -> Result<libc::stat> {
        crate::path::fstat(&self.file, &self.path)
    }

    /// Allocates disk blocks for the whole file so later writes cannot fail
    /// for lack of space.
    /// `st` is the file's `fstat` taken when it was opened.
    fn reserve(&mut self, st: &libc::stat) -> Result<()> {
        if self.expected == 0 {
            self.reserved = true;
            return Ok(());
        }
        let size = st.st_size as u64;
        if size >= self.expected && (st.st_blocks as u64).saturating_mul(512) >= self.expected {
            self.reserved = true;
            return Ok(());
        }
        let len = libc::off_t::try_from(self.expected).map_err(|_| Error::TooLarge)?;
        loop {
            match fallocate(&self.file, len) {
                0 => {
                    self.reserved = true;
                    return Ok(());
                }
                libc::EINTR => continue,
                libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL => {
                    log::debug!(
                        "fallocate unsupported for {}; using set_len",
                        self.path.display()
                    );
                    if size < self.expected {
                        self.file
                            .set_len(self.expected)
                            .map_err(|e| Error::from_io(&self.path, e))?;
                    }
                    return Ok(());
                }
                e => return Err(Error::from_io(&self.path, io::Error::from_raw_os_error(e))),
            }
        }
    }

    /// Maps the file when that is safe (see module doc); `None` otherwise.
    /// `st` is the file's `fstat` taken when it was opened (before any
    /// reservation, which only makes a writable file longer).
    fn try_map(&self, st: &libc::stat) -> Result<Option<MmapRaw>> {
        let Ok(len) = usize::try_from(self.expected) else {
            return Ok(None);
        };
        if !self.writable && (st.st_size as u64) < self.expected {
            // Shorter than the layout: never map it (reads go through the
            // length check and fail with FileTooShort).
            return Ok(None);
        }
        let mut opts = MmapOptions::new();
        opts.len(len);
        let r = if self.writable {
            opts.map_raw(&self.file)
        } else {
            opts.map_raw_read_only(&self.file)
        };
        match r {
            Ok(m) => Ok(Some(m)),
            Err(e) => {
                log::debug!(
                    "mmap of {} failed ({e}); using positioned io",
                    self.path.display()
                );
                Ok(None)
            }
        }
    }

    /// A read-only map of the whole file whose pages the kernel copies from
    /// when uploading (`writev` from mapped memory: one copy, page cache to
    /// socket, instead of `pread` into a buffer and a second copy out). The
    /// data is never touched in user space, so a file truncated meanwhile
    /// makes the `writev` fail with `EFAULT` rather than raise `SIGBUS`.
    /// `None` for files under [`MIN_MAP_LEN`] (not worth a mapping in a
    /// bounded pool that churns) or shorter than expected.
    pub(crate) fn upload_map(&self) -> Option<&MmapRaw> {
        if let Some(m) = &self.map {
            return Some(m);
        }
        if self.poisoned() {
            return None;
        }
        self.upload_map
            .get_or_init(|| {
                let len = usize::try_from(self.expected).ok()?;
                if self.expected < MIN_MAP_LEN
                    || (self.fstat().ok()?.st_size as u64) < self.expected
                {
                    return None;
                }
                MmapOptions::new()
                    .len(len)
                    .map_raw_read_only(&self.file)
                    .ok()
            })
            .as_ref()
    }

    /// The read-only map to hash from in user space, under the `SIGBUS`
    /// guard (`sigbus.rs`): the upload map when it is a separate read-only
    /// mapping, never the writable map of [`Backend::Mmap`] (a zero page
    /// placed there would swallow later writes). `None` once poisoned.
    pub(crate) fn hash_map(&self) -> Option<&MmapRaw> {
        if self.map.is_some() {
            return None;
        }
        self.upload_map()
    }

    /// Drops the page-table entries of the read-only map's pages that lie
    /// wholly inside file bytes `start..end` (`madvise(MADV_DONTNEED)`):
    /// the pages stay in the page cache, and a later read of them faults
    /// them in again from there. Best effort: nothing when there is no
    /// such map or the call fails.
    pub(crate) fn drop_map_pages(&self, start: u64, end: u64) {
        let Some(Some(m)) = self.upload_map.get() else {
            return;
        };
        let page = crate::buf::PAGE_ALIGN as u64;
        let (first, last) = (
            start.next_multiple_of(page),
            end.min(m.len() as u64) / page * page,
        );
        if first >= last {
            return;
        }
        // SAFETY: `first..last` lies inside this file's read-only shared
        // map (bounded by its length above) and is page-aligned (the map
        // starts on a page). Dropping the entries of a file-backed shared
        // map loses no data: any reader (another lane, an upload's
        // `writev`) faults the page cache's pages in again, under the same
        // guard as any first read.
        unsafe {
            libc::madvise(
                m.as_mut_ptr().add(first as usize).cast(),
                (last - first) as usize,
                libc::MADV_DONTNEED,
            );
        }
    }

    /// True once a guarded read of the read-only map faulted (in any
    /// thread): the map holds zero pages in place of some of the file's.
    /// Uploads and hashing then fall back to positioned reads on this
    /// handle; the storage also drops the handle from the pool, so the next
    /// open maps the file afresh.
    pub(crate) fn poisoned(&self) -> bool {
        self.zeroed_from.load(Ordering::SeqCst) != usize::MAX
    }

    /// True when a zero page was placed in the read-only map before file
    /// offset `end`: bytes below `end` read through the map may be zeros
    /// that are not the file's.
    pub(crate) fn zeroed_before(&self, end: u64) -> bool {
        let first = self.zeroed_from.load(Ordering::SeqCst);
        if first == usize::MAX {
            return false;
        }
        match self.upload_map.get() {
            Some(Some(m)) => (m.as_ptr() as usize).saturating_add(end as usize) > first,
            _ => true,
        }
    }

    /// Where the `SIGBUS` handler records the lowest zero page it placed in
    /// this file's read-only map (see [`guarded`](crate::sigbus::guarded)).
    pub(crate) fn zeroed_mark(&self) -> &AtomicUsize {
        &self.zeroed_from
    }

    /// True when opened read-write.
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// Whether the read-only map was made (`Some`), and what it gave.
    #[cfg(test)]
    pub(crate) fn upload_map_made(&self) -> Option<&Option<MmapRaw>> {
        self.upload_map.get()
    }

    /// True when this file is memory-mapped.
    #[cfg(test)]
    pub(crate) fn mapped(&self) -> bool {
        self.map.is_some()
    }

    /// Fails with [`Error::FileTooShort`] unless the file is at least `end`
    /// bytes now, and with [`Error::FileMissing`] if it was deleted while
    /// open (its data would otherwise still be read from the orphan inode).
    pub(crate) fn check_len(&self, end: u64) -> Result<()> {
        let st = self.fstat()?;
        if st.st_nlink == 0 {
            return Err(Error::FileMissing {
                path: self.path.clone(),
            });
        }
        let actual = st.st_size as u64;
        if actual < end {
            return Err(Error::FileTooShort {
                path: self.path.clone(),
                expected: self.expected,
                actual,
            });
        }
        Ok(())
    }

    /// The file's length now (one `fstat`); `None` when it was deleted
    /// while open or cannot be examined.
    pub(crate) fn live_len(&self) -> Option<u64> {
        let st = self.fstat().ok()?;
        (st.st_nlink > 0).then_some(st.st_size as u64)
    }

    /// The map, if `offset..offset+len` lies inside it.
    fn map_for(&self, offset: u64, len: usize) -> Option<&MmapRaw> {
        let m = self.map.as_ref()?;
        let end = offset.checked_add(len as u64)?;
        (end <= m.len() as u64).then_some(m)
    }

    /// The error for a guarded read of [`hash_map`](Self::hash_map) that
    /// faulted: the file is gone or shorter than expected now, or (still
    /// long enough: cut and grown again, or a disk error) its pages could
    /// not be read.
    pub(crate) fn map_fault_error(&self) -> Error {
        match self.check_len(self.expected) {
            Err(e) => e,
            Ok(()) => Error::from_io(
                self.path.clone(),
                io::Error::other("reading the file through its map failed (SIGBUS)"),
            ),
        }
    }

    pub(crate) fn short_read(&self) -> Error {
        match self.fstat() {
            Ok(st) => Error::FileTooShort {
                path: self.path.clone(),
                expected: self.expected,
                actual: st.st_size as u64,
            },
            Err(e) => e,
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset` with `pread`, without
    /// the length check of [`read_at`](Self::read_at): for hashing, which
    /// checks the length once per range (`check_len(0)`) instead.
    pub(crate) fn read_chunk(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        match self.file.read_exact_at(buf, offset) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.short_read()),
            Err(e) => Err(Error::from_io(&self.path, e)),
        }
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub(crate) fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if let Some(m) = self.map_for(offset, buf.len()) {
            self.check_len(offset + buf.len() as u64)?;
            // SAFETY: the map covers `offset..offset+len` (map_for) and the
            // file was at least that long an instant ago (check_len), so the
            // pages are backed; see the module doc for the truncation race.
            // `buf` is a distinct Rust allocation, so the ranges cannot
            // overlap. A concurrent write to the same bytes by another thread
            // is a benign race on shared file memory: the reader gets some
            // interleaving of old and new bytes, which the piece hash catches.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    m.as_ptr().add(offset as usize),
                    buf.as_mut_ptr(),
                    buf.len(),
                );
            }
            return Ok(());
        }
        match self.file.read_exact_at(buf, offset) {
            // Deleted while open: do not serve the orphan's bytes.
            Ok(()) => self.check_len(0),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(self.short_read()),
            Err(e) => Err(Error::from_io(&self.path, e)),
        }
    }

    /// Writes all of `data` at `offset`.
    pub(crate) fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        debug_assert!(self.writable);
        if self.reserved {
            if let Some(m) = self.map_for(offset, data.len()) {
                self.check_len(offset + data.len() as u64)?;
                // SAFETY: the map is writable (opened read-write, map_raw),
                // covers the range (map_for), the file is long enough
                // (check_len) and its blocks are allocated (reserved), so no
                // SIGBUS for size or space. `data` is a Rust allocation
                // distinct from the map. Concurrent writers to the same range
                // (duplicate endgame blocks) race benignly on file memory:
                // the piece hash decides.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        data.as_ptr(),
                        m.as_mut_ptr().add(offset as usize),
                        data.len(),
                    );
                }
                return Ok(());
            }
        }
        self.file
            .write_all_at(data, offset)
            .map_err(|e| Error::from_io(&self.path, e))
    }

    /// Writes `parts` back to back starting at `offset`: one `pwritev` for
    /// all of them with the positioned-IO backend (large writes let the
    /// kernel use large page-cache folios, about twice as fast as 16 KiB
    /// writes), copies into the map otherwise.
    pub(crate) fn write_vectored_at(&self, offset: u64, parts: &[&[u8]]) -> Result<()> {
        use std::os::fd::AsRawFd;
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if self.reserved && self.map_for(offset, total).is_some() {
            let mut at = offset;
            for p in parts {
                self.write_at(at, p)?;
                at += p.len() as u64;
            }
            return Ok(());
        }
        let mut done = 0usize; // bytes of `parts` written
        while done < total {
            let mut iov: Vec<libc::iovec> = Vec::with_capacity(parts.len());
            let mut skip = done;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                let rest = &p[skip..];
                skip = 0;
                iov.push(libc::iovec {
                    iov_base: rest.as_ptr() as *mut libc::c_void,
                    iov_len: rest.len(),
                });
            }
            let n_iov = iov.len().min(1024) as libc::c_int;
            // SAFETY: every iovec points into a live slice of `parts` for its
            // length, the kernel only reads them, and the descriptor is ours.
            let n = unsafe {
                libc::pwritev(
                    self.file.as_raw_fd(),
                    iov.as_ptr(),
                    n_iov,
                    (offset + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::from_io(&self.path, e));
            }
            if n == 0 {
                return Err(Error::from_io(
                    &self.path,
                    std::io::ErrorKind::WriteZero.into(),
                ));
            }
            done += n as usize;
        }
        Ok(())
    }

    /// Starts writing bytes `offset..offset+len` back to disk without
    /// waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a later
    /// [`sync_range`](Self::sync_range) has little left to do. Best effort:
    /// errors are ignored (the sync reports them).
    pub(crate) fn start_writeback(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a descriptor we own; no memory is passed.
        unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }

    /// Bytes of the file in the page cache that are not on disk yet
    /// (dirty or under writeback), from `cachestat(2)` (Linux 6.5+); `None`
    /// where the kernel cannot say.
    pub(crate) fn unflushed_bytes(&self) -> Option<u64> {
        use std::os::fd::AsRawFd;
        /// `cachestat`'s number in every Linux syscall table.
        const SYS_CACHESTAT: libc::c_long = 451;
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            nr_cache: u64,
            nr_dirty: u64,
            nr_writeback: u64,
            nr_evicted: u64,
            nr_recently_evicted: u64,
        }
        // len 0: to the end of the file.
        let range = Range { off: 0, len: 0 };
        let mut st = Stat::default();
        // SAFETY: both pointers are to live, correctly laid out structs;
        // the kernel writes only `st`.
        let rc = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                self.file.as_raw_fd(),
                &range as *const Range,
                &mut st as *mut Stat,
                0u32,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: sysconf has no memory arguments.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = u64::try_from(page).ok().filter(|p| *p > 0)?;
        Some((st.nr_dirty + st.nr_writeback) * page)
    }

    /// Makes bytes `offset..offset+len` durable.
    ///
    /// Fails with [`Error::FileMissing`] if the file was deleted while open
    /// (the bytes went to an orphan inode and must not be counted as had).
    pub(crate) fn sync_range(&self, offset: u64, len: u64) -> Result<()> {
        let mapped = self.reserved && self.map_for(offset, len as usize).is_some();
        match &self.map {
            // msync(MS_SYNC) of the range: on Linux a ranged fdatasync.
            Some(m) if mapped => m
                .flush_range(offset as usize, len as usize)
                .map_err(|e| Error::from_io(&self.path, e))?,
            _ => self
                .file
                .sync_data()
                .map_err(|e| Error::from_io(&self.path, e))?,
        }
        self.check_len(offset + len)
    }
}
