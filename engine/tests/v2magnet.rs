//! v2 magnet links (BEP 52): a `btmh`-only link is fetched under the
//! truncated v2 hash, its info dictionary checked by SHA-256, then the
//! piece layers it lacks asked with hash requests and proven against each
//! file's root; a hybrid link (`btih` and `btmh`) is found by either hash.

use std::net::SocketAddr;
use std::time::Duration;

use bittern_engine::{TorrentOptions, TorrentState};
use bittern_wire::{InfoHash, Magnet, MetaVersion, Metainfo};

use crate::interop::{have_libtorrent, init_log, python, wait_for, Proc};
use crate::util::{assert_same, session, tempdir};
use crate::v2seed::{connect, v2_torrent};

/// libtorrent seeds a v2-only torrent; bittern, given only its `btmh`
/// magnet, fetches the info dictionary (SHA-256 checked), the file's piece
/// layer by hash request, then the data: byte for byte, no hash failure,
/// and the saved `.torrent` holds the piece layer the creator made.
#[test]
fn bittern_downloads_btmh_only_magnet_from_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    // 31 pieces of 32 KiB: a piece layer the info dictionary lacks
    let (m, _) = v2_torrent(src.path(), "btmh.bin", 1_000_001, MetaVersion::V2);
    let layer = m.piece_layer(&m.info.files[0]).unwrap().to_vec();
    assert_eq!(layer.len(), 31);
    let t = src.path().join("btmh.bin.torrent");
    let (lt, port) = bittern_testkit::libtorrent::spawn_with_port(
        "libtorrent seeder",
        bittern_testkit::libtorrent::seed_cmd(&t, src.path()),
        work.path().join("lt_seed.log"),
    );
    let uri = format!(
        "magnet:?xt=urn:btmh:1220{}&dn=btmh.bin",
        m.info_hash_v2.unwrap().to_hex()
    );
    let magnet = Magnet::parse(&uri).unwrap();
    assert!(magnet.info_hash.is_none());
    let s = session();
    let h = s
        .add_magnet(
            &magnet,
            dst.path(),
            TorrentOptions {
                peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(h.info_hash(), m.info_hash, "the truncated v2 hash");
    wait_for(&h, TorrentState::Seeding, Duration::from_secs(90), &lt);
    assert_eq!(h.status().hash_failures, 0);
    assert_same(src.path(), dst.path(), &m.info.file_paths());
    let saved = Metainfo::from_bytes(&h.torrent_file().unwrap()).unwrap();
    assert_eq!(saved.info_hash_v2, m.info_hash_v2);
    assert_eq!(
        saved.piece_layer(&saved.info.files[0]),
        Some(&layer[..]),
        "the piece layer fetched by hash request"
    );
}

/// A peer naming a magnet's torrent by its truncated v2 hash reaches it
/// while the metadata is fetched: for a hybrid link (also by its v1
/// hash) and a `btmh`-only one; each is answered with the hash it named
/// and the v2 bit.
#[test]
fn v2_and_hybrid_magnets_are_routed_by_their_v2_hash() {
    let v1 = "0123456789abcdef0123456789abcdef01234567";
    let v2 = "aa".repeat(32);
    let truncated = InfoHash::from_hex(&v2[..40]).unwrap();
    let dir = tempdir();
    let s = session();
    let hybrid = Magnet::parse(&format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}")).unwrap();
    let h = s
        .add_magnet(&hybrid, dir.path().join("h"), TorrentOptions::default())
        .unwrap();
    assert_eq!(h.info_hash().to_hex(), v1);
    let (_c, theirs) = connect(s.local_addr(), truncated, 1);
    assert_eq!(theirs.info_hash, truncated, "routed by the v2 hash");
    assert!(theirs.supports_v2());
    let v1 = InfoHash::from_hex(v1).unwrap();
    let (_c, theirs) = connect(s.local_addr(), v1, 2);
    assert_eq!(theirs.info_hash, truncated, "v1 + upgrade bit: v2");
    assert!(s
        .torrents()
        .iter()
        .all(|t| t.status().state == TorrentState::FetchingMetadata));

    let v2only = "bb".repeat(32);
    let truncated = InfoHash::from_hex(&v2only[..40]).unwrap();
    let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{v2only}")).unwrap();
    let h = s
        .add_magnet(&m, dir.path().join("v"), TorrentOptions::default())
        .unwrap();
    assert_eq!(h.info_hash(), truncated);
    let (_c, theirs) = connect(s.local_addr(), truncated, 3);
    assert_eq!(theirs.info_hash, truncated);
    assert!(theirs.supports_v2());
}

/// libtorrent seeds a hybrid torrent; bittern, given its hybrid magnet
/// (`btih` and `btmh`), fetches the info dictionary and then, because it
/// holds a `file tree`, the piece layers by hash request over the
/// upgraded (v2) connection. The `.torrent` it keeps is complete: its
/// piece layer is the creator's, and libtorrent reads it with the same v1
/// and v2 hashes. The data is byte-identical.
#[test]
fn hybrid_magnet_fetches_piece_layers_from_libtorrent() {
    hybrid_magnet_from_libtorrent(true);
}

/// The same with a `btih`-only magnet: bittern learns the v2 hash from the
/// info dictionary, dials libtorrent again under its truncation (a v2
/// connection) and fetches the piece layers, so its `.torrent` is as
/// complete as with a hybrid link.
#[test]
fn btih_only_magnet_to_a_hybrid_fetches_piece_layers_from_libtorrent() {
    hybrid_magnet_from_libtorrent(false);
}

/// libtorrent seeds a hybrid; bittern downloads it from a magnet with its
/// v1 hash, and its v2 hash when `with_btmh`.
fn hybrid_magnet_from_libtorrent(with_btmh: bool) {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let (m, _) = v2_torrent(src.path(), "hyb.bin", 1_000_001, MetaVersion::Hybrid);
    assert!(m.info.version.has_v1() && m.info.version.has_v2());
    let file = m
        .info
        .files
        .iter()
        .find(|f| !f.padding)
        .expect("the data file");
    let layer = m.piece_layer(file).unwrap().to_vec();
    assert_eq!(layer.len(), 31);
    let t = src.path().join("hyb.bin.torrent");
    let mut lt = Proc::spawn(
        "libtorrent seeder",
        python("lt_seed.py", &[t.as_os_str(), src.path().as_os_str()]),
        work.path().join("lt_seed.log"),
    );
    let port: u16 = lt
        .expect_line("PORT ", Duration::from_secs(30))
        .parse()
        .unwrap();
    let mut uri = format!("magnet:?xt=urn:btih:{}&dn=hyb.bin", m.info_hash.to_hex());
    if with_btmh {
        uri += &format!("&xt=urn:btmh:1220{}", m.info_hash_v2.unwrap().to_hex());
    }
    let magnet = Magnet::parse(&uri).unwrap();
    assert_eq!(magnet.info_hash_v2.is_some(), with_btmh);
    let s = session();
    let h = s
        .add_magnet(
            &magnet,
            dst.path(),
            TorrentOptions {
                peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        h.info_hash(),
        m.info_hash,
        "a hybrid is known by its v1 hash"
    );
    wait_for(&h, TorrentState::Seeding, Duration::from_secs(90), &lt);
    assert_eq!(h.status().hash_failures, 0);
    assert_same(src.path(), dst.path(), &m.info.file_paths());
    let bytes = h.torrent_file().unwrap();
    let saved = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(saved.info_hash, m.info_hash);
    assert_eq!(saved.info_hash_v2, m.info_hash_v2);
    let f = saved.info.files.iter().find(|f| !f.padding).unwrap();
    assert_eq!(
        saved.piece_layer(f),
        Some(&layer[..]),
        "the piece layer fetched by hash request"
    );
    // libtorrent reads the saved .torrent with the same two hashes
    let path = work.path().join("saved.torrent");
    std::fs::write(&path, &bytes[..]).unwrap();
    let out = std::process::Command::new(crate::interop::PYTHON)
        .arg("-c")
        .arg(
            "import sys, libtorrent as lt\n\
             h = lt.torrent_info(sys.argv[1]).info_hashes()\n\
             print(str(h.v1), str(h.v2))",
        )
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        vec![m.info_hash.to_hex(), m.info_hash_v2.unwrap().to_hex()],
        "{out:?}"
    );
}
