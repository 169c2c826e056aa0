//! IPv6: sessions listening on `[::1]` beside or instead of 127.0.0.1,
//! peers given as IPv6 addresses, and tracker `peers6` replies dialled.
//! On a machine without an IPv6 loopback every test here skips with a
//! notice (or fails under `BITTERN_REQUIRE_INTEROP=1`).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bittern_engine::{SeedGoal, Session, SessionConfig, TorrentOptions, TorrentState};
use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_wire::{Metainfo, MetainfoBuilder};

use crate::util::*;

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Whether `[::1]` can be bound here; else a loud skip (or a failure when
/// the machine is required to have one).
pub fn have_ipv6_loopback() -> bool {
    let ok = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
    bittern_testkit::require("an IPv6 loopback (::1)", ok)
}

fn session_on(listen: SocketAddr, also: Vec<IpAddr>, announce: bool) -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    Session::new(SessionConfig {
        listen,
        listen_also: also,
        announce,
        ..config()
    })
    .unwrap()
}

#[test]
fn one_port_on_127_0_0_1_and_ipv6_loopback_serves_both_families() {
    if !have_ipv6_loopback() {
        return;
    }
    let (src, dst4, dst6) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "v6.bin",
        &[("v6.bin", 3_000_017)],
        64 * 1024,
        61,
    );
    let seeder = session_on(SocketAddr::from(([127, 0, 0, 1], 0)), vec![V6], false);
    let addrs = seeder.local_addrs();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    let port = seeder.local_addr().port();
    assert_eq!(addrs[1], SocketAddr::new(V6, port));
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));

    // One leecher per family, each listening on its own loopback only;
    // the IPv6 one slowed down so its connection is seen while it lasts.
    let l6 = Session::new(SessionConfig {
        listen: SocketAddr::new(V6, 0),
        download_limit: Some(1 << 20),
        ..config()
    })
    .unwrap();
    assert_eq!(l6.local_addrs(), vec![l6.local_addr()]);
    assert!(l6.local_addr().is_ipv6());
    let l4 = session_on(SocketAddr::from(([127, 0, 0, 1], 0)), vec![], false);
    let t6 = l6
        .add_torrent(
            meta.clone(),
            dst6.path(),
            TorrentOptions {
                peers: vec![SocketAddr::new(V6, port)],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let t4 = leech_until_stopped(
        &l4,
        &meta,
        dst4.path(),
        SocketAddr::from(([127, 0, 0, 1], port)),
    );
    // The seeder sees the IPv6 leecher at ::1, a peer of its own family
    // (not an IPv4-mapped address).
    let mut seen_v6 = false;
    while !seen_v6 && t6.status().state != TorrentState::Seeding {
        seen_v6 = s.peers().iter().any(|p| p.addr.ip() == V6);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(seen_v6, "the seeder never listed a peer at ::1");
    let theirs = wait_state_seeing_peers(&t6, TorrentState::Seeding, Duration::from_secs(60));
    assert_eq!(
        theirs.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![SocketAddr::new(V6, port)]
    );
    assert_same(src.path(), dst6.path(), &meta.info.file_paths());
    assert_same(src.path(), dst4.path(), &meta.info.file_paths());
    assert_eq!(t4.status().hash_failures, 0);
    assert!(t6.status().downloaded >= meta.info.total_length());
}

/// Rebuilds `meta` with `announce` as its tracker (same info hash).
fn with_announce(meta: &Metainfo, announce: &str) -> Metainfo {
    let info = &meta.info;
    let bytes = MetainfoBuilder::new(info.name.clone())
        .piece_length(info.piece_length)
        .pieces(info.pieces.clone())
        .single_file(info.total_length())
        .announce(announce)
        .build()
        .unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info_hash, meta.info_hash);
    m
}

#[test]
fn tracker_peers6_replies_are_dialled() {
    if !have_ipv6_loopback() {
        return;
    }
    let (src, dst) = (tempdir(), tempdir());
    // The embedded tracker on [::1] sees both sessions at ::1 and answers
    // them with `peers6` (BEP 7); nobody is given an address by hand.
    let tracker = TrackerServer::bind(
        SocketAddr::new(V6, 0),
        ServerConfig {
            interval: Duration::from_secs(1),
            min_interval: Duration::from_secs(1),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let url = tracker.announce_url();
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let meta = make_torrent(
        src.path(),
        "p6.bin",
        &[("p6.bin", 1_000_003)],
        32 * 1024,
        62,
    );
    let meta = with_announce(&meta, &url);

    let seeder = session_on(SocketAddr::new(V6, 0), vec![], true);
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    // The leecher's first announce must find the seeder there.
    wait_for_seeders(&url, &meta);
    let leecher = session_on(SocketAddr::new(V6, 0), vec![], true);
    let l = leecher
        .add_torrent(
            meta.clone(),
            dst.path(),
            TorrentOptions {
                seed_goal: SeedGoal::Forever,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let seen = wait_state_seeing_peers(&l, TorrentState::Seeding, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    // Whoever dialled whom, the connection is IPv6 between the two ports.
    let seen: Vec<SocketAddr> = seen.iter().map(|(a, _)| *a).collect();
    assert!(
        !seen.is_empty() && seen.iter().all(|a| a.ip() == V6),
        "the leecher's peers: {seen:?}"
    );
    assert!(l.status().downloaded >= meta.info.total_length());
    drop((leecher, seeder));
    tracker.shutdown();
}

/// Polls the tracker's scrape until it counts a seeder for `meta`.
fn wait_for_seeders(url: &str, meta: &Metainfo) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
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
            std::time::Instant::now() < deadline,
            "the seeder never registered with the tracker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// PEX across families: A reaches B over IPv6 (B listens on `[::1]`
/// only), A tells C of B in `added6`, and C, given only A's IPv4
/// address, dials B at `[::1]` and completes from it once A is gone. B has
/// PEX off, so it cannot learn of C and dial it instead.
#[test]
fn pex_added6_peers_are_dialled() {
    if !have_ipv6_loopback() {
        return;
    }
    let (src, dst) = (tempdir(), tempdir());
    let meta = make_torrent(src.path(), "x6.bin", &[("x6.bin", 4 << 20)], 64 * 1024, 63);
    // B: a slow seed on [::1] only, with PEX off (it never hears of C).
    let b = Session::new(SessionConfig {
        listen: SocketAddr::new(V6, 0),
        pex: false,
        upload_limit: Some(512 << 10),
        ..config()
    })
    .unwrap();
    let tb = b
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(20));
    // A: a leecher on both loopbacks that dials B over IPv6.
    let dst_a = tempdir();
    let a = session_on(SocketAddr::from(([127, 0, 0, 1], 0)), vec![V6], false);
    let ta = a
        .add_torrent(
            meta.clone(),
            dst_a.path(),
            TorrentOptions {
                peers: vec![b.local_addr()],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ta
        .peers()
        .iter()
        .any(|p| p.addr == b.local_addr() && p.client.is_some())
    {
        assert!(std::time::Instant::now() < deadline, "A never reached B");
        std::thread::sleep(Duration::from_millis(20));
    }
    let c = session_on(SocketAddr::from(([127, 0, 0, 1], 0)), vec![], false);
    let tc = c
        .add_torrent(
            meta.clone(),
            dst.path(),
            TorrentOptions {
                peers: vec![a.local_addr()],
                seed_goal: SeedGoal::None,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !tc.peers().iter().any(|p| p.addr == b.local_addr()) {
        assert!(
            std::time::Instant::now() < deadline,
            "C never dialled B at [::1]: {:?}",
            tc.peers().iter().map(|p| p.addr).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(tc.status().have_bytes < meta.info.total_length());
    drop(a);
    wait_state(&tc, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}
