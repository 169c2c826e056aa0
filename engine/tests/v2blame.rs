//! Per-block blame in a v2 torrent (BEP 52): a piece made of one bad
//! block from a hostile peer and good blocks from an honest seeder fails;
//! the leecher asks for the piece's leaves, finds the one bad block, and
//! bans its sender at once, on that evidence alone; the honest seeder is
//! not blamed and the download completes.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use bittern_engine::{TorrentEvent, TorrentOptions, TorrentState, Violation};
use bittern_wire::{Bitfield, BlockRef, Message, MetaVersion};

use crate::fake::{Got, Wire};
use crate::util::{assert_same, seeding, session, tempdir};
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
