//! Storage faults: a full disk, data vanishing under a seeder.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bittern_engine::{SeedGoal, TorrentOptions, TorrentState};
use bittern_testkit::Tmpfs;

use crate::util::*;

#[test]
fn disk_full_stops_the_torrent_keeps_verified_pieces_and_resume_finishes() {
    let src = tempfile::tempdir().unwrap();
    let files = [("small.bin", 1024 * 1024), ("big.bin", 3 * 1024 * 1024)];
    let meta = make_torrent(src.path(), "full", &files, 64 * 1024, 40);
    let seeder = session();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));

    let dst = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(dst.path(), "2m") else {
        return;
    };
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![seeder.local_addr()],
        seed_goal: SeedGoal::None,
        // Resume state lives off the full disk.
        resume_file: Some(src.path().join("full.resume")),
        sequential: true,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let start = Instant::now();
    let why = loop {
        if let TorrentState::Error(e) = l.status().state {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no error: {:?}",
            l.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        matches!(why.storage(), bittern_storage::Error::DiskFull { .. }),
        "not a full disk: {why:?}"
    );
    assert!(
        why.to_string().contains("disk full"),
        "unclear message: {why}"
    );
    // Published on the controller's tick, and its peers' threads end in
    // their own time (seconds on a loaded machine): wait for both.
    let start = Instant::now();
    while l.status().pieces_have < 16 || leecher.connections() > 0 {
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = l.status();
    assert!(
        st.pieces_have >= 16,
        "the small file's pieces stay verified: {st:?}"
    );
    assert_eq!(
        leecher.connections(),
        0,
        "an errored torrent keeps no peers"
    );

    fs.resize("16m");
    l.resume().unwrap();
    let start = Instant::now();
    while matches!(l.status().state, TorrentState::Error(_)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "resume did not leave the error state"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    let root = PathBuf::from("full");
    assert_same(
        src.path(),
        dst.path(),
        &[root.join("small.bin"), root.join("big.bin")],
    );
}

#[test]
fn a_truncated_file_while_seeding_is_marked_missing_not_served() {
    truncated_while_seeding(false);
}

/// As above after a first leecher got everything, so the seeder uploads
/// from a live read-only map of the file when it is cut.
#[test]
fn a_file_truncated_after_uploads_from_its_map_is_not_served() {
    truncated_while_seeding(true);
}

/// As the first, over uTP only, where the seeder reads blocks into its
/// buffers (adjacent blocks of a piece with one read; a read that fails is
/// tried again block by block): the lost pieces are refused, the others
/// served.
#[test]
fn a_truncated_file_while_seeding_over_utp_is_marked_missing_not_served() {
    truncated_while_seeding_with(false, utp_session);
}

fn utp_session() -> bittern_engine::Session {
    bittern_engine::Session::new(bittern_engine::SessionConfig {
        utp: true,
        tcp: false,
        ..config()
    })
    .unwrap()
}

fn truncated_while_seeding(warm: bool) {
    truncated_while_seeding_with(warm, session);
}

fn truncated_while_seeding_with(warm: bool, session: fn() -> bittern_engine::Session) {
    let src = tempfile::tempdir().unwrap();
    let total = 2 * 1024 * 1024u64;
    let meta = make_torrent(src.path(), "t.bin", &[("t.bin", total)], 128 * 1024, 41);
    let seeder = session();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    if warm {
        let first = tempfile::tempdir().unwrap();
        let leecher = session();
        let opts = TorrentOptions {
            peers: vec![seeder.local_addr()],
            ..TorrentOptions::default()
        };
        let l = leecher
            .add_torrent(meta.clone(), first.path(), opts)
            .unwrap();
        wait_state(&l, TorrentState::Seeding, Duration::from_secs(30));
        assert_same(src.path(), first.path(), &[PathBuf::from("t.bin")]);
    }
    // Cut the file in half under the running seeder.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(src.path().join("t.bin"))
        .unwrap();
    f.set_len(total / 2).unwrap();
    drop(f);

    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![seeder.local_addr()],
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let start = Instant::now();
    while s.status().pieces_have == meta.info.piece_count() || l.status().pieces_have < 8 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "seeder {:?} leecher {:?}",
            s.status(),
            l.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let ss = s.status();
    assert_eq!(
        ss.state,
        TorrentState::Downloading,
        "the seeder knows it lost data"
    );
    assert!(ss.pieces_have >= 8 && ss.pieces_have < 16, "{ss:?}");
    // The leecher holds only verified, correct pieces: the first half.
    let ls = l.status();
    assert_eq!(ls.pieces_have, 8, "{ls:?}");
    assert_eq!(
        ls.peers_connected, 1,
        "refusing lost pieces is no reason to disconnect"
    );
    assert_eq!(ls.hash_failures, 0);
    let got = std::fs::read(dst.path().join("t.bin")).unwrap();
    let orig = std::fs::read(src.path().join("t.bin")).unwrap();
    assert_eq!(&got[..orig.len()], &orig[..]);
}
