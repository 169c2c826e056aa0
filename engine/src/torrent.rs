//! One torrent: its handle (the mainline _SingleTorrent as seen by a UI)
//! and its state, run by the session's controller thread (`central`).

pub(crate) mod central;
mod check;
mod controller;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use bittern_wire::{Handshake, InfoHash};
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex};

use crate::error::{Error, TorrentError};
use crate::status::{Events, PeerInfo, TorrentState, TorrentStatus};

pub(crate) use central::{Central, Ctl, PeerSource};
pub(crate) use controller::{build_controller, ControllerSetup, Transfer};

/// A torrent's number in its session (never reused), which routes peer
/// events, job results and commands to its state on the controller.
pub(crate) type TorrentId = u64;

/// Commands from handles and the listener to a torrent's controller.
pub(crate) enum TorrentCommand {
    Pause,
    Resume,
    /// An accepted connection whose handshake named this torrent.
    Incoming(TcpStream, Handshake),
    /// Stop: announce `stopped`, close peers, save resume state, exit.
    Shutdown,
}

/// What the controller publishes for handles to read without a round trip.
pub(crate) struct Published {
    pub status: Mutex<TorrentStatus>,
    pub peers: Mutex<Vec<PeerInfo>>,
    /// Set once the torrent has ended (seed goal, removal, failed check),
    /// or its controller is gone.
    pub done: Mutex<bool>,
    pub done_signal: Condvar,
}

impl Published {
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

    /// Runs `f` on the torrent's current status without copying it: a UI
    /// polling thousands of torrents reads a few fields of each this way.
    /// `f` should be quick; the controller waits for it to publish.
    pub fn with_status<R>(&self, f: impl FnOnce(&TorrentStatus) -> R) -> R {
        f(&self.published.status.lock())
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
