//! The session's one UDP socket per listen address: the listen port's UDP
//! twin, carrying uTP and the DHT (and later UDP tracker replies), read by
//! one thread.
//!
//! The socket is a [`bittern_utp::UtpSocket`]: it binds, asks for 4 MiB
//! buffers ([`bittern_utp::tune_socket`]) and runs one reader thread
//! (`utp-net …`) that receives in `recvmmsg` batches, offers each datagram
//! to the uTP multiplexer and hands the others to [`dispatch`]: a KRPC
//! packet (first byte `d`) goes to the DHT node, anything else is dropped.
//! The DHT answers from the same socket (an `Arc<UdpSocket>` clone), so
//! other nodes see one port for TCP, uTP and the DHT.
//!
//! The handler holds the DHT only weakly: dropping the session's DHT stops
//! it at once, whatever the reader thread is doing.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use bittern_dht::Dht;
use bittern_utp::{MuxConfig, UtpSocket};

/// Where the reader thread sends KRPC datagrams (set once the DHT runs).
pub(crate) type DhtSlot = Arc<OnceLock<Weak<Dht>>>;

/// Binds the UDP socket on `addr` (the TCP listener's address and port).
/// `accept_utp`: whether incoming uTP connections are accepted at all.
pub(crate) fn bind(addr: SocketAddr, accept_utp: bool) -> std::io::Result<(UtpSocket, DhtSlot)> {
    let slot: DhtSlot = Arc::default();
    let cfg = MuxConfig {
        accept_incoming: accept_utp,
        ..MuxConfig::default()
    };
    let handler_slot = slot.clone();
    let socket = UtpSocket::bind_with(
        addr,
        cfg,
        Box::new(move |from, data| dispatch(&handler_slot, from, data)),
    )?;
    Ok((socket, slot))
}

/// A datagram the uTP multiplexer did not take.
fn dispatch(slot: &OnceLock<Weak<Dht>>, from: SocketAddr, data: &[u8]) {
    if bittern_dht::is_krpc(data) && data.len() <= bittern_dht::socket::MAX_PACKET {
        if let Some(dht) = slot.get().and_then(Weak::upgrade) {
            dht.handle_datagram(from, data, Instant::now());
        }
    }
}
