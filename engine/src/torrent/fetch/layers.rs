//! The second step of a v2-only magnet's metadata phase (BEP 52): the info
//! dictionary is in, but the piece layers of files longer than one piece
//! are not part of it. They are asked of the same connections with hash
//! requests ([`LayerFetch`]), each answer proven against the file's root,
//! and the `.torrent` written and handed over holds them, so the torrent
//! checks every piece as one added from a complete `.torrent` does.

use std::time::Instant;

use bittern_storage::merkle::Hash256;
use bittern_wire::hashes::HashRequest;
use bittern_wire::Metainfo;
use log::{debug, info, warn};

use super::file::torrent_file_bytes;
use super::MetadataFetch;
use crate::error::Violation;
use crate::peer::PeerCommand;
use crate::picker::PeerKey;
use crate::status::TorrentState;
use crate::v2::layers::{LayerFetch, Outcome};

/// Hash requests outstanding with one peer.
const MAX_PER_PEER: usize = 4;

/// The fetched info dictionary waiting for its piece layers.
pub(super) struct LayerPhase {
    fetch: LayerFetch,
    info: Vec<u8>,
}

impl MetadataFetch {
    /// Starts asking for the piece layers `metainfo` lacks, when it is a
    /// v2-only torrent that lacks some; false when there is nothing to
    /// fetch (hybrids check pieces by their SHA-1 half without layers).
    pub(super) fn start_layers(&mut self, metainfo: &Metainfo, info: &[u8]) -> bool {
        if metainfo.info.version.has_v1() {
            return false;
        }
        let Some(fetch) = LayerFetch::new(metainfo) else {
            return false;
        };
        info!(
            "{}: metadata complete, fetching piece layers by hash request",
            self.short()
        );
        self.layers = Some(LayerPhase {
            fetch,
            info: info.to_vec(),
        });
        self.request_layers();
        true
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
            .filter(|(_, p)| p.ready && !p.closing)
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
        self.arm_tick();
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
            Ok(m) if m.info_hash == self.setup.info_hash => {
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
