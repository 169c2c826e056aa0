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
//! clone), so other nodes see one port for TCP, uTP and the DHT.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bittern_utp::{MuxConfig, UtpSocket};
use crossbeam_channel::Sender;

use crate::dht::Datagram;

/// Where the reader thread sends KRPC datagrams (set once the DHT runs).
pub(crate) type DhtSlot = Arc<OnceLock<Sender<Datagram>>>;

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
fn dispatch(slot: &OnceLock<Sender<Datagram>>, from: SocketAddr, data: &[u8]) {
    if bittern_dht::is_krpc(data) && data.len() <= bittern_dht::socket::MAX_PACKET {
        if let Some(tx) = slot.get() {
            let _ = tx.try_send((from, data.to_vec()));
        }
    }
}
