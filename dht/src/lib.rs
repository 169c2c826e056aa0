//! bittern-dht: a Mainline DHT node (BEP 5).
//!
//! The crate is split into a pure core and a thin IO layer:
//!
//! - [`krpc`]: the KRPC codec — `ping`, `find_node`, `get_peers`,
//!   `announce_peer` (with `implied_port`), responses and errors; compact
//!   node info for IPv4 (26 bytes) and IPv6 (`nodes6`, 38 bytes), compact
//!   peers. Malformed input is an error, never a panic.
//! - [`NodeId`] and the XOR metric; [`RoutingTable`] (k = 8 buckets split
//!   on our own range, good/questionable/bad states, replacement caches);
//!   [`Tokens`] (rotating secret every 5 minutes, previous still accepted,
//!   bound to the requester's IP); [`PeerStore`] (bounded per info hash and
//!   in total, 30-minute expiry).
//! - [`Lookup`]: iterative find_node/get_peers/announce with α = 3 queries
//!   in flight; a query unanswered after `slow_after` no longer holds the
//!   lookup up; the lookup converges on the k closest nodes that answered.
//! - [`Node`]: all of the above behind a sans-IO interface:
//!   `handle_datagram(from, bytes, now)`, `tick(now)`, `poll_transmit()`,
//!   `poll_event()`. Time is an argument, so tests run hundreds of nodes in
//!   one process, deterministically ([`sim`], `tests/sim.rs`, `examples/sim.rs`).
//! - [`Dht`]: a `Node` with real time and a timer thread, sending through a
//!   [`SendTo`] (an `Arc<UdpSocket>` shared with uTP works as is), with a
//!   blocking API: [`Dht::bootstrap`], [`Dht::get_peers`], [`Dht::announce`].
//!   [`Runner`] owns a socket and a reader thread for standalone use. See
//!   the [`socket`] module for the shared-socket seam.
//!
//! Bootstrap nodes are always given explicitly. [`PUBLIC_ROUTERS`] lists
//! the well-known routers as a user-facing default; nothing in this crate
//! contacts them by itself, and no test uses them.
//!
//! # Example
//!
//! ```no_run
//! use bittern_dht::{Config, Runner};
//! use bittern_wire::InfoHash;
//!
//! # fn main() -> Result<(), bittern_dht::Error> {
//! let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default())?;
//! let dht = runner.dht();
//! dht.bootstrap(&["127.0.0.1:6881".parse().unwrap()])?;
//! let ih = InfoHash([0xab; 20]);
//! dht.announce(ih, Some(6881))?;
//! for peer in dht.get_peers(ih)? {
//!     println!("{peer}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Not done yet
//!
//! - No persisted routing table or node id (a restart needs bootstrap nodes).
//! - No BEP 42 secure node ids (neither for our id nor enforced on others),
//!   no BEP 51 `sample_infohashes` (answered with error 204), no BEP 44.
//! - IPv6: the codec reads and writes `nodes6` and IPv6 peers, and a
//!   [`Runner`] can bind `[::1]`, but there is no dual-stack node (one node
//!   per socket, each with its own table); untested against other clients.
//! - No per-source rate limits yet; memory is bounded (table, replacement
//!   caches, peer store, transactions, lookup candidates) and replies are
//!   never much larger than the query except get_peers (at most 8 nodes and
//!   50 peers, as in other clients).
//! - The 10,000-node sub-second benchmark of issue 21 is not done; the
//!   simulation test runs 500 nodes with RTTs of 20-400 ms.
//! - Engine integration (announces per torrent, the `port` message, CLI
//!   flags) comes later.
#![deny(missing_docs)]

mod id;
pub mod krpc;
mod lookup;
mod node;
mod peers;
mod routing;
pub mod sim;
pub mod socket;
mod token;

pub use id::{Distance, NodeId};
pub use krpc::{Body, DecodeError, Message, NodeInfo, Query, QueryKind, Response, Want};
pub use lookup::{Lookup, LookupKind, LookupParams, LookupResult};
pub use node::{Config, Event, LookupId, Node, Stats, Transmit, VERSION};
pub use peers::{PeerLimits, PeerStore};
pub use routing::{Entry, Inserted, NodeState, RoutingTable, K};
pub use socket::{is_krpc, Dht, Error, Runner, SendTo};
pub use token::Tokens;

/// The public bootstrap routers, for users who have no node to start from.
/// A user-facing default only: the crate never contacts them unless they
/// are passed to [`Dht::bootstrap`], and tests never do.
pub const PUBLIC_ROUTERS: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];
