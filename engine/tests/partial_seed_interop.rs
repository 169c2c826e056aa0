//! BEP 21 partial seeds against libtorrent 2.0.8 on 127.0.0.1, both ways:
//! bittern finished with the one file it wants says `upload_only`, and a
//! libtorrent leecher sees that flag yet still gets that file from it; a
//! libtorrent that wants one file (the other at priority 0) and has it
//! says `upload_only` too, and bittern counts it as a seed of what it has
//! and gives it no upload slot. Skipped without libtorrent unless
//! `BITTERN_REQUIRE_INTEROP=1`.
//!
//! libtorrent puts `upload_only` in its extension handshake when it is
//! finished (all wanted pieces) at connect time, as here. A libtorrent that
//! finishes while connected says so only with its own `upload_only`
//! extended message, sent only to peers that list `upload_only` in their
//! `m` dictionary; bittern does (id 3), and the last test checks that such
//! a peer turns into a seed in bittern's eyes.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_engine::{TorrentOptions, TorrentState};

use crate::interop::{
    assert_uploaded, have_libtorrent, init_log, python, seed, write_torrent, Proc,
};
use crate::util::{assert_same, make_torrent, session, tempdir, wait_state};

/// libtorrent's `peer_info.upload_only` flag (2.0.8's Python bindings).
const LT_UPLOAD_ONLY: u64 = 0x2000;

/// bittern downloads only the first of two files from a bittern seeder,
/// which then leaves; a libtorrent leecher wanting both files connects to
/// it, sees it as upload-only and gets the first file byte-identical.
#[test]
fn bittern_partial_seed_serves_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let (src, part, dst, work) = (tempdir(), tempdir(), tempdir(), tempdir());
    // The boundary falls inside a piece, which bittern fetches whole.
    let files = [("a.bin", 1_000_003), ("b.bin", 700_000)];
    let meta = make_torrent(src.path(), "bep21_out", &files, 64 * 1024, 31);
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let seeder = session();
    let s = seed(&seeder, &meta, src.path());

    let partial = session();
    let opts = TorrentOptions {
        wanted_files: vec![true, false],
        peers: vec![seeder.local_addr()],
        // About a second to serve file a, so libtorrent's connection to
        // bittern lives long enough for its 50 ms peer-flag polls (at load
        // 30 a loopback transfer ended, and libtorrent closed the then
        // redundant connection, between two polls).
        upload_limit: Some(1 << 20),
        ..TorrentOptions::default()
    };
    let p = partial
        .add_torrent(meta.clone(), part.path(), opts)
        .unwrap();
    wait_state(&p, TorrentState::Seeding, Duration::from_secs(60));
    let a_pieces = 1_000_003usize.div_ceil(64 * 1024);
    assert_eq!(p.status().pieces_have, a_pieces, "only file a's pieces");
    // The full seeder leaves: libtorrent can get file a from bittern only.
    drop(s);
    drop(seeder);

    let port = partial.local_addr().port().to_string();
    let mut lt = Proc::spawn(
        "libtorrent leecher (of a partial seed)",
        python(
            "lt_partial_leech.py",
            &[
                torrent.as_os_str(),
                dst.path().as_os_str(),
                OsStr::new(&port),
                OsStr::new("60"),
            ],
        ),
        work.path().join("lt_partial_leech.log"),
    );
    let done = lt.expect_line("DONE ", Duration::from_secs(70));
    let (flags, got) = done.split_once(' ').unwrap_or_else(|| lt.fail(&done));
    let (flags, got): (u64, u64) = (flags.parse().unwrap(), got.parse().unwrap());
    assert!(
        flags & LT_UPLOAD_ONLY != 0,
        "libtorrent does not see bittern as upload-only: flags {flags:#x}"
    );
    assert!(got >= 1_000_003, "libtorrent downloaded {got}");
    let status = lt.wait(Duration::from_secs(20));
    if !status.success() {
        lt.fail(&format!("exited with {status}"));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths()[..1]);
    // What libtorrent got came from bittern.
    assert_uploaded(&p, 1_000_003);
}

/// libtorrent wants and has the first file only (the second at priority
/// 0); bittern, wanting both, connects to it, counts it as a seed, downloads
/// the first file from it and never unchokes it.
#[test]
fn libtorrent_partial_seed_is_a_seed_to_bittern() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let (src, ltdir, dst, work) = (tempdir(), tempdir(), tempdir(), tempdir());
    // File a ends on a piece boundary: libtorrent has all of its pieces.
    let plen = 64 * 1024;
    let files = [("a.bin", 16 * plen), ("b.bin", 600_000)];
    let meta = make_torrent(src.path(), "bep21_in", &files, plen, 32);
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let a = &meta.info.file_paths()[0];
    std::fs::create_dir_all(ltdir.path().join(a).parent().unwrap()).unwrap();
    std::fs::copy(src.path().join(a), ltdir.path().join(a)).unwrap();
    let (lt, port) = bittern_testkit::libtorrent::spawn_with_port(
        "libtorrent partial seed",
        python(
            "lt_partial_seed.py",
            &[torrent.as_os_str(), ltdir.path().as_os_str()],
        ),
        work.path().join("lt_partial_seed.log"),
    );

    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let start = Instant::now();
    let peer = loop {
        let st = l.status();
        let peers = l.peers();
        if st.pieces_have == 16 {
            if let [peer] = &peers[..] {
                if peer.seed {
                    break peer.clone();
                }
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            lt.fail(&format!("no partial seed with file a: {st:?} {peers:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let st = l.status();
    assert_eq!(st.seeds_connected, 1, "{st:?}");
    assert_eq!(st.state, TorrentState::Downloading, "file b is nowhere");
    assert_eq!(peer.pieces, 16, "{peer:?}");
    assert!(peer.am_choking && !peer.peer_interested, "{peer:?}");
    assert_eq!(st.uploaded, 0, "{st:?}");
    drop(l);
    drop(leecher);
    assert_same(src.path(), dst.path(), &meta.info.file_paths()[..1]);
}

/// A libtorrent leecher wanting the first file only starts empty, gets it
/// from a bittern that has that file and wants the second (which nobody
/// has), and, finished while connected, tells bittern with its
/// `upload_only` extended message: bittern's peer list shows it as a seed
/// with only file a's pieces, to which it gives no upload slot (without
/// the message it stays a leecher: its handshake, sent before it finished,
/// says nothing).
#[test]
fn libtorrent_finishing_while_connected_becomes_a_seed_to_bittern() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let (src, ltdir, dst, work) = (tempdir(), tempdir(), tempdir(), tempdir());
    let plen = 64 * 1024;
    let files = [("a.bin", 16 * plen), ("b.bin", 600_000)];
    let meta = make_torrent(src.path(), "lt_upload_only", &files, plen, 33);
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let a = &meta.info.file_paths()[0];
    std::fs::create_dir_all(dst.path().join(a).parent().unwrap()).unwrap();
    std::fs::copy(src.path().join(a), dst.path().join(a)).unwrap();
    let bittern = session();
    let t = bittern
        .add_torrent(meta.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&t, TorrentState::Downloading, Duration::from_secs(30));
    assert_eq!(t.status().pieces_have, 16, "file a only");
    let port = bittern.local_addr().port().to_string();
    let mut lt = Proc::spawn(
        "libtorrent leecher of file a",
        python(
            "lt_upload_only_leech.py",
            &[
                torrent.as_os_str(),
                ltdir.path().as_os_str(),
                OsStr::new(&port),
                OsStr::new("90"),
            ],
        ),
        work.path().join("lt_upload_only_leech.log"),
    );
    lt.expect_line("FINISHED ", Duration::from_secs(70));
    let start = Instant::now();
    let peer = loop {
        let peers = t.peers();
        if let Some(p) = peers.iter().find(|p| p.seed) {
            break p.clone();
        }
        if start.elapsed() > Duration::from_secs(60) {
            lt.fail(&format!("libtorrent never became a seed: {peers:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(peer.pieces, 16, "only file a's pieces: {peer:?}");
    assert_eq!(t.status().seeds_connected, 1, "{:?}", t.status());
    assert_same(src.path(), ltdir.path(), &meta.info.file_paths()[..1]);
}
