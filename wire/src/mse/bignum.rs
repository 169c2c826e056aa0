//! Fixed-size 768-bit arithmetic modulo the MSE prime: just enough for
//! Diffie–Hellman (`base^exp mod P`), with Montgomery multiplication over
//! twelve 64-bit limbs.
//!
//! Hand-written rather than a crate because the whole need is one modulus
//! and one operation (about 120 lines), and a fixed-size type makes the
//! 96-byte big-endian encoding exact by construction: there is no length
//! to forget to pad (the bug Debian's libtorrent 2.0.8 has).
//!
//! Timing: the exponentiation does the same sequence of squarings and
//! multiplications for every exponent of a given length (a fixed 4-bit
//! window, multiplying even by the window value 0), but the window's table
//! index is a secret-dependent memory access. MSE is obfuscation, not
//! authenticated encryption, and each private key is used once.

/// Limbs per number.
const N: usize = 12;
/// Bytes on the wire.
pub(crate) const BYTES: usize = 96;

/// A number below 2^768, least significant limb first.
pub(crate) type Limbs = [u64; N];

/// The MSE prime P, big-endian hex.
const P_HEX: &str = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74\
                     020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437\
                     4FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

/// Big-endian bytes (at most 96) to limbs.
pub(crate) fn from_be_bytes(bytes: &[u8]) -> Limbs {
    debug_assert!(bytes.len() <= BYTES);
    let mut out = [0u64; N];
    for (k, &b) in bytes.iter().rev().enumerate() {
        out[k / 8] |= u64::from(b) << (8 * (k % 8));
    }
    out
}

/// Limbs to exactly 96 big-endian bytes (left-padded with zeros).
pub(crate) fn to_be_bytes(x: &Limbs) -> [u8; BYTES] {
    let mut out = [0u8; BYTES];
    for (k, limb) in x.iter().enumerate() {
        let at = BYTES - 8 * (k + 1);
        out[at..at + 8].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// `a >= b`.
pub(crate) fn ge(a: &Limbs, b: &Limbs) -> bool {
    for k in (0..N).rev() {
        if a[k] != b[k] {
            return a[k] > b[k];
        }
    }
    true
}

/// `a - b`, wrapping; returns the borrow.
fn sub_assign(a: &mut Limbs, b: &Limbs) -> bool {
    let mut borrow = false;
    for k in 0..N {
        let (d, b1) = a[k].overflowing_sub(b[k]);
        let (d, b2) = d.overflowing_sub(u64::from(borrow));
        a[k] = d;
        borrow = b1 || b2;
    }
    borrow
}

/// Arithmetic modulo P in Montgomery form (R = 2^768).
pub(crate) struct Monty {
    /// The modulus.
    pub(crate) p: Limbs,
    /// `-p^-1 mod 2^64`.
    n0: u64,
    /// `R^2 mod p`, to enter Montgomery form.
    r2: Limbs,
}

impl Monty {
    /// The context for the MSE prime.
    pub(crate) fn mse() -> &'static Monty {
        static CTX: std::sync::OnceLock<Monty> = std::sync::OnceLock::new();
        CTX.get_or_init(|| {
            let bytes: Vec<u8> = (0..BYTES)
                .map(|k| u8::from_str_radix(&P_HEX[2 * k..2 * k + 2], 16).unwrap_or_default())
                .collect();
            Monty::new(from_be_bytes(&bytes))
        })
    }

    /// A context for an odd modulus `p` with its top limb nonzero.
    fn new(p: Limbs) -> Monty {
        debug_assert!(p[0] & 1 == 1 && p[N - 1] != 0);
        // Newton's iteration doubles the correct low bits each round:
        // 1 -> 2 -> ... -> 64 bits in six rounds (p odd: 1 bit correct).
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p[0].wrapping_mul(inv)));
        }
        // R^2 mod p by doubling 1, 2 * 768 times, reducing each time.
        let mut r2 = [0u64; N];
        r2[0] = 1;
        for _ in 0..2 * 64 * N {
            let carry = r2[N - 1] >> 63;
            for k in (1..N).rev() {
                r2[k] = (r2[k] << 1) | (r2[k - 1] >> 63);
            }
            r2[0] <<= 1;
            if carry == 1 || ge(&r2, &p) {
                sub_assign(&mut r2, &p);
            }
        }
        Monty {
            p,
            n0: inv.wrapping_neg(),
            r2,
        }
    }

    /// `a * b / R mod p` (CIOS Montgomery multiplication); `a, b < p`.
    pub(crate) fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let p = &self.p;
        let mut t = [0u64; N + 2];
        for &bi in b {
            // t += a * b[i]
            let mut carry = 0u64;
            for j in 0..N {
                let v = u128::from(t[j]) + u128::from(a[j]) * u128::from(bi) + u128::from(carry);
                t[j] = v as u64;
                carry = (v >> 64) as u64;
            }
            let v = u128::from(t[N]) + u128::from(carry);
            t[N] = v as u64;
            t[N + 1] = (v >> 64) as u64;
            // t = (t + m * p) / 2^64, with m making the low limb zero
            let m = t[0].wrapping_mul(self.n0);
            let v = u128::from(t[0]) + u128::from(m) * u128::from(p[0]);
            let mut carry = (v >> 64) as u64;
            for j in 1..N {
                let v = u128::from(t[j]) + u128::from(m) * u128::from(p[j]) + u128::from(carry);
                t[j - 1] = v as u64;
                carry = (v >> 64) as u64;
            }
            let v = u128::from(t[N]) + u128::from(carry);
            t[N - 1] = v as u64;
            t[N] = t[N + 1] + (v >> 64) as u64;
        }
        // t < 2p: one conditional subtraction
        let mut out = [0u64; N];
        out.copy_from_slice(&t[..N]);
        if t[N] != 0 || ge(&out, p) {
            sub_assign(&mut out, p);
        }
        out
    }

    /// Into Montgomery form; `a < p`.
    fn enter(&self, a: &Limbs) -> Limbs {
        self.mul(a, &self.r2)
    }

    /// Out of Montgomery form.
    fn leave(&self, a: &Limbs) -> Limbs {
        let mut one = [0u64; N];
        one[0] = 1;
        self.mul(a, &one)
    }

    /// `base^exp mod p`, `exp` big-endian bytes of any length; `base < p`.
    pub(crate) fn pow(&self, base: &Limbs, exp: &[u8]) -> Limbs {
        let mut one = [0u64; N];
        one[0] = 1;
        // table[w] = base^w in Montgomery form, w in 0..16
        let mut table = [[0u64; N]; 16];
        table[0] = self.enter(&one);
        table[1] = self.enter(base);
        for w in 2..16 {
            table[w] = self.mul(&table[w - 1], &table[1]);
        }
        let mut acc = table[0];
        for &byte in exp {
            for nibble in [byte >> 4, byte & 0x0f] {
                for _ in 0..4 {
                    acc = self.mul(&acc, &acc);
                }
                acc = self.mul(&acc, &table[usize::from(nibble)]);
            }
        }
        self.leave(&acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex96(s: &str) -> Limbs {
        assert_eq!(s.len(), 192);
        let b: Vec<u8> = (0..96)
            .map(|k| u8::from_str_radix(&s[2 * k..2 * k + 2], 16).unwrap())
            .collect();
        from_be_bytes(&b)
    }

    /// `a * b mod p` the slow way: a 1536-bit product, reduced by shifting
    /// and subtracting bit by bit.
    fn mulmod_slow(a: &Limbs, b: &Limbs, p: &Limbs) -> Limbs {
        let mut prod = [0u64; 2 * N];
        for i in 0..N {
            let mut carry = 0u128;
            for j in 0..N {
                let v = u128::from(prod[i + j]) + u128::from(a[i]) * u128::from(b[j]) + carry;
                prod[i + j] = v as u64;
                carry = v >> 64;
            }
            prod[i + N] = carry as u64;
        }
        let mut r = [0u64; N];
        for bit in (0..2 * 64 * N).rev() {
            let top = r[N - 1] >> 63;
            for k in (1..N).rev() {
                r[k] = (r[k] << 1) | (r[k - 1] >> 63);
            }
            r[0] = (r[0] << 1) | ((prod[bit / 64] >> (bit % 64)) & 1);
            if top == 1 || ge(&r, p) {
                sub_assign(&mut r, p);
            }
        }
        r
    }

    /// xorshift numbers below p.
    fn numbers(count: usize) -> Vec<Limbs> {
        let p = Monty::mse().p;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut out = Vec::new();
        while out.len() < count {
            let mut n = [0u64; N];
            for limb in &mut n {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *limb = x;
            }
            if out.len() % 5 == 1 {
                n[N - 1] = 0; // some short numbers
            }
            if !ge(&n, &p) {
                out.push(n);
            }
        }
        // edge cases
        let mut pm1 = p;
        sub_assign(&mut pm1, &{
            let mut one = [0u64; N];
            one[0] = 1;
            one
        });
        out.extend([[0u64; N], pm1, {
            let mut one = [0u64; N];
            one[0] = 1;
            one
        }]);
        out
    }

    #[test]
    fn modulus_is_the_mse_prime() {
        let m = Monty::mse();
        let bytes = to_be_bytes(&m.p);
        assert_eq!(bytes[..8], [0xff; 8]);
        assert_eq!(bytes[88..], [0, 0, 0, 0, 0, 0x09, 0x05, 0x63]);
        assert_eq!(m.p[0].wrapping_mul(m.n0.wrapping_neg()), 1);
    }

    #[test]
    fn montgomery_mul_matches_slow_mulmod() {
        let m = Monty::mse();
        let ns = numbers(40);
        for a in &ns {
            for b in ns.iter().step_by(3) {
                let fast = m.leave(&m.mul(&m.enter(a), &m.enter(b)));
                assert_eq!(fast, mulmod_slow(a, b, &m.p), "{a:x?} * {b:x?}");
            }
        }
    }

    #[test]
    fn bytes_round_trip_and_pad() {
        for n in numbers(10) {
            assert_eq!(from_be_bytes(&to_be_bytes(&n)), n);
        }
        let mut small = [0u64; N];
        small[0] = 0x0102;
        let b = to_be_bytes(&small);
        assert_eq!(b.len(), 96);
        assert_eq!(b[94..], [1, 2]);
        assert!(b[..94].iter().all(|&x| x == 0));
        assert_eq!(from_be_bytes(&[1, 2]), small);
    }

    /// Values computed with Python's `pow(base, exp, P)`.
    #[test]
    fn pow_matches_python() {
        let m = Monty::mse();
        let mut two = [0u64; N];
        two[0] = 2;
        let x: Vec<u8> = (0..20)
            .map(|k| {
                u8::from_str_radix(
                    &"0123456789abcdef0123456789abcdef01234567"[2 * k..2 * k + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        let want = hex96(
            "6fd4bc7aa649593205ec30348a3ccc737b61fa01e9e1762c2c53eb69033afecb\
             df7c13b8ac3643af78d0760b0f42db009f2b96c970f009d060faf617f117d0f1\
             c221cea0561b9a86e852fc70a6f09ad0f82378603aa5e56b811deb3f534bf276",
        );
        assert_eq!(m.pow(&two, &x), want);
        // (2^y)^x for y = fedcba98...: a result with a leading zero nibble
        let y: Vec<u8> = (0..20)
            .map(|k| {
                u8::from_str_radix(
                    &"fedcba9876543210fedcba9876543210fedcba98"[2 * k..2 * k + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        let shared = m.pow(&m.pow(&two, &y), &x);
        assert_eq!(
            shared,
            hex96(
                "0bf59f468e43b9f22a5fd0ccbc9bd7825a7495f6e670c31533db364b536ee297\
                 a737d565ff7829d4c397de16aec19f893e3d28eaa14eaf7e17e1026697089fdf\
                 f81c7dc7e4c65e6211443d9dd3e5d8b0c0e8b2888af39637af18a75cc1b17685"
            )
        );
        assert_eq!(to_be_bytes(&shared)[0], 0x0b);
    }

    /// Fermat: 2^(P-1) = 1 mod P, a full 768-bit exponent.
    #[test]
    fn fermat_little_theorem() {
        let m = Monty::mse();
        let mut pm1 = m.p;
        pm1[0] -= 1;
        let mut two = [0u64; N];
        two[0] = 2;
        let mut one = [0u64; N];
        one[0] = 1;
        assert_eq!(m.pow(&two, &to_be_bytes(&pm1)), one);
        // and x^0 = 1, x^1 = x
        let x = numbers(1)[0];
        assert_eq!(m.pow(&x, &[]), one);
        assert_eq!(m.pow(&x, &[0, 1]), x);
    }
}
