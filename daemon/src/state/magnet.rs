//! Torrents added by magnet link: restoring them from the store, and
//! adopting the metadata the engine fetched (saved as the torrent's
//! `.torrent` in the store, so a restart does not fetch it again).

use std::sync::Arc;
use std::time::Instant;

use bittern_wire::{InfoHash, Magnet, Metainfo};
use log::{info, warn};

use super::{rename, Inner, Torrents};
use crate::backend::Backend;
use crate::store::Record;

/// What a saved torrent is: its info hash, its metainfo (none yet for a
/// magnet whose metadata was not fetched) and its magnet link. `None`
/// (logged) when neither can be read.
pub(super) fn restore(
    record: &Record,
    bytes: Option<&[u8]>,
) -> Option<(InfoHash, Option<Arc<Metainfo>>, Option<Magnet>)> {
    let magnet = record
        .magnet
        .as_deref()
        .and_then(|uri| match Magnet::parse(uri) {
            Ok(m) => Some(m),
            Err(e) => {
                warn!("{}: bad saved magnet link: {e}", record.info_hash);
                None
            }
        });
    if let Some(bytes) = bytes {
        let mut metainfo = match Metainfo::from_bytes(bytes) {
            Ok(m) => m,
            Err(e) => {
                warn!("skipping saved torrent {}: {e}", record.info_hash);
                return None;
            }
        };
        for r in &record.renames {
            if let Err(e) = rename::apply(&mut metainfo, r) {
                warn!("{}: cannot replay a rename: {e}", record.info_hash);
            }
        }
        return Some((metainfo.info_hash, Some(Arc::new(metainfo)), magnet));
    }
    let hash = magnet
        .as_ref()
        .filter(|m| crate::backend::has_hash(m))
        .map(Magnet::swarm_hash);
    match hash {
        Some(h) if h.to_hex() == record.info_hash => Some((h, None, magnet)),
        _ => {
            warn!(
                "skipping saved torrent {}: no metainfo and no magnet link for it",
                record.info_hash
            );
            None
        }
    }
}

impl<B: Backend> Torrents<B> {
    /// Takes the metadata the engine fetched for magnet links: each such
    /// torrent gets its metainfo (name, files, size) and the `.torrent` is
    /// saved in the store.
    pub(super) fn adopt_metadata(&self, inner: &mut Inner) {
        for e in inner.entries.iter_mut().filter(|e| e.metainfo.is_none()) {
            let Some(bytes) = self.backend.torrent_file(e.hash) else {
                continue;
            };
            let metainfo = match Metainfo::from_bytes(&bytes) {
                Ok(m) if m.info_hash == e.hash => m,
                _ => {
                    warn!("{}: the fetched metadata is not this torrent's", e.name());
                    continue;
                }
            };
            let hex = e.hash.to_hex();
            if let Err(err) = self.store.save_metainfo(&hex, &bytes) {
                // The engine's own copy still spares a second fetch.
                warn!("cannot save the metadata of {hex}: {err}");
            }
            info!(
                "{hex}: metadata fetched: {} ({} bytes)",
                metainfo.info.name,
                metainfo.info.total_length()
            );
            e.metainfo = Some(Arc::new(metainfo));
            e.touched = Instant::now();
            e.dirty = true;
        }
    }
}
