//! Availability counts and the set of pickable pieces, bucketed by count.
//!
//! Like mainline's `interests` lists: bucket `k` holds the pickable pieces
//! that `k` connected peers have, so the rarest pickable piece a peer has is
//! found by walking buckets upwards. A piece entering a bucket is swapped to
//! a random position in it, so ties between equally rare pieces are broken
//! at random. Every update is O(1).

use rand::rngs::SmallRng;
use rand::Rng;

/// Marks a piece that is not pickable (not in any bucket).
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(super) struct Availability {
    /// How many connected peers have each piece.
    count: Vec<u32>,
    /// `buckets[k]`: pickable pieces with `count == k`, in random order.
    buckets: Vec<Vec<u32>>,
    /// Index of each pickable piece inside its bucket, or `NONE`.
    pos: Vec<u32>,
    /// Number of pickable pieces.
    len: usize,
    /// No pickable piece has an index below this (for sequential order).
    first_hint: usize,
}

impl Availability {
    /// `n` pieces, none pickable, nobody has anything.
    pub(super) fn new(n: usize) -> Self {
        Availability {
            count: vec![0; n],
            buckets: vec![Vec::new()],
            pos: vec![NONE; n],
            len: 0,
            first_hint: n,
        }
    }

    pub(super) fn count(&self, piece: usize) -> u32 {
        self.count[piece]
    }

    pub(super) fn contains(&self, piece: usize) -> bool {
        self.pos[piece] != NONE
    }

    /// Number of pickable pieces.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Make `piece` pickable (no-op if it is).
    pub(super) fn insert(&mut self, piece: usize, rng: &mut SmallRng) {
        if self.contains(piece) {
            return;
        }
        self.push(piece, rng);
        self.len += 1;
        self.first_hint = self.first_hint.min(piece);
    }

    /// Make `piece` unpickable (no-op if it is not pickable).
    pub(super) fn remove(&mut self, piece: usize) {
        if self.contains(piece) {
            self.unlink(piece);
            self.len -= 1;
        }
    }

    /// One more peer has `piece`.
    pub(super) fn inc(&mut self, piece: usize, rng: &mut SmallRng) {
        let pickable = self.contains(piece);
        if pickable {
            self.unlink(piece);
        }
        self.count[piece] = self.count[piece].saturating_add(1);
        if pickable {
            self.push(piece, rng);
        }
    }

    /// One peer fewer has `piece`.
    pub(super) fn dec(&mut self, piece: usize, rng: &mut SmallRng) {
        if self.count[piece] == 0 {
            return;
        }
        let pickable = self.contains(piece);
        if pickable {
            self.unlink(piece);
        }
        self.count[piece] -= 1;
        if pickable {
            self.push(piece, rng);
        }
    }

    /// Pickable pieces, rarest first (ties in random order).
    pub(super) fn rarest(&self) -> impl Iterator<Item = usize> + '_ {
        self.buckets.iter().flatten().map(|&p| p as usize)
    }

    /// Pickable pieces in index order, advancing the hint past the
    /// unpickable prefix.
    pub(super) fn ascending(&mut self) -> impl Iterator<Item = usize> + '_ {
        let n = self.pos.len();
        while self.first_hint < n && !self.contains(self.first_hint) {
            self.first_hint += 1;
        }
        let pos = &self.pos;
        (self.first_hint..n).filter(move |&p| pos[p] != NONE)
    }

    /// Put a piece into the bucket of its count at a random position.
    fn push(&mut self, piece: usize, rng: &mut SmallRng) {
        let k = self.count[piece] as usize;
        if self.buckets.len() <= k {
            self.buckets.resize_with(k + 1, Vec::new);
        }
        let bucket = &mut self.buckets[k];
        bucket.push(piece as u32);
        let last = bucket.len() - 1;
        let j = rng.random_range(0..=last);
        bucket.swap(j, last);
        self.pos[bucket[last] as usize] = last as u32;
        self.pos[piece] = j as u32;
    }

    /// Take a piece out of its bucket.
    fn unlink(&mut self, piece: usize) {
        let k = self.count[piece] as usize;
        let i = self.pos[piece] as usize;
        let bucket = &mut self.buckets[k];
        bucket.swap_remove(i);
        if let Some(&moved) = bucket.get(i) {
            self.pos[moved as usize] = i as u32;
        }
        self.pos[piece] = NONE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn check(a: &Availability) {
        let mut seen = 0;
        for (k, b) in a.buckets.iter().enumerate() {
            for (i, &p) in b.iter().enumerate() {
                assert_eq!(a.count[p as usize] as usize, k);
                assert_eq!(a.pos[p as usize] as usize, i);
                seen += 1;
            }
        }
        assert_eq!(seen, a.len);
        assert_eq!(a.pos.iter().filter(|&&p| p != NONE).count(), a.len);
    }

    #[test]
    fn buckets_stay_consistent() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut a = Availability::new(50);
        for p in 0..50 {
            a.insert(p, &mut rng);
        }
        check(&a);
        for step in 0..2000usize {
            let p = rng.random_range(0..50);
            match step % 5 {
                0 | 1 => a.inc(p, &mut rng),
                2 => a.dec(p, &mut rng),
                3 => a.remove(p),
                _ => a.insert(p, &mut rng),
            }
            check(&a);
        }
        let order: Vec<_> = a.rarest().collect();
        for w in order.windows(2) {
            assert!(a.count(w[0]) <= a.count(w[1]));
        }
        let asc: Vec<_> = a.ascending().collect();
        assert!(asc.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(asc.len(), a.len());
    }

    #[test]
    fn counts_survive_unpickable_periods() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut a = Availability::new(3);
        a.inc(1, &mut rng);
        a.inc(1, &mut rng);
        a.dec(2, &mut rng); // never below zero
        assert_eq!(a.count(1), 2);
        assert_eq!(a.count(2), 0);
        a.insert(1, &mut rng);
        a.insert(2, &mut rng);
        assert_eq!(a.rarest().collect::<Vec<_>>(), vec![2, 1]);
    }
}
