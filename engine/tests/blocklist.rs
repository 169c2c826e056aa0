//! The session's IP filter (blocklist): a blocked peer is never dialled,
//! over TCP or uTP, whatever the source that named it, while an unblocked
//! one still serves; an incoming connection from a blocked address is
//! closed before its handshake; the last incoming peer is recorded.
//!
//! All on loopback: the blocked "peer" is a TCP listener and a UDP socket
//! at 127.0.0.2 that only count what reaches them.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_engine::{IpFilter, TorrentOptions, TorrentState};

use crate::util::*;

/// A listener at 127.0.0.2 on one port, TCP and UDP, counting what
/// arrives until dropped.
struct Trap {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Trap {
    fn new() -> Trap {
        let tcp = TcpListener::bind("127.0.0.2:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        let udp = UdpSocket::bind(addr).unwrap();
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let (hits, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                if tcp.accept().is_ok() {
                    h.fetch_add(1, Ordering::SeqCst);
                }
                if udp.recv_from(&mut buf).is_ok() {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Trap { addr, hits, stop }
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn blocked_peers_are_never_dialled_and_the_others_still_serve() {
    let dir = tempdir();
    let meta = make_torrent(dir.path(), "f.bin", &[("f.bin", 600_000)], 32_768, 41);
    let (seeder, _t) = seeding(&meta, dir.path());
    let trap = Trap::new();

    // The control: without a filter the same leecher does dial the trap.
    let open = session();
    let dst0 = tempdir();
    let t0 = open
        .add_torrent(
            meta.clone(),
            dst0.path(),
            TorrentOptions {
                peers: vec![trap.addr],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let start = Instant::now();
    while trap.hits.load(Ordering::SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the trap is dialled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.remove();
    drop(open);
    std::thread::sleep(Duration::from_millis(300));
    trap.hits.store(0, Ordering::SeqCst);

    let leech = session();
    let parsed = IpFilter::parse("test:127.0.0.2-127.0.0.2\n", 100);
    leech.set_ip_filter(parsed.filter);
    assert!(leech.ip_filter().contains(ip("127.0.0.2")));
    let dst = tempdir();
    // The trap first, then the real seeder; more of the trap through
    // add_peers (the path of DHT, LSD and magnet peers).
    let t = leech
        .add_torrent(
            meta.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![trap.addr, seeder.local_addr()],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    t.add_peers(vec![trap.addr]).unwrap();
    wait_state(&t, TorrentState::Seeding, Duration::from_secs(60));
    assert_same(dir.path(), dst.path(), &["f.bin".into()]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        trap.hits.load(Ordering::SeqCst),
        0,
        "nothing, TCP or UDP, reached the blocked address"
    );
}

#[test]
fn incoming_connections_from_blocked_addresses_are_closed_unread() {
    let dir = tempdir();
    let meta = make_torrent(dir.path(), "g.bin", &[("g.bin", 100_000)], 32_768, 42);
    let (seeder, _t) = seeding(&meta, dir.path());
    assert_eq!(seeder.last_incoming(), None);
    // Block 127.0.0.1 itself: our handshake below is not answered.
    seeder.set_ip_filter(IpFilter::parse("127.0.0.1\n", 10).filter);
    let handshake = bittern_wire::Handshake::new(meta.info_hash, bittern_wire::PeerId([3; 20]));
    let mut c = std::net::TcpStream::connect(seeder.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut c, &handshake.encode()).unwrap();
    let mut buf = [0u8; 68];
    let n = c.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a handshake");
    assert_eq!(seeder.last_incoming(), None);

    // Unblocked: the same handshake is answered and recorded.
    seeder.set_ip_filter(IpFilter::new());
    let mut c = std::net::TcpStream::connect(seeder.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut c, &handshake.encode()).unwrap();
    c.read_exact(&mut buf).expect("a handshake back");
    assert_eq!(&buf[28..48], &meta.info_hash.0[..]);
    let seen = seeder.last_incoming().expect("recorded");
    assert_eq!(seen.from, c.local_addr().unwrap());
    assert!(!seen.utp);
}

#[test]
fn peers_connected_before_their_address_is_blocked_are_dropped() {
    let dir = tempdir();
    let meta = make_torrent(dir.path(), "h.bin", &[("h.bin", 2_000_000)], 32_768, 43);
    let seeder = bittern_engine::Session::new(bittern_engine::SessionConfig {
        upload_limit: Some(50_000),
        ..config()
    })
    .unwrap();
    let s = seeder
        .add_torrent(meta.clone(), dir.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    let leech = session();
    let dst = tempdir();
    let t = leech
        .add_torrent(
            meta.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![seeder.local_addr()],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let start = Instant::now();
    while t.status().peers_connected == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The seeder blocks 127.0.0.1: the connection is closed, and the
    // leecher's new dials are refused.
    seeder.set_ip_filter(IpFilter::parse("127.0.0.1", 1).filter);
    let start = Instant::now();
    while s.status().peers_connected > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the peer stays connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.status().peers_connected, 0, "nobody reconnected");
    assert!(t.status().progress < 1.0, "the download stopped short");
}
