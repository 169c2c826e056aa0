//! SHA-256 of BitTorrent v2 leaves (16 KiB blocks), several at once.
//!
//! As with SHA-1 (`sha.rs`), one SHA-256 stream is latency-bound with the
//! x86 SHA extensions: every `sha256rnds2` waits for the one before it.
//! The leaves of a v2 file are independent messages of the same length, so
//! [`leaf_hashes`] compresses [`LANES`] of them in lockstep, filling those
//! gaps, and finishes them with the one padding block every full leaf
//! shares. Short leaves (a file's last), leftovers and CPUs without the
//! extensions go through the `sha2` crate one at a time.
//!
//! Measured on this 2-core Xeon with `sha_ni` (a throwaway program, 64 MiB
//! in memory, thread CPU time, 5 rounds on a machine loaded by other
//! jobs): one leaf at a time through `sha2` 1.13-1.16 GB/s, four side by
//! side 1.89-1.99 GB/s, 1.65-1.73x. Criterion's wall-time
//! `sha256/leaves_64KiB` showed 1.23x, with a load average near 20.
//!
//! The SHA extensions' one unit caps that near 2.3 GB/s a core (two lanes
//! already reach it). Where the CPU has AVX-512, whole groups of sixteen
//! leaves (a 256 KiB piece) go through the sixteen 32-bit lanes of its
//! vector registers instead (`avx512.rs`): 3.7 GB/s against 2.3 for four
//! SHA-NI lanes and 2.06 for OpenSSL's one stream (`openssl speed -evp
//! sha256 -bytes 16384`), thread CPU time, best of 7 over 48 MiB
//! (`rates.rs`).

use sha2::{Digest, Sha256};

/// Bytes per leaf.
const LEAF: usize = 16 * 1024;

/// Full leaves hashed side by side.
pub(crate) const LANES: usize = 4;

/// The fewest leaves worth a (part-filled) group of sixteen AVX-512 lanes
/// rather than the SHA extensions: with the rates below, sixteen lanes
/// cost as much as about nine leaves in groups of four and one by one
/// (3.7 GB/s for sixteen, 2.3 for four, 1.15 for one). A v2 file's pieces
/// rarely come in multiples of sixteen leaves (small files, a file's last
/// piece): on the 1,000-file set those leftovers were a tenth of `bittern
/// create --v2`'s CPU time, through the slower paths.
#[cfg(target_arch = "x86_64")]
const WIDE_PARTIAL: usize = 9;

/// The fewest leaves worth a part-filled group of [`LANES`] SHA-NI lanes
/// rather than one at a time (three: one at a time costs about half a
/// four-lane group each).
#[cfg(target_arch = "x86_64")]
const NARROW_PARTIAL: usize = 3;

/// SHA-256 of each 16 KiB block of `data` (the last may be short),
/// appended to `out`.
pub(crate) fn leaf_hashes_into(data: &[u8], out: &mut Vec<[u8; 32]>) {
    let whole = data.len() / LEAF * LEAF;
    let leaves: Vec<&[u8]> = data[..whole].chunks_exact(LEAF).collect();
    leaf_hashes_of(&leaves, out);
    if whole < data.len() {
        out.push(Sha256::digest(&data[whole..]).into());
    }
}

/// SHA-256 of each of `leaves` (full 16 KiB leaves anywhere in memory, in
/// any number), appended to `out` in order: sixteen at a time in AVX-512
/// lanes, else [`LANES`] at a time with the SHA extensions, else one by
/// one.
///
/// # Panics
/// When a leaf is not 16 KiB long.
pub(crate) fn leaf_hashes_of(leaves: &[&[u8]], out: &mut Vec<[u8; 32]>) {
    assert!(leaves.iter().all(|l| l.len() == LEAF));
    let mut rest = leaves;
    #[cfg(target_arch = "x86_64")]
    {
        use crate::avx512::x86 as wide;
        if rest.len() >= wide::LANES && wide::available() {
            let mut groups = rest.chunks_exact(wide::LANES);
            for g in &mut groups {
                let g: [&[u8]; wide::LANES] = std::array::from_fn(|i| g[i]);
                // SAFETY: the CPU has AVX-512F and BW (checked above); the
                // leaves are full (asserted above).
                out.extend(unsafe { wide::leaves16_at(g) });
            }
            rest = groups.remainder();
            if rest.len() >= WIDE_PARTIAL {
                // A part-filled group still beats the SHA extensions (the
                // spare lanes hash copies of the first leaf, dropped).
                let g: [&[u8]; wide::LANES] = std::array::from_fn(|i| rest[i % rest.len()]);
                // SAFETY: as above.
                let h = unsafe { wide::leaves16_at(g) };
                out.extend_from_slice(&h[..rest.len()]);
                rest = &[];
            }
        }
        if rest.len() >= NARROW_PARTIAL && x86::has_sha_ni() {
            let mut groups = rest.chunks(LANES);
            for g in &mut groups {
                if g.len() < NARROW_PARTIAL {
                    rest = g;
                    break;
                }
                let l: [&[u8]; LANES] = std::array::from_fn(|i| g[i % g.len()]);
                // SAFETY: the CPU has every feature the function enables;
                // the leaves are full.
                let h = unsafe { x86::leaves::<LANES>(l) };
                out.extend_from_slice(&h[..g.len()]);
                rest = &[];
            }
        }
    }
    out.extend(
        rest.iter()
            .map(|c| -> [u8; 32] { Sha256::digest(c).into() }),
    );
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    //! Intel's SHA extensions round structure (two `sha256rnds2` per four
    //! rounds, the schedule four words at a time with `sha256msg1/2`),
    //! written once as loops over the lanes for the compiler to unroll.

    use std::arch::x86_64::*;

    use super::LEAF;

    /// The round constants (FIPS 180-4, 4.2.2).
    pub(crate) const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The initial hash value (FIPS 180-4, 5.3.3).
    pub(crate) const H0: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    /// The last block of every full leaf: the `0x80` marker, zeros, and
    /// the message length in bits (131,072), big-endian.
    const PAD: [u8; 64] = {
        let mut b = [0u8; 64];
        b[0] = 0x80;
        let bits = ((LEAF as u64) * 8).to_be_bytes();
        let mut i = 0;
        while i < 8 {
            b[56 + i] = bits[i];
            i += 1;
        }
        b
    };

    pub(crate) fn has_sha_ni() -> bool {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse2")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
    }

    /// SHA-256 of the `N` full leaves `data`.
    ///
    /// # Safety
    /// The CPU must support SHA, SSE2, SSSE3 and SSE4.1.
    ///
    /// # Panics
    /// When a leaf is not 16 KiB long.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(crate) unsafe fn leaves<const N: usize>(data: [&[u8]; N]) -> [[u8; 32]; N] {
        assert!(data.iter().all(|l| l.len() == LEAF));
        // Big-endian words: reverse the bytes of each 32-bit word.
        let mask = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        // The state as the instructions want it: ABEF and CDGH.
        let h = H0.as_ptr().cast::<__m128i>();
        let abcd = _mm_shuffle_epi32(_mm_loadu_si128(h), 0xB1);
        let efgh = _mm_shuffle_epi32(_mm_loadu_si128(h.add(1)), 0x1B);
        let mut s0 = [_mm_alignr_epi8(abcd, efgh, 8); N];
        let mut s1 = [_mm_blend_epi16(efgh, abcd, 0xF0); N];
        let k = K.as_ptr().cast::<__m128i>();
        for block in 0..=LEAF / 64 {
            let mut w = [[_mm_setzero_si128(); 4]; N];
            for (i, w) in w.iter_mut().enumerate() {
                let p = if block < LEAF / 64 {
                    data[i].as_ptr().add(block * 64)
                } else {
                    PAD.as_ptr()
                };
                for (j, w) in w.iter_mut().enumerate() {
                    *w = _mm_shuffle_epi8(_mm_loadu_si128(p.add(16 * j).cast()), mask);
                }
            }
            let (save0, save1) = (s0, s1);
            for r in 0..16 {
                if r >= 4 {
                    // w[r] = msg2(msg1(w[r-4], w[r-3]) + (w[r-1]:w[r-2] >> 4 bytes), w[r-1])
                    for w in w.iter_mut() {
                        let t = _mm_sha256msg1_epu32(w[r % 4], w[(r + 1) % 4]);
                        let t =
                            _mm_add_epi32(t, _mm_alignr_epi8(w[(r + 3) % 4], w[(r + 2) % 4], 4));
                        w[r % 4] = _mm_sha256msg2_epu32(t, w[(r + 3) % 4]);
                    }
                }
                let kr = _mm_loadu_si128(k.add(r));
                for i in 0..N {
                    let m = _mm_add_epi32(w[i][r % 4], kr);
                    s1[i] = _mm_sha256rnds2_epu32(s1[i], s0[i], m);
                    s0[i] = _mm_sha256rnds2_epu32(s0[i], s1[i], _mm_shuffle_epi32(m, 0x0E));
                }
            }
            for i in 0..N {
                s0[i] = _mm_add_epi32(s0[i], save0[i]);
                s1[i] = _mm_add_epi32(s1[i], save1[i]);
            }
        }
        let mut out = [[0u8; 32]; N];
        for i in 0..N {
            let feba = _mm_shuffle_epi32(s0[i], 0x1B);
            let dchg = _mm_shuffle_epi32(s1[i], 0xB1);
            let mut words = [0u32; 8];
            let p = words.as_mut_ptr().cast::<__m128i>();
            _mm_storeu_si128(p, _mm_blend_epi16(feba, dchg, 0xF0));
            _mm_storeu_si128(p.add(1), _mm_alignr_epi8(dchg, feba, 8));
            for (o, w) in out[i].chunks_exact_mut(4).zip(words) {
                o.copy_from_slice(&w.to_be_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(seed).rotate_left(i % 29) ^ (i >> 11)) as u8)
            .collect()
    }

    #[test]
    fn lanes_match_sha2() {
        for len in [
            0,
            1,
            LEAF,
            LEAF + 1,
            LANES * LEAF - 1,
            LANES * LEAF,
            LANES * LEAF + 5,
            3 * LANES * LEAF + 2 * LEAF + 77,
            // the sixteen-lane path (AVX-512) twice, then four and one
            32 * LEAF + 5 * LEAF + 77,
            // part-filled groups: sixteen lanes for nine to fifteen
            // leaves, four for three, and the leaves around them
            9 * LEAF,
            15 * LEAF + 3,
            16 * LEAF + 11 * LEAF + 100,
            3 * LEAF,
            7 * LEAF + 1,
            6 * LEAF,
        ] {
            let d = bytes(len, 2_654_435_761);
            let mut got = Vec::new();
            leaf_hashes_into(&d, &mut got);
            let want: Vec<[u8; 32]> = d
                .chunks(LEAF)
                .map(|c| -> [u8; 32] { Sha256::digest(c).into() })
                .collect();
            assert_eq!(got, want, "len {len}");
        }
    }

    #[test]
    fn known_answer_of_a_zero_leaf() {
        // SHA-256 of 16 KiB of zeros, as `sha256sum` prints it
        let mut got = Vec::new();
        leaf_hashes_into(&[0u8; LANES * LEAF], &mut got);
        let hex: String = got[3].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "4fe7b59af6de3b665b67788cc2f99892ab827efae3a467342b3bb4e3bc8e5bfe"
        );
    }
}
