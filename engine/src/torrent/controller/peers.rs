//! Connections of one torrent: interest, request pipelines, connecting,
//! disconnecting and choking.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use log::{debug, warn};

use super::candidates::CandidateSource;
use super::*;
use crate::choker::ChokeCandidate;
use crate::error::PeerError;
use crate::peer::{self, Connection, Origin, PeerCommand, PeerContext, PeerStats, SocketSlot};
use crate::picker::{Deadline, PeerKey, PickRequest, BLOCK_SIZE};
use crate::rate::RateMeasure;
use crate::status::TorrentState;

/// How long a closed connection has to send what was queued before it and
/// end before its socket is shut down under it.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// How long the tick keeps running after the last peer left: the window
/// of the torrent's rate measures.
const QUIET_TICKS: Duration = Duration::from_secs(20);

impl Controller {
    /// After a peer's piece set changed: interest, then requests.
    pub(super) fn after_peer_pieces(&mut self, key: PeerKey) {
        self.update_interest(key);
        self.fill(key);
    }

    pub(super) fn update_interest(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let want = self.state == TorrentState::Downloading
            && p.bits
                .as_ref()
                .is_some_and(|b| picker!(self).is_interesting(b));
        if want != p.am_interested {
            p.am_interested = want;
            let cmd = if want {
                PeerCommand::Interested
            } else {
                PeerCommand::NotInterested
            };
            if p.commands.try_send(cmd).is_err() {
                self.close(key);
            }
        }
    }

    /// Tops up the request pipeline of one peer.
    pub(super) fn fill(&mut self, key: PeerKey) {
        if self.state != TorrentState::Downloading {
            return;
        }
        let now = Instant::now();
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        if !p.ready || !p.am_interested || p.closing {
            return;
        }
        let Some(bits) = p.bits.as_ref() else { return };
        if p.peer_choking && p.allowed_fast.is_empty() {
            return;
        }
        let outstanding = self.picker.outstanding(key);
        let timeout = self.session.config.timing.snub_timeout;
        let by_rate = (p.down.rate(now) * PIPELINE_SECONDS / f64::from(BLOCK_SIZE)) as usize;
        let full = by_rate.clamp(MIN_PIPELINE, MAX_PIPELINE);
        let target = if p.silent(now, timeout, outstanding) {
            1
        } else if p.dropping(now, timeout) {
            (full / 4).max(SNUBBED_PIPELINE)
        } else {
            full
        }
        .min(p.max_outstanding());
        // Refill in batches, not block by block.
        if outstanding >= target
            || (outstanding > 0 && target - outstanding < target / 4 && target > 8)
        {
            return;
        }
        let mut blocks = Vec::new();
        let req = PickRequest {
            bits,
            choked: p.peer_choking,
            allowed_fast: &p.allowed_fast,
            max: target - outstanding,
            endgame: !p.snubbed(now, timeout, outstanding),
            now,
        };
        picker!(self).pick(key, &req, &mut blocks);
        if blocks.is_empty() {
            return;
        }
        if self.v2.is_some() {
            let mut pieces: Vec<u32> = blocks.iter().map(|b| b.index).collect();
            pieces.dedup();
            self.ask_piece_leaves(key, &pieces, now);
        }
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        if p.commands.try_send(PeerCommand::Request(blocks)).is_err() {
            self.close(key);
        }
    }

    /// Cancels every request that went overdue (see the picker's request
    /// deadlines) and counts it against its peer; the blocks are pickable
    /// again, from the same peer too. Pieces a peer refused are asked of it
    /// again once their back-off has passed.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        let grace = self.session.config.timing.request_timeout;
        let snub = self.session.config.timing.snub_timeout;
        let mut any = false;
        let mut slow = Vec::new();
        for (&key, p) in self.peers.iter_mut() {
            if p.refused.iter().any(|&(_, until)| until <= now) {
                let (back, keep): (Vec<_>, Vec<_>) =
                    p.refused.drain(..).partition(|&(_, until)| until <= now);
                p.refused = keep;
                if let Some(bits) = p.bits.as_mut() {
                    for (piece, _) in back {
                        if bits.set(piece as usize) {
                            picker!(self).peer_has(piece as usize);
                        }
                    }
                }
                any = true;
            }
            let outstanding = self.picker.outstanding(key);
            if outstanding == 0 {
                continue;
            }
            let rate = p.down.rate(now).max(DEADLINE_MIN_RATE);
            let deadline = if p.silent(now, snub, outstanding) {
                // Unchoked and nothing for `snub` while we wait: every
                // request older than that goes elsewhere (mainline), or
                // back to this peer, one at a time, if it is the only one.
                Deadline {
                    grace: snub,
                    per_block: Duration::ZERO,
                }
            } else {
                Deadline {
                    grace,
                    per_block: Duration::from_secs_f64(f64::from(BLOCK_SIZE) / rate),
                }
            };
            let overdue = picker!(self).expire(key, now, deadline);
            if overdue.is_empty() {
                continue;
            }
            any = true;
            p.drops += overdue.len() as u64;
            p.last_drop = Some(now);
            debug!(
                "{} {}: {} requests overdue ({} in all), asking again",
                p.addr,
                &self.info_hash.to_hex()[..8],
                overdue.len(),
                p.drops
            );
            if overdue
                .into_iter()
                .any(|b| p.commands.try_send(PeerCommand::Cancel(b)).is_err())
            {
                slow.push(key);
            }
        }
        for key in slow {
            self.close(key);
        }
        if any {
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                self.update_interest(k);
            }
        }
    }

    pub(super) fn fill_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill(k);
        }
    }

    /// Whether a connection to `a` exists: dialled there, or from a peer
    /// whose extension handshake says it listens there (an incoming
    /// connection comes from another port).
    pub(super) fn connected_to(&self, a: SocketAddr) -> bool {
        self.peers.values().any(|p| {
            p.addr == a
                || (p.incoming
                    && p.addr.ip() == a.ip()
                    && p.ext.as_ref().and_then(|h| h.p) == Some(a.port()))
        })
    }

    pub(super) fn peer_gone(&mut self, key: PeerKey, reason: PeerError) {
        let Some(mut p) = self.peers.remove(&key) else {
            return;
        };
        self.superseed_gone(key);
        // One of two connections to the same peer (a simultaneous open,
        // closed by one side): the other one lives on, nothing to redial.
        let still_connected = p.peer_id.is_some_and(|id| {
            self.peers
                .values()
                .any(|q| q.ready && q.peer_id == Some(id))
        });
        if let Some(t) = p.thread.take() {
            let _ = t.join();
        }
        // Count what was sent since the last tick's sample.
        let sent = p.stats.uploaded.load(Ordering::Relaxed) - p.seen_up;
        self.count_rate(idle::Direction::Up, sent, Instant::now());
        self.transfer.uploaded.fetch_add(sent, Ordering::Relaxed);
        if let Some(bits) = &p.bits {
            self.picker.peer_lost_bitfield(bits);
        }
        self.picker.peer_gone(key);
        if self.peers.is_empty() {
            // Keep ticking a while, so the published rates fall to zero.
            self.quiet_until = Some(Instant::now() + QUIET_TICKS);
            // Nobody to choke: the next peer gets a new choker.
            self.choker = None;
        }
        debug!("{} {}: disconnected: {reason}", p.addr, self.short());
        if let PeerError::Protocol(violation) = &reason {
            let violation = violation.clone();
            self.emit(TorrentEvent::PeerViolation {
                addr: p.addr,
                violation,
            });
        }
        match reason {
            PeerError::SelfConnection | PeerError::WrongInfoHash => {
                // Never again.
                swarm!(self)
                    .failed
                    .insert(p.addr, Instant::now() + Duration::from_secs(24 * 3600));
            }
            PeerError::Closed if p.ready => {}
            _ if still_connected => {}
            _ if !p.incoming => {
                // A working connection that broke (reset, timeout, the peer
                // restarting, data gone on our side) goes back in line, as
                // a peer given by hand has no tracker to hand it out again:
                // dialled after 3 s, then with doubling waits while dialling
                // fails, REDIAL_TRIES times. Other failures wait RETRY_AFTER
                // for the tracker to offer the peer again.
                // A failed MSE handshake too: Debian's libtorrent 2.0.8
                // fails about 1 in 256 of them (an unpadded secret), and
                // the next, with fresh keys, works.
                let transient = matches!(
                    reason,
                    PeerError::Io(_) | PeerError::Idle | PeerError::Storage(_) | PeerError::Mse(_)
                );
                // A peer given by hand is dialled again the same way even
                // if it never answered (it may not be up yet).
                let tries = if p.ready {
                    Some(0)
                } else if let Some(n) = swarm!(self).redials.get(&p.addr) {
                    Some(n + 1)
                } else if self.options.peers.contains(&p.addr) {
                    Some(0)
                } else {
                    None
                };
                match tries {
                    Some(n) if transient && n < REDIAL_TRIES => {
                        swarm!(self).redials.insert(p.addr, n);
                        swarm!(self)
                            .failed
                            .insert(p.addr, Instant::now() + REDIAL_AFTER * (1 << n));
                        swarm!(self)
                            .candidates
                            .requeue(p.addr, CandidateSource::Offered);
                    }
                    _ => {
                        swarm!(self).redials.remove(&p.addr);
                        swarm!(self)
                            .failed
                            .insert(p.addr, Instant::now() + RETRY_AFTER);
                    }
                }
            }
            _ => {}
        }
        self.fill_all();
        self.rechoke(false);
    }

    /// Closes the connections to peers the session's IP filter blocks:
    /// those connected before their address was blocked (not kept, as in
    /// Transmission), and those whose dial or handshake was under way
    /// when it changed. Runs each tick while the filter blocks anything
    /// (a lookup per peer), and once after it is emptied.
    pub(super) fn drop_blocked(&mut self) {
        let generation = self.session.filter_generation();
        let filter = self.session.ip_filter.lock().clone();
        if filter.is_empty() && generation == self.filter_seen {
            return;
        }
        self.filter_seen = generation;
        let blocked: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.closing && filter.contains(p.addr.ip()))
            .map(|(k, _)| *k)
            .collect();
        for key in blocked {
            debug!("{}: closed, now in the blocklist", self.peers[&key].addr);
            self.close(key);
        }
    }

    /// Ends a connection. The writer gets `Close` after the commands queued
    /// before it (the last HAVEs go out) and ends within [`CLOSE_GRACE`];
    /// a writer that cannot take it (full queue) or does not end in time
    /// (blocked writing to a peer that stopped reading) has its socket shut
    /// down under it, which ends any blocked read or write at once.
    pub(super) fn close(&mut self, key: PeerKey) {
        if let Some(p) = self.peers.get_mut(&key) {
            if !p.closing {
                p.closing = true;
                if p.commands.try_send(PeerCommand::Close).is_err() {
                    p.socket.cut();
                } else {
                    p.cut_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }

    /// Cuts the connections that were closed more than [`CLOSE_GRACE`] ago
    /// and have not ended.
    pub(super) fn cut_stragglers(&mut self, now: Instant) {
        for p in self.peers.values_mut() {
            if p.cut_at.is_some_and(|t| t <= now) {
                p.cut_at = None;
                p.socket.cut();
            }
        }
    }

    /// Addresses from the torrent's peer source (trackers, the user).
    pub(crate) fn add_candidates(&mut self, peers: Vec<SocketAddr>) {
        self.add_candidates_from(CandidateSource::Offered, peers);
    }

    /// The one intake of candidate addresses, whatever their source:
    /// each is remembered and queued to be dialled within the torrent's
    /// bounds and its source's (see `candidates`). Our own listener (a
    /// tracker hands every seeder its own address back) is not: it would
    /// never be dialled, and remembering it would keep an idle torrent's
    /// swarm state (about 1 KiB) alive for nothing.
    pub(crate) fn add_candidates_from(&mut self, source: CandidateSource, peers: Vec<SocketAddr>) {
        for a in peers {
            if self.session.is_own_addr(a) {
                continue;
            }
            let connected = self.connected_to(a);
            swarm!(self).candidates.offer(source, a, connected);
        }
        self.connect_more();
    }

    pub(crate) fn connect_more(&mut self) {
        if !self.running() {
            return;
        }
        let max_peers = self.session.config.max_peers_per_torrent;
        let max_connections = self.session.config.max_connections;
        let now = Instant::now();
        let mut tries = swarm!(self).candidates.len();
        while tries > 0
            && self.peers.len() < max_peers
            && self.session.connections.load(Ordering::Relaxed) < max_connections
        {
            tries -= 1;
            let Some((addr, source)) = swarm!(self).candidates.pop() else {
                break;
            };
            if swarm!(self).banned.contains(&ban_key(addr)) || self.connected_to(addr) {
                continue;
            }
            if swarm!(self).failed.get(&addr).is_some_and(|t| *t > now) {
                swarm!(self).candidates.requeue(addr, source);
                continue;
            }
            if self.session.is_own_addr(addr) {
                // Our own listener, handed back by a tracker or a peer.
                continue;
            }
            if self.session.blocked(addr.ip()) {
                // Whatever found it (tracker, PEX, DHT, LSD, x.pe).
                continue;
            }
            if !self.session.half_open.turn(self.id) {
                // The session's half-open bound: the controller thread
                // gives us a turn when a slot frees (see `halfopen`).
                swarm!(self).candidates.requeue(addr, source);
                break;
            }
            self.spawn_peer(Origin::Outgoing(addr), addr);
        }
    }

    /// What our extension handshakes say now: `upload_only` once we seed,
    /// except as a super-seeder (see `spawn_peer`).
    pub(super) fn ext_setup(&self, super_seeding: bool) -> crate::peer::ExtensionSetup {
        crate::peer::ExtensionSetup {
            listen_port: self.session.port,
            metadata: Some(self.info_bytes.clone()),
            upload_only: self.state == TorrentState::Seeding && !super_seeding,
            pex: self.pex_allowed(),
            encryption: self.session.encryption() != crate::config::Encryption::Disable,
            own_ips: self.session.own_ips(),
        }
    }

    /// The download just completed: every connection that has sent its
    /// extension handshake gets ours again, now with `upload_only` (BEP 21),
    /// as libtorrent does, so a partial view of us as a leecher is
    /// corrected without waiting for our HAVEs. Not under super-seeding,
    /// which never says `upload_only`.
    pub(super) fn resend_upload_only(&mut self) {
        if self.options.super_seed {
            return;
        }
        let setup = self.ext_setup(false);
        let mut slow = Vec::new();
        for (&key, p) in &self.peers {
            if p.ext.is_none() || p.cut_at.is_some() {
                continue;
            }
            let payload = setup.handshake(p.addr).encode();
            if p.commands
                .try_send(PeerCommand::ExtensionHandshake(payload))
                .is_err()
            {
                slow.push(key);
            }
        }
        for key in slow {
            self.close(key);
        }
    }

    /// Learns a peer's MSE support for later dials: from how dialling it
    /// went (`learnt`), or from its extension handshake's `e` (at the
    /// address it can be dialled at).
    pub(super) fn learn_mse(&mut self, key: PeerKey, learnt: Option<bool>) {
        let Some(p) = self.peers.get(&key) else {
            return;
        };
        let said_e = p.ext.as_deref().filter(|h| h.e).map(|h| h.p);
        if let (false, Some(m)) = (p.incoming, learnt) {
            swarm!(self).candidates.note_mse(p.addr, m);
        }
        match (said_e, p.incoming) {
            (Some(_), false) => swarm!(self).candidates.note_mse(p.addr, true),
            (Some(Some(port)), true) => {
                let a = SocketAddr::new(p.addr.ip(), port);
                swarm!(self).candidates.note_mse(a, true);
            }
            _ => {}
        }
    }

    pub(super) fn spawn_peer(&mut self, origin: Origin, addr: SocketAddr) {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let (tx, rx) = bounded(PEER_COMMAND_QUEUE);
        let stats = Arc::new(PeerStats::default());
        let socket = Arc::new(SocketSlot::default());
        let mut conn = Connection::new(self.session.connections.clone(), socket.clone());
        if matches!(origin, Origin::Outgoing(_)) {
            conn = conn.dialing(self.session.half_open.count.clone());
        }
        // A super-seeder never says `upload_only` (BEP 21): libtorrent
        // drops an upload-only peer whenever it is not interested, which it
        // is between two revealed pieces.
        let revealed = self.superseed_set(key);
        let super_seeding = revealed.is_some();
        let ctx = PeerContext {
            torrent: self.id,
            key,
            info_hash: self.info_hash,
            our_id: self.session.peer_id,
            storage: self.storage.clone(),
            have: self.have.clone(),
            claims: self.claims.clone(),
            hashes: self.hashes.get_or_insert_with(Arc::default).clone(),
            // SHA-1 as blocks arrive: v1 and hybrid pieces only
            inline_hashing: self.session.config.inline_hashing && self.storage.layout().has_v1(),
            mapped_upload: self.session.config.mapped_upload,
            events: self.links.peers.clone(),
            stats: stats.clone(),
            transfer: self.transfer.clone(),
            published: self.published.clone(),
            session_limits: [self.session.upload.clone(), self.session.download.clone()],
            timing: self.session.config.timing.clone(),
            dial: crate::peer::Dial {
                utp_first: matches!(origin, Origin::Outgoing(a) if swarm!(self).candidates.utp(a)),
                ..self.session.dial.clone()
            },
            dht: match &self.session.dht {
                Some(d) if !self.meta.private => Some((d.clone(), self.session.port)),
                _ => None,
            },
            revealed,
            ext: self.ext_setup(super_seeding),
            encryption: self.session.encryption(),
            v2: (self.meta.info_hash_v2.as_deref().map(|h| h.truncated())).zip(self.v2.clone()),
            known_mse: match origin {
                Origin::Outgoing(a) => swarm!(self).candidates.mse(a),
                Origin::Incoming(..) => None,
            },
        };
        let incoming = matches!(origin, Origin::Incoming(..));
        // A thread that cannot start drops `conn`, giving the count back.
        match peer::spawn(ctx, origin, rx, conn) {
            Ok(thread) => {
                let now = Instant::now();
                self.peers.insert(
                    key,
                    Peer {
                        addr,
                        commands: tx,
                        socket,
                        cut_at: None,
                        stats,
                        thread: Some(thread),
                        ready: false,
                        incoming,
                        utp: false,
                        encrypted: false,
                        v2: false,
                        peer_id: None,
                        bits: None,
                        fast: false,
                        am_choking: true,
                        am_interested: false,
                        peer_choking: true,
                        peer_interested: false,
                        allowed_fast: Vec::new(),
                        reqq: DEFAULT_REQQ,
                        drops: 0,
                        last_drop: None,
                        refused_once: HashSet::new(),
                        refused: Vec::new(),
                        client: None,
                        ext: None,
                        pex: None,
                        connected_at: now,
                        last_block: now,
                        down: RateMeasure::new(Duration::from_secs(10), now),
                        up: RateMeasure::new(Duration::from_secs(10), now),
                        seen_down: 0,
                        seen_up: 0,
                        closing: false,
                    },
                );
            }
            Err(e) => warn!("cannot start a peer thread: {e}"),
        }
    }

    // ---- choking ------------------------------------------------------

    pub(super) fn rechoke(&mut self, round: bool) {
        let now = Instant::now();
        let seeding = self.state == TorrentState::Seeding;
        let candidates: Vec<ChokeCandidate> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ready && !p.closing)
            // An upload-only peer (BEP 21) wants nothing from us, whatever
            // its INTERESTED says: it holds no slot, not even an idle one.
            .filter(|(_, p)| !p.upload_only())
            .map(|(k, p)| ChokeCandidate {
                peer: *k,
                interested: p.peer_interested,
                snubbed: p.snubbed(
                    now,
                    self.session.config.timing.snub_timeout,
                    self.picker.outstanding(*k),
                ),
                download_rate: p.down.rate(now),
                upload_rate: p.up.rate(now),
                connected_at: p.connected_at,
                unchoked: !p.am_choking,
            })
            .collect();
        let unchoke: HashSet<PeerKey> = self
            .choker()
            .rechoke(now, seeding, &candidates, round)
            .into_iter()
            .collect();
        let mut slow = Vec::new();
        for (k, p) in self.peers.iter_mut() {
            if !p.ready || p.closing {
                continue;
            }
            let want_choke = !unchoke.contains(k);
            if want_choke != p.am_choking {
                p.am_choking = want_choke;
                let cmd = if want_choke {
                    PeerCommand::Choke
                } else {
                    PeerCommand::Unchoke
                };
                if p.commands.try_send(cmd).is_err() {
                    slow.push(*k);
                }
            }
        }
        for k in slow {
            self.close(k);
        }
    }
}

/// Of two connections to the same peer (`theirs`), the one to close: when
/// both sides dialled at once (one connection in, one out), the one the
/// side with the greater peer id did not open, so that both sides close
/// the same one (closing the newer one each would lose both when each
/// side saw a different one first, as happens when two peers learn of
/// each other at once through PEX or a tracker); else the newer one.
pub(super) fn duplicate_to_close(
    ours: PeerId,
    theirs: PeerId,
    new: (PeerKey, bool),
    old: (PeerKey, bool),
) -> PeerKey {
    let (new_key, new_incoming) = new;
    if new_incoming == old.1 {
        return new_key;
    }
    // Keep the connection the greater id opened: theirs is an incoming one.
    let keep_incoming = theirs.as_bytes() > ours.as_bytes();
    if new_incoming == keep_incoming {
        old.0
    } else {
        new_key
    }
}

impl Peer {
    /// It said `upload_only` (BEP 21): it wants nothing, whatever its
    /// INTERESTED says.
    pub(super) fn upload_only(&self) -> bool {
        self.ext.as_deref().is_some_and(|h| h.upload_only)
    }

    /// A seed of what it has: a full piece set, or `upload_only`.
    pub(super) fn is_seed(&self) -> bool {
        self.bits.as_ref().is_some_and(Bitfield::is_full) || self.upload_only()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_wire::PeerId;

    #[test]
    fn both_sides_of_a_simultaneous_open_close_the_same_connection() {
        let (a, b) = (PeerId([1; 20]), PeerId([2; 20]));
        // Connection x was opened by a, y by b. On a's side x is outgoing
        // and y incoming; on b's side the other way round. Whichever each
        // side saw first, both close x (the one the smaller id opened).
        let (x_at_a, y_at_a) = ((PeerKey(10), false), (PeerKey(11), true));
        let (x_at_b, y_at_b) = ((PeerKey(20), true), (PeerKey(21), false));
        assert_eq!(duplicate_to_close(a, b, y_at_a, x_at_a), PeerKey(10));
        assert_eq!(duplicate_to_close(a, b, x_at_a, y_at_a), PeerKey(10));
        assert_eq!(duplicate_to_close(b, a, y_at_b, x_at_b), PeerKey(20));
        assert_eq!(duplicate_to_close(b, a, x_at_b, y_at_b), PeerKey(20));
        // Two connections the same way (say over IPv4 and IPv6): the newer.
        let (old, new) = ((PeerKey(1), false), (PeerKey(2), false));
        assert_eq!(duplicate_to_close(a, b, new, old), PeerKey(2));
    }
}
