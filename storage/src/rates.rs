//! Per-core rates of the hashing kernels, in thread CPU time (so a loaded
//! machine slows the figures less than wall time would): run with
//! `cargo test --release -p bittern-storage --lib rates -- --ignored --nocapture`
//! and compare with `openssl speed -evp sha1` / `-evp sha256` (also CPU
//! time). Not a correctness test: it only prints.

use sha1::Digest;

use crate::testutil::random_bytes;

fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Best of `rounds` (the least disturbed), MB/s of CPU time for `bytes`.
fn rate(bytes: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = thread_cpu();
        f();
        best = best.min(thread_cpu() - t);
    }
    bytes as f64 / best / 1e6
}

#[test]
#[ignore = "prints rates; run by hand in release"]
fn kernel_rates() {
    const MIB: usize = 1 << 20;
    let total = 48 * MIB;
    let data = random_bytes(total, 7);
    let piece = 256 * 1024;
    let r = 7;
    let sha1_one = rate(total, r, || {
        for c in data.chunks(piece) {
            std::hint::black_box(sha1::Sha1::digest(c));
        }
    });
    let sha1_lanes = rate(total, r, || {
        for g in data.chunks(piece * crate::sha::LANES) {
            let msgs: Vec<&[u8]> = g.chunks(piece).collect();
            std::hint::black_box(crate::hash_many(&msgs));
        }
    });
    let sha256_one = rate(total, r, || {
        for c in data.chunks(16 * 1024) {
            std::hint::black_box(sha2::Sha256::digest(c));
        }
    });
    let sha256_lanes = rate(total, r, || {
        let mut out = Vec::with_capacity(total / 16384);
        crate::sha256::leaf_hashes_into(&data, &mut out);
        std::hint::black_box(out);
    });
    let leaf = 16 * 1024;
    let mut lane_rates = Vec::new();
    macro_rules! lanes_rate {
        ($n:literal, $($f:ident)::+) => {
            lane_rates.push(($n, stringify!($($f)::+), rate(total, r, || {
                for g in data.chunks_exact(leaf * $n) {
                    // SAFETY: the CPU features were checked; `g` is whole leaves.
                    std::hint::black_box(unsafe { $($f)::+::<$n>(g) });
                }
            })));
        };
    }
    lanes_rate!(2, shani::run);
    lanes_rate!(4, shani::run);
    if crate::avx512::x86::available() {
        lanes_rate!(16, x16::at);
    }
    for (n, f, v) in lane_rates {
        println!("sha256 {n} lanes {f}: {v:.0} MB/s");
    }
    if crate::avx512::x86::available() {
        let sha1_wide = rate(total, r, || {
            for g in data.chunks_exact(piece * 16) {
                let msgs: Vec<&[u8]> = g.chunks(piece).collect();
                let mut hs: Vec<crate::sha::Sha1> =
                    (0..16).map(|_| crate::sha::Sha1::new()).collect();
                let mut refs: Vec<&mut crate::sha::Sha1> = hs.iter_mut().collect();
                crate::sha::update_lanes(&mut refs, &msgs);
                std::hint::black_box(hs.into_iter().map(|h| h.finish()).collect::<Vec<_>>());
            }
        });
        println!("sha1 16 lanes (AVX-512): {sha1_wide:.0} MB/s");
    }
    println!(
        "MB/s of thread CPU, best of {r}: sha1 one {sha1_one:.0}, sha1 {} lanes {sha1_lanes:.0}, \
         sha256 one {sha256_one:.0}, sha256 {} lanes {sha256_lanes:.0}",
        crate::sha::LANES,
        crate::sha256::LANES
    );
}

mod shani {
    /// # Safety
    /// As [`leaves`](crate::sha256::x86::leaves).
    pub(crate) unsafe fn run<const N: usize>(d: &[u8]) -> [[u8; 32]; N] {
        let l: [&[u8]; N] = std::array::from_fn(|i| &d[i * 16384..(i + 1) * 16384]);
        // SAFETY: as promised by the caller.
        unsafe { crate::sha256::x86::leaves::<N>(l) }
    }
}

mod x16 {
    /// # Safety
    /// As [`leaves16_at`](crate::avx512::x86::leaves16_at).
    pub(crate) unsafe fn at<const N: usize>(d: &[u8]) -> [[u8; 32]; 16] {
        let l: [&[u8]; 16] = std::array::from_fn(|i| &d[i * 16384..(i + 1) * 16384]);
        // SAFETY: as promised by the caller.
        unsafe { crate::avx512::x86::leaves16_at(l) }
    }
}

#[test]
fn avx512_leaves_match_sha2() {
    use sha2::Digest;
    if !crate::avx512::x86::available() {
        return;
    }
    let d = random_bytes(16 * 16384, 11);
    // SAFETY: checked above; sixteen leaves, in a scattered order
    let order = [5usize, 0, 15, 3, 9, 1, 2, 4, 6, 7, 8, 10, 11, 12, 13, 14];
    let at =
        unsafe { crate::avx512::x86::leaves16_at(order.map(|i| &d[i * 16384..(i + 1) * 16384])) };
    let got: Vec<[u8; 32]> = d
        .chunks(16384)
        .map(|c| sha2::Sha256::digest(c).into())
        .collect();
    for (j, &i) in order.iter().enumerate() {
        assert_eq!(at[j], got[i], "scattered leaf {i}");
    }
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
        let mut hs: Vec<crate::sha::Sha1> = (0..16).map(|_| crate::sha::Sha1::new()).collect();
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
        for (i, (h, m)) in hs.into_iter().zip(&msgs).enumerate() {
            let want: [u8; 20] = sha1::Sha1::digest(m).into();
            assert_eq!(h.finish(), want, "lane {i}, cut {cut}");
        }
    }
}
