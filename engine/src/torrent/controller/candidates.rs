//! A torrent's candidate addresses: the queue of peers to dial and the
//! set of peers known, fed by every peer source through one intake
//! ([`Candidates::offer`]) with a bound for the torrent and one per
//! source, so that no source (a PEX flood above all) can grow memory or
//! the dial queue without limit, or crowd the others out. Pure: the
//! controller decides when to dial.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

/// Addresses a torrent queues to dial, and remembers, at most.
pub(crate) const MAX_CANDIDATES: usize = 10_000;
/// Candidates learnt from PEX waiting to be dialled at once, per torrent:
/// enough to fill a torrent's connections several times over, and a small
/// share of the whole queue.
pub(crate) const MAX_PEX_CANDIDATES: usize = 500;
/// Addresses learnt from PEX remembered per torrent (`known`: shown as
/// known peers, dialled again on resume).
pub(crate) const MAX_PEX_KNOWN: usize = 2000;

/// Where a candidate address came from: each source has its own bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CandidateSource {
    /// Trackers, `--peer`, [`add_peers`](crate::TorrentHandle::add_peers)
    /// (the peer-source channel), and peers lost and dialled again.
    Offered,
    /// Another peer's `ut_pex` message.
    Pex,
}

/// The dial queue and the known peers of one torrent.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Waiting to be dialled, in order.
    queue: VecDeque<SocketAddr>,
    /// The same addresses, to refuse duplicates in O(1).
    queued: HashSet<SocketAddr>,
    /// The queued addresses PEX gave.
    pex_queued: HashSet<SocketAddr>,
    /// Every address offered (bounded), for status and resume.
    known: HashSet<SocketAddr>,
    /// How many of `known` PEX gave.
    pex_known: usize,
    /// What is known of an address's protocol encryption (MSE) support,
    /// for the dial rule (`handshake::dial_steps`), at most
    /// [`MAX_CANDIDATES`] entries.
    mse: HashMap<SocketAddr, bool>,
    /// Addresses a PEX sender flagged as speaking uTP (`0x04`): dialled
    /// over uTP first. At most [`MAX_CANDIDATES`].
    utp: HashSet<SocketAddr>,
}

impl Candidates {
    /// Takes an address from `source`: remembered, and queued unless it
    /// is `connected` already, each within its bounds. Returns whether it
    /// was queued.
    pub(crate) fn offer(
        &mut self,
        source: CandidateSource,
        a: SocketAddr,
        connected: bool,
    ) -> bool {
        let pex = source == CandidateSource::Pex;
        let room = !pex || self.pex_known < MAX_PEX_KNOWN;
        if room && self.known.len() < MAX_CANDIDATES && self.known.insert(a) && pex {
            self.pex_known += 1;
        }
        if connected
            || self.queue.len() >= MAX_CANDIDATES
            || (pex && self.pex_queued.len() >= MAX_PEX_CANDIDATES)
            || !self.queued.insert(a)
        {
            return false;
        }
        self.queue.push_back(a);
        if pex {
            self.pex_queued.insert(a);
        }
        true
    }

    /// The next address to consider dialling, and where it came from.
    pub(crate) fn pop(&mut self) -> Option<(SocketAddr, CandidateSource)> {
        let a = self.queue.pop_front()?;
        self.queued.remove(&a);
        let source = if self.pex_queued.remove(&a) {
            CandidateSource::Pex
        } else {
            CandidateSource::Offered
        };
        Some((a, source))
    }

    /// Puts back an address just popped that must wait (it keeps its
    /// place among its source's bound).
    pub(crate) fn requeue(&mut self, a: SocketAddr, source: CandidateSource) {
        if self.queued.insert(a) {
            self.queue.push_back(a);
            if source == CandidateSource::Pex {
                self.pex_queued.insert(a);
            }
        }
    }

    /// Queues every known address again (a resumed torrent).
    pub(crate) fn requeue_known(&mut self) {
        let known: Vec<SocketAddr> = self.known.iter().copied().collect();
        for a in known {
            if self.queue.len() >= MAX_CANDIDATES {
                break;
            }
            if self.queued.insert(a) {
                self.queue.push_back(a);
            }
        }
    }

    /// Records what we learnt of `a`'s MSE support (the latest word wins:
    /// a PEX flag or `e` says yes, a dial that had to fall back to the
    /// clear says no). Dropped once the table is full.
    pub(crate) fn note_mse(&mut self, a: SocketAddr, supports: bool) {
        if self.mse.len() < MAX_CANDIDATES || self.mse.contains_key(&a) {
            self.mse.insert(a, supports);
        }
    }

    /// What is known of `a`'s MSE support.
    pub(crate) fn mse(&self, a: SocketAddr) -> Option<bool> {
        self.mse.get(&a).copied()
    }

    /// Records that a PEX sender flagged `a` as speaking uTP. Dropped once
    /// the table is full.
    pub(crate) fn note_utp(&mut self, a: SocketAddr) {
        if self.utp.len() < MAX_CANDIDATES {
            self.utp.insert(a);
        }
    }

    /// Whether `a` was flagged as speaking uTP.
    pub(crate) fn utp(&self, a: SocketAddr) -> bool {
        self.utp.contains(&a)
    }

    /// Addresses waiting to be dialled.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many addresses are known.
    pub(crate) fn known_len(&self) -> usize {
        self.known.len()
    }

    /// Nothing queued, known or noted.
    pub(crate) fn is_unused(&self) -> bool {
        self.queue.is_empty() && self.known.is_empty() && self.mse.is_empty() && self.utp.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u32) -> SocketAddr {
        let [_, a, b, c] = i.to_be_bytes();
        SocketAddr::from(([127, a, b, c], 6881))
    }

    #[test]
    fn a_pex_flood_is_bounded_and_leaves_room_for_other_sources() {
        let mut c = Candidates::default();
        let mut queued = 0;
        for i in 0..50_000 {
            queued += usize::from(c.offer(CandidateSource::Pex, addr(i), false));
        }
        assert_eq!(queued, MAX_PEX_CANDIDATES);
        assert_eq!(c.len(), MAX_PEX_CANDIDATES);
        assert_eq!(c.known_len(), MAX_PEX_KNOWN);
        // Trackers and the user still get in, up to the torrent's bound.
        for i in 100_000..100_000 + 2 * MAX_CANDIDATES as u32 {
            c.offer(CandidateSource::Offered, addr(i), false);
        }
        assert_eq!(c.len(), MAX_CANDIDATES);
        assert_eq!(c.known_len(), MAX_CANDIDATES);
        // Dialling PEX candidates frees their share.
        let mut c = Candidates::default();
        for i in 0..MAX_PEX_CANDIDATES as u32 {
            c.offer(CandidateSource::Pex, addr(i), false);
        }
        assert!(!c.offer(CandidateSource::Pex, addr(999_999), false));
        assert_eq!(c.pop(), Some((addr(0), CandidateSource::Pex)));
        assert!(c.offer(CandidateSource::Pex, addr(999_999), false));
        // One waiting for its retry keeps its share.
        let (next, source) = c.pop().unwrap();
        c.requeue(next, source);
        assert!(!c.offer(CandidateSource::Pex, addr(888_888), false));
    }

    #[test]
    fn mse_support_is_the_latest_word_and_bounded() {
        let mut c = Candidates::default();
        assert_eq!(c.mse(addr(1)), None);
        c.note_mse(addr(1), false);
        assert_eq!(c.mse(addr(1)), Some(false));
        c.note_mse(addr(1), true);
        assert_eq!(c.mse(addr(1)), Some(true));
        for i in 2..(MAX_CANDIDATES as u32 + 10) {
            c.note_mse(addr(i), true);
        }
        assert_eq!(c.mse.len(), MAX_CANDIDATES);
        // A known address is still updated when full.
        c.note_mse(addr(1), false);
        assert_eq!(c.mse(addr(1)), Some(false));
    }

    #[test]
    fn duplicates_and_connected_peers_are_not_queued() {
        let mut c = Candidates::default();
        assert!(c.offer(CandidateSource::Offered, addr(1), false));
        assert!(!c.offer(CandidateSource::Pex, addr(1), false));
        assert!(!c.offer(CandidateSource::Offered, addr(2), true));
        assert_eq!((c.len(), c.known_len()), (1, 2));
        assert!(c.queued.contains(&addr(1)) && !c.queued.contains(&addr(2)));
        assert_eq!(c.pop(), Some((addr(1), CandidateSource::Offered)));
        assert_eq!(c.pop(), None);
        c.requeue_known();
        assert_eq!(c.len(), 2);
    }
}
