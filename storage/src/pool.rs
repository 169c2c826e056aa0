//! [`FilePool`]: the session-wide, bounded cache of open files and maps.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::file::OpenFile;
use crate::path::DirBudget;

/// Default bound on open files (and their maps), in the mainline spirit.
pub const DEFAULT_MAX_OPEN: usize = 64;

/// (storage id, file index).
pub(crate) type Key = (u64, usize);

#[derive(Debug)]
struct Slot {
    file: Arc<OpenFile>,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<Key, Slot>,
    tick: u64,
}

/// A bounded LRU of open data files, shared by every torrent and thread of a
/// session (as `Arc<FilePool>`).
///
/// Files are opened lazily, read-only until a write needs them writable. At
/// most `max_open` files (each with at most one memory map) are kept open;
/// the least recently used one is closed to make room. An operation in
/// progress keeps its file alive until it finishes, so the process-wide
/// count can exceed the bound by at most one file per thread that is inside
/// a storage call at that moment.
///
/// Files are opened outside the pool lock, so a slow open (or `fallocate`)
/// does not stall other threads.
#[derive(Debug)]
///
/// It also bounds the directories the torrents' storages keep open (for
/// opening their next file with one `openat`): at most `max_open`
/// storages hold directory descriptors at once.
pub struct FilePool {
    max_open: usize,
    inner: Mutex<Inner>,
    dirs: Arc<DirBudget>,
}

impl Default for FilePool {
    fn default() -> Self {
        FilePool::new(DEFAULT_MAX_OPEN)
    }
}

impl FilePool {
    /// A pool keeping at most `max_open` files open (at least 1).
    pub fn new(max_open: usize) -> FilePool {
        FilePool {
            max_open: max_open.max(1),
            inner: Mutex::new(Inner::default()),
            dirs: Arc::new(DirBudget::new(max_open)),
        }
    }

    /// The bound given to [`FilePool::new`].
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// The bound on storages holding directory descriptors.
    pub(crate) fn dir_budget(&self) -> &Arc<DirBudget> {
        &self.dirs
    }

    /// Files currently cached open.
    pub fn open_count(&self) -> usize {
        self.inner.lock().slots.len()
    }

    /// The cached file for `key` if it is open with enough access, else one
    /// opened by `open` (and cached, evicting the least recently used).
    pub(crate) fn get(
        &self,
        key: Key,
        need_write: bool,
        open: impl FnOnce() -> Result<OpenFile>,
    ) -> Result<Arc<OpenFile>> {
        {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            if let Some(slot) = inner.slots.get_mut(&key) {
                if slot.file.writable() || !need_write {
                    slot.last_used = tick;
                    return Ok(Arc::clone(&slot.file));
                }
            }
        }
        let file = Arc::new(open()?);
        let mut evicted = Vec::new();
        {
            let mut inner = self.inner.lock();
            inner.tick += 1;
            let tick = inner.tick;
            let slot = Slot {
                file: Arc::clone(&file),
                last_used: tick,
            };
            if let Some(old) = inner.slots.insert(key, slot) {
                evicted.push(old.file);
            }
            while inner.slots.len() > self.max_open {
                let Some(victim) = inner
                    .slots
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| *k)
                else {
                    break;
                };
                if let Some(old) = inner.slots.remove(&victim) {
                    evicted.push(old.file);
                }
            }
        }
        // Unmap and close outside the lock.
        drop(evicted);
        Ok(file)
    }

    /// The cached file for `key` if it is open, without opening it or
    /// counting this as a use.
    pub(crate) fn open_file(&self, key: Key) -> Option<Arc<OpenFile>> {
        self.inner
            .lock()
            .slots
            .get(&key)
            .map(|s| Arc::clone(&s.file))
    }

    /// Drops the cached entry for `key` (after it proved stale: deleted or
    /// truncated under us), so the next call reopens the path.
    pub(crate) fn forget(&self, key: Key) {
        let old = self.inner.lock().slots.remove(&key);
        drop(old);
    }

    /// Closes every file of storage `owner`.
    pub(crate) fn release(&self, owner: u64) {
        let evicted: Vec<_> = {
            let mut inner = self.inner.lock();
            let keys: Vec<Key> = inner
                .slots
                .keys()
                .filter(|k| k.0 == owner)
                .copied()
                .collect();
            keys.into_iter()
                .filter_map(|k| inner.slots.remove(&k))
                .collect()
        };
        drop(evicted);
    }
}
