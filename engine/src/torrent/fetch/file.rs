//! The `.torrent` written for metadata fetched from a magnet link.

/// The `.torrent` for a fetched info dictionary: the magnet's trackers and
/// web seeds around the exact bytes that were hashed, and a v2 torrent's
/// piece layers fetched by hash request, `(pieces root, layer)` (keys in
/// bencode order: `announce`, `announce-list`, `info`, `piece layers`,
/// `url-list`).
pub(super) fn torrent_file_bytes(
    info: &[u8],
    layers: &[([u8; 32], Vec<[u8; 32]>)],
    tiers: &[Vec<String>],
    web_seeds: &[String],
) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(format!("{}:", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
    let mut out = b"d".to_vec();
    if let Some(first) = tiers.iter().flatten().next() {
        string(&mut out, b"announce");
        string(&mut out, first.as_bytes());
        string(&mut out, b"announce-list");
        out.push(b'l');
        for tier in tiers.iter().filter(|t| !t.is_empty()) {
            out.push(b'l');
            for url in tier {
                string(&mut out, url.as_bytes());
            }
            out.push(b'e');
        }
        out.push(b'e');
    }
    string(&mut out, b"info");
    out.extend_from_slice(info);
    if !layers.is_empty() {
        let mut sorted: Vec<&([u8; 32], Vec<[u8; 32]>)> = layers.iter().collect();
        sorted.sort_by_key(|l| l.0);
        string(&mut out, b"piece layers");
        out.push(b'd');
        for (root, layer) in sorted {
            string(&mut out, root);
            string(&mut out, &layer.concat());
        }
        out.push(b'e');
    }
    if !web_seeds.is_empty() {
        string(&mut out, b"url-list");
        out.push(b'l');
        for url in web_seeds {
            string(&mut out, url.as_bytes());
        }
        out.push(b'e');
    }
    out.push(b'e');
    out
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// crash never leaves half a `.torrent`.
pub(super) fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("torrent.part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use bittern_wire::{Metainfo, MetainfoBuilder};

    use super::*;

    #[test]
    fn the_torrent_file_keeps_the_info_bytes_trackers_and_web_seeds() {
        let built = MetainfoBuilder::new("x")
            .piece_length(16384)
            .pieces(vec![[7; 20]])
            .single_file(100)
            .build_metainfo()
            .unwrap();
        let tiers = vec![
            vec!["http://127.0.0.1:1/a".to_string()],
            vec!["udp://127.0.0.1:2".to_string()],
        ];
        let seeds = vec!["http://127.0.0.1:3/".to_string()];
        let bytes = torrent_file_bytes(&built.info_bytes, &[], &tiers, &seeds);
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(m.info_hash, built.info_hash);
        assert_eq!(m.info_bytes, built.info_bytes);
        assert_eq!(m.trackers(), tiers);
        assert_eq!(m.url_list, seeds);
        // Without trackers or web seeds: just the info dictionary.
        let bare = torrent_file_bytes(&built.info_bytes, &[], &[], &[]);
        let m = Metainfo::from_bytes(&bare).unwrap();
        assert_eq!(m.info_hash, built.info_hash);
        assert!(m.trackers().is_empty());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("h.torrent");
        write_file(&path, &bytes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(!path.with_extension("torrent.part").exists());
    }

    /// Piece layers fetched for a v2 torrent go in as `piece layers`,
    /// which the parsed torrent gives back per file.
    #[test]
    fn the_torrent_file_holds_fetched_piece_layers() {
        use bittern_storage::merkle::{root_from_piece_layer, Hash256};
        let layer: Vec<Hash256> = (0..3u8).map(|i| [i + 1; 32]).collect();
        let root = root_from_piece_layer(&layer, 32768).unwrap();
        let full = MetainfoBuilder::new("v2")
            .piece_length(32768)
            .single_file(3 * 32768 - 10)
            .version(bittern_wire::MetaVersion::V2)
            .pieces_roots(vec![Some(root)])
            .piece_layers([(root, layer.clone())].into_iter().collect())
            .build_metainfo()
            .unwrap();
        let bytes = torrent_file_bytes(&full.info_bytes, &[], &[], &[]);
        // a `.torrent` needs the layer; fetched metadata may lack it
        assert!(Metainfo::from_bytes(&bytes).is_err());
        let built = Metainfo::from_bytes_without_layers(&bytes).unwrap();
        assert!(built.piece_layer(&built.info.files[0]).is_none());
        let bytes = torrent_file_bytes(&built.info_bytes, &[(root, layer.clone())], &[], &[]);
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(m.info_hash, built.info_hash);
        assert_eq!(m.piece_layer(&m.info.files[0]), Some(&layer[..]));
    }
}
