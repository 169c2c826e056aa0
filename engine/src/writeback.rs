//! A session-wide thread that starts writing verified pieces back to disk,
//! a set delay after they passed.
//!
//! `sync_file_range(SYNC_FILE_RANGE_WRITE)` submits the IO in the calling
//! thread and can block on a busy device, so the controller must not call
//! it. It queues the piece here instead, stamped with when it is due; a
//! full queue drops the hint (the flush before recording pieces as had
//! writes whatever is left, and the kernel writes dirty pages back on its
//! own). At shutdown the queued hints are dropped: the kernel writes the
//! data back anyway, and an exit must not wait for a busy disk.
//!
//! Why a delay ([`SessionConfig::writeback_delay`]): writeback costs CPU
//! (page cache scans, extent mapping, block IO submission), and on a
//! machine whose cores are busy receiving and hashing it competes with the
//! transfer. A burst shorter than the delay finishes first and its data
//! goes to disk afterwards, as it would by the kernel's own flusher; a long
//! download still streams to disk steadily, at most one delay behind, so
//! a resume save or a stop finds at most that much left to flush.
//!
//! [`SessionConfig::writeback_delay`]: crate::SessionConfig::writeback_delay

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_storage::Storage;
use crossbeam_channel::{select, unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError};

/// Hints queued at most; beyond this they are dropped. At 256 KiB pieces
/// this is 16 GiB of data, more than any delay lets pile up.
const QUEUE: usize = 65_536;

/// One piece to start writing back once `due`. A torrent removed meanwhile
/// leaves its hints void rather than kept alive.
struct Hint {
    storage: Weak<Storage>,
    piece: usize,
    due: Instant,
}

pub(crate) struct Writeback {
    tx: Option<Sender<Hint>>,
    /// Never sent on: dropping it wakes the thread to leave.
    stop: Option<Sender<()>>,
    queued: Arc<AtomicUsize>,
    delay: Duration,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    /// Starts the thread; each hinted piece starts going to disk `delay`
    /// after its hint.
    pub(crate) fn spawn(delay: Duration) -> std::io::Result<Writeback> {
        let (tx, rx) = unbounded::<Hint>();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let queued = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&queued);
        let thread = std::thread::Builder::new()
            .name("bittern-writeback".into())
            .spawn(move || run(&rx, &stopped, &count))?;
        Ok(Writeback {
            tx: Some(tx),
            stop: Some(stop),
            queued,
            delay,
            thread: Some(thread),
        })
    }

    /// Asks for `piece` to start going to disk once the delay has passed.
    /// Never blocks.
    pub(crate) fn hint(&self, storage: &Arc<Storage>, piece: usize) {
        let Some(tx) = &self.tx else {
            return;
        };
        // A delay past the end of time: never (the kernel writes it back).
        let Some(due) = Instant::now().checked_add(self.delay) else {
            return;
        };
        if self.queued.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let hint = Hint {
            storage: Arc::downgrade(storage),
            piece,
            due,
        };
        if tx.send(hint).is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The thread: hints arrive in the order they fall due (one delay for
/// all), so it waits for the oldest, writes it, and takes the next.
fn run(rx: &Receiver<Hint>, stopped: &Receiver<()>, queued: &AtomicUsize) {
    loop {
        let hint = select! {
            recv(rx) -> h => match h {
                Ok(h) => h,
                Err(_) => return,
            },
            recv(stopped) -> _ => return,
        };
        queued.fetch_sub(1, Ordering::Relaxed);
        let wait = hint.due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            match stopped.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
        // Both channels may be ready at a shutdown, and `select!` picks
        // either: never start IO once asked to stop.
        if stopped.try_recv() == Err(TryRecvError::Disconnected) {
            return;
        }
        if let Some(storage) = hint.storage.upgrade() {
            storage.start_writeback(hint.piece);
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.take();
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_storage::{Backend, FilePool, FileSpec, Layout};
    use std::path::{Path, PathBuf};

    const PIECE: u64 = 64 * 1024;

    /// A storage and its pieces.
    type Written = (Arc<Storage>, Vec<usize>);
    const FULL: Option<u64> = Some(4 * PIECE);

    /// A storage of four 64 KiB pieces in one file under `dir`, all
    /// written; `None` where the page cache cannot tell what is unwritten
    /// (no `cachestat`: skipped, or a failure when required). `dir` must be
    /// off tmpfs, whose pages never go to disk.
    fn written_storage(dir: &Path, pool: &Arc<FilePool>) -> Option<Written> {
        let spec = FileSpec {
            path: PathBuf::from("w.bin"),
            length: 4 * PIECE,
            padding: false,
        };
        let layout = Layout::new(vec![spec], PIECE, vec![[0u8; 20]; 4]).unwrap();
        let s = Storage::new(
            layout,
            dir.to_path_buf(),
            pool.clone(),
            Backend::PositionedIo,
        )
        .unwrap();
        let pieces: Vec<usize> = (0..4).collect();
        for &p in &pieces {
            s.write_block(p, 0, &vec![p as u8 + 1; PIECE as usize])
                .unwrap();
        }
        let Some(unflushed) = s.unflushed_bytes(&pieces).unwrap() else {
            bittern_testkit::require("cachestat(2) (Linux 6.5+)", false);
            return None;
        };
        assert_eq!(
            Some(unflushed),
            FULL,
            "freshly written pieces are unwritten"
        );
        Some((Arc::new(s), pieces))
    }

    /// Two written storages under `dir` sharing one pool: the one under
    /// test and a control that is never hinted, to tell this code's
    /// writeback from the kernel's (or another process's `sync`).
    fn two(dir: &Path) -> Option<(Arc<FilePool>, [Written; 2])> {
        let pool = Arc::new(FilePool::new(8));
        let a = written_storage(&dir.join("a"), &pool)?;
        let b = written_storage(&dir.join("b"), &pool)?;
        Some((pool, [a, b]))
    }

    /// Whether `s` still has every byte unwritten; `None` when the control
    /// storage lost its dirty pages too (the system wrote back on its own,
    /// so nothing can be concluded).
    fn untouched(s: &Written, control: &Written) -> Option<bool> {
        let full = s.0.unflushed_bytes(&s.1).unwrap() == FULL;
        if !full && control.0.unflushed_bytes(&control.1).unwrap() != FULL {
            return None;
        }
        Some(full)
    }

    /// Hinted pieces stay in the page cache until the delay has passed (the
    /// kernel's own flusher waits 30 s), then go to disk.
    #[test]
    fn hinted_pieces_start_going_to_disk_only_after_the_delay() {
        let Some(dir) = bittern_testkit::disk_tempdir() else {
            return;
        };
        let Some((_pool, [a, control])) = two(dir.path()) else {
            return;
        };
        let delay = Duration::from_secs(3);
        let wb = Writeback::spawn(delay).unwrap();
        let hinted = Instant::now();
        for &p in &a.1 {
            wb.hint(&a.0, p);
        }
        std::thread::sleep(Duration::from_millis(200));
        let early = untouched(&a, &control);
        if hinted.elapsed() < delay && early.is_some() {
            assert_eq!(early, Some(true), "written back before the delay");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while a.0.unflushed_bytes(&a.1).unwrap() != Some(0) {
            assert!(Instant::now() < deadline, "never written back");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(hinted.elapsed() >= delay);
    }

    /// Dropping the writeback (a session shutting down) does not wait for
    /// queued hints to fall due, and starts no IO for them.
    #[test]
    fn a_shutdown_drops_hints_without_waiting_for_them() {
        let Some(dir) = bittern_testkit::disk_tempdir() else {
            return;
        };
        let Some((_pool, [a, control])) = two(dir.path()) else {
            return;
        };
        let wb = Writeback::spawn(Duration::from_secs(600)).unwrap();
        for &p in &a.1 {
            wb.hint(&a.0, p);
        }
        let t = Instant::now();
        drop(wb);
        assert!(t.elapsed() < Duration::from_secs(10), "shutdown waited");
        std::thread::sleep(Duration::from_millis(300));
        assert_ne!(
            untouched(&a, &control),
            Some(false),
            "written back at shutdown"
        );
    }

    /// A hint that falls due after its torrent closed its files (paused)
    /// does not open them again: the files stay closed, the data is left
    /// to the kernel.
    #[test]
    fn a_hint_never_reopens_released_files() {
        let Some(dir) = bittern_testkit::disk_tempdir() else {
            return;
        };
        let Some((pool, [a, b])) = two(dir.path()) else {
            return;
        };
        assert_eq!(pool.open_count(), 2);
        a.0.release_files();
        assert_eq!(pool.open_count(), 1);
        let wb = Writeback::spawn(Duration::ZERO).unwrap();
        for &p in &a.1 {
            wb.hint(&a.0, p);
        }
        // Hints are taken in order: once b's data is on its way, a's hints
        // have all been handled.
        for &p in &b.1 {
            wb.hint(&b.0, p);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while b.0.unflushed_bytes(&b.1).unwrap() != Some(0) {
            assert!(Instant::now() < deadline, "never written back");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.open_count(), 1, "a released file was opened again");
    }
}
