//! In-memory handshakes between our own two ends, every message split at
//! every offset, and hostile inputs.

use std::io::{self, Read, Write};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::*;

const IH: InfoHash = InfoHash([7u8; 20]);
const IA: &[u8] = b"\x13BitTorrent protocol -- pretend handshake of 68 bytes..........";

fn table() -> ObfuscatedHashes {
    [InfoHash([1; 20]), IH, InfoHash([9; 20])]
        .into_iter()
        .collect()
}

fn initiator(seed: u64, provide: CryptoSet) -> Initiator {
    let config = InitiatorConfig {
        provide,
        initial_payload: IA.to_vec(),
    };
    Initiator::with_rng(IH, config, &mut StdRng::seed_from_u64(seed))
}

fn responder<'a>(
    seed: u64,
    table: &'a ObfuscatedHashes,
    config: ResponderConfig,
) -> Responder<impl Fn(&[u8; 20]) -> Option<InfoHash> + Clone + 'a> {
    Responder::with_rng(
        move |h| table.find(h),
        config,
        &mut StdRng::seed_from_u64(seed),
    )
}

/// What a feed produced, comparable across splits.
#[derive(Debug, PartialEq)]
struct Outcome {
    done: Option<(InfoHash, Crypto, Vec<u8>)>,
    output: Vec<u8>,
}

fn outcome<M: MseHandshake>(m: &mut M, pieces: &[&[u8]]) -> Result<Outcome, MseError> {
    let mut done = None;
    let pieces: Vec<&[u8]> = pieces.iter().copied().filter(|p| !p.is_empty()).collect();
    for (n, p) in pieces.iter().enumerate() {
        if let Some(est) = m.feed(p)? {
            assert_eq!(n, pieces.len() - 1, "finished before the last piece");
            done = Some((est.info_hash, est.crypto, est.received));
        }
    }
    Ok(Outcome {
        done,
        output: m.output(),
    })
}

/// Feed `msg` whole, byte by byte, and split in two at every offset: the
/// same outcome each time. Returns the whole-feed machine (advanced) and
/// its outcome.
fn feed_every_way<M: MseHandshake + Clone>(m: &mut M, msg: &[u8]) -> Outcome {
    let whole = outcome(&mut m.clone(), &[msg]).unwrap();
    let bytes: Vec<&[u8]> = msg.chunks(1).collect();
    assert_eq!(
        outcome(&mut m.clone(), &bytes).unwrap(),
        whole,
        "byte by byte"
    );
    for k in 0..=msg.len() {
        let got = outcome(&mut m.clone(), &[&msg[..k], &msg[k..]]).unwrap();
        assert_eq!(got, whole, "split at {k}");
    }
    let again = outcome(m, &[msg]).unwrap();
    assert_eq!(again, whole);
    whole
}

/// A whole handshake, each of the four messages fed every way. The
/// responder's first payload rides along with step 4 and the
/// initiator's second one with step 3, so `received` is checked too.
fn full_handshake(seed: u64, provide: CryptoSet, config: ResponderConfig, want: Crypto) {
    let t = table();
    let mut a = initiator(seed, provide);
    let mut b = responder(seed + 1000, &t, config);

    let m1 = a.output();
    assert!((96..=96 + 512).contains(&m1.len()));
    let r1 = feed_every_way(&mut b, &m1);
    assert!(r1.done.is_none());
    let m2 = r1.output;
    assert!((96..=96 + 512).contains(&m2.len()));

    let r2 = feed_every_way(&mut a, &m2);
    assert!(r2.done.is_none());
    let m3 = r2.output; // req1, req2^req3, encrypted VC..IA
    assert_eq!(m3.len(), 20 + 20 + 8 + 4 + 2 + 2 + IA.len());

    let r3 = feed_every_way(&mut b, &m3);
    let (ih, crypto, received) = r3.done.expect("responder finished");
    assert_eq!((ih, crypto), (IH, want));
    assert_eq!(received, IA, "the responder got IA decrypted");
    let m4 = r3.output;
    assert_eq!(m4.len(), 8 + 4 + 2);

    let r4 = feed_every_way(&mut a, &m4);
    let (ih, crypto, received) = r4.done.expect("initiator finished");
    assert_eq!((ih, crypto, received), (IH, want, Vec::new()));
}

#[test]
fn handshake_rc4_every_split() {
    full_handshake(1, CryptoSet::RC4, ResponderConfig::default(), Crypto::Rc4);
    full_handshake(2, CryptoSet::BOTH, ResponderConfig::default(), Crypto::Rc4);
}

#[test]
fn handshake_plaintext_every_split() {
    let plain = ResponderConfig {
        allowed: CryptoSet::BOTH,
        prefer: Crypto::Plaintext,
    };
    full_handshake(3, CryptoSet::BOTH, plain, Crypto::Plaintext);
    full_handshake(
        4,
        CryptoSet::PLAINTEXT,
        ResponderConfig::default(),
        Crypto::Plaintext,
    );
    // a plaintext-preferring responder still picks RC4 for an RC4-only peer
    full_handshake(5, CryptoSet::RC4, plain, Crypto::Rc4);
}

/// Both ends in one go, with payload glued to the last messages; returns
/// the two results.
fn pair(
    seed: u64,
    provide: CryptoSet,
    config: ResponderConfig,
    a_extra: &[u8],
    b_extra: &[u8],
) -> (Established, Established) {
    let t = table();
    let mut a = initiator(seed, provide);
    let mut b = responder(seed + 1, &t, config);
    assert!(b.feed(&a.output()).unwrap().is_none());
    assert!(a.feed(&b.output()).unwrap().is_none());
    let mut m3 = a.output();
    // A's stream after IA: ENCRYPT2, the same A-to-B keystream if RC4
    let mut sent_early = a_extra.to_vec();
    let mut est_b = {
        // the initiator's cipher is only known at the end; encrypt a_extra
        // after the handshake instead and feed it separately below
        b.feed(&m3).unwrap().expect("responder done")
    };
    m3.clear();
    let mut m4 = b.output();
    let mut tail = b_extra.to_vec();
    est_b.encrypt.apply(&mut tail);
    m4.extend_from_slice(&tail);
    let mut est_a = a.feed(&m4).unwrap().expect("initiator done");
    est_a.encrypt.apply(&mut sent_early);
    est_b.decrypt.apply(&mut sent_early);
    assert_eq!(sent_early, a_extra);
    (est_a, est_b)
}

#[test]
fn payload_after_the_handshake_both_ways() {
    for (provide, want) in [
        (CryptoSet::RC4, Crypto::Rc4),
        (CryptoSet::PLAINTEXT, Crypto::Plaintext),
    ] {
        let (mut a, mut b) = pair(
            10,
            provide,
            ResponderConfig::default(),
            b"from a",
            b"bitfield from b",
        );
        assert_eq!((a.crypto, b.crypto), (want, want));
        assert_eq!(a.received, b"bitfield from b");
        assert_eq!(b.received, IA);
        assert_eq!(a.encrypt.is_encrypting(), want == Crypto::Rc4);
        // long streams stay in step
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut x = data.clone();
        a.encrypt.apply(&mut x);
        if want == Crypto::Rc4 {
            assert_ne!(x, data);
        } else {
            assert_eq!(x, data);
        }
        b.decrypt.apply(&mut x);
        assert_eq!(x, data);
        b.encrypt.apply(&mut x);
        a.decrypt.apply(&mut x);
        assert_eq!(x, data);
    }
}

#[test]
fn detect_tells_plaintext_from_mse() {
    let hs = b"\x13BitTorrent protocol\0\0\0\0\0\0\0\0";
    assert_eq!(detect(&[]), Detected::NeedMore);
    assert_eq!(detect(&hs[..1]), Detected::NeedMore);
    assert_eq!(detect(&hs[..19]), Detected::NeedMore);
    assert_eq!(detect(&hs[..20]), Detected::Plaintext);
    assert_eq!(detect(hs), Detected::Plaintext);
    // a Ya that starts like the protocol string but differs later
    assert_eq!(detect(b"\x13BitTorrent protocoX"), Detected::Encrypted);
    assert_eq!(detect(b"\x13Bi!"), Detected::Encrypted);
    assert_eq!(detect(&[0x42]), Detected::Encrypted);
    let mut a = initiator(1, CryptoSet::RC4);
    let ya = a.output();
    if ya[0] != 0x13 {
        assert_eq!(detect(&ya), Detected::Encrypted);
    }
}

fn key_bytes(limbs_last: u8, base: [u8; 96]) -> [u8; 96] {
    let mut k = base;
    k[95] = limbs_last;
    k
}

#[test]
fn degenerate_keys_are_refused_by_both_sides() {
    let p = bignum::to_be_bytes(&bignum::Monty::mse().p);
    let t = table();
    for bad in [[0u8; 96], key_bytes(1, [0; 96]), key_bytes(p[95] - 1, p), p] {
        let mut b = responder(1, &t, ResponderConfig::default());
        assert_eq!(f(&mut b, &bad), Err(MseError::BadPublicKey));
        assert!(b.output().is_empty(), "nothing sent to a bad key");
        // the failure sticks
        assert_eq!(f(&mut b, &[0]), Err(MseError::BadPublicKey));
        let mut a = initiator(1, CryptoSet::RC4);
        a.output();
        assert_eq!(f(&mut a, &bad), Err(MseError::BadPublicKey));
    }
}

#[test]
fn responder_gives_up_after_the_pad_limit() {
    let t = table();
    let mut a = initiator(1, CryptoSet::RC4);
    let ya = a.output()[..96].to_vec();
    let mut b = responder(2, &t, ResponderConfig::default());
    assert_eq!(f(&mut b, &ya), Ok(false));
    // 512 pad bytes plus 19: req1 could still start at offset 512
    let junk = vec![0x55u8; 512 + 19];
    assert_eq!(f(&mut b, &junk), Ok(false));
    assert_eq!(f(&mut b, &[0x55]), Err(MseError::SyncNotFound));
}

#[test]
fn initiator_gives_up_after_the_pad_limit() {
    let t = table();
    let mut a = initiator(1, CryptoSet::RC4);
    let mut b = responder(2, &t, ResponderConfig::default());
    b.feed(&a.output()).unwrap();
    let yb = b.output()[..96].to_vec();
    assert_eq!(f(&mut a, &yb), Ok(false));
    assert_eq!(f(&mut a, &vec![0x55u8; 512 + 7]), Ok(false));
    assert_eq!(f(&mut a, &[0x55]), Err(MseError::VcNotFound));
}

#[test]
fn unknown_torrent_is_refused() {
    let t: ObfuscatedHashes = [InfoHash([1; 20])].into_iter().collect();
    let mut a = initiator(1, CryptoSet::RC4);
    let mut b = responder(2, &t, ResponderConfig::default());
    b.feed(&a.output()).unwrap();
    a.feed(&b.output()).unwrap();
    assert_eq!(f(&mut b, &a.output()), Err(MseError::UnknownTorrent));
    assert!(b.output().is_empty());
}

#[test]
fn tampered_vc_is_refused() {
    let t = table();
    let mut a = initiator(1, CryptoSet::RC4);
    let mut b = responder(2, &t, ResponderConfig::default());
    b.feed(&a.output()).unwrap();
    a.feed(&b.output()).unwrap();
    let mut m3 = a.output();
    m3[40] ^= 1; // first byte of ENCRYPT(VC)
    assert_eq!(f(&mut b, &m3), Err(MseError::BadVc));
}

#[test]
fn no_common_crypto_is_refused() {
    let t = table();
    let rc4_only = ResponderConfig {
        allowed: CryptoSet::RC4,
        prefer: Crypto::Rc4,
    };
    let mut a = initiator(1, CryptoSet::PLAINTEXT);
    let mut b = responder(2, &t, rc4_only);
    b.feed(&a.output()).unwrap();
    a.feed(&b.output()).unwrap();
    assert_eq!(
        f(&mut b, &a.output()),
        Err(MseError::NoCommonCrypto { provided: 1 })
    );
}

#[test]
fn feeding_after_the_end_is_an_error() {
    let t = table();
    let mut a = initiator(1, CryptoSet::RC4);
    let mut b = responder(2, &t, ResponderConfig::default());
    b.feed(&a.output()).unwrap();
    a.feed(&b.output()).unwrap();
    assert!(b.feed(&a.output()).unwrap().is_some());
    assert!(a.feed(&b.output()).unwrap().is_some());
    assert_eq!(f(&mut a, b"more"), Err(MseError::Finished));
    assert_eq!(f(&mut b, b"more"), Err(MseError::Finished));
}

/// Random bytes of every length up to 1500, in random pieces, never
/// panic either side, and never keep more than the limits allow.
#[test]
fn garbage_never_panics() {
    let t = table();
    let mut rng = StdRng::seed_from_u64(99);
    for len in (0..1500).step_by(7) {
        let mut junk = vec![0u8; len];
        rng.fill_bytes(&mut junk);
        let mut b = responder(len as u64, &t, ResponderConfig::default());
        let mut a = initiator(len as u64, CryptoSet::BOTH);
        for piece in junk.chunks(1 + len % 97) {
            let rb = b.feed(piece);
            let ra = a.feed(piece);
            assert!(!matches!(rb, Ok(Some(_))) && !matches!(ra, Ok(Some(_))));
        }
        if len >= 96 + 512 + 20 {
            assert!(b.feed(&[]).is_err(), "responder still waiting after {len}");
        }
        if len >= 96 + 512 + 8 {
            assert!(a.feed(&[]).is_err(), "initiator still waiting after {len}");
        }
    }
}

/// A writer that takes at most 7 bytes per call and fails every third
/// call with `WouldBlock`, as a socket with a write timeout may.
struct Stingy {
    got: Vec<u8>,
    calls: usize,
}

impl Write for Stingy {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(3) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(7);
        self.got.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn encrypted_writer_survives_short_writes_and_timeouts() {
    let (a, mut b) = pair(20, CryptoSet::RC4, ResponderConfig::default(), b"", b"");
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
    let mut w = EncryptedWriter::new(
        Stingy {
            got: Vec::new(),
            calls: 0,
        },
        a.encrypt,
    );
    let mut sent = 0;
    while sent < data.len() {
        match w.write(&data[sent..(sent + 333).min(data.len())]) {
            Ok(n) => sent += n,
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
        }
    }
    while let Err(e) = w.flush() {
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
    let mut wire = w.get_ref().got.clone();
    assert_eq!(wire.len(), data.len());
    assert_ne!(wire, data);
    b.decrypt.apply(&mut wire);
    assert_eq!(wire, data);
}

#[test]
fn encrypted_reader_serves_received_then_the_socket() {
    let (mut a, b) = pair(
        21,
        CryptoSet::RC4,
        ResponderConfig::default(),
        b"",
        b"early bytes;",
    );
    let mut later = b"later bytes".to_vec();
    // what b would send next, on the B-to-A stream
    let mut b_enc = b.encrypt;
    b_enc.apply(&mut later);
    let (mut r, _) = Established {
        info_hash: IH,
        crypto: a.crypto,
        encrypt: Cipher::plaintext(),
        decrypt: std::mem::replace(&mut a.decrypt, Cipher::plaintext()),
        received: std::mem::take(&mut a.received),
    }
    .into_split(&later[..], Vec::new());
    let mut got = String::new();
    r.read_to_string(&mut got).unwrap();
    assert_eq!(got, "early bytes;later bytes");
}

/// `feed`, reduced to "finished?" so results compare with `assert_eq!`.
fn f<M: MseHandshake>(m: &mut M, data: &[u8]) -> Result<bool, MseError> {
    m.feed(data).map(|done| done.is_some())
}

/// PadC and PadD of legal lengths are skipped (every split), and the
/// decrypted stream after them lines up.
#[test]
fn pads_c_and_d_within_the_limit_are_skipped() {
    let t = table();
    let mut a = initiator(30, CryptoSet::RC4).with_pad_c(512, 0xc1);
    let mut b = responder(31, &t, ResponderConfig::default()).with_pad_d(300, 0xd1);
    b.feed(&a.output()).unwrap();
    a.feed(&b.output()).unwrap();
    let m3 = a.output();
    assert_eq!(m3.len(), 20 + 20 + 8 + 4 + 2 + 512 + 2 + IA.len());
    let r3 = feed_every_way(&mut b, &m3);
    assert_eq!(r3.done, Some((IH, Crypto::Rc4, IA.to_vec())));
    assert_eq!(r3.output.len(), 8 + 4 + 2 + 300);
    let r4 = feed_every_way(&mut a, &r3.output);
    assert_eq!(r4.done, Some((IH, Crypto::Rc4, Vec::new())));
}

#[test]
fn pad_c_over_the_limit_is_refused() {
    let t = table();
    let mut a = initiator(32, CryptoSet::RC4).with_pad_c(513, 0);
    let mut b = responder(33, &t, ResponderConfig::default());
    b.feed(&a.output()).unwrap();
    a.feed(&b.output()).unwrap();
    assert_eq!(
        f(&mut b, &a.output()),
        Err(MseError::PadTooLong { len: 513 })
    );
}

#[test]
fn pad_d_over_the_limit_is_refused() {
    let t = table();
    let mut a = initiator(34, CryptoSet::RC4);
    let mut b = responder(35, &t, ResponderConfig::default()).with_pad_d(600, 0);
    b.feed(&a.output()).unwrap();
    a.feed(&b.output()).unwrap();
    assert!(b.feed(&a.output()).unwrap().is_some());
    assert_eq!(
        f(&mut a, &b.output()),
        Err(MseError::PadTooLong { len: 600 })
    );
}
