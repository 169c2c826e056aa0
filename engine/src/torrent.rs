//! One torrent: its handle (the mainline _SingleTorrent as seen by a UI)
//! and its controller thread.

mod check;
mod controller;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;

use bittern_wire::{Handshake, InfoHash};
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::error::{Error, TorrentError};
use crate::status::{PeerInfo, TorrentEvent, TorrentState, TorrentStatus};

pub(crate) use controller::{spawn_controller, ControllerSetup, Transfer};

/// Commands from handles and the listener to a torrent's controller.
pub(crate) enum TorrentCommand {
    Pause,
    Resume,
    AddPeers(Vec<SocketAddr>),
    /// An accepted connection whose handshake named this torrent.
    Incoming(TcpStream, Handshake),
    /// Stop: announce `stopped`, close peers, save resume state, exit.
    Shutdown,
}

/// What the controller publishes for handles to read without a round trip.
pub(crate) struct Published {
    pub status: Mutex<TorrentStatus>,
    pub peers: Mutex<Vec<PeerInfo>>,
}

/// A handle to a torrent in a [`Session`](crate::Session). Cheap to clone.
/// Reading status, peers and events never blocks; [`pause`](Self::pause),
/// [`resume`](Self::resume) and [`add_peers`](Self::add_peers) queue a
/// command and block only while the torrent's command queue (256) is full,
/// as it can be during the startup check; [`remove`](Self::remove) and
/// [`wait`](Self::wait) block until the torrent's controller has ended.
#[derive(Clone)]
pub struct TorrentHandle {
    pub(crate) info_hash: InfoHash,
    pub(crate) commands: Sender<TorrentCommand>,
    pub(crate) published: Arc<Published>,
    pub(crate) events: Receiver<TorrentEvent>,
    pub(crate) thread: Arc<Mutex<Option<JoinHandle<()>>>>,
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

    /// The connected peers.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.published.peers.lock().clone()
    }

    /// Events for a UI. Events are dropped, not queued without bound, when
    /// nobody reads them.
    pub fn events(&self) -> &Receiver<TorrentEvent> {
        &self.events
    }

    /// Disconnects every peer and stops announcing until [`resume`](Self::resume).
    pub fn pause(&self) -> Result<(), Error> {
        self.commands
            .send(TorrentCommand::Pause)
            .map_err(|_| Error::Closed)
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) -> Result<(), Error> {
        self.commands
            .send(TorrentCommand::Resume)
            .map_err(|_| Error::Closed)
    }

    /// Connects to more peers.
    pub fn add_peers(&self, peers: Vec<SocketAddr>) -> Result<(), Error> {
        self.commands
            .send(TorrentCommand::AddPeers(peers))
            .map_err(|_| Error::Closed)
    }

    /// Whether the torrent's controller has stopped (finished, removed or
    /// failed).
    pub fn is_finished(&self) -> bool {
        self.thread.lock().as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the torrent gracefully (announces `stopped`, saves resume
    /// state), removes it from the session and waits for its threads. The
    /// data on disk is kept.
    pub fn remove(&self) {
        let _ = self.commands.send(TorrentCommand::Shutdown);
        self.wait();
        // Only this torrent's entry: a stale handle of a torrent removed and
        // added again must not unregister the new one.
        crate::session::unregister(&self.registry, self.info_hash, &self.commands);
    }

    /// Blocks until the torrent's controller has ended (seed goal reached,
    /// removed, or an error).
    pub fn wait(&self) {
        let t = self.thread.lock().take();
        if let Some(t) = t {
            let _ = t.join();
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
