//! A torrent's lifecycle: commands, the tick, seed goals, graceful stop
//! (a state machine driven by peer, persist and stop-job events and its
//! deadlines), the announcer and the published status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_tracker::TransferStats;
use log::{info, warn};

use super::*;
use crate::peer::{PeerEvent, PeerMsg};
use crate::picker::PeerKey;
use crate::status::{PeerInfo, TorrentEvent, TorrentState, TorrentStatus};

/// How long a stop waits for its peers to end and in-flight hashes to
/// come back.
const STOP_DRAIN: Duration = Duration::from_secs(5);
/// How long a stop waits for a running persist job.
const STOP_PERSIST_WAIT: Duration = Duration::from_secs(60);
/// Commands kept while the startup check runs (the per-torrent queue had
/// room for 256).
const MAX_DEFERRED: usize = 256;

/// A stop in progress: peers closing and hashes draining (until
/// `drain_until`), then a running persist finishing (until
/// `persist_until`), then the stop job (last save, `stopped` announce,
/// files released) on a save thread or one of its own (see
/// `start_stop_job`); its end finishes the torrent.
pub(crate) struct Stopping {
    pub target: TorrentState,
    pub drain_until: Instant,
    pub persist_until: Option<Instant>,
    pub job_started: bool,
    /// The session is shutting down: the stop job does not wait for the
    /// `stopped` announce (the session gives the announcer what is left
    /// of the one stop deadline for all torrents together).
    pub session_ending: bool,
}

impl Controller {
    // ---- commands and ticks -------------------------------------------

    pub(crate) fn on_command(&mut self, cmd: TorrentCommand) {
        if self.state == TorrentState::Checking {
            // Run once the check is done (a stop cancels it).
            match cmd {
                TorrentCommand::Shutdown => self.stop_with(TorrentState::Stopped, true),
                cmd if self.deferred.len() < MAX_DEFERRED => self.deferred.push(cmd),
                _ => {}
            }
            return;
        }
        if self.stopping.is_some() {
            return;
        }
        match cmd {
            TorrentCommand::Pause => {
                if self.running() {
                    self.close_all();
                    self.stop_announcer();
                    self.set_state(TorrentState::Paused);
                    // What changed since the last save (pieces found by the
                    // startup check, or downloaded) is recorded now, so a
                    // crash while paused does not cost a rehash.
                    if self.epoch != self.saved_epoch && !self.persisting {
                        self.start_persist();
                    }
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
                    swarm!(self).candidates.requeue_known();
                    self.connect_more();
                }
            }
            TorrentCommand::Incoming(stream, hs) => {
                let Ok(addr) = stream.socket().peer_addr() else {
                    return;
                };
                let cfg = &self.session.config;
                if !self.running()
                    || swarm!(self).banned.contains(&ban_key(addr))
                    || self.peers.len() >= cfg.max_peers_per_torrent
                    || self.session.connections.load(Ordering::Relaxed) >= cfg.max_connections
                {
                    return;
                }
                self.spawn_peer(Origin::Incoming(stream, hs), addr);
            }
            TorrentCommand::Shutdown => {
                self.stop_with(TorrentState::Stopped, true);
                return;
            }
            TorrentCommand::Reannounce => {
                if self.running() {
                    for key in self.announce_keys() {
                        self.session.with_announcer(|a| a.need_peers(key));
                    }
                }
            }
        }
        self.publish();
    }

    /// Rates, status, choking, request deadlines, interest and connection
    /// upkeep: every 250 ms while the torrent has peers (see `timers`).
    pub(super) fn on_tick(&mut self, now: Instant) {
        self.last_tick = now;
        self.drop_blocked();
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
        self.count_rate(idle::Direction::Up, up_total, now);
        self.count_webseed_bytes(now);
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
            self.expire_blames(now);
            // Interest can drop as pieces complete; recheck everyone.
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                self.update_interest(k);
                self.fill(k);
            }
            self.connect_more();
            self.superseed_tick(now);
            self.pex_round(now);
            if self.peers.len() < 5 {
                for key in self.announce_keys() {
                    self.session.with_announcer(|a| a.need_peers(key));
                }
                // Seeds wait for leechers to find them (they announce).
                if self.on_dht && self.state == TorrentState::Downloading {
                    if let Some(d) = &self.session.dht {
                        d.need_peers(self.id);
                    }
                }
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

    /// Graceful stop: close peers, wait for in-flight hashes and a running
    /// persist, then save resume state and announce `stopped` within the
    /// deadline in the stop job. Never waits here: each step is
    /// taken when its event or deadline comes (`advance_stop`).
    pub(super) fn stop(&mut self, state: TorrentState) {
        self.stop_with(state, false);
    }

    /// As [`stop`](Self::stop); `session_ending` for the session's
    /// shutdown (see [`Stopping::session_ending`]).
    fn stop_with(&mut self, state: TorrentState, session_ending: bool) {
        if self.stopping.is_some() || self.finished {
            return;
        }
        let now = Instant::now();
        self.stopping = Some(Box::new(Stopping {
            target: state,
            drain_until: now + STOP_DRAIN,
            persist_until: None,
            job_started: false,
            session_ending,
        }));
        if self.state == TorrentState::Checking {
            if let Some(c) = &self.check_cancel {
                c.store(true, Ordering::Relaxed);
            }
            return;
        }
        self.close_all();
        self.advance_stop(now);
    }

    /// Takes the next step of a stop whose condition holds.
    pub(super) fn advance_stop(&mut self, now: Instant) {
        let busy = !self.peers.is_empty() || self.verifying > 0;
        let persisting = self.persisting;
        let Some(s) = self.stopping.as_mut() else {
            return;
        };
        if s.job_started || self.state == TorrentState::Checking {
            return;
        }
        if busy && now < s.drain_until {
            return;
        }
        if persisting {
            let until = *s.persist_until.get_or_insert(now + STOP_PERSIST_WAIT);
            if now < until {
                return;
            }
            s.job_started = true;
            warn!(
                "{}: flushing data is taking long; stopping anyway",
                self.short()
            );
        }
        if let Some(s) = self.stopping.as_mut() {
            s.job_started = true;
        }
        self.start_stop_job();
    }

    /// The stop job: the last resume save (when anything changed since
    /// the last one), the `stopped` announce, the file preparation thread
    /// and the open files: on the session's save threads, or on a
    /// short-lived thread of its own when it waits for an announce.
    fn start_stop_job(&mut self) {
        let save = (self.epoch != self.saved_epoch
            && !matches!(self.state, TorrentState::Error(_)))
        .then(|| check::StopSave {
            storage: self.storage.clone(),
            resume_file: self.resume_file(),
            info_hash: self.info_hash,
            have: self.have_flags(),
            durable: self.durable.clone(),
            flush_limit: self.session.config.stop_flush_limit,
        });
        self.stop_dht();
        let mut announcer = self.remove_from_announcer();
        // At the session's shutdown nobody waits for it here: the session
        // shuts the announcer down last, within the one deadline.
        if self.stopping.as_ref().is_some_and(|s| s.session_ending) {
            announcer.clear();
        }
        let deadline = self.session.config.timing.stop_announce_deadline;
        let prepare = self.prepare.take();
        let storage = self.storage.clone();
        let (id, tx) = (self.id, self.links.done.clone());
        let short = self.short();
        let name = format!("stop-{short}");
        if save.is_none() && announcer.is_empty() && prepare.is_none() {
            // Only the files to close (an idle seed, nothing changed): a
            // job on the verifier pool, not a thread per torrent (a
            // session of thousands stops without a burst of threads).
            self.session.verifiers.spawn(move || {
                storage.release_files();
                let _ = tx.send(Done::Stopped(id));
            });
            return;
        }
        // Waiting for the `stopped` announce (a torrent removed while the
        // session runs) takes a thread of its own, so that it holds up no
        // other torrent's stop; the rest (the session's shutdown: saves of
        // thousands of torrents) runs on the session's few save threads.
        let own_thread = !announcer.is_empty();
        let job = move || {
            if let Some(save) = save {
                if let Err(e) = save.run() {
                    warn!("{short}: cannot save resume state: {e}");
                }
            }
            // one deadline for the `stopped` of every key
            let until = Instant::now() + deadline;
            for stopping in announcer {
                stopping.wait(until.saturating_duration_since(Instant::now()));
            }
            if let Some((stop, t)) = prepare {
                stop.store(true, Ordering::Relaxed);
                let _ = t.join();
            }
            storage.release_files();
            let _ = tx.send(Done::Stopped(id));
        };
        let job = if own_thread {
            job
        } else {
            match self.session.savers.spawn(job) {
                Ok(()) => return,
                // No save thread could be started: try one of its own.
                Err(job) => job,
            }
        };
        if let Err(e) = std::thread::Builder::new().name(name).spawn(job) {
            // The job is dropped (the session announcer still sends
            // `stopped`); the torrent ends without its last save.
            warn!("{}: cannot start the stop job: {e}", self.short());
            self.on_stopped();
        }
    }

    /// The stop job is done: the torrent has ended.
    pub(crate) fn on_stopped(&mut self) {
        let target = self
            .stopping
            .take()
            .map_or(TorrentState::Stopped, |s| s.target);
        if !matches!(self.state, TorrentState::Error(_)) {
            self.set_state(target);
        }
        self.publish();
        self.finished = true;
    }

    /// A stop during the startup check cancelled it: nothing ran yet.
    pub(super) fn end_stopped(&mut self) {
        let target = self
            .stopping
            .take()
            .map_or(TorrentState::Stopped, |s| s.target);
        self.set_state(target);
        self.publish();
        self.finished = true;
    }

    /// While closing, only bookkeeping matters.
    pub(super) fn on_peer_closing(&mut self, msg: PeerMsg) {
        match msg.event {
            PeerEvent::Gone(r) => self.peer_gone(msg.key, r),
            PeerEvent::Blocks(blocks) => self.on_blocks(msg.key, blocks),
            _ => {}
        }
        self.advance_stop(Instant::now());
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
        self.events.push(e);
    }

    // ---- tracker ------------------------------------------------------

    pub(super) fn start_announcer(&mut self) {
        self.start_dht();
        // LSD is a peer source announced with the trackers (never for a
        // private torrent: the component checks).
        self.session.lsd_send(crate::lsd::LsdCommand::Add {
            info_hash: self.info_hash,
            private: self.meta.private,
        });
        if !self.session.config.announce || self.announcer.is_some() {
            return;
        }
        if self.meta.trackers.is_empty() {
            return;
        }
        let tiers = self.meta.trackers.to_vec();
        let transfer = self.transfer.clone();
        let stats = Arc::new(move || TransferStats {
            uploaded: transfer.uploaded.load(Ordering::Relaxed),
            downloaded: transfer.downloaded.load(Ordering::Relaxed),
            left: transfer.left.load(Ordering::Relaxed),
        });
        // Tracker peers come back as `TrackerEvent::Peers` and enter
        // through the torrent's peer source (see `session/shared.rs`, `spawn_announcer`).
        let key = self.session.announce_key(self.id);
        let info_hash = self.info_hash;
        // A hybrid's truncated v2 hash too, under a key of its own (both
        // keys name this torrent, so their peers come here).
        let v2 =
            (self.meta.second_hash(info_hash)).map(|h| (self.session.announce_key(self.id), h));
        let stats: bittern_tracker::StatsSource = stats;
        let keys: Vec<_> = std::iter::once((key, info_hash)).chain(v2).collect();
        if self.session.announce(&keys, &tiers, &stats) {
            self.announcer = Some(key);
            self.announcer_v2 = v2.map(|(k, _)| k);
            *self.published.announce_key.lock() = Some(key);
        }
    }

    /// The torrent's keys in the session announcer: its info hash's and a
    /// hybrid's truncated v2 hash's.
    pub(super) fn announce_keys(&self) -> Vec<TorrentKey> {
        self.announcer
            .into_iter()
            .chain(self.announcer_v2)
            .collect()
    }

    /// Takes the torrent out of the session announcer without waiting:
    /// `stopped` goes out within the stop deadline (one receipt per key).
    fn remove_from_announcer(&mut self) -> Vec<bittern_tracker::Stopping> {
        self.session
            .lsd_send(crate::lsd::LsdCommand::Remove(self.info_hash));
        let keys = self.announce_keys();
        self.announcer = None;
        self.announcer_v2 = None;
        *self.published.announce_key.lock() = None;
        let mut stopping = Vec::new();
        for key in keys {
            self.session
                .with_announcer(|a| stopping.push(a.remove(key)));
        }
        stopping
    }

    /// Puts a public torrent on the session DHT's schedule (announced
    /// now, then every 15 minutes, under each of its wire hashes). Private
    /// torrents (BEP 27) never are.
    fn start_dht(&mut self) {
        if self.on_dht || self.meta.private {
            return;
        }
        if let Some(d) = &self.session.dht {
            // a hybrid under its truncated v2 hash too
            let mut hashes = vec![self.info_hash];
            hashes.extend(self.meta.second_hash(self.info_hash));
            d.add(self.id, hashes);
            self.on_dht = true;
        }
    }

    /// Takes the torrent off the DHT's schedule.
    fn stop_dht(&mut self) {
        if std::mem::take(&mut self.on_dht) {
            if let Some(d) = &self.session.dht {
                d.remove(self.id);
            }
        }
    }

    /// Stops announcing without waiting.
    pub(super) fn stop_announcer(&mut self) {
        self.stop_dht();
        // The receipt is not awaited: the announcer sends `stopped` on
        // its own workers.
        drop(self.remove_from_announcer());
    }

    // ---- persistence and status ---------------------------------------

    /// One flag per piece: verified and had.
    pub(super) fn have_flags(&self) -> Vec<bool> {
        (0..self.have.len())
            .map(|i| self.have.contains(i))
            .collect()
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
        // padding (BEP 47 files, a v2-only torrent's tail) is no payload
        for (f, spec) in layout.files().iter().enumerate() {
            if !spec.padding || spec.length == 0 {
                continue;
            }
            let (start, end) = (layout.file_start(f), layout.file_start(f) + spec.length);
            for i in layout.file_pieces(f) {
                let p0 = i as u64 * layout.piece_length();
                let p1 = p0 + layout.piece_len(i);
                let pad = end.min(p1).saturating_sub(start.max(p0));
                if self.wanted[i] {
                    wanted_bytes -= pad;
                    if self.have.contains(i) {
                        have_bytes -= pad;
                    }
                }
            }
        }
        let files = check::file_status(
            layout,
            &self.have,
            &self.options.wanted_files,
            self.meta.multi_file,
            &self.meta.name,
        );
        let left = wanted_bytes - have_bytes;
        let web = self.webseed_status(now);
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
                utp: p.utp,
                seed: p.is_seed(),
                encrypted: p.encrypted,
                snubbed: p.snubbed(
                    now,
                    self.session.config.timing.snub_timeout,
                    self.picker.outstanding(*k),
                ),
            })
            .collect();
        let status = TorrentStatus {
            name: self.meta.name.to_string(),
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
            download_rate: self.rates.as_ref().map_or(0.0, |r| r.down.rate(now)),
            upload_rate: self.rates.as_ref().map_or(0.0, |r| r.up.rate(now)),
            eta: if left == 0 {
                Some(Duration::ZERO)
            } else {
                self.rates.as_ref().and_then(|r| r.down.eta(left, now))
            },
            peers_connected: peers.len(),
            peers_connecting: self
                .peers
                .values()
                .filter(|p| !p.ready && !p.closing)
                .count(),
            seeds_connected: peers.iter().filter(|p| p.seed).count(),
            peers_known: self
                .swarm
                .as_deref()
                .map_or(0, |s| s.candidates.known_len()),
            pieces_have,
            pieces_total: layout.piece_count(),
            files,
            hash_failures: self.hash_failures,
            corrupt: self.corrupt,
            written: self.transfer.written.load(Ordering::Relaxed),
            web_seeds: web.seeds,
            web_seed_downloaded: web.downloaded,
            web_seed_rate: web.rate,
        };
        *self.published.status.lock() = status;
        *self.published.peers.lock() = peers;
    }
}
