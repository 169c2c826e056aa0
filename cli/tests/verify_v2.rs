//! `bittern verify` of v2-only and hybrid torrents (BEP 52), made by
//! libtorrent and by `bittern create`: all pieces pass on intact data; a
//! flipped byte fails exactly its piece of its file (a multi-piece file
//! with a short last piece, a file smaller than a piece whose 3 leaves pad
//! to 4); a hybrid whose SHA-1 pieces and merkle hashes disagree is an
//! error naming the pieces.

use std::path::Path;
use std::process::Command;

use bittern_wire::Metainfo;

use crate::util::*;

const PLEN: u64 = 65536;

fn lt_v2(dir: &Path, out: &Path, name: &str, kind: &str) {
    let script = bittern_testkit::libtorrent::script("lt_v2.py");
    let r = Command::new(PYTHON)
        .current_dir(dir)
        .arg(script)
        .arg(out)
        .args([name, kind, &PLEN.to_string()])
        .output()
        .unwrap();
    assert!(r.status.success(), "lt_v2.py: {r:?}");
}

/// Torrent piece index of byte `offset` of the file whose path ends with
/// `name`.
fn piece_of(m: &Metainfo, name: &str, offset: u64) -> usize {
    let mut start = 0;
    for f in &m.info.files {
        if !f.padding && f.path.last().is_some_and(|p| p == name) {
            return ((start + offset) / m.info.piece_length) as usize;
        }
        start += f.length;
    }
    panic!("{name} not in torrent");
}

fn flip(path: &Path, offset: usize) {
    let mut d = std::fs::read(path).unwrap();
    d[offset] ^= 0x40;
    std::fs::write(path, d).unwrap();
}

#[test]
fn verify_v2_and_hybrid_pin_corrupt_pieces() {
    if !libtorrent_available() {
        return;
    }
    for creator in ["libtorrent", "bittern"] {
        for kind in ["v2", "hybrid"] {
            let what = format!("{creator} {kind}");
            let tmp = tempfile::tempdir().unwrap();
            let set = tmp.path().join("set");
            // 5 pieces, the last of 37,856 bytes (3 leaves); 2 leaves; 3
            // leaves in a file smaller than a piece; an empty file
            let a = random_file(&set.join("a.bin"), 4 * 65536 + 37_856, 1);
            random_file(&set.join("sub/b.bin"), 20_000, 2);
            random_file(&set.join("sub/c.bin"), 40_000, 3);
            std::fs::write(set.join("empty"), b"").unwrap();
            let t = tmp.path().join("t.torrent");
            if creator == "libtorrent" {
                lt_v2(tmp.path(), &t, "set", kind);
            } else {
                create(&set, &t, &[&format!("--{kind}"), "--piece-length", "64KiB"]);
            }
            let m = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
            assert_eq!(m.info.version.has_v1(), kind == "hybrid", "{what}");
            let pieces = m.info.piece_count();
            assert_eq!(pieces, 7, "{what}");
            let dir = tmp.path().to_str().unwrap();
            let verify = || bittern(["verify", "-d", dir, t.to_str().unwrap()]);

            let r = verify();
            assert_eq!(r.code, Some(0), "{what}: {r:?}");
            assert!(r.stdout.contains("all 7 pieces OK"), "{what}: {r:?}");

            // a byte in a.bin's third piece and the last byte of c.bin
            flip(&set.join("a.bin"), 2 * 65536 + 5);
            flip(&set.join("sub/c.bin"), 39_999);
            let pa = piece_of(&m, "a.bin", 2 * 65536);
            let pc = piece_of(&m, "c.bin", 0);
            let r = verify();
            assert_eq!(r.code, Some(3), "{what}: {r:?}");
            assert!(
                r.stdout.contains("2 bad pieces of 7"),
                "{what}: {}",
                r.stdout
            );
            assert!(
                r.stdout
                    .contains(&format!("set/a.bin (1 bad pieces: {pa})")),
                "{what}: {}",
                r.stdout
            );
            assert!(
                r.stdout
                    .contains(&format!("set/sub/c.bin (1 bad pieces: {pc})")),
                "{what}: {}",
                r.stdout
            );
            assert!(!r.stdout.contains("b.bin"), "{what}: {}", r.stdout);
            // both halves of a hybrid see the same corruption
            assert!(!r.stderr.contains("disagree"), "{what}: {r:?}");

            // the last, short piece of a.bin; then a.bin cut short
            std::fs::write(set.join("a.bin"), &a).unwrap();
            flip(&set.join("a.bin"), a.len() - 1);
            let r = verify();
            let pl = piece_of(&m, "a.bin", a.len() as u64 - 1);
            assert!(
                r.stdout
                    .contains(&format!("set/a.bin (1 bad pieces: {pl})")),
                "{what}: {}",
                r.stdout
            );
            std::fs::write(set.join("a.bin"), &a[..65536 + 100]).unwrap();
            let r = verify();
            let p0 = piece_of(&m, "a.bin", 0);
            assert!(
                r.stdout
                    .contains(&format!("set/a.bin (4 bad pieces: {}-{})", p0 + 1, p0 + 4)),
                "{what}: {}",
                r.stdout
            );
            std::fs::remove_file(set.join("sub/c.bin")).unwrap();
            let r = verify();
            assert!(
                r.stdout.contains("set/sub/c.bin (missing)"),
                "{what}: {}",
                r.stdout
            );
        }
    }
}

/// A hybrid whose SHA-1 `pieces` come from other data than its merkle
/// hashes (same files, one piece's content changed): on the merkle half's
/// data, verify fails that piece and says the halves disagree.
#[test]
fn verify_hybrid_halves_disagree() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let set = tmp.path().join("set");
    random_file(&set.join("a.bin"), 3 * 65536 + 1000, 1);
    random_file(&set.join("b.bin"), 5000, 2);
    let good = tmp.path().join("good.torrent");
    create(&set, &good, &["--hybrid", "--piece-length", "64KiB"]);
    flip(&set.join("a.bin"), 65536 + 7);
    let other = tmp.path().join("other.torrent");
    create(&set, &other, &["--hybrid", "--piece-length", "64KiB"]);
    flip(&set.join("a.bin"), 65536 + 7);
    // good's info dictionary with other's SHA-1 pieces
    let spliced = tmp.path().join("spliced.torrent");
    let r = Command::new(PYTHON)
        .args([
            "-c",
            "import sys, libtorrent as lt\n\
             g = lt.bdecode(open(sys.argv[1], 'rb').read())\n\
             o = lt.bdecode(open(sys.argv[2], 'rb').read())\n\
             g[b'info'][b'pieces'] = o[b'info'][b'pieces']\n\
             open(sys.argv[3], 'wb').write(lt.bencode(g))",
        ])
        .args([&good, &other, &spliced])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    let dir = tmp.path().to_str().unwrap();
    let r = bittern(["verify", "-d", dir, good.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{r:?}");
    let r = bittern(["verify", "-d", dir, spliced.to_str().unwrap()]);
    assert_eq!(r.code, Some(3), "{r:?}");
    assert!(
        r.stderr
            .contains("v1 and v2 hashes disagree on 1 pieces (1)"),
        "{r:?}"
    );
    assert!(r.stdout.contains("set/a.bin (1 bad pieces: 1)"), "{r:?}");
}

/// Single-file v2 and hybrid torrents (the file is `<dir>/<name>`, no
/// padding): a flipped byte fails its piece only.
#[test]
fn verify_single_file_v2_and_hybrid() {
    if !libtorrent_available() {
        return;
    }
    for creator in ["libtorrent", "bittern"] {
        for kind in ["v2", "hybrid"] {
            let what = format!("{creator} {kind}");
            let tmp = tempfile::tempdir().unwrap();
            let one = tmp.path().join("one.bin");
            random_file(&one, 200_000, 9);
            let t = tmp.path().join("t.torrent");
            if creator == "libtorrent" {
                lt_v2(tmp.path(), &t, "one.bin", kind);
            } else {
                create(&one, &t, &[&format!("--{kind}"), "--piece-length", "64KiB"]);
            }
            let dir = tmp.path().to_str().unwrap();
            let verify = || bittern(["verify", "-d", dir, t.to_str().unwrap()]);
            let r = verify();
            assert_eq!(r.code, Some(0), "{what}: {r:?}");
            assert!(r.stdout.contains("all 4 pieces OK"), "{what}: {r:?}");
            flip(&one, 70_000);
            let r = verify();
            assert_eq!(r.code, Some(3), "{what}: {r:?}");
            assert!(
                r.stdout.contains("one.bin (1 bad pieces: 1)"),
                "{what}: {}",
                r.stdout
            );
        }
    }
}
