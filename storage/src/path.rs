//! Opening files under the storage root without ever leaving it.
//!
//! Paths were checked by [`Layout::new`](crate::Layout::new) to be relative
//! plain names. On top of that every directory below the root is entered with
//! `openat(O_DIRECTORY | O_NOFOLLOW)` and the file itself is opened with
//! `O_NOFOLLOW`, so a symbolic link anywhere below the root (planted before
//! or during the download) is refused with [`Error::PathEscapes`] instead of
//! being followed. Walking by directory descriptors also closes the
//! check-then-open race a `canonicalize` + prefix test would have. The root
//! itself is the user's choice and may be a symlink.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read only; missing directories or files are [`Error::FileMissing`].
    Read,
    /// Read and write; missing directories and the file are created.
    Write,
}

/// A file opened under the root.
#[derive(Debug)]
pub(crate) struct Opened {
    pub file: File,
    /// True when this call created the file (its directory entry is not yet durable).
    pub created: bool,
    /// `fstat` of the file just after opening it.
    pub stat: libc::stat,
}

/// The last component of `rel` as a C string (`full` names it in errors).
fn leaf_name(rel: &Path, full: &Path) -> Result<CString> {
    match rel.file_name() {
        Some(n) => cstr(n, full),
        None => Err(Error::PathEscapes {
            path: full.to_path_buf(),
        }),
    }
}

fn cstr(name: &OsStr, full: &Path) -> Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| Error::PathEscapes {
        path: full.to_path_buf(),
    })
}

fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

/// `openat` retrying on `EINTR`.
fn openat(
    dir: libc::c_int,
    name: &CString,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: `name` is a valid NUL-terminated string; `dir` is an open
        // directory descriptor (or AT_FDCWD) owned by the caller for the call.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by openat and is owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// True when `name` inside `dir` is a symbolic link.
fn is_symlink_at(dir: libc::c_int, name: &CString) -> bool {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dir fd, NUL-terminated name, `st` is a valid out pointer.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    r == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFLNK
}

/// Maps an `openat` failure on component `name` to a typed error.
fn open_error(dir: libc::c_int, name: &CString, full: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) if is_symlink_at(dir, name) => Error::PathEscapes {
            path: full.to_path_buf(),
        },
        _ => Error::from_io(full, e),
    }
}

/// Opens the root directory (creating it when writing).
fn open_root(root: &Path, access: Access) -> Result<OwnedFd> {
    let c = CString::new(root.as_os_str().as_bytes()).map_err(|_| Error::PathEscapes {
        path: root.to_path_buf(),
    })?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    match openat(libc::AT_FDCWD, &c, flags, 0) {
        Ok(fd) => Ok(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Write => {
            std::fs::create_dir_all(root).map_err(|e| Error::from_io(root, e))?;
            openat(libc::AT_FDCWD, &c, flags, 0).map_err(|e| Error::from_io(root, e))
        }
        Err(e) => Err(Error::from_io(root, e)),
    }
}

/// Walks from `root` to the parent directory of `rel`, refusing symlinks,
/// creating missing directories when writing. Returns the parent directory
/// descriptor and the final name.
fn walk_parent(root: &Path, rel: &Path, access: Access) -> Result<(OwnedFd, CString, PathBuf)> {
    crate::layout::check_relative(rel)?;
    let full = root.join(rel);
    let mut dir = open_root(root, access)?;
    let mut names: Vec<&OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(n) => n,
            // check_relative admitted only Normal components.
            _ => OsStr::new(""),
        })
        .collect();
    let Some(last) = names.pop() else {
        return Err(Error::PathEscapes { path: full });
    };
    let dflags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    for name in names {
        let c = cstr(name, &full)?;
        let next = match openat(dir.as_raw_fd(), &c, dflags, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Write => {
                // SAFETY: valid dir fd and NUL-terminated name.
                let r = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) };
                if r != 0 {
                    let e = last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(Error::from_io(&full, e));
                    }
                }
                openat(dir.as_raw_fd(), &c, dflags, 0)
                    .map_err(|e| open_error(dir.as_raw_fd(), &c, &full, e))?
            }
            Err(e) => return Err(open_error(dir.as_raw_fd(), &c, &full, e)),
        };
        dir = next;
    }
    let c = cstr(last, &full)?;
    Ok((dir, c, full))
}

/// Opens file `name` of directory `dir` (`full` is its path, for errors)
/// for `access`, without following a symlink.
fn open_in(dir: &OwnedFd, name: &CString, full: &Path, access: Access) -> Result<Opened> {
    // O_NONBLOCK: opening a FIFO must not block; it has no effect on the
    // regular files we accept below.
    let base = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let (fd, created) = match access {
        Access::Read => (
            openat(dir.as_raw_fd(), name, base | libc::O_RDONLY, 0)
                .map_err(|e| open_error(dir.as_raw_fd(), name, full, e))?,
            false,
        ),
        Access::Write => match openat(dir.as_raw_fd(), name, base | libc::O_RDWR, 0) {
            Ok(fd) => (fd, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let flags = base | libc::O_RDWR | libc::O_CREAT | libc::O_EXCL;
                match openat(dir.as_raw_fd(), name, flags, 0o644) {
                    Ok(fd) => (fd, true),
                    // Another thread created it meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                        openat(dir.as_raw_fd(), name, base | libc::O_RDWR, 0)
                            .map_err(|e| open_error(dir.as_raw_fd(), name, full, e))?,
                        false,
                    ),
                    Err(e) => return Err(open_error(dir.as_raw_fd(), name, full, e)),
                }
            }
            Err(e) => return Err(open_error(dir.as_raw_fd(), name, full, e)),
        },
    };
    let file = File::from(fd);
    let stat = fstat(&file, full)?;
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => Ok(Opened {
            file,
            created,
            stat,
        }),
        libc::S_IFDIR => Err(Error::IsADirectory {
            path: full.to_path_buf(),
        }),
        _ => Err(Error::NotARegularFile {
            path: full.to_path_buf(),
        }),
    }
}

/// `fstat` of an open file.
pub(crate) fn fstat(file: &File, path: &Path) -> Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the call; `st` is a valid out pointer.
    if unsafe { libc::fstat(file.as_raw_fd(), &mut st) } != 0 {
        return Err(Error::from_io(path, last_os_error()));
    }
    Ok(st)
}

/// How many directories a [`DirCache`] keeps open.
const DIR_CACHE: usize = 32;

/// The storage root and the most recently used directories below it, kept
/// open so that opening the next file of a directory is one `openat`
/// instead of a walk from the root (for a torrent of many small files that
/// walk was most of the cost of opening each file).
///
/// A cached descriptor was reached by the same symlink-refusing walk as a
/// fresh open, so a symlink planted later in its place is never
/// followed. When an open fails with `ENOENT` and the cached directory
/// turns out to be deleted, the entry is dropped and the path walked again
/// (so a write recreates the directory, as without the cache). A directory
/// *renamed* away keeps being used until it falls out of the cache, as an
/// open file in the [`FilePool`](crate::FilePool) keeps its old inode.
///
/// Across torrents the caches holding descriptors are bounded by a
/// session-wide [`DirBudget`] (the file pool's): without it every torrent
/// that ever opened or stamped a file kept its directories open, one
/// descriptor or more per torrent for as long as it stayed (2,000 idle
/// seeding torrents of a daemon held 2,000).
#[derive(Debug)]
pub(crate) struct DirCache {
    root: PathBuf,
    /// (path relative to the root, descriptor), most recently used first.
    dirs: Mutex<Vec<(PathBuf, Arc<OwnedFd>)>>,
    /// Its key in `budget`.
    id: u64,
    budget: Option<Arc<DirBudget>>,
    me: Weak<DirCache>,
}

/// The session-wide bound on [`DirCache`]s holding descriptors: at most
/// `holders` caches at once; a cache that takes a descriptor beyond that
/// closes those of the cache used least recently.
#[derive(Debug)]
pub(crate) struct DirBudget {
    holders: usize,
    inner: Mutex<BudgetInner>,
}

#[derive(Debug, Default)]
struct BudgetInner {
    /// Cache id -> (the cache, last use).
    caches: HashMap<u64, (Weak<DirCache>, u64)>,
    tick: u64,
}

impl DirBudget {
    /// A budget of `holders` caches (at least 1).
    pub(crate) fn new(holders: usize) -> DirBudget {
        DirBudget {
            holders: holders.max(1),
            inner: Mutex::default(),
        }
    }

    /// Caches holding descriptors now (or dropped since, not yet pruned).
    #[cfg(test)]
    pub(crate) fn holders(&self) -> usize {
        self.inner.lock().caches.len()
    }

    /// Records a use of cache `id`; closes the descriptors of the least
    /// recently used others beyond the bound.
    fn touch(&self, id: u64, cache: &Weak<DirCache>) {
        let victims: Vec<Weak<DirCache>> = {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            inner.caches.insert(id, (cache.clone(), tick));
            let mut out = Vec::new();
            while inner.caches.len() > self.holders {
                let Some(lru) = inner
                    .caches
                    .iter()
                    .filter(|(k, _)| **k != id)
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                if let Some((w, _)) = inner.caches.remove(&lru) {
                    out.push(w);
                }
            }
            out
        };
        // Closed outside the budget's lock (each cache takes its own).
        for w in victims {
            if let Some(c) = w.upgrade() {
                c.clear();
            }
        }
    }
}

impl DirCache {
    /// A cache for files under `root`, bounded with the others by
    /// `budget` (as cache `id`); opens nothing yet.
    pub(crate) fn new(root: PathBuf, id: u64, budget: Option<Arc<DirBudget>>) -> Arc<DirCache> {
        Arc::new_cyclic(|me| DirCache {
            root,
            dirs: Mutex::new(Vec::with_capacity(DIR_CACHE)),
            id,
            budget,
            me: me.clone(),
        })
    }

    /// The root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Drops every cached descriptor.
    pub(crate) fn clear(&self) {
        let old = std::mem::take(&mut *self.dirs.lock());
        drop(old);
    }

    fn cached(&self, rel_dir: &Path) -> Option<Arc<OwnedFd>> {
        let mut dirs = self.dirs.lock();
        let i = dirs.iter().position(|(p, _)| p == rel_dir)?;
        let hit = dirs.remove(i);
        let fd = Arc::clone(&hit.1);
        dirs.insert(0, hit);
        Some(fd)
    }

    fn insert(&self, rel_dir: &Path, fd: Arc<OwnedFd>) {
        {
            let mut dirs = self.dirs.lock();
            dirs.retain(|(p, _)| p != rel_dir);
            dirs.insert(0, (rel_dir.to_path_buf(), fd));
            dirs.truncate(DIR_CACHE);
        }
        if let Some(b) = &self.budget {
            b.touch(self.id, &self.me);
        }
    }

    fn forget(&self, rel_dir: &Path) {
        let old: Vec<_> = {
            let mut dirs = self.dirs.lock();
            let (gone, keep) = std::mem::take(&mut *dirs)
                .into_iter()
                .partition(|(p, _)| p == rel_dir);
            *dirs = keep;
            gone
        };
        drop(old);
    }

    /// Opens `root/rel` for `access` without following symlinks below the
    /// root, starting from the cached descriptor of its directory when
    /// there is one. Writing creates missing directories and the file.
    ///
    /// # Errors
    /// [`Error::FileMissing`] (read of a missing file), [`Error::PathEscapes`]
    /// (symlink on the way), [`Error::IsADirectory`], [`Error::NotARegularFile`],
    /// [`Error::PermissionDenied`], [`Error::DiskFull`], [`Error::Io`].
    pub(crate) fn open(&self, rel: &Path, access: Access) -> Result<Opened> {
        crate::layout::check_relative(rel)?;
        let rel_dir = rel.parent().unwrap_or(Path::new(""));
        if let Some(dir) = self.cached(rel_dir) {
            let full = self.root.join(rel);
            let name = leaf_name(rel, &full)?;
            match open_in(&dir, &name, &full, access) {
                // The directory was deleted (and maybe recreated) since it
                // was cached: walk the path again.
                Err(Error::FileMissing { .. }) if dir_deleted(&dir) => self.forget(rel_dir),
                r => return r,
            }
        }
        let (dir, name, full) = walk_parent(&self.root, rel, access)?;
        let opened = open_in(&dir, &name, &full, access)?;
        self.insert(rel_dir, Arc::new(dir));
        Ok(opened)
    }

    /// `fstatat` of `root/rel` without following symlinks below the root,
    /// from the cached directory when there is one. `Ok(None)` when the file
    /// (or a parent directory) does not exist.
    ///
    /// # Errors
    /// [`Error::PathEscapes`] (symlink on the way), other IO errors.
    pub(crate) fn stat(&self, rel: &Path) -> Result<Option<libc::stat>> {
        crate::layout::check_relative(rel)?;
        let rel_dir = rel.parent().unwrap_or(Path::new(""));
        if let Some(dir) = self.cached(rel_dir) {
            let full = self.root.join(rel);
            let name = leaf_name(rel, &full)?;
            match stat_at(&dir, &name, &full)? {
                None if dir_deleted(&dir) => self.forget(rel_dir),
                st => return Ok(st),
            }
        }
        let (dir, name, full) = match walk_parent(&self.root, rel, Access::Read) {
            Ok(x) => x,
            Err(Error::FileMissing { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = stat_at(&dir, &name, &full)?;
        self.insert(rel_dir, Arc::new(dir));
        Ok(st)
    }
}

/// True when directory `dir` has been deleted (or cannot be examined).
fn dir_deleted(dir: &OwnedFd) -> bool {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the call; `st` is a valid out pointer.
    let r = unsafe { libc::fstat(dir.as_raw_fd(), &mut st) };
    r != 0 || st.st_nlink == 0
}

/// `fstatat` of `name` in `dir` without following a symlink; `Ok(None)`
/// when it does not exist.
fn stat_at(dir: &OwnedFd, name: &CString, full: &Path) -> Result<Option<libc::stat>> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dir fd, NUL-terminated name, `st` is a valid out pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        let e = last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(Error::from_io(full, e));
    }
    Ok(Some(st))
}

/// fsyncs every directory from `root` down to the parent of `rel`, making a
/// newly created file's directory entries durable.
pub(crate) fn sync_parents(root: &Path, rel: &Path) -> Result<()> {
    sync_parents_all(root, [rel])
}

/// fsyncs, once each, every directory from `root` down to the parents of
/// all of `rels` (for many new files in a few directories: one fsync per
/// directory rather than one per directory per file).
pub(crate) fn sync_parents_all<'a>(
    root: &Path,
    rels: impl IntoIterator<Item = &'a Path>,
) -> Result<()> {
    let sync = |fd: &OwnedFd, p: &Path| -> Result<()> {
        // SAFETY: fd is an open descriptor owned by the caller.
        if unsafe { libc::fsync(fd.as_raw_fd()) } != 0 {
            return Err(Error::from_io(p, last_os_error()));
        }
        Ok(())
    };
    // Every directory below the root on the way to a file, each once.
    let mut dirs: BTreeSet<Vec<&OsStr>> = BTreeSet::new();
    for rel in rels {
        let mut names: Vec<&OsStr> = rel.components().map(|c| c.as_os_str()).collect();
        names.pop();
        for i in 1..=names.len() {
            dirs.insert(names[..i].to_vec());
        }
    }
    let root_fd = open_root(root, Access::Read)?;
    sync(&root_fd, root)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    for names in dirs {
        let full = names.iter().fold(root.to_path_buf(), |p, n| p.join(n));
        let mut dir: Option<OwnedFd> = None;
        for name in &names {
            let c = cstr(name, &full)?;
            let parent = dir.as_ref().unwrap_or(&root_fd).as_raw_fd();
            dir = Some(openat(parent, &c, flags, 0).map_err(|e| open_error(parent, &c, &full, e))?);
        }
        if let Some(d) = &dir {
            sync(d, &full)?;
        }
    }
    Ok(())
}
