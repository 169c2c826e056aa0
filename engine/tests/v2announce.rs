//! A hybrid torrent (BEP 52) is announced under both its names, as
//! libtorrent does: its v1 hash and its truncated v2 hash, to trackers and
//! on the DHT, so a peer that knows only one of them finds it (and the
//! listener routes either to it).

use std::net::SocketAddr;
use std::time::Duration;

use bittern_dht::{Config, Runner};
use bittern_engine::{Session, SessionConfig, TorrentOptions, TorrentState};
use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_wire::{Magnet, MetaVersion};

use crate::dht::{dht_session, stored};
use crate::util::{assert_same, config, tempdir, wait_state};
use crate::v2seed::v2_torrent;

/// A `btmh`-only magnet link (the v2 hash alone) of `v2`, with `extra`
/// (`&tr=...`) appended.
fn btmh_only(v2: &str, extra: &str) -> Magnet {
    let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{v2}&dn=hyb.bin{extra}")).unwrap();
    assert!(m.info_hash.is_none());
    m
}

/// A seeds a hybrid with a tracker: the tracker has A under the v1 hash
/// and under the truncated v2 hash. B, given only the `btmh` magnet and the
/// tracker (no peer, no DHT), finds A there, fetches the metadata and the
/// piece layers from it, and downloads byte-identical.
#[test]
fn hybrid_is_announced_to_trackers_under_both_hashes() {
    let tracker = TrackerServer::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerConfig::default(),
    )
    .unwrap();
    let url = tracker.announce_url();
    let (src, dst) = (tempdir(), tempdir());
    let (mut m, _) = v2_torrent(src.path(), "hyb.bin", 1_000_001, MetaVersion::Hybrid);
    // (outside the info dictionary: the hashes stay)
    m.announce = Some(url.clone());
    m.announce_list = vec![vec![url.clone()]];
    let v2 = m.info_hash_v2.unwrap();
    let truncated = v2.truncated();
    assert_ne!(truncated, m.info_hash);
    let announcing = || {
        let _ = env_logger::builder().is_test(true).try_init();
        Session::new(SessionConfig {
            announce: true,
            ..config()
        })
        .unwrap()
    };
    let a = announcing();
    let ta = a
        .add_torrent(m.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    bittern_testkit::wait_until("A on the tracker", Duration::from_secs(20), || {
        tracker.peer_count(&m.info_hash) == 1 && tracker.peer_count(&truncated) == 1
    });

    let b = announcing();
    let magnet = btmh_only(&v2.to_hex(), &format!("&tr={url}"));
    let tb = b
        .add_magnet(&magnet, dst.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &m.info.file_paths());
    assert_eq!(tb.status().hash_failures, 0);
    drop(b);
    drop(a);
    tracker.shutdown();
}

/// The same on the DHT: A's node announces the hybrid under both hashes
/// (the bootstrap node stores A for each), and B, with the DHT as its only
/// peer source and the `btmh` magnet, finds A and downloads.
#[test]
fn hybrid_is_announced_on_the_dht_under_both_hashes() {
    let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let boot = [runner.local_addr()];
    let (src, dst) = (tempdir(), tempdir());
    let (m, _) = v2_torrent(src.path(), "hyb.bin", 1_000_001, MetaVersion::Hybrid);
    let v2 = m.info_hash_v2.unwrap();
    let a = dht_session(&boot);
    let ta = a
        .add_torrent(m.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    let a_addr = a.local_addr();
    bittern_testkit::wait_until("A's announces", Duration::from_secs(20), || {
        stored(&runner, m.info_hash).contains(&a_addr)
            && stored(&runner, v2.truncated()).contains(&a_addr)
    });

    let b = dht_session(&boot);
    let tb = b
        .add_magnet(
            &btmh_only(&v2.to_hex(), ""),
            dst.path(),
            TorrentOptions::default(),
        )
        .unwrap();
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &m.info.file_paths());
}
