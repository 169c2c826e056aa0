//! The session-wide bound on outgoing connections being opened
//! (`SessionConfig::max_half_open`) and the order in which torrents get
//! the slots it frees.
//!
//! Each outgoing peer thread is counted from its spawn until its
//! handshakes are done or it ends (`peer::Connection::dialing`). A torrent
//! (or metadata fetch) asks [`HalfOpen::turn`] before each dial. While a
//! slot is free and nobody waits, every torrent dials at once. A torrent
//! refused joins a queue, once; a free slot then belongs to the torrent at
//! its head, which the controller thread runs as soon as one frees
//! ([`HalfOpen::next_turn`], after every event). A torrent that takes its
//! turn and wants more goes to the back: round robin. Without the queue,
//! freed slots went to whichever torrent ticked next, and a torrent
//! dialling hundreds of dead addresses (ticking every 250 ms in step with
//! its own dial timeouts) kept a new download from dialling for many
//! rounds.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::torrent::TorrentId;

/// The count of connections being opened and the torrents waiting for
/// a slot (see the module docs).
pub(crate) struct HalfOpen {
    /// Outgoing connections being opened, across the session.
    pub count: Arc<AtomicUsize>,
    max: usize,
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    order: VecDeque<TorrentId>,
    queued: HashSet<TorrentId>,
}

impl HalfOpen {
    pub(crate) fn new(max: usize) -> Self {
        HalfOpen {
            count: Arc::default(),
            max,
            waiting: Mutex::new(Waiting::default()),
        }
    }

    fn free(&self) -> bool {
        self.count.load(Ordering::Relaxed) < self.max
    }

    /// Whether torrent `id` may open one more connection now: a slot is
    /// free and no torrent waits before it. If not, it waits in the queue.
    pub(crate) fn turn(&self, id: TorrentId) -> bool {
        let mut w = self.waiting.lock();
        let free = self.free();
        match w.order.front() {
            None if free => true,
            Some(&head) if free && head == id => {
                w.order.pop_front();
                w.queued.remove(&id);
                true
            }
            _ => {
                if w.queued.insert(id) {
                    w.order.push_back(id);
                }
                false
            }
        }
    }

    /// The torrent whose turn it is, while a slot is free.
    pub(crate) fn next_turn(&self) -> Option<TorrentId> {
        let w = self.waiting.lock();
        if self.free() {
            w.order.front().copied()
        } else {
            None
        }
    }

    /// Torrent `id` was given its turn (see [`next_turn`](Self::next_turn))
    /// and did not take it (nothing to dial now, stopped, removed): it
    /// leaves the queue, so the next one's turn comes.
    pub(crate) fn pass(&self, id: TorrentId) {
        let mut w = self.waiting.lock();
        if w.order.front() == Some(&id) {
            w.order.pop_front();
            w.queued.remove(&id);
        }
    }

    /// Torrents waiting for a turn.
    #[cfg(test)]
    fn waiting(&self) -> Vec<TorrentId> {
        self.waiting.lock().order.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_slots_go_round_the_waiting_torrents_in_order() {
        let h = HalfOpen::new(2);
        // Nobody waits: torrent 1 takes both slots.
        assert!(h.turn(1));
        h.count.fetch_add(1, Ordering::Relaxed);
        assert!(h.turn(1));
        h.count.fetch_add(1, Ordering::Relaxed);
        // Full: 1, 2 and 3 wait, each once, in the order they asked.
        assert!(!h.turn(1));
        assert!(!h.turn(2));
        assert!(!h.turn(3));
        assert!(!h.turn(2));
        assert_eq!(h.waiting(), [1, 2, 3]);
        assert_eq!(h.next_turn(), None, "no slot free");
        // A slot frees: it is 1's, and no one else may take it.
        h.count.fetch_sub(1, Ordering::Relaxed);
        assert_eq!(h.next_turn(), Some(1));
        assert!(!h.turn(3));
        assert!(h.turn(1));
        h.count.fetch_add(1, Ordering::Relaxed);
        // 1 wants more: to the back.
        assert!(!h.turn(1));
        assert_eq!(h.waiting(), [2, 3, 1]);
        // Two slots free: 2 passes (nothing to dial), 3 takes one.
        h.count.fetch_sub(2, Ordering::Relaxed);
        assert_eq!(h.next_turn(), Some(2));
        h.pass(2);
        assert_eq!(h.next_turn(), Some(3));
        assert!(h.turn(3));
        h.count.fetch_add(1, Ordering::Relaxed);
        // Passing is only for the head.
        h.pass(3);
        assert_eq!(h.waiting(), [1]);
        assert!(h.turn(1));
        h.count.fetch_add(1, Ordering::Relaxed);
        assert_eq!(h.next_turn(), None);
        assert!(h.waiting().is_empty());
    }
}
