//! Requests a peer never answers, rejects or voids by choking, against a
//! real leecher on loopback: the download completes byte for byte, and the
//! leecher keeps within the request queue the peer advertised.
//!
//! Each scripted peer holds the requests it gets until the leecher goes
//! quiet for a moment (or 64 are queued), then serves them in order, so
//! the deepest queue the leecher built is measured.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use bittern_engine::{SeedGoal, Session, SessionConfig, Timing, TorrentOptions, TorrentState};
use bittern_wire::{Bitfield, BlockRef, ExtensionHandshake, Handshake, Message, PeerId};

use crate::fake::{Got, Wire};
use crate::util::*;

/// What a scripted seeder does with the requests it gets, numbered from 0
/// in arrival order.
#[derive(Clone, Copy)]
struct Script {
    /// Sets the fast-extension bit (BEP 6) in its handshake.
    fast: bool,
    /// `reqq` in its extension handshake.
    reqq: Option<u32>,
    /// Never answers request n, says nothing.
    drop: fn(usize) -> bool,
    /// Answers request n with REJECT (fast only).
    reject: fn(usize) -> bool,
    /// After this many requests, chokes: a fast peer rejects what it has
    /// queued, a plain one forgets it; then it unchokes again.
    choke_after: Option<usize>,
    /// Serves what it holds once this many requests are queued (or the
    /// leecher is quiet for 20 ms).
    hold: usize,
    /// Transmission 3.00's rule (fast only): a request that would make the
    /// queue this long is rejected (`pendingReqsToClient + 1 >= REQQ`).
    queue_limit: Option<usize>,
}

const PLAIN: Script = Script {
    fast: false,
    reqq: None,
    drop: never,
    reject: never,
    choke_after: None,
    hold: 64,
    queue_limit: None,
};

fn never(_: usize) -> bool {
    false
}

/// What the scripted seeder saw.
#[derive(Debug, Default)]
struct Seen {
    served: usize,
    dropped: usize,
    rejected: usize,
    /// Most requests queued with it at once.
    max_pending: usize,
}

/// A seeder of `data` following `script`, serving one connection until
/// the leecher closes it.
fn scripted_seeder(
    meta: &bittern_wire::Metainfo,
    data: Vec<u8>,
    script: Script,
) -> (SocketAddr, std::thread::JoinHandle<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let info_hash = meta.info_hash;
    let pieces = meta.info.piece_count();
    let piece_length = meta.info.piece_length as usize;
    let t = std::thread::spawn(move || {
        let mut seen = Seen::default();
        let Ok((stream, _)) = crate::fake::accept_plain(&listener) else {
            return seen;
        };
        let mut hs = Handshake::new(info_hash, PeerId::generate(b"-FK0001-"));
        if !script.fast {
            hs.reserved[7] &= !0x04; // the fast-extension bit (BEP 6)
        }
        let mut w = Wire::from_stream(stream);
        if w.send_raw(&hs.encode()).is_err() {
            return seen;
        }
        let ext = ExtensionHandshake {
            reqq: script.reqq,
            ..ExtensionHandshake::default()
        };
        let all = Bitfield::full(pieces);
        let opening = [
            Message::Extended {
                id: 0,
                payload: &ext.encode(),
            },
            Message::Bitfield(all.as_bytes()),
            Message::Unchoke,
        ];
        for m in opening {
            if w.send(m).is_err() {
                return seen;
            }
        }
        let _ = w.stream.set_read_timeout(Some(Duration::from_millis(20)));
        let mut pending: Vec<BlockRef> = Vec::new();
        let mut n = 0;
        loop {
            let quiet = match w.recv() {
                Ok(Got::Request {
                    index,
                    begin,
                    length,
                }) => {
                    let b = BlockRef {
                        index,
                        begin,
                        length,
                    };
                    let k = n;
                    n += 1;
                    if (script.drop)(k) {
                        seen.dropped += 1;
                    } else if script.fast
                        && ((script.reject)(k)
                            || script.queue_limit.is_some_and(|q| pending.len() + 1 >= q))
                    {
                        seen.rejected += 1;
                        if w.send(Message::Reject(b)).is_err() {
                            break;
                        }
                    } else {
                        pending.push(b);
                        seen.max_pending = seen.max_pending.max(pending.len());
                    }
                    if script.choke_after == Some(n) {
                        if w.send(Message::Choke).is_err() {
                            break;
                        }
                        for b in pending.drain(..) {
                            if script.fast && w.send(Message::Reject(b)).is_err() {
                                break;
                            }
                        }
                        std::thread::sleep(Duration::from_millis(100));
                        if w.send(Message::Unchoke).is_err() {
                            break;
                        }
                    }
                    pending.len() >= script.hold
                }
                Ok(Got::Other(s)) if s.starts_with("Cancel") => {
                    let Some(b) = parse_cancel(&s) else { continue };
                    pending.retain(|p| *p != b);
                    false
                }
                Ok(_) => false,
                Err(e) if bittern_testkit::is_timeout(&e) => true,
                Err(_) => break,
            };
            if quiet {
                for b in pending.drain(..) {
                    let start = b.index as usize * piece_length + b.begin as usize;
                    let block = &data[start..start + b.length as usize];
                    if w.send(Message::Piece {
                        index: b.index,
                        begin: b.begin,
                        data: block,
                    })
                    .is_err()
                    {
                        return seen;
                    }
                    seen.served += 1;
                }
            }
        }
        seen
    });
    (addr, t)
}

/// The block of a `Cancel(BlockRef { index: .., begin: .., length: .. })`
/// as `Got::Other` prints it.
fn parse_cancel(s: &str) -> Option<BlockRef> {
    let num = |key: &str| -> Option<u32> {
        let rest = &s[s.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .find(|t| !t.is_empty())?
            .parse()
            .ok()
    };
    Some(BlockRef {
        index: num("index")?,
        begin: num("begin")?,
        length: num("length")?,
    })
}

/// A leecher whose requests are due a second after the blocks queued
/// before them should have come.
fn leecher() -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    let c = config();
    Session::new(SessionConfig {
        timing: Timing {
            request_timeout: Duration::from_secs(1),
            ..c.timing
        },
        ..c
    })
    .unwrap()
}

/// Downloads a `size`-byte torrent from a seeder following `script` and
/// checks every byte; returns what the seeder saw.
fn download_from(size: u64, script: Script, seed: u64) -> Seen {
    download_from_all(size, &[script], leecher(), seed).remove(0)
}

/// Downloads from one seeder per script at once, with `session`.
fn download_from_all(size: u64, scripts: &[Script], session: Session, seed: u64) -> Vec<Seen> {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "r.bin", &[("r.bin", size)], 64 * 1024, seed);
    let data = std::fs::read(src.path().join("r.bin")).unwrap();
    let (addrs, seeders): (Vec<_>, Vec<_>) = scripts
        .iter()
        .map(|&s| scripted_seeder(&meta, data.clone(), s))
        .unzip();
    let opts = TorrentOptions {
        peers: addrs,
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = session.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    // Generous: each lost request costs about a second here.
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    let st = l.status();
    assert_eq!(st.have_bytes, size);
    assert_eq!(st.pieces_have, meta.info.piece_count());
    assert_eq!(st.hash_failures, 0);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    drop(session);
    let seen: Vec<Seen> = seeders.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!("{seen:?}");
    seen
}

#[test]
fn a_request_dropped_silently_is_asked_again() {
    let seen = download_from(
        2 * 1024 * 1024,
        Script {
            drop: |n| n == 40,
            ..PLAIN
        },
        71,
    );
    assert_eq!(seen.dropped, 1);
    assert!(seen.served >= 128, "{seen:?}");
}

#[test]
fn one_request_in_a_hundred_dropped_still_completes() {
    let seen = download_from(
        4 * 1024 * 1024,
        Script {
            drop: |n| n % 100 == 99,
            ..PLAIN
        },
        72,
    );
    assert!(seen.dropped >= 2, "{seen:?}");
    assert!(seen.served >= 256, "{seen:?}");
}

#[test]
fn a_peer_that_unchokes_and_stays_silent_loses_its_requests() {
    // Deadlines far off: the snub (nothing for 2 s while unchoked) is what
    // takes back the first requests, which the peer swallowed.
    let _ = env_logger::builder().is_test(true).try_init();
    let c = config();
    let session = Session::new(SessionConfig {
        timing: Timing {
            request_timeout: Duration::from_secs(600),
            snub_timeout: Duration::from_secs(2),
            ..c.timing
        },
        ..c
    })
    .unwrap();
    let swallows_the_first = Script {
        drop: |n| n < 64,
        ..PLAIN
    };
    let seen = download_from_all(1024 * 1024, &[swallows_the_first], session, 78);
    assert_eq!(seen[0].dropped, 64, "{seen:?}");
    assert!(seen[0].served >= 64, "{seen:?}");
}

#[test]
fn a_request_rejected_while_unchoked_is_asked_again() {
    // Transmission 3.00 refuses a request that overflows its queue with
    // REJECT while it keeps unchoking: the piece is still there.
    let seen = download_from(
        2 * 1024 * 1024,
        Script {
            fast: true,
            reject: |n| n == 30,
            ..PLAIN
        },
        73,
    );
    assert_eq!(seen.rejected, 1);
}

#[test]
fn the_advertised_request_queue_is_respected() {
    let seen = download_from(
        1024 * 1024,
        Script {
            fast: true,
            reqq: Some(5),
            ..PLAIN
        },
        74,
    );
    assert!(seen.max_pending >= 1, "{seen:?}");
    assert!(
        seen.max_pending < 5,
        "{} requests queued with a peer that takes 5",
        seen.max_pending
    );
}

#[test]
fn a_transmission_3_queue_is_never_overfilled() {
    // Advertises reqq 512 but rejects the request that would make its
    // queue 512 long; holds requests so the leecher's pipe fills up.
    let seen = download_from(
        32 * 1024 * 1024,
        Script {
            fast: true,
            reqq: Some(512),
            hold: 1024,
            queue_limit: Some(512),
            ..PLAIN
        },
        77,
    );
    assert_eq!(seen.rejected, 0, "{seen:?}");
    assert!(seen.max_pending <= 511, "{seen:?}");
    assert_eq!(seen.served, 2048, "{seen:?}");
}

#[test]
fn a_choke_without_fast_voids_requests_and_they_are_asked_again() {
    let seen = download_from(
        2 * 1024 * 1024,
        Script {
            choke_after: Some(50),
            ..PLAIN
        },
        75,
    );
    assert!(seen.served >= 128, "{seen:?}");
}

#[test]
fn a_fast_choke_with_rejects_gives_blocks_back() {
    let seen = download_from(
        2 * 1024 * 1024,
        Script {
            fast: true,
            choke_after: Some(50),
            ..PLAIN
        },
        76,
    );
    assert!(seen.served >= 128, "{seen:?}");
}
