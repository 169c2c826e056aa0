//! BEP 12 announce-list tiers.

use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::Rng;

/// Trackers grouped in tiers, in the order they should be tried.
///
/// Each tier is shuffled once when built; a tracker that answers moves to
/// the front of its tier; on failure the caller moves on to the next
/// tracker of the tier and then to the next tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    tiers: Vec<Vec<Arc<str>>>,
}

impl Tiers {
    /// Builds the tiers, dropping empty URLs, duplicate URLs (the first
    /// occurrence wins) and empty tiers, and shuffling each tier.
    pub fn new(tiers: Vec<Vec<String>>) -> Tiers {
        Tiers::with_rng(tiers, &mut rand::rng())
    }

    /// As [`Tiers::new`], with a given random source (for tests).
    pub fn with_rng(tiers: Vec<Vec<String>>, rng: &mut impl Rng) -> Tiers {
        let mut seen = std::collections::HashSet::new();
        let tiers = tiers
            .into_iter()
            .map(|tier| {
                let mut tier: Vec<Arc<str>> = tier
                    .into_iter()
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty() && seen.insert(u.clone()))
                    .map(Arc::from)
                    .collect();
                tier.shuffle(rng);
                tier.shrink_to_fit();
                tier
            })
            .filter(|tier| !tier.is_empty())
            .collect();
        Tiers { tiers }
    }

    /// Replaces each URL with the one `intern` gives for it (an equal
    /// string shared with other torrents on the same tracker).
    pub fn intern(&mut self, mut intern: impl FnMut(&str) -> Arc<str>) {
        for url in self.tiers.iter_mut().flatten() {
            *url = intern(url);
        }
        self.tiers.shrink_to_fit();
    }

    /// The tiers in their current order.
    pub fn tiers(&self) -> &[Vec<Arc<str>>] {
        &self.tiers
    }

    /// True when there is no tracker at all.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// Every tracker as `(tier, index, url)`, in the order to try them.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize, &str)> {
        self.tiers
            .iter()
            .enumerate()
            .flat_map(|(t, tier)| tier.iter().enumerate().map(move |(i, url)| (t, i, &**url)))
    }

    /// Moves the tracker at `index` of `tier` to the front of its tier
    /// (it answered, so it is tried first next time). Out-of-range
    /// positions are ignored.
    pub fn promote(&mut self, tier: usize, index: usize) {
        if let Some(t) = self.tiers.get_mut(tier) {
            if index < t.len() {
                let url = t.remove(index);
                t.insert(0, url);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn s(v: &[&[&str]]) -> Vec<Vec<String>> {
        v.iter()
            .map(|t| t.iter().map(|u| u.to_string()).collect())
            .collect()
    }

    fn names(tier: &[Arc<str>]) -> Vec<String> {
        tier.iter().map(|u| u.to_string()).collect()
    }

    #[test]
    fn shuffles_within_tiers_only() {
        let input = s(&[&["a", "b", "c", "d"], &["e", "f"]]);
        let mut orders = std::collections::HashSet::new();
        for seed in 0..50 {
            let tiers = Tiers::with_rng(input.clone(), &mut StdRng::seed_from_u64(seed));
            let mut first = names(&tiers.tiers()[0]);
            orders.insert(first.clone());
            first.sort();
            assert_eq!(first, ["a", "b", "c", "d"]);
            let mut second = names(&tiers.tiers()[1]);
            second.sort();
            assert_eq!(second, ["e", "f"]);
        }
        assert!(orders.len() > 5, "tier 0 was not shuffled: {orders:?}");
    }

    #[test]
    fn drops_empty_and_duplicates_and_iterates_in_order() {
        let tiers = Tiers::with_rng(
            s(&[&[""], &["a"], &["a", " "], &["b"]]),
            &mut StdRng::seed_from_u64(1),
        );
        let all: Vec<Vec<String>> = tiers.tiers().iter().map(|t| names(t)).collect();
        assert_eq!(all, s(&[&["a"], &["b"]]));
        let order: Vec<_> = tiers.iter().collect();
        assert_eq!(order, [(0, 0, "a"), (1, 0, "b")]);
        assert!(Tiers::new(vec![vec![]]).is_empty());
    }

    #[test]
    fn promote_moves_to_front_of_its_tier() {
        let mut tiers = Tiers::with_rng(
            s(&[&["a", "b", "c"], &["d"]]),
            &mut StdRng::seed_from_u64(3),
        );
        let before = tiers.tiers()[0].clone();
        tiers.promote(0, 2);
        assert_eq!(tiers.tiers()[0][0], before[2]);
        assert_eq!(tiers.tiers()[0][1], before[0]);
        assert_eq!(tiers.tiers()[0][2], before[1]);
        tiers.promote(1, 5);
        tiers.promote(7, 0);
        assert_eq!(names(&tiers.tiers()[1]), ["d"]);
    }
}
