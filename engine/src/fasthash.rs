//! A fast keyed hasher for the engine's per-block maps (requests per
//! connection and per peer, keyed by piece index and block offset).
//!
//! std's SipHash costs more than the rest of a lookup for two `u32`s and
//! showed up in profiles of a four-leecher swarm (about 1.5% of all CPU
//! with `HashMap::remove`). This is a multiply-xor mix with a strong final
//! mix, so block offsets (multiples of 16 KiB, whose low bits are all zero)
//! still spread over the table. It is seeded once per process from std's
//! random `RandomState`, so a peer cannot choose keys that collide.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A `HashMap` with [`FastState`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastState>;
/// A `HashSet` with [`FastState`].
pub(crate) type FastSet<K> = HashSet<K, FastState>;

const K: u64 = 0x9E37_79B9_7F4A_7C15;

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x6269_7474_u64))
}

/// Builds [`FastHasher`]s from the process's seed.
#[derive(Clone, Copy)]
pub(crate) struct FastState(u64);

impl Default for FastState {
    fn default() -> Self {
        FastState(seed())
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

/// See the module documentation.
pub(crate) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(23) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // murmur3's 64-bit finaliser: every input bit reaches every output bit.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 33;
        x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        x ^ (x >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocks of a torrent's pieces (offsets in steps of 16 KiB) fill a
    /// table's buckets evenly: the low bits, which pick the bucket, differ.
    #[test]
    fn block_keys_spread_over_the_low_bits() {
        let state = FastState::default();
        let mut buckets = vec![0u32; 1024];
        for piece in 0..256u32 {
            for block in 0..16u32 {
                let h = state.hash_one((piece, block * 16384));
                buckets[(h & 1023) as usize] += 1;
            }
        }
        // 4096 keys in 1024 buckets: 4 on average; a poor mix piles them up.
        let max = buckets.iter().copied().max().unwrap_or(0);
        let empty = buckets.iter().filter(|&&n| n == 0).count();
        assert!(max <= 16, "fullest bucket holds {max}");
        assert!(empty < 100, "{empty} empty buckets");
    }

    #[test]
    fn maps_work_as_maps() {
        let mut m: FastMap<(u32, u32), u32> = FastMap::default();
        for i in 0..1000u32 {
            m.insert((i / 16, (i % 16) * 16384), i);
        }
        assert_eq!(m.len(), 1000);
        assert_eq!(m.remove(&(3, 2 * 16384)), Some(50));
        assert_eq!(m.get(&(3, 2 * 16384)), None);
    }
}
