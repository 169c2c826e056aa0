//! Engine errors: [`Error`] fails a call on the session or a torrent,
//! [`TorrentError`] is why a running torrent stopped, [`PeerError`] (with
//! its [`Violation`]) ends one connection and nothing else.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

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
    /// The peer sent bytes that break the protocol; which rule it broke.
    #[error("protocol violation: {0}")]
    Protocol(Violation),
    /// The peer's handshake was for another torrent.
    #[error("handshake for another torrent")]
    WrongInfoHash,
    /// The protocol encryption (MSE) handshake failed.
    #[error("encryption handshake failed: {0}")]
    Mse(#[source] bittern_wire::mse::HandshakeIoError),
    /// We connected to ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// The peer said nothing for too long.
    #[error("idle timeout")]
    Idle,
    /// The peer could not keep up with our commands, or flooded us.
    #[error("peer too slow or flooding")]
    Overloaded,
    /// Writing a received block to disk, or reading one to upload, failed.
    #[error("storage error")]
    Storage(#[source] bittern_storage::Error),
    /// The connection was closed on our side: the controller asked, the
    /// other half of the connection ended, or storage failed.
    #[error("closed by us")]
    Closed,
    /// The connection's thread panicked (a bug on our side, not the peer's).
    #[error("peer thread panicked")]
    Panicked,
}

/// A rule of the peer protocol that a peer broke ([`PeerError::Protocol`]).
/// Each ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The 68-byte handshake did not decode.
    #[error("bad handshake: {0}")]
    Handshake(bittern_wire::HandshakeError),
    /// A frame did not decode (too long, unknown id, wrong payload size).
    #[error("{0}")]
    Message(bittern_wire::MessageError),
    /// A `bitfield` of the wrong length or with spare bits set.
    #[error("bad bitfield: {0}")]
    Bitfield(bittern_wire::BitfieldError),
    /// A `have` for a piece past the end of the torrent.
    #[error("have {0} out of range")]
    HaveOutOfRange(u32),
    /// A `have all` or `have none` without the fast extension (BEP 6).
    #[error("have all/none without fast")]
    HaveAllNoneWithoutFast,
    /// A piece set (`bitfield`, `have all`, `have none`) that was not the
    /// first message.
    #[error("piece set after other messages")]
    LatePieceSet,
    /// A block of another length than we requested.
    #[error("block of the wrong length")]
    BlockLength,
    /// More blocks we never requested (nor cancelled) than we tolerate.
    #[error("too many unrequested blocks")]
    UnrequestedBlocks,
    /// A `reject` without the fast extension (BEP 6).
    #[error("reject without fast extension")]
    RejectWithoutFast,
    /// A request for a piece past the end of the torrent.
    #[error("request for piece {} out of range", .0.index)]
    RequestOutOfRange(bittern_wire::BlockRef),
    /// A request that is empty, larger than 16 KiB, or runs past the end
    /// of its piece.
    #[error("invalid request {0:?}")]
    InvalidRequest(bittern_wire::BlockRef),
    /// An extension handshake (BEP 10) that is not a bencoded dictionary.
    #[error("bad extension handshake: {0}")]
    ExtensionHandshake(bittern_wire::ExtensionError),
    /// A `ut_metadata` message (BEP 9) that does not decode, or metadata
    /// that breaks the exchange (unsolicited, out of range, too large, of
    /// the wrong length, or failing the info hash).
    #[error("bad metadata message: {0}")]
    Metadata(bittern_wire::MetadataError),
    /// The metadata this peer alone sent failed the info hash.
    #[error("metadata failed the info hash")]
    MetadataHash,
    /// A `ut_pex` message (BEP 11) that does not decode.
    #[error("bad ut_pex message: {0}")]
    Pex(bittern_wire::PexError),
    /// A `ut_pex` message listing far more peers than any client sends
    /// (over `bittern_wire::PEX_MAX_DECODED` in a list; 50 is usual).
    #[error("ut_pex flood: {peers} peers in one message")]
    PexFlood {
        /// Entries the message held (added and dropped).
        peers: usize,
    },
    /// `ut_pex` messages again and again sooner than BEP 11's one a minute.
    #[error("ut_pex messages too often")]
    PexTooOften,
    /// A BEP 52 `hashes` answer we did not ask for, or whose hashes do not
    /// prove against the file's `pieces root`.
    #[error("hashes that do not prove against the file's root")]
    BadHashes,
    /// A v2 block (16 KiB) whose SHA-256 is not its leaf in the file's
    /// merkle tree: this peer sent it (BEP 52's per-block proof).
    #[error("block of piece {piece} at {begin} fails its merkle leaf")]
    BadBlock {
        /// The piece.
        piece: u32,
        /// The block's offset in the piece.
        begin: u32,
    },
}

impl From<bittern_wire::MessageError> for PeerError {
    fn from(e: bittern_wire::MessageError) -> Self {
        PeerError::Protocol(Violation::Message(e))
    }
}

/// Why a torrent stopped in [`TorrentState::Error`](crate::TorrentState):
/// what it was doing, and the storage failure that stopped it (the user
/// must act: free space, fix permissions). Cheap to clone; two values are
/// equal when they are the same failure (clones of one value).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TorrentError {
    /// Checking the data on disk at start failed.
    #[error("checking data: {0}")]
    Check(Arc<bittern_storage::Error>),
    /// Creating the selected zero-length files failed.
    #[error("creating empty files: {0}")]
    CreateFiles(Arc<bittern_storage::Error>),
    /// Writing a received block to disk failed.
    #[error("writing to disk: {0}")]
    Write(Arc<bittern_storage::Error>),
    /// Reading a downloaded piece back to verify it failed (other than its
    /// data having gone missing, which only refetches the piece).
    #[error("verifying piece {piece}: {error}")]
    Verify {
        /// The piece being verified.
        piece: usize,
        /// What storage said.
        error: Arc<bittern_storage::Error>,
    },
}

impl TorrentError {
    /// The storage failure behind it (for example to tell a full disk,
    /// [`bittern_storage::Error::DiskFull`], from a refused permission).
    pub fn storage(&self) -> &bittern_storage::Error {
        match self {
            TorrentError::Check(e) | TorrentError::CreateFiles(e) | TorrentError::Write(e) => e,
            TorrentError::Verify { error, .. } => error,
        }
    }
}

impl PartialEq for TorrentError {
    fn eq(&self, other: &Self) -> bool {
        let piece = |e: &TorrentError| match e {
            TorrentError::Verify { piece, .. } => Some(*piece),
            _ => None,
        };
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && piece(self) == piece(other)
            && std::ptr::eq(self.storage(), other.storage())
    }
}

impl Eq for TorrentError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Arc<bittern_storage::Error> {
        Arc::new(bittern_storage::Error::DiskFull {
            path: "/d/a.bin".into(),
        })
    }

    /// The messages users (and the CLI) print are those of the strings
    /// these errors replaced.
    #[test]
    fn torrent_errors_read_as_before() {
        let cases = [
            (TorrentError::Check(full()), "checking data: "),
            (TorrentError::CreateFiles(full()), "creating empty files: "),
            (TorrentError::Write(full()), "writing to disk: "),
            (
                TorrentError::Verify {
                    piece: 7,
                    error: full(),
                },
                "verifying piece 7: ",
            ),
        ];
        for (e, what) in cases {
            assert_eq!(
                e.to_string(),
                format!("{what}disk full while writing /d/a.bin")
            );
            assert!(matches!(
                e.storage(),
                bittern_storage::Error::DiskFull { .. }
            ));
        }
    }

    /// Equal means the same failure: clones are equal, a new failure with
    /// the same text is not.
    #[test]
    fn torrent_errors_are_equal_only_to_their_clones() {
        let e = TorrentError::Write(full());
        assert_eq!(e, e.clone());
        assert_ne!(e, TorrentError::Write(full()));
        let shared = full();
        assert_ne!(
            TorrentError::Write(shared.clone()),
            TorrentError::Check(shared)
        );
    }

    #[test]
    fn violations_name_the_rule() {
        let e = PeerError::Protocol(Violation::HaveOutOfRange(12));
        assert_eq!(e.to_string(), "protocol violation: have 12 out of range");
        let b = bittern_wire::BlockRef {
            index: 9,
            begin: 0,
            length: 16384,
        };
        assert_eq!(
            Violation::RequestOutOfRange(b).to_string(),
            "request for piece 9 out of range"
        );
        let e: PeerError = bittern_wire::MessageError::UnknownId(99).into();
        assert!(matches!(
            e,
            PeerError::Protocol(Violation::Message(bittern_wire::MessageError::UnknownId(
                99
            )))
        ));
    }
}
