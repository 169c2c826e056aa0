//! The session's controller thread: runs every torrent's state (its
//! PiecePicker, Choker and peer table) on one thread. It `select!`s over
//! peer events, commands, job results (startup checks, verifications,
//! persists, stops), peer sources and the earliest due timer of its
//! deadline heap. A torrent with no peers and nothing due has no timer and
//! costs no wakeups; one with peers ticks every 250 ms.
//!
//! It never blocks on a peer, a disk or a tracker: checks, verification,
//! persisting, file creation and stops run on other threads and post their
//! results back on the bounded `done` channel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{at, bounded, never, select, Receiver, Sender};

use super::controller::{Controller, PersistDone};
use super::fetch::MetadataFetch;
use super::{TorrentCommand, TorrentId};
use crate::error::Error;
use crate::peer::PeerMsg;

/// Peer events waiting for the controller, all torrents together.
const PEER_QUEUE: usize = 16_384;
/// Commands (handles, listener) waiting for the controller.
const COMMAND_QUEUE: usize = 1024;
/// Job results waiting for the controller.
const DONE_QUEUE: usize = 8192;
/// Peer lists from peer sources waiting for the controller.
const SOURCE_QUEUE: usize = 1024;
/// Peer events handled in a row before other sources get a turn.
const PEER_BURST: usize = 256;

/// Commands to the controller thread.
pub(crate) enum Ctl {
    /// A new torrent: start its startup check.
    Add(Box<Controller>),
    /// A new torrent started from a magnet link: fetch its metadata, then
    /// run it like one added from a metainfo.
    Fetch(Box<MetadataFetch>),
    /// A command for one torrent.
    Command(TorrentId, TorrentCommand),
    /// Every torrent has ended: exit.
    Exit,
}

/// Results of work done off the controller thread. The large results
/// are boxed: the `done` channel holds a slot of this size for each of
/// its [`DONE_QUEUE`] places from the start, 104 bytes each unboxed.
pub(crate) enum Done {
    /// A startup check: `None` when it was cancelled.
    Checked(TorrentId, Option<Box<super::check::Checked>>),
    /// A verified piece.
    Verified(TorrentId, usize, Result<bool, bittern_storage::Error>),
    /// The SHA-256 of each block of a v2 piece that failed, as it was on
    /// disk (sent just before its `Verified`), for per-block blame.
    FailedLeaves(TorrentId, usize, Vec<bittern_storage::merkle::Hash256>),
    /// A persist job.
    Persisted(TorrentId, Box<PersistDone>),
    /// Zero-length files of a completed download created.
    FilesCreated(TorrentId, Result<(), bittern_storage::Error>),
    /// A stopping torrent's last save, announce and file release are done.
    Stopped(TorrentId),
    /// An event of a torrent's web seeds (of the given generation).
    WebSeed(TorrentId, u64, Box<crate::webseed::WebSeedEvent>),
}

/// The senders every torrent (and its peer threads and jobs) reports on:
/// one copy for the session, which each torrent shares (three senders
/// inline in every torrent were 48 bytes each of 10,000).
#[derive(Clone)]
pub(crate) struct Links(std::sync::Arc<Senders>);

/// The senders behind [`Links`].
pub(crate) struct Senders {
    pub peers: Sender<PeerMsg>,
    pub done: Sender<Done>,
    pub sources: Sender<(TorrentId, Vec<SocketAddr>)>,
}

impl std::ops::Deref for Links {
    type Target = Senders;

    fn deref(&self) -> &Senders {
        &self.0
    }
}

/// The one way candidate addresses reach a torrent, whoever found them:
/// its trackers, `--peer` / [`add_peers`](crate::TorrentHandle::add_peers),
/// and later magnet `x.pe`, PEX and DHT. One bounded channel for the whole
/// session; the controller decides whom to dial.
#[derive(Clone)]
pub(crate) struct PeerSource {
    torrent: TorrentId,
    tx: Sender<(TorrentId, Vec<SocketAddr>)>,
}

impl PeerSource {
    pub(crate) fn new(torrent: TorrentId, tx: Sender<(TorrentId, Vec<SocketAddr>)>) -> Self {
        PeerSource { torrent, tx }
    }

    /// Offers addresses a user gave: waits while the queue is full.
    pub(crate) fn offer_waiting(&self, peers: Vec<SocketAddr>) -> Result<(), Error> {
        self.tx
            .send((self.torrent, peers))
            .map_err(|_| Error::Closed)
    }
}

/// The controller thread's state: every torrent and the timer heap.
pub(crate) struct Central {
    /// Boxed: a controller is a few KiB, and a map of them inline would
    /// hold that much for every free slot of its table as well.
    torrents: HashMap<TorrentId, Box<Controller>>,
    /// Torrents in their metadata phase (never in `torrents` at once).
    fetches: HashMap<TorrentId, Box<MetadataFetch>>,
    /// Each torrent's earliest deadline (entries go stale when a torrent's
    /// deadline moves; a stale one just wakes it for nothing due).
    timers: BinaryHeap<Reverse<(Instant, TorrentId)>>,
    commands: Receiver<Ctl>,
    peers: Receiver<PeerMsg>,
    done: Receiver<Done>,
    sources: Receiver<(TorrentId, Vec<SocketAddr>)>,
    /// [`Ctl::Exit`] was handled (possibly while draining commands).
    exiting: bool,
    /// Slots for outgoing connections being opened, handed to the torrents
    /// waiting for one after every event (`grant_dial_turns`).
    half_open: Arc<crate::halfopen::HalfOpen>,
    /// How many torrents and fetches the thread holds, for
    /// [`Session::held`](crate::Session::held).
    running: Arc<AtomicUsize>,
}

impl Central {
    /// The controller's state and the senders that feed it.
    pub(crate) fn new(
        running: Arc<AtomicUsize>,
        half_open: Arc<crate::halfopen::HalfOpen>,
    ) -> (Central, Sender<Ctl>, Links) {
        let (ctl_tx, ctl_rx) = bounded(COMMAND_QUEUE);
        let (peer_tx, peer_rx) = bounded(PEER_QUEUE);
        let (done_tx, done_rx) = bounded(DONE_QUEUE);
        let (source_tx, source_rx) = bounded(SOURCE_QUEUE);
        let central = Central {
            torrents: HashMap::new(),
            fetches: HashMap::new(),
            timers: BinaryHeap::new(),
            commands: ctl_rx,
            peers: peer_rx,
            done: done_rx,
            sources: source_rx,
            exiting: false,
            half_open,
            running,
        };
        let links = Links(std::sync::Arc::new(Senders {
            peers: peer_tx,
            done: done_tx,
            sources: source_tx,
        }));
        (central, ctl_tx, links)
    }

    /// The controller loop; returns on [`Ctl::Exit`] or when every command
    /// sender is gone.
    pub(crate) fn run(mut self) {
        loop {
            let timer = self
                .timers
                .peek()
                .map_or_else(never, |Reverse((t, _))| at(*t));
            select! {
                recv(self.peers) -> msg => {
                    if let Ok(msg) = msg {
                        self.on_peer(msg);
                        for _ in 0..PEER_BURST {
                            match self.peers.try_recv() {
                                Ok(msg) => self.on_peer(msg),
                                Err(_) => break,
                            }
                        }
                    }
                }
                recv(self.commands) -> cmd => match cmd {
                    Ok(cmd) => self.on_ctl(cmd),
                    Err(_) => return,
                },
                recv(self.done) -> done => {
                    if let Ok(done) = done {
                        self.on_done(done);
                    }
                }
                recv(self.sources) -> offer => {
                    if let Ok((id, peers)) = offer {
                        self.on_offer(id, peers);
                    }
                }
                recv(timer) -> _ => self.on_timers(),
            }
            self.grant_dial_turns();
            self.running
                .store(self.torrents.len() + self.fetches.len(), Ordering::Relaxed);
            if self.exiting {
                return;
            }
        }
    }

    /// Gives each slot for a connection being opened that is free to the
    /// torrent waiting longest for one (see `halfopen`): it dials now
    /// rather than at its next tick, before any other torrent may. One
    /// that does not take its turn leaves the queue. Each round takes a
    /// slot or shortens the queue, so this ends.
    fn grant_dial_turns(&mut self) {
        while let Some(id) = self.half_open.next_turn() {
            if self.fetches.contains_key(&id) {
                self.with_fetch(id, MetadataFetch::connect_more);
            } else {
                self.with(id, Controller::connect_more);
            }
            self.half_open.pass(id);
        }
    }

    /// Handles one command ([`Ctl::Exit`] sets `exiting`).
    fn on_ctl(&mut self, cmd: Ctl) {
        match cmd {
            Ctl::Add(c) => {
                let id = c.id();
                self.torrents.insert(id, c);
                self.with(id, Controller::start);
            }
            Ctl::Fetch(f) => {
                let id = f.id();
                self.fetches.insert(id, f);
                self.with_fetch(id, MetadataFetch::start);
            }
            Ctl::Command(id, cmd) => {
                if self.fetches.contains_key(&id) {
                    self.with_fetch(id, |f| f.on_command(cmd));
                } else {
                    self.with(id, |c| c.on_command(cmd));
                }
            }
            Ctl::Exit => self.exiting = true,
        }
    }

    /// Makes sure torrent `id` is known before an input for it is
    /// dropped as stale: an input sent after the command that adds the
    /// torrent (peers offered right after `add_magnet`, a magnet's
    /// resolved `x.pe` host names) can still be picked by `select!` first,
    /// since that command waits on another channel. For an id not known,
    /// the commands already queued run first.
    fn settle(&mut self, id: TorrentId) {
        if self.fetches.contains_key(&id) || self.torrents.contains_key(&id) {
            return;
        }
        while !self.exiting {
            match self.commands.try_recv() {
                Ok(cmd) => self.on_ctl(cmd),
                Err(_) => break,
            }
        }
    }

    /// Hands candidate addresses to torrent `id`.
    fn on_offer(&mut self, id: TorrentId, peers: Vec<SocketAddr>) {
        self.settle(id);
        if self.fetches.contains_key(&id) {
            self.with_fetch(id, |f| f.add_candidates(peers));
        } else {
            self.with(id, |c| c.add_candidates(peers));
        }
    }

    fn on_peer(&mut self, msg: PeerMsg) {
        self.settle(msg.torrent);
        if self.fetches.contains_key(&msg.torrent) {
            self.with_fetch(msg.torrent, |f| f.on_peer_msg(msg));
        } else {
            self.with(msg.torrent, |c| c.on_peer_msg(msg));
        }
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Checked(id, r) => self.with(id, |c| c.on_checked(r.map(|r| *r))),
            Done::Verified(id, piece, r) => self.with(id, |c| c.on_verified(piece, r)),
            Done::FailedLeaves(id, piece, l) => self.with(id, |c| c.on_failed_leaves(piece, l)),
            Done::Persisted(id, d) => self.with(id, |c| c.on_persisted(*d)),
            Done::FilesCreated(id, r) => self.with(id, |c| c.on_files_created(r)),
            Done::Stopped(id) => self.with(id, Controller::on_stopped),
            Done::WebSeed(id, g, e) => self.with(id, |c| c.on_webseed(g, *e)),
        }
    }

    /// Runs every torrent whose deadline has come.
    fn on_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((t, id))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if let Some(f) = self.fetches.get_mut(&id) {
                if f.scheduled == Some(t) {
                    f.scheduled = None;
                }
                self.with_fetch(id, |f| f.on_timer(now));
                continue;
            }
            if let Some(c) = self.torrents.get_mut(&id) {
                if c.scheduled == Some(t) {
                    c.scheduled = None;
                }
            }
            self.with(id, |c| c.on_timer(now));
        }
    }

    /// Runs `f` on the metadata fetch of torrent `id`, then settles it: a
    /// fetch that completed hands its torrent's controller over (started
    /// here, under the same id and handle); an ended one leaves the table.
    fn with_fetch(&mut self, id: TorrentId, f: impl FnOnce(&mut MetadataFetch)) {
        let Some(fetch) = self.fetches.get_mut(&id) else {
            return;
        };
        f(fetch);
        if let Some(c) = fetch.take_handover() {
            self.fetches.remove(&id);
            self.torrents.insert(id, c);
            self.with(id, Controller::start);
            return;
        }
        if fetch.is_finished() {
            self.fetches.remove(&id);
            crate::shrink::map(&mut self.fetches);
            return;
        }
        if let Some(d) = fetch.next_deadline() {
            if fetch.scheduled.is_none_or(|s| d < s) {
                fetch.scheduled = Some(d);
                self.timers.push(Reverse((d, id)));
            }
        }
    }

    /// Forgets the timers of torrents gone once they are most of the heap
    /// (a removed torrent's next announce may be half an hour away).
    fn drop_stale_timers(&mut self) {
        let live = self.torrents.len() + self.fetches.len();
        if self.timers.len() <= 64 || self.timers.len() < live.saturating_mul(4) {
            return;
        }
        let (torrents, fetches) = (&self.torrents, &self.fetches);
        self.timers
            .retain(|Reverse((_, id))| torrents.contains_key(id) || fetches.contains_key(id));
        self.timers.shrink_to(self.timers.len() * 2);
    }

    /// Runs `f` on torrent `id`, then settles it: an ended torrent leaves
    /// the table; another gets a timer for its next deadline if that is
    /// earlier than the one it has.
    fn with(&mut self, id: TorrentId, f: impl FnOnce(&mut Controller)) {
        let Some(c) = self.torrents.get_mut(&id) else {
            return;
        };
        f(c);
        c.after_event();
        if c.is_finished() {
            self.torrents.remove(&id);
            crate::shrink::map(&mut self.torrents);
            self.drop_stale_timers();
            return;
        }
        if let Some(d) = c.next_deadline() {
            if c.scheduled.is_none_or(|s| d < s) {
                c.scheduled = Some(d);
                self.timers.push(Reverse((d, id)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The `done` channel allocates [`super::DONE_QUEUE`] slots of this
    /// size when the session starts, used or not.
    #[test]
    fn job_results_stay_small() {
        assert!(std::mem::size_of::<super::Done>() <= 64);
    }
}
