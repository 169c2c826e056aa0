//! Metainfo parser: never panics; on success the info hash is the SHA-1 of
//! bytes that appear verbatim in the input, piece geometry is consistent,
//! and every path stays inside the download directory.
#![no_main]

use std::path::Component;

use bittern_wire::Metainfo;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(&m.info_bytes)));
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
