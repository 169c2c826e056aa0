//! The embedded tracker's request parsing: never panics; `Ok(None)` only
//! while no blank line has arrived and the head is within the limit; a
//! parsed announce's fields come from the query; percent-encoding
//! round-trips every value.
#![no_main]

use bittern_tracker::percent;
use bittern_tracker::server::request::{parse_head, scrape_hashes, AnnounceRequest, RequestError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, buf)) = data.split_first() else {
        return;
    };
    let max = usize::from(first) * 4;
    let has_end = buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n");
    match parse_head(buf, max) {
        Ok(None) => assert!(!has_end && buf.len() <= max),
        Ok(Some(req)) => {
            assert!(has_end);
            for (k, v) in &req.query {
                assert_eq!(percent::decode(percent::encode(k).as_bytes()).as_ref(), Some(k));
                assert_eq!(percent::decode(percent::encode(v).as_bytes()).as_ref(), Some(v));
            }
            if let Ok(a) = AnnounceRequest::from_query(&req.query) {
                assert_ne!(a.port, 0);
                assert!(req.query.iter().any(|(k, v)| k == b"info_hash" && v == &a.info_hash.0));
            }
            for h in scrape_hashes(&req.query) {
                assert!(req.query.iter().any(|(k, v)| k == b"info_hash" && v == &h.0));
            }
        }
        Err(RequestError::TooLarge) => assert!(buf.len() > max),
        Err(_) => assert!(has_end),
    }
});
