//! Hostile and broken peers, scripted with `bittern_wire`, against real
//! sessions on loopback.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bittern_engine::{
    SeedGoal, Session, TorrentEvent, TorrentHandle, TorrentOptions, TorrentState, Violation,
};
use bittern_wire::{BitfieldError, BlockRef, Message, MessageError};

use crate::fake::{serving_peer, Got, Wire};
use crate::util::*;

fn flip(b: &mut [u8]) {
    for x in b {
        *x ^= 0xff;
    }
}

fn keep(_: &mut [u8]) {}

#[test]
fn corrupt_blocks_are_refetched_and_the_sender_banned() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "c.bin",
        &[("c.bin", 1024 * 1024)],
        64 * 1024,
        10,
    );
    let data = std::fs::read(src.path().join("c.bin")).unwrap();
    let (bad, bad_thread) = serving_peer(
        meta.info_hash,
        meta.info.piece_count(),
        meta.info.piece_length,
        data,
        usize::MAX,
        flip,
    );

    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![bad],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    // Wait for the ban before an honest peer appears.
    let start = Instant::now();
    let mut banned = false;
    while !banned && start.elapsed() < Duration::from_secs(30) {
        if let Ok(TorrentEvent::PeerBanned(addr)) =
            l.events().recv_timeout(Duration::from_millis(100))
        {
            assert_eq!(addr.ip(), bad.ip());
            banned = true;
        }
    }
    assert!(
        banned,
        "the corrupting peer was not banned: {:?}",
        l.status()
    );
    // Status is published on the controller's tick.
    let start = Instant::now();
    while l.status().hash_failures == 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(l.status().hash_failures >= 1);
    assert_eq!(
        l.status().pieces_have,
        0,
        "no corrupt piece may be accepted"
    );
    bad_thread.join().unwrap();

    let seeder = session();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    l.add_peers(vec![seeder.local_addr()]).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &["c.bin".into()]);
}

#[test]
fn a_peer_vanishing_mid_piece_has_its_blocks_fetched_elsewhere() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "v.bin",
        &[("v.bin", 1024 * 1024)],
        256 * 1024,
        11,
    );
    let data = std::fs::read(src.path().join("v.bin")).unwrap();
    // Serves 5 good blocks (a piece is 16 blocks), then hangs up.
    let (flaky, flaky_thread) = serving_peer(
        meta.info_hash,
        meta.info.piece_count(),
        meta.info.piece_length,
        data,
        5,
        keep,
    );
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![flaky],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    assert_eq!(flaky_thread.join().unwrap(), 5);
    // Wait until the leecher noticed the disconnect.
    let start = Instant::now();
    while l.status().peers_connected > 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(l.status().pieces_have, 0);
    let seeder = session();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    l.add_peers(vec![seeder.local_addr()]).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &["v.bin".into()]);
    // The 5 blocks from the flaky peer were kept, not fetched again.
    let st = l.status();
    assert!(
        st.downloaded <= meta.info.total_length(),
        "downloaded {}",
        st.downloaded
    );
}

/// Starts a seeder with a small torrent; returns what tests need.
fn seeder_fixture() -> (
    tempfile::TempDir,
    bittern_wire::Metainfo,
    bittern_engine::Session,
) {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "s.bin",
        &[("s.bin", 512 * 1024 + 1000)],
        64 * 1024,
        12,
    );
    let seeder = session();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    (src, meta, seeder)
}

/// Connects, sends interested, waits for unchoke.
fn interested_peer(addr: std::net::SocketAddr, meta: &bittern_wire::Metainfo) -> Wire {
    let (mut w, _) = Wire::connect(addr, meta.info_hash).unwrap();
    w.send(Message::Interested).unwrap();
    let start = Instant::now();
    loop {
        match w.recv() {
            Ok(Got::Other(s)) if s == "Unchoke" => return w,
            Ok(_) => {}
            Err(e) => panic!("no unchoke: {e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no unchoke");
    }
}

/// Waits for the torrent to report a protocol violation; returns it.
fn next_violation(t: &TorrentHandle, limit: Duration) -> Option<Violation> {
    let deadline = Instant::now() + limit;
    while let Ok(e) = t
        .events()
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if let TorrentEvent::PeerViolation { violation, .. } = e {
            return Some(violation);
        }
    }
    None
}

#[test]
fn protocol_violations_close_the_connection_and_the_seeder_keeps_serving() {
    let (src, meta, seeder) = seeder_fixture();
    let addr = seeder.local_addr();
    let torrent = seeder.torrents().pop().unwrap();
    let n = meta.info.piece_count() as u32;
    // What the fake peer does, and the violation the seeder must name.
    type Case = (
        &'static str,
        Box<dyn Fn(&mut Wire)>,
        Box<dyn Fn(&Violation) -> bool>,
    );
    let past_the_end = BlockRef {
        index: n,
        begin: 0,
        length: 16384,
    };
    let too_large = BlockRef {
        index: 0,
        begin: 0,
        length: 32768,
    };
    let past_the_piece = BlockRef {
        index: 0,
        begin: 60000,
        length: 16384,
    };
    let cases: Vec<Case> = vec![
        (
            "4 GiB length prefix",
            Box::new(|w| w.send_raw(&[0xff, 0xff, 0xff, 0xff, 7]).unwrap()),
            Box::new(|v| {
                matches!(
                    v,
                    Violation::Message(MessageError::FrameTooLong {
                        len: 0xffff_ffff,
                        ..
                    })
                )
            }),
        ),
        (
            "have out of range",
            Box::new(move |w| w.send(Message::Have(n + 5)).unwrap()),
            Box::new(move |v| *v == Violation::HaveOutOfRange(n + 5)),
        ),
        (
            "request past the end of the torrent",
            Box::new(move |w| w.send(Message::Request(past_the_end)).unwrap()),
            Box::new(move |v| *v == Violation::RequestOutOfRange(past_the_end)),
        ),
        (
            "request larger than 16 KiB",
            Box::new(move |w| w.send(Message::Request(too_large)).unwrap()),
            Box::new(move |v| *v == Violation::InvalidRequest(too_large)),
        ),
        (
            "request past the end of a piece",
            Box::new(move |w| w.send(Message::Request(past_the_piece)).unwrap()),
            Box::new(move |v| *v == Violation::InvalidRequest(past_the_piece)),
        ),
        (
            "unknown message id",
            Box::new(|w| w.send_raw(&[0, 0, 0, 1, 99]).unwrap()),
            Box::new(|v| *v == Violation::Message(MessageError::UnknownId(99))),
        ),
    ];
    // Piece sets must be the first message: a fresh connection each.
    assert_eq!(
        n, 9,
        "the fixture needs spare bits in its last bitfield byte"
    );
    let wrong_length = |got| Violation::Bitfield(BitfieldError::WrongLength { got, expected: 2 });
    let bitfields: [(&str, &[u8], Violation); 3] = [
        ("bitfield too long", &[0xff; 64], wrong_length(64)),
        ("bitfield too short", &[0xff], wrong_length(1)),
        (
            "bitfield with spare bits",
            &[0xff, 0xc0],
            Violation::Bitfield(BitfieldError::SpareBitsSet),
        ),
    ];
    for (name, bits, expected) in bitfields {
        let (mut w, _) = Wire::connect(addr, meta.info_hash).unwrap();
        w.send(Message::Bitfield(bits)).unwrap();
        let _ = w.send(Message::Interested);
        assert!(
            w.closed_within(Duration::from_secs(10)),
            "{name}: connection stayed open"
        );
        let got = next_violation(&torrent, Duration::from_secs(10));
        assert_eq!(got, Some(expected), "{name}");
    }
    for (name, act, expected) in cases {
        let mut w = interested_peer(addr, &meta);
        act(&mut w);
        // Messages after the violation must not matter.
        let _ = w.send(Message::Request(BlockRef {
            index: 0,
            begin: 0,
            length: 16384,
        }));
        assert!(
            w.closed_within(Duration::from_secs(10)),
            "{name}: connection stayed open"
        );
        let got = next_violation(&torrent, Duration::from_secs(10));
        assert!(
            got.as_ref().is_some_and(expected),
            "{name}: the seeder reported {got:?}"
        );
    }
    // The seeder is unharmed: an honest leecher still completes.
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![addr],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &["s.bin".into()]);
}

#[test]
fn wrong_info_hash_is_dropped_by_the_listener() {
    let (_src, _meta, seeder) = seeder_fixture();
    let other = bittern_wire::InfoHash([9; 20]);
    // The listener reads our handshake, finds no such torrent and closes
    // without answering.
    let r = Wire::connect(seeder.local_addr(), other);
    assert!(
        r.is_err(),
        "a handshake for an unknown torrent must not be answered"
    );
}

#[test]
fn valid_requests_are_served_with_the_right_bytes() {
    let (src, meta, seeder) = seeder_fixture();
    let data = std::fs::read(src.path().join("s.bin")).unwrap();
    let mut w = interested_peer(seeder.local_addr(), &meta);
    let last = meta.info.piece_count() as u32 - 1;
    w.send(Message::Request(BlockRef {
        index: 0,
        begin: 16384,
        length: 16384,
    }))
    .unwrap();
    w.send(Message::Request(BlockRef {
        index: last,
        begin: 0,
        length: 100,
    }))
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Got::Piece { index, begin, data } = w.recv().unwrap() {
            got.push((index, begin, data));
        }
    }
    assert_eq!(got[0], (0, 16384, data[16384..32768].to_vec()));
    let off = last as usize * 64 * 1024;
    assert_eq!(got[1], (last, 0, data[off..off + 100].to_vec()));
}

/// A peer may queue as many requests as we advertise (`reqq`) while it does
/// not read, and its cancels take effect however deep the queue: every
/// request not cancelled is answered once, in order, with the right bytes.
#[test]
fn a_deep_request_queue_with_cancels_is_served_exactly() {
    use std::os::fd::AsRawFd;
    let (src, meta, seeder) = seeder_fixture();
    let data = std::fs::read(src.path().join("s.bin")).unwrap();
    let plen = 64 * 1024usize;
    let (mut w, _) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    // A small receive window, so the seeder's writer blocks once its send
    // buffer is full.
    let small: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live int.
    let rc = unsafe {
        libc::setsockopt(
            w.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &small as *const _ as *const libc::c_void,
            std::mem::size_of_val(&small) as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    w.send(Message::Interested).unwrap();
    let mut reqq = None;
    let start = Instant::now();
    loop {
        match w.recv().unwrap() {
            Got::Extended { id: 0, payload } => {
                reqq = bittern_wire::ExtensionHandshake::decode(&payload)
                    .unwrap()
                    .reqq;
            }
            Got::Other(s) if s == "Unchoke" => break,
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no unchoke");
    }
    let small_requests = 30_000usize;
    let reqq = reqq.expect("the seeder advertises reqq") as usize;
    assert!(reqq >= 40_000, "reqq {reqq}: too shallow for this test");

    // Full blocks at distinct offsets, 2 MiB more than the largest send
    // buffer the kernel grows a socket to by itself, so the writer stalls
    // behind them.
    let tcp_wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    let wmem_max: usize = tcp_wmem.split_whitespace().nth(2).unwrap().parse().unwrap();
    let big = (wmem_max + (2 << 20)) / 16384;
    let big_ref = |k: usize| BlockRef {
        index: (k % 8) as u32,
        begin: (k / 8) as u32,
        length: 16384,
    };
    // Then single bytes at distinct places, a third of them cancelled.
    let small_ref = |k: usize| BlockRef {
        index: (k % 8) as u32,
        begin: (k / 8) as u32 + 20_000,
        length: 1,
    };
    let mut out = Vec::new();
    for k in 0..big {
        Message::Request(big_ref(k)).encode(&mut out);
    }
    for k in 0..small_requests {
        Message::Request(small_ref(k)).encode(&mut out);
    }
    for k in (0..small_requests).step_by(3) {
        Message::Cancel(small_ref(k)).encode(&mut out);
    }
    w.send_raw(&out).unwrap();
    // Let the seeder's reader take in everything before we read.
    std::thread::sleep(Duration::from_millis(500));

    let expect: Vec<BlockRef> = (0..big)
        .map(big_ref)
        .chain((0..small_requests).filter(|k| k % 3 != 0).map(small_ref))
        .collect();
    for (n, want) in expect.iter().enumerate() {
        let got = loop {
            match w.recv() {
                Ok(Got::Piece { index, begin, data }) => break (index, begin, data),
                Ok(_) => {}
                Err(e) => panic!("connection ended after {n} of {} blocks: {e}", expect.len()),
            }
        };
        let at = want.index as usize * plen + want.begin as usize;
        assert_eq!(
            (got.0, got.1, &got.2[..]),
            (want.index, want.begin, &data[at..at + want.length as usize]),
            "block {n}"
        );
    }
    // Nothing more: the cancelled requests are not served late.
    w.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while let Ok(got) = w.recv() {
        if let Got::Piece { index, begin, .. } = got {
            panic!("unexpected block {index}:{begin}");
        }
    }
}

/// A TCP connection from `source` (another loopback address) to `to`.
fn connect_from(source: std::net::Ipv4Addr, to: std::net::SocketAddr) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we create and hand to
    // TcpStream, which then owns it; the sockaddr structs live on the stack
    // for the duration of each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from(source).to_be();
        assert_eq!(
            libc::bind(
                fd,
                &a as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&a) as u32
            ),
            0
        );
        let std::net::SocketAddr::V4(to) = to else {
            panic!("ipv4 only")
        };
        let mut b: libc::sockaddr_in = std::mem::zeroed();
        b.sin_family = libc::AF_INET as libc::sa_family_t;
        b.sin_port = to.port().to_be();
        b.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        assert_eq!(
            libc::connect(
                fd,
                &b as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&b) as u32
            ),
            0
        );
        std::net::TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn one_host_cannot_fill_every_handshake_slot() {
    let (_src, meta, seeder) = seeder_fixture();
    let addr = seeder.local_addr();
    // 300 silent connections from one host: more than every slot.
    let silent: Vec<_> = (0..300)
        .map(|_| connect_from([127, 0, 0, 2].into(), addr))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Another host still gets its handshake answered at once.
    let mut s = connect_from([127, 0, 0, 3].into(), addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    use std::io::{Read, Write};
    s.write_all(
        &bittern_wire::Handshake::new(meta.info_hash, bittern_wire::PeerId::generate(b"-FK0001-"))
            .encode(),
    )
    .unwrap();
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).expect("the second host was shut out");
    assert_eq!(
        bittern_wire::Handshake::decode(&hs).unwrap().info_hash,
        meta.info_hash
    );
    drop(silent);
}

/// A seeder given by hand (no tracker to hand it out again) that restarts
/// mid-download is dialled again and the download completes.
#[test]
fn a_seeder_restarting_mid_download_is_dialled_again() {
    let src = tempfile::tempdir().unwrap();
    let total = 4 * 1024 * 1024u64;
    let meta = make_torrent(src.path(), "r.bin", &[("r.bin", total)], 64 * 1024, 57);
    let mut slow = config();
    slow.upload_limit = Some(512 * 1024);
    let first = Session::new(slow).unwrap();
    let s = first
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    let addr = first.local_addr();

    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![addr],
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let start = Instant::now();
    while l.status().pieces_have < 4 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            l.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    drop(first);

    // The same address again, now without a limit.
    let mut cfg = config();
    cfg.listen = addr;
    let second = Session::new(cfg).unwrap();
    let s2 = second
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s2, TorrentState::Seeding, Duration::from_secs(20));
    wait_state(&l, TorrentState::Seeding, Duration::from_secs(30));
    assert_same(src.path(), dst.path(), &[PathBuf::from("r.bin")]);
}
