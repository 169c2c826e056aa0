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
                    // SAFETY: each kernel's CPU features were checked before its
                    // `lanes_rate!`; `g` is whole leaves.
                    std::hint::black_box(unsafe { $($f)::+::<$n>(g) });
                }
            })));
        };
    }
    if crate::sha256::x86::has_sha_ni() {
        lanes_rate!(2, shani::run);
        lanes_rate!(4, shani::run);
    }
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
