//! uTP as a peer transport on 127.0.0.1: between two sessions, and with
//! transmission-cli 3.00 (libutp) both ways. TCP is off on bittern's side,
//! so the only way to connect is the listen port's UDP twin, and every
//! peer listed must say `utp`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bittern_engine::{
    SeedGoal, Session, SessionConfig, TorrentHandle, TorrentOptions, TorrentState,
};
use bittern_wire::Metainfo;

use crate::interop::{free_port, Logged};
use crate::util::*;

fn utp_only() -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    Session::new(SessionConfig {
        utp: true,
        tcp: false,
        ..config()
    })
    .unwrap()
}

/// A seeds, B dials A's listen address: with TCP off on both sides the
/// connection is uTP (both peer lists say so, incoming on A's side) and
/// the 3 MiB arrive byte-identical. B's 2 MiB/s download limit holds for a
/// uTP peer as for a TCP one (the transfer takes over a second; unlimited
/// it takes tens of milliseconds here).
#[test]
fn sessions_transfer_over_utp_only() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "u.bin", &[("u.bin", 3 << 20)], 65536, 9);
    let a = utp_only();
    let ta = a
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    let dst = tempfile::tempdir().unwrap();
    let b = utp_only();
    let tb = b
        .add_torrent(
            meta,
            dst.path(),
            TorrentOptions {
                peers: vec![a.local_addr()],
                // ~1.5 s, so that both peer lists are seen mid-transfer
                download_limit: Some(2 << 20),
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let (mut saw_utp, mut a_saw_utp) = (false, false);
    let started = Instant::now();
    let end = Instant::now() + Duration::from_secs(60);
    while tb.status().state != TorrentState::Seeding {
        assert!(Instant::now() < end, "{:?}", tb.status());
        let peers = tb.peers();
        if let Some(p) = peers.first() {
            assert!(p.utp, "B's peer is not over utp: {p:?}");
            saw_utp = true;
        }
        a_saw_utp |= ta.peers().iter().any(|p| p.utp && p.incoming);
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    assert_same(src.path(), dst.path(), &["u.bin".into()]);
    // 3 MiB at 2 MiB/s: 1.5 s, less the limiter's first burst.
    assert!(
        took >= Duration::from_millis(900),
        "rate limit not applied: {took:?}"
    );
    a_saw_utp |= ta.peers().iter().any(|p| p.utp && p.incoming);
    saw_utp |= tb.peers().iter().any(|p| p.utp && !p.incoming);
    assert!(saw_utp, "B never listed its peer");
    assert!(a_saw_utp, "A never listed an incoming utp peer");
}

// ---- transmission-cli 3.00 (libutp) ----

/// transmission-cli 3.00 on 127.0.0.1:`port` with uTP on (`utp-enabled`,
/// its default) and DHT, LPD, PEX and port forwarding off, encryption
/// tolerated, on `torrent` in `dir`. Transmission cannot turn TCP off;
/// bittern's side has TCP off, so every connection between the two is uTP.
fn transmission_utp(torrent: &Path, dir: &Path, port: u16, work: &Path) -> Logged {
    let opts = bittern_testkit::transmission::Options {
        utp: true,
        ..Default::default()
    };
    bittern_testkit::transmission::spawn(torrent, dir, port, work, opts)
}

fn transmission_says(t: &Logged, what: &str) -> bool {
    t.says(what)
}

fn have_transmission() -> bool {
    bittern_testkit::transmission::available()
}

/// 6 MiB of random data in `src` and its torrent by mktorrent (256 KiB pieces).
fn mktorrent(src: &Path, work: &Path) -> (Metainfo, PathBuf) {
    let file = src.join("tu.bin");
    bittern_testkit::random_file(&file, 6 << 20, 22);
    let torrent = work.join("tu.torrent");
    let bytes = bittern_testkit::transmission::mktorrent(&file, &torrent, 18);
    let meta = Metainfo::from_bytes(&bytes).unwrap();
    (meta, torrent)
}

/// Peers listed while a transfer ran: how many, how many over uTP.
#[derive(Debug, Default)]
struct Seen {
    peers: usize,
    utp: usize,
}

impl Seen {
    fn look(&mut self, t: &TorrentHandle) {
        for p in t.peers() {
            self.peers += 1;
            self.utp += usize::from(p.utp);
        }
    }
}

/// transmission-cli seeds; a uTP-only bittern dials its peer port and
/// downloads every byte. Fails if bittern's uTP cannot talk to libutp
/// (TCP is off on bittern's side, so there is no other way in).
#[test]
fn bittern_leeches_from_transmission_over_utp() {
    if !have_transmission() {
        return;
    }
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let (meta, torrent) = mktorrent(src.path(), work.path());
    let port = free_port();
    let tr = transmission_utp(&torrent, src.path(), port, work.path());
    let start = Instant::now();
    while !transmission_says(&tr, "Seeding") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "transmission-cli did not start seeding; {}",
            tr.tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let leecher = utp_only();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    // Transmission unchokes at its next 10 s choke round.
    let mut seen = Seen::default();
    let begun = Instant::now();
    while l.status().state != TorrentState::Stopped {
        let st = l.status();
        assert!(
            !matches!(st.state, TorrentState::Error(_))
                && begun.elapsed() < Duration::from_secs(120),
            "bittern did not finish: {st:?}; transmission-cli {}",
            tr.tail()
        );
        seen.look(&l);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(l.status().hash_failures, 0);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert!(seen.peers > 0 && seen.utp == seen.peers, "{seen:?}");
}

/// A uTP-only bittern seeds and dials a transmission-cli leecher's peer
/// port; Transmission accepts over libutp and downloads every byte.
#[test]
fn bittern_seeds_to_transmission_over_utp() {
    if !have_transmission() {
        return;
    }
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let (meta, torrent) = mktorrent(src.path(), work.path());
    let port = free_port();
    let tr = transmission_utp(&torrent, dst.path(), port, work.path());
    let seeder = utp_only();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        ..TorrentOptions::default()
    };
    let s = seeder.add_torrent(meta.clone(), src.path(), opts).unwrap();
    // transmission-cli asks at its first rechoke, 10 s after it starts.
    let start = Instant::now();
    let mut seen = Seen::default();
    while !transmission_says(&tr, "Seeding") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "transmission-cli did not finish; {}",
            tr.tail()
        );
        seen.look(&s);
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tr);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert!(seen.peers > 0 && seen.utp == seen.peers, "{seen:?}");
    // The session counts uploads at its ticks: the last blocks may show
    // a tick after transmission-cli has them.
    let counted = Instant::now();
    while s.status().uploaded < meta.info.total_length() {
        assert!(
            counted.elapsed() < Duration::from_secs(10),
            "{:?}",
            s.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- a peer that vanishes ----

/// Sends through a UDP socket until `cut`, then drops everything: a
/// peer whose host is gone (no FIN, no RESET, no ACK).
struct Cuttable {
    socket: std::sync::Arc<std::net::UdpSocket>,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl bittern_utp::Transmit for Cuttable {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> std::io::Result<()> {
        if !self.cut.load(std::sync::atomic::Ordering::Relaxed) {
            self.socket.send_to(datagram, to)?;
        }
        Ok(())
    }
}

/// Reads one whole peer message from `s` into `buf` (which keeps what
/// follows it) and returns its id (`None` for a keep-alive).
fn next_message(s: &mut bittern_utp::UtpStream, buf: &mut Vec<u8>) -> Option<u8> {
    use std::io::Read;
    loop {
        if buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() >= 4 + len {
                let id = (len > 0).then(|| buf[4]);
                buf.drain(..4 + len);
                return id;
            }
        }
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).expect("read from the seeder");
        assert!(n > 0, "the seeder closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A uTP peer that goes silent mid-transfer (its host gone: no FIN, no
/// RESET, no more ACKs) is dropped once our uTP connection gives up on it
/// (after `max_timeouts` retransmission timeouts: ~64 s by default, ~8 s
/// with the 3 set here), not at the engine's idle timeout (set to 10
/// minutes here). That failure is `TimedOut`, which the peer
/// reader took for its 500 ms read timeout and retried at once, spinning
/// a core in user time until the idle timeout (5 minutes by default) —
/// the CPU excursions of the 2-hour daemon soak, where partners are
/// SIGKILLed. Fails without the fix: the peer stays listed.
#[test]
fn a_utp_peer_that_vanishes_mid_transfer_is_dropped_when_utp_gives_up() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use bittern_wire::{BlockRef, Handshake, InfoHash, Message, PeerId};

    let _ = env_logger::builder().is_test(true).try_init();
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "v.bin", &[("v.bin", 4 << 20)], 65536, 13);
    let mut cfg = SessionConfig {
        utp: true,
        tcp: false,
        ..config()
    };
    cfg.timing.idle_timeout = Duration::from_secs(600);
    // Three retransmission timeouts (0.5 + 1 + 2 s, then the fourth of
    // 4 s fails it) instead of the default six (~64 s), to keep the test short.
    cfg.utp_conn.max_timeouts = 3;
    // And if the whole 2 MiB got acknowledged before the cut (a loaded
    // machine can delay the cut), nothing is in flight to time out: the
    // connection then fails at uTP's idle timeout, 15 s here (120 s by
    // default), with the same `TimedOut`.
    cfg.utp_conn.idle_timeout_us = 15_000_000;
    let a = Session::new(cfg).unwrap();
    let ta = a
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));

    // The vanishing peer: a multiplexer of our own on 127.0.0.1, fed by a
    // thread that stops passing datagrams on when cut.
    let socket = Arc::new(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    let mux = bittern_utp::Multiplexer::new(
        Cuttable {
            socket: socket.clone(),
            cut: cut.clone(),
        },
        Some(socket.local_addr().unwrap()),
        bittern_utp::MuxConfig {
            accept_incoming: false,
            ..bittern_utp::MuxConfig::default()
        },
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (mux, socket, cut, stop) = (mux.clone(), socket.clone(), cut.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    if !cut.load(Ordering::Relaxed) {
                        mux.handle_datagram(from, &buf[..n]);
                        mux.flush();
                    }
                }
            }
        })
    };
    let mut s = mux
        .connect(a.local_addr(), Duration::from_secs(10))
        .expect("utp connect to the seeder");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let ours = Handshake::new(meta.info_hash, PeerId::generate(b"-XX0001-"));
    s.write_all(&ours.encode()).unwrap();
    let mut theirs = [0u8; 68];
    std::io::Read::read_exact(&mut s, &mut theirs).unwrap();
    let theirs = Handshake::decode(&theirs).unwrap();
    assert_eq!(theirs.info_hash, InfoHash(meta.info_hash.0));
    let mut out = Vec::new();
    Message::Interested.encode(&mut out);
    s.write_all(&out).unwrap();
    let mut buf = Vec::new();
    // Until unchoked (id 1).
    while next_message(&mut s, &mut buf) != Some(1) {}
    // Ask for 2 MiB, take the first block, and vanish with the rest in
    // flight: the seeder's uTP side retransmits into the void.
    out.clear();
    for i in 0..128u32 {
        Message::Request(BlockRef {
            index: i / 4,
            begin: (i % 4) * 16384,
            length: 16384,
        })
        .encode(&mut out);
    }
    s.write_all(&out).unwrap();
    while next_message(&mut s, &mut buf) != Some(7) {}
    cut.store(true, Ordering::Relaxed);
    let cut_at = Instant::now();
    // The peer list is published with the status, once a second.
    let listed = Instant::now() + Duration::from_secs(10);
    while ta.peers().len() != 1 {
        assert!(
            Instant::now() < listed,
            "peer never listed: {:?}",
            ta.peers()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // uTP gives up after ~8 s (more on a loaded machine); the peer must
    // be gone well before the 10-minute idle timeout.
    let limit = Duration::from_secs(90);
    let gone = loop {
        if ta.peers().is_empty() {
            break true;
        }
        if cut_at.elapsed() > limit {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = cut_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    feeder.join().unwrap();
    assert!(
        gone,
        "a vanished utp peer still listed {took:?} after it went silent: {:?}",
        ta.peers()
    );
    eprintln!("vanished utp peer dropped after {took:?}");
}

/// A peer address whose TCP and UDP ports are both closed (a partner long
/// gone, handed out again by the DHT or PEX) costs its dial almost nothing:
/// TCP is refused by a reset, and the uTP dial after it is refused by the
/// ICMP "port unreachable" its SYN draws, instead of holding a peer thread
/// for the whole uTP connect timeout (60 s here; without the ICMP handling
/// the test fails with 20 dials waiting). A live uTP-only peer
/// listed after twenty dead ones shows the same dials ran, TCP first then
/// uTP. Loopback only: every address is 127.0.0.1.
#[test]
fn dials_to_closed_ports_end_at_once_rather_than_at_the_utp_timeout() {
    let _ = env_logger::builder().is_test(true).try_init();
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "d.bin", &[("d.bin", 1 << 20)], 65536, 21);
    let seed = utp_only();
    let ts = seed
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ts, TorrentState::Seeding, Duration::from_secs(20));
    // Ports that were just bound for TCP and UDP, now closed, on an
    // address of lo no other test binds (a test's socket taking one of
    // these ports on 127.0.0.1 and ignoring uTP would stall the dial).
    // All held until the last is taken, so that no port comes twice.
    let held: Vec<_> = (0..20)
        .map(|_| std::net::TcpListener::bind("127.0.0.77:0").unwrap())
        .collect();
    let mut peers: Vec<SocketAddr> = held.iter().map(|l| l.local_addr().unwrap()).collect();
    drop(held);
    for a in &peers {
        // The UDP twin too, where it is free (then both are closed).
        drop(std::net::UdpSocket::bind(a));
    }
    peers.push(seed.local_addr());
    let mut cfg = SessionConfig {
        utp: true,
        tcp: true,
        utp_connect_timeout: Duration::from_secs(60),
        ..config()
    };
    cfg.timing.connect_timeout = Duration::from_secs(60);
    // SYN resends 1, 2, 4, 8 and 16 s apart: a connect nobody answers
    // gives up only at the 60 s timeout (the default two resends, ~7 s).
    cfg.utp_conn.syn_resends = 5;
    let b = Session::new(cfg).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let tb = b
        .add_torrent(
            meta,
            dst.path(),
            TorrentOptions {
                peers,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(30));
    // Every dial has ended well inside the timeout: the dead ones refused.
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = tb.status();
        if s.peers_connecting == 0 {
            // The seed, unless the two seeds have parted already.
            assert!(s.peers_connected <= 1, "{s:?}");
            assert!(s.peers_known >= 21, "{s:?}");
            break;
        }
        assert!(
            Instant::now() < end,
            "{} dials still waiting 20 s in: {s:?}",
            s.peers_connecting
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read(dst.path().join("d.bin")).unwrap(),
        std::fs::read(src.path().join("d.bin")).unwrap()
    );
}
