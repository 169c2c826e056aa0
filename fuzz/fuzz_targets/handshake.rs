//! Peer handshake: never panics; a decoded handshake re-encodes to the
//! exact 68 input bytes; the 48-byte prefix decoder agrees with the full
//! one; feature bits read what the reserved bytes hold.
#![no_main]

use bittern_wire::Handshake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; 68];
    // Most fuzz inputs lack the 20-byte protocol string; start from a
    // valid header and let the input overwrite as much as it covers.
    buf[..20].copy_from_slice(b"\x13BitTorrent protocol");
    let (flag, rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    if flag & 1 == 1 {
        let n = rest.len().min(68);
        buf[..n].copy_from_slice(&rest[..n]);
    } else {
        let n = rest.len().min(48);
        buf[20..20 + n].copy_from_slice(&rest[..n]);
    }
    let mut prefix = [0u8; 48];
    prefix.copy_from_slice(&buf[..48]);
    match Handshake::decode(&buf) {
        Ok(h) => {
            assert_eq!(h.encode(), buf);
            let (reserved, ih) = Handshake::decode_prefix(&prefix).unwrap();
            assert_eq!(reserved, h.reserved);
            assert_eq!(ih, h.info_hash);
            assert_eq!(h.supports_fast(), buf[27] & 0x04 != 0);
            assert_eq!(h.supports_extended(), buf[25] & 0x10 != 0);
            assert_eq!(h.supports_dht(), buf[27] & 0x01 != 0);
        }
        Err(_) => assert!(Handshake::decode_prefix(&prefix).is_err()),
    }
});
