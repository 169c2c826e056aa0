//! The crate's error type.

use std::io;

/// What can go wrong talking to a tracker.
///
/// Every variant is a distinct cause so that the announcer (and the engine)
/// can tell a tracker that said "no" ([`Error::Failure`]) from one that is
/// unreachable ([`Error::Connect`], [`Error::Timeout`]) or hostile
/// ([`Error::TooLarge`], [`Error::Bencode`], [`Error::TransactionMismatch`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL's scheme is not `http`, `https` or `udp`.
    #[error("unsupported tracker url scheme: {url}")]
    UnsupportedScheme {
        /// The offending URL.
        url: String,
    },
    /// The URL could not be parsed or has no host or port.
    #[error("invalid tracker url {url}: {reason}")]
    BadUrl {
        /// The offending URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `https://` tracker, but this build has no TLS support.
    #[error("https trackers are not supported by this build: {url}")]
    TlsUnsupported {
        /// The offending URL.
        url: String,
    },
    /// The host name did not resolve to any address.
    #[error("could not resolve tracker host {host}")]
    Resolve {
        /// The host name.
        host: String,
    },
    /// The tracker did not answer in time (after every retransmission for UDP).
    #[error("tracker timed out")]
    Timeout,
    /// The connection was refused or could not be established.
    #[error("could not connect to tracker")]
    Connect,
    /// The HTTP tracker answered with a non-success status code.
    #[error("tracker answered http status {status}")]
    HttpStatus {
        /// The HTTP status code.
        status: u16,
    },
    /// The response was larger than [`ClientConfig::max_response_size`](crate::ClientConfig).
    #[error("tracker response larger than {limit} bytes")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
    /// The response body is not valid bencode.
    #[error("tracker response is not valid bencode")]
    Bencode(#[source] bittern_wire::bencode::Error),
    /// The tracker refused the request and said why (`failure reason`).
    #[error("tracker failure: {0}")]
    Failure(String),
    /// The response is well-formed but does not have the expected shape.
    #[error("malformed tracker response: {0}")]
    BadResponse(&'static str),
    /// The UDP tracker answered with its error action.
    #[error("udp tracker error: {message}")]
    Udp {
        /// The tracker's message.
        message: String,
    },
    /// The UDP tracker only answered with packets for another transaction.
    #[error("udp tracker answered with the wrong transaction id")]
    TransactionMismatch,
    /// Any other HTTP client error.
    #[error("http error")]
    Http(#[source] Box<ureq::Error>),
    /// A socket error.
    #[error("tracker i/o error")]
    Io(#[from] io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True for errors that mean "the tracker could not be reached or did
    /// not answer" rather than "the tracker answered something".
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Timeout | Error::Connect | Error::Resolve { .. } | Error::Io(_)
        )
    }
}
