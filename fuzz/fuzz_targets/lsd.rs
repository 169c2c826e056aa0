//! LSD (BEP 14) parser: never panics; what parses re-encodes to a datagram
//! that parses back to the same announce.
#![no_main]

use bittern_wire::lsd::{group_v4, LsdAnnounce};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = LsdAnnounce::parse(data) {
        assert!(a.port != 0 && !a.info_hashes.is_empty());
        // A cookie with line breaks cannot round-trip; the parser trims too.
        if a.cookie.as_deref().is_some_and(|c| c.contains(['\r', '\n'])) {
            return;
        }
        let again = a.encode(group_v4());
        assert_eq!(LsdAnnounce::parse(&again).as_ref(), Ok(&a));
    }
});
