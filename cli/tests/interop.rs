//! Interop with libtorrent (Debian's `python3-libtorrent`, run by
//! `/usr/bin/python3`): it loads a torrent made by `bittern create` with the
//! same info hash, and a libtorrent leecher downloads it from `bittern seed`;
//! Transmission's `transmission-show` reads it with the same info hash.

use std::process::Command;
use std::time::Duration;

use bittern_wire::Metainfo;

use crate::util::*;

#[test]
fn libtorrent_accepts_bittern_torrents() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    random_file(&tmp.path().join("set/a.bin"), 100_000, 1);
    random_file(&tmp.path().join("set/dír/b.bin"), 20_000, 2);
    random_file(&tmp.path().join("one.bin"), 70_000, 3);
    let cases = [
        (
            create(
                &tmp.path().join("set"),
                &tmp.path().join("set.torrent"),
                &[
                    "-t",
                    "http://127.0.0.1:1/announce",
                    "--private",
                    "--comment",
                    "c",
                ],
            ),
            2,
        ),
        (
            create(
                &tmp.path().join("one.bin"),
                &tmp.path().join("one.torrent"),
                &[],
            ),
            1,
        ),
    ];
    for (t, files) in cases {
        let out = Command::new(PYTHON)
            .arg(script("lt_hash.py"))
            .arg(&t)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        let m = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
        let field = |k: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k} ")))
                .unwrap_or_else(|| panic!("{k} missing in {stdout}"))
                .to_string()
        };
        assert_eq!(field("info_hash"), m.info_hash.to_hex());
        assert_eq!(field("name"), m.info.name);
        assert_eq!(field("total_size"), m.info.total_length().to_string());
        assert_eq!(field("num_pieces"), m.info.piece_count().to_string());
        assert_eq!(field("num_files"), files.to_string());
    }
}

#[test]
fn libtorrent_leecher_downloads_from_bittern_seed() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("pack/big.bin"), 2_500_001, 5);
    random_file(&src.join("pack/small.txt"), 1_234, 6);
    let t = create(
        &src.join("pack"),
        &tmp.path().join("pack.torrent"),
        &["--piece-length", "64KiB"],
    );
    let (_seed, port) = start_seed(&t, &src, &[]);
    let dst = tmp.path().join("lt");
    std::fs::create_dir_all(&dst).unwrap();
    let mut c = Command::new(PYTHON);
    c.arg(script("lt_leech.py"))
        .arg(&t)
        .arg(&dst)
        .arg(port.to_string())
        .arg("60");
    let r = run_limited(c, Duration::from_secs(90));
    assert_eq!(r.code, Some(0), "libtorrent leecher failed: {r:?}");
    assert!(r.stdout.contains("done 2501235"), "{r:?}");
    assert_eq!(tree(&dst.join("pack")), tree(&src.join("pack")));
}

#[test]
fn transmission_accepts_bittern_torrents() {
    const SHOW: &str = "/usr/bin/transmission-show";
    if !bittern_testkit::require(
        "transmission-show (Debian transmission-cli)",
        std::path::Path::new(SHOW).exists(),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    random_file(&tmp.path().join("set/a.bin"), 100_000, 1);
    random_file(&tmp.path().join("set/ü/b.bin"), 20_000, 2);
    let t = create(
        &tmp.path().join("set"),
        &tmp.path().join("set.torrent"),
        &["-t", "http://127.0.0.1:1/announce", "--private"],
    );
    let out = Command::new(SHOW).arg(&t).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let m = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
    assert!(
        stdout.contains(&format!("Hash: {}", m.info_hash.to_hex())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("Piece Count: {}", m.info.piece_count())),
        "{stdout}"
    );
    assert!(stdout.contains("Private torrent"), "{stdout}");
    assert!(stdout.contains("b.bin"), "{stdout}");
}
