//! BEP 9 `ut_metadata`: the message decoder never panics and what decodes
//! re-encodes to a payload that decodes to the same message. Then the
//! input drives a `MetadataAssembler` as a stream of peer actions: it
//! never panics, never holds more than the size it was given, never
//! stores a piece it did not ask for, and only completes with bytes that
//! hash to the info hash.
#![no_main]

use bittern_wire::{
    Accepted, InfoHash, MetadataAssembler, MetadataHash, MetadataMessage, METADATA_PIECE_LEN,
};
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = MetadataMessage::decode(data) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(MetadataMessage::decode(&out), Ok(m));
    }

    // assembler: [size_hi, size_lo, hash_byte, ops...]
    let [a, b, fill, ops @ ..] = data else {
        return;
    };
    let size = u64::from(u16::from_be_bytes([*a, *b])) * 4 + 1;
    // the metadata is `size` copies of `fill`; its hash is known
    let truth = vec![*fill; size as usize];
    let hash = MetadataHash::V1(InfoHash(Sha1::digest(&truth).into()));
    let Ok(mut asm) = MetadataAssembler::<u8>::new(hash, size) else {
        return;
    };
    let count = asm.piece_count() as u32;
    for op in ops.chunks(3) {
        let [kind, peer, arg] = *op else { break };
        let peer = peer % 4;
        match kind % 5 {
            0 => {
                if let Some(p) = asm.next_request(&peer) {
                    assert!(p < count);
                }
            }
            1 | 2 => {
                // answer piece `arg`: honest when kind is 1, a liar otherwise
                let piece = u32::from(arg) % (count + 1);
                let start = (piece as usize)
                    .saturating_mul(METADATA_PIECE_LEN)
                    .min(truth.len());
                let end = (start + METADATA_PIECE_LEN).min(truth.len());
                let mut bytes = truth[start..end].to_vec();
                if kind % 5 == 2 {
                    bytes.iter_mut().for_each(|x| *x ^= 1 + peer);
                }
                let before = asm.pieces_have();
                match asm.accept(&peer, piece, size, &bytes) {
                    Ok(Accepted::Complete(got)) => {
                        assert_eq!(got, truth);
                        return;
                    }
                    Ok(Accepted::HashFailed { contributors }) => {
                        assert!(!contributors.is_empty());
                        assert_eq!(asm.pieces_have(), 0);
                    }
                    Ok(Accepted::Stored) => assert_eq!(asm.pieces_have(), before + 1),
                    Ok(Accepted::Duplicate) | Err(_) => assert_eq!(asm.pieces_have(), before),
                }
            }
            3 => {
                let _ = asm.reject(&peer, u32::from(arg));
            }
            _ => asm.peer_gone(&peer),
        }
        assert!(asm.pieces_have() <= asm.piece_count());
    }
});
