//! Interop with real clients on 127.0.0.1: bittern leeching from a
//! libtorrent seeder, seeding to a libtorrent leecher, and seeding to
//! `aria2c` through the embedded tracker. Every transfer is checked byte for
//! byte against the source files.
//!
//! libtorrent runs in Debian's `/usr/bin/python3` (the only Python that can
//! import `python3-libtorrent`) through the scripts in `testkit/scripts/`,
//! which turn DHT, LSD, UPnP and NAT-PMP off and listen on 127.0.0.1 only.
//! A missing tool skips the test loudly, or fails it when
//! `BITTERN_REQUIRE_INTEROP=1`.

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bittern_engine::{SeedGoal, SessionConfig, TorrentHandle, TorrentOptions, TorrentState};
use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_wire::{Bitfield, ExtensionHandshake, Message, Metainfo, MetainfoBuilder};

use crate::fake::{Got, Wire};
use crate::util::*;

pub(crate) use bittern_testkit::aria2::ARIA2C;
pub(crate) use bittern_testkit::free_port;
pub(crate) use bittern_testkit::libtorrent::PYTHON;
/// A child process killed on drop; stdout lines arrive on a channel, stderr
/// goes to a log file shown when something fails.
pub(crate) use bittern_testkit::procs::LineProc as Proc;
pub(crate) use bittern_testkit::procs::Logged;
#[allow(unused_imports)] // for the tests that take them from here
pub(crate) use bittern_testkit::{
    libtorrent::script,
    transmission::{cli as transmission_cli, MKTORRENT, TRANSMISSION},
};

/// Files of odd sizes whose boundaries fall inside pieces, so the other
/// client's piece-to-file mapping is exercised too.
pub(crate) const FILES: &[(&str, u64)] = &[
    ("a.bin", 1_500_001),
    ("sub/b.bin", 700_000),
    ("sub/c.txt", 3),
    ("d.bin", 1_048_576 + 77),
];

/// Engine logs for debugging: `RUST_LOG=bittern_engine=debug`.
pub(crate) fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// `/usr/bin/python3 SCRIPT ARGS...` for a helper script in
/// `testkit/scripts/`.
pub(crate) fn python(script_name: &str, args: &[&OsStr]) -> std::process::Command {
    bittern_testkit::libtorrent::python(script_name, args)
}

/// True when Debian's Python can import libtorrent.
pub(crate) fn have_libtorrent() -> bool {
    have_tool(PYTHON) && bittern_testkit::libtorrent::available()
}

/// Writes `.torrent` bytes for `meta` (optionally with an announce URL) to
/// `dir/<name>.torrent`; the re-parsed file must keep the info hash.
pub(crate) fn write_torrent(
    dir: &Path,
    meta: &Metainfo,
    announce: Option<&str>,
) -> (Metainfo, PathBuf) {
    let info = &meta.info;
    let mut b = MetainfoBuilder::new(info.name.clone())
        .piece_length(info.piece_length)
        .pieces(info.pieces.clone());
    b = if info.multi_file {
        b.files(info.files.iter().map(|f| (f.path.clone(), f.length)))
    } else {
        b.single_file(info.total_length())
    };
    if let Some(url) = announce {
        b = b.announce(url);
    }
    let bytes = b.build().unwrap();
    let parsed = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(parsed.info_hash, meta.info_hash);
    let path = dir.join(format!("{}.torrent", info.name));
    std::fs::write(&path, bytes).unwrap();
    (parsed, path)
}

/// Waits for `state`, failing with the other client's log on error or
/// timeout.
pub(crate) fn wait_for(t: &TorrentHandle, state: TorrentState, limit: Duration, other: &Proc) {
    init_log();
    let start = Instant::now();
    loop {
        let s = t.status();
        if s.state == state {
            return;
        }
        if let TorrentState::Error(e) = &s.state {
            other.fail(&format!("bittern torrent failed: {e}"));
        }
        if start.elapsed() > limit {
            other.fail(&format!("bittern timed out waiting for {state:?}: {s:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn seed(
    session: &bittern_engine::Session,
    meta: &Metainfo,
    dir: &Path,
) -> TorrentHandle {
    let s = session
        .add_torrent(meta.clone(), dir, TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    assert_eq!(s.status().pieces_have, meta.info.piece_count());
    s
}

#[test]
fn bittern_leeches_from_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(src.path(), "from_lt", FILES, 64 * 1024, 21);
    let (meta, torrent) = write_torrent(work.path(), &meta, None);

    let (lt, port) = bittern_testkit::libtorrent::spawn_with_port(
        "libtorrent seeder",
        bittern_testkit::libtorrent::seed_cmd(&torrent, src.path()),
        work.path().join("lt_seed.log"),
    );

    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    wait_for(&l, TorrentState::Stopped, Duration::from_secs(60), &lt);
    let st = l.status();
    assert_eq!(st.have_bytes, meta.info.total_length());
    assert_eq!(st.hash_failures, 0);
    assert!(st.downloaded >= meta.info.total_length());
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    eprintln!(
        "libtorrent -> bittern: {} bytes in {:?}",
        meta.info.total_length(),
        start.elapsed()
    );
}

/// libtorrent listening on `[::1]` only; bittern, listening on `[::1]`
/// only too, is given that address and downloads everything over IPv6.
#[test]
fn bittern_leeches_from_libtorrent_over_ipv6_loopback() {
    if !crate::ipv6::have_ipv6_loopback() || !have_libtorrent() {
        return;
    }
    init_log();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(src.path(), "lt_v6", FILES, 64 * 1024, 24);
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let (_lt, port) = bittern_testkit::libtorrent::spawn_with_port(
        "libtorrent seeder on [::1]",
        python(
            "lt_seed.py",
            &[
                torrent.as_os_str(),
                src.path().as_os_str(),
                OsStr::new("[::1]:0"),
            ],
        ),
        work.path().join("lt_seed6.log"),
    );
    let v6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
    let leecher = bittern_engine::Session::new(SessionConfig {
        listen: SocketAddr::new(v6, 0),
        ..config()
    })
    .unwrap();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::new(v6, port)],
        seed_goal: SeedGoal::Forever,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let seen = wait_state_seeing_peers(&l, TorrentState::Seeding, Duration::from_secs(60));
    assert_eq!(
        seen.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![SocketAddr::new(v6, port)]
    );
    // Its extension handshake names the scripts' user agent.
    assert_eq!(seen[0].1.as_deref(), Some("bittern-interop-test"));
    assert!(l.status().downloaded >= meta.info.total_length());
    assert_eq!(l.status().hash_failures, 0);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}

#[test]
fn bittern_seeds_to_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "to_lt.bin",
        &[("to_lt.bin", 4 * 1024 * 1024 + 4321)],
        256 * 1024,
        22,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let seeder = session();
    let s = seed(&seeder, &meta, src.path());

    let port = seeder.local_addr().port().to_string();
    let mut lt = Proc::spawn(
        "libtorrent leecher",
        bittern_testkit::libtorrent::leech_cmd(&torrent, dst.path(), &port, 50),
        work.path().join("lt_leech.log"),
    );
    let got: u64 = lt
        .expect_line("DONE ", Duration::from_secs(60))
        .parse()
        .unwrap();
    assert!(
        got >= meta.info.total_length(),
        "libtorrent downloaded {got}"
    );
    let status = lt.wait(Duration::from_secs(20));
    if !status.success() {
        lt.fail(&format!("exited with {status}"));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert_uploaded(&s, meta.info.total_length());
    eprintln!(
        "bittern -> libtorrent: {} bytes in {:?} (bittern counted {} uploaded)",
        meta.info.total_length(),
        start.elapsed(),
        s.status().uploaded
    );
}

#[test]
fn bittern_seeds_to_aria2c_through_tracker() {
    if !have_tool(ARIA2C) {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let tracker = TrackerServer::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerConfig::default(),
    )
    .unwrap();
    let url = tracker.announce_url();
    let meta = make_torrent(src.path(), "to_aria2", FILES, 128 * 1024, 23);
    let (meta, torrent) = write_torrent(work.path(), &meta, Some(&url));

    let seeder = bittern_engine::Session::new(SessionConfig {
        announce: true,
        ..config()
    })
    .unwrap();
    let s = seed(&seeder, &meta, src.path());
    // aria2c gets peers only from its first announce, so the tracker must
    // know our seeder before aria2c starts.
    wait_for_seeder_on_tracker(&url, &meta);

    let mut cmd = bittern_testkit::aria2::command(free_port(), dst.path(), work.path());
    cmd.arg("--check-integrity=true").arg(&torrent);
    let mut aria = bittern_testkit::aria2::spawn(cmd, work.path());
    bittern_testkit::aria2::expect_success(&mut aria, work.path(), Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert_uploaded(&s, meta.info.total_length());
    eprintln!(
        "bittern -> aria2c: {} bytes in {:?} (bittern counted {} uploaded)",
        meta.info.total_length(),
        start.elapsed(),
        s.status().uploaded
    );
    drop(seeder);
    tracker.shutdown();
}

/// Polls the tracker's scrape until it counts one seeder for `meta`.
pub(crate) fn wait_for_seeder_on_tracker(url: &str, meta: &Metainfo) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let cfg = bittern_tracker::ClientConfig::default();
    loop {
        let seeders = bittern_tracker::scrape(url, &[meta.info_hash], &cfg)
            .ok()
            .and_then(|r| r.first().map(|(_, st)| st.complete))
            .unwrap_or(0);
        if seeders >= 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the seeder never registered with the tracker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests' temp dirs (one helper for every test module).
pub(crate) use crate::util::tempdir;

/// What libtorrent and aria2c put on the wire, scripted so it is checked
/// without them: the extension handshake before the piece set (libtorrent),
/// HAVE NONE then later BITFIELDs and HAVE ALL in place of batches of HAVEs
/// (aria2c). bittern must take the late sets as updates and download.
#[test]
fn late_piece_sets_are_updates() {
    init_log();
    let (src, dst) = (tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "late.bin",
        &[("late.bin", 20 * 16384 + 100)],
        32 * 1024,
        24,
    );
    let data = std::fs::read(src.path().join("late.bin")).unwrap();
    let pieces = meta.info.piece_count();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (info_hash, piece_len) = (meta.info_hash, meta.info.piece_length as usize);
    let peer = std::thread::spawn(move || {
        let mut w = Wire::accept(&listener, info_hash).unwrap();
        let ext = ExtensionHandshake {
            v: Some("scripted".into()),
            ..ExtensionHandshake::default()
        };
        w.send(Message::Extended {
            id: 0,
            payload: &ext.encode(),
        })
        .unwrap();
        w.send(Message::HaveNone).unwrap();
        w.send(Message::KeepAlive).unwrap();
        let mut half = Bitfield::new(pieces);
        for i in 0..pieces / 2 {
            half.set(i);
        }
        w.send(Message::Bitfield(half.as_bytes())).unwrap();
        w.send(Message::Have(pieces as u32 - 1)).unwrap();
        w.send(Message::HaveAll).unwrap();
        w.send(Message::Unchoke).unwrap();
        let mut served = 0usize;
        while let Ok(got) = w.recv() {
            if let Got::Request {
                index,
                begin,
                length,
            } = got
            {
                let at = index as usize * piece_len + begin as usize;
                let block = &data[at..at + length as usize];
                w.send(Message::Piece {
                    index,
                    begin,
                    data: block,
                })
                .unwrap();
                served += length as usize;
            }
        }
        served
    });
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![addr],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(30));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    drop(leecher);
    let served = peer.join().unwrap();
    assert!(served as u64 >= meta.info.total_length(), "served {served}");
}

/// The seeder counted at least the whole torrent as uploaded, also when
/// the leecher hung up right after finishing.
pub(crate) fn assert_uploaded(s: &bittern_engine::TorrentHandle, total: u64) {
    let start = std::time::Instant::now();
    while s.status().uploaded < total && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        s.status().uploaded >= total,
        "uploaded {} of {total}",
        s.status().uploaded
    );
}

/// `transmission-cli` 3.00 seeding `torrent` from `dir` on 127.0.0.1:`port`
/// as issue 17 found it: a fresh config with DHT, LPD, PEX, uTP and port
/// forwarding off, encryption tolerated (plain preferred). Returns once it
/// has verified the data and says it is seeding.
fn transmission_seeder(torrent: &Path, dir: &Path, port: u16, work: &Path) -> Logged {
    transmission_seeder_with(torrent, dir, port, work, false)
}

/// [`transmission_seeder`], with Local Peer Discovery (BEP 14) on when
/// `lpd` (only ever inside a private network namespace).
pub(crate) fn transmission_seeder_with(
    torrent: &Path,
    dir: &Path,
    port: u16,
    work: &Path,
    lpd: bool,
) -> Logged {
    let opts = bittern_testkit::transmission::Options {
        lpd,
        ..Default::default()
    };
    bittern_testkit::transmission::seeder(torrent, dir, port, work, opts)
}

/// Issue 17: with transmission-cli seeding 64 MiB (256 KiB pieces, torrent
/// by mktorrent), bittern stopped one block short and waited for ever.
#[test]
fn bittern_leeches_from_transmission() {
    if !bittern_testkit::transmission::available() {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let size: usize = 64 << 20;
    let file = src.path().join("t64.bin");
    bittern_testkit::random_file(&file, size, 17);
    let torrent = work.path().join("t64.torrent");
    let bytes = bittern_testkit::transmission::mktorrent(&file, &torrent, 18);
    let meta = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(meta.info.piece_count(), 256);

    let port = free_port();
    let tr = transmission_seeder(&torrent, src.path(), port, work.path());
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    // Transmission unchokes at its next 10 s choke round.
    let limit = Duration::from_secs(120);
    let begun = Instant::now();
    loop {
        let s = l.status();
        if s.state == TorrentState::Stopped {
            break;
        }
        assert!(
            !matches!(s.state, TorrentState::Error(_)) && begun.elapsed() < limit,
            "bittern did not finish: {s:?}; transmission-cli {}",
            tr.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = l.status();
    assert_eq!(st.have_bytes, size as u64);
    assert_eq!(st.pieces_have, 256);
    assert_eq!(st.hash_failures, 0);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    eprintln!(
        "transmission-cli -> bittern: {size} bytes in {:?}",
        start.elapsed()
    );
}

/// A libtorrent leecher downloads everything from a bittern super-seeder
/// (BEP 16), which shows it one piece at a time: alone in the swarm, the
/// next piece comes once it announced the last.
#[test]
fn bittern_super_seeds_to_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "ss_lt.bin",
        &[("ss_lt.bin", 2 * 1024 * 1024 + 99)],
        128 * 1024,
        23,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let seeder = session();
    let opts = TorrentOptions {
        super_seed: true,
        ..TorrentOptions::default()
    };
    let s = seeder.add_torrent(meta.clone(), src.path(), opts).unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    let port = seeder.local_addr().port().to_string();
    let mut lt = Proc::spawn(
        "libtorrent leecher (super-seeded)",
        bittern_testkit::libtorrent::leech_cmd(&torrent, dst.path(), &port, 60),
        work.path().join("lt_leech.log"),
    );
    let got: u64 = lt
        .expect_line("DONE ", Duration::from_secs(70))
        .parse()
        .unwrap();
    assert!(
        got >= meta.info.total_length(),
        "libtorrent downloaded {got}"
    );
    let status = lt.wait(Duration::from_secs(20));
    if !status.success() {
        lt.fail(&format!("exited with {status}"));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    eprintln!(
        "bittern super-seeder -> libtorrent: {} bytes in {:?}",
        meta.info.total_length(),
        start.elapsed()
    );
}
