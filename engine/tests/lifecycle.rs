//! Pause, resume, remove, and restarting from resume state.

use std::time::{Duration, Instant};

use bittern_engine::{SeedGoal, Session, TorrentOptions, TorrentState};

use crate::util::*;

/// What the unflushed-stop tests need: a boot id to tie resume state to.
const BOOT_ID: &str = "a boot id (/proc/sys/kernel/random/boot_id)";

#[test]
fn restart_resumes_without_refetching_verified_pieces() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let total = 4 * 1024 * 1024u64;
    let meta = make_torrent(src.path(), "r.bin", &[("r.bin", total)], 64 * 1024, 30);
    let (seeder, _seeding) = seeding(&meta, src.path());

    // First run: slow, stopped part way.
    let mut cfg = config();
    cfg.download_limit = Some(2 * 1024 * 1024);
    let mut first = Session::new(cfg).unwrap();
    let opts = TorrentOptions {
        peers: vec![seeder.local_addr()],
        ..TorrentOptions::default()
    };
    let l = first
        .add_torrent(meta.clone(), dst.path(), opts.clone())
        .unwrap();
    let start = Instant::now();
    while l.status().have_bytes < total / 4 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            l.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.shutdown();
    let had = l.status().have_bytes;
    assert!(had < total, "stopped too late to test anything");
    assert_eq!(l.status().state, TorrentState::Stopped);

    // Second run: the resume state vouches for what was verified.
    let second = session();
    let opts = TorrentOptions {
        seed_goal: SeedGoal::None,
        ..opts
    };
    let l2 = second.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let checked = checked_pieces(&l2);
    assert!(
        checked as u64 * 64 * 1024 >= had,
        "resume found {checked} pieces, had {had} bytes"
    );
    wait_state(&l2, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &["r.bin".into()]);
    let again = l2.status().downloaded;
    assert!(
        again <= total - had,
        "second run fetched {again} bytes; {had} were already verified"
    );
}

/// An exit on completion does not wait for the disk when much is still
/// unwritten: the pieces are recorded with this boot's id, and a restart on
/// the same boot seeds from that record without rechecking or fetching.
/// With the limit at its maximum the stop flushes first and records the
/// pieces as durable.
#[test]
fn exit_on_complete_records_unflushed_pieces_for_this_boot() {
    let src = tempfile::tempdir().unwrap();
    let total = 3 * 1024 * 1024u64;
    let meta = make_torrent(src.path(), "u.bin", &[("u.bin", total)], 64 * 1024, 31);
    let n = meta.info.piece_count();
    let (seeder, _seeding) = seeding(&meta, src.path());
    let boot = bittern_storage::boot_id();
    for (limit, unflushed) in [(0u64, boot.is_some()), (u64::MAX, false)] {
        let dst = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.stop_flush_limit = limit;
        let mut leecher = Session::new(cfg).unwrap();
        leech_until_stopped(&leecher, &meta, dst.path(), seeder.local_addr());
        leecher.shutdown();
        assert_same(src.path(), dst.path(), &["u.bin".into()]);
        let resume = resume_path(dst.path(), &meta);
        let state = bittern_storage::ResumeState::load(&resume).unwrap();
        assert_eq!(state.have, vec![true; n], "limit {limit}");
        assert_eq!(
            state.unflushed_boot,
            if unflushed { boot } else { None },
            "limit {limit}"
        );
        // Restart without peers: seeding straight from the record.
        let again = session();
        let l2 = again
            .add_torrent(meta.clone(), dst.path(), TorrentOptions::default())
            .unwrap();
        let checked = checked_pieces(&l2);
        assert_eq!(checked, n, "limit {limit}");
        wait_state(&l2, TorrentState::Seeding, Duration::from_secs(20));
        assert_eq!(l2.status().downloaded, 0);
    }
}

/// An unflushed stop passes on the pieces earlier saves flushed: after a
/// reboot the resume state still vouches for those, and only the pieces
/// verified since the last save are rechecked (not the whole torrent).
#[test]
fn an_unflushed_stop_keeps_what_earlier_saves_made_durable() {
    // Without a boot id every stop flushes: nothing to test.
    if !bittern_testkit::require(BOOT_ID, bittern_storage::boot_id().is_some()) {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let total = 4 * 1024 * 1024u64;
    let meta = make_torrent(src.path(), "d.bin", &[("d.bin", total)], 64 * 1024, 43);
    let n = meta.info.piece_count();
    let (seeder, _seeding) = seeding(&meta, src.path());
    let dst = tempfile::tempdir().unwrap();
    let mut cfg = config();
    // About two seconds of download, with saves every 200 ms on the way,
    // and a stop that never waits for the disk.
    cfg.download_limit = Some(2 * 1024 * 1024);
    cfg.timing.resume_interval = Duration::from_millis(200);
    cfg.stop_flush_limit = 0;
    let mut leecher = Session::new(cfg).unwrap();
    leech_until_stopped(&leecher, &meta, dst.path(), seeder.local_addr());
    leecher.shutdown();
    assert_same(src.path(), dst.path(), &["d.bin".into()]);
    let resume = resume_path(dst.path(), &meta);
    let mut state = bittern_storage::ResumeState::load(&resume).unwrap();
    assert_eq!(state.unflushed_boot, bittern_storage::boot_id());
    assert_eq!(state.have, vec![true; n]);
    // The last save began before the last piece was verified.
    let durable = state.durable.iter().filter(|d| **d).count();
    assert!(
        durable > 0 && durable < n,
        "{durable} of {n} pieces durable"
    );
    // As after a reboot: the state vouches for the durable pieces, the
    // rest is rechecked and found, nothing is fetched.
    state.unflushed_boot = Some([0x5a; 16]);
    state.save(&resume).unwrap();
    let again = session();
    let l2 = again
        .add_torrent(meta.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    assert_eq!(checked_pieces(&l2), n);
    wait_state(&l2, TorrentState::Seeding, Duration::from_secs(20));
    assert_eq!(l2.status().downloaded, 0);
}

/// A stop weighs the syncs a flush would make, not only the bytes: with
/// the same limit and about the same bytes, twelve files are recorded
/// unflushed (twelve device cache flushes cost more than the limit) while
/// one file is flushed and recorded durable.
#[test]
fn a_stop_counts_each_file_sync_in_the_flush_cost() {
    let Some(boot) = bittern_storage::boot_id() else {
        bittern_testkit::require(BOOT_ID, false);
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("f{i:02}.bin")).collect();
    let files: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 64 * 1024)).collect();
    let many = make_torrent(src.path(), "many", &files, 64 * 1024, 41);
    let one = make_torrent(
        src.path(),
        "one.bin",
        &[("one.bin", 12 * 64 * 1024)],
        64 * 1024,
        42,
    );
    let seeder = session();
    for meta in [&many, &one] {
        let t = seeder
            .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
            .unwrap();
        wait_state(&t, TorrentState::Seeding, Duration::from_secs(20));
    }
    // Twelve syncs at 256 KiB each reach the limit whatever is unwritten;
    // one sync plus 768 KiB of data stays below it.
    let limit = 12 * (256 << 10);
    for (meta, unflushed) in [(&many, Some(boot)), (&one, None)] {
        let dst = tempfile::tempdir().unwrap();
        let mut cfg = config();
        cfg.stop_flush_limit = limit;
        let mut leecher = Session::new(cfg).unwrap();
        leech_until_stopped(&leecher, meta, dst.path(), seeder.local_addr());
        leecher.shutdown();
        let resume = resume_path(dst.path(), meta);
        let state = bittern_storage::ResumeState::load(&resume).unwrap();
        assert_eq!(state.have, vec![true; meta.info.piece_count()]);
        assert_eq!(state.unflushed_boot, unflushed, "{}", meta.info.name);
    }
}

#[test]
fn pause_disconnects_and_resume_finishes() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let total = 2 * 1024 * 1024u64;
    let meta = make_torrent(src.path(), "p.bin", &[("p.bin", total)], 64 * 1024, 31);
    let (seeder, _seeding) = seeding(&meta, src.path());

    let mut cfg = config();
    cfg.download_limit = Some(1024 * 1024);
    let leecher = Session::new(cfg).unwrap();
    let opts = TorrentOptions {
        peers: vec![seeder.local_addr()],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    wait_state(&l, TorrentState::Downloading, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    l.pause().unwrap();
    wait_state(&l, TorrentState::Paused, Duration::from_secs(10));
    let start = Instant::now();
    while leecher.connections() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "paused torrent kept connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the controller publish what arrived before the peers closed:
    // its tick can come late on a loaded machine, so wait until two
    // readings 600 ms apart agree (a paused torrent that kept downloading
    // never gets there).
    let mut paused_at = l.status().downloaded;
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(600));
        let now = l.status().downloaded;
        if now == paused_at {
            break;
        }
        paused_at = now;
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "a paused torrent must not download: {paused_at} bytes and counting"
        );
    }
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        l.status().downloaded,
        paused_at,
        "a paused torrent must not download"
    );
    l.resume().unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &["p.bin".into()]);
}

#[test]
fn remove_stops_the_torrent_and_keeps_the_data() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "x.bin", &[("x.bin", 300_000)], 32 * 1024, 32);
    let (seeder, s) = seeding(&meta, src.path());
    s.remove();
    assert!(s.is_finished());
    assert_eq!(s.status().state, TorrentState::Stopped);
    assert!(src.path().join("x.bin").exists());
    // The same torrent can be added again.
    let again = seeder
        .add_torrent(meta, src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&again, TorrentState::Seeding, Duration::from_secs(20));
}

/// A handle kept after its torrent was removed and added again (a UI
/// holding on to it) must not unregister the new torrent: its `remove`
/// does nothing, the new torrent keeps running and still refuses a
/// duplicate. It used to remove whatever entry had that info hash, so a
/// third `add_torrent` started a second controller on the same files.
#[test]
fn a_stale_handle_cannot_remove_the_torrent_added_again() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "r.bin", &[("r.bin", 64 * 1024)], 16 * 1024, 9);
    let s = session();
    let first = s
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&first, TorrentState::Seeding, Duration::from_secs(20));
    first.remove();
    let second = s
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&second, TorrentState::Seeding, Duration::from_secs(20));
    first.remove();
    assert!(!second.is_finished());
    assert_eq!(second.status().state, TorrentState::Seeding);
    let third = s.add_torrent(meta.clone(), src.path(), TorrentOptions::default());
    assert!(
        matches!(third, Err(bittern_engine::Error::DuplicateTorrent(_))),
        "a second live torrent with the same info hash was accepted"
    );
    // The new torrent is still routed: a peer naming it gets a handshake.
    assert!(
        crate::fake::Wire::connect(s.local_addr(), meta.info_hash).is_ok(),
        "the listener no longer routes to the torrent"
    );
    second.remove();
    let fourth = s.add_torrent(meta, src.path(), TorrentOptions::default());
    assert!(
        fourth.is_ok(),
        "removing the live handle frees the info hash"
    );
}

/// Removing a torrent during its startup check cancels the check: the
/// controller never waits for it (it runs on the hashing pool, in chunks
/// of 16 MiB that look at the stop), so `remove` returns long before a
/// full check would have ended. It used to wait for the whole check.
#[test]
fn remove_during_the_startup_check_cancels_it() {
    let src = tempfile::tempdir().unwrap();
    let total = 64 * 1024 * 1024u64;
    let meta = make_torrent(src.path(), "c.bin", &[("c.bin", total)], 256 * 1024, 33);
    let s = session();
    // A full check, for scale. The stop records the pieces it found in
    // resume state; that file is deleted so the next add checks everything
    // again.
    let start = Instant::now();
    let t = s
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&t, TorrentState::Seeding, Duration::from_secs(120));
    let full = start.elapsed();
    t.remove();
    let resume = resume_path(src.path(), &meta);
    assert!(
        resume.exists(),
        "pieces found by hashing are saved at the stop"
    );
    std::fs::remove_file(&resume).unwrap();
    let start = Instant::now();
    let t = s
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    std::thread::sleep(full / 8);
    assert_eq!(t.status().state, TorrentState::Checking);
    t.remove();
    let cancelled = start.elapsed();
    eprintln!("full check {full:?}, removed during the check after {cancelled:?}");
    assert_eq!(t.status().state, TorrentState::Stopped);
    assert!(
        cancelled < full * 3 / 4,
        "remove waited for the check: {cancelled:?} of {full:?}"
    );
    // The session is not stuck behind it.
    let again = s
        .add_torrent(meta, src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&again, TorrentState::Seeding, Duration::from_secs(120));
}
