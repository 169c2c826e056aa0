//! Making verified pieces durable and recording them, off the controller.
//!
//! Flushing can take seconds on a slow disk; the controller must keep
//! serving peers and publishing status meanwhile. A persist job snapshots
//! which pieces are had, then one of the session's few save threads
//! (`hashpool::SavePool`) flushes them and writes the resume state; the
//! result comes back on a channel. One job runs at a
//! time; a request while one runs is remembered and run next.
//!
//! Completion does not wait for the disk: a download is complete when
//! every wanted piece has passed its hash, as every other program reading
//! the files sees them then (from the page cache). A stop that would have
//! to wait for much unwritten data records the pieces with this boot's id
//! instead of flushing them ([`ResumeState::capture_unflushed`]): they are
//! believed on restart unless the system rebooted in between, and then
//! only those an earlier job flushed (the controller's `durable`).

use std::time::Instant;

use log::{debug, warn};

use super::*;
use crate::status::TorrentState;

/// What a persist job reports back.
pub(crate) struct PersistDone {
    /// `Controller::epoch` when the job took its snapshot.
    epoch: u64,
    /// The snapshot: the pieces the job flushed and recorded.
    have: Vec<bool>,
    started: Instant,
    /// Pieces whose data turned out to be gone, or the error.
    result: Result<Vec<usize>, bittern_storage::Error>,
}

impl Controller {
    /// Starts a persist job (or queues one behind the running job).
    pub(super) fn start_persist(&mut self) {
        if self.persisting {
            self.persist_again = true;
            return;
        }
        let have = self.have_flags();
        self.lost_while_persisting = vec![false; self.have.len()];
        let storage = self.storage.clone();
        let resume_file = self.resume_file();
        let info_hash = self.info_hash;
        let (id, tx) = (self.id, self.links.done.clone());
        let epoch = self.epoch;
        let started = Instant::now();
        let job = move || {
            let result = check::save(&storage, &resume_file, info_hash, &have);
            let _ = tx.send(Done::Persisted(
                id,
                Box::new(PersistDone {
                    epoch,
                    have,
                    started,
                    result,
                }),
            ));
        };
        self.persisting = true;
        self.persist_again = false;
        if self.session.savers.spawn(job).is_err() {
            // No thread to be had: a failed job (the next save, or a
            // recheck at startup, covers it).
            warn!("{}: cannot start a persist job", self.short());
            self.persisting = false;
            self.last_resume = Instant::now();
        }
    }

    pub(crate) fn on_persisted(&mut self, done: PersistDone) {
        self.persisting = false;
        let lost = std::mem::take(&mut self.lost_while_persisting);
        match done.result {
            Ok(missing) if missing.is_empty() => {
                // On disk now, unless a piece left `have` meanwhile (its
                // data found gone, perhaps fetched again since).
                let lost = lost.iter().chain(std::iter::repeat(&false));
                for ((d, flushed), lost) in self.durable.iter_mut().zip(&done.have).zip(lost) {
                    *d |= *flushed && !*lost;
                }
                self.saved_epoch = self.saved_epoch.max(done.epoch);
                self.last_resume = Instant::now();
                debug!(
                    "{}: pieces flushed to disk and recorded in {} ms",
                    self.short(),
                    done.started.elapsed().as_millis()
                );
            }
            Ok(missing) => {
                for piece in missing {
                    self.data_missing(piece);
                }
                // Record the smaller set now.
                self.persist_again = true;
            }
            // Not fatal: the next save, or a recheck at startup, covers it.
            Err(e) => {
                warn!("{}: cannot save resume state: {e}", self.short());
                self.last_resume = Instant::now();
            }
        }
        if self.stopping.is_some() {
            // The stop job records what is had now.
            self.persist_again = false;
            self.advance_stop(Instant::now());
            return;
        }
        if self.persist_again && !matches!(self.state, TorrentState::Error(_)) {
            self.start_persist();
        }
    }
}
