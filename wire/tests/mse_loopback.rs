//! MSE between two bittern ends over real loopback sockets: the blocking
//! driver, the stream wrappers (whole and split with `try_clone`), the
//! deadline against a stalling peer, and routing a plain BitTorrent
//! handshake on the same listener.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bittern_wire::mse::{
    self, detect, Crypto, CryptoSet, Detected, HandshakeIoError, Initiator, InitiatorConfig,
    MseError, ObfuscatedHashes, Responder, ResponderConfig,
};
use bittern_wire::{Handshake, InfoHash, PeerId};
use sha1::{Digest, Sha1};

const IH: InfoHash = InfoHash([0x42; 20]);
const MB: usize = 1 << 20;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// 4 MiB each way through the ciphers, concurrently; the hashes match.
fn transfer(provide: CryptoSet, want: Crypto) {
    let (l, port) = listener();
    let server = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let table: ObfuscatedHashes = [IH].into_iter().collect();
        let mut resp = Responder::new(|h| table.find(h), ResponderConfig::default());
        let est = mse::handshake(&mut s, &mut resp, &[], None).unwrap();
        assert_eq!(est.crypto, want);
        assert_eq!(est.received, b"hello from a");
        // split halves on two threads, as peer threads would use them
        let (mut r, mut w) = est.into_split(s.try_clone().unwrap(), s);
        let writer = thread::spawn(move || {
            w.write_all(&pattern(2, 4 * MB)).unwrap();
            w.flush().unwrap();
        });
        // the reader serves IA (the initiator's first payload) first
        let mut ia = [0u8; 12];
        r.read_exact(&mut ia).unwrap();
        assert_eq!(&ia, b"hello from a");
        let mut got = vec![0u8; 4 * MB];
        r.read_exact(&mut got).unwrap();
        writer.join().unwrap();
        Sha1::digest(&got)
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut init = Initiator::new(
        IH,
        InitiatorConfig {
            provide,
            initial_payload: b"hello from a".to_vec(),
        },
    );
    let est = mse::handshake(&mut s, &mut init, &[], None).unwrap();
    assert_eq!(est.crypto, want);
    let reader = s.try_clone().unwrap();
    let (mut r, mut w) = est.into_split(reader, s);
    let sender = thread::spawn(move || {
        w.write_all(&pattern(1, 4 * MB)).unwrap();
        w.flush().unwrap();
    });
    let mut got = vec![0u8; 4 * MB];
    r.read_exact(&mut got).unwrap();
    sender.join().unwrap();
    assert_eq!(got, pattern(2, 4 * MB));
    assert_eq!(server.join().unwrap(), Sha1::digest(pattern(1, 4 * MB)));
}

#[test]
fn bittern_to_bittern_rc4_over_loopback() {
    transfer(CryptoSet::RC4, Crypto::Rc4);
}

#[test]
fn bittern_to_bittern_plaintext_after_handshake_over_loopback() {
    transfer(CryptoSet::PLAINTEXT, Crypto::Plaintext);
}

/// A peer that sends a valid-looking Ya and then one pad byte every
/// 50 ms is cut off by the deadline, long before its 512 pad bytes run
/// out; a peer that sends nothing at all hits the read timeout.
#[test]
fn stalling_peers_are_cut_off() {
    let (l, port) = listener();
    let server = thread::spawn(move || {
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let table: ObfuscatedHashes = [IH].into_iter().collect();
            let mut resp = Responder::new(|h| table.find(h), ResponderConfig::default());
            let t = Instant::now();
            let deadline = t + Duration::from_millis(600);
            let r = mse::handshake(&mut s, &mut resp, &[], Some(deadline));
            outcomes.push((r.map(|_| ()), t.elapsed()));
        }
        outcomes
    });
    // trickler
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut init = Initiator::new(
        IH,
        InitiatorConfig {
            provide: CryptoSet::RC4,
            initial_payload: Vec::new(),
        },
    );
    a.write_all(&init.output()[..96]).unwrap();
    let stop = Instant::now() + Duration::from_secs(3);
    while Instant::now() < stop {
        if a.write_all(&[0x77]).is_err() {
            break; // the server hung up
        }
        thread::sleep(Duration::from_millis(50));
    }
    // silent
    let _b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let outcomes = server.join().unwrap();
    let (first, took) = &outcomes[0];
    assert!(
        matches!(first, Err(HandshakeIoError::Deadline)),
        "trickler: {first:?}"
    );
    assert!(*took < Duration::from_millis(1500), "took {took:?}");
    let (second, took) = &outcomes[1];
    assert!(
        matches!(second, Err(HandshakeIoError::Io(_))),
        "silent: {second:?}"
    );
    assert!(*took < Duration::from_millis(1500), "took {took:?}");
}

/// One listener, two kinds of client: `detect` routes a plain
/// BitTorrent handshake to the plain path and MSE to the responder.
#[test]
fn one_port_serves_plain_and_encrypted() {
    let (l, port) = listener();
    let server = thread::spawn(move || {
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut prefix = Vec::new();
            let kind = loop {
                match detect(&prefix) {
                    Detected::NeedMore => {}
                    other => break other,
                }
                let mut b = [0u8; 7]; // small reads: detect sees partial prefixes
                let n = s.read(&mut b).unwrap();
                assert!(n > 0);
                prefix.extend_from_slice(&b[..n]);
            };
            let payload = match kind {
                Detected::Plaintext => {
                    let mut hs = [0u8; 68];
                    hs[..prefix.len()].copy_from_slice(&prefix);
                    s.read_exact(&mut hs[prefix.len()..]).unwrap();
                    Handshake::decode(&hs).unwrap().info_hash
                }
                _ => {
                    let table: ObfuscatedHashes = [IH].into_iter().collect();
                    let mut resp = Responder::new(|h| table.find(h), ResponderConfig::default());
                    let est = mse::handshake(&mut s, &mut resp, &prefix, None).unwrap();
                    let mut es = est.into_stream(s);
                    let mut hs = [0u8; 68];
                    es.read_exact(&mut hs).unwrap();
                    Handshake::decode(&hs).unwrap().info_hash
                }
            };
            kinds.push((kind, payload));
        }
        kinds
    });
    let hs = Handshake::new(IH, PeerId([1; 20])).encode();
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.write_all(&hs).unwrap();
    let mut enc = TcpStream::connect(("127.0.0.1", port)).unwrap();
    enc.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut init = Initiator::new(
        IH,
        InitiatorConfig {
            provide: CryptoSet::RC4,
            initial_payload: hs.to_vec(),
        },
    );
    let est = mse::handshake(&mut enc, &mut init, &[], None).unwrap();
    assert_eq!(est.crypto, Crypto::Rc4);
    let kinds = server.join().unwrap();
    assert_eq!(
        kinds,
        vec![(Detected::Plaintext, IH), (Detected::Encrypted, IH)]
    );
}

/// The wrong torrent: the responder refuses, and the initiator sees the
/// connection closed rather than hanging.
#[test]
fn unknown_torrent_closes_the_connection() {
    let (l, port) = listener();
    let server = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let table: ObfuscatedHashes = [InfoHash([1; 20])].into_iter().collect();
        let mut resp = Responder::new(|h| table.find(h), ResponderConfig::default());
        mse::handshake(&mut s, &mut resp, &[], None).map(|_| ())
        // s dropped: closed
    });
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut init = Initiator::new(
        IH,
        InitiatorConfig {
            provide: CryptoSet::RC4,
            initial_payload: Vec::new(),
        },
    );
    let r = mse::handshake(&mut s, &mut init, &[], None);
    assert!(
        matches!(r, Err(HandshakeIoError::Closed | HandshakeIoError::Io(_))),
        "{r:?}"
    );
    assert!(matches!(
        server.join().unwrap(),
        Err(HandshakeIoError::Protocol(MseError::UnknownTorrent))
    ));
}
