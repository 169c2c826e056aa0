//! [`Storage`]: block IO, piece hashing, verification and durability for
//! one torrent, over a shared [`FilePool`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::file::OpenFile;
use crate::layout::Layout;
use crate::path::{sync_parents, sync_parents_all, Access, DirCache};
use crate::pool::FilePool;

/// A file's (first byte, end) under some pieces, and the pieces touching it.
type FileRange = (u64, u64, Vec<usize>);

pub use crate::backend::{Backend, HashSource};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The data of one torrent on disk. `Send + Sync`: peer threads call it
/// concurrently through an `Arc<Storage>`.
///
/// Files are opened through the session's [`FilePool`], created and
/// reserved lazily on their first write. Padding files never touch the disk:
/// writes to them are dropped and reads give zeros.
#[derive(Debug)]
pub struct Storage {
    id: u64,
    layout: Layout,
    root: PathBuf,
    pool: Arc<FilePool>,
    backend: Backend,
    hash_source: HashSource,
    /// Files created by this storage whose directory entries are not yet
    /// fsynced (done by the next flush touching them).
    unsynced_dirs: Mutex<HashSet<usize>>,
    /// Open directories below `root`, for opening files (bounded with
    /// the other storages' by the pool).
    dirs: Arc<DirCache>,
}

impl Storage {
    /// A storage for `layout` with files joined under `root` (the engine
    /// passes `save_dir` for single-file torrents, `save_dir/name` for
    /// multi-file ones). Creates nothing on disk.
    ///
    /// # Errors
    /// [`Error::Io`] (`ENOTDIR`) if `root` exists and is not a directory.
    pub fn new(
        layout: Layout,
        root: PathBuf,
        pool: Arc<FilePool>,
        backend: Backend,
    ) -> Result<Storage> {
        if let Ok(meta) = std::fs::metadata(&root) {
            if !meta.is_dir() {
                let source = std::io::Error::from_raw_os_error(libc::ENOTDIR);
                return Err(Error::Io { path: root, source });
            }
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Ok(Storage {
            id,
            layout,
            dirs: DirCache::new(root.clone(), id, Some(Arc::clone(pool.dir_budget()))),
            root,
            pool,
            backend,
            hash_source: HashSource::default(),
            unsynced_dirs: Mutex::new(HashSet::new()),
        })
    }

    /// This storage, hashing from `source` (default [`HashSource::Read`]).
    #[must_use]
    pub fn with_hash_source(mut self, source: HashSource) -> Storage {
        self.hash_source = source;
        self
    }

    /// Where hashing reads file bytes from (see [`HashSource`]).
    pub fn hash_source(&self) -> HashSource {
        self.hash_source
    }

    /// The torrent geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The directory files are joined under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The access backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Absolute path of file `file` (for messages and stamps).
    pub fn file_path(&self, file: usize) -> Option<PathBuf> {
        self.layout
            .files()
            .get(file)
            .map(|f| self.root.join(&f.path))
    }

    /// Runs `op` on file `file`'s handle; a handle found stale (file
    /// deleted or truncated under it) is dropped from the pool so the next
    /// access reopens the path (and a write recreates the file).
    fn with_file<T>(
        &self,
        file: usize,
        access: Access,
        op: impl FnOnce(&OpenFile) -> Result<T>,
    ) -> Result<T> {
        let r = op(&*self.handle(file, access)?);
        if let Err(e) = &r {
            if e.is_missing_data() {
                self.pool.forget((self.id, file));
            }
        }
        r
    }

    /// Drops file `file`'s handle from the pool (found stale).
    pub(crate) fn pool_forget(&self, file: usize) {
        self.pool.forget((self.id, file));
    }

    pub(crate) fn handle(&self, file: usize, access: Access) -> Result<Arc<OpenFile>> {
        let spec = &self.layout.files()[file];
        self.pool.get((self.id, file), access == Access::Write, || {
            let (f, created) =
                OpenFile::open(&self.dirs, &spec.path, spec.length, access, self.backend)?;
            if created {
                self.unsynced_dirs.lock().insert(file);
            }
            Ok(f)
        })
    }

    /// Writes `data` at `offset` inside piece `piece`, across file
    /// boundaries. The first write to a file creates it (and its parent
    /// directories) and reserves its full length.
    ///
    /// # Errors
    /// [`Error::OutOfRange`], [`Error::DiskFull`] (at reservation),
    /// [`Error::PathEscapes`] (symlink under the root),
    /// [`Error::PermissionDenied`], [`Error::IsADirectory`], [`Error::Io`].
    /// Spans before the failing one may already be written.
    pub fn write_block(&self, piece: usize, offset: u64, data: &[u8]) -> Result<()> {
        for span in self
            .layout
            .checked_spans(piece, offset, data.len() as u64)?
        {
            if self.layout.files()[span.file].padding {
                continue;
            }
            let start = (span.piece_offset - offset) as usize;
            let chunk = &data[start..start + span.len as usize];
            self.with_file(span.file, Access::Write, |f| {
                f.write_at(span.file_offset, chunk)
            })?;
        }
        Ok(())
    }

    /// Writes `parts` back to back at `offset` inside piece `piece`, as
    /// [`write_block`](Self::write_block) does for one buffer, with one
    /// vectored write per file span. Consecutive blocks received together
    /// should go through here: large writes are much cheaper for the
    /// page cache than many 16 KiB ones.
    ///
    /// # Errors
    /// As [`Storage::write_block`].
    pub fn write_blocks(&self, piece: usize, offset: u64, parts: &[&[u8]]) -> Result<()> {
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        for span in self.layout.checked_spans(piece, offset, total)? {
            if self.layout.files()[span.file].padding {
                continue;
            }
            // The slices of `parts` covering this span's piece range.
            let from = span.piece_offset - offset;
            let to = from + span.len;
            let mut chunks: Vec<&[u8]> = Vec::with_capacity(parts.len());
            let mut at = 0u64;
            for p in parts {
                let (s, e) = (at, at + p.len() as u64);
                at = e;
                if e <= from || s >= to {
                    continue;
                }
                let a = (from.max(s) - s) as usize;
                let b = (to.min(e) - s) as usize;
                chunks.push(&p[a..b]);
            }
            self.with_file(span.file, Access::Write, |f| {
                f.write_vectored_at(span.file_offset, &chunks)
            })?;
        }
        Ok(())
    }

    /// Fills `buf` with the bytes at `offset` inside piece `piece`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`], [`Error::FileMissing`], [`Error::FileTooShort`]
    /// (also when a file shrank under us), [`Error::PathEscapes`], [`Error::Io`].
    pub fn read_block(&self, piece: usize, offset: u64, buf: &mut [u8]) -> Result<()> {
        for span in self.layout.checked_spans(piece, offset, buf.len() as u64)? {
            let start = (span.piece_offset - offset) as usize;
            let chunk = &mut buf[start..start + span.len as usize];
            if self.layout.files()[span.file].padding {
                chunk.fill(0);
                continue;
            }
            self.with_file(span.file, Access::Read, |f| {
                f.read_at(span.file_offset, chunk)
            })?;
        }
        Ok(())
    }

    /// SHA-1 of piece `piece` as it is on disk (padding hashed as zeros).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad index; [`Error::FileMissing`] /
    /// [`Error::FileTooShort`] when its data is not there; other IO errors.
    pub fn hash_piece(&self, piece: usize) -> Result<[u8; 20]> {
        let mut r = self.hash_pieces(&[piece]);
        r.pop().unwrap_or(Err(Error::OutOfRange {
            piece,
            offset: 0,
            len: 0,
        }))
    }

    /// True when piece `piece` on disk matches its layout hash.
    ///
    /// # Errors
    /// As [`Storage::hash_piece`].
    pub fn check_piece(&self, piece: usize) -> Result<bool> {
        if !self.layout.has_v1() {
            return self.check_piece_v2(piece);
        }
        Ok(self.hash_piece(piece)? == self.layout.piece_hash(piece))
    }

    /// SHA-1 of each of `pieces` as it is on disk, in order, hashed up to
    /// three side by side (about 0.5x the CPU time of one
    /// [`hash_piece`](Self::hash_piece) each where the CPU has the SHA
    /// extensions). An error reading one piece does not affect the others.
    ///
    /// File bytes come from where [`hash_source`](Self::hash_source) says.
    /// From maps (guarded), a file cut by another program mid-hash gives
    /// [`Error::FileTooShort`] for every piece that read a page it lost,
    /// in this call or in any other thread hashing from the same map, not
    /// a dead process and never a wrong digest.
    pub fn hash_pieces(&self, pieces: &[usize]) -> Vec<Result<[u8; 20]>> {
        let maps = self.maps_allowed();
        let mut out = Vec::with_capacity(pieces.len());
        for group in pieces.chunks(crate::sha::LANES) {
            out.extend(crate::lanes::hash_lanes(self, group, maps, false));
        }
        out
    }

    /// [`check_piece`](Self::check_piece) for each of `pieces` (see
    /// [`hash_pieces`](Self::hash_pieces)).
    pub fn check_pieces(&self, pieces: &[usize]) -> Vec<Result<bool>> {
        self.check_lanes(pieces, self.maps_allowed(), false)
    }

    /// [`check_pieces`](Self::check_pieces), three pieces side by side,
    /// from maps when `maps` (decided once per batch by the caller),
    /// dropping the hashed pages' map entries when `release` (see
    /// `lanes::hash_lanes`).
    /// A v2-only layout has no SHA-1 hashes: its pieces are checked
    /// against their merkle hashes instead (`verify_v2.rs`).
    fn check_lanes(&self, pieces: &[usize], maps: bool, release: bool) -> Vec<Result<bool>> {
        if !self.layout.has_v1() {
            // side by side as the SHA-1 pieces are, from maps where
            // allowed (no `pread` copy of every byte); a group with a
            // piece of no v2 hash one piece at a time, for its error
            return pieces
                .chunks(crate::sha::bulk_lanes())
                .flat_map(|group| {
                    self.check_group_v2(group, maps, release)
                        .unwrap_or_else(|_| group.iter().map(|&p| self.check_piece_v2(p)).collect())
                })
                .collect();
        }
        pieces
            .chunks(crate::sha::bulk_lanes())
            .flat_map(|group| crate::lanes::hash_lanes(self, group, maps, release))
            .zip(pieces)
            .map(|(h, &p)| h.map(|h| h == self.layout.piece_hash(p)))
            .collect()
    }

    /// True when hashing may read from maps now (see [`HashSource::Map`]).
    pub(crate) fn maps_allowed(&self) -> bool {
        if self.hash_source != HashSource::Map {
            return false;
        }
        if crate::sigbus::available() {
            return true;
        }
        static LOGGED: std::sync::Once = std::sync::Once::new();
        LOGGED.call_once(|| {
            log::debug!(
                "hashing from maps needs install_sigbus_guard() (and the guard still installed); \
                 reading with pread instead"
            );
        });
        false
    }

    /// Makes piece `piece` durable: `msync` (mmap) or `fdatasync` of every
    /// file it touches, plus an `fsync` of the directories of files this
    /// storage created. Record a piece as had only after this returns `Ok`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`], IO errors from the sync calls.
    pub fn flush_piece(&self, piece: usize) -> Result<()> {
        let len = self.layout.piece_len(piece);
        for span in self.layout.checked_spans(piece, 0, len)? {
            let spec = &self.layout.files()[span.file];
            if spec.padding {
                continue;
            }
            self.with_file(span.file, Access::Read, |f| {
                f.sync_range(span.file_offset, span.len)
            })?;
            let needs_dir = self.unsynced_dirs.lock().contains(&span.file);
            if needs_dir {
                sync_parents(&self.root, &spec.path)?;
                self.unsynced_dirs.lock().remove(&span.file);
            }
        }
        Ok(())
    }

    /// Starts writing a piece's bytes back to disk without waiting, so that
    /// a later [`flush_pieces`](Self::flush_pieces) is quick. Best effort,
    /// and only through files this storage holds open: a file closed
    /// meanwhile (evicted from the pool, or all of them by
    /// [`release_files`](Self::release_files) when the torrent paused) is
    /// left to the kernel's flusher and the next flush. It never opens or
    /// creates a file.
    pub fn start_writeback(&self, piece: usize) {
        let len = self.layout.piece_len(piece);
        let Ok(spans) = self.layout.checked_spans(piece, 0, len) else {
            return;
        };
        for span in spans {
            if self.layout.files()[span.file].padding {
                continue;
            }
            if let Some(f) = self.pool.open_file((self.id, span.file)) {
                f.start_writeback(span.file_offset, span.len);
            }
        }
    }

    /// The data files under `pieces` (padding left out), each with the
    /// byte range and the pieces that touch it.
    fn files_under(&self, pieces: &[usize]) -> Result<BTreeMap<usize, FileRange>> {
        let mut files: BTreeMap<usize, FileRange> = BTreeMap::new();
        for &piece in pieces {
            let len = self.layout.piece_len(piece);
            for span in self.layout.checked_spans(piece, 0, len)? {
                if self.layout.files()[span.file].padding {
                    continue;
                }
                let e = files.entry(span.file).or_insert((u64::MAX, 0, Vec::new()));
                e.0 = e.0.min(span.file_offset);
                e.1 = e.1.max(span.file_offset + span.len);
                e.2.push(piece);
            }
        }
        Ok(files)
    }

    /// Makes many pieces durable at once, syncing each file they touch
    /// once (where [`flush_piece`](Self::flush_piece) per piece would sync a
    /// file once per piece). Returns the pieces whose data is gone (file
    /// deleted or truncated): those are not durable and must not be
    /// recorded as had.
    ///
    /// # Errors
    /// Any other IO error from syncing.
    pub fn flush_pieces(&self, pieces: &[usize]) -> Result<Vec<usize>> {
        let mut missing = Vec::new();
        let mut created = Vec::new();
        for (file, (start, end, touching)) in self.files_under(pieces)? {
            match self.with_file(file, Access::Read, |f| f.sync_range(start, end - start)) {
                Ok(()) => {}
                Err(e) if e.is_missing_data() => missing.extend(touching),
                Err(e) => return Err(e),
            }
            if self.unsynced_dirs.lock().contains(&file) {
                created.push(file);
            }
        }
        if !created.is_empty() {
            // Each directory once, however many new files it holds.
            let files = self.layout.files();
            sync_parents_all(&self.root, created.iter().map(|&f| files[f].path.as_path()))?;
            let mut unsynced = self.unsynced_dirs.lock();
            for f in created {
                unsynced.remove(&f);
            }
        }
        missing.sort_unstable();
        missing.dedup();
        Ok(missing)
    }

    /// Bytes of the files under `pieces` that are still waiting to reach
    /// the disk (dirty or under writeback in the page cache): about what
    /// [`flush_pieces`](Self::flush_pieces) of the same pieces would have
    /// to write. Absent files count as nothing. `None` where the kernel
    /// cannot say (`cachestat(2)` needs Linux 6.5).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad index.
    pub fn unflushed_bytes(&self, pieces: &[usize]) -> Result<Option<u64>> {
        let mut total = 0u64;
        for file in self.files_under(pieces)?.into_keys() {
            match self.with_file(file, Access::Read, |f| Ok(f.unflushed_bytes())) {
                Ok(Some(n)) => total += n,
                Ok(None) => return Ok(None),
                Err(_) => {}
            }
        }
        Ok(Some(total))
    }

    /// How many files hold bytes of `pieces` (padding aside): the number of
    /// files [`flush_pieces`](Self::flush_pieces) of the same pieces syncs,
    /// each sync ending with a device cache flush.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad index.
    pub fn file_count(&self, pieces: &[usize]) -> Result<usize> {
        Ok(self.files_under(pieces)?.len())
    }

    /// Creates and reserves file `file` even if no block was written to it
    /// (useful for zero-length files, which no piece touches).
    ///
    /// # Errors
    /// As [`Storage::write_block`]; [`Error::OutOfRange`] for a bad index.
    pub fn allocate_file(&self, file: usize) -> Result<()> {
        let Some(spec) = self.layout.files().get(file) else {
            return Err(Error::OutOfRange {
                piece: 0,
                offset: 0,
                len: 0,
            });
        };
        if !spec.padding {
            self.handle(file, Access::Write)?;
        }
        Ok(())
    }

    /// Creates and reserves file `file` now without keeping it open, so a
    /// background thread can take file creation (on ext4 with many deleted
    /// inodes, a millisecond per file) off the threads that write blocks.
    /// An existing file is only reserved (when it is not yet). Padding and
    /// zero-length files are left alone.
    ///
    /// # Errors
    /// As [`Storage::write_block`]; [`Error::OutOfRange`] for a bad index.
    pub fn prepare_file(&self, file: usize) -> Result<()> {
        let Some(spec) = self.layout.files().get(file) else {
            return Err(Error::OutOfRange {
                piece: 0,
                offset: 0,
                len: 0,
            });
        };
        if spec.padding || spec.length == 0 {
            return Ok(());
        }
        // Positioned IO: no map to make and tear down for a handle dropped at once.
        let (f, created) = OpenFile::open(
            &self.dirs,
            &spec.path,
            spec.length,
            Access::Write,
            Backend::PositionedIo,
        )?;
        if created {
            self.unsynced_dirs.lock().insert(file);
        }
        drop(f);
        Ok(())
    }

    /// Rechecks every piece in parallel on `pool`; see [`Storage::verify_pieces`].
    ///
    /// # Errors
    /// As [`Storage::verify_pieces`].
    pub fn verify_all(
        &self,
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<bool>> {
        let all: Vec<usize> = (0..self.layout.piece_count()).collect();
        self.verify_pieces(&all, pool, progress)
    }

    /// Rechecks `pieces` in parallel on `pool`. Returns one bool per entry of
    /// `pieces` (same order): true when that piece matches its hash.
    /// Missing or short files make their pieces `false`, not an error.
    /// `progress(done, total)` is called after each piece, from pool threads.
    /// Pieces are hashed three at a time, side by side
    /// ([`hash_pieces`](Self::hash_pieces); sixteen in AVX-512 lanes where
    /// the CPU has it), mostly straight from the files' maps. Memory stays
    /// bounded: each worker reads what it cannot map through three (or
    /// sixteen) 64 KiB buffers.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad index; other IO errors
    /// (permission denied, a directory in a file's place, symlinks...).
    pub fn verify_pieces(
        &self,
        pieces: &[usize],
        pool: &rayon::ThreadPool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<bool>> {
        let done = AtomicUsize::new(0);
        let total = pieces.len();
        let missing_is_bad = |r: Result<bool>| match r {
            Err(e) if e.is_missing_data() => Ok(false),
            r => r,
        };
        // One `sigaction` query for the whole batch, not one per group.
        let maps = self.maps_allowed();
        // Three pieces per job, hashed side by side.
        let groups: Vec<Vec<Result<bool>>> = pool.install(|| {
            pieces
                .par_chunks(crate::sha::bulk_lanes())
                .map(|group| {
                    let out: Vec<Result<bool>> = self
                        .check_lanes(group, maps, true)
                        .into_iter()
                        .map(missing_is_bad)
                        .collect();
                    for _ in 0..out.len() {
                        progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    }
                    out
                })
                .collect()
        });
        groups.into_iter().flatten().collect()
    }

    /// Closes this torrent's files and maps in the pool (torrent removed or
    /// paused). Later calls reopen them as needed.
    pub fn release_files(&self) {
        self.pool.release(self.id);
        self.dirs.clear();
    }

    /// `fstatat` of `rel` under the root (see [`DirCache::stat`]).
    pub(crate) fn stat_file(&self, rel: &Path) -> Result<Option<libc::stat>> {
        self.dirs.stat(rel)
    }

    #[cfg(test)]
    pub(crate) fn test_handle(&self, file: usize) -> Result<Arc<OpenFile>> {
        self.handle(file, Access::Read)
    }
}

impl crate::lanes::PieceFiles for Storage {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    fn open_file(&self, file: usize) -> Result<Arc<OpenFile>> {
        self.handle(file, Access::Read)
    }

    fn forget_file(&self, file: usize) {
        self.pool_forget(file);
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.release_files();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use std::os::unix::fs::symlink;

    const BACKENDS: [Backend; 2] = [Backend::Mmap, Backend::PositionedIo];

    /// Every way hashing can get its bytes: reads with either backend,
    /// and guarded maps (the read-only maps of positioned IO; with
    /// `Backend::Mmap` a map source still reads files open for writing).
    const SOURCES: [(Backend, HashSource); 4] = [
        (Backend::Mmap, HashSource::Read),
        (Backend::PositionedIo, HashSource::Read),
        (Backend::PositionedIo, HashSource::Map),
        (Backend::Mmap, HashSource::Map),
    ];

    /// A storage hashing from `source`, with the guard installed for maps.
    fn hashing(
        layout: Layout,
        root: &Path,
        max_open: usize,
        (backend, source): (Backend, HashSource),
    ) -> Storage {
        if source == HashSource::Map {
            crate::install_sigbus_guard().unwrap();
        }
        storage(layout, root, max_open, backend).with_hash_source(source)
    }

    fn files() -> Vec<(u64, bool)> {
        vec![
            (1000, false),
            (0, false),
            (3000, false),
            (77, true),
            (5000, false),
            (1, false),
        ]
    }

    /// Pieces hashed two or three at a time give what one at a time gives,
    /// across files, padding, a corrupted piece, a deleted file and a bad
    /// index; an error in one lane leaves the other lanes' results intact.
    #[test]
    fn lane_hashing_matches_single_hashing() {
        for backend in SOURCES {
            let dir = tempfile::tempdir().unwrap();
            let lens = vec![
                (70_000, false),
                (77, true),
                (130_000, false),
                (0, false),
                (65_536, false),
                (9_000, false),
            ];
            let data = data_for(&lens, 3);
            let layout = layout_for(&lens, 32 * 1024, &data);
            let s = hashing(layout, dir.path(), 3, backend);
            write_all(&s, &data, 16 * 1024);
            // Corrupt one byte of piece 4 on disk.
            s.write_block(4, 100, &[data[4 * 32 * 1024 + 100] ^ 1])
                .unwrap();
            let n = s.layout().piece_count();
            for a in 0..n {
                for b in [0, 4, (a + 1) % n, n - 1] {
                    let h = s.hash_pieces(&[a, b]);
                    assert_eq!(
                        h[0].as_ref().unwrap(),
                        &s.hash_piece(a).unwrap(),
                        "({a}, {b})"
                    );
                    assert_eq!(
                        h[1].as_ref().unwrap(),
                        &s.hash_piece(b).unwrap(),
                        "({a}, {b})"
                    );
                    let c: Vec<bool> = s
                        .check_pieces(&[a, b])
                        .into_iter()
                        .map(|c| c.unwrap())
                        .collect();
                    assert_eq!(c, [a != 4, b != 4]);
                }
            }
            // Three lanes (and more pieces than lanes), against the
            // torrent's own piece hashes.
            for a in 0..n {
                let group = [a, 4, (a + 2) % n, n - 1, 1];
                let checks: Vec<bool> = s
                    .check_pieces(&group)
                    .into_iter()
                    .map(|r| r.unwrap())
                    .collect();
                let want: Vec<bool> = group.iter().map(|&p| p != 4).collect();
                assert_eq!(checks, want, "group {group:?}");
            }
            let pool = rayon_pool();
            let all = s.verify_all(&pool, &|_, _| {}).unwrap();
            assert_eq!(all, (0..n).map(|p| p != 4).collect::<Vec<_>>());
            // Out of range in one lane only.
            let r = s.hash_pieces(&[n, 1]);
            assert!(matches!(r[0], Err(Error::OutOfRange { .. })));
            assert_eq!(r[1].as_ref().unwrap(), &s.hash_piece(1).unwrap());
            let r = s.hash_pieces(&[0, n + 3, 2]);
            assert!(matches!(r[1], Err(Error::OutOfRange { .. })));
            assert_eq!(r[0].as_ref().unwrap(), &s.layout().piece_hash(0));
            assert_eq!(r[2].as_ref().unwrap(), &s.layout().piece_hash(2));
            // The last file (only in the last piece) deleted.
            s.release_files();
            std::fs::remove_file(dir.path().join("d2/f5")).unwrap();
            let mut r = s.hash_pieces(&[n - 1, 0]).into_iter();
            assert!(r.next().unwrap().unwrap_err().is_missing_data());
            assert_eq!(
                r.next().unwrap().unwrap(),
                crate::hash_blocks([&data[..32 * 1024]])
            );
            let all = s.verify_all(&pool, &|_, _| {}).unwrap();
            assert_eq!(
                all,
                (0..n).map(|p| p != 4 && p != n - 1).collect::<Vec<_>>()
            );
        }
    }

    /// Large pieces across many files of mixed sizes (mapped and read
    /// with `pread`, in chunks of every length), three lanes at a time in
    /// any grouping: every piece matches the torrent's hash, and a
    /// corrupted byte fails its piece only.
    #[test]
    fn lanes_over_files_of_mixed_sizes_match_the_piece_hashes() {
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        let mut lens: Vec<(u64, bool)> = (0..40)
            .map(|i| match i % 4 {
                0 => (1 + next(200), false),
                1 => (1 + next(70_000), false),
                2 => (100_000 + next(300_000), false),
                _ => (1 + next(20_000), false),
            })
            .collect();
        lens.insert(7, (0, false));
        lens.insert(11, (3_333, true));
        let pl = 256 * 1024;
        let data = data_for(&lens, 21);
        let layout = layout_for(&lens, pl, &data);
        for backend in SOURCES {
            let dir = tempfile::tempdir().unwrap();
            let s = hashing(layout.clone(), dir.path(), 3, backend);
            write_all(&s, &data, 16 * 1024);
            let n = s.layout().piece_count();
            assert!(n >= 10, "{n} pieces");
            let order: Vec<usize> = (0..n).chain((0..n).rev().step_by(2)).collect();
            crate::sha::LANE_BLOCKS.with(|c| c.set([0; crate::sha::MAX_LANES]));
            for (i, group) in order.chunks(3).chain(order[1..].chunks(3)).enumerate() {
                let r = s.check_pieces(group);
                assert!(
                    r.iter().all(|c| *c.as_ref().unwrap()),
                    "{backend:?} group {i} {group:?}"
                );
            }
            // The lanes stay side by side across chunks of different
            // lengths: a group of three leaves one lane alone only for the
            // partial blocks at chunk ends and a group's last piece
            // (shorter, or the only one).
            let counts = crate::sha::LANE_BLOCKS.with(|c| c.get());
            let [one, two, three] = [counts[0], counts[1], counts[2]];
            let all = one + 2 * two + 3 * three;
            assert!(
                one * 10 < all,
                "{backend:?}: {one} of {all} blocks hashed one lane alone ({two} two, {three} three)"
            );
            let bad = n / 2;
            s.write_block(bad, 5, &[data[bad * pl as usize + 5] ^ 0x40])
                .unwrap();
            let all: Vec<usize> = (0..n).collect();
            let r: Vec<bool> = s
                .check_pieces(&all)
                .into_iter()
                .map(|c| c.unwrap())
                .collect();
            assert_eq!(
                r,
                (0..n).map(|p| p != bad).collect::<Vec<_>>(),
                "{backend:?}"
            );
        }
    }

    #[test]
    fn round_trip_across_boundaries_and_padding_never_on_disk() {
        for backend in BACKENDS {
            let dir = tempfile::tempdir().unwrap();
            let lens = files();
            let data = data_for(&lens, 1);
            let layout = layout_for(&lens, 1024, &data);
            let s = storage(layout, dir.path(), 2, backend);
            write_all(&s, &data, 300);
            for p in 0..s.layout().piece_count() {
                s.flush_piece(p).unwrap();
            }
            // Read back in odd-sized blocks.
            for p in 0..s.layout().piece_count() {
                let plen = s.layout().piece_len(p) as usize;
                let mut off = 0;
                while off < plen {
                    let n = 333.min(plen - off);
                    let mut buf = vec![0xAA; n];
                    s.read_block(p, off as u64, &mut buf).unwrap();
                    let g = p * 1024 + off;
                    assert_eq!(buf, &data[g..g + n], "{backend:?} piece {p} off {off}");
                    off += n;
                }
                assert!(s.check_piece(p).unwrap());
            }
            // Files on disk hold exactly their bytes; padding file absent.
            let mut pos = 0;
            for (i, &(l, pad)) in lens.iter().enumerate() {
                let path = dir.path().join(format!("d{}/f{i}", i % 3));
                if pad {
                    assert!(!path.exists());
                } else if l > 0 {
                    assert_eq!(std::fs::read(&path).unwrap(), &data[pos..pos + l as usize]);
                }
                pos += l as usize;
            }
            // The zero-length file was never created lazily; allocate_file makes it.
            let empty = dir.path().join("d1/f1");
            assert!(!empty.exists());
            s.allocate_file(1).unwrap();
            assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
            assert!(s.pool.open_count() <= 2);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Random layouts (zero-length and padding files included), random
        /// block sizes, a tiny pool: what is read back is what was written,
        /// and every piece verifies.
        #[test]
        fn random_layout_round_trip(
            lens in proptest::collection::vec((0u64..3000, proptest::bool::weighted(0.15)), 1..12),
            pl in 1u64..5000,
            block in 1usize..4000,
            mmap in proptest::bool::ANY,
            seed in 0u64..1000,
        ) {
            proptest::prop_assume!(lens.iter().map(|l| l.0).sum::<u64>() > 0);
            let backend = if mmap { Backend::Mmap } else { Backend::PositionedIo };
            let dir = tempfile::tempdir().unwrap();
            let data = data_for(&lens, seed);
            let s = storage(layout_for(&lens, pl, &data), dir.path(), 2, backend);
            write_all(&s, &data, block);
            for p in 0..s.layout().piece_count() {
                proptest::prop_assert!(s.check_piece(p).unwrap());
                let plen = s.layout().piece_len(p);
                let off = (seed * 7919) % plen;
                let mut buf = vec![0u8; (plen - off) as usize];
                s.read_block(p, off, &mut buf).unwrap();
                let g = (p as u64 * pl + off) as usize;
                proptest::prop_assert_eq!(&buf[..], &data[g..g + buf.len()]);
            }
            proptest::prop_assert!(s.pool.open_count() <= 2);
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let lens = files();
        let data = data_for(&lens, 2);
        let s = storage(layout_for(&lens, 1024, &data), dir.path(), 4, Backend::Mmap);
        let n = s.layout().piece_count();
        assert!(matches!(
            s.write_block(n, 0, &[1]),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(
            s.write_block(0, 1000, &[0; 25]),
            Err(Error::OutOfRange { .. })
        ));
        let mut b = [0u8; 2];
        assert!(matches!(
            s.read_block(n - 1, s.layout().piece_len(n - 1) - 1, &mut b),
            Err(Error::OutOfRange { .. })
        ));
        assert!(matches!(s.hash_piece(n), Err(Error::OutOfRange { .. })));
    }

    #[test]
    fn verify_finds_flipped_bytes_and_missing_files() {
        for backend in SOURCES {
            let dir = tempfile::tempdir().unwrap();
            let lens = files();
            let data = data_for(&lens, 3);
            let layout = layout_for(&lens, 512, &data);
            let s = hashing(layout.clone(), dir.path(), 3, backend);
            write_all(&s, &data, 512);
            s.release_files();
            let pool = rayon_pool();
            let n = layout.piece_count();
            assert_eq!(s.verify_all(&pool, &|_, _| {}).unwrap(), vec![true; n]);
            // Flip one byte in f2 at file offset 100 (global 1100 -> piece 2)
            // and one at f4 offset 4999 (global 9076 -> piece 17).
            let flip = |rel: &str, off: u64| {
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(dir.path().join(rel))
                    .unwrap();
                let mut b = [0u8];
                f.read_exact_at(&mut b, off).unwrap();
                f.write_all_at(&[b[0] ^ 0x40], off).unwrap();
            };
            flip("d2/f2", 100);
            flip("d1/f4", 4999);
            let calls = AtomicUsize::new(0);
            let got = s
                .verify_all(&pool, &|done, total| {
                    assert!(done <= total && total == n);
                    calls.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
            assert_eq!(calls.load(Ordering::Relaxed), n);
            let bad: Vec<usize> = (0..n).filter(|&p| !got[p]).collect();
            assert_eq!(bad, vec![1100 / 512, 9076 / 512], "{backend:?}");
            // Missing file: its pieces are false, not an error.
            std::fs::remove_file(dir.path().join("d0/f0")).unwrap();
            s.release_files();
            let got = s.verify_pieces(&[0, 1, 2, 5], &pool, &|_, _| {}).unwrap();
            assert_eq!(got, vec![false, false, false, true]);
            let mut b = [0u8; 4];
            assert!(matches!(
                s.read_block(0, 0, &mut b),
                Err(Error::FileMissing { .. })
            ));
        }
    }

    #[test]
    fn truncated_file_is_an_error_not_sigbus() {
        for source in SOURCES {
            let backend = source.0;
            let dir = tempfile::tempdir().unwrap();
            let lens = vec![(100_000u64, false)];
            let data = data_for(&lens, 4);
            let s = hashing(layout_for(&lens, 16384, &data), dir.path(), 4, source);
            write_all(&s, &data, 16384);
            s.release_files();
            let mut buf = vec![0u8; 16384];
            s.read_block(5, 0, &mut buf).unwrap();
            assert_eq!(s.test_handle(0).unwrap().mapped(), backend == Backend::Mmap);
            // Truncate under the open (mapped, read-only) file.
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("d0/f0"))
                .unwrap();
            f.set_len(50_000).unwrap();
            let r = s.read_block(5, 0, &mut buf);
            assert!(
                matches!(
                    r,
                    Err(Error::FileTooShort {
                        expected: 100_000,
                        actual: 50_000,
                        ..
                    })
                ),
                "{backend:?}: {r:?}"
            );
            s.read_block(0, 0, &mut buf).unwrap();
            assert_eq!(buf, &data[..16384]);
            assert!(matches!(s.hash_piece(4), Err(Error::FileTooShort { .. })));
            let pool = rayon_pool();
            let v = s.verify_all(&pool, &|_, _| {}).unwrap();
            assert_eq!(v, vec![true, true, true, false, false, false, false]);
            // A file already short when opened is never mapped.
            s.release_files();
            s.read_block(0, 0, &mut buf).unwrap();
            assert!(!s.test_handle(0).unwrap().mapped());
        }
    }

    /// Positioned IO hashes from a read-only map made while the file was
    /// whole. Cut by someone else afterwards, the pieces past the cut fail
    /// with `FileTooShort` (the SIGBUS guard), the others still verify, and
    /// once the data is written again a fresh map hashes it correctly: the
    /// map that took zero pages is never read again.
    #[test]
    fn file_cut_under_its_hash_map_fails_those_pieces_only() {
        let dir = tempfile::tempdir().unwrap();
        let lens = vec![(100_000u64, false)];
        let data = data_for(&lens, 5);
        let s = hashing(
            layout_for(&lens, 16384, &data),
            dir.path(),
            4,
            (Backend::PositionedIo, HashSource::Map),
        );
        write_all(&s, &data, 16384);
        // Hashing maps the file (read-only, whole length).
        assert!(s.check_piece(6).unwrap());
        assert!(s.test_handle(0).unwrap().hash_map().is_some());
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("d0/f0"))
            .unwrap()
            .set_len(50_000)
            .unwrap();
        // Piece 2 lies before the cut, piece 4 after it, piece 3 across it.
        let mut r = s.hash_pieces(&[2, 4]).into_iter();
        let (before, after) = (r.next().unwrap(), r.next().unwrap());
        assert_eq!(before.unwrap(), s.layout().piece_hash(2));
        assert!(
            matches!(
                after,
                Err(Error::FileTooShort {
                    expected: 100_000,
                    actual: 50_000,
                    ..
                })
            ),
            "{after:?}"
        );
        assert!(matches!(s.hash_piece(3), Err(Error::FileTooShort { .. })));
        let pool = rayon_pool();
        let v = s.verify_all(&pool, &|_, _| {}).unwrap();
        assert_eq!(v, vec![true, true, true, false, false, false, false]);
        // Written again: every piece verifies, through a new map.
        write_all(&s, &data, 16384);
        let v = s.verify_all(&pool, &|_, _| {}).unwrap();
        assert_eq!(v, vec![true; 7]);
        assert!(s.test_handle(0).unwrap().hash_map().is_some());
    }

    /// Pieces that share a page of a map cut under them: whichever lane
    /// faults, the others that read the zero page it left (without
    /// faulting themselves) fail too, and a piece whose bytes now lie past
    /// the end of the file (read as zeros from a partial last page, no
    /// fault at all) fails: nobody returns the hash of zeros.
    #[test]
    fn every_reader_of_a_cut_map_fails_never_a_wrong_hash() {
        for cut in [0u64, 3000] {
            let dir = tempfile::tempdir().unwrap();
            let lens = vec![(16 * 1024u64, false)];
            let data = data_for(&lens, 15);
            let s = hashing(
                layout_for(&lens, 2048, &data),
                dir.path(),
                4,
                (Backend::PositionedIo, HashSource::Map),
            );
            write_all(&s, &data, 2048);
            assert!(s.check_piece(0).unwrap());
            assert!(s.test_handle(0).unwrap().hash_map().is_some());
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("d0/f0"))
                .unwrap()
                .set_len(cut)
                .unwrap();
            // Pieces 0 and 1 share page 0; piece 2 starts page 1.
            let r = s.hash_pieces(&[0, 1, 2]);
            if cut == 0 {
                assert!(
                    r.iter()
                        .all(|h| h.as_ref().is_err_and(Error::is_missing_data)),
                    "{r:?}"
                );
            } else {
                assert_eq!(r[0].as_ref().unwrap(), &s.layout().piece_hash(0));
                assert!(
                    r[1..]
                        .iter()
                        .all(|h| h.as_ref().is_err_and(Error::is_missing_data)),
                    "{r:?}"
                );
            }
        }
    }

    /// `HashSource::Map` without the guard installed reads instead (the
    /// guard is never installed implicitly; checked in a child process in
    /// `sigbus.rs`), and the default is `Read`.
    #[test]
    fn the_default_hash_source_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let lens = vec![(4096u64, false)];
        let data = data_for(&lens, 1);
        let s = storage(
            layout_for(&lens, 1024, &data),
            dir.path(),
            4,
            Backend::PositionedIo,
        );
        assert_eq!(s.hash_source(), HashSource::Read);
        write_all(&s, &data, 1024);
        assert!(s.check_piece(3).unwrap());
        // Reads only: no map made for hashing.
        assert!(s.test_handle(0).unwrap().upload_map_made().is_none());
    }

    #[test]
    fn file_deleted_while_open_is_missing_then_recreated() {
        for backend in BACKENDS {
            let dir = tempfile::tempdir().unwrap();
            let lens = vec![(40_000u64, false)];
            let data = data_for(&lens, 8);
            let s = storage(layout_for(&lens, 16384, &data), dir.path(), 4, backend);
            write_all(&s, &data, 16384);
            s.flush_piece(0).unwrap();
            let mut buf = vec![0u8; 100];
            s.read_block(1, 0, &mut buf).unwrap();
            let path = dir.path().join("d0/f0");
            std::fs::remove_file(&path).unwrap();
            // The open handle must not serve the orphaned inode.
            let r = s.read_block(1, 0, &mut buf);
            assert!(
                matches!(r, Err(Error::FileMissing { .. })),
                "{backend:?}: {r:?}"
            );
            // Writes after a deletion land in a new file; a flush of bytes
            // written to a deleted file fails instead of claiming durability.
            s.write_block(0, 0, &data[..16384]).unwrap();
            let held = s.test_handle(0).unwrap();
            std::fs::remove_file(&path).unwrap();
            held.write_at(16384, &data[16384..32768]).ok();
            assert!(matches!(s.flush_piece(1), Err(Error::FileMissing { .. })));
            drop(held);
            write_all(&s, &data, 16384);
            s.flush_piece(1).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data);
        }
    }

    #[test]
    fn directory_deleted_or_replaced_after_its_first_file() {
        for backend in BACKENDS {
            let dir = tempfile::tempdir().unwrap();
            let outside = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            let files = ["a/x", "a/y", "a/z"]
                .iter()
                .map(|p| crate::FileSpec {
                    path: PathBuf::from(p),
                    length: 10,
                    padding: false,
                })
                .collect();
            let data = random_bytes(30, 9);
            let hashes = data.chunks(10).map(|c| crate::hash_blocks([c])).collect();
            let layout = Layout::new(files, 10, hashes).unwrap();
            let s = storage(layout, &root, 8, backend);
            s.write_block(0, 0, &data[..10]).unwrap();
            // The directory of a/x goes away (its descriptor stays cached):
            // the next file is created in a new directory at the same path.
            std::fs::remove_dir_all(root.join("a")).unwrap();
            s.write_block(1, 0, &data[10..20]).unwrap();
            assert_eq!(std::fs::read(root.join("a/y")).unwrap(), &data[10..20]);
            let mut b = [0u8; 10];
            assert!(matches!(
                s.read_block(0, 0, &mut b),
                Err(Error::FileMissing { .. })
            ));
            s.read_block(1, 0, &mut b).unwrap();
            assert_eq!(b, data[10..20]);
            // Replaced by a symlink leading out: refused, nothing written there.
            std::fs::remove_dir_all(root.join("a")).unwrap();
            symlink(outside.path(), root.join("a")).unwrap();
            let r = s.write_block(2, 0, &data[20..]);
            assert!(matches!(r, Err(Error::PathEscapes { .. })), "{r:?}");
            assert!(!outside.path().join("z").exists());
        }
    }

    /// Descriptors of this process open on `dir` or below it.
    fn fds_under(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|p| p.starts_with(dir))
            .count()
    }

    #[test]
    fn directories_kept_open_are_bounded_across_storages() {
        // 200 torrents of one file in a subdirectory, all read once, as a
        // daemon seeding 200 torrents does: the session's pool keeps 8
        // files, and at most 8 storages keep directories open (before,
        // each of the 200 kept its own).
        let dir = tempfile::tempdir().unwrap();
        let pool = Arc::new(FilePool::new(8));
        let mut all = Vec::new();
        for k in 0..200 {
            let root = dir.path().join(format!("t{k}"));
            let files = vec![crate::FileSpec {
                path: PathBuf::from("sub/f"),
                length: 10,
                padding: false,
            }];
            let data = random_bytes(10, k);
            let layout = Layout::new(files, 16, vec![crate::hash_blocks([&data[..]])]).unwrap();
            let s = Storage::new(layout, root, Arc::clone(&pool), Backend::PositionedIo).unwrap();
            s.write_block(0, 0, &data).unwrap();
            let mut b = [0u8; 10];
            s.read_block(0, 0, &mut b).unwrap();
            assert_eq!(b[..], data[..]);
            all.push(s);
        }
        let open = fds_under(dir.path());
        // 8 files, and each of at most 8 storages its root's subdirectory.
        assert!(open <= 16, "{open} descriptors open under the data dir");
        assert!(pool.dir_budget().holders() <= 8);
        // A storage whose directories were closed opens them again.
        let mut b = [0u8; 10];
        all[0].read_block(0, 0, &mut b).unwrap();
        assert_eq!(b[..], random_bytes(10, 0)[..]);
        drop(all);
        assert_eq!(fds_under(dir.path()), 0);
    }

    #[test]
    fn flush_pieces_syncs_new_files_in_nested_directories() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ["top", "a/b/x", "a/b/y", "a/c/z", "d/w"];
        let files = paths
            .iter()
            .map(|p| crate::FileSpec {
                path: PathBuf::from(p),
                length: 7,
                padding: false,
            })
            .collect();
        let data = random_bytes(35, 11);
        let hashes = data.chunks(16).map(|c| crate::hash_blocks([c])).collect();
        let layout = Layout::new(files, 16, hashes).unwrap();
        let s = storage(layout, dir.path(), 2, Backend::PositionedIo);
        write_all(&s, &data, 16);
        assert_eq!(s.unsynced_dirs.lock().len(), 5);
        assert_eq!(s.flush_pieces(&[0, 1, 2]).unwrap(), Vec::<usize>::new());
        assert!(s.unsynced_dirs.lock().is_empty());
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(
                std::fs::read(dir.path().join(p)).unwrap(),
                &data[i * 7..i * 7 + 7]
            );
        }
        // A symlinked directory met while syncing is refused.
        let s = storage(
            s.layout().clone(),
            &dir.path().join("r"),
            2,
            Backend::PositionedIo,
        );
        write_all(&s, &data, 16);
        std::fs::rename(dir.path().join("r/a/b"), dir.path().join("moved")).unwrap();
        symlink(dir.path().join("moved"), dir.path().join("r/a/b")).unwrap();
        assert!(matches!(
            s.flush_pieces(&[0, 1, 2]),
            Err(Error::PathEscapes { .. })
        ));
    }

    #[test]
    fn prepared_files_exist_reserved_and_their_directories_get_synced() {
        let dir = tempfile::tempdir().unwrap();
        let lens = files();
        let data = data_for(&lens, 12);
        let s = storage(layout_for(&lens, 1024, &data), dir.path(), 2, Backend::Mmap);
        for i in 0..lens.len() {
            s.prepare_file(i).unwrap();
        }
        assert_eq!(s.pool.open_count(), 0);
        for (i, &(l, pad)) in lens.iter().enumerate() {
            let path = dir.path().join(format!("d{}/f{i}", i % 3));
            if pad || l == 0 {
                assert!(!path.exists(), "{i}");
            } else {
                assert_eq!(std::fs::metadata(&path).unwrap().len(), l);
            }
        }
        // Created by prepare_file: their directories are synced at the flush.
        assert_eq!(s.unsynced_dirs.lock().len(), 4);
        write_all(&s, &data, 500);
        let all: Vec<usize> = (0..s.layout().piece_count()).collect();
        assert!(s.flush_pieces(&all).unwrap().is_empty());
        assert!(s.unsynced_dirs.lock().is_empty());
        for p in all {
            assert!(s.check_piece(p).unwrap());
        }
        assert!(matches!(
            s.prepare_file(lens.len()),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn unflushed_bytes_counts_what_a_flush_would_write() {
        // tmpfs pages never leave the page cache: nothing to measure there.
        let Some(dir) = bittern_testkit::disk_tempdir() else {
            return;
        };
        let lens = files();
        let data = data_for(&lens, 13);
        let s = storage(
            layout_for(&lens, 1024, &data),
            dir.path(),
            4,
            Backend::PositionedIo,
        );
        let all: Vec<usize> = (0..s.layout().piece_count()).collect();
        // Nothing written yet: nothing to flush (absent files count as 0).
        let Some(before) = s.unflushed_bytes(&all).unwrap() else {
            bittern_testkit::require("cachestat(2) (Linux 6.5+)", false);
            return;
        };
        assert_eq!(before, 0);
        write_all(&s, &data, 700);
        let dirty = s.unflushed_bytes(&all).unwrap().unwrap();
        assert!(dirty > 0, "freshly written data counted as flushed");
        assert!(s.flush_pieces(&all).unwrap().is_empty());
        assert_eq!(s.unflushed_bytes(&all).unwrap(), Some(0));
        assert!(matches!(
            s.unflushed_bytes(&[all.len()]),
            Err(Error::OutOfRange { .. })
        ));
    }

    #[test]
    fn refuses_symlinks_below_root() {
        for backend in BACKENDS {
            let dir = tempfile::tempdir().unwrap();
            let outside = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            std::fs::create_dir_all(root.join("d0")).unwrap();
            let lens = vec![(10u64, false), (10, false)];
            let data = data_for(&lens, 5);
            let s = storage(layout_for(&lens, 20, &data), &root, 4, backend);
            // File symlink pointing outside.
            let target = outside.path().join("victim");
            std::fs::write(&target, b"untouched!").unwrap();
            symlink(&target, root.join("d0/f0")).unwrap();
            // Directory symlink pointing outside.
            symlink(outside.path(), root.join("d1")).unwrap();
            let r = s.write_block(0, 0, &data);
            assert!(matches!(r, Err(Error::PathEscapes { .. })), "{r:?}");
            std::fs::remove_file(root.join("d0/f0")).unwrap();
            let r = s.write_block(0, 0, &data);
            assert!(matches!(r, Err(Error::PathEscapes { .. })), "{r:?}");
            let mut b = [0u8; 20];
            assert!(matches!(
                s.read_block(0, 0, &mut b),
                Err(Error::PathEscapes { .. })
            ));
            assert_eq!(std::fs::read(&target).unwrap(), b"untouched!");
            assert!(!outside.path().join("f1").exists());
        }
    }

    #[test]
    fn directory_in_place_of_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d0/f0")).unwrap();
        let lens = vec![(10u64, false)];
        let data = data_for(&lens, 6);
        let s = storage(layout_for(&lens, 16, &data), dir.path(), 4, Backend::Mmap);
        assert!(matches!(
            s.write_block(0, 0, &data),
            Err(Error::IsADirectory { .. })
        ));
        let mut b = [0u8; 10];
        assert!(matches!(
            s.read_block(0, 0, &mut b),
            Err(Error::IsADirectory { .. })
        ));
        let pool = rayon_pool();
        assert!(matches!(
            s.verify_all(&pool, &|_, _| {}),
            Err(Error::IsADirectory { .. })
        ));
    }
}
