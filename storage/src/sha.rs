//! SHA-1 with a multi-message path.
//!
//! One SHA-1 stream is latency-bound even with the x86 SHA extensions: each
//! `sha1rnds4` waits for the one before it, and the unit sits idle between
//! them. Independent messages hashed in lockstep fill those gaps:
//! [`update_lanes`] with two lanes hashes two pieces in about 0.6x the time of hashing them
//! one after the other, and [`update_lanes`] up to [`LANES`] (three) at
//! once (`cargo bench -p bittern-benches --bench storage -- sha1/`).
//! Verification, startup checks and torrent creation hash pieces three at
//! a time.
//!
//! Single blocks go through the `sha1` crate's compression function, which
//! picks SHA-NI at run time; without SHA-NI the pair path simply compresses
//! the two messages one after the other.

/// The SHA-1 initial hash value (FIPS 180-4, 5.3.1).
const INIT: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// An incremental SHA-1 whose blocks can be compressed together with
/// another message's (see [`update_lanes`]).
#[derive(Clone)]
pub(crate) struct Sha1 {
    h: [u32; 5],
    /// Bytes of an unfinished 64-byte block.
    buf: [u8; 64],
    buf_len: usize,
    /// Message length in bytes so far.
    len: u64,
}

impl Default for Sha1 {
    fn default() -> Self {
        Sha1::new()
    }
}

impl Sha1 {
    pub(crate) fn new() -> Self {
        Sha1 {
            h: INIT,
            buf: [0; 64],
            buf_len: 0,
            len: 0,
        }
    }

    /// Feeds `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        let rest = self.fill(data);
        let (blocks, tail) = as_blocks(rest);
        compress(&mut self.h, blocks);
        self.keep(tail);
    }

    /// The digest of everything fed.
    pub(crate) fn finish(mut self) -> [u8; 20] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        // Pad to 56 mod 64, then the 64-bit big-endian bit length.
        let zeros = (119 - self.buf_len) % 64;
        pad[1 + zeros..9 + zeros].copy_from_slice(&bits.to_be_bytes());
        let len = self.len;
        self.update(&pad[..9 + zeros]);
        debug_assert_eq!(self.buf_len, 0);
        self.len = len;
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_exact_mut(4).zip(self.h) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Completes a pending partial block from the front of `data`; returns
    /// what is left (starting on a block boundary of the message).
    fn fill<'a>(&mut self, data: &'a [u8]) -> &'a [u8] {
        self.len = self.len.wrapping_add(data.len() as u64);
        if self.buf_len == 0 {
            return data;
        }
        let take = (64 - self.buf_len).min(data.len());
        self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
        self.buf_len += take;
        if self.buf_len == 64 {
            let block = self.buf;
            #[cfg(test)]
            count_lane_blocks(1, 1);
            compress(&mut self.h, &[block]);
            self.buf_len = 0;
        }
        &data[take..]
    }

    /// Keeps a tail shorter than a block (only called on a block boundary).
    fn keep(&mut self, tail: &[u8]) {
        if !tail.is_empty() {
            self.buf[..tail.len()].copy_from_slice(tail);
            self.buf_len = tail.len();
        }
    }
}

/// Most messages compressed side by side: three fill the SHA unit of the
/// CPUs measured (two lanes 3.5 GB/s, three 4.4 GB/s on one AMD EPYC
/// core); a fourth lane runs out of the 16 vector registers and is slower.
pub(crate) const LANES: usize = 3;

/// Most messages [`update_lanes`] takes: sixteen pieces go side by side
/// through AVX-512 where the CPU has it (`avx512.rs`).
pub(crate) const MAX_LANES: usize = 16;

/// How many pieces bulk hashing (torrent creation, whole-torrent checks)
/// should give [`update_lanes`] at once on this CPU: [`MAX_LANES`] with
/// AVX-512, else [`LANES`].
pub(crate) fn bulk_lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::avx512::x86::available() {
            return MAX_LANES;
        }
    }
    LANES
}

/// Feeds `data[i]` to `hs[i]` (at most [`MAX_LANES`] of each), compressing
/// the blocks the messages have in common side by side: all sixteen in
/// AVX-512 lanes when there are sixteen and the CPU has it, else three at
/// a time with the SHA extensions. Equivalent to `hs[i].update(data[i])`
/// for every `i`.
pub(crate) fn update_lanes(hs: &mut [&mut Sha1], data: &[&[u8]]) {
    let k = hs.len();
    assert!(k == data.len() && k <= MAX_LANES, "{k} lanes");
    let mut rest: [&[u8]; MAX_LANES] = [&[]; MAX_LANES];
    for i in 0..k {
        rest[i] = hs[i].fill(data[i]);
    }
    // A lane whose input was too short to complete its partial block has
    // nothing left (`fill` took it all) and simply sits this call out; the
    // others still go side by side.
    let mut blocks: [&[[u8; 64]]; MAX_LANES] = [&[]; MAX_LANES];
    let mut tails: [&[u8]; MAX_LANES] = [&[]; MAX_LANES];
    for i in 0..k {
        debug_assert!(hs[i].buf_len == 0 || rest[i].is_empty());
        (blocks[i], tails[i]) = as_blocks(rest[i]);
    }
    // The lanes with blocks left, side by side, until none has any.
    loop {
        let mut active = [0usize; MAX_LANES];
        let mut m = 0;
        for (i, b) in blocks[..k].iter().enumerate() {
            if !b.is_empty() {
                active[m] = i;
                m += 1;
            }
        }
        if m == 0 {
            break;
        }
        let n = active[..m]
            .iter()
            .map(|&i| blocks[i].len())
            .min()
            .unwrap_or(0);
        let mut h = [INIT; MAX_LANES];
        let mut run: [&[[u8; 64]]; MAX_LANES] = [&[]; MAX_LANES];
        for (j, &i) in active[..m].iter().enumerate() {
            h[j] = hs[i].h;
            run[j] = &blocks[i][..n];
        }
        #[cfg(test)]
        count_lane_blocks(m, n);
        compress_lanes(&mut h[..m], &run[..m]);
        for (j, &i) in active[..m].iter().enumerate() {
            hs[i].h = h[j];
            blocks[i] = &blocks[i][n..];
        }
    }
    for i in 0..k {
        hs[i].keep(tails[i]);
    }
}

/// Compresses `run[i]` into `h[i]` (the same block count each): sixteen
/// in AVX-512 lanes, else three at a time (the last two or one, alone).
fn compress_lanes(h: &mut [[u32; 5]], run: &[&[[u8; 64]]]) {
    #[cfg(target_arch = "x86_64")]
    {
        if h.len() == MAX_LANES && crate::avx512::x86::available() {
            let mut h16 = [INIT; MAX_LANES];
            h16.copy_from_slice(h);
            let run16: [&[[u8; 64]]; MAX_LANES] = std::array::from_fn(|i| run[i]);
            // SAFETY: the CPU has AVX-512F and BW (checked above); the
            // lanes have the same length (the caller's `n`).
            unsafe { crate::avx512::x86::sha1_compress16(&mut h16, run16) };
            h.copy_from_slice(&h16);
            return;
        }
    }
    let mut at = 0;
    while at < h.len() {
        // 3, 3, ..., then 2 + 2 rather than 3 + 1 (one lane alone is the
        // slowest)
        let left = h.len() - at;
        let m = if left == 4 { 2 } else { left.min(LANES) };
        let (hh, rr) = (&mut h[at..at + m], &run[at..at + m]);
        match m {
            1 => compress(&mut hh[0], rr[0]),
            2 => {
                let mut h2 = [hh[0], hh[1]];
                compress_n(&mut h2, [rr[0], rr[1]]);
                hh.copy_from_slice(&h2);
            }
            _ => {
                let mut h3 = [hh[0], hh[1], hh[2]];
                compress_n(&mut h3, [rr[0], rr[1], rr[2]]);
                hh.copy_from_slice(&h3);
            }
        }
        at += m;
    }
}

#[cfg(test)]
thread_local! {
    /// Blocks this thread compressed `i + 1` lanes side by side, for tests
    /// of how well callers keep the lanes busy.
    pub(crate) static LANE_BLOCKS: std::cell::Cell<[usize; MAX_LANES]> =
        const { std::cell::Cell::new([0; MAX_LANES]) };
}

#[cfg(test)]
fn count_lane_blocks(lanes: usize, blocks: usize) {
    LANE_BLOCKS.with(|c| {
        let mut v = c.get();
        v[lanes - 1] += blocks;
        c.set(v);
    });
}

/// Splits `data` into whole 64-byte blocks and the tail.
fn as_blocks(data: &[u8]) -> (&[[u8; 64]], &[u8]) {
    let n = data.len() / 64;
    let (body, tail) = data.split_at(n * 64);
    // SAFETY: `body` is exactly `n * 64` bytes; `[u8; 64]` has alignment 1.
    let blocks = unsafe { std::slice::from_raw_parts(body.as_ptr().cast::<[u8; 64]>(), n) };
    (blocks, tail)
}

/// The block type of `sha1::compress`: a `GenericArray` of 64 bytes.
type CrateBlock = sha1::digest::generic_array::GenericArray<u8, sha1::digest::consts::U64>;

const _: () = assert!(std::mem::size_of::<CrateBlock>() == 64);
const _: () = assert!(std::mem::align_of::<CrateBlock>() == 1);

fn compress(h: &mut [u32; 5], blocks: &[[u8; 64]]) {
    if !blocks.is_empty() {
        // SAFETY: a `GenericArray<u8, U64>` is a `repr(transparent)`
        // wrapper of 64 bytes (size and alignment asserted above), so a
        // slice of `[u8; 64]` is a valid slice of it (the `sha1` crate
        // itself casts the other way).
        let blocks = unsafe {
            std::slice::from_raw_parts(blocks.as_ptr().cast::<CrateBlock>(), blocks.len())
        };
        sha1::compress(h, blocks);
    }
}

/// Compresses `blocks[i]` into `h[i]` for each lane (same block count).
fn compress_n<const N: usize>(h: &mut [[u32; 5]; N], blocks: [&[[u8; 64]]; N]) {
    debug_assert!(blocks.iter().all(|b| b.len() == blocks[0].len()));
    #[cfg(target_arch = "x86_64")]
    {
        if N > 1 && !blocks[0].is_empty() && x86::has_sha_ni() {
            // SAFETY: the CPU supports every feature the function enables.
            unsafe { x86::compress_n(h, blocks) };
            return;
        }
    }
    for (h, b) in h.iter_mut().zip(blocks) {
        compress(h, b);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Several SHA-1 messages through the SHA extensions at once. The round
    //! structure is the one of Intel's SHA extensions paper (each step does
    //! four rounds; the message schedule runs four words ahead); the lanes
    //! share nothing, so their dependency chains interleave. Every step is
    //! written once, as a loop over the lanes that the compiler unrolls for
    //! the lane count.

    use std::arch::x86_64::*;

    pub(super) fn has_sha_ni() -> bool {
        std::is_x86_feature_detected!("sha")
            && std::is_x86_feature_detected!("sse2")
            && std::is_x86_feature_detected!("ssse3")
            && std::is_x86_feature_detected!("sse4.1")
    }

    /// One lane: two working states and five schedule words.
    #[derive(Clone, Copy)]
    struct Lane {
        h0: __m128i,
        h1: __m128i,
        w: [__m128i; 5],
    }

    /// Four rounds on every lane with schedule word `wi`, result into
    /// `dst` (`h0`/`h1` alternate as in the single-lane code).
    macro_rules! rounds {
        ($lanes:ident, $dst:ident, $src:ident, $wi:expr, $f:expr) => {
            for x in $lanes.iter_mut() {
                x.$dst = _mm_sha1rnds4_epu32(x.$src, _mm_sha1nexte_epu32(x.$dst, x.w[$wi]), $f);
            }
        };
    }

    /// Next schedule word `w[n] = msg2(msg1(w[n-4], w[n-3]) ^ w[n-2], w[n-1])`
    /// on every lane, then four rounds with it.
    macro_rules! step {
        ($lanes:ident, $dst:ident, $src:ident, $n:expr, $f:expr) => {
            for x in $lanes.iter_mut() {
                x.w[$n % 5] = _mm_sha1msg2_epu32(
                    _mm_xor_si128(
                        _mm_sha1msg1_epu32(x.w[($n + 1) % 5], x.w[($n + 2) % 5]),
                        x.w[($n + 3) % 5],
                    ),
                    x.w[($n + 4) % 5],
                );
            }
            rounds!($lanes, $dst, $src, $n % 5, $f);
        };
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn load_state(h: &[u32; 5]) -> (__m128i, __m128i) {
        (
            _mm_set_epi32(h[0] as i32, h[1] as i32, h[2] as i32, h[3] as i32),
            _mm_set_epi32(h[4] as i32, 0, 0, 0),
        )
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn store_state(h: &mut [u32; 5], abcd: __m128i, e: __m128i) {
        h[0] = _mm_extract_epi32::<3>(abcd) as u32;
        h[1] = _mm_extract_epi32::<2>(abcd) as u32;
        h[2] = _mm_extract_epi32::<1>(abcd) as u32;
        h[3] = _mm_extract_epi32::<0>(abcd) as u32;
        h[4] = _mm_extract_epi32::<3>(e) as u32;
    }

    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn load_block(block: &[u8; 64], mask: __m128i) -> [__m128i; 5] {
        let p = block.as_ptr().cast::<__m128i>();
        [
            _mm_shuffle_epi8(_mm_loadu_si128(p), mask),
            _mm_shuffle_epi8(_mm_loadu_si128(p.add(1)), mask),
            _mm_shuffle_epi8(_mm_loadu_si128(p.add(2)), mask),
            _mm_shuffle_epi8(_mm_loadu_si128(p.add(3)), mask),
            _mm_setzero_si128(),
        ]
    }

    /// # Safety
    /// The CPU must support SHA, SSE2, SSSE3 and SSE4.1; every lane of
    /// `blocks` must have the same length.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn compress_n<const N: usize>(
        h: &mut [[u32; 5]; N],
        blocks: [&[[u8; 64]]; N],
    ) {
        // Big-endian words: reverse the bytes of each 16-byte load.
        let mask = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
        let mut abcd = [_mm_setzero_si128(); N];
        let mut e = [_mm_setzero_si128(); N];
        for i in 0..N {
            (abcd[i], e[i]) = load_state(&h[i]);
        }
        let zero = _mm_setzero_si128();
        // Block `k` of every lane: indexed, as the lanes are walked in step.
        #[allow(clippy::needless_range_loop)]
        for k in 0..blocks[0].len() {
            let mut l = [Lane {
                h0: zero,
                h1: zero,
                w: [zero; 5],
            }; N];
            for i in 0..N {
                l[i].h0 = abcd[i];
                l[i].w = load_block(&blocks[i][k], mask);
            }
            // Rounds 0-15 use the message words as loaded.
            for (x, e) in l.iter_mut().zip(&e) {
                x.h1 = _mm_sha1rnds4_epu32(x.h0, _mm_add_epi32(*e, x.w[0]), 0);
            }
            rounds!(l, h0, h1, 1, 0);
            rounds!(l, h1, h0, 2, 0);
            rounds!(l, h0, h1, 3, 0);
            // Rounds 16-79: each step extends the schedule by four words.
            step!(l, h1, h0, 4, 0);
            step!(l, h0, h1, 5, 1);
            step!(l, h1, h0, 6, 1);
            step!(l, h0, h1, 7, 1);
            step!(l, h1, h0, 8, 1);
            step!(l, h0, h1, 9, 1);
            step!(l, h1, h0, 10, 2);
            step!(l, h0, h1, 11, 2);
            step!(l, h1, h0, 12, 2);
            step!(l, h0, h1, 13, 2);
            step!(l, h1, h0, 14, 2);
            step!(l, h0, h1, 15, 3);
            step!(l, h1, h0, 16, 3);
            step!(l, h0, h1, 17, 3);
            step!(l, h1, h0, 18, 3);
            step!(l, h0, h1, 19, 3);
            for i in 0..N {
                abcd[i] = _mm_add_epi32(abcd[i], l[i].h0);
                e[i] = _mm_sha1nexte_epu32(l[i].h1, e[i]);
            }
        }
        for i in 0..N {
            store_state(&mut h[i], abcd[i], e[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::numbers;
    use sha1::Digest;

    fn reference(data: &[u8]) -> [u8; 20] {
        sha1::Sha1::digest(data).into()
    }

    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        crate::testutil::random_bytes(n, seed)
    }

    #[test]
    fn known_answers() {
        let h = |d: &[u8]| {
            let mut s = Sha1::new();
            s.update(d);
            s.finish()
        };
        assert_eq!(h(b""), reference(b""));
        assert_eq!(
            h(b"abc"),
            [
                0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
                0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d
            ]
        );
        for n in [55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let d = bytes(n, n as u64);
            assert_eq!(h(&d), reference(&d), "length {n}");
        }
    }

    /// Pairs of messages of many lengths, fed in uneven chunks, give the
    /// same digests as the `sha1` crate, whichever path compresses them.
    #[test]
    fn pairs_match_the_reference_for_any_split() {
        let mut next = numbers(7);
        for round in 0..300 {
            let la = next(5000) as usize;
            let lb = if round % 3 == 0 {
                la
            } else {
                next(5000) as usize
            };
            let a = bytes(la, round + 1);
            let b = bytes(lb, round + 1000);
            let (mut x, mut y) = (Sha1::new(), Sha1::new());
            let (mut pa, mut pb) = (0, 0);
            while pa < la || pb < lb {
                let ca = (next(1500) as usize).min(la - pa);
                let cb = if round % 2 == 0 && pa < la {
                    ca.min(lb - pb)
                } else {
                    (next(1500) as usize).min(lb - pb)
                };
                update_lanes(&mut [&mut x, &mut y], &[&a[pa..pa + ca], &b[pb..pb + cb]]);
                pa += ca;
                pb += cb;
            }
            assert_eq!(
                x.finish(),
                reference(&a),
                "round {round} lane a ({la} bytes)"
            );
            assert_eq!(
                y.finish(),
                reference(&b),
                "round {round} lane b ({lb} bytes)"
            );
        }
    }

    /// Two and three lanes, compressed side by side, match one-lane
    /// compression, on the SHA extensions and on the fallback.
    #[test]
    fn the_multi_lane_compressor_matches_one_lane_compression() {
        let msgs: Vec<Vec<u8>> = (0..3).map(|i| bytes(64 * 300, i + 1)).collect();
        let blocks: Vec<&[[u8; 64]]> = msgs.iter().map(|m| as_blocks(m).0).collect();
        let one: Vec<[u32; 5]> = blocks
            .iter()
            .map(|b| {
                let mut h = INIT;
                compress(&mut h, b);
                h
            })
            .collect();
        let mut h2 = [INIT; 2];
        compress_n(&mut h2, [blocks[0], blocks[1]]);
        assert_eq!(h2[..], one[..2]);
        let mut h3 = [INIT; 3];
        compress_n(&mut h3, [blocks[0], blocks[1], blocks[2]]);
        assert_eq!(h3[..], one[..]);
        #[cfg(target_arch = "x86_64")]
        if x86::has_sha_ni() {
            let mut h3 = [INIT; 3];
            // SAFETY: checked just above; the lanes have equal lengths.
            unsafe { x86::compress_n(&mut h3, [blocks[0], blocks[1], blocks[2]]) };
            assert_eq!(h3[..], one[..]);
        }
    }

    /// Three messages of different lengths fed in uneven chunks, some
    /// lanes empty in a call: the same digests as the `sha1` crate.
    #[test]
    fn three_lanes_match_the_reference_for_any_split() {
        let mut next = numbers(11);
        for round in 0..200 {
            let lens: Vec<usize> = (0..3).map(|_| next(6000) as usize).collect();
            let msgs: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &l)| bytes(l, round * 3 + i as u64))
                .collect();
            let (mut x, mut y, mut z) = (Sha1::new(), Sha1::new(), Sha1::new());
            let mut pos = [0usize; 3];
            while (0..3).any(|i| pos[i] < lens[i]) {
                let mut parts: [&[u8]; 3] = [&[]; 3];
                for i in 0..3 {
                    let c = if round % 2 == 0 {
                        (4096 + 64 * i).min(lens[i] - pos[i])
                    } else {
                        (next(2000) as usize).min(lens[i] - pos[i])
                    };
                    parts[i] = &msgs[i][pos[i]..pos[i] + c];
                    pos[i] += c;
                }
                update_lanes(&mut [&mut x, &mut y, &mut z], &parts);
            }
            for (i, h) in [x, y, z].into_iter().enumerate() {
                assert_eq!(h.finish(), reference(&msgs[i]), "round {round} lane {i}");
            }
        }
    }
}
