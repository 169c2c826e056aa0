//! bittern-engine: the multi-torrent session, peer threads, the piece picker
//! and the choker.
//!
//! A [`Session`] (the mainline MultiTorrent) owns one listening port for all
//! torrents, one [`bittern_storage::FilePool`], global rate limiters and a
//! connection limit. [`Session::add_torrent`] hands a torrent to the
//! session's controller thread and returns a [`TorrentHandle`] for status,
//! peers, events, pause, resume and removal.
//!
//! Threads: one listener thread per listening address (IPv4 and IPv6
//! by default, one port); one controller thread per
//! session running every torrent's [`PiecePicker`], [`Choker`] and peer
//! table, with a deadline heap (an idle torrent has nothing due and costs
//! no wakeups); one thread per peer connection (plus a scoped reader child)
//! that writes received blocks straight into storage; verifier threads
//! that hash completed pieces (`HashPool`), and a rayon pool for startup
//! checks; short-lived persist and stop jobs; one tracker announcer per
//! session (`bittern_tracker::SessionAnnouncer`: a scheduler and a fixed
//! worker pool, running while a torrent has a tracker) and one thread
//! forwarding its peers. Channels between them are bounded, and the
//! controller never blocks on a peer, a disk or a tracker.
//!
//! ```no_run
//! use bittern_engine::{Session, SessionConfig, TorrentOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bytes = std::fs::read("example.torrent")?;
//! let metainfo = bittern_wire::Metainfo::from_bytes(&bytes)?;
//! let session = Session::new(SessionConfig::default())?;
//! let torrent = session.add_torrent(metainfo, "downloads", TorrentOptions::default())?;
//! println!("{:?}", torrent.status().state);
//! # Ok(()) }
//! ```
//!
//! Policy objects ([`PiecePicker`], [`Choker`], [`RateMeasure`],
//! [`RateLimiter`]) are pure logic with time passed in, usable on their own.

pub mod choker;
mod config;
mod dht;
mod error;
mod fasthash;
mod halfopen;
mod handshake;
mod hashpool;
mod inline_hash;
pub mod ipfilter;
mod listener;
pub mod lsd;
mod padding;
mod peer;
pub mod picker;
pub mod rate;
pub mod ratelimit;
mod session;
mod shared;
mod shrink;
mod status;
mod torrent;
mod transport;
mod udp;
mod v2;
pub mod webseed;
mod writeback;

pub use bittern_tracker::{AnnouncerStatus, TrackerStatus};
pub use bittern_utp::Config as UtpConfig;
pub use choker::{ChokeCandidate, Choker, ChokerConfig};
pub use config::{Encryption, SeedGoal, SessionConfig, Timing, TorrentOptions};
pub use dht::DhtSettings;
pub use error::{Error, PeerError, TorrentError, Violation};
pub use ipfilter::IpFilter;
pub use lsd::{Lsd, LsdCommand, LsdConfig, LsdEvent};
pub use picker::{PeerKey, PiecePicker};
pub use rate::RateMeasure;
pub use ratelimit::RateLimiter;
pub use session::{Held, Incoming, Session};
pub use status::{Events, FileStatus, PeerInfo, TorrentEvent, TorrentState, TorrentStatus};
pub use torrent::TorrentHandle;
pub use webseed::{WebSeed, WebSeedConfig, WebSeedError, WebSeedEvent, WebSeeds};
