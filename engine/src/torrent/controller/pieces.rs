//! Pieces of one torrent: verification (inline hash or a job on the
//! verifier pool), passed and failed pieces, data found gone, HAVE batches
//! and completion.

use super::*;

impl Controller {
    /// Checks a complete piece: at once when its blocks were hashed as
    /// they arrived, else by reading it back on the hashing pool.
    pub(super) fn verify(&mut self, piece: usize) {
        let layout = self.storage.layout();
        // a piece that ends in padding arrived as its files' bytes only
        let len = layout.piece_len(piece);
        let fed = self.picker.short_len(piece).unwrap_or(len);
        if let Some(digest) = self
            .hashes
            .as_ref()
            .and_then(|h| h.finish(piece as u32, fed, len - fed))
        {
            let ok = digest == layout.piece_hash(piece);
            self.verifying += 1;
            self.on_verified(piece, Ok(ok));
            return;
        }
        // A v2-only piece whose every block passed its proven leaf as it
        // arrived (`v2::blocks`) hashes to its node: not read back.
        if !layout.has_v1()
            && self
                .v2
                .as_ref()
                .is_some_and(|v2| v2.all_blocks_checked(piece))
        {
            self.verifying += 1;
            self.on_verified(piece, Ok(true));
            return;
        }
        self.verifying += 1;
        let queue = self.verify_queue.get_or_insert_with(Arc::default).clone();
        if !queue.push(piece) {
            return; // a waiting job takes it into its group
        }
        let storage = self.storage.clone();
        let (id, tx) = (self.id, self.links.done.clone());
        self.session.verifiers.spawn(move || {
            let group = queue.take(GROUP_WAIT);
            for (&piece, result) in group.iter().zip(storage.check_pieces(&group)) {
                if matches!(result, Ok(false)) && storage.layout().piece_hash_v2(piece).is_some() {
                    // hashed before the controller hears of the failure,
                    // so before any block is fetched again
                    if let Ok(leaves) = storage.piece_leaves_v2(piece) {
                        let _ = tx.send(Done::FailedLeaves(id, piece, leaves));
                    }
                }
                let _ = tx.send(Done::Verified(id, piece, result));
            }
        });
    }

    /// Forgets what was hashed of `piece` as it arrived.
    fn reset_inline_hash(&self, piece: usize) {
        if let Some(h) = &self.hashes {
            h.reset(piece as u32);
        }
    }

    pub(crate) fn on_verified(
        &mut self,
        piece: usize,
        result: Result<bool, bittern_storage::Error>,
    ) {
        self.verifying = self.verifying.saturating_sub(1);
        match result {
            Ok(true) => {
                picker!(self).piece_passed(piece);
                if let Some(v2) = &self.v2 {
                    v2.forget_leaves(piece);
                    if let Some(swarm) = self.swarm.as_deref_mut() {
                        swarm.leaf_asks.remove(&piece);
                    }
                }
                self.have.insert(piece);
                // Get the bytes moving to disk a little later (see
                // `writeback`), so the flush before recording the piece as
                // had finds little left to write.
                self.session.writeback.hint(&self.storage, piece);
                self.epoch += 1;
                self.transfer
                    .left
                    .store(self.picker.wanted_left_bytes(), Ordering::Relaxed);
                self.queue_have(piece as u32);
                self.webseed_piece_passed(piece);
                self.emit(TorrentEvent::PieceVerified(piece));
                if self.picker.is_complete() && self.state == TorrentState::Downloading {
                    self.flush_haves();
                    self.on_complete();
                }
            }
            Ok(false) => {
                self.hash_failures += 1;
                self.corrupt += self.storage.layout().piece_len(piece);
                warn!("{}: piece {piece} failed its hash check", self.short());
                let senders = picker!(self).block_senders(piece);
                let contributors = picker!(self).piece_failed(piece);
                self.reset_inline_hash(piece);
                self.claims.reset_piece(piece);
                self.emit(TorrentEvent::HashFailed(piece));
                let seeded = self.webseed_piece_failed(piece, &contributors);
                let alone = contributors.len() == 1 && !seeded;
                if !alone && self.ask_leaves(piece, senders) {
                    // a v2 piece: the blocks' own leaves name the sender
                    self.fill_all();
                    return;
                }
                swarm!(self).failed_leaves.remove(&piece);
                for key in contributors {
                    let Some(p) = self.peers.get(&key) else {
                        continue;
                    };
                    let who = ban_key(p.addr);
                    if swarm!(self).bad_data.record_bad(who, alone) {
                        warn!("{} {}: banned for sending bad data", p.addr, self.short());
                        swarm!(self).banned.insert(who);
                        let addr = p.addr;
                        self.emit(TorrentEvent::PeerBanned(addr));
                        self.close(key);
                    }
                }
                self.fill_all();
            }
            Err(e) if e.is_missing_data() => {
                // The data vanished under us; fetch it again.
                warn!("{}: piece {piece} unreadable: {e}", self.short());
                picker!(self).piece_failed(piece);
                self.reset_inline_hash(piece);
                self.claims.reset_piece(piece);
                self.fill_all();
            }
            Err(e) => self.fail(TorrentError::Verify {
                piece,
                error: Arc::new(e),
            }),
        }
    }

    /// A piece we had cannot be read any more: fetch it again rather than
    /// serve or claim it.
    pub(super) fn data_missing(&mut self, piece: usize) {
        if !self.have.contains(piece) {
            return;
        }
        warn!(
            "{}: piece {piece} is gone from disk; fetching it again",
            self.short()
        );
        self.have.remove(piece);
        if let Some(d) = self.durable.get_mut(piece) {
            *d = false;
        }
        if let Some(l) = self.lost_while_persisting.get_mut(piece) {
            *l = true;
        }
        self.reset_inline_hash(piece);
        self.claims.reset_piece(piece);
        picker!(self).unset_have(piece);
        self.epoch += 1;
        self.transfer
            .left
            .store(self.picker.wanted_left_bytes(), Ordering::Relaxed);
        if self.state == TorrentState::Seeding && !self.picker.is_complete() {
            self.completed_at = None;
            self.set_state(TorrentState::Downloading);
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.update_interest(k);
            self.fill(k);
        }
    }

    /// Announces a verified piece to every peer with the next batch of
    /// HAVEs, at most [`HAVE_DELAY`] from now.
    pub(super) fn queue_have(&mut self, piece: u32) {
        if self.pending_haves.is_empty() {
            self.haves_due = Some(Instant::now() + HAVE_DELAY);
        }
        self.pending_haves.push(piece);
    }

    /// Sends the queued HAVEs, one command per peer for the whole batch
    /// (its writer puts them in one write).
    pub(super) fn flush_haves(&mut self) {
        self.haves_due = None;
        if self.pending_haves.is_empty() {
            return;
        }
        let haves: Arc<[u32]> = std::mem::take(&mut self.pending_haves).into();
        let mut slow = Vec::new();
        for (k, p) in &self.peers {
            if p.ready
                && !p.closing
                && p.commands
                    .try_send(PeerCommand::Haves(haves.clone()))
                    .is_err()
            {
                slow.push(*k);
            }
        }
        // A peer that cannot take our HAVEs would keep a stale view of
        // what we have: too slow to keep (invariant 1).
        for k in slow {
            self.close(k);
        }
    }

    /// Every wanted piece passed: the download is complete. The pieces go
    /// to disk in the background (see `persist`), unless the torrent stops
    /// right away, whose stop records them.
    pub(super) fn on_complete(&mut self) {
        if !check::has_empty_files(&self.storage, &self.options.wanted_files) {
            self.on_files_created(Ok(()));
            return;
        }
        // Creating files touches the disk: off the controller.
        let storage = self.storage.clone();
        let wanted = self.options.wanted_files.clone();
        let (id, tx) = (self.id, self.links.done.clone());
        self.session.verifiers.spawn(move || {
            let r = check::create_empty_files(&storage, &wanted);
            let _ = tx.send(Done::FilesCreated(id, r));
        });
    }

    /// The zero-length files of a complete download exist: it is done.
    pub(crate) fn on_files_created(&mut self, r: Result<(), bittern_storage::Error>) {
        if let Err(e) = r {
            self.fail(TorrentError::CreateFiles(Arc::new(e)));
            return;
        }
        if self.state != TorrentState::Downloading || !self.picker.is_complete() {
            return;
        }
        info!("{}: download complete", self.short());
        self.completed();
        if self.options.seed_goal != SeedGoal::None {
            self.start_persist();
        }
    }

    /// The download is complete: seed, and tell the tracker and peers.
    pub(super) fn completed(&mut self) {
        self.completed_at = Some(Instant::now());
        self.set_state(TorrentState::Seeding);
        self.emit(TorrentEvent::Completed);
        for key in self.announce_keys() {
            self.session.with_announcer(|a| a.completed(key));
        }
        self.resend_upload_only();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.update_interest(key);
            // Two seeds (a partial one included, BEP 21) have nothing to
            // say to each other.
            if self.peers.get(&key).is_some_and(Peer::is_seed) {
                self.close(key);
            }
        }
    }
}
