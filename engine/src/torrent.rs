//! One torrent: its handle (the mainline _SingleTorrent as seen by a UI)
//! and its state, run by the session's controller thread (`central`).

pub(crate) mod central;
mod check;
mod controller;
mod fetch;

use std::net::SocketAddr;
use std::sync::Arc;

use bittern_wire::{Handshake, InfoHash};
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, TorrentError};
use crate::status::{Events, PeerInfo, TorrentState, TorrentStatus};

pub(crate) use central::{Central, Ctl, PeerSource};
pub(crate) use controller::meta::TierInterner;
pub(crate) use controller::{build_controller, ControllerSetup, Transfer};
pub(crate) use fetch::{FetchSetup, MetadataFetch};

/// A torrent's number in its session (never reused), which routes peer
/// events, job results and commands to its state on the controller.
pub(crate) type TorrentId = u64;

/// Commands from handles and the listener to a torrent's controller.
pub(crate) enum TorrentCommand {
    Pause,
    Resume,
    /// An accepted connection whose handshake named this torrent.
    Incoming(Box<crate::transport::PeerStream>, Handshake),
    /// Stop: announce `stopped`, close peers, save resume state, exit.
    Shutdown,
    /// Announce to the trackers as early as their `min interval` allows.
    Reannounce,
}

/// What the controller publishes for handles to read without a round trip.
pub(crate) struct Published {
    pub status: Mutex<TorrentStatus>,
    pub peers: Mutex<Vec<PeerInfo>>,
    /// Set once the torrent has ended (seed goal, removal, failed check),
    /// or its controller is gone.
    pub done: Mutex<bool>,
    pub done_signal: Condvar,
    /// The torrent's metainfo as a `.torrent` file, once fetched over
    /// `ut_metadata` (a torrent started from a magnet link).
    pub torrent_file: Mutex<Option<Arc<[u8]>>>,
    /// The torrent's own limiters (its peer threads hold this state), so
    /// that [`TorrentHandle::set_limits`] changes them while it runs.
    pub limits: Limits,
    /// The verified pieces, shared with the controller once it runs (a
    /// magnet's before its metadata: `None`).
    pub have: Mutex<Option<Arc<crate::shared::HaveSet>>>,
    /// The torrent's key in the session announcer while it is on it.
    pub announce_key: Mutex<Option<bittern_tracker::TorrentKey>>,
}

/// A torrent's own rate limits, inline in its [`Published`] state (no
/// allocation of their own).
pub(crate) struct Limits {
    pub up: crate::ratelimit::RateLimiter,
    pub down: crate::ratelimit::RateLimiter,
    /// Whether its peers also obey the session's limiters.
    pub honors_session: std::sync::atomic::AtomicBool,
}

impl Published {
    /// Published state starting at `status`, with the torrent's limiters
    /// set from `options`.
    pub(crate) fn new(
        status: TorrentStatus,
        options: &crate::config::TorrentOptions,
    ) -> Arc<Published> {
        Arc::new(Published {
            status: Mutex::new(status),
            peers: Mutex::new(Vec::new()),
            done: Mutex::new(false),
            done_signal: Condvar::new(),
            torrent_file: Mutex::new(None),
            limits: Limits {
                up: crate::ratelimit::RateLimiter::new(options.upload_limit),
                down: crate::ratelimit::RateLimiter::new(options.download_limit),
                honors_session: std::sync::atomic::AtomicBool::new(true),
            },
            have: Mutex::new(None),
            announce_key: Mutex::new(None),
        })
    }

    /// Marks the torrent ended and wakes every [`TorrentHandle::wait`].
    pub(crate) fn finish(&self) {
        *self.done.lock() = true;
        self.done_signal.notify_all();
    }
}

/// A handle to a torrent in a [`Session`](crate::Session). Cheap to clone.
/// Reading status, peers and events never blocks; [`pause`](Self::pause),
/// [`resume`](Self::resume) and [`add_peers`](Self::add_peers) queue a
/// command and block only while the session's command queue is full;
/// [`remove`](Self::remove) and [`wait`](Self::wait) block until the
/// torrent has ended.
#[derive(Clone)]
pub struct TorrentHandle {
    pub(crate) info_hash: InfoHash,
    pub(crate) id: TorrentId,
    pub(crate) commands: Sender<Ctl>,
    pub(crate) source: PeerSource,
    pub(crate) published: Arc<Published>,
    pub(crate) events: Arc<Events>,
    pub(crate) registry: crate::session::Registry,
    /// For the announcer's view of the torrent; weak, so a handle kept
    /// does not keep the session's sockets alive.
    pub(crate) session: std::sync::Weak<crate::session::SessionShared>,
    /// The session's list of torrents, which [`remove`](Self::remove)
    /// takes this torrent off (weak: the list holds handles).
    pub(crate) listed: std::sync::Weak<crate::session::Listed>,
}

impl TorrentHandle {
    /// The torrent's v1 info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// A snapshot of the torrent's state and counters.
    pub fn status(&self) -> TorrentStatus {
        self.published.status.lock().clone()
    }

    /// The `.torrent` file of a torrent started from a magnet link, once
    /// its metadata has been fetched and checked against the info hash
    /// (`None` before, and for torrents added from a metainfo).
    pub fn torrent_file(&self) -> Option<Vec<u8>> {
        self.published
            .torrent_file
            .lock()
            .as_ref()
            .map(|b| b.to_vec())
    }

    /// Runs `f` on the torrent's current status without copying it: a UI
    /// polling thousands of torrents reads a few fields of each this way.
    /// `f` should be quick; the controller waits for it to publish.
    pub fn with_status<R>(&self, f: impl FnOnce(&TorrentStatus) -> R) -> R {
        f(&self.published.status.lock())
    }

    /// The verified pieces as a wire bitfield (bit 0 the high bit of the
    /// first byte; spare bits clear), `None` for a magnet link whose
    /// metadata has not come yet.
    pub fn pieces(&self) -> Option<bittern_wire::Bitfield> {
        let have = self.published.have.lock().clone()?;
        Some(have.to_bitfield())
    }

    /// The trackers' state as the session announcer has it (last and next
    /// announce, each tracker's answer or error, swarm counters); `None`
    /// when the torrent is not on the announcer (no trackers, paused,
    /// removed) or it did not answer within its status deadline.
    pub fn tracker_status(&self) -> Option<bittern_tracker::AnnouncerStatus> {
        let key = (*self.published.announce_key.lock())?;
        let session = self.session.upgrade()?;
        let mut status = None;
        session.with_announcer(|a| status = a.status(key));
        status
    }

    /// The connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.published.peers.lock().clone()
    }

    /// Events for a UI. Events are dropped, not queued without bound, when
    /// nobody reads them.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Disconnects every peer and stops announcing until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<(), Error> {
        self.command(TorrentCommand::Pause)
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), Error> {
        self.command(TorrentCommand::Resume)
    }

    /// Asks the trackers for peers now, or as soon as their `min interval`
    /// allows (Transmission's `torrent-reannounce`). A paused torrent does
    /// not announce; one still checking its data announces after the check.
    pub fn reannounce(&self) -> Result<(), Error> {
        self.command(TorrentCommand::Reannounce)
    }

    /// Changes the torrent's own rate limits (bytes per second, `None` =
    /// unlimited) while it runs: its peer threads take tokens from these
    /// limiters before every read and write, so the new rate holds from
    /// their next block. The session's limits still apply on top. The
    /// number of upload slots, chosen from the limit at start, stays.
    pub fn set_limits(&self, download: Option<u64>, upload: Option<u64>) {
        self.published.limits.down.set_rate(download);
        self.published.limits.up.set_rate(upload);
    }

    /// Whether the session's limits apply to this torrent besides its own
    /// (default `true`; Transmission's `honorsSessionLimits`). Takes effect
    /// from its peers' next block.
    pub fn set_honors_session_limits(&self, honors: bool) {
        self.published
            .limits
            .honors_session
            .store(honors, std::sync::atomic::Ordering::Relaxed);
    }

    /// The torrent's own rate limits (download, upload), bytes per second.
    pub fn limits(&self) -> (Option<u64>, Option<u64>) {
        (
            self.published.limits.down.rate(),
            self.published.limits.up.rate(),
        )
    }

    /// Connects to more peers (through the torrent's peer source, like
    /// tracker peers).
    pub fn add_peers(&self, peers: Vec<SocketAddr>) -> Result<(), Error> {
        if self.is_finished() {
            return Err(Error::Closed);
        }
        self.source.offer_waiting(peers)
    }

    fn command(&self, cmd: TorrentCommand) -> Result<(), Error> {
        if self.is_finished() {
            return Err(Error::Closed);
        }
        self.commands
            .send(Ctl::Command(self.id, cmd))
            .map_err(|_| Error::Closed)
    }

    /// Whether the torrent has stopped (finished, removed or failed its
    /// check).
    pub fn is_finished(&self) -> bool {
        *self.published.done.lock()
    }

    /// Stops the torrent gracefully (announces `stopped`, saves resume
    /// state), removes it from the session and waits for its threads. The
    /// data on disk is kept.
    pub fn remove(&self) {
        let _ = self
            .commands
            .send(Ctl::Command(self.id, TorrentCommand::Shutdown));
        self.wait();
        // Only this torrent's entry: a stale handle of a torrent removed and
        // added again must not unregister the new one.
        crate::session::unregister(&self.registry, self.info_hash, self.id);
        // Nor keep its status, have set and event queue listed until the
        // next addition (a daemon emptied of 2,000 torrents kept them all).
        if let Some(listed) = self.listed.upgrade() {
            crate::session::unlist(&listed, self.id);
        }
    }

    /// Blocks until the torrent has ended or `deadline` passes; true if
    /// it has ended.
    pub(crate) fn wait_until(&self, deadline: std::time::Instant) -> bool {
        let mut done = self.published.done.lock();
        while !*done {
            if self
                .published
                .done_signal
                .wait_until(&mut done, deadline)
                .timed_out()
            {
                return *done;
            }
        }
        true
    }

    /// Blocks until the torrent has ended (seed goal reached, removed, or
    /// its check failed).
    pub fn wait(&self) {
        let mut done = self.published.done.lock();
        while !*done {
            self.published.done_signal.wait(&mut done);
        }
    }

    /// Whether the torrent is in an error state, and why.
    pub fn error(&self) -> Option<TorrentError> {
        match &self.published.status.lock().state {
            TorrentState::Error(e) => Some(e.clone()),
            _ => None,
        }
    }
}
