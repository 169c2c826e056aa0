//! The session announcer's worker threads: each takes a [`Job`], runs the
//! request (reading the torrent's counters just before an announce) and
//! sends the answer back. Workers hold no state between jobs.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::core::{Job, JobKind, JobResult};
use crate::client::{announce, scrape};
use crate::error::Error;
use crate::types::ClientConfig;

/// A fixed set of worker threads.
pub(super) struct Pool {
    jobs: Option<Sender<Job>>,
    done: Receiver<(Job, JobResult)>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `n` workers named `{name}-w{i}`. Their queues hold `n` jobs,
    /// which is all the scheduler ever has in flight, so neither side
    /// waits on a full queue.
    pub(super) fn spawn(name: &str, n: usize, client: ClientConfig) -> std::io::Result<Pool> {
        let (jobs_tx, jobs_rx) = bounded::<Job>(n);
        let (done_tx, done_rx) = bounded(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (jobs, done, client) = (jobs_rx.clone(), done_tx.clone(), client.clone());
            let t = thread::Builder::new()
                .name(format!("{name}-w{i}"))
                .spawn(move || work(&jobs, &done, &client))?;
            threads.push(t);
        }
        Ok(Pool {
            jobs: Some(jobs_tx),
            done: done_rx,
            threads,
        })
    }

    /// Hands a job to a free worker; gives it back if the queue is full
    /// (a broken invariant) or the workers are gone.
    pub(super) fn submit(&self, job: Job) -> Option<Job> {
        match &self.jobs {
            Some(tx) => tx.try_send(job).err().map(|e| e.into_inner()),
            None => Some(job),
        }
    }

    /// Answers from the workers.
    pub(super) fn done(&self) -> &Receiver<(Job, JobResult)> {
        &self.done
    }

    /// Lets the workers finish their job and end, waiting until `end` at
    /// most; workers still busy then are detached.
    pub(super) fn join(mut self, end: Instant) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < end {
                thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                if t.join().is_err() {
                    log::error!("announcer worker panicked");
                }
            } else {
                log::debug!("announcer worker still busy at the deadline; detaching");
            }
        }
    }
}

/// The answer for a job that could not be run.
pub(super) fn not_run(job: &Job) -> JobResult {
    match job.kind {
        JobKind::Announce { .. } => JobResult::Announce(Err(Error::Timeout)),
        JobKind::Scrape { .. } => JobResult::Scrape(Err(Error::Timeout)),
    }
}

fn work(jobs: &Receiver<Job>, done: &Sender<(Job, JobResult)>, client: &ClientConfig) {
    for mut job in jobs.iter() {
        let result = run(&mut job, client);
        if done.send((job, result)).is_err() {
            break;
        }
    }
}

fn run(job: &mut Job, client: &ClientConfig) -> JobResult {
    let config = match job.deadline {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return not_run(job);
            }
            client.within(left)
        }
        None => client.clone(),
    };
    match &mut job.kind {
        JobKind::Announce { params, stats, .. } => {
            // A panicking stats source must not take the worker with it.
            let Ok(s) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stats())) else {
                log::error!("tracker stats source panicked");
                return not_run(job);
            };
            params.uploaded = s.uploaded;
            params.downloaded = s.downloaded;
            params.left = s.left;
            JobResult::Announce(announce(&job.url, params, &config))
        }
        JobKind::Scrape { torrents } => {
            let hashes: Vec<_> = torrents.iter().map(|(_, h)| *h).collect();
            JobResult::Scrape(scrape(&job.url, &hashes, &config))
        }
    }
}
