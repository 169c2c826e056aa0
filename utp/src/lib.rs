//! uTP (BEP 29) for bittern — work in progress, see the crate README.

pub mod conn;
pub mod ledbat;
pub mod packet;

pub use conn::{Config, Connection, Failure};
pub use packet::{looks_like_utp, Packet, PacketError, PacketType};
