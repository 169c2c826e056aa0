//! Many connections to one torrent; resources return to baseline after.

use std::time::Duration;

use bittern_engine::{Session, TorrentOptions, TorrentState};
use bittern_wire::Message;

use crate::fake::Wire;
use crate::util::*;

use bittern_testkit::{poll_until as wait_for, proc_status};

/// Threads of this process serving the torrent whose hash starts `hex8`.
fn peer_threads(hex8: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with(&format!("pw-{hex8}")) || c.starts_with(&format!("pr-{hex8}")))
        .count()
}

#[test]
fn two_hundred_connections_to_one_torrent() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "scale.bin",
        &[("scale.bin", 256 * 1024)],
        16 * 1024,
        20,
    );
    let mut cfg = config();
    cfg.max_peers_per_torrent = 250;
    let seeder = Session::new(cfg).unwrap();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    let threads_before = proc_status("Threads:");

    let mut peers = Vec::new();
    for _ in 0..200 {
        let (mut w, _) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
        w.send(Message::Interested).unwrap();
        peers.push(w);
    }
    assert!(
        wait_for(Duration::from_secs(30), || seeder.connections() == 200),
        "connections: {}",
        seeder.connections()
    );
    assert!(wait_for(Duration::from_secs(5), || s
        .status()
        .peers_connected
        == 200));
    let threads = proc_status("Threads:");
    let rss_kib = proc_status("VmRSS:");
    eprintln!(
        "scale: 200 peers connected; threads {threads_before} -> {threads}; VmRSS {rss_kib} KiB; peak {} KiB",
        proc_status("VmHWM:")
    );
    let hex = meta.info_hash.to_hex();
    assert_eq!(
        peer_threads(&hex[..8]),
        400,
        "a writer and a reader per connection"
    );

    drop(peers);
    assert!(
        wait_for(Duration::from_secs(30), || seeder.connections() == 0),
        "connections left: {}",
        seeder.connections()
    );
    assert!(
        wait_for(Duration::from_secs(10), || peer_threads(&hex[..8]) == 0),
        "peer threads left: {}",
        peer_threads(&hex[..8])
    );
}

#[test]
fn a_seeder_offered_its_own_address_does_not_remember_it() {
    // A tracker hands every seeder its own address back. It is never
    // dialled; it must not be remembered either (an idle torrent would
    // keep its swarm state for it).
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "own.bin",
        &[("own.bin", 64 * 1024)],
        16 * 1024,
        21,
    );
    let (seeder, t) = seeding(&meta, src.path());
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap();
    // One offer: ours first, then another peer's, so that the status that
    // shows the other also shows whether ours was kept.
    t.add_peers(vec![seeder.local_addr(), other_addr]).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || t.status().peers_known > 0),
        "the other address never became known: {:?}",
        t.status()
    );
    assert_eq!(t.status().peers_known, 1, "{:?}", t.status());
    drop(other);
}
