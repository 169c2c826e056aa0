//! [`Bitfield`]: a fixed-length bit array in wire order (bit 0 is the high
//! bit of byte 0), with a cached count of set bits.

use thiserror::Error;

/// A wire bitfield did not fit the torrent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BitfieldError {
    /// The byte length is not `ceil(len_bits / 8)`.
    #[error("bitfield of {got} bytes, expected {expected}")]
    WrongLength {
        /// Bytes received.
        got: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Bits past `len_bits` in the last byte are set.
    #[error("spare bits set at the end of the bitfield")]
    SpareBitsSet,
}

/// Which of `len` pieces are present.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: usize,
    ones: usize,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{} set)", self.ones, self.len)
    }
}

fn byte_len(bits: usize) -> usize {
    bits.div_ceil(8)
}

fn mask(i: usize) -> u8 {
    0x80 >> (i % 8)
}

impl Bitfield {
    /// `len_bits` bits, all clear.
    pub fn new(len_bits: usize) -> Self {
        Bitfield {
            bytes: vec![0; byte_len(len_bits)],
            len: len_bits,
            ones: 0,
        }
    }

    /// `len_bits` bits, all set (spare bits stay clear).
    pub fn full(len_bits: usize) -> Self {
        let mut bytes = vec![0xff; byte_len(len_bits)];
        if !len_bits.is_multiple_of(8) {
            if let Some(last) = bytes.last_mut() {
                *last = !(0xff >> (len_bits % 8));
            }
        }
        Bitfield {
            bytes,
            len: len_bits,
            ones: len_bits,
        }
    }

    /// Take a bitfield message body for a torrent of `len_bits` pieces.
    ///
    /// # Errors
    /// [`BitfieldError`] if the length is wrong or spare bits are set.
    pub fn from_wire(bytes: &[u8], len_bits: usize) -> Result<Self, BitfieldError> {
        let expected = byte_len(len_bits);
        if bytes.len() != expected {
            return Err(BitfieldError::WrongLength {
                got: bytes.len(),
                expected,
            });
        }
        if !len_bits.is_multiple_of(8) {
            let spare = 0xffu8 >> (len_bits % 8);
            if bytes.last().is_some_and(|b| b & spare != 0) {
                return Err(BitfieldError::SpareBitsSet);
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones() as usize).sum();
        Ok(Bitfield {
            bytes: bytes.to_vec(),
            len: len_bits,
            ones,
        })
    }

    /// Number of bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no bits at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bit `i`; false when `i` is out of range.
    pub fn get(&self, i: usize) -> bool {
        i < self.len && self.bytes[i / 8] & mask(i) != 0
    }

    /// Set bit `i`. Returns whether it changed; an index `>= len()` (e.g.
    /// a peer's bogus `have`) changes nothing and returns false, so check
    /// indices from the network with [`Bitfield::len`] to detect it.
    pub fn set(&mut self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        let b = &mut self.bytes[i / 8];
        let was = *b & mask(i) != 0;
        *b |= mask(i);
        if !was {
            self.ones += 1;
        }
        !was
    }

    /// Clear bit `i`. Returns whether it changed; an index `>= len()`
    /// changes nothing and returns false.
    pub fn clear(&mut self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        let b = &mut self.bytes[i / 8];
        let was = *b & mask(i) != 0;
        *b &= !mask(i);
        if was {
            self.ones -= 1;
        }
        was
    }

    /// Number of set bits, O(1).
    pub fn count_ones(&self) -> usize {
        self.ones
    }

    /// Number of clear bits, O(1).
    pub fn count_zeros(&self) -> usize {
        self.len - self.ones
    }

    /// All bits set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// The wire bytes (spare bits always clear).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Indices of set bits, ascending; skips whole zero bytes.
    pub fn iter_ones(&self) -> impl Iterator<Item = usize> + '_ {
        self.iter_where(false)
    }

    /// Indices of clear bits, ascending; skips whole full bytes.
    pub fn iter_zeros(&self) -> impl Iterator<Item = usize> + '_ {
        self.iter_where(true)
    }

    fn iter_where(&self, invert: bool) -> impl Iterator<Item = usize> + '_ {
        let len = self.len;
        self.bytes.iter().enumerate().flat_map(move |(bi, &b)| {
            let mut bits = if invert { !b } else { b };
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let lz = bits.leading_zeros() as usize;
                bits &= !(0x80u8 >> lz);
                Some(bi * 8 + lz)
            })
            .filter(move |&i| i < len)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn new_full_and_spare_bits() {
        let b = Bitfield::new(10);
        assert_eq!(b.as_bytes(), &[0, 0]);
        assert_eq!((b.len(), b.count_ones(), b.is_full()), (10, 0, false));
        let f = Bitfield::full(10);
        assert_eq!(f.as_bytes(), &[0xff, 0xc0]);
        assert!(f.is_full());
        assert_eq!(f.iter_ones().count(), 10);
        assert_eq!(f.iter_zeros().count(), 0);
        assert_eq!(Bitfield::full(16).as_bytes(), &[0xff, 0xff]);
        assert!(Bitfield::new(0).is_empty() && Bitfield::new(0).is_full());
    }

    #[test]
    fn set_clear_get_count() {
        let mut b = Bitfield::new(12);
        assert!(b.set(0));
        assert!(!b.set(0));
        assert!(b.set(11));
        assert_eq!(b.as_bytes(), &[0x80, 0x10]);
        assert!(b.get(11) && !b.get(10) && !b.get(12) && !b.get(1000));
        assert_eq!(b.count_ones(), 2);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 11]);
        assert_eq!(b.iter_zeros().count(), 10);
        assert!(b.clear(0));
        assert!(!b.clear(0));
        assert_eq!(b.count_ones(), 1);
    }

    #[test]
    fn from_wire_checks() {
        assert_eq!(
            Bitfield::from_wire(&[0xff], 10),
            Err(BitfieldError::WrongLength {
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            Bitfield::from_wire(&[0xff, 0xe0], 10),
            Err(BitfieldError::SpareBitsSet)
        );
        let b = Bitfield::from_wire(&[0xa0, 0x40], 10).unwrap();
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 2, 9]);
        assert_eq!(b.count_ones(), 3);
    }

    #[test]
    fn out_of_range_is_ignored() {
        let mut b = Bitfield::new(3);
        assert!(!b.set(3) && !b.set(usize::MAX) && !b.clear(3));
        assert_eq!((b.count_ones(), b.as_bytes()), (0, &[0u8][..]));
    }

    proptest! {
        #[test]
        fn matches_a_bool_vec(bits in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut b = Bitfield::new(bits.len());
            for (i, &v) in bits.iter().enumerate() {
                if v { b.set(i); }
            }
            let ones: Vec<usize> = (0..bits.len()).filter(|&i| bits[i]).collect();
            let zeros: Vec<usize> = (0..bits.len()).filter(|&i| !bits[i]).collect();
            prop_assert_eq!(b.iter_ones().collect::<Vec<_>>(), ones.clone());
            prop_assert_eq!(b.iter_zeros().collect::<Vec<_>>(), zeros);
            prop_assert_eq!(b.count_ones(), ones.len());
            let back = Bitfield::from_wire(b.as_bytes(), bits.len()).unwrap();
            prop_assert_eq!(back, b);
        }
    }
}
