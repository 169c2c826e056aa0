//! uTP (BEP 29) for bittern — work in progress, see the crate README.

pub mod conn;
pub mod ledbat;
mod mux;
pub mod packet;
mod socket;
mod stream;

pub use conn::{Config, Connection, Failure};
pub use mux::{Multiplexer, MuxConfig, Transmit};
pub use packet::{looks_like_utp, Packet, PacketError, PacketType};
pub use socket::{OtherHandler, UtpSocket, SOCKET_BUFFER};
pub use stream::UtpStream;
