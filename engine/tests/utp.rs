//! uTP as a peer transport between two sessions on 127.0.0.1: with TCP off
//! on both sides the only way to connect is the listen port's UDP twin.

use std::time::Duration;

use bittern_engine::{Session, SessionConfig, TorrentOptions, TorrentState};

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
/// the 3 MiB (limited to 2 MiB/s, to watch the peer lists) arrive byte-identical.
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
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while tb.status().state != TorrentState::Seeding {
        assert!(std::time::Instant::now() < end, "{:?}", tb.status());
        let peers = tb.peers();
        if let Some(p) = peers.first() {
            assert!(p.utp, "B's peer is not over utp: {p:?}");
            saw_utp = true;
        }
        a_saw_utp |= ta.peers().iter().any(|p| p.utp && p.incoming);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_same(src.path(), dst.path(), &["u.bin".into()]);
    a_saw_utp |= ta.peers().iter().any(|p| p.utp && p.incoming);
    saw_utp |= tb.peers().iter().any(|p| p.utp && !p.incoming);
    assert!(saw_utp, "B never listed its peer");
    assert!(a_saw_utp, "A never listed an incoming utp peer");
}
