//! Hashing files for torrent creation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use bittern_storage::{hash_blocks, hash_files, Error};

use crate::util::*;

#[test]
fn hash_files_matches_piece_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let lengths = [100_000u64, 0, 1, 70_000, 33];
    let total: u64 = lengths.iter().sum();
    let data = random_bytes(total as usize, 3);
    let mut files: Vec<(PathBuf, u64)> = Vec::new();
    let mut pos = 0;
    for (i, &l) in lengths.iter().enumerate() {
        let p = dir.path().join(format!("f{i}"));
        std::fs::write(&p, &data[pos..pos + l as usize]).unwrap();
        files.push((p, l));
        pos += l as usize;
    }
    let calls = AtomicUsize::new(0);
    for pl in [16384u64, 32768, 1 << 20] {
        let got = hash_files(&files, pl, &rayon_pool(2), &|d, t| {
            assert!(d <= t);
            calls.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
        let want: Vec<_> = data.chunks(pl as usize).map(|c| hash_blocks([c])).collect();
        assert_eq!(got, want, "piece length {pl}");
        // hash_blocks over split blocks equals the whole-piece hash.
        let split: Vec<&[u8]> = data[..pl.min(total) as usize].chunks(1000).collect();
        assert_eq!(hash_blocks(split), want[0]);
    }
    assert_eq!(calls.load(Ordering::Relaxed), 11 + 6 + 1);
    // Shorter than declared, missing, zero piece length.
    let mut short = files.clone();
    short[3].1 += 1;
    let r = hash_files(&short, 16384, &rayon_pool(2), &|_, _| {});
    assert!(
        matches!(
            r,
            Err(Error::FileTooShort {
                expected: 70_001,
                actual: 70_000,
                ..
            })
        ),
        "{r:?}"
    );
    let mut missing = files.clone();
    missing[0].0 = dir.path().join("nope");
    let r = hash_files(&missing, 16384, &rayon_pool(2), &|_, _| {});
    assert!(matches!(r, Err(Error::FileMissing { .. })));
    assert!(matches!(
        hash_files(&files, 0, &rayon_pool(1), &|_, _| {}),
        Err(Error::ZeroPieceLength)
    ));
}

#[test]
fn hash_files_padded_hashes_zeros_for_padding() {
    use bittern_storage::hash_files_padded;
    let dir = tempfile::tempdir().unwrap();
    let a = random_bytes(20_000, 5);
    let b = random_bytes(5, 6);
    std::fs::write(dir.path().join("a"), &a).unwrap();
    std::fs::write(dir.path().join("b"), &b).unwrap();
    // a, 12,768 bytes of padding to 32 KiB, b, tail padding
    let files = vec![
        (Some(dir.path().join("a")), 20_000),
        (None, 12_768),
        (Some(dir.path().join("b")), 5),
        (None, 32_763),
    ];
    let mut flat = a.clone();
    flat.resize(32_768, 0);
    flat.extend_from_slice(&b);
    flat.resize(65_536, 0);
    let want: Vec<_> = flat.chunks(16384).map(|c| hash_blocks([c])).collect();
    let got = hash_files_padded(&files, 16384, &rayon_pool(2), &|_, _| {}).unwrap();
    assert_eq!(got, want);
    // padding is never opened: a missing path there is no error, but a
    // missing real file is
    let mut gone = files.clone();
    gone[2].0 = Some(dir.path().join("nope"));
    let r = hash_files_padded(&gone, 16384, &rayon_pool(2), &|_, _| {});
    assert!(matches!(r, Err(Error::FileMissing { .. })), "{r:?}");
}

/// With the SIGBUS guard installed (files of 256 KiB and more are hashed
/// from maps, smaller ones read), creation hashes are the `sha1` crate's
/// digests of the concatenation of files of odd sizes on both sides of
/// that threshold.
#[test]
fn hash_files_with_the_guard_matches_sha1_of_the_concatenation() {
    use sha1::{Digest, Sha1};
    bittern_storage::install_sigbus_guard().unwrap();
    assert!(bittern_storage::sigbus_guard_installed());
    let dir = tempfile::tempdir().unwrap();
    let lengths = [262_143u64, 262_144, 1, 0, 3_000_017, 70_001, 524_289];
    let data = random_bytes(lengths.iter().sum::<u64>() as usize, 11);
    let mut files = Vec::new();
    let mut at = 0;
    for (i, &l) in lengths.iter().enumerate() {
        let p = dir.path().join(format!("f{i}"));
        std::fs::write(&p, &data[at..at + l as usize]).unwrap();
        files.push((p, l));
        at += l as usize;
    }
    for pl in [16_384u64, 1 << 18, 1 << 21] {
        let want: Vec<[u8; 20]> = data
            .chunks(pl as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        let got = hash_files(&files, pl, &rayon_pool(2), &|_, _| {}).unwrap();
        assert_eq!(got, want, "piece length {pl}");
    }
}
