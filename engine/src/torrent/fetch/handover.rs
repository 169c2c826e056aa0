//! The end of a metadata fetch: the `.torrent` written, the torrent's
//! controller built and handed over (or the fetch ended without one), and
//! the fetch's own announces (trackers and DHT) while it runs.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bittern_tracker::TransferStats;
use bittern_wire::Metainfo;
use log::{info, warn};

use super::file::{torrent_file_bytes, write_file};
use super::MetadataFetch;
use crate::picker::PeerKey;
use crate::session::add_alias;
use crate::status::TorrentState;
use crate::torrent::controller::{build_controller, ControllerSetup};

impl MetadataFetch {
    // ---- the hand-over --------------------------------------------------

    /// The info dictionary passed the hash: write the `.torrent`, build the
    /// torrent's controller and hand it over.
    pub(super) fn complete(&mut self, info: Vec<u8>) {
        let file = torrent_file_bytes(&info, &[], &self.setup.trackers, &self.setup.web_seeds);
        let metainfo = match Metainfo::from_bytes_without_layers(&file) {
            Ok(m) if self.names(&m) => m,
            Ok(_) | Err(_) => {
                // The info hash matched, so the torrent itself is broken:
                // no peer can give us a better one.
                warn!("{}: fetched metadata is not a valid torrent", self.short());
                return self.end(TorrentState::Stopped);
            }
        };
        if metainfo.info_hash != self.setup.info_hash {
            // A hybrid fetched by its `btmh` alone: peers naming it by its
            // v1 hash reach it too.
            if !add_alias(&self.setup.registry, metainfo.info_hash, self.setup.id) {
                warn!(
                    "{}: v1 info hash taken by another torrent",
                    metainfo.info_hash.to_hex()
                );
            }
        }
        info!(
            "{}: metadata complete ({} bytes, {} pieces): {}",
            self.short(),
            info.len(),
            metainfo.info.piece_count(),
            metainfo.info.name
        );
        if !self.start_layers(&metainfo, &info, &file) {
            self.hand_over(metainfo, file);
        }
    }

    /// The metadata (and a v2 torrent's piece layers) are in: write the
    /// `.torrent`, close the fetch's connections and hand over to the
    /// torrent's controller.
    pub(super) fn hand_over(&mut self, metainfo: Metainfo, file: Vec<u8>) {
        let file: Arc<[u8]> = Arc::from(file);
        *self.setup.published.torrent_file.lock() = Some(file.clone());
        let path = self.setup.torrent_file.clone();
        // Off the controller thread; a failure costs a second fetch after a
        // restart, nothing else.
        let spawned = std::thread::Builder::new()
            .name("bittern-save-meta".into())
            .spawn(move || {
                if let Err(e) = write_file(&path, &file) {
                    warn!("cannot save {}: {e}", path.display());
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start a thread to save the metadata: {e}");
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.close(k);
        }
        self.remove_from_announcer();
        let mut options = self.setup.options.clone();
        let mut peers: Vec<SocketAddr> = self.setup.options.peers.clone();
        for a in &self.known {
            if !self.banned.contains(a) && !peers.contains(a) {
                peers.push(*a);
            }
        }
        options.peers = peers;
        options.paused = self.paused;
        let setup = ControllerSetup {
            id: self.setup.id,
            metainfo,
            save_dir: self.setup.save_dir.clone(),
            options,
            session: self.setup.session.clone(),
            registry: self.setup.registry.clone(),
            commands: self.setup.commands.clone(),
            links: self.setup.links.clone(),
            reuse: Some((self.setup.published.clone(), self.setup.events.clone())),
        };
        match build_controller(setup) {
            Ok((ctl, _handle)) => self.handover = Some(Box::new(ctl)),
            Err(e) => {
                warn!(
                    "{}: cannot start after fetching metadata: {e}",
                    self.short()
                );
                self.publish_state(TorrentState::Stopped);
                self.setup.published.finish();
            }
        }
        self.finished = true;
    }

    /// Ends the fetch without metadata (removed, or the torrent is broken).
    pub(super) fn end(&mut self, state: TorrentState) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.close(k);
        }
        self.remove_from_announcer();
        self.publish_state(state);
        self.finished = true;
        self.setup.published.finish();
    }

    // ---- tracker --------------------------------------------------------

    pub(super) fn start_announcer(&mut self) {
        let s = &self.setup.session;
        // The DHT finds the peers of a magnet link without trackers
        // (whether the torrent is private is only known with the
        // metadata; the full torrent then decides for itself).
        if let Some(d) = &s.dht {
            // a hybrid link's truncated v2 hash too
            let mut hashes = vec![self.setup.info_hash];
            hashes.extend(self.v2_wire_hash().filter(|h| *h != self.setup.info_hash));
            d.add(self.setup.id, hashes);
        }
        if !s.config.announce || self.announcer.is_some() || self.setup.trackers.is_empty() {
            return;
        }
        // Nothing is known of the size: announce as a leecher that lacks
        // everything (a tracker then hands out seeds).
        self.transfer.left.store(1, Ordering::Relaxed);
        let transfer = self.transfer.clone();
        let stats = Arc::new(move || TransferStats {
            uploaded: 0,
            downloaded: 0,
            left: transfer.left.load(Ordering::Relaxed),
        });
        let key = s.announce_key(self.setup.id);
        let (info_hash, tiers) = (self.setup.info_hash, self.setup.trackers.clone());
        let v2 = self
            .v2_wire_hash()
            .filter(|h| *h != info_hash)
            .map(|h| (s.announce_key(self.setup.id), h));
        let stats: bittern_tracker::StatsSource = stats;
        let keys: Vec<_> = std::iter::once((key, info_hash)).chain(v2).collect();
        if s.announce(&keys, &tiers, &stats) {
            self.announcer = Some(key);
            self.announcer_v2 = v2.map(|(k, _)| k);
            *self.setup.published.announce_key.lock() = Some(key);
        }
    }

    pub(super) fn remove_from_announcer(&mut self) {
        if let Some(d) = &self.setup.session.dht {
            d.remove(self.setup.id);
        }
        if let Some(key) = self.announcer_v2.take() {
            self.setup.session.with_announcer(|a| drop(a.remove(key)));
        }
        if let Some(key) = self.announcer.take() {
            *self.setup.published.announce_key.lock() = None;
            // `stopped` goes out in the background; the torrent announces
            // `started` again under a new key.
            self.setup.session.with_announcer(|a| drop(a.remove(key)));
        }
    }
}
