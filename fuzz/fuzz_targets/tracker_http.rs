//! HTTP tracker replies (announce and scrape): never panic; the size cap
//! holds; announce peers are unique, have non-zero ports and are no more
//! than the bytes could encode; scrape entries are for asked-for hashes.
#![no_main]

use std::collections::HashSet;

use bittern_tracker::http::{parse_announce, parse_scrape};
use bittern_tracker::Error;
use bittern_wire::InfoHash;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    // The first byte picks the size cap, so the cap path is exercised too.
    let max = if first == 0 { 1 << 20 } else { usize::from(first) * 8 };
    match parse_announce(body, max) {
        Ok(r) => {
            assert!(body.len() <= max);
            let unique: HashSet<_> = r.peers.iter().collect();
            assert_eq!(unique.len(), r.peers.len(), "duplicate peers");
            assert!(r.peers.iter().all(|p| p.port() != 0));
            // Each peer costs at least 6 bytes (compact) of the reply.
            assert!(r.peers.len() * 6 <= body.len());
        }
        Err(Error::TooLarge { .. }) => assert!(body.len() > max),
        Err(_) => {}
    }
    let asked = [InfoHash([b'a'; 20]), InfoHash([0; 20])];
    for hashes in [&asked[..], &[][..]] {
        if let Ok(stats) = parse_scrape(body, hashes, max) {
            assert!(body.len() <= max);
            if !hashes.is_empty() {
                assert!(stats.iter().all(|(h, _)| hashes.contains(h)));
            }
            assert!(stats.len() * 20 <= body.len());
        }
    }
});
