//! LSD (BEP 14) on a real multicast socket, ONLY inside a private network
//! namespace holding nothing but `lo`: nothing multicast may ever leave
//! the machine's test sandbox.
//!
//! Each test re-executes this test binary under `unshare --net` (root; CI
//! runs as root) through `bittern_testkit::netns::run_inside`. Inside,
//! before anything is sent, that asserts that the process is in a network
//! namespace other than the one the test started in whose only interface
//! is `lo` and brings `lo` up; [`route_multicast_to_lo`] then routes
//! 239.0.0.0/8 to it with source 127.0.0.1 (the recipe from the transports
//! notes that also works for Transmission).
//! The IPv6 tests add `ip link set lo multicast on` and `ip -6 route add
//! local ff15::/16 dev lo table local`, with which Linux loops datagrams
//! for `[ff15::efc0:988f]` back to the sockets joined on `lo` (without the
//! `local` route they are dropped as unroutable).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use bittern_engine::{Lsd, LsdCommand, LsdConfig, LsdEvent};
use bittern_wire::lsd::{LsdAnnounce, LSD_GROUP_V4};
use bittern_wire::InfoHash;
use crossbeam_channel::{bounded, Receiver};

/// Inside the namespace (`bittern_testkit::netns::run_inside` checked that
/// it is private, holds only `lo` and brought `lo` up): routes
/// 239.0.0.0/8 to `lo` with source 127.0.0.1. Must run before any socket
/// is opened.
fn route_multicast_to_lo() {
    let args = [
        "route",
        "add",
        "239.0.0.0/8",
        "dev",
        "lo",
        "src",
        "127.0.0.1",
    ];
    let s = Command::new("ip").args(args).status().unwrap();
    assert!(s.success(), "ip {args:?}");
}

fn config(listen_port: u16, lsd_port: u16) -> LsdConfig {
    LsdConfig {
        lsd_port,
        min_packet_interval: Duration::from_millis(300),
        reannounce: Duration::from_millis(900),
        ..LsdConfig::new(Ipv4Addr::LOCALHOST, listen_port)
    }
}

fn collect(rx: &Receiver<LsdEvent>, until: Instant) -> Vec<(InfoHash, SocketAddr)> {
    let mut out = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(LsdEvent::Peer { info_hash, addr }) => out.push((info_hash, addr)),
            Err(_) => break,
        }
    }
    out
}

#[test]
fn two_components_find_each_other() {
    const NAME: &str = "lsd::two_components_find_each_other";
    if !bittern_testkit::netns::run_inside(NAME) {
        return;
    }
    route_multicast_to_lo();
    let shared = InfoHash([0x11; 20]);
    let secret = InfoHash([0x22; 20]);
    let lsd_port = 6771;
    let (atx, arx) = bounded(64);
    let (btx, brx) = bounded(64);
    let a = Lsd::spawn(config(1111, lsd_port), atx).unwrap();
    let b = Lsd::spawn(config(2222, lsd_port), btx).unwrap();
    a.send(LsdCommand::Add {
        info_hash: shared,
        private: false,
    })
    .unwrap();
    a.send(LsdCommand::Add {
        info_hash: secret,
        private: true,
    })
    .unwrap();
    b.send(LsdCommand::Add {
        info_hash: shared,
        private: false,
    })
    .unwrap();
    b.send(LsdCommand::Add {
        info_hash: secret,
        private: false,
    })
    .unwrap();
    let until = Instant::now() + Duration::from_millis(2500);
    let (ta, tb) = std::thread::scope(|s| {
        let ta = s.spawn(|| collect(&arx, until));
        let tb = s.spawn(|| collect(&brx, until));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let from_a: SocketAddr = "127.0.0.1:1111".parse().unwrap();
    let from_b: SocketAddr = "127.0.0.1:2222".parse().unwrap();
    // B heard A's public torrent, never A's private one.
    assert!(tb.contains(&(shared, from_a)), "{tb:?}");
    assert!(
        tb.iter().all(|&(h, addr)| h == shared && addr == from_a),
        "{tb:?}"
    );
    // A heard B for the shared torrent; B announced `secret` publicly, but
    // A has it private: never reported. Its own announces never come back.
    assert!(ta.contains(&(shared, from_b)), "{ta:?}");
    assert!(
        ta.iter().all(|&(h, addr)| h == shared && addr == from_b),
        "{ta:?}"
    );
    // Reannounced every 0.9 s: 2.5 s gives 2 or 3 each, not a flood.
    assert!((2..=4).contains(&tb.len()), "{tb:?}");
    assert!((2..=4).contains(&ta.len()), "{ta:?}");
    a.join();
    b.join();
}

#[test]
fn announces_are_libtorrent_format_and_rate_limited() {
    const NAME: &str = "lsd::announces_are_libtorrent_format_and_rate_limited";
    if !bittern_testkit::netns::run_inside(NAME) {
        return;
    }
    route_multicast_to_lo();
    // A listener on the group port (SO_REUSEADDR, as the component's)
    // sees every datagram sent.
    let lsd_port = 6771;
    let sniff = reuse_socket(lsd_port);
    let (tx, _rx) = bounded(64);
    let hashes: Vec<InfoHash> = (0..40u8).map(|i| InfoHash([i; 20])).collect();
    let c = LsdConfig {
        min_packet_interval: Duration::from_millis(400),
        reannounce: Duration::from_secs(60),
        ..config(3333, lsd_port)
    };
    let lsd = Lsd::spawn(c, tx).unwrap();
    for &h in &hashes {
        lsd.send(LsdCommand::Add {
            info_hash: h,
            private: false,
        })
        .unwrap();
    }
    let mut grams: Vec<(Instant, Vec<u8>)> = Vec::new();
    let until = Instant::now() + Duration::from_millis(2000);
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok((n, from)) = sniff.recv_from(&mut buf) {
            assert_eq!(from.ip(), Ipv4Addr::LOCALHOST, "source is the interface");
            grams.push((Instant::now(), buf[..n].to_vec()));
        }
    }
    lsd.join();
    // 40 hashes need two datagrams (26 fit in 1400 bytes), sent 0.4 s
    // apart, then nothing until the 60 s reannounce.
    assert_eq!(
        grams.len(),
        2,
        "{:?}",
        grams.iter().map(|g| g.1.len()).collect::<Vec<_>>()
    );
    assert!(grams[1].0 - grams[0].0 >= Duration::from_millis(380));
    let mut seen = Vec::new();
    for (_, g) in &grams {
        assert!(g.len() <= 1400);
        let text = String::from_utf8(g.clone()).unwrap();
        assert!(
            text.starts_with(
                "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 3333\r\nInfohash: "
            ),
            "{text:?}"
        );
        let a = LsdAnnounce::parse(g).unwrap();
        assert_eq!(a.cookie.as_deref(), Some(lsd_cookie_hint(&text)));
        assert!(text.ends_with("\r\n\r\n\r\n"));
        seen.extend(a.info_hashes);
    }
    seen.sort();
    assert_eq!(seen, hashes);
}

/// The cookie line's value (checks the exact `cookie: ` spelling).
fn lsd_cookie_hint(text: &str) -> &str {
    let at = text.find("\r\ncookie: ").expect("a lower-case cookie line") + 10;
    let end = text[at..].find("\r\n").unwrap() + at;
    &text[at..end]
}

/// A socket on the group port with SO_REUSEADDR, joined on 127.0.0.1.
fn reuse_socket(port: u16) -> UdpSocket {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket/setsockopt/bind calls on a fresh fd we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        let r = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        let s = UdpSocket::from_raw_fd(fd);
        s.join_multicast_v4(&LSD_GROUP_V4, &Ipv4Addr::LOCALHOST)
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    }
}

/// libtorrent (python3-libtorrent, `enable_lsd`) seeding a torrent in the
/// same namespace: we hear its announce, and it hears ours and dials the
/// port we announced with a handshake for that torrent.
const LT_LSD: &str = r#"
import libtorrent as lt, os, sys, tempfile, time
d = tempfile.mkdtemp()
p = os.path.join(d, "lsd.bin")
open(p, "wb").write(os.urandom(100000))
fs = lt.file_storage(); lt.add_files(fs, p)
ct = lt.create_torrent(fs, 16384); lt.set_piece_hashes(ct, d)
ti = lt.torrent_info(lt.bencode(ct.generate()))
s = lt.session({"listen_interfaces": "127.0.0.1:36941", "enable_dht": False,
    "enable_lsd": True, "enable_upnp": False, "enable_natpmp": False,
    "enable_outgoing_utp": False, "enable_incoming_utp": False,
    "local_service_announce_interval": 1,
    "alert_mask": int(lt.alert.category_t.all_categories)})
atp = lt.add_torrent_params(); atp.ti = ti; atp.save_path = d
atp.flags = lt.torrent_flags.seed_mode | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_pex
h = s.add_torrent(atp)
print("IH", str(ti.info_hash()), flush=True)
t0 = time.monotonic()
while time.monotonic() - t0 < 20:
    for a in s.pop_alerts():
        m = a.message()
        if "local service discovery" in m or "lsd" in type(a).__name__:
            print("LT", m, flush=True)
    time.sleep(0.05)
"#;

#[test]
fn libtorrent_finds_us_and_we_find_it() {
    const NAME: &str = "lsd::libtorrent_finds_us_and_we_find_it";
    let have = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .status()
        .is_ok_and(|s| s.success());
    if !bittern_testkit::require("python3-libtorrent", have)
        || !bittern_testkit::netns::run_inside(NAME)
    {
        return;
    }
    route_multicast_to_lo();
    use std::io::{BufRead, BufReader, Read};
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", LT_LSD])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let hex = first
        .strip_prefix("IH ")
        .unwrap_or_else(|| panic!("{first}"));
    let ih = InfoHash::from_hex(hex).unwrap();
    // What libtorrent reports hearing, read off its stdout.
    let (ltx, lrx) = bounded(1024);
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let _ = ltx.send(l);
        }
    });
    // Our BitTorrent "listen port": libtorrent should dial it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = bounded(64);
    let lsd = Lsd::spawn(config(port, 6771), tx).unwrap();
    lsd.send(LsdCommand::Add {
        info_hash: ih,
        private: false,
    })
    .unwrap();
    // We find libtorrent.
    let until = Instant::now() + Duration::from_secs(10);
    let heard = collect_until(&rx, until, |&(h, a)| {
        h == ih && a == "127.0.0.1:36941".parse().unwrap()
    });
    assert!(heard, "no LSD announce from libtorrent");
    // libtorrent finds us: in this namespace, with no tracker, DHT or PEX,
    // LSD is the only way it can learn the port; it dials it with a
    // handshake for the torrent.
    listener.set_nonblocking(true).unwrap();
    let mut conn = None;
    while Instant::now() < until && conn.is_none() {
        match listener.accept() {
            Ok((c, _)) => conn = Some(c),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let lt_log: Vec<String> = lrx.try_iter().collect();
    let mut conn = conn
        .unwrap_or_else(|| panic!("libtorrent never dialled the port we announced: {lt_log:?}"));
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut hs = [0u8; 48];
    conn.read_exact(&mut hs).unwrap();
    assert_eq!(&hs[..20], b"\x13BitTorrent protocol");
    assert_eq!(
        &hs[28..48],
        ih.as_bytes(),
        "handshake for the announced torrent"
    );
    lsd.join();
    let _ = py.kill();
    let _ = py.wait();
}

fn collect_until(
    rx: &Receiver<LsdEvent>,
    until: Instant,
    want: impl Fn(&(InfoHash, SocketAddr)) -> bool,
) -> bool {
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(LsdEvent::Peer { info_hash, addr }) if want(&(info_hash, addr)) => return true,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    false
}

/// The whole engine: a session with `--lsd` and no other peer source (no
/// trackers, no `--peer`) finds a libtorrent seeder announcing over LSD
/// and downloads from it.
///
/// Nothing multicast leaves the namespace: `netns::run_inside` asserted,
/// before any socket was opened, that this process runs in a network
/// namespace other than the test's own whose only interface is `lo`; a
/// namespace with no other interface has no path to the host or any other
/// namespace, and both sides also send with TTL 1 on 127.0.0.1. The check
/// is repeated at the end: still `lo` alone.
#[test]
fn session_finds_a_libtorrent_peer_by_lsd_alone() {
    use crate::interop::{have_libtorrent, wait_for, write_torrent};
    use crate::util::tempdir;
    use crate::util::{assert_same, make_torrent};
    use bittern_engine::{SeedGoal, Session, TorrentOptions, TorrentState};

    const NAME: &str = "lsd::session_finds_a_libtorrent_peer_by_lsd_alone";
    if !bittern_testkit::netns::run_inside(NAME) {
        return;
    }
    route_multicast_to_lo();
    if !have_libtorrent() {
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "by_lsd.bin",
        &[("by_lsd.bin", 3_000_000)],
        64 << 10,
        31,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let mut cmd = bittern_testkit::libtorrent::seed_cmd(&torrent, src.path());
    cmd.env("BITTERN_LT_LSD", "1");
    // libtorrent never dials: bittern must find it by LSD and connect.
    cmd.env("BITTERN_LT_NO_OUTGOING", "1");
    let (lt, lt_port) = bittern_testkit::libtorrent::spawn_with_port(
        "libtorrent seeder (lsd)",
        cmd,
        work.path().join("lt_seed.log"),
    );

    let cfg = bittern_engine::SessionConfig {
        lsd: Some(LsdConfig {
            min_packet_interval: Duration::from_millis(200),
            reannounce: Duration::from_secs(1),
            ..LsdConfig::new(Ipv4Addr::LOCALHOST, 0)
        }),
        ..crate::util::config()
    };
    assert!(!cfg.announce, "no trackers");
    let session = Session::new(cfg).unwrap();
    let opts = TorrentOptions {
        seed_goal: SeedGoal::Forever,
        ..TorrentOptions::default()
    };
    let t = session.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    // Note who we talked to while downloading.
    let start = Instant::now();
    let mut seen = Vec::new();
    while t.status().state != TorrentState::Seeding {
        for p in t.peers() {
            if !seen.contains(&(p.addr, p.incoming)) {
                seen.push((p.addr, p.incoming));
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            lt.fail(&format!("not complete: {:?}, peers {seen:?}", t.status()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for(&t, TorrentState::Seeding, Duration::from_secs(1), &lt);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert_eq!(t.status().hash_failures, 0);
    // The data came over the network from the one other client in the
    // namespace, which nobody named to us: no trackers, no peers given.
    let st = t.status();
    assert!(st.downloaded >= meta.info.total_length(), "{st:?}");
    // libtorrent cannot dial, so we dialled it: every connection seen
    // while polling (a fast download may finish between two polls) is
    // ours, to its listen port, which only its LSD announce told us.
    let lt_addr = SocketAddr::from(([127, 0, 0, 1], lt_port));
    assert!(
        seen.iter().all(|(a, incoming)| !*incoming && *a == lt_addr),
        "only the LSD peer: {seen:?}"
    );
    assert!(st.peers_known >= 1, "{st:?}");
    eprintln!(
        "complete by lsd in {:?}; peers known {}, connections seen {seen:?}",
        start.elapsed(),
        st.peers_known
    );
    drop(session);
    bittern_testkit::netns::assert_only_lo("still nothing but lo");
}

/// Transmission 3.00 (upper-case info hash in its announces, its own
/// header spellings) seeding with LPD on: a bittern session given no
/// tracker and no peer finds it by LSD alone and downloads everything.
/// Transmission never dials a loopback peer, so bittern must hear its
/// announce and dial it. Same namespace rule as above.
#[test]
fn session_finds_a_transmission_peer_by_lsd_alone() {
    use crate::interop::{free_port, transmission_seeder_with, write_torrent, TRANSMISSION};
    use crate::util::tempdir;
    use crate::util::{assert_same, make_torrent};
    use bittern_engine::{SeedGoal, Session, TorrentOptions, TorrentState};

    const NAME: &str = "lsd::session_finds_a_transmission_peer_by_lsd_alone";
    if !bittern_testkit::netns::run_inside(NAME) {
        return;
    }
    route_multicast_to_lo();
    if !bittern_testkit::require(
        "transmission-cli (Debian transmission-cli)",
        std::path::Path::new(TRANSMISSION).exists(),
    ) {
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "by_lpd.bin",
        &[("by_lpd.bin", 3_000_000)],
        64 << 10,
        32,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let tr_port = free_port();

    // bittern listens first: a Transmission 3.00 seed announces once,
    // about 5 s after it starts, then only every 8 minutes.
    let cfg = bittern_engine::SessionConfig {
        lsd: Some(LsdConfig {
            min_packet_interval: Duration::from_millis(200),
            reannounce: Duration::from_secs(1),
            ..LsdConfig::new(Ipv4Addr::LOCALHOST, 0)
        }),
        ..crate::util::config()
    };
    assert!(!cfg.announce, "no trackers");
    let session = Session::new(cfg).unwrap();
    let opts = TorrentOptions {
        seed_goal: SeedGoal::Forever,
        ..TorrentOptions::default()
    };
    let t = session.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let start = Instant::now();
    let tr = transmission_seeder_with(&torrent, src.path(), tr_port, work.path(), true);
    let mut seen = Vec::new();
    let tr_addr = SocketAddr::from(([127, 0, 0, 1], tr_port));
    let mut dialled = false;
    while t.status().state != TorrentState::Seeding {
        for p in t.peers() {
            dialled |= !p.incoming && p.addr == tr_addr;
            if !seen.contains(&(p.addr, p.incoming)) {
                seen.push((p.addr, p.incoming));
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "not complete: {:?}, peers {seen:?}; transmission-cli {}",
            t.status(),
            tr.tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    let st = t.status();
    assert_eq!(st.hash_failures, 0);
    assert!(st.downloaded >= meta.info.total_length(), "{st:?}");
    // Nobody named Transmission to us: its address is known from its
    // LSD announce (upper-case hex) only.
    assert!(st.peers_known >= 1, "bittern heard no LSD announce: {st:?}");
    // Transmission never dials a 127.0.0.0/8 peer (a "martian" address to
    // it), so every connection is ours, to the port only its announce gave.
    assert!(
        dialled && seen.iter().all(|(a, incoming)| !*incoming && *a == tr_addr),
        "we dialled transmission-cli: {seen:?}"
    );
    eprintln!(
        "complete by lsd from transmission-cli in {:?}; peers known {}, dialled it {dialled}, \
         connections seen {seen:?}",
        start.elapsed(),
        st.peers_known
    );
    drop(session);
    drop(tr);
    bittern_testkit::netns::assert_only_lo("still nothing but lo");
}

// ---- IPv6 (`[ff15::efc0:988f]:6771`) ------------------------------------

/// Inside the namespace (after `netns::run_inside`): lets `lo` carry
/// IPv6 multicast (the multicast flag, and a `local` route for the LSD
/// group's scope in the local table, which loops the group's datagrams
/// back to the sockets joined on `lo`). False, with a message, where the
/// namespace has no IPv6 loopback.
fn ipv6_multicast_on_lo() -> bool {
    let have = UdpSocket::bind("[::1]:0").is_ok();
    if !bittern_testkit::require("an IPv6 loopback (::1) in the namespace", have) {
        return false;
    }
    for args in [
        &["link", "set", "lo", "multicast", "on"][..],
        &[
            "-6",
            "route",
            "add",
            "local",
            "ff15::/16",
            "dev",
            "lo",
            "table",
            "local",
        ][..],
    ] {
        let s = Command::new("ip").args(args).status().unwrap();
        assert!(s.success(), "ip {args:?}");
    }
    true
}

/// The index of `lo`.
fn lo_index() -> u32 {
    // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    assert!(i > 0);
    i
}

/// An IPv6 socket on the group port (SO_REUSEADDR, IPv6 only), joined to
/// the IPv6 group on `lo`.
fn reuse_socket_v6(port: u16) -> UdpSocket {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket/setsockopt/bind calls on a fresh fd we own.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        for (level, name) in [
            (libc::SOL_SOCKET, libc::SO_REUSEADDR),
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
        ] {
            libc::setsockopt(fd, level, name, (&one as *const libc::c_int).cast(), 4);
        }
        let addr = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: port.to_be(),
            sin6_flowinfo: 0,
            sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
            sin6_scope_id: 0,
        };
        let r = libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        let s = UdpSocket::from_raw_fd(fd);
        s.join_multicast_v6(&bittern_wire::lsd::LSD_GROUP_V6, lo_index())
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    }
}

/// Two components with the IPv6 group on: each hears the other at
/// `[::1]`, from announces to `[ff15::efc0:988f]:6771` in libtorrent's
/// format with the bracketed `Host` header.
#[test]
fn two_components_find_each_other_over_ipv6() {
    const NAME: &str = "lsd::two_components_find_each_other_over_ipv6";
    if !bittern_testkit::netns::run_inside(NAME) {
        return;
    }
    // No route for 239.0.0.0/8 here: the IPv4 group cannot be joined, and
    // LSD must still run on the IPv6 one.
    if !ipv6_multicast_on_lo() {
        return;
    }
    let shared = InfoHash([0x33; 20]);
    let lsd_port = 6771;
    let sniff = reuse_socket_v6(lsd_port);
    let v6 = |listen_port| LsdConfig {
        interface_v6: Some(lo_index()),
        ..config(listen_port, lsd_port)
    };
    let (atx, arx) = bounded(64);
    let (btx, brx) = bounded(64);
    let a = Lsd::spawn(v6(1111), atx).unwrap();
    let b = Lsd::spawn(v6(2222), btx).unwrap();
    assert!(a.on_ipv6() && b.on_ipv6());
    for l in [&a, &b] {
        l.send(LsdCommand::Add {
            info_hash: shared,
            private: false,
        })
        .unwrap();
    }
    let until = Instant::now() + Duration::from_millis(2500);
    let mut grams = Vec::new();
    let (ta, tb) = std::thread::scope(|s| {
        let ta = s.spawn(|| collect(&arx, until));
        let tb = s.spawn(|| collect(&brx, until));
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            if let Ok((n, from)) = sniff.recv_from(&mut buf) {
                grams.push((from, String::from_utf8_lossy(&buf[..n]).into_owned()));
            }
        }
        (ta.join().unwrap(), tb.join().unwrap())
    });
    a.join();
    b.join();
    let from_a: SocketAddr = "[::1]:1111".parse().unwrap();
    let from_b: SocketAddr = "[::1]:2222".parse().unwrap();
    assert!(tb.contains(&(shared, from_a)), "{tb:?}");
    assert!(ta.contains(&(shared, from_b)), "{ta:?}");
    let a_text = grams
        .iter()
        .find(|(from, t)| from.is_ipv6() && t.contains("\r\nPort: 1111\r\n"))
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("no ipv6 announce of A seen: {grams:?}"));
    assert!(
        a_text.starts_with(&format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\nPort: 1111\r\nInfohash: {}\r\ncookie: ",
            shared.to_hex()
        )),
        "{a_text:?}"
    );
    assert!(a_text.ends_with("\r\n\r\n\r\n"), "{a_text:?}");
}

/// Two sessions listening on `[::1]` only find each other by LSD over
/// IPv6 alone (an IPv4 announce names 127.0.0.1, where nobody listens)
/// and the download completes byte-identical.
#[test]
fn sessions_on_ipv6_loopback_find_each_other_by_lsd() {
    use crate::util::{assert_same, make_torrent, tempdir, wait_state};
    use bittern_engine::{SeedGoal, Session, TorrentOptions, TorrentState};

    const NAME: &str = "lsd::sessions_on_ipv6_loopback_find_each_other_by_lsd";
    if !bittern_testkit::netns::run_inside(NAME) {
        return;
    }
    // No route for 239.0.0.0/8 here: the IPv4 group cannot be joined, and
    // LSD must still run on the IPv6 one.
    if !ipv6_multicast_on_lo() {
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let (src, dst) = (tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "lsd6.bin",
        &[("lsd6.bin", 2_000_000)],
        64 << 10,
        32,
    );
    let cfg = || bittern_engine::SessionConfig {
        listen: "[::1]:0".parse().unwrap(),
        lsd: Some(LsdConfig {
            min_packet_interval: Duration::from_millis(200),
            reannounce: Duration::from_secs(1),
            ..LsdConfig::new(Ipv4Addr::UNSPECIFIED, 0)
        }),
        ..crate::util::config()
    };
    let seeder = Session::new(cfg()).unwrap();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    // Slow enough to see the connection while the download runs.
    let leecher = Session::new(bittern_engine::SessionConfig {
        download_limit: Some(1 << 20),
        ..cfg()
    })
    .unwrap();
    let t = leecher
        .add_torrent(
            meta.clone(),
            dst.path(),
            TorrentOptions {
                seed_goal: SeedGoal::None,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peer = None;
    while t.status().state != TorrentState::Stopped {
        assert!(Instant::now() < deadline, "not done: {:?}", t.status());
        if let Some(p) = t.peers().first() {
            peer = Some(p.addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    // Connected over IPv6: only the IPv6 announces could lead there.
    assert!(
        peer.is_some_and(|a| a.ip() == std::net::Ipv6Addr::LOCALHOST),
        "{peer:?}"
    );
}
