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
//! - [`SessionAnnouncer`]: one announcer for a whole session. A scheduler
//!   thread keeps every torrent's [`Schedule`] and [`Tiers`] in a deadline
//!   heap (a torrent with nothing due costs no wake-up) and one queue and
//!   one backoff per tracker (many torrents on one tracker never open a
//!   connection each at once; an unreachable tracker backs off once for all
//!   of them; a UDP tracker's connection id serves them all; scrapes go out
//!   batched); a fixed pool of workers (4 by default) runs the requests.
//!   Peers and scrape counters reach the engine as [`TrackerEvent`]s on one
//!   bounded channel. Threads: the scheduler and at most `workers`, each
//!   started when a request finds no free one, whatever the torrent count.
//! - [`server::TrackerServer`]: a small embedded HTTP tracker for LANs,
//!   demos and tests.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bittern_tracker::{
//!     SessionAnnouncer, SessionConfig, TorrentKey, TrackerEvent, TransferStats,
//! };
//! use bittern_wire::{InfoHash, PeerId};
//!
//! let announcer = SessionAnnouncer::spawn(SessionConfig::new(PeerId([2; 20]), 6881))?;
//! let stats = Arc::new(|| TransferStats { uploaded: 0, downloaded: 0, left: 1 << 20 });
//! assert!(announcer.add(
//!     TorrentKey(1),
//!     InfoHash([1; 20]),
//!     vec![vec!["http://127.0.0.1:6969/announce".to_string()]],
//!     stats,
//! ));
//! if let Ok(TrackerEvent::Peers(key, peers)) =
//!     announcer.events().recv_timeout(Duration::from_secs(30))
//! {
//!     println!("{key:?}: {} peers", peers.len());
//! }
//! announcer.shutdown(Duration::from_secs(2)); // `stopped` to every tracker
//! # Ok::<(), bittern_tracker::Error>(())
//! ```
#![deny(missing_docs)]

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

pub use client::{announce, scrape};
pub use error::{Error, Result};
pub use schedule::{Schedule, ScheduleConfig};
pub use session::{
    SessionAnnouncer, SessionConfig, SessionHandle, StatsSource, Stopping, TorrentKey, TrackerEvent,
};
pub use tiers::Tiers;
pub use types::{
    AnnounceEvent, AnnounceParams, AnnounceResponse, AnnouncerStatus, ClientConfig, ScrapeStats,
    TrackerStatus, TransferStats,
};
