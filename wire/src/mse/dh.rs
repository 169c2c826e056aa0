//! The MSE Diffie–Hellman exchange: generator 2, the 768-bit prime P,
//! public keys and the shared secret S always 96 bytes big-endian.

use rand::CryptoRng;

use super::bignum::{self, Monty, BYTES};
use super::MseError;

/// Bytes of private exponent: 160 bits, what the MSE spec recommends
/// (beyond 180 adds nothing against a 768-bit group; Transmission and
/// libtorrent since 2026 use 20 bytes too).
const PRIVATE_LEN: usize = 20;

/// One side's key pair, used for one handshake.
#[derive(Clone)]
pub(crate) struct KeyPair {
    private: [u8; PRIVATE_LEN],
    /// `2^private mod P`, 96 bytes big-endian.
    pub(crate) public: [u8; BYTES],
}

impl KeyPair {
    /// A fresh random key pair.
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> KeyPair {
        let mut private = [0u8; PRIVATE_LEN];
        rng.fill_bytes(&mut private);
        // a top bit of one keeps the exponent at full length; never zero
        private[0] |= 0x80;
        let mut two = [0u64; 12];
        two[0] = 2;
        let public = bignum::to_be_bytes(&Monty::mse().pow(&two, &private));
        KeyPair { private, public }
    }

    /// `S = their^private mod P`, 96 bytes, left-padded with zeros.
    ///
    /// # Errors
    /// [`MseError::BadPublicKey`] unless `2 <= their <= P - 2` (0, 1 and
    /// P - 1 would force a known secret; P and above are not residues).
    pub(crate) fn shared_secret(&self, their: &[u8; BYTES]) -> Result<[u8; BYTES], MseError> {
        let m = Monty::mse();
        let y = bignum::from_be_bytes(their);
        let mut two = [0u64; 12];
        two[0] = 2;
        let mut p_minus_1 = m.p;
        p_minus_1[0] -= 1; // P is odd: no borrow
        if !bignum::ge(&y, &two) || bignum::ge(&y, &p_minus_1) {
            return Err(MseError::BadPublicKey);
        }
        Ok(bignum::to_be_bytes(&m.pow(&y, &self.private)))
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn two_ends_agree() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..8 {
            let a = KeyPair::generate(&mut rng);
            let b = KeyPair::generate(&mut rng);
            assert_ne!(a.public, b.public);
            let sa = a.shared_secret(&b.public).unwrap();
            let sb = b.shared_secret(&a.public).unwrap();
            assert_eq!(sa, sb);
            assert_ne!(sa, [0u8; BYTES]);
        }
    }

    #[test]
    fn degenerate_public_keys_are_refused() {
        let a = KeyPair::generate(&mut StdRng::seed_from_u64(1));
        let p = bignum::to_be_bytes(&Monty::mse().p);
        let mut p_minus_1 = p;
        p_minus_1[95] -= 1;
        let mut p_minus_2 = p;
        p_minus_2[95] -= 2;
        let mut one = [0u8; BYTES];
        one[95] = 1;
        let mut two = [0u8; BYTES];
        two[95] = 2;
        for bad in [[0u8; BYTES], one, p_minus_1, p, [0xff; BYTES]] {
            assert_eq!(a.shared_secret(&bad), Err(MseError::BadPublicKey));
        }
        assert!(a.shared_secret(&two).is_ok());
        assert!(a.shared_secret(&p_minus_2).is_ok());
    }
}
