//! A small pool of threads that verify pieces by reading them back.
//!
//! Unlike a rayon pool its idle workers sleep on a channel instead of
//! spinning, which matters on a machine with few cores where the peer
//! threads need every cycle.

use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};

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
}
