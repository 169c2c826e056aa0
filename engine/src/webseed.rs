//! Web seeds (BEP 19, `url-list`): pieces downloaded over HTTP range
//! requests, as a self-contained component the controller drives.
//!
//! # Shape
//! [`WebSeeds::spawn`] starts one thread per web seed (at most
//! [`WebSeedConfig::max_seeds`], so a torrent listing fifty mirrors does not
//! open fifty connections). Each thread owns one `ureq` agent (one
//! keep-alive connection per host) and runs one *run* at a time: a
//! contiguous range of pieces the caller assigned with [`WebSeeds::fetch`].
//! A run becomes as few HTTP requests as the files allow: one `Range`
//! request per file part, each at most [`WebSeedConfig::max_request_bytes`]
//! (4 MiB by default; BEP 19 warns that per-block requests look like a DoS
//! to servers, and libtorrent asks for 1 to 16 MiB). Padding files are never
//! requested.
//!
//! Commands go in with `try_send` on a bounded queue per seed, so the
//! caller never blocks; [`WebSeedEvent`]s come out on the caller's bounded
//! channel (a seed thread may block sending, as peer threads do).
//!
//! # Verification is the caller's
//! A seed writes the bytes into [`Storage`] and reports
//! [`WebSeedEvent::PieceWritten`]; it hashes nothing. The caller verifies
//! the piece through its usual pipeline (one verification path: batching,
//! "only verified data is had"), and reports a failed piece back with
//! [`WebSeeds::report_bad_piece`]. After
//! [`WebSeedConfig::max_bad_pieces`] bad pieces the seed is dropped
//! ([`WebSeedEvent::Dropped`]). The caller must not let peers write a piece
//! while it is assigned to a web seed, nor the other way round (the
//! engine's block claims do not cover web seeds).
//!
//! # Failures
//! - A server that answers a range request with `200` (no range support,
//!   e.g. Python's `http.server`) is refused at once and the seed dropped:
//!   it would send whole files for every request.
//! - A missing or wrong `Content-Range`, a `Content-Length` other than the
//!   length asked for, a body that runs past it or ends short, any other
//!   status or an IO error ends the run; the seed backs off
//!   ([`WebSeedConfig::retry_base`], doubling per consecutive failure up to
//!   [`WebSeedConfig::retry_max`]) and after
//!   [`WebSeedConfig::max_failures`] consecutive failures it is dropped.
//!   A body is never read past the bytes asked for plus one (to detect an
//!   overlong body), so a server sending a 4 GiB body costs nothing.
//! - `503` with `Retry-After` (seconds) backs off that long (capped at
//!   [`WebSeedConfig::retry_max`]).
//! - Redirects are followed (at most [`WebSeedConfig::max_redirects`]; a
//!   loop is a failure like the others) and the final URL is remembered per
//!   file, as libtorrent does. Each is checked first: http(s) only, and a
//!   seed on a public host may not redirect to a loopback, private or
//!   link-local address (the SSRF rule, `webseed/redirect.rs`); either
//!   refusal drops the seed at once.
//!
//! # Wiring (for the controller)
//! One [`WebSeeds`] per downloading torrent, built from
//! `Metainfo::url_list` with [`file_urls`], its events `select!`ed with the
//! peer events. Give an idle seed (one whose last `RunEnded` said
//! `ready_at` has passed) a run of missing pieces nobody else is fetching,
//! a few MiB long (BEP 19: take them from the end of the largest gap, so
//! peers and seeds do not collide), mark them taken in the picker, verify
//! each `PieceWritten`, give `unfinished` back to the picker, and stop
//! assigning once `Dropped` arrives. Seeds are for filling what peers do
//! not serve quickly; cancel a seed's run in endgame if peers finish it.
//!
//! Not done yet: BEP 17 `httpseeds`.

mod fetch;
mod redirect;
mod worker;

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_storage::Storage;
use crossbeam_channel::{bounded, Sender, TrySendError};

use crate::shared::BlockClaims;

/// Settings of the web-seed component.
#[derive(Debug, Clone)]
pub struct WebSeedConfig {
    /// At most this many seeds get a thread; further URLs are ignored
    /// (logged).
    pub max_seeds: usize,
    /// The largest byte range asked for in one HTTP request.
    pub max_request_bytes: u64,
    /// Bad pieces (reported by the caller) after which a seed is dropped.
    pub max_bad_pieces: u32,
    /// Consecutive failed runs after which a seed is dropped.
    pub max_failures: u32,
    /// First back-off after a failure (libtorrent waits 30 s).
    pub retry_base: Duration,
    /// The longest back-off, also the cap on `Retry-After`.
    pub retry_max: Duration,
    /// Redirects followed per request.
    pub max_redirects: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for response headers or for any one read of the body.
    pub read_timeout: Duration,
    /// `User-Agent` sent.
    pub user_agent: String,
}

impl Default for WebSeedConfig {
    fn default() -> Self {
        WebSeedConfig {
            max_seeds: 4,
            max_request_bytes: 4 << 20,
            max_bad_pieces: 3,
            max_failures: 8,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(600),
            max_redirects: 5,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(20),
            user_agent: concat!("bittern/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Why a web-seed request or run failed, or why a seed was dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSeedError {
    /// The server answered a range request with `200` and the whole file:
    /// it does not support range requests (BEP 19 needs them).
    #[error("server ignores range requests (status 200 instead of 206 partial content); web seeds need range support")]
    NoRangeSupport,
    /// `206` without a `Content-Range` header.
    #[error("partial response without a content-range header")]
    MissingContentRange,
    /// `Content-Range` names other bytes than asked for, or is malformed.
    #[error("content-range {got:?} does not match the requested bytes {start}-{end}")]
    WrongContentRange {
        /// The header as received.
        got: String,
        /// First byte asked for.
        start: u64,
        /// Last byte asked for (inclusive).
        end: u64,
    },
    /// The body (or its `Content-Length`) is longer than asked for.
    #[error("response body longer than the {expected} bytes asked for")]
    BodyTooLong {
        /// Bytes asked for.
        expected: u64,
    },
    /// The body ended before the bytes asked for.
    #[error("response body ended after {got} of {expected} bytes")]
    ShortBody {
        /// Bytes asked for.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// `503 Service Unavailable`; retry after the given delay.
    #[error("service unavailable, retry after {retry_after:?}")]
    Unavailable {
        /// From `Retry-After`, or the default back-off.
        retry_after: Duration,
    },
    /// Any other unexpected status.
    #[error("unexpected http status {status}")]
    Status {
        /// The status code.
        status: u16,
    },
    /// More than [`WebSeedConfig::max_redirects`] redirects (a loop).
    #[error("more than {max} redirects")]
    TooManyRedirects {
        /// The bound.
        max: u32,
    },
    /// A redirect to something other than an http(s) URL.
    #[error("redirect to a url that is not http or https: {to}")]
    RedirectScheme {
        /// The `Location` given.
        to: String,
    },
    /// A seed on a public host redirected to a loopback, private or
    /// link-local address (see the module docs' SSRF rule).
    #[error("redirect from a public web seed to a local address refused: {to}")]
    RedirectToLocal {
        /// The target URL.
        to: String,
    },
    /// The HTTP client failed (connect, timeout, ...).
    #[error("http request failed")]
    Http(#[source] Box<ureq::Error>),
    /// Reading the body failed.
    #[error("reading the response body failed")]
    Io(#[source] std::io::Error),
    /// Writing the bytes into storage failed.
    #[error("writing web-seed data to storage failed")]
    Storage(#[source] bittern_storage::Error),
    /// The run named pieces the torrent does not have, or none.
    #[error("invalid piece run {start}..{end}")]
    InvalidRun {
        /// First piece.
        start: usize,
        /// One past the last piece.
        end: usize,
    },
    /// The caller reported too many pieces from this seed failing their hash.
    #[error("{count} pieces from this web seed failed their hash")]
    TooManyBadPieces {
        /// Bad pieces reported.
        count: u32,
    },
    /// Too many consecutive runs failed; the last error is the source.
    #[error("{count} consecutive failures")]
    TooManyFailures {
        /// Consecutive failures.
        count: u32,
        /// The last one.
        #[source]
        last: Box<WebSeedError>,
    },
}

/// What a web seed reports. `seed` is the index given by [`WebSeeds::spawn`]
/// (the position in its URL list).
#[derive(Debug)]
pub enum WebSeedEvent {
    /// Every byte of `piece` was written to storage: verify it.
    PieceWritten {
        /// Which seed.
        seed: usize,
        /// The piece.
        piece: usize,
    },
    /// The run ended (finished, cancelled or failed). `unfinished` are the
    /// pieces of the run not reported written (empty when it finished);
    /// the seed takes its next run no earlier than `ready_at` (it waits if
    /// given one sooner).
    RunEnded {
        /// Which seed.
        seed: usize,
        /// Pieces of the run not written.
        unfinished: Range<usize>,
        /// Why it ended early, if it failed.
        error: Option<WebSeedError>,
        /// When the seed is ready again (now, or after a back-off).
        ready_at: Instant,
    },
    /// The seed is gone for good; its thread has ended. Any run it held
    /// was reported by a `RunEnded` first.
    Dropped {
        /// Which seed.
        seed: usize,
        /// Why.
        reason: WebSeedError,
    },
}

/// A command could not be queued: the seed is gone or its queue is full.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No seed with that index.
    #[error("no web seed {0}")]
    NoSuchSeed(usize),
    /// The seed's queue is full (the caller assigned far too much).
    #[error("web seed {0} is busy")]
    Busy(usize),
    /// The seed was dropped.
    #[error("web seed {0} is gone")]
    Gone(usize),
}

enum Command {
    Fetch(Range<usize>),
    BadPiece(usize),
}

/// One web seed: its base URL and the URL of each torrent file (see
/// [`file_urls`]).
#[derive(Debug, Clone)]
pub struct WebSeed {
    /// The `url-list` entry, for logs.
    pub url: String,
    /// The URL of each file of the layout, in order (padding files get an
    /// entry too, never requested).
    pub file_urls: Vec<String>,
}

struct Seed {
    url: String,
    tx: Sender<Command>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Where a seed's events go: the caller's channel, or (inside the engine)
/// a function that tags them for the controller. Returns false once
/// nobody listens.
#[derive(Clone)]
pub(crate) struct EventSink(Arc<dyn Fn(WebSeedEvent) -> bool + Send + Sync>);

impl EventSink {
    /// Events sent on `tx` (blocking while it is full, as peer threads do).
    pub(crate) fn channel(tx: Sender<WebSeedEvent>) -> EventSink {
        EventSink(Arc::new(move |e| tx.send(e).is_ok()))
    }

    /// Events handed to `f`.
    pub(crate) fn func(f: impl Fn(WebSeedEvent) -> bool + Send + Sync + 'static) -> EventSink {
        EventSink(Arc::new(f))
    }

    pub(crate) fn send(&self, e: WebSeedEvent) -> bool {
        (self.0)(e)
    }
}

/// The running web seeds of one torrent. Dropping it stops them (without
/// waiting; [`WebSeeds::join`] waits).
pub struct WebSeeds {
    seeds: Vec<Seed>,
    /// Payload bytes the seeds wrote (or found already written).
    received: Arc<AtomicU64>,
}

impl std::fmt::Debug for WebSeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.seeds.iter().map(|s| s.url.as_str()).collect();
        f.debug_struct("WebSeeds").field("urls", &urls).finish()
    }
}

impl WebSeeds {
    /// Starts a thread for each of `seeds` (up to `config.max_seeds`),
    /// writing into `storage` and reporting on `events`.
    ///
    /// # Errors
    /// The OS refused to start a thread.
    pub fn spawn(
        storage: Arc<Storage>,
        seeds: Vec<WebSeed>,
        config: WebSeedConfig,
        events: Sender<WebSeedEvent>,
    ) -> std::io::Result<WebSeeds> {
        Self::spawn_with(storage, seeds, config, EventSink::channel(events), None)
    }

    /// As [`spawn`](Self::spawn), reporting to `events`; with `claims`,
    /// every block is claimed before it is written, as peer threads do, so
    /// a seed and a peer never write the same block and nobody writes a
    /// piece once all its blocks are written (the engine's torrents).
    pub(crate) fn spawn_with(
        storage: Arc<Storage>,
        seeds: Vec<WebSeed>,
        config: WebSeedConfig,
        events: EventSink,
        claims: Option<Arc<BlockClaims>>,
    ) -> std::io::Result<WebSeeds> {
        let received = Arc::new(AtomicU64::new(0));
        if seeds.len() > config.max_seeds {
            log::info!(
                "using {} of {} web seeds (max_seeds)",
                config.max_seeds,
                seeds.len()
            );
        }
        let mut out = Vec::new();
        for (index, seed) in seeds.into_iter().take(config.max_seeds).enumerate() {
            let (tx, rx) = bounded(16);
            let cancel = Arc::new(AtomicBool::new(false));
            let url = seed.url.clone();
            let w = worker::Worker::new(worker::Parts {
                index,
                seed,
                storage: storage.clone(),
                config: config.clone(),
                commands: rx,
                events: events.clone(),
                cancel: cancel.clone(),
                claims: claims.clone(),
                received: received.clone(),
            });
            let thread = std::thread::Builder::new()
                .name(format!("webseed-{index}"))
                .spawn(move || w.run())?;
            out.push(Seed {
                url,
                tx,
                cancel,
                thread: Some(thread),
            });
        }
        Ok(WebSeeds {
            seeds: out,
            received,
        })
    }

    /// Payload bytes received from all seeds so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Number of seeds with a thread.
    pub fn len(&self) -> usize {
        self.seeds.len()
    }

    /// True when no seed runs.
    pub fn is_empty(&self) -> bool {
        self.seeds.is_empty()
    }

    /// The `url-list` URL of seed `seed`.
    pub fn url(&self, seed: usize) -> Option<&str> {
        self.seeds.get(seed).map(|s| s.url.as_str())
    }

    fn send(&self, seed: usize, cmd: Command) -> Result<(), SendError> {
        let s = self.seeds.get(seed).ok_or(SendError::NoSuchSeed(seed))?;
        s.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => SendError::Busy(seed),
            TrySendError::Disconnected(_) => SendError::Gone(seed),
        })
    }

    /// Assigns the pieces `pieces` to seed `seed`, to be fetched after the
    /// runs already queued. Never blocks.
    ///
    /// # Errors
    /// [`SendError`] when the seed is unknown, gone or its queue is full.
    pub fn fetch(&self, seed: usize, pieces: Range<usize>) -> Result<(), SendError> {
        if let Some(s) = self.seeds.get(seed) {
            s.cancel.store(false, Ordering::Relaxed);
        }
        self.send(seed, Command::Fetch(pieces))
    }

    /// Reports that `piece`, written by seed `seed`, failed its hash.
    /// Never blocks.
    ///
    /// # Errors
    /// As [`WebSeeds::fetch`].
    pub fn report_bad_piece(&self, seed: usize, piece: usize) -> Result<(), SendError> {
        self.send(seed, Command::BadPiece(piece))
    }

    /// Ends seed `seed`'s current run (and its queued ones) at the next
    /// read, reporting them as `RunEnded` with their unfinished pieces.
    /// Wait for those `RunEnded`s before the next [`fetch`](Self::fetch):
    /// a fetch clears the cancel, so one sent too early keeps the old runs.
    pub fn cancel(&self, seed: usize) {
        if let Some(s) = self.seeds.get(seed) {
            s.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Stops every seed and waits for their threads (a thread blocked in a
    /// read ends at its next read or after `read_timeout`).
    pub fn join(mut self) {
        self.stop();
        for s in &mut self.seeds {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn stop(&mut self) {
        for s in &mut self.seeds {
            s.cancel.store(true, Ordering::Relaxed);
            // Replacing the sender disconnects the seed's queue.
            let (dead, _) = bounded(1);
            s.tx = dead;
        }
    }
}

impl Drop for WebSeeds {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The URL of each file of a torrent on the web seed `base`, per BEP 19:
/// for a single-file torrent `base` itself, or `base` + name when `base`
/// ends in `/`; for a multi-file torrent `base` (a `/` added if missing) +
/// name + `/` + the file's path, every element percent-encoded.
pub fn file_urls(base: &str, info: &bittern_wire::Info) -> Vec<String> {
    use bittern_tracker::percent::encode;
    let seg = |s: &str| encode(s.as_bytes());
    if !info.multi_file {
        let url = if base.ends_with('/') {
            format!("{base}{}", seg(&info.name))
        } else {
            base.to_string()
        };
        return vec![url; info.files.len()];
    }
    let root = if base.ends_with('/') {
        format!("{base}{}", seg(&info.name))
    } else {
        format!("{base}/{}", seg(&info.name))
    };
    info.files
        .iter()
        .map(|f| {
            let mut u = root.clone();
            for p in &f.path {
                u.push('/');
                u.push_str(&seg(p));
            }
            u
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_wire::{FileEntry, Info, MetaVersion};

    fn info(multi: bool, files: &[&[&str]]) -> Info {
        Info {
            name: "my torrent".into(),
            piece_length: 16384,
            pieces: vec![[0; 20]],
            files: files
                .iter()
                .map(|p| FileEntry {
                    path: p.iter().map(|s| s.to_string()).collect(),
                    length: 1,
                    padding: false,
                    attr: None,
                    pieces_root: None,
                })
                .collect(),
            private: false,
            source: None,
            multi_file: multi,
            version: MetaVersion::V1,
        }
    }

    #[test]
    fn single_file_urls() {
        let i = info(false, &[&["my torrent"]]);
        assert_eq!(file_urls("http://h/x/f.iso", &i), vec!["http://h/x/f.iso"]);
        assert_eq!(
            file_urls("http://h/x/", &i),
            vec!["http://h/x/my%20torrent"]
        );
    }

    #[test]
    fn multi_file_urls_are_encoded_per_element() {
        let i = info(true, &[&["a b", "c#?.bin"], &["d"]]);
        let want = vec![
            "http://h/s/my%20torrent/a%20b/c%23%3F.bin".to_string(),
            "http://h/s/my%20torrent/d".to_string(),
        ];
        assert_eq!(file_urls("http://h/s/", &i), want);
        assert_eq!(
            file_urls("http://h/s", &i),
            want,
            "a missing slash is added"
        );
    }
}
