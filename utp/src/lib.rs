//! uTP — the Micro Transport Protocol of BEP 29 — with LEDBAT congestion
//! control (RFC 6817), presented as blocking `Read + Write` streams for
//! bittern's thread-per-peer design. Depends on no other bittern crate.
//!
//! # Layers
//!
//! - [`packet`]: the sans-IO codec. [`Packet::decode`] never panics; the
//!   encoder writes selective ACKs (extension 1) only — never extension 3,
//!   which libutp treats as fatal. [`looks_like_utp`] classifies datagrams
//!   on a shared socket.
//! - [`ledbat`]: RTT/RTO estimation and the LEDBAT window (100 ms target,
//!   ten one-minute base-delay buckets, clock-drift correction).
//! - [`conn`]: one connection as a pure state machine ([`Connection`]): time
//!   is an argument, datagrams to send are pulled out. Handshake and ids,
//!   wrap-aware sequence numbers, retransmission, fast retransmit (3 dup ACKs
//!   or 3 later packets selectively acked), deferred ACKs, Nagle, zero-window
//!   probe, keep-alive and timeouts. A send the socket refused
//!   ([`Connection::undo_transmit`]) is not counted as loss.
//! - [`Multiplexer`]: every connection on one UDP socket, keyed by
//!   `(peer, connection id)`. It never reads the socket: the owner of the
//!   socket hands it datagrams. A `utp-timer` thread runs the timers.
//! - [`UtpStream`]: a connection as a `TcpStream`-like blocking object
//!   (timeouts, `try_clone`, `shutdown`). [`UtpSocket`] owns a UDP socket and
//!   a `recvmmsg` reader thread for standalone use.
//! - [`icmp`]: ICMP errors on the shared socket (`IP_RECVERR`): a connect
//!   to a port nothing listens on is refused at once (the reader drains
//!   the error queue into [`Multiplexer::handle_unreachable`]) instead of
//!   waiting out its timeout. A reader of its own should do the same.
//!
//! # Sharing the socket with the DHT (the seam for the session)
//!
//! One UDP socket per address family carries uTP, the DHT (KRPC packets
//! start with `d`) and UDP tracker replies. The session's UDP thread reads
//! it, offers each datagram to the multiplexer, and dispatches the rest;
//! replies leave from the same socket, so peers see one port:
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::sync::Arc;
//! use bittern_utp::{MuxConfig, Multiplexer};
//!
//! # fn main() -> std::io::Result<()> {
//! let udp = Arc::new(UdpSocket::bind("127.0.0.1:6881")?);
//! bittern_utp::tune_socket(&udp, bittern_utp::SOCKET_BUFFER); // 4 MiB buffers
//! let mux = Multiplexer::new(udp.clone(), Some(udp.local_addr()?), MuxConfig::default())?;
//! let peers = mux.clone(); // give clones to whoever connects and accepts
//! std::thread::spawn(move || {
//!     while let Ok(stream) = peers.accept() {
//!         let _ = stream; // hand to a peer thread: it is Read + Write
//!     }
//! });
//! let mut buf = vec![0u8; 4096];
//! loop {
//!     let (n, from) = udp.recv_from(&mut buf)?; // better: recvmmsg batches
//!     if !mux.handle_datagram(from, &buf[..n]) {
//!         // not uTP: buf[0] == b'd' is the DHT, otherwise a tracker reply
//!     }
//!     mux.flush(); // once per drained batch: the deferred ACKs
//!     // With bittern_utp::icmp::enable(&udp) on: when a read fails, and
//!     // every 250 ms (icmp::DRAIN_EVERY), icmp::drain(&udp, ...) into
//!     // mux.handle_unreachable.
//! }
//! # }
//! ```
//!
//! # Standalone
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! use bittern_utp::{UtpSocket, UtpStream};
//!
//! # fn main() -> std::io::Result<()> {
//! let listener = UtpSocket::bind("127.0.0.1:0")?;
//! let addr = listener.local_addr();
//! let mut client = UtpStream::connect(addr, Duration::from_secs(5))?;
//! client.write_all(b"hello")?;
//! let mut server = listener.accept()?;
//! let mut got = [0u8; 5];
//! server.read_exact(&mut got)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Not yet
//!
//! No MTU discovery (payloads stay ≤ 1452 bytes, 1432 over IPv6, as
//! libtorrent's floor on Ethernet); no `tc netem` (the shaped-link tests
//! use `tbf` and nftables drops). Sends use UDP GSO and [`UtpSocket`]
//! receives with UDP GRO where the kernel takes them (on loopback a
//! 64 KB GSO send then reaches the reader as one buffer).
//! The engine uses this crate through the seam above (`engine/src/udp.rs`):
//! one [`UtpSocket`] per session on the listen port, the DHT as its
//! [`OtherHandler`].

#![deny(missing_docs)]

pub mod conn;
pub mod icmp;
pub mod ledbat;
mod mux;
pub mod packet;
mod socket;
mod stream;

pub use conn::{Config, Connection, Failure};
pub use mux::{Multiplexer, MuxConfig, Transmit};
pub use packet::{looks_like_utp, Packet, PacketError, PacketType};
pub use socket::{tune_socket, OtherHandler, SocketBuffers, UtpSocket, SOCKET_BUFFER};
pub use stream::UtpStream;
