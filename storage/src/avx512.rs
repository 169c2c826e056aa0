//! Sixteen messages at once in the lanes of AVX-512 registers: SHA-256 of
//! sixteen 16 KiB leaves, SHA-1 of sixteen pieces.
//!
//! On a CPU with both the SHA extensions and AVX-512, the SHA extensions'
//! one execution unit caps SHA-256 near 2.3 GB/s per core however many
//! messages are interleaved (`sha256.rs`: two lanes already reach it;
//! OpenSSL's single stream does 2.06 GB/s on the same core), while the
//! plain FIPS 180-4 rounds on sixteen 32-bit lanes run on the two vector
//! ports, with a rotate instruction and three-input logic (`vprord`,
//! `vpternlogd`) each round needs about 17 of them for sixteen messages.
//! SHA-1 (about 7 instructions a round for sixteen messages) is capped the
//! same way by its SHA unit (three SHA-NI lanes 2.4 GB/s, OpenSSL 2.1).
//! The sixteen messages lie anywhere in memory: each lane's 64-byte block
//! is loaded whole and the sixteen transposed into word vectors
//! (`vpermt2d`, four passes; as fast here as gathering each word with
//! `vpgatherdd`).

/// The environment variable that turns the AVX-512 paths off (see the
/// crate docs, "Environment"): hashing then takes the SHA extensions or
/// portable paths a CPU without AVX-512 takes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const NO_AVX512_ENV: &str = "BITTERN_NO_AVX512";

/// Whether a value of [`NO_AVX512_ENV`] turns AVX-512 off: any value but
/// unset, empty, `0`, `false`, `no` and `off` (any case) does.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn switched_off(value: Option<&std::ffi::OsStr>) -> bool {
    let Some(v) = value else { return false };
    let v = v.to_string_lossy();
    let v = v.trim();
    !(v.is_empty()
        || ["0", "false", "no", "off"]
            .iter()
            .any(|n| v.eq_ignore_ascii_case(n)))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::switched_off;

    #[test]
    fn no_avx512_values_parse() {
        for on in ["1", "yes", "true", "TRUE", " 1 ", "anything"] {
            assert!(
                switched_off(Some(OsStr::new(on))),
                "{on:?} should turn AVX-512 off"
            );
        }
        for off in ["", "0", "false", "No", "OFF", " 0 "] {
            assert!(
                !switched_off(Some(OsStr::new(off))),
                "{off:?} should leave AVX-512 on"
            );
        }
        assert!(!switched_off(None));
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use crate::sha256::x86::{H0, K};

    /// Bytes per leaf.
    const LEAF: usize = 16 * 1024;

    /// Messages per register.
    pub(crate) const LANES: usize = 16;

    /// Tests set this to take the portable paths on a CPU with AVX-512,
    /// so both are checked against the reference crates on one machine.
    #[cfg(test)]
    pub(crate) static FORCE_PORTABLE: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// Whether this process runs [`leaves16_at`] and [`sha1_compress16`]:
    /// the CPU has AVX-512F and AVX-512BW and [`NO_AVX512_ENV`] did not
    /// turn them off. Decided once (the first call reads the environment).
    pub(crate) fn available() -> bool {
        #[cfg(test)]
        if FORCE_PORTABLE.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ON.get_or_init(|| {
            let cpu = std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw");
            let off = super::switched_off(std::env::var_os(super::NO_AVX512_ENV).as_deref());
            if cpu && off {
                log::info!("{}: AVX-512 hashing off", super::NO_AVX512_ENV);
            }
            cpu && !off
        })
    }

    /// The words of the block that ends every full leaf: `0x80`, zeros,
    /// and the length in bits (131,072).
    const PAD: [u32; 16] = {
        let mut w = [0u32; 16];
        w[0] = 0x8000_0000;
        w[15] = (LEAF as u32) * 8;
        w
    };

    macro_rules! add {
        ($a:expr, $b:expr) => {
            _mm512_add_epi32($a, $b)
        };
    }

    /// `x ^ y ^ z`
    macro_rules! xor3 {
        ($x:expr, $y:expr, $z:expr) => {
            _mm512_ternarylogic_epi32::<0x96>($x, $y, $z)
        };
    }

    /// One round on every lane, with schedule word `w[i]` (extended first
    /// when `$sched`): `d += t1`, `h = t1 + t2`; the caller rotates the
    /// names for the next round.
    macro_rules! round {
        ($w:ident, $t:expr, $i:literal, $sched:expr,
         $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {
            if $sched {
                let x = $w[($i + 1) % 16];
                let s0 = xor3!(
                    _mm512_ror_epi32::<7>(x),
                    _mm512_ror_epi32::<18>(x),
                    _mm512_srli_epi32::<3>(x)
                );
                let y = $w[($i + 14) % 16];
                let s1 = xor3!(
                    _mm512_ror_epi32::<17>(y),
                    _mm512_ror_epi32::<19>(y),
                    _mm512_srli_epi32::<10>(y)
                );
                $w[$i] = add!(add!($w[$i], s0), add!($w[($i + 9) % 16], s1));
            }
            let big1 = xor3!(
                _mm512_ror_epi32::<6>($e),
                _mm512_ror_epi32::<11>($e),
                _mm512_ror_epi32::<25>($e)
            );
            // ch(e, f, g) = e ? f : g
            let ch = _mm512_ternarylogic_epi32::<0xCA>($e, $f, $g);
            let kw = add!(_mm512_set1_epi32(K[$t + $i] as i32), $w[$i]);
            let t1 = add!(add!($h, big1), add!(ch, kw));
            let big0 = xor3!(
                _mm512_ror_epi32::<2>($a),
                _mm512_ror_epi32::<13>($a),
                _mm512_ror_epi32::<22>($a)
            );
            // maj(a, b, c)
            let maj = _mm512_ternarylogic_epi32::<0xE8>($a, $b, $c);
            $d = add!($d, t1);
            $h = add!(t1, add!(big0, maj));
        };
    }

    /// Sixteen rounds from `t`, the names rotating one place a round.
    macro_rules! sixteen {
        ($w:ident, $t:expr, $sched:expr, $a:ident, $b:ident, $c:ident, $d:ident,
         $e:ident, $f:ident, $g:ident, $h:ident) => {
            round!($w, $t, 0, $sched, $a, $b, $c, $d, $e, $f, $g, $h);
            round!($w, $t, 1, $sched, $h, $a, $b, $c, $d, $e, $f, $g);
            round!($w, $t, 2, $sched, $g, $h, $a, $b, $c, $d, $e, $f);
            round!($w, $t, 3, $sched, $f, $g, $h, $a, $b, $c, $d, $e);
            round!($w, $t, 4, $sched, $e, $f, $g, $h, $a, $b, $c, $d);
            round!($w, $t, 5, $sched, $d, $e, $f, $g, $h, $a, $b, $c);
            round!($w, $t, 6, $sched, $c, $d, $e, $f, $g, $h, $a, $b);
            round!($w, $t, 7, $sched, $b, $c, $d, $e, $f, $g, $h, $a);
            round!($w, $t, 8, $sched, $a, $b, $c, $d, $e, $f, $g, $h);
            round!($w, $t, 9, $sched, $h, $a, $b, $c, $d, $e, $f, $g);
            round!($w, $t, 10, $sched, $g, $h, $a, $b, $c, $d, $e, $f);
            round!($w, $t, 11, $sched, $f, $g, $h, $a, $b, $c, $d, $e);
            round!($w, $t, 12, $sched, $e, $f, $g, $h, $a, $b, $c, $d);
            round!($w, $t, 13, $sched, $d, $e, $f, $g, $h, $a, $b, $c);
            round!($w, $t, 14, $sched, $c, $d, $e, $f, $g, $h, $a, $b);
            round!($w, $t, 15, $sched, $b, $c, $d, $e, $f, $g, $h, $a);
        };
    }

    /// The SHA-1 round constants (FIPS 180-4, 4.2.1), one per 20 rounds.
    const K1: [u32; 4] = [0x5A82_7999, 0x6ED9_EBA1, 0x8F1B_BCDC, 0xCA62_C1D6];

    /// SHA-1 round `t` on every lane with schedule word `w[t % 16]`
    /// (extended first from t = 16 on): `e += rol5(a) + f(b, c, d) + k +
    /// w`, `b = rol30(b)`; the caller rotates the names for the next one.
    macro_rules! sha1_round {
        ($w:ident, $t:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident) => {{
            const T: usize = $t;
            if T >= 16 {
                let x = xor3!($w[(T - 3) % 16], $w[(T - 8) % 16], $w[(T - 14) % 16]);
                $w[T % 16] = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, $w[T % 16]));
            }
            let f = if T < 20 {
                // ch
                _mm512_ternarylogic_epi32::<0xCA>($b, $c, $d)
            } else if T < 40 || T >= 60 {
                xor3!($b, $c, $d)
            } else {
                // maj
                _mm512_ternarylogic_epi32::<0xE8>($b, $c, $d)
            };
            let kw = add!(_mm512_set1_epi32(K1[T / 20] as i32), $w[T % 16]);
            $e = add!(add!($e, _mm512_rol_epi32::<5>($a)), add!(f, kw));
            $b = _mm512_rol_epi32::<30>($b);
        }};
    }

    /// Five SHA-1 rounds from `t`: the names are back in place after them.
    macro_rules! sha1_five {
        ($w:ident, $t:expr, $a:ident, $b:ident, $c:ident, $d:ident, $e:ident) => {
            sha1_round!($w, $t, $a, $b, $c, $d, $e);
            sha1_round!($w, $t + 1, $e, $a, $b, $c, $d);
            sha1_round!($w, $t + 2, $d, $e, $a, $b, $c);
            sha1_round!($w, $t + 3, $c, $d, $e, $a, $b);
            sha1_round!($w, $t + 4, $b, $c, $d, $e, $a);
        };
    }

    /// The `vpermt2d` indices of one transpose pass with blocks of `b`
    /// words: `lo` takes the first `b` words of each `2b` from the first
    /// vector then from the second, `hi` the last `b` of each.
    const fn pass(b: usize, hi: bool) -> [i32; 16] {
        let mut idx = [0i32; 16];
        let mut p = 0;
        while p < 16 {
            let seg = p / (2 * b) * 2 * b;
            let o = p % (2 * b);
            let from_second = o >= b;
            let within = if from_second { o - b } else { o };
            let at = seg + within + if hi { b } else { 0 };
            idx[p] = (at + if from_second { 16 } else { 0 }) as i32;
            p += 1;
        }
        idx
    }

    const PASSES: [(usize, [i32; 16], [i32; 16]); 4] = [
        (8, pass(8, false), pass(8, true)),
        (4, pass(4, false), pass(4, true)),
        (2, pass(2, false), pass(2, true)),
        (1, pass(1, false), pass(1, true)),
    ];

    /// Compresses `blocks[i]` into `h[i]` for each of the sixteen lanes
    /// (every lane the same number of blocks).
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW ([`available`]).
    ///
    /// # Panics
    /// When the lanes differ in length.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(crate) unsafe fn sha1_compress16(h: &mut [[u32; 5]; LANES], blocks: [&[[u8; 64]]; LANES]) {
        let n = blocks[0].len();
        assert!(blocks.iter().all(|b| b.len() == n));
        let mut st = [_mm512_setzero_si512(); 5];
        for (j, s) in st.iter_mut().enumerate() {
            let words: [u32; LANES] = std::array::from_fn(|i| h[i][j]);
            *s = _mm512_loadu_si512(words.as_ptr().cast());
        }
        let rows: [*const u8; LANES] = blocks.map(|b| b.as_ptr().cast::<u8>());
        for k in 0..n {
            let mut w = load_transposed(&rows, k);
            let [mut a, mut b, mut c, mut d, mut e] = st;
            sha1_five!(w, 0, a, b, c, d, e);
            sha1_five!(w, 5, a, b, c, d, e);
            sha1_five!(w, 10, a, b, c, d, e);
            sha1_five!(w, 15, a, b, c, d, e);
            sha1_five!(w, 20, a, b, c, d, e);
            sha1_five!(w, 25, a, b, c, d, e);
            sha1_five!(w, 30, a, b, c, d, e);
            sha1_five!(w, 35, a, b, c, d, e);
            sha1_five!(w, 40, a, b, c, d, e);
            sha1_five!(w, 45, a, b, c, d, e);
            sha1_five!(w, 50, a, b, c, d, e);
            sha1_five!(w, 55, a, b, c, d, e);
            sha1_five!(w, 60, a, b, c, d, e);
            sha1_five!(w, 65, a, b, c, d, e);
            sha1_five!(w, 70, a, b, c, d, e);
            sha1_five!(w, 75, a, b, c, d, e);
            for (s, v) in st.iter_mut().zip([a, b, c, d, e]) {
                *s = add!(*s, v);
            }
        }
        for (j, s) in st.iter().enumerate() {
            let mut words = [0u32; LANES];
            _mm512_storeu_si512(words.as_mut_ptr().cast(), *s);
            for (i, w) in words.into_iter().enumerate() {
                h[i][j] = w;
            }
        }
    }

    /// Loads block `k` of each lane (`rows[i]`: lane `i`'s message) as
    /// big-endian words, transposed: `w[j]` holds word `j` of every lane.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn load_transposed(rows: &[*const u8; LANES], k: usize) -> [__m512i; 16] {
        let swap = _mm512_set4_epi32(0x0c0d_0e0f, 0x0809_0a0b, 0x0405_0607, 0x0001_0203);
        let mut w: [__m512i; 16] = std::array::from_fn(|i| {
            _mm512_shuffle_epi8(_mm512_loadu_si512(rows[i].add(64 * k).cast()), swap)
        });
        for (b, lo, hi) in PASSES {
            let lo = _mm512_loadu_si512(lo.as_ptr().cast());
            let hi = _mm512_loadu_si512(hi.as_ptr().cast());
            for i in 0..16 {
                if i & b == 0 {
                    let (x, y) = (w[i], w[i + b]);
                    w[i] = _mm512_permutex2var_epi32(x, lo, y);
                    w[i + b] = _mm512_permutex2var_epi32(x, hi, y);
                }
            }
        }
        w
    }

    /// SHA-256 of sixteen full leaves anywhere in memory.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW ([`available`]).
    ///
    /// # Panics
    /// Unless every leaf is 16 KiB.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(crate) unsafe fn leaves16_at(leaves: [&[u8]; LANES]) -> [[u8; 32]; LANES] {
        assert!(leaves.iter().all(|l| l.len() == LEAF));
        let rows: [*const u8; LANES] = leaves.map(<[u8]>::as_ptr);
        let mut st = [_mm512_setzero_si512(); 8];
        for (s, h) in st.iter_mut().zip(H0) {
            *s = _mm512_set1_epi32(h as i32);
        }
        for block in 0..=LEAF / 64 {
            let mut w = if block < LEAF / 64 {
                load_transposed(&rows, block)
            } else {
                PAD.map(|p| _mm512_set1_epi32(p as i32))
            };
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = st;
            sixteen!(w, 0, false, a, b, c, d, e, f, g, h);
            sixteen!(w, 16, true, a, b, c, d, e, f, g, h);
            sixteen!(w, 32, true, a, b, c, d, e, f, g, h);
            sixteen!(w, 48, true, a, b, c, d, e, f, g, h);
            for (s, v) in st.iter_mut().zip([a, b, c, d, e, f, g, h]) {
                *s = add!(*s, v);
            }
        }
        let mut words = [[0u32; LANES]; 8];
        for (out, s) in words.iter_mut().zip(st) {
            _mm512_storeu_si512(out.as_mut_ptr().cast(), s);
        }
        let mut out = [[0u8; 32]; LANES];
        for (lane, o) in out.iter_mut().enumerate() {
            for (j, word) in words.iter().enumerate() {
                o[4 * j..4 * j + 4].copy_from_slice(&word[lane].to_be_bytes());
            }
        }
        out
    }
}
