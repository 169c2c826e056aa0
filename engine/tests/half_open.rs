//! The session-wide bound on outgoing connections still being opened
//! (`SessionConfig::max_half_open`). Loopback only: every address is in
//! 127.0.0.0/8.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bittern_engine::{Session, SessionConfig, TorrentOptions, TorrentState};

use crate::util::*;

/// A TCP port that never answers a connect: its listener, never accepting,
/// holds one queued connection at a backlog of 0, so the kernel drops
/// further SYNs without a reply and a dialler waits out its connect
/// timeout, as with a host gone dark or a firewall that drops.
struct BlackHole {
    listener: TcpListener,
    _queued: TcpStream,
}

impl BlackHole {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.79:0").unwrap();
        // SAFETY: listen(2) again on the listener's own socket only sets
        // its backlog.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        // The one connection the queue takes (a kernel that took none at
        // a backlog of 0 would leave this unanswered: fail, not hang).
        let queued =
            TcpStream::connect_timeout(&listener.local_addr().unwrap(), Duration::from_secs(2))
                .expect("a listener with a backlog of 0 queues one connection");
        BlackHole {
            listener,
            _queued: queued,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }
}

/// Eight addresses that never answer and a seeder, with room for four
/// connections being opened: never more than four dial at once (without
/// the bound all nine do), the four are reached, the seeder is dialled
/// when a slot frees and the download completes, and the count is back
/// at zero once the last dial has timed out.
#[test]
fn outgoing_connections_being_opened_stay_within_the_half_open_bound() {
    let _ = env_logger::builder().is_test(true).try_init();
    let src = tempdir();
    let meta = make_torrent(src.path(), "h.bin", &[("h.bin", 256 << 10)], 65536, 41);
    let (seeder, _seeding) = seeding(&meta, src.path());
    let holes: Vec<BlackHole> = (0..8).map(|_| BlackHole::new()).collect();
    // The premise: a connect to one is left unanswered, not refused.
    let e = TcpStream::connect_timeout(&holes[0].addr(), Duration::from_millis(300)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    let mut peers: Vec<SocketAddr> = holes.iter().map(BlackHole::addr).collect();
    peers.push(seeder.local_addr());

    let mut cfg = SessionConfig {
        max_half_open: 4,
        utp: false,
        ..config()
    };
    cfg.timing.connect_timeout = Duration::from_secs(2);
    let b = Session::new(cfg).unwrap();
    let dst = tempdir();
    let t = b
        .add_torrent(
            meta,
            dst.path(),
            TorrentOptions {
                peers,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let mut most = 0;
    loop {
        let s = t.status();
        let half_open = b.half_open();
        assert!(half_open <= 4, "{half_open} connections being opened");
        most = most.max(half_open);
        if s.state == TorrentState::Seeding {
            break;
        }
        assert!(Instant::now() < end, "not complete after 60 s: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(most, 4, "the bound was reached");
    assert_eq!(
        std::fs::read(dst.path().join("h.bin")).unwrap(),
        std::fs::read(src.path().join("h.bin")).unwrap()
    );
    // Every dial ends (timed out or open): none stays counted.
    let end = Instant::now() + Duration::from_secs(30);
    while b.half_open() > 0 {
        assert!(Instant::now() < end, "{} still counted", b.half_open());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two torrents under one bound of four. A has 40 addresses that never
/// answer and holds all four slots; B, added then with one live seeder,
/// waits for a slot. The first one A's dials free (at their 2 s connect
/// timeout) is B's, not A's again, so B completes long before A's second
/// round ends (2.0 s after A filled the bound, here). When freed slots
/// went to whichever torrent ticked first, A (ticking every 250 ms in step
/// with its dials) took them back round after round: B completed 6.5,
/// 10.5 and 19.5 s after, and this test failed.
#[test]
fn a_freed_slot_goes_to_the_torrent_waiting_for_one() {
    let _ = env_logger::builder().is_test(true).try_init();
    let src_a = tempdir();
    let meta_a = make_torrent(src_a.path(), "a.bin", &[("a.bin", 256 << 10)], 65536, 42);
    let src_b = tempdir();
    let meta_b = make_torrent(src_b.path(), "b.bin", &[("b.bin", 256 << 10)], 65536, 43);
    let (seeder, _seeding) = seeding(&meta_b, src_b.path());
    let holes: Vec<BlackHole> = (0..40).map(|_| BlackHole::new()).collect();

    let mut cfg = SessionConfig {
        max_half_open: 4,
        utp: false,
        ..config()
    };
    cfg.timing.connect_timeout = Duration::from_secs(2);
    let s = Session::new(cfg).unwrap();
    let (dst_a, dst_b) = (tempdir(), tempdir());
    let _a = s
        .add_torrent(
            meta_a,
            dst_a.path(),
            TorrentOptions {
                peers: holes.iter().map(BlackHole::addr).collect(),
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    while s.half_open() < 4 {
        assert!(Instant::now() < end, "A never filled the bound");
        std::thread::sleep(Duration::from_millis(5));
    }
    let full = Instant::now();
    // B comes half a second later: its own ticks (every second while it
    // waits for peers) then fall after A's (every 250 ms, in step with its
    // dials), the phase in which A took every freed slot back first.
    std::thread::sleep(Duration::from_millis(500));
    let b = s
        .add_torrent(
            meta_b,
            dst_b.path(),
            TorrentOptions {
                peers: vec![seeder.local_addr()],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_state(&b, TorrentState::Seeding, Duration::from_secs(60));
    let waited = full.elapsed();
    assert!(
        waited < Duration::from_millis(3500),
        "B completed {waited:?} after A filled the bound: A's dials took the freed slots"
    );
    assert_eq!(
        std::fs::read(dst_b.path().join("b.bin")).unwrap(),
        std::fs::read(src_b.path().join("b.bin")).unwrap()
    );
}
