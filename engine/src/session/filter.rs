//! The session's guard at its door: the IP filter (blocklist) checked
//! before any peer is dialled or an incoming connection read, and the
//! record of the last incoming peer (what a UI's "is my port open?" can
//! be answered from without asking anyone outside).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use log::debug;

use super::{Session, SessionShared};
use crate::ipfilter::IpFilter;

/// An incoming connection that completed its BitTorrent handshake for one
/// of our torrents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    /// When its handshake completed.
    pub at: Instant,
    /// Where it came from.
    pub from: SocketAddr,
    /// Over uTP (else TCP).
    pub utp: bool,
}

impl SessionShared {
    /// Whether the blocklist refuses `ip`.
    pub(crate) fn blocked(&self, ip: IpAddr) -> bool {
        let filter = self.ip_filter.lock().clone();
        let refused = filter.contains(ip);
        if refused {
            debug!("{ip}: refused by the blocklist");
        }
        refused
    }

    /// Bumped by every [`Session::set_ip_filter`]: controllers recheck
    /// their peers when it moves.
    pub(crate) fn filter_generation(&self) -> u64 {
        self.ip_filter_generation.load(Ordering::Relaxed)
    }

    /// Records an incoming connection routed to a torrent.
    pub(crate) fn note_incoming(&self, from: SocketAddr, utp: bool) {
        *self.last_incoming.lock() = Some(Incoming {
            at: Instant::now(),
            from,
            utp,
        });
    }
}

impl Session {
    /// Replaces the session's IP filter (an empty one blocks nothing).
    /// From now on no peer in it is dialled, whatever found it (trackers,
    /// PEX, the DHT, LSD, a magnet's `x.pe`, [`TorrentHandle::add_peers`]),
    /// and incoming connections from it are closed before their handshake
    /// is read, over TCP and uTP. Connections already up to a blocked
    /// address are closed at their torrent's next tick (within 250 ms).
    ///
    /// [`TorrentHandle::add_peers`]: crate::TorrentHandle::add_peers
    pub fn set_ip_filter(&self, filter: impl Into<Arc<IpFilter>>) {
        *self.shared.ip_filter.lock() = filter.into();
        self.shared
            .ip_filter_generation
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The IP filter in effect.
    pub fn ip_filter(&self) -> Arc<IpFilter> {
        self.shared.ip_filter.lock().clone()
    }

    /// The last incoming connection (TCP or uTP) whose handshake named one
    /// of our torrents: evidence, gathered without sending anything, that
    /// peers can reach our listener. `None` if none came yet.
    pub fn last_incoming(&self) -> Option<Incoming> {
        *self.shared.last_incoming.lock()
    }
}
