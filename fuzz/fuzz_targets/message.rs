//! Peer wire decoder: never panics; every decoded frame re-encodes to the
//! exact input bytes; `Ok(None)` only when the frame is really incomplete;
//! bitfields and extension handshakes that parse round-trip.
#![no_main]

use bittern_wire::{decode_message, Bitfield, ExtensionHandshake, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(first) * 64;
    loop {
        match decode_message(rest, max) {
            Ok(Some((m, used))) => {
                assert!(used <= rest.len() && used >= 4);
                let mut out = Vec::new();
                m.encode(&mut out);
                assert_eq!(out, &rest[..used]);
                assert_eq!(m.encoded_len(), used);
                match m {
                    Message::Bitfield(b) => {
                        let bits = (b.len() * 8).saturating_sub(usize::from(first % 8));
                        if let Ok(bf) = Bitfield::from_wire(b, bits) {
                            assert_eq!(bf.as_bytes(), b);
                            assert_eq!(bf.count_ones(), bf.iter_ones().count());
                            assert_eq!(bf.len() - bf.count_ones(), bf.iter_zeros().count());
                        }
                    }
                    Message::Extended { id: 0, payload } => {
                        if let Ok(h) = ExtensionHandshake::decode(payload) {
                            assert_eq!(ExtensionHandshake::decode(&h.encode()), Ok(h));
                        }
                    }
                    _ => {}
                }
                rest = &rest[used..];
            }
            Ok(None) => {
                let need = rest
                    .get(..4)
                    .map(|p| 4 + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize);
                assert!(need.is_none_or(|n| n > rest.len()));
                break;
            }
            Err(_) => break,
        }
    }
});
