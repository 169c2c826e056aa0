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
    let mut c = bittern_testkit::libtorrent::leech_cmd(&t, &dst, port, 60);
    // plain BitTorrent only, as this test has always run libtorrent
    c.env("BITTERN_LT_ENC", "disabled");
    let r = run_limited(c, Duration::from_secs(90));
    assert_eq!(r.code, Some(0), "libtorrent leecher failed: {r:?}");
    assert!(r.stdout.contains("WANTED_DONE 2501235"), "{r:?}");
    assert_eq!(tree(&dst.join("pack")), tree(&src.join("pack")));
}

/// `bittern seed` of a hybrid torrent (`bittern create --hybrid`) to a
/// libtorrent 2.0 leecher, which holds the piece layers from the .torrent
/// and checks every piece against both halves; the files arrive whole.
/// (The v2 wire itself, upgrade and hash requests, is tested in the
/// engine's `v2seed` tests.)
#[test]
fn libtorrent_leecher_downloads_hybrid_from_bittern_seed() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("pack/big.bin"), 1_000_001, 7);
    random_file(&src.join("pack/small.txt"), 1_234, 8);
    let t = create(
        &src.join("pack"),
        &tmp.path().join("pack.torrent"),
        &["--hybrid", "--piece-length", "64KiB"],
    );
    let (_seed, port) = start_seed(&t, &src, &[]);
    let dst = tmp.path().join("lt");
    std::fs::create_dir_all(&dst).unwrap();
    let mut c = bittern_testkit::libtorrent::leech_cmd(&t, &dst, port, 60);
    // plain BitTorrent only, as this test has always run libtorrent
    c.env("BITTERN_LT_ENC", "disabled");
    let r = run_limited(c, Duration::from_secs(90));
    assert_eq!(r.code, Some(0), "libtorrent leecher failed: {r:?}");
    assert!(r.stdout.contains("WANTED_DONE 1001235"), "{r:?}");
    // libtorrent writes no padding files for the hybrid's BEP 47 padding
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

/// `bittern info` on v2-only and hybrid torrents libtorrent made: the v1
/// and v2 info hashes and the format equal libtorrent's.
#[test]
fn info_on_libtorrent_v2_and_hybrid_torrents() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    random_file(&tmp.path().join("set/a.bin"), 100_000, 1);
    random_file(&tmp.path().join("set/dír/b.bin"), 20_000, 2);
    let lt_v2 = script("lt_v2.py");
    for kind in ["v2", "hybrid"] {
        let t = tmp.path().join(format!("{kind}.torrent"));
        let out = Command::new(PYTHON)
            .current_dir(tmp.path())
            .arg(&lt_v2)
            .arg(&t)
            .args(["set", kind, "32768"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let lt = String::from_utf8_lossy(&out.stdout);
        let field = |k: &str| {
            lt.lines()
                .find_map(|l| l.strip_prefix(&format!("{k} ")))
                .unwrap_or_else(|| panic!("{k} missing in {lt}"))
                .to_string()
        };
        let r = bittern(["info", "--json", t.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["info_hash_v2"], field("v2"), "{kind}");
        assert_eq!(v["meta_version"], 2);
        let wire = if kind == "v2" {
            field("v2")[..40].to_string()
        } else {
            field("v1")
        };
        assert_eq!(v["info_hash"], wire, "{kind}");
        let roots: Vec<&str> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["pieces_root"].as_str())
            .collect();
        assert_eq!(roots.len(), 2, "{kind}: {roots:?}");
        for root in roots {
            assert!(lt.contains(root), "{kind}: root {root} not libtorrent's");
        }
        // the human output shows the v2 hash (and the v1 one for hybrids)
        let r = bittern(["info", t.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(
            r.stdout
                .contains(&format!("info hash v2:  {}", field("v2"))),
            "{}",
            r.stdout
        );
        if kind == "hybrid" {
            assert!(r
                .stdout
                .contains(&format!("info hash v1:  {}", field("v1"))));
        }
        // every file's merkle root, as libtorrent has it, in the text too
        let roots_text = r.stdout.split("pieces roots:").nth(1).unwrap_or("");
        for f in v["files"].as_array().unwrap() {
            if let (Some(root), Some(path)) = (f["pieces_root"].as_str(), f["path"].as_str()) {
                assert!(
                    roots_text.contains(&format!("  {root}  {path}")),
                    "{kind}: {}",
                    r.stdout
                );
            }
        }
        // both verify (v2-only through its merkle hashes, a hybrid through
        // both halves; tests/verify_v2.rs covers corruption)
        let dir = tmp.path().to_str().unwrap();
        let r = bittern(["verify", "-d", dir, t.to_str().unwrap()]);
        assert_eq!(r.code, Some(0), "{r:?}");
        assert!(r.stdout.contains("all 5 pieces OK"), "{kind}: {r:?}");
    }
}

/// A libtorrent-made torrent of `set` (`kind` v2 or hybrid, 32 KiB pieces)
/// seeded by libtorrent: the torrent file and libtorrent's port.
fn libtorrent_seeds(dir: &std::path::Path, kind: &str) -> (std::path::PathBuf, Proc) {
    let t = dir.join(format!("{kind}.torrent"));
    let out = Command::new(PYTHON)
        .current_dir(dir)
        .arg(script("lt_v2.py"))
        .arg(&t)
        .args(["set", kind, "32768"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut c = Command::new(PYTHON);
    c.arg(script("lt_seed.py")).arg(&t).arg(dir);
    (t, Proc::spawn(c))
}

/// `bittern download` of v2-only and hybrid torrents libtorrent made and
/// seeds: every file arrives byte for byte, checked against the merkle
/// hashes (and the SHA-1 pieces for the hybrid), with no hash failure.
#[test]
fn bittern_downloads_v2_and_hybrid_from_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    for kind in ["v2", "hybrid"] {
        let tmp = tempfile::tempdir().unwrap();
        random_file(&tmp.path().join("set/a.bin"), 300_001, 11);
        random_file(&tmp.path().join("set/sub/b.bin"), 70_000, 12);
        random_file(&tmp.path().join("set/c.bin"), 5, 13);
        let (t, lt) = libtorrent_seeds(tmp.path(), kind);
        let port = lt.wait_line("PORT ", Duration::from_secs(30));
        let port = port.trim_start_matches("PORT ").trim().to_string();
        let dst = tmp.path().join("dst");
        let r = download(
            t.to_str().unwrap(),
            dst.to_str().unwrap(),
            &["--peer", &format!("127.0.0.1:{port}"), "--exit-on-complete"],
            Duration::from_secs(90),
        );
        assert_eq!(r.code, Some(0), "{kind}: {r:?}");
        let (_, have, of) = summary(&r.stdout);
        assert_eq!((have, of), (370_006, 370_006), "{kind}: {r:?}");
        assert!(!r.stderr.contains("hash fail"), "{kind}: {r:?}");
        assert_eq!(
            tree(&dst.join("set")),
            tree(&tmp.path().join("set")),
            "{kind}"
        );
        // the same from a magnet link: `btmh` alone for v2 (the piece
        // layers then come by hash request), `btih` and `btmh` for hybrid
        let m = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
        let v2 = m.info_hash_v2.unwrap().to_hex();
        let link = if kind == "v2" {
            format!("magnet:?xt=urn:btmh:1220{v2}&dn=set")
        } else {
            format!(
                "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{v2}&dn=set",
                m.info_hash.to_hex()
            )
        };
        let dst = tmp.path().join("dst-magnet");
        let r = download(
            &link,
            dst.to_str().unwrap(),
            &["--peer", &format!("127.0.0.1:{port}"), "--exit-on-complete"],
            Duration::from_secs(90),
        );
        assert_eq!(r.code, Some(0), "{kind} magnet: {r:?}");
        assert_eq!(
            tree(&dst.join("set")),
            tree(&tmp.path().join("set")),
            "{kind} magnet"
        );
    }
}

/// `bittern seed` of a v2-only torrent (`bittern create --v2`) to a
/// libtorrent 2.0 leecher, which checks every piece against the merkle
/// hashes: the files arrive whole.
#[test]
fn libtorrent_leecher_downloads_v2_only_from_bittern_seed() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("pack/big.bin"), 1_000_001, 9);
    random_file(&src.join("pack/small.txt"), 1_234, 10);
    let t = create(
        &src.join("pack"),
        &tmp.path().join("pack.torrent"),
        &["--v2", "--piece-length", "64KiB"],
    );
    let m = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
    assert!(!m.info.version.has_v1(), "v2-only");
    let (_seed, port) = start_seed(&t, &src, &[]);
    let dst = tmp.path().join("lt");
    std::fs::create_dir_all(&dst).unwrap();
    let mut c = bittern_testkit::libtorrent::leech_cmd(&t, &dst, port, 60);
    // plain BitTorrent only, as this test has always run libtorrent
    c.env("BITTERN_LT_ENC", "disabled");
    let r = run_limited(c, Duration::from_secs(90));
    assert_eq!(r.code, Some(0), "libtorrent leecher failed: {r:?}");
    assert!(r.stdout.contains("WANTED_DONE 1001235"), "{r:?}");
    assert_eq!(tree(&dst.join("pack")), tree(&src.join("pack")));
}

/// `bittern create --v2` and `--hybrid` write the same info dictionary,
/// byte for byte, as libtorrent 2.0.8 for the same files and piece size
/// (single file and a directory with an empty file, nested directories
/// and sizes off the piece grid), and libtorrent loads them with the same
/// hashes.
#[test]
fn create_v2_and_hybrid_equal_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    random_file(&tmp.path().join("set/a.bin"), 100_000, 1);
    random_file(&tmp.path().join("set/dír/b.bin"), 20_000, 2);
    random_file(&tmp.path().join("set/dír/c.bin"), 65_536, 3);
    std::fs::write(tmp.path().join("set/empty"), b"").unwrap();
    random_file(&tmp.path().join("one.bin"), 70_000, 4);
    let lt_v2 = script("lt_v2.py");
    for name in ["set", "one.bin"] {
        for (kind, flag) in [("v2", "--v2"), ("hybrid", "--hybrid")] {
            for pl in ["16KiB", "32KiB"] {
                let what = format!("{name} {kind} {pl}");
                let ours = create(
                    &tmp.path().join(name),
                    &tmp.path().join(format!("ours-{kind}-{pl}-{name}.torrent")),
                    &[flag, "--piece-length", pl],
                );
                let theirs = tmp.path().join(format!("lt-{kind}-{pl}-{name}.torrent"));
                let bytes = if pl == "16KiB" { "16384" } else { "32768" };
                let out = Command::new(PYTHON)
                    .current_dir(tmp.path())
                    .arg(&lt_v2)
                    .arg(&theirs)
                    .args([name, kind, bytes])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{what}: {out:?}");
                let ours_m = Metainfo::from_bytes(&std::fs::read(&ours).unwrap()).unwrap();
                let lt_m = Metainfo::from_bytes(&std::fs::read(&theirs).unwrap()).unwrap();
                assert!(
                    ours_m.info_bytes == lt_m.info_bytes,
                    "{what}: info dictionaries differ:\n{}\n{}",
                    String::from_utf8_lossy(&ours_m.info_bytes),
                    String::from_utf8_lossy(&lt_m.info_bytes)
                );
                assert_eq!(ours_m.piece_layers, lt_m.piece_layers, "{what}");
                // libtorrent reads ours (piece layers included) with the same hashes
                let check = Command::new(PYTHON)
                    .args([
                        "-c",
                        "import sys, libtorrent as lt; h = lt.torrent_info(sys.argv[1]).info_hashes(); print(h.v2, h.v1 if h.has_v1() else '-')",
                    ])
                    .arg(&ours)
                    .output()
                    .unwrap();
                assert!(check.status.success(), "{what}: {check:?}");
                let lt_says = String::from_utf8_lossy(&check.stdout).trim().to_string();
                let v1 = ours_m.info_hash_v1().map_or("-".into(), |h| h.to_hex());
                assert_eq!(
                    lt_says,
                    format!("{} {v1}", ours_m.info_hash_v2.unwrap()),
                    "{what}"
                );
            }
        }
    }
}
