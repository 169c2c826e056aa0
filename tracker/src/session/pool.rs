//! The session announcer's worker threads: each takes a [`Job`], runs the
//! request (reading the torrent's counters just before an announce) and
//! sends the answer back. Workers hold no state between jobs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::core::{Job, JobKind, JobResult, StopItem};
use crate::client::{announce, scrape};
use crate::error::Error;
use crate::types::{AnnounceResponse, ClientConfig};

/// Up to `n` worker threads, started as jobs need them and ended after
/// [`IDLE_EXIT`] without one: an announcer with nothing to announce holds
/// none, one announcing a single torrent at a time holds one.
pub(super) struct Pool {
    name: String,
    max: usize,
    /// Workers at most while `stopped` announces are being sent.
    max_stop: usize,
    client: ClientConfig,
    jobs: Option<Sender<Job>>,
    /// The workers' side of `jobs`, for workers started later (and to take
    /// a job back when none can be started).
    queue: Receiver<Job>,
    done_tx: Sender<(Job, JobResult)>,
    done: Receiver<(Job, JobResult)>,
    threads: Vec<JoinHandle<()>>,
    /// Workers waiting for a job.
    idle: Arc<AtomicUsize>,
}

impl Pool {
    /// A pool of at most `n` workers named `{name}-w{i}` (`n_stop` for
    /// batches of `stopped` announces); none runs yet. Their queue holds
    /// the larger of the two, which is all the scheduler ever has in
    /// flight, so neither side waits on a full queue.
    pub(super) fn new(name: &str, n: usize, n_stop: usize, client: ClientConfig) -> Pool {
        let n = n.max(1);
        let n_stop = n_stop.max(n);
        let (jobs_tx, jobs_rx) = bounded::<Job>(n_stop);
        let (done_tx, done_rx) = bounded(n_stop);
        Pool {
            name: name.to_string(),
            max: n,
            max_stop: n_stop,
            client,
            jobs: Some(jobs_tx),
            queue: jobs_rx,
            done_tx,
            done: done_rx,
            threads: Vec::new(),
            idle: Arc::default(),
        }
    }

    /// Workers running now (started and not yet ended idle).
    pub(super) fn threads(&self) -> usize {
        self.threads.iter().filter(|t| !t.is_finished()).count()
    }

    /// Starts one more worker. A worker ends when the pool is joined, or
    /// after [`IDLE_EXIT`] without a job.
    fn grow(&mut self) -> std::io::Result<()> {
        let (jobs, done, client, idle) = (
            self.queue.clone(),
            self.done_tx.clone(),
            self.client.clone(),
            Arc::clone(&self.idle),
        );
        let t = thread::Builder::new()
            .name(format!("{}-w{}", self.name, self.threads.len()))
            .spawn(move || work(&jobs, &done, &client, &idle))?;
        self.threads.push(t);
        Ok(())
    }

    /// Hands a job to a free worker; gives it back if the queue is full
    /// (a broken invariant) or the workers are gone.
    /// A worker is started when the job finds none free (none started yet,
    /// or every one busy), up to the pool's size.
    pub(super) fn submit(&mut self, job: Job) -> Option<Job> {
        let Some(tx) = &self.jobs else {
            return Some(job);
        };
        let max = if matches!(job.kind, JobKind::Stops { .. }) {
            self.max_stop
        } else {
            self.max
        };
        if let Err(e) = tx.try_send(job) {
            return Some(e.into_inner());
        }
        // More jobs queued than workers waiting for one. (A worker that has
        // just finished a job and is about to wait may make this one too
        // many; it then waits for the next job.)
        // Workers that ended after their idle timeout no longer count.
        self.threads.retain(|t| !t.is_finished());
        if self.queue.len() > self.idle.load(Ordering::SeqCst) && self.threads.len() < max {
            if let Err(e) = self.grow() {
                log::error!("could not start an announcer worker: {e}");
                if self.threads.is_empty() {
                    // Nobody would ever run it: hand it back.
                    return self.queue.try_recv().ok();
                }
            }
        }
        None
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
        JobKind::Stops { ref stops } => JobResult::Stops(stops.iter().map(|_| None).collect()),
    }
}

/// How long a worker waits for a job before it ends (the pool starts
/// another when a job finds none free): a session whose torrents are gone
/// or quiet between announces holds no idle workers for long.
const IDLE_EXIT: Duration = Duration::from_secs(10);

fn work(
    jobs: &Receiver<Job>,
    done: &Sender<(Job, JobResult)>,
    client: &ClientConfig,
    idle: &AtomicUsize,
) {
    loop {
        idle.fetch_add(1, Ordering::SeqCst);
        let job = jobs.recv_timeout(IDLE_EXIT);
        idle.fetch_sub(1, Ordering::SeqCst);
        let job = match job {
            Ok(job) => job,
            // No longer counted idle, so a job submitted from now on
            // starts a worker; one submitted before is still queued.
            Err(RecvTimeoutError::Timeout) => match jobs.try_recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut job = job;
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
        JobKind::Stops { stops } => {
            let deadline = job
                .deadline
                .unwrap_or_else(|| Instant::now() + config.udp_worst_case());
            JobResult::Stops(run_stops(&job.url, stops, &config, deadline))
        }
    }
}

/// Reads a torrent's counters into its announce; false if the source
/// panicked.
fn fill_stats(stop: &mut StopItem) -> bool {
    let stats = &stop.stats;
    let Ok(s) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stats())) else {
        log::error!("tracker stats source panicked");
        return false;
    };
    stop.params.uploaded = s.uploaded;
    stop.params.downloaded = s.downloaded;
    stop.params.left = s.left;
    true
}

/// Sends a batch of `stopped` announces to one tracker before `deadline`:
/// over HTTP one after another on one kept-alive client, over UDP all at
/// once. Stops after the first that gets no answer over HTTP (the tracker
/// is down, or at its connection limit: the rest go back to the scheduler).
fn run_stops(
    url: &str,
    stops: &mut [StopItem],
    config: &ClientConfig,
    deadline: Instant,
) -> Vec<Option<Result<AnnounceResponse, Error>>> {
    let mut out: Vec<Option<Result<AnnounceResponse, Error>>> = Vec::with_capacity(stops.len());
    if url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("udp://"))
    {
        let mut params = Vec::with_capacity(stops.len());
        for stop in stops.iter_mut() {
            if fill_stats(stop) {
                params.push(stop.params.clone());
            }
        }
        if params.len() != stops.len() {
            // A broken stats source: announce nothing rather than guess.
            return stops.iter().map(|_| None).collect();
        }
        return match crate::udp::client::announce_many(url, &params, config, deadline) {
            Ok(results) => results,
            Err(e) => {
                let mut out: Vec<_> = stops.iter().map(|_| None).collect();
                if let Some(first) = out.first_mut() {
                    *first = Some(Err(e));
                }
                out
            }
        };
    }
    let mut client = crate::http::Client::new(config);
    for stop in stops.iter_mut() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !fill_stats(stop) {
            out.push(None);
            continue;
        }
        let r = client.announce(url, &stop.params, Some(left));
        let unanswered = r.as_ref().is_err_and(|e| {
            !matches!(
                e,
                Error::Failure(_) | Error::Udp { .. } | Error::HttpStatus { .. }
            )
        });
        out.push(Some(r));
        if unanswered {
            break;
        }
    }
    out.resize_with(stops.len(), || None);
    out
}
