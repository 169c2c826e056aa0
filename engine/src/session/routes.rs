//! The listener's routing table (torrents by info hash, and by the MSE
//! `HASH('req2', info_hash)`), and how a torrent takes and gives back its
//! entries.

use std::collections::HashMap;
use std::sync::Arc;

use bittern_wire::mse::ObfuscatedHashes;
use bittern_wire::InfoHash;
use parking_lot::Mutex;

use crate::error::Error;
use crate::torrent::TorrentId;

/// Torrents by info hash, for the listener's routing.
pub(crate) type Registry = Arc<Mutex<Routes>>;

/// The listener's routing table: torrents by info hash, and by
/// `HASH('req2', info_hash)` for MSE handshakes, which name their torrent
/// only that way.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    ids: HashMap<InfoHash, TorrentId>,
    obfuscated: ObfuscatedHashes,
}

impl Routes {
    /// The torrent with this info hash.
    pub(crate) fn get(&self, info_hash: &InfoHash) -> Option<&TorrentId> {
        self.ids.get(info_hash)
    }

    /// Info hashes routed (v2 aliases included).
    pub(crate) fn routed(&self) -> usize {
        self.ids.len()
    }

    /// `HASH('req2', ·)` entries held for MSE handshakes.
    pub(crate) fn obfuscated_len(&self) -> usize {
        self.obfuscated.len()
    }

    /// The info hash whose `HASH('req2', ·)` is `obfuscated`.
    pub(crate) fn find_obfuscated(&self, obfuscated: &[u8; 20]) -> Option<InfoHash> {
        self.obfuscated.find(obfuscated)
    }

    pub(super) fn clear(&mut self) {
        self.ids.clear();
        self.obfuscated = ObfuscatedHashes::new();
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.obfuscated.is_empty()
    }
}

/// Registers a torrent's id under its info hash, in one step with the
/// check that no other torrent has it. The entry is given back when the
/// returned reservation is dropped without [`Reservation::keep`] (the
/// torrent failed to start).
pub(crate) fn register(
    registry: &Registry,
    info_hash: InfoHash,
    id: TorrentId,
) -> Result<Reservation<'_>, Error> {
    {
        let mut r = registry.lock();
        if r.ids.contains_key(&info_hash) {
            return Err(Error::DuplicateTorrent(info_hash.to_hex()));
        }
        r.ids.insert(info_hash, id);
        r.obfuscated.insert(info_hash);
    }
    Ok(Reservation {
        registry,
        info_hash,
        id,
        kept: false,
    })
}

/// A registry entry taken by [`register`] for a torrent being set up.
pub(crate) struct Reservation<'a> {
    registry: &'a Registry,
    info_hash: InfoHash,
    id: TorrentId,
    kept: bool,
}

impl Reservation<'_> {
    /// The torrent started: the entry stays until its handle removes it.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            unregister(self.registry, self.info_hash, self.id);
        }
    }
}

/// Removes the entry for `info_hash` if it is still the one torrent `id`
/// registered (a torrent added again since has its own).
/// Its other names ([`add_alias`]) go with it.
pub(crate) fn unregister(registry: &Registry, info_hash: InfoHash, id: TorrentId) {
    let mut r = registry.lock();
    if r.ids.get(&info_hash) == Some(&id) {
        let names: Vec<InfoHash> = r
            .ids
            .iter()
            .filter(|&(_, v)| *v == id)
            .map(|(k, _)| *k)
            .collect();
        for h in names {
            r.ids.remove(&h);
            r.obfuscated.remove(&h);
        }
        crate::shrink::map(&mut r.ids);
    }
}

/// Routes `alias` (a hybrid torrent's truncated v2 hash, BEP 52) to torrent
/// `id` too, unless another torrent has that name; false then.
pub(crate) fn add_alias(registry: &Registry, alias: InfoHash, id: TorrentId) -> bool {
    let mut r = registry.lock();
    if r.ids.contains_key(&alias) {
        return false;
    }
    r.ids.insert(alias, id);
    r.obfuscated.insert(alias);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_entries_belong_to_their_torrent() {
        let registry: Registry = Arc::default();
        let hash = InfoHash([7; 20]);
        let (a, b) = (1, 2);
        // A torrent that failed to start gives its reservation back.
        drop(register(&registry, hash, a).unwrap());
        assert!(registry.lock().is_empty());
        register(&registry, hash, a).unwrap().keep();
        assert!(matches!(
            register(&registry, hash, b),
            Err(Error::DuplicateTorrent(_))
        ));
        // Another torrent's id (a stale handle) removes nothing.
        unregister(&registry, hash, b);
        assert_eq!(registry.lock().get(&hash), Some(&a));
        unregister(&registry, hash, a);
        assert!(registry.lock().is_empty());
    }

    #[test]
    fn a_hybrid_is_routed_by_both_hashes_and_leaves_by_both() {
        let registry: Registry = Arc::default();
        let (v1, v2, other) = (InfoHash([1; 20]), InfoHash([2; 20]), InfoHash([3; 20]));
        let reservation = register(&registry, v1, 1).unwrap();
        assert!(add_alias(&registry, v2, 1));
        // a torrent that failed to start gives both back
        drop(reservation);
        assert!(registry.lock().is_empty());
        register(&registry, v1, 1).unwrap().keep();
        assert!(add_alias(&registry, v2, 1));
        register(&registry, other, 2).unwrap().keep();
        assert!(!add_alias(&registry, v2, 2), "taken by torrent 1");
        assert_eq!(registry.lock().get(&v2), Some(&1));
        assert_eq!(registry.lock().find_obfuscated(&mse_req2(v2)), Some(v2));
        unregister(&registry, v1, 1);
        assert_eq!(registry.lock().get(&v2), None);
        assert_eq!(registry.lock().find_obfuscated(&mse_req2(v2)), None);
        assert_eq!(registry.lock().get(&other), Some(&2));
    }

    /// `HASH('req2', info_hash)`, as an MSE initiator sends it.
    fn mse_req2(h: InfoHash) -> [u8; 20] {
        use sha1::Digest;
        let mut d = sha1::Sha1::new();
        d.update(b"req2");
        d.update(h.0);
        d.finalize().into()
    }
}
