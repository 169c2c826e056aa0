//! Metainfo parser: never panics; on success the info hash is the SHA-1 of
//! bytes that appear verbatim in the input (the truncated SHA-256 for v2-only
//! torrents), piece geometry is consistent, every path stays inside the
//! download directory, and every piece layer belongs to a file root.
#![no_main]

use std::path::Component;

use bittern_wire::Metainfo;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};
use sha2::Sha256;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    if m.info.version.has_v1() {
        assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(&m.info_bytes)));
    }
    if let Some(v2) = m.info_hash_v2 {
        assert!(m.info.version.has_v2());
        assert_eq!(v2.0, <[u8; 32]>::from(Sha256::digest(&m.info_bytes)));
        if !m.info.version.has_v1() {
            assert_eq!(m.info_hash, v2.truncated());
        }
    }
    for (root, layer) in &m.piece_layers {
        let f = m.info.files.iter().find(|f| f.pieces_root == Some(*root));
        let f = f.expect("a piece layer without its file");
        assert_eq!(layer.len() as u64, f.length.div_ceil(m.info.piece_length));
    }
    assert!(data.windows(m.info_bytes.len()).any(|w| w == m.info_bytes));
    let info = &m.info;
    let total = info.total_length();
    assert!(info.piece_length > 0);
    assert_eq!(info.piece_count() as u64, total.div_ceil(info.piece_length));
    let sum: u64 = (0..info.piece_count()).map(|i| info.piece_len(i)).sum();
    assert_eq!(sum, total);
    for p in info.file_paths() {
        assert!(p.is_relative());
        assert!(p.components().all(|c| matches!(c, Component::Normal(_))), "{p:?}");
    }
    for f in &info.files {
        assert!(!f.path.is_empty());
        assert!(f.path.iter().all(|c| !c.is_empty() && !c.contains(['/', '\\', '\0'])));
    }
});
