//! A session-wide thread that starts writing verified pieces back to disk.
//!
//! `sync_file_range(SYNC_FILE_RANGE_WRITE)` submits the IO in the calling
//! thread and can block on a busy device, so the controller must not call
//! it. It queues the piece here instead; a full queue drops the hint (the
//! flush before recording pieces as had writes whatever is left). At
//! shutdown the queued hints are dropped: the kernel writes the data back
//! anyway, and an exit must not wait for a busy disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use bittern_storage::Storage;
use crossbeam_channel::{bounded, Sender};

/// Hints queued at most; beyond this they are dropped.
const QUEUE: usize = 4096;

pub(crate) struct Writeback {
    tx: Option<Sender<(Arc<Storage>, usize)>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    pub(crate) fn spawn() -> std::io::Result<Writeback> {
        let (tx, rx) = bounded::<(Arc<Storage>, usize)>(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bittern-writeback".into())
            .spawn(move || {
                for (storage, piece) in rx {
                    if stopped.load(Ordering::Relaxed) {
                        return;
                    }
                    storage.start_writeback(piece);
                }
            })?;
        Ok(Writeback {
            tx: Some(tx),
            stop,
            thread: Some(thread),
        })
    }

    /// Asks for `piece` to start going to disk soon. Never blocks.
    pub(crate) fn hint(&self, storage: &Arc<Storage>, piece: usize) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send((storage.clone(), piece));
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
