//! bittern-daemon: a long-running bittern that keeps its torrents across
//! restarts and speaks Transmission's RPC, so `transmission-remote`, the
//! Python `transmission-rpc` package, Sonarr/Radarr and other Transmission
//! frontends drive it unchanged.
//!
//! Layers, outside in:
//! - [`http`]: a small blocking HTTP/1.1 server (thread per connection,
//!   bounded; keep-alive; size and time limits);
//! - [`gate`]: Transmission's checks (IP whitelist, Basic auth, Host
//!   header against DNS rebinding, the `X-Transmission-Session-Id` 409
//!   handshake);
//! - [`rpc`]: the JSON envelope and the methods, with [`fields`] for
//!   `torrent-get`;
//! - [`state`]: the torrent table (ids, records, queue) over a
//!   [`Backend`], implemented for the engine by [`EngineBackend`];
//! - [`store`]: the config dir, every file written atomically;
//!   [`network`]: the settings the engine's peer network starts with;
//! - [`web`]: the web page, embedded; [`metrics`]: `/metrics` for
//!   Prometheus; [`watch`]: the watch directory.
//!
//! [`Daemon`] puts them together.
//!
//! ```no_run
//! use bittern_daemon::{Access, Daemon, DaemonConfig, Limits};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let daemon = Daemon::start(DaemonConfig {
//!     config_dir: "/var/lib/bittern".into(),
//!     rpc_addr: "127.0.0.1:9091".parse()?,
//!     access: Access::default(),
//!     peer_addr: None,
//!     peer_bind: None,
//!     engine: bittern_engine::SessionConfig::default(),
//!     limits: Limits::default(),
//!     watch_dir: None,
//!     data_root: None,
//!     overrides: Default::default(),
//! })?;
//! while !daemon.close_requested() {
//!     std::thread::sleep(std::time::Duration::from_millis(200));
//! }
//! daemon.shutdown();
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod backend;
pub mod blocklist;
pub mod fields;
pub mod gate;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod network;
pub mod paths;
pub mod rpc;
mod run;
pub mod settings;
pub mod source;
pub mod state;
pub mod store;
pub mod watch;
pub mod web;

pub use backend::{Backend, BackendError, EngineBackend, Source, Start};
pub use gate::{Access, Gate};
pub use http::{Handler, HttpServer, Limits, Request, Response};
pub use rpc::Rpc;
pub use run::{Daemon, DaemonConfig, Error};
pub use settings::Settings;
pub use state::Torrents;
pub use store::{Record, Store};
