//! 160-bit node ids and the XOR metric.

use std::fmt;

use bittern_wire::InfoHash;
use rand::Rng;

/// A DHT node id: 160 bits in the same space as info hashes (BEP 5).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

/// `a XOR b`, compared as a big-endian 160-bit number: smaller is closer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 20]);

impl NodeId {
    /// A uniformly random id.
    pub fn random(rng: &mut impl Rng) -> NodeId {
        let mut b = [0u8; 20];
        rng.fill(&mut b[..]);
        NodeId(b)
    }

    /// A random id sharing exactly the first `prefix` bits with `self`
    /// (bit `prefix` differs; the rest are random). Used to refresh the
    /// bucket that holds ids with a common prefix of that length.
    /// `prefix` is capped at 159.
    pub fn random_at_prefix(&self, prefix: usize, rng: &mut impl Rng) -> NodeId {
        let prefix = prefix.min(159);
        let mut out = NodeId::random(rng).0;
        for (i, byte) in out.iter_mut().enumerate() {
            for bit in 0..8 {
                let pos = i * 8 + bit;
                let mask = 0x80u8 >> bit;
                let mine = self.0[i] & mask;
                if pos < prefix {
                    *byte = (*byte & !mask) | mine;
                } else if pos == prefix {
                    *byte = (*byte & !mask) | (!mine & mask);
                }
            }
        }
        NodeId(out)
    }

    /// The XOR distance to `other`.
    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// How many leading bits `self` and `other` share (160 when equal).
    pub fn common_prefix(&self, other: &NodeId) -> usize {
        self.distance(other).leading_zeros()
    }

    /// Lowercase hex, 40 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Distance {
    /// Number of leading zero bits (160 for distance zero).
    pub fn leading_zeros(&self) -> usize {
        for (i, b) in self.0.iter().enumerate() {
            if *b != 0 {
                return i * 8 + b.leading_zeros() as usize;
            }
        }
        160
    }
}

impl From<InfoHash> for NodeId {
    fn from(ih: InfoHash) -> NodeId {
        NodeId(ih.0)
    }
}

impl From<[u8; 20]> for NodeId {
    fn from(b: [u8; 20]) -> NodeId {
        NodeId(b)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_hex())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn distance_and_prefix() {
        let a = NodeId([0u8; 20]);
        let mut b = [0u8; 20];
        b[0] = 0x10;
        let b = NodeId(b);
        assert_eq!(a.common_prefix(&b), 3);
        assert_eq!(a.common_prefix(&a), 160);
        assert_eq!(a.distance(&b), b.distance(&a));
        let mut c = [0u8; 20];
        c[19] = 1;
        assert!(a.distance(&NodeId(c)) < a.distance(&b));
    }

    #[test]
    fn random_at_prefix_has_that_prefix() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let me = NodeId::random(&mut rng);
        for p in [0, 1, 7, 8, 9, 63, 100, 159] {
            for _ in 0..20 {
                let id = me.random_at_prefix(p, &mut rng);
                assert_eq!(me.common_prefix(&id), p, "prefix {p}");
            }
        }
    }
}
