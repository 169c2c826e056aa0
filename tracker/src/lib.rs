//! bittern-tracker: talking to BitTorrent trackers, and being one.
//!
//! - [`announce`] and [`scrape`]: one request to one tracker over HTTP
//!   (BEP 3, 23, 7, 48; via ureq) or UDP (BEP 15), with timeouts, a
//!   response size cap and typed [`Error`]s.
//! - [`Tiers`]: BEP 12 announce-list order (shuffle within a tier, promote
//!   the tracker that answered, fall through on failure).
//! - [`Schedule`]: the pure re-announce schedule (interval, min interval,
//!   backoff with jitter, `completed`, early announce when short of peers),
//!   driven by an injected clock.
//! - [`Announcer`]: the mainline Rerequester, one background thread per
//!   torrent that runs the schedule over the tiers and sends new peers to
//!   the engine on a bounded crossbeam channel.
//! - [`server::TrackerServer`]: a small embedded HTTP tracker for LANs,
//!   demos and tests.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bittern_tracker::{Announcer, AnnouncerConfig, TransferStats};
//! use bittern_wire::{InfoHash, PeerId};
//!
//! let config = AnnouncerConfig::new(
//!     vec![vec!["http://127.0.0.1:6969/announce".to_string()]],
//!     InfoHash([1; 20]),
//!     PeerId([2; 20]),
//!     6881,
//! );
//! let stats = Arc::new(|| TransferStats { uploaded: 0, downloaded: 0, left: 1 << 20 });
//! let handle = Announcer::spawn(config, stats);
//! if let Ok(peers) = handle.peers().recv_timeout(Duration::from_secs(30)) {
//!     println!("{} peers", peers.len());
//! }
//! handle.stop(Duration::from_secs(2));
//! ```
#![deny(missing_docs)]

mod announcer;
mod client;
mod error;
pub mod http;
pub mod percent;
mod schedule;
pub mod server;
mod session;
mod tiers;
mod types;

#[cfg(test)]
mod proptests;
pub mod udp;

pub use announcer::{Announcer, AnnouncerConfig, AnnouncerHandle, AnnouncerStatus, TrackerStatus};
pub use client::{announce, scrape};
pub use error::{Error, Result};
pub use schedule::{Schedule, ScheduleConfig};
pub use session::{
    SessionAnnouncer, SessionConfig, SessionHandle, StatsSource, Stopping, TorrentKey, TrackerEvent,
};
pub use tiers::Tiers;
pub use types::{
    AnnounceEvent, AnnounceParams, AnnounceResponse, ClientConfig, ScrapeStats, TransferStats,
};
