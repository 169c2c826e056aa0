//! The sixteen-lane AVX-512 kernels and the paths around them against the
//! reference crates (`sha1`, `sha2`), on this CPU's path and, where the CPU
//! has AVX-512, on the portable paths too ([`FORCE_PORTABLE`]): a wrong
//! hash here would silently make bad torrents or reject good data.

use std::sync::atomic::Ordering;

use sha1::Digest;

use crate::avx512::x86 as wide;
use crate::testutil::{numbers, random_bytes};

/// Only [`both_paths`] sets [`wide::FORCE_PORTABLE`]; tests running beside
/// it compute the same hashes on either path, so they are not disturbed.
static SWITCH: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Runs `f` on the native path, then (on an AVX-512 CPU) on the portable
/// one.
fn both_paths(mut f: impl FnMut(&str)) {
    let _one_at_a_time = SWITCH.lock();
    f("native");
    if wide::available() {
        wide::FORCE_PORTABLE.store(true, Ordering::SeqCst);
        assert!(!wide::available());
        f("portable");
        wide::FORCE_PORTABLE.store(false, Ordering::SeqCst);
    } else {
        eprintln!("no AVX-512 on this CPU: only the portable path was checked");
    }
}

#[test]
fn sha256_leaves_of_any_count_anywhere_match_sha2() {
    let pool = random_bytes(64 * 16384 + 4096, 1);
    let mut next = numbers(3);
    both_paths(|path| {
        for round in 0..60u64 {
            let count = if round < 40 {
                round as usize
            } else {
                next(70) as usize
            };
            // unaligned, overlapping, one ending at the pool's last byte
            let leaves: Vec<&[u8]> = (0..count)
                .map(|i| {
                    let at = if i == 0 {
                        pool.len() - 16384
                    } else {
                        next((pool.len() - 16384) as u64) as usize
                    };
                    &pool[at..at + 16384]
                })
                .collect();
            let mut got = Vec::new();
            crate::sha256::leaf_hashes_of(&leaves, &mut got);
            let want: Vec<[u8; 32]> = leaves
                .iter()
                .map(|l| sha2::Sha256::digest(l).into())
                .collect();
            assert_eq!(got, want, "{path}: {count} leaves");
        }
    });
}

#[test]
fn sixteen_scattered_leaves_match_sha2() {
    if !wide::available() {
        eprintln!("SKIPPED: no AVX-512 on this CPU");
        return;
    }
    let d = random_bytes(16 * 16384, 11);
    let order = [5usize, 0, 15, 3, 9, 1, 2, 4, 6, 7, 8, 10, 11, 12, 13, 14];
    // SAFETY: AVX-512 checked above; sixteen full leaves, scattered.
    let at = unsafe { wide::leaves16_at(order.map(|i| &d[i * 16384..(i + 1) * 16384])) };
    for (j, &i) in order.iter().enumerate() {
        let want: [u8; 32] = sha2::Sha256::digest(&d[i * 16384..(i + 1) * 16384]).into();
        assert_eq!(at[j], want, "scattered leaf {i}");
    }
}

#[test]
fn sha1_compress16_matches_the_crate_lane_by_lane() {
    if !wide::available() {
        eprintln!("SKIPPED: no AVX-512 on this CPU");
        return;
    }
    let mut next = numbers(5);
    for n in [0usize, 1, 2, 7, 33] {
        let msgs: Vec<Vec<u8>> = (0..16).map(|i| random_bytes(64 * n, 50 + i)).collect();
        let blocks: Vec<&[[u8; 64]]> = msgs.iter().map(|m| m.as_chunks::<64>().0).collect();
        // random start states: every lane's chaining value is its own
        let mut h: [[u32; 5]; 16] =
            std::array::from_fn(|_| std::array::from_fn(|_| next(1 << 32) as u32));
        let mut want = h;
        for (w, b) in want.iter_mut().zip(&blocks) {
            for blk in *b {
                sha1::compress(w, std::slice::from_ref(blk.into()));
            }
        }
        // SAFETY: AVX-512 checked above; every lane has `n` blocks.
        unsafe { wide::sha1_compress16(&mut h, std::array::from_fn(|i| blocks[i])) };
        assert_eq!(h, want, "{n} blocks per lane");
    }
}

#[test]
fn sha1_lanes_of_any_length_and_split_match_the_crate() {
    let mut next = numbers(9);
    both_paths(|path| {
        for round in 0..90u64 {
            let k = if round % 3 == 0 {
                16
            } else {
                1 + next(16) as usize
            };
            let msgs: Vec<Vec<u8>> = (0..k)
                .map(|i| {
                    // a third of the rounds: sixteen long lanes, so the
                    // sixteen-wide kernel runs (it needs every lane to
                    // have blocks left), then the narrow paths on the tails
                    let len = match if k == 16 { 99 } else { next(10) } {
                        99 => 4096 + next(5000) as usize,
                        0 => 0,
                        1 => 55,
                        2 => 56,
                        3 => 63,
                        4 => 64,
                        5 => 65,
                        6 => 119,
                        7 => 4096 + i,
                        _ => next(9000) as usize,
                    };
                    random_bytes(len, round * 100 + i as u64)
                })
                .collect();
            let cut = if round % 2 == 0 {
                1000
            } else {
                1 + next(3000) as usize
            };
            for (i, (got, m)) in lanes_in_cuts(&msgs, cut).into_iter().zip(&msgs).enumerate() {
                let want: [u8; 20] = sha1::Sha1::digest(m).into();
                assert_eq!(
                    got, want,
                    "{path}: round {round}, lane {i} of {k}, cut {cut}"
                );
            }
        }
    });
}

#[test]
fn sixteen_sha1_lanes_match_the_reference() {
    // any split of the messages into calls, lengths not block multiples,
    // lanes of different lengths (the sixteen-wide path only while all
    // sixteen have blocks left, three-wide after)
    let msgs: Vec<Vec<u8>> = (0..16)
        .map(|i| random_bytes(64 * 40 + i * 37, 100 + i as u64))
        .collect();
    for cut in [1usize, 63, 64, 65, 1000, 64 * 40] {
        for (i, (got, m)) in lanes_in_cuts(&msgs, cut).into_iter().zip(&msgs).enumerate() {
            let want: [u8; 20] = sha1::Sha1::digest(m).into();
            assert_eq!(got, want, "lane {i}, cut {cut}");
        }
    }
}

/// SHA-1 of each of `msgs` through [`crate::sha::update_lanes`], all lanes
/// fed `cut` bytes per call (a lane that has ended gets empty slices).
fn lanes_in_cuts(msgs: &[Vec<u8>], cut: usize) -> Vec<[u8; 20]> {
    let mut hs: Vec<crate::sha::Sha1> = msgs.iter().map(|_| crate::sha::Sha1::new()).collect();
    let mut at = 0;
    while msgs.iter().any(|m| at < m.len()) {
        let parts: Vec<&[u8]> = msgs
            .iter()
            .map(|m| &m[at.min(m.len())..(at + cut).min(m.len())])
            .collect();
        let mut refs: Vec<&mut crate::sha::Sha1> = hs.iter_mut().collect();
        crate::sha::update_lanes(&mut refs, &parts);
        at += cut;
    }
    hs.into_iter().map(crate::sha::Sha1::finish).collect()
}

/// `BITTERN_NO_AVX512` is read once per process, so a child process (this
/// test binary running only this test) reports what it decided: off with
/// `1`, the CPU's answer with `0`.
#[test]
fn no_avx512_env_turns_the_wide_path_off() {
    if std::env::var_os("BITTERN_AVX512_CHILD").is_some() {
        println!("available={}", wide::available());
        return;
    }
    let cpu = std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw");
    for (value, want) in [("1", false), ("0", cpu)] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "wide_tests::no_avx512_env_turns_the_wide_path_off",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("BITTERN_AVX512_CHILD", "1")
            .env(crate::avx512::NO_AVX512_ENV, value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "child failed: {stdout}");
        assert!(
            stdout.contains(&format!("available={want}")),
            "BITTERN_NO_AVX512={value}: want available={want}, child said {stdout}"
        );
    }
}
