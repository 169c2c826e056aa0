//! A small pool of threads that verify pieces by reading them back, and
//! the per-torrent queue that hands them completed pieces up to three at
//! a time.
//!
//! Unlike a rayon pool its idle workers sleep on a channel instead of
//! spinning, which matters on a machine with few cores where the peer
//! threads need every cycle.

use std::collections::VecDeque;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::Arc;

use crossbeam_channel::{bounded, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs waiting in the channel; beyond this they wait in the overflow.
const QUEUE: usize = 4096;

pub(crate) struct HashPool {
    tx: Option<Sender<Job>>,
    /// Jobs that found the channel full: never a blocked caller (the
    /// session's controller spawns jobs). Workers drain it after each job;
    /// it only fills while every worker is busy, and holds at most one job
    /// per piece being verified.
    overflow: Arc<Mutex<VecDeque<Job>>>,
    threads: Vec<JoinHandle<()>>,
}

impl HashPool {
    pub(crate) fn new(threads: usize) -> std::io::Result<HashPool> {
        HashPool::named(threads, "bittern-verify")
    }

    /// A pool whose threads are called `name-0`, `name-1`, ...
    pub(crate) fn named(threads: usize, name: &str) -> std::io::Result<HashPool> {
        let (tx, rx) = bounded::<Job>(QUEUE);
        let overflow: Arc<Mutex<VecDeque<Job>>> = Arc::default();
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let overflow = overflow.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || {
                        for job in rx {
                            job();
                            loop {
                                let next = overflow.lock().pop_front();
                                match next {
                                    Some(job) => job(),
                                    None => break,
                                }
                            }
                        }
                    })?,
            );
        }
        Ok(HashPool {
            tx: Some(tx),
            overflow,
            threads: handles,
        })
    }

    /// Runs `job` on a worker. Never blocks.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Box::new(job)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(job)) => {
                self.overflow.lock().push_back(job);
                // The workers may have emptied the channel since: a no-op
                // job wakes one to drain the overflow. If the channel is
                // full again, a worker reaches the overflow anyway.
                let _ = tx.try_send(Box::new(|| {}));
            }
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

/// Most threads of the session's [`SavePool`].
pub(crate) const SAVE_THREADS: usize = 4;
/// A save thread with nothing to do for this long ends.
const SAVE_IDLE: Duration = Duration::from_secs(2);

/// The few threads that write resume state (periodic saves and the last
/// save of a stop): a session stopping 10,000 torrents that each have
/// something to record runs their saves here, at most [`SAVE_THREADS`] at
/// a time, instead of on a thread per torrent. Threads start when jobs
/// wait and none is free, and end after [`SAVE_IDLE`] without a job, so a
/// session with nothing to save has none.
#[derive(Default)]
pub(crate) struct SavePool {
    shared: Arc<SaveShared>,
}

#[derive(Default)]
struct SaveShared {
    state: Mutex<SaveState>,
    wake: Condvar,
}

#[derive(Default)]
struct SaveState {
    /// Jobs waiting: at most one save per torrent at a time.
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

impl SavePool {
    /// Runs `job` on a save thread. Never waits for a job. Gives `job`
    /// back when no thread runs and none could be started.
    pub(crate) fn spawn<F: FnOnce() + Send + 'static>(&self, job: F) -> Result<(), F> {
        let mut st = self.shared.state.lock();
        if st.idle > 0 || st.threads >= SAVE_THREADS {
            st.jobs.push_back(Box::new(job));
            self.shared.wake.notify_one();
            return Ok(());
        }
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name(format!("bittern-save-{}", st.threads))
            .spawn(move || save_worker(&shared));
        match started {
            Ok(_) => {
                st.threads += 1;
                st.jobs.push_back(Box::new(job));
                Ok(())
            }
            Err(e) if st.threads > 0 => {
                log::debug!("cannot start another save thread: {e}");
                st.jobs.push_back(Box::new(job));
                Ok(())
            }
            Err(e) => {
                log::warn!("cannot start a save thread: {e}");
                Err(job)
            }
        }
    }
}

fn save_worker(shared: &SaveShared) {
    let mut st = shared.state.lock();
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = shared.state.lock();
            continue;
        }
        st.idle += 1;
        let timed_out = shared.wake.wait_for(&mut st, SAVE_IDLE).timed_out();
        st.idle -= 1;
        if timed_out && st.jobs.is_empty() {
            st.threads -= 1;
            return;
        }
    }
}

/// How many pieces a verification job hashes side by side
/// ([`bittern_storage::HASH_LANES`]).
pub(crate) const GROUP: usize = bittern_storage::HASH_LANES;

/// Completed pieces waiting to be hashed, handed to verification jobs in
/// groups of up to [`GROUP`]: three pieces hashed side by side cost about
/// 0.65x of a pair and a lone piece (`bittern_storage::Storage::hash_pieces`).
/// A job that finds fewer waits briefly for the rest of a group; pieces of
/// a fast download complete well within that wait.
#[derive(Default)]
pub(crate) struct VerifyQueue {
    state: Mutex<QueueState>,
    arrived: Condvar,
}

#[derive(Default)]
struct QueueState {
    pending: VecDeque<usize>,
    /// A job holds one piece and waits for the rest of its group.
    waiting: bool,
}

impl VerifyQueue {
    /// Queues `piece`. True when the caller must start a job for it; false
    /// when the waiting job takes it into its group.
    pub(crate) fn push(&self, piece: usize) -> bool {
        let mut st = self.state.lock();
        st.pending.push_back(piece);
        if st.waiting && st.pending.len() < GROUP {
            if st.pending.len() == GROUP - 1 {
                self.arrived.notify_one();
            }
            return false;
        }
        true
    }

    /// Takes up to [`GROUP`] pieces. With fewer queued, waits up to `wait`
    /// for the rest, unless another job is already waiting. Empty when
    /// other jobs took this job's piece.
    pub(crate) fn take(&self, wait: Duration) -> Vec<usize> {
        let mut st = self.state.lock();
        let Some(first) = st.pending.pop_front() else {
            return Vec::new();
        };
        if st.pending.len() < GROUP - 1 && !st.waiting && !wait.is_zero() {
            st.waiting = true;
            let deadline = Instant::now() + wait;
            while st.pending.len() < GROUP - 1 {
                if self.arrived.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
            st.waiting = false;
        }
        let mut group = vec![first];
        while group.len() < GROUP {
            match st.pending.pop_front() {
                Some(p) => group.push(p),
                None => break,
            }
        }
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_pool_runs_every_job_on_few_threads_that_end_when_idle() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = SavePool::default();
        for i in 0..200 {
            let tx = tx.clone();
            assert!(pool
                .spawn(move || {
                    std::thread::sleep(Duration::from_millis(1));
                    tx.send((i, std::thread::current().name().map(String::from)))
                        .unwrap();
                })
                .is_ok());
        }
        let got: Vec<_> = (0..200)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        let mut ids: Vec<i32> = got.iter().map(|(i, _)| *i).collect();
        ids.sort();
        assert_eq!(ids, (0..200).collect::<Vec<_>>());
        let names: std::collections::HashSet<_> = got.iter().map(|(_, n)| n.clone()).collect();
        assert!(names.len() <= SAVE_THREADS, "{names:?}");
        assert!(pool.shared.state.lock().threads <= SAVE_THREADS);
        let deadline = Instant::now() + SAVE_IDLE * 10;
        while pool.shared.state.lock().threads > 0 {
            assert!(Instant::now() < deadline, "save threads did not end");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

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
    fn spawn_never_blocks_and_runs_every_job() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = HashPool::new(1).unwrap();
        let (gate_tx, gate_rx) = crossbeam_channel::bounded::<()>(0);
        // The only worker waits on the gate while the queue overflows.
        pool.spawn(move || {
            let _ = gate_rx.recv();
        });
        let start = Instant::now();
        for i in 0..(QUEUE + 500) {
            let tx = tx.clone();
            pool.spawn(move || tx.send(i).unwrap());
        }
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(!pool.overflow.lock().is_empty());
        gate_tx.send(()).unwrap();
        drop(pool);
        let mut got: Vec<usize> = rx.try_iter().collect();
        got.sort_unstable();
        assert_eq!(got, (0..QUEUE + 500).collect::<Vec<_>>());
    }

    #[test]
    fn verify_queue_hands_out_every_piece_once() {
        use std::sync::Arc;
        let q = Arc::new(VerifyQueue::default());
        let pool = HashPool::new(2).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        for piece in 0..500 {
            if q.push(piece) {
                let (q, tx) = (q.clone(), tx.clone());
                pool.spawn(move || {
                    let group = q.take(Duration::from_millis(2));
                    for &p in &group {
                        tx.send((p, group.len())).unwrap();
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
        let mut grouped = 0;
        for (p, size) in rx {
            assert!((1..=GROUP).contains(&size));
            got.push(p);
            grouped += usize::from(size > 1);
        }
        got.sort_unstable();
        assert_eq!(got, (0..500).collect::<Vec<_>>(), "each piece exactly once");
        assert!(
            grouped >= 400,
            "most pieces are hashed in groups: {grouped}"
        );
    }

    #[test]
    fn a_lone_piece_waits_for_company_then_goes_alone() {
        let q = VerifyQueue::default();
        assert!(q.push(1));
        let start = Instant::now();
        assert_eq!(q.take(Duration::from_millis(20)), vec![1]);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(q.take(Duration::from_millis(20)).is_empty());
    }

    /// A waiting job takes the next pieces into its group (their pushes
    /// start no job) and goes as soon as the group is full.
    #[test]
    fn a_waiting_job_takes_the_next_pieces_and_goes_when_full() {
        use std::sync::Arc;
        let q = Arc::new(VerifyQueue::default());
        assert!(q.push(1));
        let job = {
            let q = q.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                (q.take(Duration::from_secs(10)), start.elapsed())
            })
        };
        while !q.state.lock().waiting {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!q.push(2));
        assert!(!q.push(3));
        let (group, waited) = job.join().unwrap();
        assert_eq!(group, vec![1, 2, 3]);
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        // With nobody waiting, a push starts a job again.
        assert!(q.push(4));
    }
}
