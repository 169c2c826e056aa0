//! A torrent's lifecycle: commands, the tick, seed goals, graceful stop,
//! the announcer, resume state and the published status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_tracker::{Announcer, AnnouncerConfig, TransferStats};
use crossbeam_channel::select;
use log::{info, warn};

use super::*;
use crate::peer::{PeerEvent, PeerMsg};
use crate::picker::PeerKey;
use crate::status::{PeerInfo, TorrentEvent, TorrentState, TorrentStatus};

/// A file sync ends with a device cache flush, which costs about what
/// writing this many bytes does: stopping a completed 1,000-file torrent
/// (256 MiB) spent 250 ms in `fdatasync`s with almost nothing left to
/// write, about 0.25 ms a file, and the disk here writes ~1 GB/s.
const STOP_SYNC_COST_PER_FILE: u64 = 256 << 10;

impl Controller {
    // ---- commands and ticks -------------------------------------------

    pub(super) fn on_command(&mut self, cmd: TorrentCommand) {
        match cmd {
            TorrentCommand::Pause => {
                if self.running() {
                    self.close_all();
                    self.stop_announcer();
                    self.set_state(TorrentState::Paused);
                }
            }
            TorrentCommand::Resume => {
                // Resuming after an error (disk full, permissions) retries:
                // verified pieces were never lost, missing ones are fetched.
                if matches!(self.state, TorrentState::Paused | TorrentState::Error(_)) {
                    let s = if self.picker.is_complete() {
                        TorrentState::Seeding
                    } else {
                        TorrentState::Downloading
                    };
                    self.set_state(s);
                    self.start_announcer();
                    self.candidates.extend(self.known.iter().copied());
                    self.connect_more();
                }
            }
            TorrentCommand::AddPeers(peers) => self.add_candidates(peers),
            TorrentCommand::Incoming(stream, hs) => {
                let Ok(addr) = stream.peer_addr() else { return };
                let cfg = &self.session.config;
                if !self.running()
                    || self.banned.contains(&ban_key(addr))
                    || self.peers.len() >= cfg.max_peers_per_torrent
                    || self.session.connections.load(Ordering::Relaxed) >= cfg.max_connections
                {
                    return;
                }
                self.spawn_peer(Origin::Incoming(stream, hs), addr);
            }
            TorrentCommand::Shutdown => {}
        }
        self.publish();
    }

    pub(super) fn on_tick(&mut self) {
        let now = Instant::now();
        self.cut_stragglers(now);
        // Sample payload counters for per-peer rates.
        let mut up_total = 0;
        for p in self.peers.values_mut() {
            let d = p.stats.downloaded.load(Ordering::Relaxed);
            let u = p.stats.uploaded.load(Ordering::Relaxed);
            p.down.add(d - p.seen_down, now);
            p.up.add(u - p.seen_up, now);
            up_total += u - p.seen_up;
            p.seen_down = d;
            p.seen_up = u;
        }
        self.up_rate.add(up_total, now);
        self.transfer
            .uploaded
            .fetch_add(up_total, Ordering::Relaxed);

        if self.running() {
            let interval = self.session.config.timing.choke_interval;
            if now.duration_since(self.last_choke) >= interval {
                self.last_choke = now;
                self.rechoke(true);
            }
            if self.state == TorrentState::Downloading {
                self.expire_requests(now);
            }
            // Interest can drop as pieces complete; recheck everyone.
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                self.update_interest(k);
                self.fill(k);
            }
            self.connect_more();
            if self.peers.len() < 5 {
                if let Some(a) = &self.announcer {
                    a.need_peers();
                }
            }
            if self.epoch != self.saved_epoch
                && !self.persisting
                && now.duration_since(self.last_resume)
                    >= self.session.config.timing.resume_interval
            {
                self.start_persist();
            }
        }
        self.publish();
    }

    pub(super) fn finished_by_goal(&self) -> bool {
        if self.state != TorrentState::Seeding {
            return false;
        }
        let Some(done) = self.completed_at else {
            return false;
        };
        match self.options.seed_goal {
            SeedGoal::Forever => false,
            SeedGoal::None => true,
            SeedGoal::Time(t) => done.elapsed() >= t,
            SeedGoal::Ratio(r) => {
                let size = self.picker_wanted_bytes().max(1);
                self.transfer.uploaded.load(Ordering::Relaxed) as f64 / size as f64 >= r
            }
        }
    }

    pub(super) fn picker_wanted_bytes(&self) -> u64 {
        let layout = self.storage.layout();
        (0..layout.piece_count())
            .filter(|i| self.wanted[*i])
            .map(|i| layout.piece_len(i))
            .sum()
    }

    pub(super) fn finish(&mut self) {
        info!("{}: seed goal reached", self.short());
        self.stop(TorrentState::Stopped);
    }

    /// Graceful stop: close peers, wait for in-flight hashes, save resume
    /// state, announce `stopped` within the deadline.
    pub(super) fn stop(&mut self, state: TorrentState) {
        self.close_all();
        let deadline = Instant::now() + Duration::from_secs(5);
        while (!self.peers.is_empty() || self.verifying > 0) && Instant::now() < deadline {
            self.cut_stragglers(Instant::now());
            select! {
                recv(self.peer_rx) -> m => if let Ok(m) = m { self.on_peer_closing(m) },
                recv(self.verify_rx) -> r => if let Ok((piece, r)) = r { self.on_verified(piece, r) },
                default(Duration::from_millis(100)) => {}
            }
        }
        self.wait_persisted(Duration::from_secs(60));
        if self.epoch != self.saved_epoch && !matches!(self.state, TorrentState::Error(_)) {
            if let Err(e) = self.save_resume_at_stop() {
                warn!("{}: cannot save resume state: {e}", self.short());
            }
        }
        self.stop_announcer();
        self.stop_prepare();
        self.storage.release_files();
        if !matches!(self.state, TorrentState::Error(_)) {
            self.set_state(state);
        }
        self.publish();
    }

    /// While closing, only bookkeeping matters.
    pub(super) fn on_peer_closing(&mut self, msg: PeerMsg) {
        match msg.event {
            PeerEvent::Gone(r) => self.peer_gone(msg.key, r),
            PeerEvent::Blocks(blocks) => self.on_blocks(msg.key, blocks),
            _ => {}
        }
    }

    pub(super) fn close_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.close(k);
        }
    }

    pub(super) fn fail(&mut self, why: TorrentError) {
        if matches!(self.state, TorrentState::Error(_)) {
            return;
        }
        log::error!("{}: {why}", self.short());
        self.close_all();
        self.stop_announcer();
        self.set_state(TorrentState::Error(why));
    }

    pub(super) fn set_state(&mut self, s: TorrentState) {
        if self.state != s {
            self.state = s.clone();
            self.emit(TorrentEvent::StateChanged(s));
            self.publish();
        }
    }

    pub(super) fn emit(&self, e: TorrentEvent) {
        let _ = self.events.try_send(e);
    }

    // ---- tracker ------------------------------------------------------

    pub(super) fn start_announcer(&mut self) {
        if !self.session.config.announce || self.announcer.is_some() {
            return;
        }
        let tiers = self.metainfo.trackers();
        if tiers.is_empty() {
            return;
        }
        let transfer = self.transfer.clone();
        let mut config = AnnouncerConfig::new(
            tiers,
            self.info_hash,
            self.session.peer_id,
            self.session.port,
        );
        config.client = self.session.config.tracker.clone();
        let stats = Arc::new(move || TransferStats {
            uploaded: transfer.uploaded.load(Ordering::Relaxed),
            downloaded: transfer.downloaded.load(Ordering::Relaxed),
            left: transfer.left.load(Ordering::Relaxed),
        });
        self.announcer = Some(Announcer::spawn(config, stats));
    }

    pub(super) fn stop_announcer(&mut self) {
        if let Some(a) = self.announcer.take() {
            a.stop(self.session.config.timing.stop_announce_deadline);
        }
    }

    // ---- persistence and status ---------------------------------------

    /// Records the verified pieces at a stop without waiting long for the
    /// disk: flushed first when fewer than `stop_flush_limit` of their
    /// bytes are still unwritten (or the kernel cannot say how much is), else
    /// recorded unflushed, stamped with this boot's id. An exit right after
    /// a fast download (many GiB still on their way to a slow disk) then
    /// takes milliseconds, as with every other client, while the resume
    /// state still never vouches for data a crash may have lost.
    pub(super) fn save_resume_at_stop(&mut self) -> Result<(), bittern_storage::Error> {
        let have = self.have_flags();
        let had: Vec<usize> = (0..have.len()).filter(|&i| have[i]).collect();
        // What the flush would cost, in bytes to write: what is still on
        // its way to disk, plus a device cache flush per file synced.
        let files = self.storage.file_count(&had)? as u64;
        let cost = self
            .storage
            .unflushed_bytes(&had)?
            .map(|n| n.saturating_add(files.saturating_mul(STOP_SYNC_COST_PER_FILE)));
        match cost {
            Some(n)
                if n >= self.session.config.stop_flush_limit
                    && bittern_storage::boot_id().is_some() =>
            {
                check::save_unflushed(
                    &self.storage,
                    &self.resume_file,
                    self.info_hash,
                    &have,
                    &self.durable,
                )?;
                info!(
                    "{}: recorded {} pieces without waiting for the disk ({} files to sync, \
                     about {} MiB of flush work)",
                    self.short(),
                    had.len(),
                    files,
                    n >> 20
                );
                self.saved_epoch = self.epoch;
                self.last_resume = Instant::now();
                Ok(())
            }
            _ => self.save_resume(),
        }
    }

    /// One flag per piece: verified and had.
    pub(super) fn have_flags(&self) -> Vec<bool> {
        (0..self.have.len())
            .map(|i| self.have.contains(i))
            .collect()
    }

    /// Flushes every verified piece and records them. Pieces found gone on
    /// the way are marked missing (and fetched again) before recording.
    pub(super) fn save_resume(&mut self) -> Result<(), bittern_storage::Error> {
        for _ in 0..3 {
            let have = self.have_flags();
            let missing = check::save(&self.storage, &self.resume_file, self.info_hash, &have)?;
            if missing.is_empty() {
                self.durable = have;
                self.saved_epoch = self.epoch;
                self.last_resume = Instant::now();
                return Ok(());
            }
            for piece in missing {
                self.data_missing(piece);
            }
        }
        Ok(())
    }

    pub(super) fn publish(&self) {
        let now = Instant::now();
        let layout = self.storage.layout();
        let mut wanted_bytes = 0;
        let mut have_bytes = 0;
        let mut pieces_have = 0;
        for i in 0..layout.piece_count() {
            let len = layout.piece_len(i);
            let had = self.have.contains(i);
            pieces_have += usize::from(had);
            if self.wanted[i] {
                wanted_bytes += len;
                if had {
                    have_bytes += len;
                }
            }
        }
        let files = check::file_status(
            layout,
            &self.have,
            &self.options.wanted_files,
            self.metainfo.info.multi_file,
            &self.metainfo.info.name,
        );
        let left = wanted_bytes - have_bytes;
        let peers: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ready)
            .map(|(k, p)| PeerInfo {
                addr: p.addr,
                client: p.client.clone(),
                download_rate: p.down.rate(now),
                upload_rate: p.up.rate(now),
                downloaded: p.seen_down,
                uploaded: p.seen_up,
                am_choking: p.am_choking,
                peer_choking: p.peer_choking,
                am_interested: p.am_interested,
                peer_interested: p.peer_interested,
                pieces: p.bits.as_ref().map_or(0, |b| b.count_ones()),
                outstanding: self.picker.outstanding(*k),
                incoming: p.incoming,
                snubbed: p.snubbed(
                    now,
                    self.session.config.timing.snub_timeout,
                    self.picker.outstanding(*k),
                ),
            })
            .collect();
        let status = TorrentStatus {
            name: self.metainfo.info.name.clone(),
            state: self.state.clone(),
            progress: if wanted_bytes == 0 {
                1.0
            } else {
                have_bytes as f64 / wanted_bytes as f64
            },
            wanted_bytes,
            have_bytes,
            downloaded: self.transfer.downloaded.load(Ordering::Relaxed),
            uploaded: self.transfer.uploaded.load(Ordering::Relaxed),
            download_rate: self.down_rate.rate(now),
            upload_rate: self.up_rate.rate(now),
            eta: if left == 0 {
                Some(Duration::ZERO)
            } else {
                self.down_rate.eta(left, now)
            },
            peers_connected: peers.len(),
            peers_known: self.known.len(),
            pieces_have,
            pieces_total: layout.piece_count(),
            files,
            hash_failures: self.hash_failures,
            written: self.transfer.written.load(Ordering::Relaxed),
        };
        *self.published.status.lock() = status;
        *self.published.peers.lock() = peers;
    }
}
