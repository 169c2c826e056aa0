//! Engine errors: [`Error`] ends a torrent or the session, [`PeerError`]
//! ends one connection and nothing else.

use std::io;
use std::net::SocketAddr;

/// A failure that ends a torrent or the session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A torrent with this info hash is already in the session.
    #[error("torrent {0} is already in the session")]
    DuplicateTorrent(String),
    /// The torrent's files could not be laid out or opened.
    #[error(transparent)]
    Storage(#[from] bittern_storage::Error),
    /// A thread could not be started.
    #[error("cannot start a thread")]
    Spawn(#[source] io::Error),
    /// The session or torrent has already shut down.
    #[error("the torrent or session has shut down")]
    Closed,
    /// The torrent's options do not fit its metainfo.
    #[error("invalid torrent options: {0}")]
    InvalidOptions(&'static str),
}

/// Why one peer connection ended. Recoverable: the torrent goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// Connecting, reading or writing failed.
    #[error("io error")]
    Io(#[from] io::Error),
    /// The peer sent bytes that break the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The peer's handshake was for another torrent.
    #[error("handshake for another torrent")]
    WrongInfoHash,
    /// We connected to ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// We already have a connection to this peer id.
    #[error("duplicate connection")]
    Duplicate,
    /// The peer said nothing for too long.
    #[error("idle timeout")]
    Idle,
    /// The peer could not keep up with our commands, or flooded us.
    #[error("peer too slow or flooding")]
    Overloaded,
    /// The peer is banned for sending bad data.
    #[error("banned for bad data")]
    Banned,
    /// Writing a received block to disk, or reading one to upload, failed.
    #[error("storage error")]
    Storage(#[source] bittern_storage::Error),
    /// The controller asked the connection to close.
    #[error("closed by us")]
    Closed,
}

impl From<bittern_wire::MessageError> for PeerError {
    fn from(e: bittern_wire::MessageError) -> Self {
        PeerError::Protocol(e.to_string())
    }
}
