//! Magnet links and the extension protocol: our BEP 10 handshake, serving
//! metadata (BEP 9), and fetching it from scripted and real peers.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use bittern_engine::{
    SeedGoal, TorrentEvent, TorrentHandle, TorrentOptions, TorrentState, Violation,
};
use bittern_wire::{
    metadata_piece_count, Extension, ExtensionHandshake, Magnet, Message, MetadataMessage,
    Metainfo, METADATA_PIECE_LEN,
};

use crate::fake::{Got, Wire};
use crate::util::{assert_same, make_torrent, seeding, session, wait_state};

/// Reads messages until an extended one with id `id`.
fn recv_extended(w: &mut Wire, id: u8) -> Vec<u8> {
    loop {
        match w.recv().unwrap() {
            Got::Extended { id: got, payload } if got == id => return payload,
            _ => {}
        }
    }
}

#[test]
fn seed_sends_full_extension_handshake_and_serves_metadata() {
    let dir = tempfile::tempdir().unwrap();
    // Enough pieces for an info dictionary of two metadata pieces.
    let meta = make_torrent(dir.path(), "big", &[("big", 1700 << 14)], 1 << 14, 5);
    assert!(meta.info_bytes.len() > METADATA_PIECE_LEN);
    let (seeder, _t) = seeding(&meta, dir.path());
    let (mut w, theirs) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    assert!(theirs.supports_extended());
    // Our own handshake uses other ids than bittern's, as Transmission does.
    let mut ours = ExtensionHandshake::default();
    ours.m.insert("ut_metadata".into(), 7);
    ours.m.insert("ut_pex".into(), 9);
    ours.m.insert("lt_donthave".into(), 3);
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: &ours.encode(),
    }
    .encode(&mut out);
    w.send_raw(&out).unwrap();

    let hs = ExtensionHandshake::decode(&recv_extended(&mut w, 0)).unwrap();
    assert_eq!(hs.id_for(Extension::UtMetadata), Some(2));
    assert_eq!(hs.id_for(Extension::UtPex), Some(1));
    assert_eq!(hs.p, Some(seeder.local_addr().port()));
    assert!(hs.reqq.is_some_and(|q| q > 0));
    assert_eq!(hs.yourip, Some(std::net::IpAddr::from([127, 0, 0, 1])));
    assert_eq!(hs.metadata_size, Some(meta.info_bytes.len() as u64));
    assert!(hs.upload_only, "a seed says upload_only (BEP 21)");
    assert!(hs.v.as_deref().is_some_and(|v| v.starts_with("bittern")));

    // Ask for both pieces and one past the end, under bittern's id (2);
    // answers come under ours (7).
    let mut got = Vec::new();
    for piece in [1u32, 0, 2] {
        let mut p = Vec::new();
        MetadataMessage::Request { piece }.encode(&mut p);
        let mut out = Vec::new();
        Message::Extended { id: 2, payload: &p }.encode(&mut out);
        w.send_raw(&out).unwrap();
        let answer = recv_extended(&mut w, 7);
        match MetadataMessage::decode(&answer).unwrap() {
            MetadataMessage::Data {
                piece: p,
                total_size,
                data,
            } => {
                assert_eq!(p, piece);
                assert_eq!(total_size, meta.info_bytes.len() as u64);
                got.push((p, data.to_vec()));
            }
            MetadataMessage::Reject { piece: p } => {
                assert_eq!(
                    (p, piece),
                    (2, 2),
                    "only the piece past the end is rejected"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort();
    let joined: Vec<u8> = got.into_iter().flat_map(|(_, d)| d).collect();
    assert_eq!(
        joined, meta.info_bytes,
        "the served pieces are the info dictionary"
    );
}

#[test]
fn malformed_extension_handshake_closes_only_that_peer() {
    let dir = tempfile::tempdir().unwrap();
    let meta = make_torrent(dir.path(), "f", &[("f", 100_000)], 1 << 14, 6);
    let (seeder, _t) = seeding(&meta, dir.path());
    let (mut bad, _) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    let (mut good, _) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: b"li1ee",
    }
    .encode(&mut out);
    bad.send_raw(&out).unwrap();
    assert!(bad.closed_within(Duration::from_secs(5)));
    // The other connection still works: it gets metadata.
    let mut ours = ExtensionHandshake::with_all_extensions();
    ours.v = Some("fake".into());
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: &ours.encode(),
    }
    .encode(&mut out);
    let mut p = Vec::new();
    MetadataMessage::Request { piece: 0 }.encode(&mut p);
    Message::Extended { id: 2, payload: &p }.encode(&mut out);
    good.send_raw(&out).unwrap();
    let answer = recv_extended(&mut good, 2);
    assert!(matches!(
        MetadataMessage::decode(&answer),
        Ok(MetadataMessage::Data { data, .. }) if data == meta.info_bytes.as_slice()
    ));
}

/// BEP 10 `ipv4` / `ipv6` in our extension handshake (bytes captured from
/// the wire): our own address of each family, the listen address until a
/// peer says how it sees us (`yourip`), then that. The IPv6 half needs an
/// IPv6 loopback (skipped with a message otherwise).
#[test]
fn extension_handshake_says_our_ipv4_and_ipv6_addresses() {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let dir = tempfile::tempdir().unwrap();
    let meta = make_torrent(dir.path(), "ips", &[("ips", 50_000)], 1 << 14, 6);
    let v6 = crate::ipv6::have_ipv6_loopback();
    let seeder = bittern_engine::Session::new(bittern_engine::SessionConfig {
        listen_also: if v6 {
            vec![Ipv6Addr::LOCALHOST.into()]
        } else {
            Vec::new()
        },
        ..crate::util::config()
    })
    .unwrap();
    let t = seeder
        .add_torrent(meta.clone(), dir.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&t, TorrentState::Seeding, Duration::from_secs(20));
    // Connects, says `yourip` (if any), returns bittern's handshake bytes.
    let ours = |yourip: Option<IpAddr>| -> (Wire, Vec<u8>) {
        let (mut w, _) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
        let hs = ExtensionHandshake {
            yourip,
            ..ExtensionHandshake::default()
        };
        let mut out = Vec::new();
        Message::Extended {
            id: 0,
            payload: &hs.encode(),
        }
        .encode(&mut out);
        w.send_raw(&out).unwrap();
        let raw = recv_extended(&mut w, 0);
        (w, raw)
    };
    let contains = |raw: &[u8], needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    let (_w, raw) = ours(None);
    let hs = ExtensionHandshake::decode(&raw).unwrap();
    assert_eq!(hs.ipv4, Some(Ipv4Addr::LOCALHOST), "{hs:?}");
    assert!(contains(&raw, b"4:ipv44:\x7f\x00\x00\x01"));
    if v6 {
        assert_eq!(hs.ipv6, Some(Ipv6Addr::LOCALHOST), "{hs:?}");
        let mut want = b"4:ipv616:".to_vec();
        want.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        assert!(contains(&raw, &want));
    } else {
        eprintln!("skipping the ipv6 half: no IPv6 loopback (::1) here");
        assert_eq!(hs.ipv6, None);
    }
    // A peer says it sees us at 127.0.0.9: later handshakes say so.
    let seen = Ipv4Addr::new(127, 0, 0, 9);
    let (_w2, _) = ours(Some(seen.into()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_w3, raw) = ours(None);
        let hs = ExtensionHandshake::decode(&raw).unwrap();
        if hs.ipv4 == Some(seen) {
            break;
        }
        assert!(Instant::now() < deadline, "ipv4 stayed {:?}", hs.ipv4);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A magnet link for `meta` naming `peers` in `x.pe`.
fn magnet_for(meta: &Metainfo, peers: &[SocketAddr]) -> Magnet {
    let mut uri = format!("magnet:?xt=urn:btih:{}", meta.info_hash.to_hex());
    for p in peers {
        uri.push_str(&format!("&x.pe={p}"));
    }
    Magnet::parse(&uri).unwrap()
}

/// Waits for a torrent started from a magnet link to stop (download done,
/// no seed goal), checking that it showed "fetching metadata" first.
fn fetch_and_download(t: &TorrentHandle, limit: Duration) -> Vec<TorrentEvent> {
    let start = Instant::now();
    let mut states = vec![TorrentState::FetchingMetadata];
    let mut events = Vec::new();
    loop {
        while let Ok(e) = t.events().try_recv() {
            events.push(e);
        }
        let s = t.status();
        if states.last() != Some(&s.state) {
            states.push(s.state.clone());
        }
        if let TorrentState::Error(e) = &s.state {
            panic!("torrent failed: {e}");
        }
        if s.state == TorrentState::Stopped {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "timed out: {s:?}, states {states:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The metadata arrived: the same handle now has the torrent's pieces
    // (a small torrent may pass Checking and Downloading between polls).
    assert!(t.status().pieces_total > 0, "{states:?}");
    assert!(events.contains(&TorrentEvent::Completed), "{states:?}");
    events
}

fn no_goal() -> TorrentOptions {
    TorrentOptions {
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    }
}

#[test]
fn magnet_fetches_metadata_from_two_seeders_then_downloads_and_restarts_without_fetching() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "m",
        &[("a", 900 << 14), ("b", 300 << 14)],
        1 << 14,
        8,
    );
    // Two metadata pieces: two seeders fetch them side by side.
    assert!(metadata_piece_count(meta.info_bytes.len() as u64) >= 2);
    let (s1, _t1) = seeding(&meta, src.path());
    let (s2, _t2) = seeding(&meta, src.path());
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let magnet = magnet_for(&meta, &[s1.local_addr(), s2.local_addr()]);
    let t = leecher.add_magnet(&magnet, dst.path(), no_goal()).unwrap();
    assert_eq!(t.info_hash(), meta.info_hash);
    let first = t.status();
    assert_eq!(first.state, TorrentState::FetchingMetadata);
    assert_eq!(first.pieces_total, 0, "the size is not known yet");
    fetch_and_download(&t, Duration::from_secs(120));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    // The handle gives the .torrent, and it was saved beside the resume state.
    let file = t.torrent_file().expect("the fetched .torrent");
    let parsed = Metainfo::from_bytes(&file).unwrap();
    assert_eq!(parsed.info_hash, meta.info_hash);
    assert_eq!(parsed.info_bytes, meta.info_bytes);
    let saved = dst
        .path()
        .join(".bittern")
        .join(format!("{}.torrent", meta.info_hash.to_hex()));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !saved.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(std::fs::read(&saved).unwrap(), file);
    drop(leecher);

    // A restart with no peers at all: the saved metadata is used, the data
    // is checked, the torrent seeds.
    let again = session();
    let t = again
        .add_magnet(
            &magnet_for(&meta, &[]),
            dst.path(),
            TorrentOptions::default(),
        )
        .unwrap();
    assert_ne!(t.status().state, TorrentState::FetchingMetadata);
    wait_state(&t, TorrentState::Seeding, Duration::from_secs(30));
    assert_eq!(t.status().pieces_total, meta.info.piece_count());
}

/// How a scripted metadata peer misbehaves.
#[derive(Clone, Copy, Debug)]
enum Liar {
    /// Answers with one byte of the info dictionary flipped.
    BadHash,
    /// Answers piece 0 with a byte flipped, never answers another piece.
    BadThenSilent,
    /// Announces a `metadata_size` of 4 GiB.
    Huge,
    /// Answers every request with a piece past the end.
    OutOfRange,
    /// Sends a data message without being asked (it announces no size).
    Unsolicited,
    /// Rejects every request.
    RejectAll,
}

/// A peer that speaks `ut_metadata` (under id 5) with `info` and lies as
/// `how`. Serves one connection; the thread returns whether bittern closed
/// it within 10 s of the lie.
fn lying_peer(meta: &Metainfo, how: Liar) -> (SocketAddr, std::thread::JoinHandle<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (info_hash, info) = (meta.info_hash, meta.info_bytes.clone());
    let t = std::thread::spawn(move || {
        let Ok(mut w) = Wire::accept(&listener, info_hash) else {
            return false;
        };
        let mut hs = ExtensionHandshake::default();
        hs.m.insert("ut_metadata".into(), 5);
        hs.metadata_size = match how {
            Liar::Huge => Some(4 << 30),
            // No size: we never ask it, so any data is unsolicited.
            Liar::Unsolicited => None,
            _ => Some(info.len() as u64),
        };
        let mut out = Vec::new();
        Message::HaveNone.encode(&mut out);
        Message::Extended {
            id: 0,
            payload: &hs.encode(),
        }
        .encode(&mut out);
        if let Liar::Unsolicited = how {
            let mut p = Vec::new();
            MetadataMessage::answer(&info, 0).encode(&mut p);
            Message::Extended { id: 2, payload: &p }.encode(&mut out);
        }
        if w.send_raw(&out).is_err() {
            return true;
        }
        let patience = match how {
            Liar::BadThenSilent => 60,
            _ => 10,
        };
        let _ = w
            .stream
            .set_read_timeout(Some(Duration::from_secs(patience)));
        loop {
            let payload = match w.recv() {
                Ok(Got::Extended { id: 5, payload }) => payload,
                Ok(_) => continue,
                // Closed by bittern (or timed out: then `false` below).
                Err(e) => return !bittern_testkit::is_timeout(&e),
            };
            let Ok(MetadataMessage::Request { piece }) = MetadataMessage::decode(&payload) else {
                continue;
            };
            let mut p = Vec::new();
            match how {
                Liar::BadHash => {
                    let mut bad = info.clone();
                    bad[10] ^= 0x55;
                    MetadataMessage::answer(&bad, piece).encode(&mut p);
                }
                Liar::BadThenSilent if piece == 0 => {
                    let mut bad = info.clone();
                    bad[10] ^= 0x55;
                    MetadataMessage::answer(&bad, piece).encode(&mut p);
                }
                Liar::BadThenSilent => continue,
                Liar::OutOfRange => MetadataMessage::Data {
                    piece: 999,
                    total_size: info.len() as u64,
                    data: &info[..10],
                }
                .encode(&mut p),
                Liar::RejectAll => MetadataMessage::Reject { piece }.encode(&mut p),
                Liar::Huge | Liar::Unsolicited => {
                    MetadataMessage::answer(&info, piece).encode(&mut p)
                }
            }
            let mut out = Vec::new();
            Message::Extended { id: 2, payload: &p }.encode(&mut out);
            if w.send_raw(&out).is_err() {
                return true;
            }
        }
    });
    (addr, t)
}

/// The liar alone in the magnet link: its connection is closed (within
/// 10 s of the lie) while the torrent still fetches metadata; then an
/// honest bittern seeder is offered and the download completes from it.
fn liar_is_dropped(how: Liar) {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "h", &[("h", 600 << 14)], 1 << 14, 9);
    let (liar, liar_thread) = lying_peer(&meta, how);
    let (seeder, _t) = seeding(&meta, src.path());
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let t = leecher
        .add_magnet(&magnet_for(&meta, &[liar]), dst.path(), no_goal())
        .unwrap();
    assert!(
        liar_thread.join().unwrap(),
        "{how:?}: the liar was not dropped"
    );
    assert_eq!(t.status().state, TorrentState::FetchingMetadata);
    t.add_peers(vec![seeder.local_addr()]).unwrap();
    let events = fetch_and_download(&t, Duration::from_secs(90));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    let violations: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            TorrentEvent::PeerViolation { addr, violation } if *addr == liar => Some(violation),
            _ => None,
        })
        .collect();
    match how {
        // Rejecting is no violation, only useless.
        Liar::RejectAll => {}
        Liar::BadHash => assert!(
            violations
                .iter()
                .any(|v| matches!(v, Violation::MetadataHash)),
            "{events:?}"
        ),
        _ => assert!(
            violations
                .iter()
                .any(|v| matches!(v, Violation::Metadata(_))),
            "{how:?}: {events:?}"
        ),
    }
}

#[test]
fn metadata_failing_the_hash_drops_that_peer() {
    liar_is_dropped(Liar::BadHash);
}

#[test]
fn metadata_size_of_4_gib_drops_that_peer() {
    liar_is_dropped(Liar::Huge);
}

#[test]
fn out_of_range_metadata_piece_drops_that_peer() {
    liar_is_dropped(Liar::OutOfRange);
}

#[test]
fn unsolicited_metadata_drops_that_peer() {
    liar_is_dropped(Liar::Unsolicited);
}

#[test]
fn a_peer_rejecting_every_metadata_request_is_dropped() {
    liar_is_dropped(Liar::RejectAll);
}

#[test]
fn a_magnet_without_peers_can_be_paused_removed_and_the_session_shut_down() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "p", &[("p", 50_000)], 1 << 14, 10);
    let dst = tempfile::tempdir().unwrap();
    let mut leecher = session();
    let t = leecher
        .add_magnet(&magnet_for(&meta, &[]), dst.path(), no_goal())
        .unwrap();
    // The same info hash cannot be added twice, magnet or not.
    assert!(leecher
        .add_magnet(&magnet_for(&meta, &[]), dst.path(), no_goal())
        .is_err());
    assert!(leecher
        .add_torrent(meta.clone(), dst.path(), no_goal())
        .is_err());
    t.pause().unwrap();
    wait_state(&t, TorrentState::Paused, Duration::from_secs(5));
    t.resume().unwrap();
    wait_state(&t, TorrentState::FetchingMetadata, Duration::from_secs(5));
    let start = Instant::now();
    t.remove();
    assert!(t.is_finished());
    assert_eq!(t.status().state, TorrentState::Stopped);
    assert!(t.torrent_file().is_none());
    // Added again after the removal, then the session shuts down with it
    // still fetching.
    let again = leecher
        .add_magnet(&magnet_for(&meta, &[]), dst.path(), no_goal())
        .unwrap();
    leecher.shutdown();
    assert!(again.is_finished());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!dst
        .path()
        .join(".bittern")
        .join(format!("{}.torrent", meta.info_hash.to_hex()))
        .exists());
}

#[test]
fn a_magnet_peer_that_comes_up_late_is_dialled_again() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "late", &[("late", 300_000)], 1 << 14, 11);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let t = leecher
        .add_magnet(&magnet_for(&meta, &[addr]), dst.path(), no_goal())
        .unwrap();
    // The first dial fails: nobody listens yet.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(t.status().state, TorrentState::FetchingMetadata);
    let seeder = bittern_engine::Session::new(bittern_engine::SessionConfig {
        listen: addr,
        ..crate::util::config()
    })
    .unwrap();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    fetch_and_download(&t, Duration::from_secs(40));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}

/// Metadata failing the hash with two contributors, a liar and an honest
/// seeder: nobody is blamed, the fetch goes on one peer at a time, the
/// liar (silent on its second piece) is dropped at the request deadline
/// and the honest seeder completes the metadata and the download.
#[test]
fn metadata_failing_the_hash_from_two_peers_is_fetched_again_from_one() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "two", &[("two", 1200 << 14)], 1 << 14, 12);
    assert_eq!(metadata_piece_count(meta.info_bytes.len() as u64), 2);
    let (liar, liar_thread) = lying_peer(&meta, Liar::BadThenSilent);
    let (seeder, _t) = seeding(&meta, src.path());
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let t = leecher
        .add_magnet(&magnet_for(&meta, &[liar]), dst.path(), no_goal())
        .unwrap();
    // The liar has sent its bad piece 0 and sits on piece 1.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.status().progress < 0.5 {
        assert!(Instant::now() < deadline, "the liar's piece never arrived");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.add_peers(vec![seeder.local_addr()]).unwrap();
    fetch_and_download(&t, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert!(liar_thread.join().unwrap(), "the liar was not closed");
}

/// A seeder of `meta` listening on `listen` only.
fn seeder_on(
    meta: &Metainfo,
    src: &std::path::Path,
    listen: SocketAddr,
) -> (bittern_engine::Session, TorrentHandle) {
    let seeder = bittern_engine::Session::new(bittern_engine::SessionConfig {
        listen,
        ..crate::util::config()
    })
    .unwrap();
    let s = seeder
        .add_torrent(meta.clone(), src, TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    (seeder, s)
}

#[test]
fn a_magnet_peer_given_by_host_name_is_resolved_and_dialled() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "named", &[("named", 300_000)], 1 << 14, 12);
    let (seeder, _s) = seeder_on(&meta, src.path(), "127.0.0.1:0".parse().unwrap());
    let port = seeder.local_addr().port();
    let uri = format!(
        "magnet:?xt=urn:btih:{}&x.pe=localhost:{port}",
        meta.info_hash.to_hex()
    );
    let magnet = Magnet::parse(&uri).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let t = leecher.add_magnet(&magnet, dst.path(), no_goal()).unwrap();
    fetch_and_download(&t, Duration::from_secs(40));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}

#[test]
fn a_bracketed_ipv6_magnet_peer_is_dialled() {
    if !crate::ipv6::have_ipv6_loopback() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "six", &[("six", 300_000)], 1 << 14, 13);
    let (seeder, _s) = seeder_on(&meta, src.path(), "[::1]:0".parse().unwrap());
    let port = seeder.local_addr().port();
    // Escaped brackets, as a browser writes them.
    let uri = format!(
        "magnet:?xt=urn:btih:{}&x.pe=%5B%3A%3A1%5D:{port}",
        meta.info_hash.to_hex()
    );
    let magnet = Magnet::parse(&uri).unwrap();
    let dst = tempfile::tempdir().unwrap();
    // A leecher on both loopbacks (as `--bind` with both would give).
    let leecher = bittern_engine::Session::new(bittern_engine::SessionConfig {
        listen_also: vec![std::net::Ipv6Addr::LOCALHOST.into()],
        ..crate::util::config()
    })
    .unwrap();
    let t = leecher.add_magnet(&magnet, dst.path(), no_goal()).unwrap();
    fetch_and_download(&t, Duration::from_secs(40));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}

/// An honest `ut_metadata` peer that answers each request 300 ms late
/// (so one peer cannot answer everything before the fetch turns to the
/// other) and reports the pieces it was asked for, on one connection.
fn slow_metadata_peer(meta: &Metainfo) -> (SocketAddr, std::thread::JoinHandle<Vec<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (info_hash, info) = (meta.info_hash, meta.info_bytes.clone());
    let t = std::thread::spawn(move || {
        let mut asked = Vec::new();
        let Ok(mut w) = Wire::accept(&listener, info_hash) else {
            return asked;
        };
        let mut hs = ExtensionHandshake::default();
        hs.m.insert("ut_metadata".into(), 5);
        hs.metadata_size = Some(info.len() as u64);
        let mut out = Vec::new();
        Message::HaveNone.encode(&mut out);
        Message::Extended {
            id: 0,
            payload: &hs.encode(),
        }
        .encode(&mut out);
        if w.send_raw(&out).is_err() {
            return asked;
        }
        let _ = w.stream.set_read_timeout(Some(Duration::from_secs(20)));
        loop {
            let payload = match w.recv() {
                Ok(Got::Extended { id: 5, payload }) => payload,
                Ok(_) => continue,
                Err(_) => return asked,
            };
            let Ok(MetadataMessage::Request { piece }) = MetadataMessage::decode(&payload) else {
                continue;
            };
            asked.push(piece);
            std::thread::sleep(Duration::from_millis(300));
            let mut p = Vec::new();
            MetadataMessage::answer(&info, piece).encode(&mut p);
            let mut out = Vec::new();
            Message::Extended { id: 2, payload: &p }.encode(&mut out);
            if w.send_raw(&out).is_err() {
                return asked;
            }
        }
    });
    (addr, t)
}

/// BEP 9 from several peers at once: with two slow honest peers in the
/// magnet and an info dictionary of four or more metadata pieces, both
/// peers are asked for pieces, every piece is asked, and the metadata
/// completes.
/// (A small multi-file torrent: long file names make the dictionary big
/// without megabytes of data.)
#[test]
fn metadata_pieces_are_fetched_from_several_peers_at_once() {
    let src = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..500)
        .map(|i| {
            format!(
                "{i:03}-{}",
                "a-long-file-name-that-fills-the-info-dictionary-".repeat(2)
            )
        })
        .collect();
    let files: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 100)).collect();
    let meta = make_torrent(src.path(), "wide", &files, 1 << 14, 31);
    let pieces = metadata_piece_count(meta.info_bytes.len() as u64);
    assert!(pieces >= 4, "{pieces} metadata pieces");
    let (a, a_thread) = slow_metadata_peer(&meta);
    let (b, b_thread) = slow_metadata_peer(&meta);
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let t = leecher
        .add_magnet(&magnet_for(&meta, &[a, b]), dst.path(), no_goal())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.status().state == TorrentState::FetchingMetadata {
        assert!(
            Instant::now() < deadline,
            "metadata not fetched: {:?}",
            t.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.status().pieces_total, meta.info.piece_count());
    drop(leecher);
    let (mut from_a, from_b) = (a_thread.join().unwrap(), b_thread.join().unwrap());
    assert!(
        !from_a.is_empty() && !from_b.is_empty(),
        "asked a for {from_a:?}, b for {from_b:?}"
    );
    from_a.extend(&from_b);
    from_a.sort_unstable();
    from_a.dedup();
    let all: Vec<u32> = (0..pieces as u32).collect();
    assert_eq!(from_a, all, "every piece asked");
}

/// libtorrent's `upload_only` message (bittern's id 3) reaching a torrent
/// that is still fetching metadata is ignored there: an empty one, then a
/// 1, from the only peer, which then serves the metadata in full.
#[test]
fn upload_only_messages_while_fetching_metadata_are_ignored() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "u", &[("u", 600 << 14)], 1 << 14, 23);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (info_hash, info) = (meta.info_hash, meta.info_bytes.clone());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let peer = std::thread::spawn(move || -> Result<usize, String> {
        let mut w = Wire::accept(&listener, info_hash).map_err(|e| e.to_string())?;
        let mut hs = ExtensionHandshake::default();
        hs.m.insert("ut_metadata".into(), 5);
        hs.m.insert("upload_only".into(), 3);
        hs.metadata_size = Some(info.len() as u64);
        let mut out = Vec::new();
        Message::HaveNone.encode(&mut out);
        Message::Extended {
            id: 0,
            payload: &hs.encode(),
        }
        .encode(&mut out);
        Message::Extended {
            id: 3,
            payload: &[],
        }
        .encode(&mut out);
        Message::Extended {
            id: 3,
            payload: &[1],
        }
        .encode(&mut out);
        w.send_raw(&out).map_err(|e| e.to_string())?;
        w.stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
        let mut served = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let payload = match w.recv() {
                Ok(Got::Extended { id: 5, payload }) => payload,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                // Closed once the metadata is in (the fetch hands over):
                // fine. Closed before: the upload_only messages broke it.
                Err(_) if served >= metadata_piece_count(info.len() as u64) => break,
                Err(e) => return Err(format!("closed by bittern after {served}: {e}")),
            };
            let Ok(MetadataMessage::Request { piece }) = MetadataMessage::decode(&payload) else {
                continue;
            };
            let mut p = Vec::new();
            MetadataMessage::answer(&info, piece).encode(&mut p);
            let mut out = Vec::new();
            Message::Extended { id: 2, payload: &p }.encode(&mut out);
            w.send_raw(&out).map_err(|e| e.to_string())?;
            served += 1;
        }
        Ok(served)
    });
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let t = leecher
        .add_magnet(&magnet_for(&meta, &[addr]), dst.path(), no_goal())
        .unwrap();
    let start = std::time::Instant::now();
    while t.status().state == TorrentState::FetchingMetadata
        && start.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let state = t.status().state;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = peer.join().unwrap();
    assert_ne!(state, TorrentState::FetchingMetadata, "{served:?}");
    assert!(
        served.as_ref().is_ok_and(|&n| n > 0),
        "metadata came from the peer that sent upload_only, which was kept: {served:?}"
    );
}
