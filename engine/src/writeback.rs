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
use crossbeam_channel::{select, unbounded, Receiver, RecvTimeoutError, Sender};

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
        if self.queued.fetch_add(1, Ordering::Relaxed) >= QUEUE {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let hint = Hint {
            storage: Arc::downgrade(storage),
            piece,
            due: Instant::now() + self.delay,
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
    use std::path::PathBuf;

    /// A storage of four 64 KiB pieces in one file, all written; `None`
    /// where the page cache cannot tell what is unwritten (no `cachestat`,
    /// or tmpfs, whose pages never go to disk).
    fn written_storage(dir: &std::path::Path) -> Option<(Arc<Storage>, Vec<usize>)> {
        let piece = 64 * 1024u64;
        let spec = FileSpec {
            path: PathBuf::from("w.bin"),
            length: 4 * piece,
            padding: false,
        };
        let layout = Layout::new(vec![spec], piece, vec![[0u8; 20]; 4]).unwrap();
        let pool = Arc::new(FilePool::new(4));
        let s = Storage::new(layout, dir.to_path_buf(), pool, Backend::PositionedIo).unwrap();
        let pieces: Vec<usize> = (0..4).collect();
        for &p in &pieces {
            s.write_block(p, 0, &vec![p as u8 + 1; piece as usize])
                .unwrap();
        }
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string and out pointer.
        if unsafe { libc::statfs(c.as_ptr(), &mut fs) } == 0 && fs.f_type == 0x0102_1994 {
            return None;
        }
        let unflushed = s.unflushed_bytes(&pieces).unwrap()?;
        assert_eq!(unflushed, 4 * piece, "freshly written pieces are unwritten");
        Some((Arc::new(s), pieces))
    }

    /// Hinted pieces stay in the page cache until the delay has passed (the
    /// kernel's own flusher waits 30 s), then go to disk.
    #[test]
    fn hinted_pieces_start_going_to_disk_only_after_the_delay() {
        let dir = tempfile::tempdir().unwrap();
        let Some((s, pieces)) = written_storage(dir.path()) else {
            return;
        };
        let delay = Duration::from_millis(1500);
        let wb = Writeback::spawn(delay).unwrap();
        let hinted = Instant::now();
        for &p in &pieces {
            wb.hint(&s, p);
        }
        std::thread::sleep(Duration::from_millis(500));
        let early = s.unflushed_bytes(&pieces).unwrap();
        if hinted.elapsed() < delay {
            assert_eq!(early, Some(4 * 64 * 1024), "written back before the delay");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.unflushed_bytes(&pieces).unwrap() != Some(0) {
            assert!(Instant::now() < deadline, "never written back");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(hinted.elapsed() >= delay);
    }

    /// Dropping the writeback (a session shutting down) does not wait for
    /// queued hints to fall due, and leaves their pieces to the kernel.
    #[test]
    fn a_shutdown_drops_hints_without_waiting_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let Some((s, pieces)) = written_storage(dir.path()) else {
            return;
        };
        let wb = Writeback::spawn(Duration::from_secs(600)).unwrap();
        for &p in &pieces {
            wb.hint(&s, p);
        }
        let t = Instant::now();
        drop(wb);
        assert!(t.elapsed() < Duration::from_secs(60), "shutdown waited");
        assert_eq!(s.unflushed_bytes(&pieces).unwrap(), Some(4 * 64 * 1024));
    }
}
