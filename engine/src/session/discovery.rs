//! Local Service Discovery (BEP 14) as a peer source of the session: one
//! [`Lsd`] for every torrent, its peers routed by info hash into the same
//! bounded peer-source queue as tracker peers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crossbeam_channel::{bounded, Sender, TrySendError};
use log::{debug, info, warn};

use super::Registry;
use crate::lsd::{Lsd, LsdConfig, LsdEvent};
use crate::torrent::TorrentId;

/// LSD events waiting for the forwarding thread.
const LSD_EVENTS: usize = 256;

/// Starts LSD on the listen address (`config.interface` unless that is
/// unspecified and we listen on one IPv4 address) announcing `port`, and
/// the thread that hands its peers to their torrents. When the session
/// also listens on IPv6 (`listen.1`) and `config.interface_v6` is not set,
/// the IPv6 group is joined too: on `lo` for a loopback address, else on
/// the system's default multicast interface. `None` (logged) when the
/// IPv4 socket cannot join its group, e.g. no multicast route: the session
/// runs without LSD.
pub(crate) fn spawn_lsd(
    config: &LsdConfig,
    listen: (SocketAddr, Option<SocketAddr>),
    registry: Registry,
    sources: Sender<(TorrentId, Vec<SocketAddr>)>,
) -> Option<Lsd> {
    let (listen, listen_v6) = listen;
    let mut config = config.clone();
    config.listen_port = listen.port();
    if config.interface.is_unspecified() {
        if let IpAddr::V4(ip) = listen.ip() {
            config.interface = ip;
        }
    }
    if config.interface_v6.is_none() {
        config.interface_v6 = listen_v6.map(|a| {
            if a.ip().is_loopback() {
                loopback_index()
            } else {
                0
            }
        });
    }
    let interface: Ipv4Addr = config.interface;
    let (tx, rx) = bounded(LSD_EVENTS);
    let lsd = match Lsd::spawn(config, tx) {
        Ok(l) => l,
        Err(e) => {
            warn!(
                "local service discovery off: cannot join the multicast group on {interface}: {e}"
            );
            return None;
        }
    };
    let started = std::thread::Builder::new()
        .name("bittern-lsd-fwd".into())
        .spawn(move || {
            // Ends when the LSD thread does (its sender is dropped).
            for LsdEvent::Peer { info_hash, addr } in rx {
                let Some(id) = registry.lock().get(&info_hash).copied() else {
                    continue;
                };
                debug!("lsd: {addr} has {}", &info_hash.to_hex()[..8]);
                match sources.try_send((id, vec![addr])) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        debug!("peer source queue full; dropping an lsd peer")
                    }
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        });
    if let Err(e) = started {
        warn!("local service discovery off: {e}");
        return None;
    }
    match (lsd.on_ipv4(), lsd.on_ipv6()) {
        (true, true) => info!("local service discovery on {interface} and [ff15::efc0:988f]"),
        (false, _) => info!("local service discovery on [ff15::efc0:988f] only"),
        (true, false) => info!("local service discovery on {interface}"),
    }
    Some(lsd)
}

/// The index of the loopback interface (`lo`), 1 when it cannot be read.
fn loopback_index() -> u32 {
    // SAFETY: a NUL-terminated name; if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if i == 0 {
        1
    } else {
        i
    }
}
