//! A small pool of threads that verify pieces by reading them back, and
//! the per-torrent queue that hands them completed pieces two at a time.
//!
//! Unlike a rayon pool its idle workers sleep on a channel instead of
//! spinning, which matters on a machine with few cores where the peer
//! threads need every cycle.

use std::collections::VecDeque;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs waiting at most; beyond this `spawn` waits for a free slot.
const QUEUE: usize = 65_536;

pub(crate) struct HashPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl HashPool {
    pub(crate) fn new(threads: usize) -> std::io::Result<HashPool> {
        let (tx, rx) = bounded::<Job>(QUEUE);
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("bittern-verify-{i}"))
                    .spawn(move || {
                        for job in rx {
                            job();
                        }
                    })?,
            );
        }
        Ok(HashPool {
            tx: Some(tx),
            threads: handles,
        })
    }

    /// Runs `job` on a worker.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        if let Some(tx) = &self.tx {
            // Only fails once the pool is shutting down.
            let _ = tx.send(Box::new(job));
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Completed pieces waiting to be read back and hashed, handed to
/// verification jobs in pairs: two pieces hashed side by side cost about
/// 0.6x of hashing them one after the other (`bittern_storage`'s pair
/// hashing). A job that finds a lone piece waits briefly for a partner;
/// pieces of a fast download complete well within that wait.
#[derive(Default)]
pub(crate) struct PairQueue {
    state: Mutex<PairState>,
    arrived: Condvar,
}

#[derive(Default)]
struct PairState {
    pending: VecDeque<usize>,
    /// A job holds one piece and waits for a second.
    waiting: bool,
}

impl PairQueue {
    /// Queues `piece`. True when the caller must start a job for it; false
    /// when a waiting job takes it as its partner.
    pub(crate) fn push(&self, piece: usize) -> bool {
        let mut st = self.state.lock();
        st.pending.push_back(piece);
        if st.waiting && st.pending.len() == 1 {
            self.arrived.notify_one();
            return false;
        }
        true
    }

    /// Takes up to two pieces. With only one queued, waits up to `wait`
    /// for a second, unless another job is already waiting. `(None, None)`
    /// when another job took this job's piece.
    pub(crate) fn take(&self, wait: Duration) -> (Option<usize>, Option<usize>) {
        let mut st = self.state.lock();
        let Some(first) = st.pending.pop_front() else {
            return (None, None);
        };
        if st.pending.is_empty() && !st.waiting && !wait.is_zero() {
            st.waiting = true;
            let _ = self.arrived.wait_for(&mut st, wait);
            st.waiting = false;
        }
        let second = st.pending.pop_front();
        (Some(first), second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_job_then_joins() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = HashPool::new(2).unwrap();
        for i in 0..100 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(i).unwrap());
        }
        drop(pool);
        let mut got: Vec<i32> = rx.try_iter().collect();
        got.sort();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn pair_queue_hands_out_every_piece_once() {
        use std::sync::Arc;
        let q = Arc::new(PairQueue::default());
        let pool = HashPool::new(2).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut pairs = 0;
        for piece in 0..500 {
            if q.push(piece) {
                let (q, tx) = (q.clone(), tx.clone());
                pool.spawn(move || {
                    let (a, b) = q.take(Duration::from_millis(2));
                    for p in [a, b].into_iter().flatten() {
                        tx.send((p, b.is_some())).unwrap();
                    }
                });
            }
            if piece % 7 == 0 {
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        drop(pool);
        drop(tx);
        let mut got = Vec::new();
        for (p, paired) in rx {
            got.push(p);
            pairs += usize::from(paired);
        }
        got.sort_unstable();
        assert_eq!(got, (0..500).collect::<Vec<_>>(), "each piece exactly once");
        assert!(pairs >= 400, "most pieces are hashed in pairs: {pairs}");
    }

    #[test]
    fn a_lone_piece_waits_for_a_partner_then_goes_alone() {
        let q = PairQueue::default();
        assert!(q.push(1));
        let start = std::time::Instant::now();
        assert_eq!(q.take(Duration::from_millis(20)), (Some(1), None));
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(q.take(Duration::from_millis(20)), (None, None));
    }
}
