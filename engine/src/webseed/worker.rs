//! One web seed's thread: takes runs of pieces, turns them into range
//! requests per file, streams the bodies into storage, backs off on errors.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_storage::Storage;
use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::fetch::{Fetched, Fetcher};
use super::{Command, EventSink, WebSeed, WebSeedConfig, WebSeedError, WebSeedEvent};
use crate::picker::BLOCK_SIZE;
use crate::shared::BlockClaims;

/// What a worker is built from.
pub(super) struct Parts {
    pub index: usize,
    pub seed: WebSeed,
    pub storage: Arc<Storage>,
    pub config: WebSeedConfig,
    pub commands: Receiver<Command>,
    pub events: EventSink,
    pub cancel: Arc<AtomicBool>,
    pub claims: Option<Arc<BlockClaims>>,
    pub received: Arc<AtomicU64>,
}

pub(super) struct Worker {
    index: usize,
    seed: WebSeed,
    storage: Arc<Storage>,
    config: WebSeedConfig,
    commands: Receiver<Command>,
    events: EventSink,
    cancel: Arc<AtomicBool>,
    claims: Option<Arc<BlockClaims>>,
    received: Arc<AtomicU64>,
    fetcher: Fetcher,
    queue: VecDeque<Range<usize>>,
    bad_pieces: u32,
    failures: u32,
    ready_at: Instant,
}

/// How a run ended.
enum RunEnd {
    Done,
    Stopped(usize),
    Failed(usize, WebSeedError),
}

impl Worker {
    pub(super) fn new(parts: Parts) -> Worker {
        let Parts {
            index,
            seed,
            storage,
            config,
            commands,
            events,
            cancel,
            claims,
            received,
        } = parts;
        let fetcher = Fetcher::new(&config);
        Worker {
            index,
            seed,
            storage,
            config,
            commands,
            events,
            cancel,
            claims,
            received,
            fetcher,
            queue: VecDeque::new(),
            bad_pieces: 0,
            failures: 0,
            ready_at: Instant::now(),
        }
    }

    pub(super) fn run(mut self) {
        match self.serve() {
            Ok(()) => log::debug!("web seed {} stopped", self.seed.url),
            Err(reason) => {
                // The caller logs the reason it gets in `Dropped`.
                log::debug!("web seed {} dropped: {reason}", self.seed.url);
                for run in std::mem::take(&mut self.queue) {
                    self.ended(run, None);
                }
                self.events.send(WebSeedEvent::Dropped {
                    seed: self.index,
                    reason,
                });
            }
        }
    }

    /// Serves commands until the queue disconnects (`Ok`) or the seed is
    /// dropped (`Err`, the reason).
    fn serve(&mut self) -> Result<(), WebSeedError> {
        loop {
            // Take commands; wait for one only when there is no run to do.
            if self.queue.is_empty() {
                match self.commands.recv() {
                    Ok(c) => self.command(c)?,
                    Err(_) => return Ok(()),
                }
            }
            while let Ok(c) = self.commands.try_recv() {
                self.command(c)?;
            }
            if self.commands.is_empty() && self.cancel.load(Ordering::Relaxed) {
                // Cancelled: hand back everything queued.
                for run in std::mem::take(&mut self.queue) {
                    self.ended(run, None);
                }
                if self.is_disconnected() {
                    return Ok(());
                }
                continue;
            }
            // Back-off: wait, still taking commands and stop requests.
            while Instant::now() < self.ready_at {
                let wait = self.ready_at.saturating_duration_since(Instant::now());
                match self
                    .commands
                    .recv_timeout(wait.min(Duration::from_millis(100)))
                {
                    Ok(c) => self.command(c)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
                if self.cancel.load(Ordering::Relaxed) {
                    break;
                }
            }
            if self.cancel.load(Ordering::Relaxed) {
                continue;
            }
            let Some(run) = self.queue.pop_front() else {
                continue;
            };
            match self.fetch_run(run.clone()) {
                RunEnd::Done => {
                    self.failures = 0;
                    self.ended(run.end..run.end, None);
                }
                RunEnd::Stopped(next) => self.ended(next..run.end, None),
                RunEnd::Failed(next, e) => self.failed(next..run.end, e)?,
            }
        }
    }

    fn is_disconnected(&self) -> bool {
        // A disconnected, empty queue: `try_recv` says so.
        matches!(
            self.commands.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    }

    fn command(&mut self, c: Command) -> Result<(), WebSeedError> {
        match c {
            Command::Fetch(run) => self.queue.push_back(run),
            Command::BadPiece(piece) => {
                self.bad_pieces += 1;
                log::debug!(
                    "web seed {}: piece {piece} failed its hash ({} of {})",
                    self.seed.url,
                    self.bad_pieces,
                    self.config.max_bad_pieces
                );
                if self.bad_pieces >= self.config.max_bad_pieces {
                    return Err(WebSeedError::TooManyBadPieces {
                        count: self.bad_pieces,
                    });
                }
            }
        }
        Ok(())
    }

    fn ended(&self, unfinished: Range<usize>, error: Option<WebSeedError>) {
        self.events.send(WebSeedEvent::RunEnded {
            seed: self.index,
            unfinished,
            error,
            ready_at: self.ready_at,
        });
    }

    /// Records a failed run: backs off, or drops the seed.
    fn failed(&mut self, unfinished: Range<usize>, e: WebSeedError) -> Result<(), WebSeedError> {
        match e {
            // The caller's mistake, not the server's.
            WebSeedError::InvalidRun { .. } => {
                self.ended(unfinished, Some(e));
                return Ok(());
            }
            // It would never serve a range, or it points where we must not
            // go: drop it at once.
            WebSeedError::NoRangeSupport
            | WebSeedError::RedirectScheme { .. }
            | WebSeedError::RedirectToLocal { .. } => {
                self.ended(unfinished, None);
                return Err(e);
            }
            _ => {}
        }
        self.failures += 1;
        let delay = match &e {
            WebSeedError::Unavailable { retry_after } => *retry_after,
            _ => {
                let shift = (self.failures - 1).min(16);
                self.config
                    .retry_base
                    .saturating_mul(1 << shift)
                    .min(self.config.retry_max)
            }
        };
        self.ready_at = Instant::now() + delay;
        log::info!(
            "web seed {}: {e}; backing off, retrying in {delay:?} (failure {})",
            self.seed.url,
            self.failures
        );
        if self.failures >= self.config.max_failures {
            self.ended(unfinished, None);
            return Err(WebSeedError::TooManyFailures {
                count: self.failures,
                last: Box::new(e),
            });
        }
        self.ended(unfinished, Some(e));
        Ok(())
    }

    /// Fetches the pieces of `run` in order. On an early end, returns the
    /// first piece not reported written.
    fn fetch_run(&mut self, run: Range<usize>) -> RunEnd {
        let layout = self.storage.layout().clone();
        if run.start >= run.end || run.end > layout.piece_count() {
            return RunEnd::Failed(
                run.start,
                WebSeedError::InvalidRun {
                    start: run.start,
                    end: run.end,
                },
            );
        }
        let pl = layout.piece_length();
        let total = layout.total_length();
        let start = run.start as u64 * pl;
        let end = (run.end as u64 * pl).min(total);
        let mut next = run.start; // first piece not yet reported
        let mut writer = BlockWriter::new(start, self.claims.clone());
        for (i, f) in layout.files().iter().enumerate() {
            let fs = layout.file_start(i);
            let (a, b) = (start.max(fs), end.min(fs + f.length));
            if a >= b {
                continue;
            }
            if f.padding {
                // Zeros nobody serves: written like any other bytes.
                let zeros = vec![0u8; (b - a) as usize];
                if let Err(e) = writer.push(&self.storage, &zeros) {
                    return RunEnd::Failed(next, e);
                }
                next = self.report(next, run.end, writer.written, end);
                continue;
            }
            let mut at = a;
            while at < b {
                if self.cancel.load(Ordering::Relaxed) {
                    return RunEnd::Stopped(next);
                }
                let len = (b - at).min(self.config.max_request_bytes);
                let url = self.seed.file_urls[i].clone();
                let r = {
                    let storage = &self.storage;
                    let events = &self.events;
                    let cancel = &self.cancel;
                    let received = &self.received;
                    let writer = &mut writer;
                    let (index, run_end) = (self.index, run.end);
                    let mut sink = |data: &[u8]| -> Result<bool, WebSeedError> {
                        writer.push(storage, data)?;
                        received.fetch_add(data.len() as u64, Ordering::Relaxed);
                        next = report_to(events, index, next, run_end, writer.written, end, pl);
                        Ok(!cancel.load(Ordering::Relaxed))
                    };
                    self.fetcher.get_range(&url, at - fs, len, &mut sink)
                };
                match r {
                    Ok(Fetched::Done(redirect)) => {
                        if let Some(u) = redirect {
                            log::debug!("web seed {}: {url} redirects to {u}", self.seed.url);
                            self.seed.file_urls[i] = u;
                        }
                    }
                    Ok(Fetched::Stopped) => return RunEnd::Stopped(next),
                    Err(e) => return RunEnd::Failed(next, e),
                }
                at += len;
            }
        }
        RunEnd::Done
    }

    fn report(&self, next: usize, run_end: usize, cursor: u64, end: u64) -> usize {
        let pl = self.storage.layout().piece_length();
        report_to(&self.events, self.index, next, run_end, cursor, end, pl)
    }
}

/// Reports every piece from `next` on whose bytes end at or before
/// `cursor`; returns the new first unreported piece.
fn report_to(
    events: &EventSink,
    seed: usize,
    mut next: usize,
    run_end: usize,
    cursor: u64,
    end: u64,
    pl: u64,
) -> usize {
    while next < run_end && ((next as u64 + 1) * pl).min(end) <= cursor {
        events.send(WebSeedEvent::PieceWritten { seed, piece: next });
        next += 1;
    }
    next
}

/// Writes a run's bytes into storage as they arrive. Without claims, at
/// once; with them, block by block (a block split over two reads or two
/// files waits in `pending`), each claimed first: a block a peer already
/// wrote is skipped, one a peer is writing right now is waited for.
struct BlockWriter {
    /// Torrent offset written up to (block-aligned with claims).
    written: u64,
    claims: Option<Arc<BlockClaims>>,
    /// With claims: the start of the next block, not yet complete.
    pending: Vec<u8>,
}

impl BlockWriter {
    fn new(start: u64, claims: Option<Arc<BlockClaims>>) -> BlockWriter {
        BlockWriter {
            written: start,
            claims,
            pending: Vec::new(),
        }
    }

    fn push(&mut self, storage: &Storage, mut data: &[u8]) -> Result<(), WebSeedError> {
        let layout = storage.layout();
        let pl = layout.piece_length();
        let Some(claims) = self.claims.clone() else {
            while !data.is_empty() {
                let piece = (self.written / pl) as usize;
                let off = self.written % pl;
                let n = (data.len() as u64).min(pl - off) as usize;
                storage
                    .write_block(piece, off, &data[..n])
                    .map_err(WebSeedError::Storage)?;
                self.written += n as u64;
                data = &data[n..];
            }
            return Ok(());
        };
        while !data.is_empty() {
            let piece = (self.written / pl) as usize;
            let off = self.written % pl;
            let block = (layout.piece_len(piece) - off).min(u64::from(BLOCK_SIZE)) as usize;
            let have = self.pending.len();
            if have == 0 && data.len() >= block {
                write_claimed(storage, &claims, piece, off, &data[..block])?;
                data = &data[block..];
            } else {
                let n = (block - have).min(data.len());
                self.pending.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.pending.len() < block {
                    return Ok(());
                }
                let full = std::mem::take(&mut self.pending);
                write_claimed(storage, &claims, piece, off, &full)?;
                self.pending = full;
                self.pending.clear();
            }
            self.written += block as u64;
        }
        Ok(())
    }
}

/// Claims and writes one block; skips it when someone else wrote it.
fn write_claimed(
    storage: &Storage,
    claims: &BlockClaims,
    piece: usize,
    off: u64,
    data: &[u8],
) -> Result<(), WebSeedError> {
    // Pieces and blocks of a valid layout fit in u32 (wire offsets).
    let (index, begin) = (piece as u32, off as u32);
    if !claims.claim(index, begin) {
        return Ok(());
    }
    match storage.write_block(piece, off, data) {
        Ok(()) => {
            claims.written(index, begin);
            Ok(())
        }
        Err(e) => {
            claims.release(index, begin);
            Err(WebSeedError::Storage(e))
        }
    }
}
