//! The second step of a v2 or hybrid magnet's metadata phase (BEP 52): the
//! info dictionary is in, but the piece layers of files longer than one
//! piece are not part of it. They are asked of the same connections (v2
//! ones only: libtorrent drops a v1 connection that sends hash requests)
//! with hash requests ([`LayerFetch`]), each answer proven against the
//! file's root, and the `.torrent` written and handed over holds them, so
//! the torrent checks every piece (and every block, `v2::blocks`) as one
//! added from a complete `.torrent` does.
//!
//! A hybrid can do without them (its SHA-1 half checks pieces): it asks
//! when a v2 peer is there (with a `btmh` hash the connections were opened
//! with the v2 bit, so v2 peers upgraded them; a `btih`-only link learns
//! the v2 hash from the info dictionary and dials its v2 peers again under
//! it), and it hands over without layers when no v2 peer is left to ask or
//! after [`HYBRID_LAYER_WAIT`], so a swarm of v1-only peers is not held up.

use std::time::{Duration, Instant};

use bittern_storage::merkle::Hash256;
use bittern_wire::hashes::HashRequest;
use bittern_wire::Metainfo;
use log::{debug, info, warn};

use std::net::SocketAddr;

use super::file::torrent_file_bytes;
use super::MetadataFetch;
use crate::error::Violation;
use crate::peer::{Origin, PeerCommand};
use crate::picker::PeerKey;
use crate::status::TorrentState;
use crate::v2::layers::{LayerFetch, Outcome};

/// Hash requests outstanding with one peer.
const MAX_PER_PEER: usize = 4;
/// How long a hybrid waits for its piece layers before it goes on with
/// its SHA-1 half alone.
const HYBRID_LAYER_WAIT: Duration = Duration::from_secs(30);

/// The fetched info dictionary waiting for its piece layers.
pub(super) struct LayerPhase {
    fetch: LayerFetch,
    info: Vec<u8>,
    /// A hybrid's metainfo and `.torrent` without layers, and when it
    /// gives up waiting for them.
    hybrid: Option<(Metainfo, Vec<u8>, Instant)>,
}

impl MetadataFetch {
    /// Starts asking for the piece layers `metainfo` (whose `.torrent` is
    /// `file`) lacks, when it is a v2 or hybrid torrent that lacks some;
    /// false when there is nothing to fetch, or a hybrid has no v2 peer to
    /// ask (it checks pieces by its SHA-1 half then).
    pub(super) fn start_layers(&mut self, metainfo: &Metainfo, info: &[u8], file: &[u8]) -> bool {
        let hybrid = metainfo.info.version.has_v1();
        if hybrid && self.setup.info_hash_v2.is_none() {
            // A `btih`-only link: the info dictionary (which passed its
            // SHA-1) names the v2 hash, to ask v2 peers under.
            let Some(v2) = metainfo.info_hash_v2 else {
                return false;
            };
            self.learn_v2_hash(v2.0);
        }
        let Some(fetch) = LayerFetch::new(metainfo) else {
            return false;
        };
        if hybrid && !self.peers.values().any(|p| p.ready && !p.closing && p.v2) {
            // v1 connections to peers that speak v2 (libtorrent ties an
            // MSE stream to the hash it was opened under): opened again
            // under the v2 hash, the v1 one closed first
            let redial: Vec<(PeerKey, SocketAddr)> = self
                .peers
                .iter()
                .filter(|(_, p)| p.ready && !p.closing && p.v2_bit && p.outgoing)
                .map(|(k, p)| (*k, p.addr))
                .collect();
            if redial.is_empty() {
                return false;
            }
            for (key, addr) in redial {
                self.skip.insert(addr);
                self.close(key);
                self.spawn_peer(Origin::Outgoing(addr), addr, true);
            }
        }
        info!(
            "{}: metadata complete, fetching piece layers by hash request",
            self.short()
        );
        self.layers = Some(LayerPhase {
            fetch,
            info: info.to_vec(),
            hybrid: hybrid.then(|| {
                (
                    metainfo.clone(),
                    file.to_vec(),
                    Instant::now() + HYBRID_LAYER_WAIT,
                )
            }),
        });
        self.request_layers();
        true
    }

    /// A hybrid fetched by its `btih` alone: its v2 hash, from the info
    /// dictionary, is the magnet's from now on, so v2 peers are dialled
    /// under its truncation (for the piece layers) and peers naming it by
    /// that truncation reach the torrent (an alias, as for a link that
    /// had both hashes).
    fn learn_v2_hash(&mut self, v2: [u8; 32]) {
        self.setup.info_hash_v2 = Some(v2);
        let Some(alias) = self.v2_wire_hash() else {
            return;
        };
        info!("{}: v2 info hash {}", self.short(), alias.to_hex());
        if !super::add_alias(&self.setup.registry, alias, self.setup.id) {
            warn!("{}: v2 info hash taken by another torrent", alias.to_hex());
        }
    }

    /// Asks every ready peer for chunks of the piece layers.
    pub(super) fn request_layers(&mut self) {
        if self.paused {
            return;
        }
        let Some(phase) = self.layers.as_mut() else {
            return;
        };
        let now = Instant::now();
        let mut keys: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ready && !p.closing && p.v2)
            .map(|(k, _)| *k)
            .collect();
        keys.sort();
        let mut failed = Vec::new();
        for key in keys {
            let Some(p) = self.peers.get(&key) else {
                continue;
            };
            while let Some(req) = phase.fetch.next_request(key, MAX_PER_PEER, now) {
                if p.commands.try_send(PeerCommand::HashRequest(req)).is_err() {
                    failed.push(key);
                    break;
                }
            }
        }
        for key in failed {
            if let Some(phase) = self.layers.as_mut() {
                phase.fetch.peer_gone(key);
            }
            self.close(key);
        }
        // A hybrid with nobody left to ask: on with its SHA-1 half.
        let v2_peers = self
            .peers
            .values()
            .any(|p| !p.closing && (p.v2 || !p.ready));
        if let Some(phase) = self.layers.as_ref() {
            if phase.hybrid.is_some() && !phase.fetch.any_in_flight() && !v2_peers {
                return self.layers_given_up("no v2 peer has them");
            }
        }
        self.arm_tick();
    }

    /// A hybrid goes on without piece layers: its pieces are checked by
    /// SHA-1, its `.torrent` saved without them.
    fn layers_given_up(&mut self, why: &str) {
        let Some(LayerPhase {
            hybrid: Some((metainfo, file, _)),
            ..
        }) = self.layers.take()
        else {
            return;
        };
        info!(
            "{}: piece layers not fetched ({why}): pieces checked by SHA-1",
            self.short()
        );
        self.hand_over(metainfo, file);
    }

    /// A peer's `hashes`: kept when proven, else the peer is dropped.
    pub(super) fn on_hashes(&mut self, key: PeerKey, req: &HashRequest, hashes: &[Hash256]) {
        let Some(phase) = self.layers.as_mut() else {
            return;
        };
        if phase.fetch.on_hashes(key, req, hashes) == Outcome::Bad {
            warn!(
                "{}: peer {}: hashes that do not prove against the root",
                self.short(),
                key.0
            );
            self.emit_violation(key, Violation::BadHashes);
            self.drop_peer(key, None);
        } else if phase.fetch.is_complete() {
            return self.layers_complete();
        }
        self.request_layers();
    }

    /// A peer's `hash reject`: the chunk goes to another peer.
    pub(super) fn on_hash_reject(&mut self, key: PeerKey, req: &HashRequest) {
        if let Some(phase) = self.layers.as_mut() {
            if phase.fetch.on_reject(key, req) {
                debug!("{}: peer {} rejects a hash request", self.short(), key.0);
            }
        }
        self.request_layers();
    }

    /// Frees the requests of `key` (gone) and of peers silent too long.
    pub(super) fn layers_peer_gone(&mut self, key: PeerKey) {
        if let Some(phase) = self.layers.as_mut() {
            phase.fetch.peer_gone(key);
        }
    }

    /// Drops peers sitting on hash requests past the answer timeout.
    pub(super) fn layers_timer(&mut self, now: Instant) {
        let Some(phase) = self.layers.as_mut() else {
            return;
        };
        if phase
            .hybrid
            .as_ref()
            .is_some_and(|(_, _, until)| now >= *until)
        {
            return self.layers_given_up("no answer in time");
        }
        for key in phase.fetch.expire(now) {
            debug!("{}: peer {} sent no hashes in time", self.short(), key.0);
            self.close(key);
        }
    }

    /// Every layer is in: the `.torrent` with them, then the hand-over.
    fn layers_complete(&mut self) {
        let Some(phase) = self.layers.take() else {
            return;
        };
        let layers = phase.fetch.layers().unwrap_or_default();
        let file = torrent_file_bytes(
            &phase.info,
            &layers,
            &self.setup.trackers,
            &self.setup.web_seeds,
        );
        match Metainfo::from_bytes(&file) {
            Ok(m) if self.names(&m) => {
                info!(
                    "{}: piece layers complete ({} files)",
                    self.short(),
                    layers.len()
                );
                self.hand_over(m, file);
            }
            // the layers were proven against the roots: a bug, not a peer
            Ok(_) | Err(_) => {
                warn!(
                    "{}: the torrent with its piece layers does not parse",
                    self.short()
                );
                self.end(TorrentState::Stopped);
            }
        }
    }
}
