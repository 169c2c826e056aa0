//! [`Daemon`]: the config dir, an engine session with every saved torrent,
//! the RPC server, and a housekeeping thread (activity, completion dates,
//! seconds downloading/seeding, saving changed records every 30 s).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_engine::{Session, SessionConfig};
use log::info;

use crate::backend::{Backend, EngineBackend};
use crate::gate::{Access, Gate};
use crate::http::{HttpServer, Limits};
use crate::rpc::Rpc;
use crate::state::Torrents;
use crate::store::{Store, StoreError};

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config dir or a file in it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The engine session (peer port in use, ...).
    #[error(transparent)]
    Engine(#[from] bittern_engine::Error),
    /// The RPC address cannot be bound.
    #[error("cannot listen for rpc on {addr}: {source}")]
    RpcListen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A non-loopback RPC address without a password.
    #[error("refusing to serve rpc on {0} without a password (use --rpc-username and --rpc-password, or bind a loopback address)")]
    ExposedWithoutAuth(IpAddr),
    /// The watch directory cannot be created.
    #[error("cannot watch {}: {source}", dir.display())]
    WatchDir {
        /// The folder.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The data root cannot be created.
    #[error("cannot use the data root {}: {source}", dir.display())]
    DataRoot {
        /// The folder.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An override is not a valid setting.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// How to run a daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Settings, torrents and resume state live here.
    pub config_dir: PathBuf,
    /// The RPC's address.
    pub rpc_addr: SocketAddr,
    /// Who may use the RPC.
    pub access: Access,
    /// Peer listening address; its port 0 picks a free one. `None`:
    /// [`peer_bind`](Self::peer_bind) on the settings' `peer-port`.
    pub peer_addr: Option<SocketAddr>,
    /// Without `peer_addr`, the address to listen on for peers, on the
    /// settings' `peer-port`; `None`: all interfaces.
    pub peer_bind: Option<IpAddr>,
    /// Engine settings besides the listening address and global limits.
    pub engine: SessionConfig,
    /// Bounds on RPC clients.
    pub limits: Limits,
    /// A folder to watch for `.torrent` and `.magnet` files.
    pub watch_dir: Option<PathBuf>,
    /// Every directory a client names must be inside this one (symlinks
    /// resolved); `None`: anywhere, `..` still refused.
    pub data_root: Option<PathBuf>,
    /// `session-set` arguments applied to the stored settings before the
    /// engine starts, and saved with them, as transmission-daemon does
    /// with its command-line options (`bittern daemon --no-dht ...`).
    pub overrides: serde_json::Map<String, serde_json::Value>,
}

/// A running daemon.
pub struct Daemon {
    rpc: Arc<Rpc<EngineBackend>>,
    http: HttpServer,
    peer_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    housekeeping: Option<JoinHandle<()>>,
    watcher: Option<crate::watch::Watcher>,
}

/// How often housekeeping runs, and how often it saves.
const TICK: Duration = Duration::from_secs(1);
const SAVE_EVERY: Duration = Duration::from_secs(30);

impl Daemon {
    /// Opens the config dir, starts the engine with every saved torrent
    /// and serves the RPC.
    ///
    /// # Errors
    /// See [`Error`]; a refused non-loopback bind comes before anything
    /// is opened.
    pub fn start(config: DaemonConfig) -> Result<Daemon, Error> {
        let ip = config.rpc_addr.ip();
        if !ip.is_loopback() && config.access.credentials.is_none() {
            return Err(Error::ExposedWithoutAuth(ip));
        }
        let store = Store::open(&config.config_dir)?;
        let mut settings = store.load_settings()?;
        if !config.overrides.is_empty() {
            settings.merge(&config.overrides).map_err(Error::Setting)?;
            store.save_settings(&settings)?;
        }
        let (down, up) = crate::limits::session_limits(&settings);
        let listen = config.peer_addr.unwrap_or_else(|| {
            let ip = config
                .peer_bind
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
            SocketAddr::new(ip, settings.peer_port)
        });
        let base = crate::network::apply(&settings, listen, store.dir(), config.engine);
        if !base.tcp && !base.utp {
            return Err(Error::Setting(
                "tcp off and utp-enabled false leave no way to reach peers".into(),
            ));
        }
        let engine = SessionConfig {
            download_limit: down,
            upload_limit: up,
            max_connections: usize::try_from(settings.peer_limit_global).unwrap_or(usize::MAX),
            max_peers_per_torrent: usize::try_from(settings.peer_limit_per_torrent)
                .unwrap_or(usize::MAX),
            ..base
        };
        let session = Session::new(engine.clone())?;
        let blocklist = Arc::new(crate::blocklist::load(store.dir()));
        if settings.blocklist_enabled {
            session.set_ip_filter(blocklist.clone());
        }
        let peer_addr = session.local_addr();
        let torrents = Torrents::open(EngineBackend::with_config(session, engine), store)?;
        {
            let root = match &config.data_root {
                Some(r) => {
                    std::fs::create_dir_all(r).map_err(|source| Error::DataRoot {
                        dir: r.clone(),
                        source,
                    })?;
                    crate::paths::absolute(r).to_string_lossy().into_owned()
                }
                None => String::new(),
            };
            let mut inner = torrents.lock();
            if inner.settings.data_root != root {
                inner.settings.data_root = root;
                torrents
                    .store()
                    .save_settings(&inner.settings)
                    .map_err(Error::Store)?;
            }
        }
        let rpc = Arc::new(Rpc::with_blocklist(torrents, blocklist));
        let gate = Arc::new(Gate::new(rpc.clone(), config.access));
        let http = match HttpServer::bind(config.rpc_addr, gate, config.limits) {
            Ok(h) => h,
            Err(source) => {
                rpc.torrents().backend().shutdown();
                return Err(Error::RpcListen {
                    addr: config.rpc_addr,
                    source,
                });
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let housekeeping = {
            let (rpc, stop) = (rpc.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bittern-daemon-tick".into())
                .spawn(move || {
                    let mut saved = Instant::now();
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(TICK);
                        let save = saved.elapsed() >= SAVE_EVERY;
                        rpc.torrents().tick(TICK, save);
                        if save {
                            saved = Instant::now();
                        }
                    }
                })
                .map_err(Error::Spawn)?
        };
        let watcher = match config.watch_dir {
            Some(dir) => match crate::watch::Watcher::start(dir.clone(), rpc.clone()) {
                Ok(w) => Some(w),
                Err(source) => {
                    stop.store(true, Ordering::SeqCst);
                    rpc.torrents().backend().shutdown();
                    return Err(Error::WatchDir { dir, source });
                }
            },
            None => None,
        };
        info!(
            "rpc on http://{}/transmission/rpc, peers on {peer_addr}",
            http.local_addr()
        );
        Ok(Daemon {
            rpc,
            http,
            peer_addr,
            stop,
            housekeeping: Some(housekeeping),
            watcher,
        })
    }

    /// The RPC's address.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The peer listening address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Torrents the daemon holds now.
    pub fn torrent_count(&self) -> usize {
        self.rpc.torrents().lock().entries.len()
    }

    /// Whether a client asked the daemon to exit (`session-close`).
    pub fn close_requested(&self) -> bool {
        self.rpc.close_requested()
    }

    /// Stops serving, stops every torrent gracefully and saves everything.
    pub fn shutdown(mut self) {
        self.http.shutdown();
        if let Some(mut w) = self.watcher.take() {
            w.stop();
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.housekeeping.take() {
            let _ = t.join();
        }
        self.rpc.torrents().shutdown();
        info!("daemon stopped");
    }
}
