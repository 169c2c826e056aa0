//! The seam between the RPC and the torrents: [`Backend`] is what the
//! method layer needs from an engine, [`EngineBackend`] the thin adapter to
//! today's [`bittern_engine::Session`]. Tests drive the method layer with
//! a fake backend.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use bittern_engine::{
    AnnouncerStatus, Incoming, IpFilter, PeerInfo, Session, SessionConfig, TorrentHandle,
    TorrentOptions, TorrentStatus,
};
use bittern_wire::{Bitfield, InfoHash, Magnet, Metainfo};
use parking_lot::Mutex;

/// Why the engine refused an operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The engine refused to add the torrent.
    #[error(transparent)]
    Engine(#[from] bittern_engine::Error),
    /// No torrent with this info hash runs in the engine.
    #[error("torrent not running")]
    NotRunning,
    /// The backend cannot do this while it runs.
    #[error("not supported while running")]
    Unsupported,
}

/// What a torrent is started from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Its metainfo.
    Metainfo(Metainfo),
    /// A magnet link: the engine fetches the metadata from peers first.
    Magnet(Magnet),
}

impl Source {
    /// The info hash naming the swarm: the v1 hash, or for a v2-only
    /// torrent the v2 hash truncated to 20 bytes (`None` for a magnet link
    /// with neither).
    pub fn info_hash(&self) -> Option<InfoHash> {
        match self {
            Source::Metainfo(m) => Some(m.info_hash),
            Source::Magnet(m) => has_hash(m).then(|| m.swarm_hash()),
        }
    }
}

/// Whether `m` names a torrent at all (`btih` or `btmh`).
pub(crate) fn has_hash(m: &Magnet) -> bool {
    m.info_hash.is_some() || m.info_hash_v2.is_some()
}

impl Source {}

/// One torrent to start.
#[derive(Debug, Clone)]
pub struct Start {
    /// What to download or seed.
    pub source: Source,
    /// Where its data lives.
    pub save_dir: PathBuf,
    /// Engine options (wanted files, limits, resume file, paused).
    pub options: TorrentOptions,
}

impl Start {
    /// The metainfo it starts from (`None` for a magnet link).
    pub fn metainfo(&self) -> Option<&Metainfo> {
        match &self.source {
            Source::Metainfo(m) => Some(m),
            Source::Magnet(_) => None,
        }
    }
}

/// What the RPC method layer needs from the torrents. Calls are made with
/// no daemon lock held except [`status`](Self::status), which must not block.
pub trait Backend: Send + Sync + 'static {
    /// Starts a torrent (checking its data first).
    ///
    /// # Errors
    /// The engine refused it (already running, bad options, storage).
    fn start(&self, start: Start) -> Result<(), BackendError>;
    /// Stops a torrent and forgets it; its data and resume state stay.
    fn remove(&self, hash: InfoHash);
    /// Disconnects its peers and stops announcing.
    ///
    /// # Errors
    /// [`BackendError::NotRunning`].
    fn pause(&self, hash: InfoHash) -> Result<(), BackendError>;
    /// Undoes [`pause`](Self::pause).
    ///
    /// # Errors
    /// [`BackendError::NotRunning`].
    fn resume(&self, hash: InfoHash) -> Result<(), BackendError>;
    /// Asks its trackers for peers as early as they allow.
    ///
    /// # Errors
    /// [`BackendError::NotRunning`].
    fn reannounce(&self, hash: InfoHash) -> Result<(), BackendError>;
    /// Changes its own (download, upload) limits while it runs, bytes per
    /// second, `None` unlimited, and whether the session's apply too.
    ///
    /// # Errors
    /// [`BackendError::NotRunning`].
    fn set_limits(
        &self,
        hash: InfoHash,
        download: Option<u64>,
        upload: Option<u64>,
        honors_session: bool,
    ) -> Result<(), BackendError>;
    /// Changes the session's (download, upload) limits while torrents run.
    fn set_session_limits(&self, download: Option<u64>, upload: Option<u64>);
    /// A snapshot of its state, `None` when it does not run.
    fn status(&self, hash: InfoHash) -> Option<TorrentStatus>;
    /// Its connected peers.
    fn peers(&self, hash: InfoHash) -> Vec<PeerInfo>;
    /// The `.torrent` of a torrent started from a magnet link, once its
    /// metadata has been fetched (`None` before, and for the others).
    fn torrent_file(&self, hash: InfoHash) -> Option<Vec<u8>>;
    /// The port peers connect to.
    fn peer_port(&self) -> u16;
    /// Nodes in the DHT's routing table (`None`: no DHT).
    fn dht_nodes(&self) -> Option<usize> {
        None
    }
    /// Applies the network settings the engine can change while it runs:
    /// the encryption policy and peer exchange (see
    /// [`Session::set_encryption`], [`Session::set_pex`]). A backend
    /// without a peer network ignores them.
    fn set_network(&self, _encryption: bittern_engine::Encryption, _pex: bool) {}
    /// Replaces the IP filter (blocklist) peers are checked against; a
    /// backend without a peer network ignores it.
    fn set_ip_filter(&self, _filter: Arc<IpFilter>) {}
    /// Every address peers may connect to (empty: unknown).
    fn peer_addrs(&self) -> Vec<std::net::SocketAddr> {
        Vec::new()
    }
    /// The last incoming peer connection (see
    /// [`Session::last_incoming`]); `None` if none came.
    fn last_incoming(&self) -> Option<Incoming> {
        None
    }
    /// Its verified pieces (`None`: not running, or no metadata yet).
    fn pieces(&self, _hash: InfoHash) -> Option<Bitfield> {
        None
    }
    /// Its trackers as the announcer has them (`None`: not running, not
    /// announcing). May wait for the announcer (bounded).
    fn tracker_status(&self, _hash: InfoHash) -> Option<AnnouncerStatus> {
        None
    }
    /// Moves the peer listener to `port` while the daemon runs: a new
    /// engine session is bound there first (a taken port fails here and
    /// changes nothing), takes over the live settings (limits, encryption,
    /// PEX, IP filter), and the old one stops gracefully (resume state
    /// saved, `stopped` announced). Returns every torrent's final status
    /// in the old session; the caller starts them again.
    ///
    /// # Errors
    /// The new session could not start (port in use);
    /// [`BackendError::Unsupported`] for a backend that cannot.
    fn rebind(&self, _port: u16) -> Result<HashMap<InfoHash, TorrentStatus>, BackendError> {
        Err(BackendError::Unsupported)
    }
    /// Stops every torrent gracefully (resume state saved).
    fn shutdown(&self);
}

/// [`Backend`] over a [`bittern_engine::Session`].
pub struct EngineBackend {
    session: Mutex<Session>,
    handles: Mutex<HashMap<InfoHash, TorrentHandle>>,
    port: AtomicU16,
    /// The config the session started from, for [`Backend::rebind`]
    /// (`None`: it cannot rebind).
    config: Mutex<Option<SessionConfig>>,
}

impl EngineBackend {
    /// Wraps a running session.
    pub fn new(session: Session) -> EngineBackend {
        let port = session.local_addr().port();
        EngineBackend {
            session: Mutex::new(session),
            handles: Mutex::default(),
            port: AtomicU16::new(port),
            config: Mutex::new(None),
        }
    }

    /// Wraps a running session started from `config`, which
    /// [`Backend::rebind`] starts the next one from.
    pub fn with_config(session: Session, config: SessionConfig) -> EngineBackend {
        let b = EngineBackend::new(session);
        *b.config.lock() = Some(config);
        b
    }

    fn handle(&self, hash: InfoHash) -> Result<TorrentHandle, BackendError> {
        self.handles
            .lock()
            .get(&hash)
            .cloned()
            .ok_or(BackendError::NotRunning)
    }
}

impl Backend for EngineBackend {
    fn start(&self, start: Start) -> Result<(), BackendError> {
        let session = self.session.lock();
        let handle = match start.source {
            Source::Metainfo(m) => session.add_torrent(m, start.save_dir, start.options)?,
            Source::Magnet(m) => session.add_magnet(&m, start.save_dir, start.options)?,
        };
        drop(session);
        self.handles.lock().insert(handle.info_hash(), handle);
        Ok(())
    }

    fn remove(&self, hash: InfoHash) {
        let handle = {
            let mut handles = self.handles.lock();
            let h = handles.remove(&hash);
            // A daemon emptied of thousands of torrents gives the table back.
            if handles.capacity() > 32 && handles.len() * 4 <= handles.capacity() {
                let keep = handles.len() * 2;
                handles.shrink_to(keep);
            }
            h
        };
        if let Some(h) = handle {
            h.remove();
        }
    }

    fn pause(&self, hash: InfoHash) -> Result<(), BackendError> {
        self.handle(hash)?.pause().map_err(BackendError::from)
    }

    fn resume(&self, hash: InfoHash) -> Result<(), BackendError> {
        self.handle(hash)?.resume().map_err(BackendError::from)
    }

    fn reannounce(&self, hash: InfoHash) -> Result<(), BackendError> {
        self.handle(hash)?.reannounce().map_err(BackendError::from)
    }

    fn set_limits(
        &self,
        hash: InfoHash,
        download: Option<u64>,
        upload: Option<u64>,
        honors_session: bool,
    ) -> Result<(), BackendError> {
        let h = self.handle(hash)?;
        h.set_limits(download, upload);
        h.set_honors_session_limits(honors_session);
        Ok(())
    }

    fn set_session_limits(&self, download: Option<u64>, upload: Option<u64>) {
        self.session.lock().set_limits(download, upload);
    }

    fn status(&self, hash: InfoHash) -> Option<TorrentStatus> {
        self.handles.lock().get(&hash).map(TorrentHandle::status)
    }

    fn peers(&self, hash: InfoHash) -> Vec<PeerInfo> {
        self.handles
            .lock()
            .get(&hash)
            .map(TorrentHandle::peers)
            .unwrap_or_default()
    }

    fn torrent_file(&self, hash: InfoHash) -> Option<Vec<u8>> {
        self.handles
            .lock()
            .get(&hash)
            .and_then(TorrentHandle::torrent_file)
    }

    fn peer_port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    fn dht_nodes(&self) -> Option<usize> {
        self.session.lock().dht_nodes()
    }

    fn set_network(&self, encryption: bittern_engine::Encryption, pex: bool) {
        let session = self.session.lock();
        session.set_encryption(encryption);
        session.set_pex(pex);
    }

    fn set_ip_filter(&self, filter: Arc<IpFilter>) {
        self.session.lock().set_ip_filter(filter);
    }

    fn peer_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.session.lock().local_addrs()
    }

    fn last_incoming(&self) -> Option<Incoming> {
        self.session.lock().last_incoming()
    }

    fn pieces(&self, hash: InfoHash) -> Option<Bitfield> {
        let handle = self.handles.lock().get(&hash).cloned()?;
        handle.pieces()
    }

    fn tracker_status(&self, hash: InfoHash) -> Option<AnnouncerStatus> {
        // The handle is cloned out: the announcer is asked with no lock held.
        let handle = self.handles.lock().get(&hash).cloned()?;
        handle.tracker_status()
    }

    fn rebind(&self, port: u16) -> Result<HashMap<InfoHash, TorrentStatus>, BackendError> {
        let mut config = self
            .config
            .lock()
            .clone()
            .ok_or(BackendError::Unsupported)?;
        config.listen.set_port(port);
        if let Some(lsd) = config.lsd.as_mut() {
            lsd.listen_port = port;
        }
        let mut session = self.session.lock();
        let fresh = Session::new(config.clone())?;
        fresh.set_limits(session.limits().0, session.limits().1);
        fresh.set_encryption(session.encryption());
        fresh.set_pex(session.pex());
        fresh.set_ip_filter(session.ip_filter());
        let bound = fresh.local_addr().port();
        let mut old = std::mem::replace(&mut *session, fresh);
        old.shutdown();
        drop(session);
        let handles = std::mem::take(&mut *self.handles.lock());
        self.port.store(bound, Ordering::Relaxed);
        *self.config.lock() = Some(config);
        log::info!("peers listening on port {bound} now");
        Ok(handles
            .into_iter()
            .map(|(hash, h)| (hash, h.status()))
            .collect())
    }

    fn shutdown(&self) {
        // Statuses stay readable through the handles afterwards.
        self.session.lock().shutdown();
    }
}
