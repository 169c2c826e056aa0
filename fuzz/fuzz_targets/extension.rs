//! BEP 10 extension handshake: never panics; what decodes re-encodes to a
//! payload that decodes to the same value, and that canonical encoding is
//! a fixed point; `id_for` never returns the disabled id 0.
#![no_main]

use bittern_wire::{Extension, ExtensionHandshake};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = ExtensionHandshake::decode(data) else {
        return;
    };
    let enc = h.encode();
    let back = ExtensionHandshake::decode(&enc).expect("own encoding decodes");
    assert_eq!(back, h);
    assert_eq!(back.encode(), enc);
    for e in Extension::ALL {
        assert_ne!(h.id_for(e), Some(0));
        assert_eq!(Extension::from_local_id(e.local_id()), Some(e));
    }
});
