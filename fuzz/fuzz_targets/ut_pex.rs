//! BEP 11 `ut_pex` decoder: never panics; never returns more than
//! `PEX_MAX_DECODED` entries per list nor a port-0 peer; what decodes
//! re-encodes to a payload that decodes to the same lists (without the
//! overflow count). The same bytes read as a current peer set drive a
//! `PexDiff`: it never adds more than `PEX_MAX_ADDED`, never the peer
//! itself, and never drops what it did not add.
#![no_main]

use std::time::{Duration, Instant};

use bittern_wire::{PexDiff, PexMessage, PEX_MAX_ADDED, PEX_MAX_DECODED};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = PexMessage::decode(data) else {
        return;
    };
    assert!(m.added.len() <= PEX_MAX_DECODED && m.dropped.len() <= PEX_MAX_DECODED);
    assert!(m.added.iter().all(|(a, _)| a.port() != 0));
    assert!(m.dropped.iter().all(|a| a.port() != 0));
    let back = PexMessage::decode(&m.encode()).expect("own encoding decodes");
    assert_eq!(back.added, m.added);
    assert_eq!(back.dropped, m.dropped);
    assert_eq!(back.overflow, 0);

    let me = m
        .added
        .first()
        .map(|(a, _)| *a)
        .unwrap_or_else(|| ([127, 0, 0, 1], 1).into());
    let mut diff = PexDiff::new(me);
    let mut told = std::collections::HashSet::new();
    let t0 = Instant::now();
    // round 1: everything added; round 2: only what is also dropped
    let second: Vec<_> = m
        .added
        .iter()
        .filter(|(a, _)| m.dropped.contains(a))
        .copied()
        .collect();
    for (round, current) in [&m.added, &second].into_iter().enumerate() {
        let now = t0 + Duration::from_secs(61) * round as u32;
        if let Some(out) = diff.build(now, current) {
            assert!(out.added.len() <= PEX_MAX_ADDED && out.dropped.len() <= PEX_MAX_ADDED);
            assert!(out.added.iter().all(|(a, _)| *a != me));
            for a in &out.dropped {
                assert!(told.remove(a), "dropped {a} never added");
            }
            for (a, _) in &out.added {
                assert!(told.insert(*a), "added {a} twice");
            }
        }
        assert_eq!(diff.told_len(), told.len());
    }
});
