//! The session's one UDP socket per listen address: the listen port's UDP
//! twin, carrying uTP and the DHT (and later UDP tracker replies), read by
//! one thread.
//!
//! The socket is a [`bittern_utp::UtpSocket`]: it binds, asks for 4 MiB
//! buffers ([`bittern_utp::tune_socket`]) and runs one reader thread
//! (`utp-net …`) that receives in `recvmmsg` batches, offers each datagram
//! to the uTP multiplexer and hands the others to [`dispatch`]: a KRPC
//! packet (first byte `d`) goes to the DHT thread with `try_send` (a full
//! queue drops it; the reader never waits on the DHT), anything else is
//! dropped. The DHT answers from the same socket (an `Arc<UdpSocket>`
//! clone), so other nodes see one port for TCP, uTP and the DHT. The first
//! socket of each address family carries that family's DHT node (BEP 32:
//! an IPv4 and an IPv6 node, each with its own routing table).

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, OnceLock};

use bittern_utp::{MuxConfig, UtpSocket};
use crossbeam_channel::Sender;

use crate::dht::Datagram;

/// Where the reader thread sends KRPC datagrams (set once the DHT runs).
pub(crate) type DhtSlot = Arc<OnceLock<Sender<Datagram>>>;

/// Binds the UDP socket on `addr` (a TCP listener's address and port);
/// KRPC datagrams go to `dht` once a DHT node is set there (the first
/// socket of each address family; the others' slots stay empty and their
/// KRPC datagrams are dropped). From `config`: whether incoming uTP
/// connections are accepted at all (`utp`) and their settings (`utp_conn`).
fn bind(
    addr: SocketAddr,
    config: &crate::config::SessionConfig,
    dht: DhtSlot,
) -> std::io::Result<UtpSocket> {
    let cfg = MuxConfig {
        conn: config.utp_conn,
        accept_incoming: config.utp,
        ..MuxConfig::default()
    };
    let handler: bittern_utp::OtherHandler = Box::new(move |from, data| dispatch(&dht, from, data));
    UtpSocket::bind_with(addr, cfg, handler)
}

/// The listening sockets of a session and, when uTP or the DHT is on,
/// their UDP twins (the same addresses and port), each with the slot its
/// KRPC datagrams go to.
pub(crate) struct Bound {
    /// The TCP listeners (see `listener::bind_all`).
    pub tcp: Vec<TcpListener>,
    /// One UDP socket per listener address that could be bound.
    pub udp: Vec<UtpSocket>,
    /// Where each UDP socket's KRPC datagrams go (same order as `udp`).
    pub dht: Vec<DhtSlot>,
}

/// Binds every listening address (`listener::bind_all`) and, when the
/// session needs UDP, a UDP socket on each. The first address's UDP socket
/// must bind (with port 0, everything is tried again on another port when
/// its UDP twin is taken); another address whose UDP twin cannot be bound
/// (for example `[::]` on a system where it overlaps `0.0.0.0`) is logged
/// and goes without uTP.
///
/// # Errors
/// [`Error::Listen`] as `listener::bind_all`, or for the first UDP socket.
pub(crate) fn bind_all(config: &crate::config::SessionConfig) -> Result<Bound, crate::Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        let tcp = crate::listener::bind_all(config)?;
        if !config.wants_udp() {
            return Ok(Bound {
                tcp,
                udp: Vec::new(),
                dht: Vec::new(),
            });
        }
        let addrs: Vec<SocketAddr> = tcp
            .iter()
            .map(TcpListener::local_addr)
            .collect::<Result<_, _>>()
            .map_err(|source| crate::Error::Listen {
                addr: config.listen,
                source,
            })?;
        let Some(first) = addrs.first().copied() else {
            return Ok(Bound {
                tcp,
                udp: Vec::new(),
                dht: Vec::new(),
            });
        };
        let slot0 = DhtSlot::default();
        let udp0 = match bind(first, config, slot0.clone()) {
            Ok(u) => u,
            Err(e)
                if config.listen.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && tries < 8 =>
            {
                continue
            }
            Err(source) => {
                return Err(crate::Error::Listen {
                    addr: first,
                    source,
                })
            }
        };
        let mut udp = vec![udp0];
        let mut dht = vec![slot0];
        for addr in &addrs[1..] {
            let slot = DhtSlot::default();
            match bind(*addr, config, slot.clone()) {
                Ok(u) => {
                    udp.push(u);
                    dht.push(slot);
                }
                Err(e) => log::warn!("no udp (utp, dht) on {addr}: {e}"),
            }
        }
        return Ok(Bound { tcp, udp, dht });
    }
}

/// KRPC datagrams dropped because the DHT thread's queue was full, and
/// when that was last logged (at most once per 10 s, with the count).
static DHT_QUEUE_DROPS: std::sync::Mutex<(Option<std::time::Instant>, u64)> =
    std::sync::Mutex::new((None, 0));

/// A datagram the uTP multiplexer did not take.
fn dispatch(slot: &OnceLock<Sender<Datagram>>, from: SocketAddr, data: &[u8]) {
    if bittern_dht::is_krpc(data) && data.len() <= bittern_dht::socket::MAX_PACKET {
        if let Some(tx) = slot.get() {
            if let Err(crossbeam_channel::TrySendError::Full(_)) =
                tx.try_send((from, data.to_vec()))
            {
                let Ok(mut d) = DHT_QUEUE_DROPS.lock() else {
                    return;
                };
                d.1 += 1;
                if d.0
                    .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10))
                {
                    log::warn!(
                        "dht: queue full, dropped {} datagram(s) (latest from {from}; \
                         logged at most every 10 s)",
                        d.1
                    );
                    *d = (Some(std::time::Instant::now()), 0);
                }
            }
        }
    }
}
