//! Magnet parser: never panics; what parses formats to a URI that parses
//! back to the same value.
#![no_main]

use bittern_wire::Magnet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Magnet::parse(s) {
        let uri = m.to_uri();
        assert_eq!(Magnet::parse(&uri).as_ref(), Ok(&m), "{uri}");
    }
});
