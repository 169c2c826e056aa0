//! What a running torrent keeps of its metainfo. The piece hashes, files
//! and piece layers live in the storage's layout and the info dictionary
//! in `info_bytes`; of the rest only what the controller reads is kept:
//! a few flags and the name inline, the tracker tiers as one copy shared
//! by every torrent of the session with the same list, and the web seeds
//! (with the file names their URLs are built from) only when there are
//! any. At 10,000 idle torrents a whole `Metainfo` per torrent (its
//! struct, file list, `announce` and a second copy of the URL in its
//! tiers) was about 600 bytes in 8 allocations.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bittern_wire::{Info, InfoHash, InfoHashV2, Metainfo};
use parking_lot::Mutex;

/// Tracker tiers as [`Metainfo::trackers`] gives them.
pub(crate) type Tiers = Arc<[Vec<String>]>;

/// The slice of a metainfo the controller reads.
pub(crate) struct TorrentMeta {
    pub name: Box<str>,
    /// BEP 27: no DHT, PEX or LSD.
    pub private: bool,
    pub multi_file: bool,
    /// Boxed: most torrents are v1 only.
    pub info_hash_v2: Option<Box<InfoHashV2>>,
    /// The tracker tiers (deduplicated, empty ones dropped), shared.
    pub trackers: Tiers,
    /// The `url-list` and the file names its URLs are built from; `None`
    /// without web seeds.
    pub web: Option<Box<WebMeta>>,
}

/// A torrent's web seeds (BEP 19) and the info they need.
pub(crate) struct WebMeta {
    pub url_list: Vec<String>,
    /// The info dictionary without its piece hashes.
    pub info: Info,
}

impl TorrentMeta {
    /// A hybrid's truncated v2 hash, the second name it is announced and
    /// routed under (`None` for v1-only and v2-only torrents, whose one
    /// hash is `info_hash`).
    pub(crate) fn second_hash(&self, info_hash: InfoHash) -> Option<InfoHash> {
        self.info_hash_v2
            .as_deref()
            .map(InfoHashV2::truncated)
            .filter(|h| *h != info_hash)
    }

    /// Takes what is kept from `m`, the tracker tiers through `tiers`.
    pub(crate) fn new(m: Metainfo, tiers: &TierInterner) -> TorrentMeta {
        let trackers = tiers.intern(m.trackers());
        let info = m.info;
        let web = (!m.url_list.is_empty()).then(|| {
            Box::new(WebMeta {
                url_list: m.url_list,
                info: Info {
                    pieces: Vec::new(),
                    name: info.name.clone(),
                    files: info.files,
                    source: None,
                    ..info
                },
            })
        });
        TorrentMeta {
            // A fresh copy, not the parser's string: a program that parses
            // all its torrents before adding them (the CLI) would otherwise
            // keep one small block alive in each torrent's parse garbage,
            // and those pages could not be given back.
            name: Box::from(info.name.as_str()),
            private: info.private,
            multi_file: info.multi_file,
            info_hash_v2: m.info_hash_v2.map(Box::new),
            trackers,
            web,
        }
    }
}

/// One copy of each tracker list for the torrents of a session (a
/// seedbox's torrents mostly share one tracker, or one private tracker's
/// passkey URL). Lists no torrent holds any more are pruned as the map
/// grows.
#[derive(Default)]
pub(crate) struct TierInterner {
    lists: Mutex<Lists>,
}

#[derive(Default)]
struct Lists {
    map: HashMap<Vec<Vec<String>>, Weak<[Vec<String>]>>,
    /// Prune when the map reaches this many entries.
    prune_at: usize,
}

/// The smallest `prune_at`.
const PRUNE_MIN: usize = 64;

impl TierInterner {
    /// The shared copy of `tiers` (made now if none is live).
    pub(crate) fn intern(&self, tiers: Vec<Vec<String>>) -> Tiers {
        if tiers.is_empty() {
            return Arc::from(Vec::new());
        }
        let mut lists = self.lists.lock();
        if let Some(t) = lists.map.get(&tiers).and_then(Weak::upgrade) {
            return t;
        }
        if lists.map.len() >= lists.prune_at.max(PRUNE_MIN) {
            lists.map.retain(|_, t| t.strong_count() > 0);
            // Amortised: the next prune after as many inserts as are live.
            lists.prune_at = lists.map.len() * 2;
        }
        let shared: Tiers = Arc::from(tiers.clone());
        lists.map.insert(tiers, Arc::downgrade(&shared));
        shared
    }

    /// Distinct lists in the map (live or not yet pruned).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lists.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers(url: &str) -> Vec<Vec<String>> {
        vec![vec![url.to_string()]]
    }

    #[test]
    fn equal_lists_share_one_copy() {
        let i = TierInterner::default();
        let a = i.intern(tiers("http://127.0.0.1:1/announce"));
        let b = i.intern(tiers("http://127.0.0.1:1/announce"));
        let c = i.intern(tiers("http://127.0.0.1:2/announce"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(&*c, &tiers("http://127.0.0.1:2/announce")[..]);
        assert!(i.intern(Vec::new()).is_empty());
    }

    #[test]
    fn dead_lists_are_pruned() {
        let i = TierInterner::default();
        let keep = i.intern(tiers("http://127.0.0.1:1/keep"));
        for n in 0..1000 {
            drop(i.intern(tiers(&format!("http://127.0.0.1:1/{n}"))));
        }
        assert!(i.len() <= 2 * PRUNE_MIN, "{} lists kept", i.len());
        let again = i.intern(tiers("http://127.0.0.1:1/keep"));
        assert!(Arc::ptr_eq(&keep, &again));
    }

    #[test]
    fn web_seeds_keep_the_file_names() {
        let m = bittern_wire::MetainfoBuilder::new("dir")
            .file(vec!["a".into()], 10)
            .file(vec!["b".into()], 20)
            .piece_length(16)
            .pieces(vec![[1; 20], [2; 20]])
            .announce("http://127.0.0.1:1/announce")
            .build()
            .unwrap();
        let mut m = Metainfo::from_bytes(&m).unwrap();
        let plain = TorrentMeta::new(m.clone(), &TierInterner::default());
        assert!(plain.web.is_none());
        assert_eq!(&*plain.name, "dir");
        assert!(plain.multi_file);
        assert_eq!(&*plain.trackers, &tiers("http://127.0.0.1:1/announce")[..]);
        m.url_list = vec!["http://127.0.0.1:2/".into()];
        let web = TorrentMeta::new(m, &TierInterner::default());
        let w = web.web.unwrap();
        assert_eq!(w.url_list, vec!["http://127.0.0.1:2/".to_string()]);
        assert_eq!(w.info.files.len(), 2);
        assert!(w.info.pieces.is_empty());
    }
}
