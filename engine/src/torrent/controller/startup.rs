//! Starting a torrent: its startup check as a job on the hashing pool,
//! what follows when it reports, and the file preparation thread.

use super::*;

impl Controller {
    /// Starts the startup check off the controller: resume state where it
    /// vouches, a parallel recheck for the rest (see `check::startup`).
    pub(crate) fn start(&mut self) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.check_cancel = Some(cancel.clone());
        let job = check::StartupJob {
            storage: self.storage.clone(),
            session: self.session.clone(),
            resume_file: self.resume_file(),
            info_hash: self.info_hash,
            published: self.published.clone(),
            wanted: self.wanted.clone(),
            wanted_files: self.options.wanted_files.clone(),
            cancel,
        };
        let (id, done) = (self.id, self.links.done.clone());
        self.session.hashers.spawn(move || {
            let _ = done.send(Done::Checked(id, job.run().map(Box::new)));
        });
    }

    /// The startup check ended (`None`: cancelled by a stop).
    pub(crate) fn on_checked(&mut self, checked: Option<check::Checked>) {
        self.check_cancel = None;
        let Some(checked) = checked else {
            self.end_stopped();
            return;
        };
        match checked.pieces {
            Ok((have, durable)) => {
                // Pieces found by hashing (or vouched for unflushed) get
                // recorded by the next save, so the next start need not
                // hash them again.
                if have.iter().zip(&durable).any(|(h, d)| *h && !*d) {
                    self.epoch += 1;
                }
                self.durable = durable;
                let n = have.iter().filter(|h| **h).count();
                for (i, h) in have.iter().enumerate() {
                    if *h {
                        self.have.insert(i);
                        self.claims.fill_piece(i);
                        picker!(self).set_have(i);
                    }
                }
                picker!(self).set_wanted(&self.wanted);
                self.emit(TorrentEvent::Checked { pieces: n });
                info!(
                    "{}: {} of {} pieces on disk",
                    self.short(),
                    n,
                    self.have.len()
                );
            }
            Err(e) => {
                self.fail(TorrentError::Check(Arc::new(e)));
                self.publish();
                self.finished = true;
                return;
            }
        }
        self.transfer
            .left
            .store(self.picker.wanted_left_bytes(), Ordering::Relaxed);
        if self.picker.is_complete() {
            if let Err(e) = checked.files {
                self.fail(TorrentError::CreateFiles(Arc::new(e)));
            }
            self.completed_at = Some(Instant::now());
            self.set_state(TorrentState::Seeding);
        } else {
            self.set_state(TorrentState::Downloading);
        }
        if let Some(stop) = self.stopping.take() {
            // Stopped during the check: nothing started, nothing to save.
            self.stop(stop.target);
            return;
        }
        if self.options.paused {
            self.set_state(TorrentState::Paused);
        } else {
            if self.state == TorrentState::Downloading {
                self.start_prepare();
            }
            self.start_announcer();
        }
        self.publish();
        if self.finished_by_goal() {
            self.finish();
            return;
        }
        self.connect_more();
        for cmd in std::mem::take(&mut self.deferred) {
            self.on_command(cmd);
        }
    }

    /// Creates and reserves the wanted files on a short-lived thread, in
    /// torrent order, while the download runs. Creating a file can take a
    /// millisecond (ext4 searching for a free inode among recently deleted
    /// ones); done lazily by the first write, that stalls a peer reader,
    /// and with it that connection, once per file. A file a reader reaches
    /// first is created by the reader as before; a failure (a full disk)
    /// only ends the thread: the write path reports it as before.
    pub(super) fn start_prepare(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let storage = Arc::clone(&self.storage);
        let wanted = self.options.wanted_files.clone();
        let short = self.short();
        let job = move || {
            let files = storage.layout().files().len();
            for i in (0..files).filter(|&i| wanted.get(i).copied().unwrap_or(true)) {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = storage.prepare_file(i) {
                    debug!("{short}: preparing files stopped: {e}");
                    return;
                }
            }
        };
        match std::thread::Builder::new()
            .name(format!("prep-{}", self.short()))
            .spawn(job)
        {
            Ok(t) => self.prepare = Some((stop, t)),
            // Not needed for correctness: files are created on first write.
            Err(e) => debug!("{}: no file preparation thread: {e}", self.short()),
        }
    }
}
