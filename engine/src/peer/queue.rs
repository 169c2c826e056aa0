//! The requests a peer has queued with us, served in the order they came,
//! with O(1) CANCEL.
//!
//! A deep queue (we advertise [`OUR_REQQ`](super::OUR_REQQ)) must not make a
//! CANCEL cost a scan of every queued request: a peer could otherwise fill
//! the queue and then burn our CPU with cancels for blocks it never asked
//! for. So the blocks still wanted live in a set, and the order in a deque
//! that may hold stale entries (cancelled, or repeated after a cancel and a
//! new request). Stale entries are skipped when popped, and the deque is
//! compacted whenever it grows to twice the queue limit, so its size stays
//! bounded however a peer mixes requests and cancels.
//!
//! Two corner cases differ from a plain FIFO, harmlessly: a request
//! repeated while the first copy is still queued is served once (no
//! REJECT for the copy: the peer gets the block it asked for), and a block
//! cancelled and then requested again may be served at the place of its
//! first request.
//!
//! Memory is about 30 bytes per queued request at most; a queue that
//! drains gives back what it grew to.

use std::collections::VecDeque;

use bittern_wire::BlockRef;

use crate::fasthash::FastSet;

/// Outcome of [`RequestQueue::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued.
    Queued,
    /// Already queued: a repeated request is served once.
    Duplicate,
    /// The queue holds `limit` requests already.
    Full,
}

#[derive(Debug)]
pub(super) struct RequestQueue {
    /// Arrival order; may hold blocks no longer in `live`.
    order: VecDeque<BlockRef>,
    /// The requests still to be served.
    live: FastSet<BlockRef>,
    limit: usize,
}

impl RequestQueue {
    /// An empty queue for at most `limit` outstanding requests.
    pub(super) fn new(limit: usize) -> Self {
        RequestQueue {
            order: VecDeque::new(),
            live: FastSet::default(),
            limit: limit.max(1),
        }
    }

    /// Requests waiting to be served.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.live.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Queue a request behind the others.
    pub(super) fn push(&mut self, b: BlockRef) -> Pushed {
        if self.live.contains(&b) {
            return Pushed::Duplicate;
        }
        if self.live.len() >= self.limit {
            return Pushed::Full;
        }
        if self.order.len() >= 2 * self.limit {
            self.compact();
        }
        self.live.insert(b);
        self.order.push_back(b);
        Pushed::Queued
    }

    /// The peer no longer wants `b`. Returns whether it was queued.
    pub(super) fn cancel(&mut self, b: BlockRef) -> bool {
        self.live.remove(&b)
    }

    /// The oldest request still wanted.
    pub(super) fn pop(&mut self) -> Option<BlockRef> {
        while let Some(b) = self.order.pop_front() {
            if self.live.remove(&b) {
                return Some(b);
            }
        }
        self.shrink();
        None
    }

    /// Empties the queue, returning the requests still wanted in arrival
    /// order.
    pub(super) fn drain(&mut self) -> Vec<BlockRef> {
        let mut out = Vec::with_capacity(self.live.len());
        while let Some(b) = self.pop() {
            out.push(b);
        }
        out
    }

    /// Gives back the memory of a deep queue once it is empty.
    fn shrink(&mut self) {
        const KEEP: usize = 4096;
        if self.order.capacity() > KEEP {
            self.order = VecDeque::new();
        }
        if self.live.capacity() > KEEP {
            self.live = FastSet::default();
        }
    }

    /// Drops stale entries, keeping each live block once, at its first
    /// position.
    fn compact(&mut self) {
        let mut kept = FastSet::default();
        let live = &self.live;
        self.order.retain(|b| live.contains(b) && kept.insert(*b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(index: u32, block: u32) -> BlockRef {
        BlockRef {
            index,
            begin: block * 16384,
            length: 16384,
        }
    }

    #[test]
    fn serves_in_arrival_order_and_skips_cancelled() {
        let mut q = RequestQueue::new(10);
        for i in 0..5 {
            assert_eq!(q.push(b(1, i)), Pushed::Queued);
        }
        assert_eq!(q.len(), 5);
        assert!(q.cancel(b(1, 1)));
        assert!(q.cancel(b(1, 3)));
        assert!(!q.cancel(b(1, 3)), "already cancelled");
        assert!(!q.cancel(b(2, 0)), "never requested");
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop(), Some(b(1, 0)));
        assert_eq!(q.pop(), Some(b(1, 2)));
        assert_eq!(q.pop(), Some(b(1, 4)));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    fn repeats_are_served_once_and_the_limit_counts_live_requests() {
        let mut q = RequestQueue::new(3);
        assert_eq!(q.push(b(0, 0)), Pushed::Queued);
        assert_eq!(q.push(b(0, 0)), Pushed::Duplicate);
        assert_eq!(q.push(b(0, 1)), Pushed::Queued);
        assert_eq!(q.push(b(0, 2)), Pushed::Queued);
        assert_eq!(q.push(b(0, 3)), Pushed::Full);
        // A cancel makes room; a block requested again after its cancel is
        // served once.
        assert!(q.cancel(b(0, 0)));
        assert_eq!(q.push(b(0, 0)), Pushed::Queued);
        assert_eq!(q.push(b(0, 4)), Pushed::Full);
        assert_eq!(q.drain(), vec![b(0, 0), b(0, 1), b(0, 2)]);
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn a_drained_deep_queue_gives_its_memory_back() {
        let mut q = RequestQueue::new(100_000);
        for i in 0..50_000 {
            assert_eq!(q.push(b(i, 0)), Pushed::Queued);
        }
        assert!(q.order.capacity() >= 50_000 && q.live.capacity() >= 50_000);
        for i in 0..50_000 {
            assert_eq!(q.pop(), Some(b(i, 0)));
        }
        assert_eq!(q.pop(), None);
        assert!(q.order.capacity() <= 4096, "{}", q.order.capacity());
        assert!(q.live.capacity() <= 4096, "{}", q.live.capacity());
        assert_eq!(q.push(b(7, 0)), Pushed::Queued);
        assert_eq!(q.drain(), vec![b(7, 0)]);
    }

    #[test]
    fn request_cancel_churn_keeps_the_deque_bounded() {
        let mut q = RequestQueue::new(8);
        for i in 0..4 {
            assert_eq!(q.push(b(9, i)), Pushed::Queued);
        }
        for round in 0..10_000u32 {
            let x = b(round % 3, 0);
            assert_eq!(q.push(x), Pushed::Queued);
            assert!(q.cancel(x));
            assert!(q.order.len() <= 2 * 8, "round {round}: {}", q.order.len());
        }
        assert_eq!(q.push(b(0, 0)), Pushed::Queued);
        assert_eq!(q.drain(), vec![b(9, 0), b(9, 1), b(9, 2), b(9, 3), b(0, 0)]);
    }
}
