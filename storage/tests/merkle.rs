//! BitTorrent v2 merkle trees against libtorrent: the roots and piece
//! layers libtorrent writes into v2 torrents of the same files must equal
//! ours, and every piece and block must verify against them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bittern_storage::merkle::{
    hash_files_v2, verify_block, verify_piece, FileHashes, Hash256, MerkleTree,
};
use bittern_storage::Error;

use crate::util::{random_bytes, rayon_pool};

const PYTHON: &str = "/usr/bin/python3";

fn script() -> PathBuf {
    bittern_testkit::libtorrent::script("lt_v2.py")
}

fn have_libtorrent() -> bool {
    bittern_testkit::libtorrent::available()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hash32(s: &str) -> Hash256 {
    unhex(s).try_into().unwrap()
}

/// libtorrent's view: (path, length, root) of each real file in torrent
/// order, and the piece layers by root.
type LtView = (
    Vec<(String, u64, Option<Hash256>)>,
    HashMap<Hash256, Vec<Hash256>>,
);

fn libtorrent_v2(dir: &Path, name: &str, piece_length: u64) -> LtView {
    let out = Command::new(PYTHON)
        .current_dir(dir)
        .arg(script())
        .arg(dir.join(format!("{name}-{piece_length}.torrent")))
        .args([name, "v2", &piece_length.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lt_v2.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut files = Vec::new();
    let mut layers = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.splitn(5, ' ').collect();
        match f[0] {
            "file" if f[1] == "0" => {
                let root = (f[3] != "-").then(|| hash32(f[3]));
                files.push((f[4].to_owned(), f[2].parse().unwrap(), root));
            }
            "layer" => {
                let l = unhex(f[2])
                    .chunks(32)
                    .map(|c| c.try_into().unwrap())
                    .collect();
                layers.insert(hash32(f[1]), l);
            }
            _ => {}
        }
    }
    (files, layers)
}

#[test]
fn roots_and_piece_layers_equal_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = "content";
    let sizes = [
        ("a-empty", 0usize),
        ("b-one", 1),
        ("c-block", 16384),
        ("d-block+1", 16385),
        ("e-odd", 100_000),
        ("f-exact", 3 * 65536),
        ("sub/g-big", 1_000_003),
    ];
    let mut content = HashMap::new();
    for (i, (n, len)) in sizes.iter().enumerate() {
        let p = dir.path().join(name).join(n);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let data = random_bytes(*len, i as u64 + 1);
        std::fs::write(&p, &data).unwrap();
        content.insert(format!("{name}/{n}"), data);
    }
    let mut checked_layers = 0;
    for piece_length in [16384u64, 32768, 262144] {
        let (lt_files, lt_layers) = libtorrent_v2(dir.path(), name, piece_length);
        assert_eq!(lt_files.len(), sizes.len(), "{lt_files:?}");
        let files: Vec<(PathBuf, u64)> = lt_files
            .iter()
            .map(|(p, l, _)| (dir.path().join(p), *l))
            .collect();
        let ours = hash_files_v2(&files, piece_length, &rayon_pool(2), &|_, _| {}).unwrap();
        for ((path, len, lt_root), FileHashes { root, piece_layer }) in lt_files.iter().zip(&ours) {
            let what = format!("{path} at {piece_length}");
            assert_eq!(root, lt_root, "{what}: root");
            let data = &content[path];
            assert_eq!(data.len() as u64, *len);
            let Some(root) = root else {
                assert_eq!(*len, 0, "{what}");
                continue;
            };
            let tree = MerkleTree::from_data(data).unwrap();
            assert_eq!(tree.root(), *root, "{what}: tree root");
            assert_eq!(tree.piece_layer(piece_length).unwrap(), *piece_layer);
            match lt_layers.get(root) {
                Some(l) => {
                    assert_eq!(l, piece_layer, "{what}: piece layer");
                    checked_layers += 1;
                }
                None => assert!(piece_layer.is_empty(), "{what}: libtorrent has no layer"),
            }
            // every piece verifies against the layer (or the root), every
            // block against the root with its proof
            for (i, piece) in data.chunks(piece_length as usize).enumerate() {
                let want = piece_layer.get(i).unwrap_or(root);
                assert!(
                    verify_piece(piece, piece_length, *len, want),
                    "{what} piece {i}"
                );
            }
            for (i, block) in data.chunks(16384).enumerate() {
                let proof = tree.proof(i as u64).unwrap();
                assert!(
                    verify_block(block, i as u64, &proof, root),
                    "{what} block {i}"
                );
            }
        }
    }
    assert!(
        checked_layers >= 6,
        "only {checked_layers} piece layers compared"
    );
}

#[test]
fn hash_files_v2_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, random_bytes(40_000, 9)).unwrap();
    let pool = rayon_pool(2);
    let ok = hash_files_v2(&[(p.clone(), 40_000)], 16384, &pool, &|_, _| {}).unwrap();
    let tree = MerkleTree::from_data(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(ok[0].root, Some(tree.root()));
    assert_eq!(ok[0].piece_layer.len(), 3);
    let r = hash_files_v2(&[(p.clone(), 40_001)], 16384, &pool, &|_, _| {});
    assert!(
        matches!(
            r,
            Err(Error::FileTooShort {
                expected: 40_001,
                actual: 40_000,
                ..
            })
        ),
        "{r:?}"
    );
    let r = hash_files_v2(&[(dir.path().join("nope"), 1)], 16384, &pool, &|_, _| {});
    assert!(matches!(r, Err(Error::FileMissing { .. })), "{r:?}");
    for bad in [0, 8192, 49152] {
        let r = hash_files_v2(&[(p.clone(), 40_000)], bad, &pool, &|_, _| {});
        assert!(
            matches!(r, Err(Error::InvalidV2PieceLength(b)) if b == bad),
            "{r:?}"
        );
    }
}

#[test]
fn verify_files_v2_finds_the_bad_piece() {
    use bittern_storage::merkle::verify_files_v2;
    let dir = tempfile::tempdir().unwrap();
    let pool = rayon_pool(2);
    let lens = [100_000u64, 0, 20_000, 70_000];
    let files: Vec<(PathBuf, u64)> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, random_bytes(l as usize, i as u64 + 20)).unwrap();
            (p, l)
        })
        .collect();
    let pl = 32768;
    let expected: Vec<Vec<Hash256>> = hash_files_v2(&files, pl, &pool, &|_, _| {})
        .unwrap()
        .into_iter()
        .map(|f| match f.root {
            None => Vec::new(),
            Some(r) if f.piece_layer.is_empty() => vec![r],
            Some(_) => f.piece_layer,
        })
        .collect();
    let all_ok = verify_files_v2(&files, &expected, pl, &pool, &|_, _| {}).unwrap();
    assert_eq!(
        all_ok,
        vec![vec![true; 4], vec![], vec![true], vec![true; 3]]
    );
    // one flipped byte in the third piece of f0, f3 cut short, f2 gone
    let mut d = std::fs::read(&files[0].0).unwrap();
    d[2 * 32768 + 5] ^= 1;
    std::fs::write(&files[0].0, d).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&files[3].0)
        .unwrap()
        .set_len(40_000)
        .unwrap();
    std::fs::remove_file(&files[2].0).unwrap();
    let got = verify_files_v2(&files, &expected, pl, &pool, &|_, _| {}).unwrap();
    assert_eq!(
        got,
        vec![
            vec![true, true, false, true],
            vec![],
            vec![false],
            vec![true, false, false]
        ]
    );
    // expected hashes that do not fit the files
    let r = verify_files_v2(&files, &expected[..3], pl, &pool, &|_, _| {});
    assert!(
        matches!(
            r,
            Err(Error::LengthMismatch {
                expected: 4,
                actual: 3
            })
        ),
        "{r:?}"
    );
    let mut short = expected.clone();
    short[0].pop();
    let r = verify_files_v2(&files, &short, pl, &pool, &|_, _| {});
    assert!(
        matches!(
            r,
            Err(Error::LengthMismatch {
                expected: 4,
                actual: 3
            })
        ),
        "{r:?}"
    );
}
