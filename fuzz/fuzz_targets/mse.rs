//! MSE/PE handshake state machines (bittern_wire::mse).
//!
//! Byte 0 picks a mode:
//! - even: the rest is a peer's bytes, fed in pieces of `1 + byte1 % 64`
//!   to a Responder and to an Initiator. No panic, never "finished"
//!   (that would need the DH secret), and both have given up once the
//!   pad limits are passed (96 + 512 + 20 bytes, 96 + 512 + 8).
//! - odd: a real handshake between our two ends (keys from a fixed
//!   seed), with the rest of the input xored into messages 3 and 4 at
//!   fuzzer-chosen offsets, reaching the deep states (VC, provide, PadC,
//!   IA, select, PadD). No panic; untampered messages always succeed.
//!   (A tampered step 3 may still be accepted, e.g. a changed IA byte or
//!   another `crypto_provide`, and may then make step 4 fail.)
#![no_main]

use bittern_wire::mse::{
    CryptoSet, Initiator, InitiatorConfig, ObfuscatedHashes, Responder, ResponderConfig,
};
use bittern_wire::InfoHash;
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

const IH: InfoHash = InfoHash([5; 20]);

fn pair(seed: u64, provide: CryptoSet) -> (Initiator, impl FnOnce() -> ObfuscatedHashes) {
    let init = Initiator::with_rng(
        IH,
        InitiatorConfig {
            provide,
            initial_payload: b"\x13BitTorrent protocol".to_vec(),
        },
        &mut StdRng::seed_from_u64(seed),
    );
    (init, || [IH].into_iter().collect())
}

/// Xor `edits` (pairs of offset, value) into `msg`.
fn tamper(msg: &mut [u8], edits: &[u8]) -> bool {
    let mut changed = false;
    for e in edits.chunks_exact(2) {
        if !msg.is_empty() && e[1] != 0 {
            let at = usize::from(e[0]) % msg.len();
            msg[at] ^= e[1];
            changed = true;
        }
    }
    changed
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (init, table) = pair(u64::from(mode), if mode & 2 == 0 { CryptoSet::RC4 } else { CryptoSet::BOTH });
    let table = table();
    let mut resp = Responder::with_rng(
        |h| table.find(h),
        ResponderConfig::default(),
        &mut StdRng::seed_from_u64(u64::from(mode) + 1),
    );
    let mut init = init;
    if mode % 2 == 0 {
        let Some((&size, peer)) = rest.split_first() else {
            return;
        };
        let mut fed = 0;
        let (mut r_err, mut i_err) = (false, false);
        for piece in peer.chunks(1 + usize::from(size) % 64) {
            fed += piece.len();
            match resp.feed(piece) {
                Ok(Some(_)) => panic!("responder finished on random bytes"),
                Ok(None) => assert!(!r_err),
                Err(_) => r_err = true,
            }
            match init.feed(piece) {
                Ok(Some(_)) => panic!("initiator finished on random bytes"),
                Ok(None) => assert!(!i_err),
                Err(_) => i_err = true,
            }
        }
        if fed >= 96 + 512 + 20 {
            assert!(r_err, "responder still waiting after {fed} bytes");
        }
        if fed >= 96 + 512 + 8 {
            assert!(i_err, "initiator still waiting after {fed} bytes");
        }
        return;
    }
    let (edits3, edits4) = rest.split_at(rest.len() / 2);
    let step1 = resp.feed(&init.output());
    assert!(matches!(step1, Ok(None)));
    let step2 = init.feed(&resp.output());
    assert!(matches!(step2, Ok(None)));
    let mut m3 = init.output();
    let bad3 = tamper(&mut m3, edits3);
    let Ok(Some(_)) = resp.feed(&m3) else {
        assert!(bad3, "untampered step 3 failed");
        return;
    };
    let mut m4 = resp.output();
    let bad4 = tamper(&mut m4, edits4);
    // a tampered step 3 the responder accepted (e.g. another
    // crypto_provide) may rightly make the initiator refuse step 4
    let tampered = bad3 || bad4;
    match init.feed(&m4) {
        Ok(Some(_)) => {}
        Ok(None) => assert!(tampered, "untampered step 4 left the initiator waiting"),
        Err(e) => assert!(tampered, "untampered step 4 failed: {e}"),
    }
});
