//! Giving back the room of tables that were large once.
//!
//! std's `Vec` and `HashMap` never shrink by themselves: a session that
//! held 2,000 torrents, or a torrent that once had 200 peers, keeps the
//! table sized for them after they are gone. Tables whose size follows
//! the torrents or peers call these after removing entries: they shrink
//! only when at most a quarter is used (to twice the entries), so a table
//! that shrinks must lose half again before the next shrink, and the
//! cost stays amortised over the removals.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Tables at or below this capacity are left as they are.
const FLOOR: usize = 32;

fn sparse(len: usize, capacity: usize) -> bool {
    capacity > FLOOR && len.saturating_mul(4) <= capacity
}

/// Shrinks `v` when at most a quarter of its capacity is used.
pub(crate) fn vec<T>(v: &mut Vec<T>) {
    if sparse(v.len(), v.capacity()) {
        v.shrink_to(v.len() * 2);
    }
}

/// Shrinks `m` when at most a quarter of its capacity is used.
pub(crate) fn map<K: Eq + Hash, V, S: BuildHasher>(m: &mut HashMap<K, V, S>) {
    if sparse(m.len(), m.capacity()) {
        m.shrink_to(m.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mostly_empty_table_shrinks_a_busy_one_does_not() {
        let mut m: HashMap<u32, u64> = (0..2000).map(|i| (i, 0)).collect();
        let full = m.capacity();
        m.retain(|k, _| *k < 1500);
        map(&mut m);
        // (`capacity` counts tombstones out, so it moves a little.)
        assert!(m.capacity() * 10 >= full * 9, "three quarters used: kept");
        m.retain(|k, _| *k < 10);
        map(&mut m);
        assert!(
            m.capacity() < 64,
            "capacity {} for 10 entries",
            m.capacity()
        );
        assert_eq!(m.len(), 10);

        let mut v: Vec<u32> = (0..2000).collect();
        v.truncate(3);
        vec(&mut v);
        assert!(v.capacity() <= 8, "capacity {}", v.capacity());
        let mut small: Vec<u32> = Vec::with_capacity(FLOOR);
        vec(&mut small);
        assert_eq!(small.capacity(), FLOOR, "small tables are left alone");
    }
}
