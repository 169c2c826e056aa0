//! What every torrent of a session shares ([`SessionShared`]), and the
//! session announcer it starts with the first torrent that has a tracker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bittern_storage::FilePool;
use bittern_tracker::{
    SessionAnnouncer, SessionConfig as TrackerSessionConfig, SessionHandle, StatsSource,
    TorrentKey, TrackerEvent,
};
use bittern_wire::{InfoHash, PeerId};
use crossbeam_channel::{Sender, TrySendError};
use log::{debug, warn};
use parking_lot::Mutex;

use super::Incoming;
use crate::config::SessionConfig;
use crate::error::Error;
use crate::ratelimit::RateLimiter;
use crate::torrent::TorrentId;

/// Our own addresses learnt from peers' `yourip` kept at once (one per
/// interface or NAT a peer may see us through).
const MAX_EXTERNAL_IPS: usize = 8;

/// What every torrent of a session shares.
pub(crate) struct SessionShared {
    pub config: SessionConfig,
    pub peer_id: PeerId,
    pub files: Arc<FilePool>,
    pub hashers: Arc<rayon::ThreadPool>,
    /// Verifies completed pieces by reading them back (sleeping workers).
    pub verifiers: crate::hashpool::HashPool,
    /// Writes resume state (periodic saves, a stop's last save).
    pub savers: crate::hashpool::SavePool,
    /// The resume-state folders in use, one copy each for all the torrents
    /// that save there (see [`SessionShared::resume_dir`]).
    pub resume_dirs: Mutex<HashMap<PathBuf, std::sync::Weak<Path>>>,
    /// The torrents' tracker lists, one copy of each for all that share it.
    pub tiers: crate::torrent::TierInterner,
    /// Starts writeback of verified pieces off the controllers.
    pub writeback: crate::writeback::Writeback,
    pub upload: Arc<RateLimiter>,
    pub download: Arc<RateLimiter>,
    /// Live peer connections across all torrents (each peer thread holds a
    /// `peer::Connection` that counts itself here).
    pub connections: Arc<AtomicUsize>,
    /// Of those, outgoing ones not yet past the handshake, bounded by
    /// `config.max_half_open`, and the torrents waiting for a turn to dial.
    pub half_open: Arc<crate::halfopen::HalfOpen>,
    /// The port we listen on, announced to trackers.
    pub port: u16,
    /// Every address we listen on (on `port`): a candidate that is one of
    /// these is ourselves.
    pub listen_addrs: Vec<SocketAddr>,
    /// Addresses peers said they see us at (`yourip`, BEP 10), newest last.
    pub external_ips: Mutex<Vec<std::net::IpAddr>>,
    /// The one tracker announcer of the session, started by the first
    /// torrent that has a tracker to announce to; it ends by itself
    /// `timing.announcer_linger` after its last torrent left, and the next
    /// torrent with a tracker starts a new one. (Shared with the
    /// forwarding thread, which empties it when that announcer ends, so an
    /// ended announcer's channels are not kept.)
    pub announcer: Arc<Mutex<AnnouncerSlot>>,
    /// Where the announcer's forwarding thread sends tracker peers (the
    /// controller's peer-source channel).
    pub tracker_peers: Sender<(TorrentId, Vec<SocketAddr>)>,
    /// Generations of announcer keys: a torrent that restarts gets a new
    /// key, so its old `stopped` and its new `started` never collide.
    pub announce_generation: AtomicU64,
    /// Local Service Discovery, when on and its socket could join the
    /// group (`None` once the session has shut it down).
    pub lsd: Mutex<Option<crate::lsd::Lsd>>,
    /// Our address as the last peer that told us (`yourip`, BEP 10) saw
    /// it.
    pub external_ip: Mutex<Option<std::net::IpAddr>>,
    /// The session's DHT node and its schedule (`None`: DHT off).
    pub dht: Option<Arc<crate::dht::SessionDht>>,
    /// How peer connections are dialled (uTP, TCP).
    pub dial: crate::peer::Dial,
    /// The encryption policy of new connections: `config.encryption`
    /// until [`Session::set_encryption`] changes it.
    pub encryption: Mutex<crate::config::Encryption>,
    /// Peer exchange on (`config.pex` until [`Session::set_pex`]).
    pub pex: std::sync::atomic::AtomicBool,
    /// The blocklist: peers in it are never dialled nor accepted (see
    /// [`Session::set_ip_filter`]). Swapped whole; readers clone the Arc.
    pub ip_filter: Mutex<Arc<crate::ipfilter::IpFilter>>,
    /// Changes of `ip_filter` so far.
    pub ip_filter_generation: AtomicU64,
    /// The last incoming connection whose handshake named one of our
    /// torrents (see [`Session::last_incoming`]).
    pub last_incoming: Mutex<Option<Incoming>>,
}

/// The session announcer's life: a session whose torrents have no
/// trackers never starts its threads.
pub(crate) enum AnnouncerSlot {
    /// Not started yet.
    Idle,
    /// Running: the scheduler, the workers it has started and the
    /// forwarding thread (or ended idle, see [`SessionHandle::has_ended`]).
    Running(SessionHandle),
    /// Announcing is off, or the session has shut the announcer down:
    /// never started (again).
    Closed,
}

impl SessionShared {
    /// `dir`, shared with every torrent that keeps its resume state there
    /// (`<save dir>/.bittern`): 10,000 torrents in one folder hold one copy
    /// of its path, not one each.
    pub(crate) fn resume_dir(&self, dir: PathBuf) -> Arc<Path> {
        let mut dirs = self.resume_dirs.lock();
        if let Some(d) = dirs.get(&dir).and_then(std::sync::Weak::upgrade) {
            return d;
        }
        if dirs.len() >= 64 {
            dirs.retain(|_, d| d.strong_count() > 0);
        }
        let shared: Arc<Path> = Arc::from(dir.as_path());
        dirs.insert(dir, Arc::downgrade(&shared));
        shared
    }

    /// The encryption policy for a connection made or accepted now.
    pub(crate) fn encryption(&self) -> crate::config::Encryption {
        *self.encryption.lock()
    }

    /// Whether peer exchange is on for the session now.
    pub(crate) fn pex(&self) -> bool {
        self.pex.load(Ordering::Relaxed)
    }

    /// Whether `addr` is our own listener: on our port at a loopback
    /// address, at one of the addresses we listen on, or at an address
    /// peers told us they see us at (`yourip`).
    pub(crate) fn is_own_addr(&self, addr: SocketAddr) -> bool {
        addr.port() == self.port
            && (addr.ip().is_loopback()
                || self.listen_addrs.iter().any(|l| l.ip() == addr.ip())
                || self.external_ips.lock().contains(&addr.ip()))
    }

    /// Our own address of each family for `ipv4` / `ipv6` in extension
    /// handshakes (BEP 10): the newest a peer told us it sees us at
    /// (`yourip`), else an address we listen on that is not unspecified;
    /// `None` for a family we know nothing of.
    pub(crate) fn own_ips(&self) -> (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>) {
        use std::net::IpAddr;
        let learnt: Vec<IpAddr> = self.external_ips.lock().iter().rev().copied().collect();
        let listening = self
            .listen_addrs
            .iter()
            .map(SocketAddr::ip)
            .filter(|ip| !ip.is_unspecified());
        let all: Vec<IpAddr> = learnt.into_iter().chain(listening).collect();
        let v4 = all.iter().find_map(|ip| match ip {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        });
        let v6 = all.iter().find_map(|ip| match ip {
            IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => Some(*a),
            _ => None,
        });
        (v4, v6)
    }

    /// Records an address a peer says it sees us at (its `yourip`): a
    /// candidate there on our port is ourselves. Bounded: the newest
    /// [`MAX_EXTERNAL_IPS`] are kept.
    /// `voter` is the peer's address; the DHT counts it as a vote for
    /// our external address (BEP 42 node id).
    pub(crate) fn learn_external_ip(&self, ip: std::net::IpAddr, voter: std::net::IpAddr) {
        if ip.is_unspecified() || ip.is_multicast() {
            return;
        }
        if let Some(d) = &self.dht {
            d.vote_external_ip(voter, ip);
        }
        *self.external_ip.lock() = Some(ip);
        let mut ips = self.external_ips.lock();
        if !ips.contains(&ip) {
            if ips.len() >= MAX_EXTERNAL_IPS {
                ips.remove(0);
            }
            debug!("a peer sees us at {ip}");
            ips.push(ip);
        }
    }

    /// Runs `f` on the session announcer, if it runs.
    pub(crate) fn with_announcer(&self, f: impl FnOnce(&SessionHandle)) {
        if let AnnouncerSlot::Running(a) = &*self.announcer.lock() {
            f(a);
        }
    }

    /// Adds a torrent's announcer keys (each with the info hash it
    /// announces) to the session announcer, starting one first if none
    /// runs: never started, or ended idle after its last torrent left.
    /// False if announcing is off or shut down, or no announcer could start
    /// (logged; the next torrent with a tracker tries again).
    pub(crate) fn announce(
        &self,
        keys: &[(TorrentKey, InfoHash)],
        tiers: &[Vec<String>],
        stats: &StatsSource,
    ) -> bool {
        let mut slot = self.announcer.lock();
        // An announcer that ends idle refuses the first addition; the
        // second try goes to a new one.
        for _ in 0..2 {
            match &*slot {
                AnnouncerSlot::Closed => return false,
                AnnouncerSlot::Running(a) if !a.has_ended() => {}
                _ => match spawn_announcer(self, self.tracker_peers.clone()) {
                    Ok(handle) => *slot = AnnouncerSlot::Running(handle),
                    Err(e) => {
                        warn!("cannot start the tracker announcer: {e}");
                        *slot = AnnouncerSlot::Idle;
                        return false;
                    }
                },
            }
            let AnnouncerSlot::Running(a) = &*slot else {
                return false;
            };
            if keys
                .iter()
                .all(|(key, hash)| a.add(*key, *hash, tiers.to_vec(), Arc::clone(stats)))
            {
                return true;
            }
        }
        warn!("the tracker announcer ended twice while taking a torrent");
        false
    }

    /// The session announcer's handle held (0 or 1; its channels) and the
    /// threads it holds now (its scheduler and workers).
    pub(crate) fn announcer_held(&self) -> (usize, usize) {
        match &*self.announcer.lock() {
            AnnouncerSlot::Running(a) if a.has_ended() => (1, 0),
            AnnouncerSlot::Running(a) => (1, a.threads()),
            _ => (0, 0),
        }
    }

    /// Tells LSD (if it runs) to announce a torrent, or to stop.
    pub(crate) fn lsd_send(&self, cmd: crate::lsd::LsdCommand) {
        if let Some(l) = self.lsd.lock().as_ref() {
            if let Err(e) = l.send(cmd) {
                debug!("lsd command dropped: {e}");
            }
        }
    }

    /// A fresh announcer key for torrent `id`: the low 32 bits name the
    /// torrent (see [`announce_torrent`]), the high ones the generation.
    pub(crate) fn announce_key(&self, id: TorrentId) -> TorrentKey {
        let generation = self.announce_generation.fetch_add(1, Ordering::Relaxed);
        TorrentKey((generation << 32) | (id & 0xffff_ffff))
    }
}

/// The torrent an announcer key names (see [`SessionShared::announce_key`]).
fn announce_torrent(key: TorrentKey) -> TorrentId {
    key.0 & 0xffff_ffff
}

/// Starts the session announcer and the thread that forwards its peers to
/// each torrent's peer source (the controller never waits on trackers).
fn spawn_announcer(
    shared: &SessionShared,
    sources: Sender<(TorrentId, Vec<SocketAddr>)>,
) -> Result<SessionHandle, Error> {
    let mut config = TrackerSessionConfig::new(shared.peer_id, shared.port);
    config.client = shared.config.tracker.clone();
    config.schedule = shared.config.tracker_schedule.clone();
    config.stop_deadline = shared.config.timing.stop_announce_deadline;
    config.thread_name = "bittern-announce".into();
    config.idle_exit = Some(shared.config.timing.announcer_linger);
    let handle = SessionAnnouncer::spawn(config).map_err(|e| match e {
        bittern_tracker::Error::Io(e) => Error::Spawn(e),
        other => Error::Spawn(std::io::Error::other(other)),
    })?;
    let events = handle.events().clone();
    let slot = Arc::downgrade(&shared.announcer);
    std::thread::Builder::new()
        .name("bittern-announce-fwd".into())
        .spawn(move || {
            forward(events, &sources);
            // The announcer ended (idle, or shut down): the session keeps
            // nothing of it, its handle included (the command and event
            // channels are freed with it). A new announcer in the slot is
            // left alone.
            if let Some(slot) = slot.upgrade() {
                let mut slot = slot.lock();
                if matches!(&*slot, AnnouncerSlot::Running(a) if a.has_ended()) {
                    *slot = AnnouncerSlot::Idle;
                }
            }
        })
        .map_err(Error::Spawn)?;
    Ok(handle)
}

/// Forwards tracker peers to the torrents' peer source until the
/// announcer ends (its event sender is dropped).
fn forward(
    events: crossbeam_channel::Receiver<TrackerEvent>,
    sources: &Sender<(TorrentId, Vec<SocketAddr>)>,
) {
    for event in events {
        if let TrackerEvent::Peers(key, peers) = event {
            match sources.try_send((announce_torrent(key), peers)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    debug!("peer source queue full; dropping tracker peers");
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
    }
}
