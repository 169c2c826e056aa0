//! Status snapshots and events for user interfaces (the mainline
//! DownloaderFeedback).

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{TorrentError, Violation};

/// What a torrent is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentState {
    /// Started from a magnet link: fetching the info dictionary from peers
    /// (BEP 9); the size and files are not known yet.
    FetchingMetadata,
    /// Checking existing data on disk.
    Checking,
    /// Fetching pieces.
    Downloading,
    /// Everything wanted is verified; serving others.
    Seeding,
    /// Paused by the user: no connections, no announces.
    Paused,
    /// Finished (seed goal reached) or removed.
    Stopped,
    /// Stopped by an error the user must act on (disk full, permission).
    Error(TorrentError),
}

/// Progress of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileStatus {
    /// Path relative to the save directory.
    pub path: std::path::PathBuf,
    /// File length in bytes.
    pub length: u64,
    /// Bytes of this file inside verified pieces.
    pub done: u64,
    /// Whether the file was selected for download.
    pub wanted: bool,
}

/// A snapshot of one torrent, cheap to take.
#[derive(Debug, Clone, PartialEq)]
pub struct TorrentStatus {
    /// Torrent name.
    pub name: String,
    /// What it is doing.
    pub state: TorrentState,
    /// Verified fraction of the wanted bytes, 0.0 to 1.0.
    pub progress: f64,
    /// Wanted bytes in total (padding not counted).
    pub wanted_bytes: u64,
    /// Wanted bytes verified (padding not counted).
    pub have_bytes: u64,
    /// Payload bytes received this session.
    pub downloaded: u64,
    /// Payload bytes sent this session.
    pub uploaded: u64,
    /// Download rate, bytes per second.
    pub download_rate: f64,
    /// Upload rate, bytes per second.
    pub upload_rate: f64,
    /// Estimated time to completion.
    pub eta: Option<Duration>,
    /// Connected peers (handshakes done).
    pub peers_connected: usize,
    /// Connections being set up: dialled or in their handshakes, not yet
    /// in `peers_connected`.
    pub peers_connecting: usize,
    /// Connected peers that are seeds of what they have: a full piece
    /// set, or `upload_only` (BEP 21, a partial seed).
    pub seeds_connected: usize,
    /// Peer addresses known (connected or not).
    pub peers_known: usize,
    /// Pieces verified.
    pub pieces_have: usize,
    /// Pieces in the torrent.
    pub pieces_total: usize,
    /// Per-file progress.
    pub files: Vec<FileStatus>,
    /// Pieces that failed their hash check this session.
    pub hash_failures: u64,
    /// Payload bytes thrown away as corrupt this session: the length of
    /// each piece that failed its hash check, plus each block of a v2
    /// piece that failed its merkle leaf on arrival (BEP 52; not written,
    /// so not in `written`, and not a hash failure).
    pub corrupt: u64,
    /// Payload bytes written to storage this session. Each block is written
    /// once, so this equals the bytes downloaded into pieces, plus again the
    /// pieces that failed their hash check and were fetched anew.
    pub written: u64,
    /// Web seeds (BEP 19) in use: running and not dropped.
    pub web_seeds: usize,
    /// Payload bytes received from web seeds (also counted in
    /// `downloaded`).
    pub web_seed_downloaded: u64,
    /// Bytes per second from web seeds (also in `download_rate`).
    pub web_seed_rate: f64,
}

impl TorrentStatus {
    /// A torrent's status before anything has happened: `state`, nothing
    /// had, moved or connected.
    pub(crate) fn initial(name: String, state: TorrentState, pieces_total: usize) -> Self {
        TorrentStatus {
            name,
            state,
            progress: 0.0,
            wanted_bytes: 0,
            have_bytes: 0,
            downloaded: 0,
            uploaded: 0,
            download_rate: 0.0,
            upload_rate: 0.0,
            eta: None,
            peers_connected: 0,
            peers_connecting: 0,
            seeds_connected: 0,
            peers_known: 0,
            pieces_have: 0,
            pieces_total,
            files: Vec::new(),
            hash_failures: 0,
            corrupt: 0,
            written: 0,
            web_seeds: 0,
            web_seed_downloaded: 0,
            web_seed_rate: 0.0,
        }
    }
}

/// One connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Remote address.
    pub addr: SocketAddr,
    /// Client name from the extension handshake, if sent.
    pub client: Option<String>,
    /// Download rate from this peer, bytes per second.
    pub download_rate: f64,
    /// Upload rate to this peer, bytes per second.
    pub upload_rate: f64,
    /// Payload bytes received from the peer.
    pub downloaded: u64,
    /// Payload bytes sent to the peer.
    pub uploaded: u64,
    /// We are choking them.
    pub am_choking: bool,
    /// They are choking us.
    pub peer_choking: bool,
    /// We want pieces they have.
    pub am_interested: bool,
    /// They want pieces we have.
    pub peer_interested: bool,
    /// Pieces they have.
    pub pieces: usize,
    /// Requests we have in flight to them.
    pub outstanding: usize,
    /// Whether they connected to us.
    pub incoming: bool,
    /// The connection runs over uTP (BEP 29) rather than TCP.
    pub utp: bool,
    /// A seed of what it has: a full piece set, or it said `upload_only`
    /// (BEP 21).
    pub seed: bool,
    /// Whether the connection is RC4-encrypted (MSE/PE).
    pub encrypted: bool,
    /// No block from them for a while although we asked.
    pub snubbed: bool,
}

/// Something that happened to a torrent.
#[derive(Debug, Clone, PartialEq)]
pub enum TorrentEvent {
    /// The startup check finished; `pieces` were already present.
    Checked {
        /// Pieces found valid on disk.
        pieces: usize,
    },
    /// A piece passed its hash check.
    PieceVerified(usize),
    /// A piece failed its hash check and will be fetched again.
    HashFailed(usize),
    /// Every wanted piece is verified. It does not wait for the disk: the
    /// pieces are flushed in the background, or by the stop that follows
    /// (see [`SeedGoal::None`](crate::SeedGoal::None)).
    Completed,
    /// The torrent changed state.
    StateChanged(TorrentState),
    /// A peer was banned for bad data.
    PeerBanned(SocketAddr),
    /// A web seed (BEP 19) was given up: it served bad data too often,
    /// failed too often, or cannot serve range requests.
    WebSeedDropped {
        /// The `url-list` entry.
        url: String,
        /// Why, with its causes.
        reason: String,
    },
    /// A peer broke the protocol; its connection was closed.
    PeerViolation {
        /// The peer's address.
        addr: SocketAddr,
        /// The rule it broke.
        violation: Violation,
    },
}

/// Events kept for a handle that does not read them; more are dropped.
pub(crate) const EVENT_QUEUE: usize = 1024;

/// A torrent's [`TorrentEvent`]s, oldest first, for a UI to take. At most
/// `capacity` wait; later ones are dropped while nobody takes them. It
/// allocates only for the events that wait (a channel would hold a block
/// of slots for every torrent, read or not).
#[derive(Debug)]
pub struct Events {
    queue: parking_lot::Mutex<std::collections::VecDeque<TorrentEvent>>,
    ready: parking_lot::Condvar,
    capacity: usize,
}

impl Events {
    /// An empty queue holding at most `capacity` events.
    pub(crate) fn new(capacity: usize) -> Events {
        Events {
            queue: parking_lot::Mutex::new(std::collections::VecDeque::new()),
            ready: parking_lot::Condvar::new(),
            capacity,
        }
    }

    /// Queues `e` unless the queue is full.
    pub(crate) fn push(&self, e: TorrentEvent) {
        let mut q = self.queue.lock();
        if q.len() < self.capacity {
            q.push_back(e);
            self.ready.notify_one();
        }
    }

    /// The oldest event, if one waits.
    ///
    /// # Errors
    /// `TryRecvError::Empty` when none waits.
    pub fn try_recv(&self) -> Result<TorrentEvent, crossbeam_channel::TryRecvError> {
        let mut q = self.queue.lock();
        let e = q.pop_front().ok_or(crossbeam_channel::TryRecvError::Empty);
        if q.is_empty() {
            // Give the memory back: most torrents see a few events at
            // start and then none for hours.
            q.shrink_to_fit();
        }
        e
    }

    /// The events waiting now, oldest first (taken as the iterator goes;
    /// it ends when none waits).
    pub fn try_iter(&self) -> impl Iterator<Item = TorrentEvent> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    /// The oldest event, waiting up to `timeout` for one.
    ///
    /// # Errors
    /// `RecvTimeoutError::Timeout` when none came in time.
    pub fn recv_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> Result<TorrentEvent, crossbeam_channel::RecvTimeoutError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.queue.lock();
        while q.is_empty() {
            if self.ready.wait_until(&mut q, deadline).timed_out() && q.is_empty() {
                return Err(crossbeam_channel::RecvTimeoutError::Timeout);
            }
        }
        let e = q
            .pop_front()
            .ok_or(crossbeam_channel::RecvTimeoutError::Timeout);
        if q.is_empty() {
            q.shrink_to_fit();
        }
        e
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.queue.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    #[test]
    fn events_queue_in_order_up_to_capacity_and_wait() {
        let q = Arc::new(Events::new(2));
        assert!(q.try_recv().is_err());
        q.push(TorrentEvent::PieceVerified(1));
        q.push(TorrentEvent::PieceVerified(2));
        q.push(TorrentEvent::PieceVerified(3)); // full: dropped
        assert_eq!(q.len(), 2);
        assert!(matches!(q.try_recv(), Ok(TorrentEvent::PieceVerified(1))));
        assert!(matches!(
            q.recv_timeout(Duration::from_millis(10)),
            Ok(TorrentEvent::PieceVerified(2))
        ));
        assert!(q.is_empty());
        let start = Instant::now();
        assert!(q.recv_timeout(Duration::from_millis(30)).is_err());
        assert!(start.elapsed() >= Duration::from_millis(30));
        // A waiting reader wakes when an event comes.
        let q2 = Arc::clone(&q);
        let t = std::thread::spawn(move || q2.recv_timeout(Duration::from_secs(5)));
        std::thread::sleep(Duration::from_millis(20));
        q.push(TorrentEvent::Completed);
        assert!(matches!(t.join().unwrap(), Ok(TorrentEvent::Completed)));
    }
}
