//! Per-block blame in a v2 torrent (BEP 52): a piece made of one bad
//! block from a hostile peer and good blocks from an honest seeder fails;
//! the leecher asks for the piece's leaves, finds the one bad block, and
//! bans its sender at once, on that evidence alone; the honest seeder is
//! not blamed and the download completes.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use bittern_engine::{TorrentEvent, TorrentOptions, TorrentState, Violation};
use bittern_storage::merkle::MerkleTree;
use bittern_wire::hashes::{HashRequest, Hashes};
use bittern_wire::{Bitfield, BlockRef, Message, MetaVersion};

use crate::fake::{Got, Wire};
use crate::util::{assert_same, seeding, session, tempdir, wait_state};
use crate::v2seed::v2_torrent;

#[test]
fn one_bad_block_bans_its_sender_only() {
    let (src, dst) = (tempdir(), tempdir());
    // 16 pieces of 32 KiB, two blocks each
    let (m, data) = v2_torrent(src.path(), "blame.bin", 16 * 32 * 1024, MetaVersion::V2);
    let (seeder, _seeding) = seeding(&m, src.path());
    let honest = seeder.local_addr();

    // The hostile peer has piece 0 only: it rejects block 0 and sends
    // block 1 with one byte flipped, then rejects everything.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hostile: SocketAddr = listener.local_addr().unwrap();
    let (sent_tx, sent_rx) = crossbeam_channel::bounded(1);
    let info_hash = m.info_hash;
    let piece0 = data[..32 * 1024].to_vec();
    let hostile_thread = std::thread::spawn(move || {
        let Ok(mut w) = Wire::accept(&listener, info_hash) else {
            return;
        };
        let mut bits = Bitfield::new(16);
        bits.set(0);
        if w.send(Message::Bitfield(bits.as_bytes())).is_err() || w.send(Message::Unchoke).is_err()
        {
            return;
        }
        let mut sent = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match w.recv() {
                Ok(Got::Request {
                    index,
                    begin,
                    length,
                }) => {
                    let r = if index == 0 && begin == 16384 && !sent {
                        let mut block = piece0[16384..].to_vec();
                        block[100] ^= 0xff;
                        sent = true;
                        let r = w.send(Message::Piece {
                            index,
                            begin,
                            data: &block,
                        });
                        let _ = sent_tx.send(());
                        r
                    } else {
                        w.send(Message::Reject(BlockRef {
                            index,
                            begin,
                            length,
                        }))
                    };
                    if r.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });

    let s = session();
    let h = s
        .add_torrent(
            m.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![hostile],
                ..Default::default()
            },
        )
        .unwrap();
    sent_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the leecher asked the hostile peer for block 1 of piece 0");
    h.add_peers(vec![honest]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut events = Vec::new();
    loop {
        while let Ok(e) = h.events().try_recv() {
            events.push(e);
        }
        let st = h.status();
        if st.state == TorrentState::Seeding || st.state == TorrentState::Stopped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no completion: {st:?} {events:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while let Ok(e) = h.events().try_recv() {
        events.push(e);
    }
    assert_same(src.path(), dst.path(), &m.info.file_paths());
    assert_eq!(h.status().hash_failures, 1, "{events:?}");
    assert_eq!(h.status().corrupt, 32 * 1024, "the failed piece");
    let banned: Vec<SocketAddr> = events
        .iter()
        .filter_map(|e| match e {
            TorrentEvent::PeerBanned(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert_eq!(banned.len(), 1, "only the hostile peer: {events:?}");
    assert_eq!(banned, vec![hostile]);
    assert!(
        events.iter().any(|e| matches!(
            e,
            TorrentEvent::PeerViolation {
                violation: Violation::BadBlock {
                    piece: 0,
                    begin: 16384
                },
                ..
            }
        )),
        "{events:?}"
    );
    drop(s);
    let _ = hostile_thread.join();
}

/// A scripted peer of piece 0 only: it serves block `serve` of piece 0
/// (one byte flipped when `corrupt`), rejects every other request and
/// never answers a hash request; each hash request it gets is reported on
/// `asked`. `serve: None` is a peer with no piece at all.
fn scripted(
    info_hash: bittern_wire::InfoHash,
    pieces: usize,
    piece0: Vec<u8>,
    serve: Option<(u32, bool)>,
    asked: crossbeam_channel::Sender<HashRequest>,
) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let Ok(mut w) = Wire::accept(&listener, info_hash) else {
            return;
        };
        let mut bits = Bitfield::new(pieces);
        if serve.is_some() {
            bits.set(0);
        }
        if w.send(Message::Bitfield(bits.as_bytes())).is_err() || w.send(Message::Unchoke).is_err()
        {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let r = match w.recv() {
                Ok(Got::Request {
                    index,
                    begin,
                    length,
                }) => match serve {
                    Some((b, corrupt)) if index == 0 && begin == b => {
                        let mut block = piece0[b as usize..(b + length) as usize].to_vec();
                        if corrupt {
                            block[7] ^= 0xff;
                        }
                        w.send(Message::Piece {
                            index,
                            begin,
                            data: &block,
                        })
                    }
                    _ => w.send(Message::Reject(BlockRef {
                        index,
                        begin,
                        length,
                    })),
                },
                Ok(Got::HashRequest(r)) => {
                    let _ = asked.send(r);
                    Ok(())
                }
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
                Err(_) => return,
            };
            if r.is_err() {
                return;
            }
        }
    });
    (addr, t)
}

/// Peers asked for a failed piece's leaves that never answer are given up
/// on after the request timeout: the leaves are asked of a peer that was
/// not asked before (here one that joined after the first round), so a
/// silent peer cannot hold a failed piece's blame (and its slot among the
/// 64 kept) forever.
#[test]
fn silent_leaf_requests_expire_and_are_asked_again() {
    let src = tempdir();
    let dst = tempdir();
    let (m, data) = v2_torrent(src.path(), "silent.bin", 4 * 32 * 1024, MetaVersion::V2);
    let piece0 = data[..32 * 1024].to_vec();
    // Piece 0 comes from two peers (block 0 good, block 1 bad): it fails
    // with two senders, and both are asked for its leaves; neither answers.
    let (tx1, rx1) = crossbeam_channel::unbounded();
    let (tx2, rx2) = crossbeam_channel::unbounded();
    let (tx3, rx3) = crossbeam_channel::unbounded();
    let (a, ta) = scripted(m.info_hash, 4, piece0.clone(), Some((0, false)), tx1);
    let (b, tb) = scripted(m.info_hash, 4, piece0.clone(), Some((16384, true)), tx2);
    let (c, tc) = scripted(m.info_hash, 4, piece0, None, tx3);
    let base = crate::util::config();
    let s = bittern_engine::Session::new(bittern_engine::SessionConfig {
        timing: bittern_engine::Timing {
            request_timeout: Duration::from_secs(3),
            ..base.timing
        },
        ..base
    })
    .unwrap();
    let h = s
        .add_torrent(
            m.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![a, b],
                ..Default::default()
            },
        )
        .unwrap();
    // Piece 0 fails; its leaves are asked of the two (the status shows
    // the failure on the controller's next tick, after that round).
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.status().hash_failures == 0 {
        assert!(Instant::now() < deadline, "piece 0 never failed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = rx1
        .recv_timeout(Duration::from_secs(10))
        .or_else(|_| rx2.recv_timeout(Duration::from_secs(1)))
        .expect("the failed piece's leaves were asked of its senders");
    assert_eq!(first.base_layer, 0, "{first:?}");
    // A third peer joins after that round: only a retry asks it.
    h.add_peers(vec![c]).unwrap();
    let again = rx3
        .recv_timeout(Duration::from_secs(30))
        .expect("silent peers given up on, the leaves asked of another");
    assert_eq!(again, first, "the same piece's leaves");
    drop(h);
    drop(s);
    for t in [ta, tb, tc] {
        let _ = t.join();
    }
}

/// BEP 52 per-block verification: a hostile peer answers the leaf request
/// for piece 0 truthfully (the leaves prove against the piece layer), then
/// sends block 1 of piece 0 with one byte flipped. The leecher's reader
/// checks that block against its leaf on arrival, does not write it, and
/// the sender is banned on that block alone: no piece ever fails its hash
/// check. An honest seeder then completes the download, byte-identical.
/// (Leaves asked ahead: `SessionConfig::v2_leaves_ahead`, off by default.)
#[test]
fn a_bad_block_is_caught_on_arrival_before_its_piece_completes() {
    let (src, dst) = (tempdir(), tempdir());
    let (m, data) = v2_torrent(src.path(), "arrive.bin", 16 * 32 * 1024, MetaVersion::V2);
    let tree = MerkleTree::from_data(&data).unwrap();
    let (seeder, _seeding) = seeding(&m, src.path());
    let honest = seeder.local_addr();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hostile: SocketAddr = listener.local_addr().unwrap();
    // (leaves answered before the bad block, the bad block sent)
    let (sent_tx, sent_rx) = crossbeam_channel::bounded(1);
    let info_hash = m.info_hash;
    let hostile_thread = std::thread::spawn(move || {
        let Ok(mut w) = Wire::accept(&listener, info_hash) else {
            return;
        };
        let mut bits = Bitfield::new(16);
        bits.set(0);
        if w.send(Message::Bitfield(bits.as_bytes())).is_err() || w.send(Message::Unchoke).is_err()
        {
            return;
        }
        let mut answered = false;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let r = match w.recv() {
                Ok(Got::HashRequest(req)) => {
                    let hashes = tree
                        .hashes(
                            req.base_layer,
                            u64::from(req.index),
                            u64::from(req.length),
                            req.proof_layers,
                        )
                        .unwrap();
                    let raw = hashes.concat();
                    answered = true;
                    w.send(Message::Hashes(Hashes::new(req, &raw).unwrap()))
                }
                Ok(Got::Request {
                    index,
                    begin,
                    length,
                }) if index == 0 => {
                    let at = begin as usize;
                    let mut block = data[at..at + length as usize].to_vec();
                    if begin == 16384 {
                        block[100] ^= 0xff;
                    }
                    let r = w.send(Message::Piece {
                        index,
                        begin,
                        data: &block,
                    });
                    if begin == 16384 {
                        let _ = sent_tx.send(answered);
                    }
                    r
                }
                Ok(Got::Request {
                    index,
                    begin,
                    length,
                }) => w.send(Message::Reject(BlockRef {
                    index,
                    begin,
                    length,
                })),
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
                Err(_) => return,
            };
            if r.is_err() {
                return;
            }
        }
    });

    let s = bittern_engine::Session::new(bittern_engine::SessionConfig {
        v2_leaves_ahead: true,
        ..crate::util::config()
    })
    .unwrap();
    let h = s
        .add_torrent(
            m.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![hostile],
                ..Default::default()
            },
        )
        .unwrap();
    let answered = sent_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the leecher asked the hostile peer for block 1 of piece 0");
    assert!(
        answered,
        "the leaves of piece 0 were asked before its blocks"
    );
    // Banned for that block, before piece 0 was complete.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut events = Vec::new();
    while !events
        .iter()
        .any(|e| matches!(e, TorrentEvent::PeerBanned(a) if *a == hostile))
    {
        assert!(Instant::now() < deadline, "not banned: {events:?}");
        while let Ok(e) = h.events().try_recv() {
            events.push(e);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        events.iter().any(|e| matches!(
            e,
            TorrentEvent::PeerViolation {
                addr,
                violation: Violation::BadBlock {
                    piece: 0,
                    begin: 16384
                },
            } if *addr == hostile
        )),
        "{events:?}"
    );
    let st = h.status();
    assert_eq!(st.pieces_have, 0, "piece 0 was not complete: {st:?}");
    assert_eq!(st.hash_failures, 0, "{events:?}");
    // the block thrown away counts as corrupt (the daemon's corruptEver),
    // once the status is published again
    bittern_testkit::wait_until("the bad block counted", Duration::from_secs(10), || {
        h.status().corrupt != 0
    });
    assert_eq!(h.status().corrupt, 16384, "{st:?}");

    h.add_peers(vec![honest]).unwrap();
    wait_state(&h, TorrentState::Seeding, Duration::from_secs(60));
    while let Ok(e) = h.events().try_recv() {
        events.push(e);
    }
    assert_same(src.path(), dst.path(), &m.info.file_paths());
    assert_eq!(h.status().hash_failures, 0, "{events:?}");
    assert_eq!(h.status().corrupt, 16384, "{events:?}");
    let banned: Vec<&TorrentEvent> = events
        .iter()
        .filter(|e| matches!(e, TorrentEvent::PeerBanned(_)))
        .collect();
    assert_eq!(banned.len(), 1, "only the hostile peer: {events:?}");
    drop(s);
    let _ = hostile_thread.join();
}

/// A clean v2 download asks no peer for leaves (BEP 52 hash requests):
/// every piece is checked against its piece-layer node when complete, as
/// libtorrent does, and leaves are asked only to blame a failed piece
/// (`one_bad_block_bans_its_sender_only`). Asking for every piece's
/// leaves cost a bittern seeder one SHA-256 pass over all it served.
#[test]
fn a_clean_v2_download_sends_no_hash_requests() {
    let (src, dst) = (tempdir(), tempdir());
    // 24 pieces of 32 KiB and a short last one
    let len = 24 * 32 * 1024 + 5000;
    let (m, data) = v2_torrent(src.path(), "clean.bin", len, MetaVersion::V2);
    let pieces = m.info.piece_count();
    let plen = m.info.piece_length as usize;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let seeder: SocketAddr = listener.local_addr().unwrap();
    let info_hash = m.info_hash;
    // An honest seeder of every piece that counts the hash requests it
    // gets (and rejects them).
    let fake = std::thread::spawn(move || -> (usize, usize) {
        let Ok(mut w) = Wire::accept(&listener, info_hash) else {
            return (0, 0);
        };
        let bits = Bitfield::full(pieces);
        if w.send(Message::Bitfield(bits.as_bytes())).is_err() || w.send(Message::Unchoke).is_err()
        {
            return (0, 0);
        }
        let (mut served, mut asked) = (0, 0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let r = match w.recv() {
                Ok(Got::Request {
                    index,
                    begin,
                    length,
                }) => {
                    let at = index as usize * plen + begin as usize;
                    served += 1;
                    w.send(Message::Piece {
                        index,
                        begin,
                        data: &data[at..at + length as usize],
                    })
                }
                Ok(Got::HashRequest(r)) => {
                    asked += 1;
                    w.send(Message::HashReject(r))
                }
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(()),
                Err(_) => break,
            };
            if r.is_err() {
                break;
            }
        }
        (served, asked)
    });
    let s = session();
    let h = s
        .add_torrent(
            m.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![seeder],
                ..Default::default()
            },
        )
        .unwrap();
    wait_state(&h, TorrentState::Seeding, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &m.info.file_paths());
    assert_eq!(h.status().hash_failures, 0);
    drop(h);
    drop(s);
    let (served, asked) = fake.join().unwrap();
    // 24 whole pieces of two blocks, and one block of 5,000 bytes
    assert!(served >= 49, "blocks served: {served}");
    assert_eq!(asked, 0, "hash requests on a clean download");
}
