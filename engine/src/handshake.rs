//! Setting a connection up, both ways: protocol encryption (MSE/PE) when
//! the [`Encryption`] policy asks for it, then the 68-byte BitTorrent
//! handshake, each stage bounded by one deadline.
//!
//! Incoming ([`accept`]): one listen port serves every torrent and both
//! kinds of peer. The first bytes tell a plain handshake
//! (`\x13BitTorrent protocol`) from an MSE public key
//! ([`bittern_wire::mse::detect`]); an MSE peer names its torrent only by
//! `HASH('req2', info_hash) xor HASH('req3', S)`, looked up in the
//! session's table of every torrent's obfuscated hash.
//!
//! Outgoing ([`dial`]): `Prefer` runs MSE offering RC4 and plaintext (the
//! peer picks) and,
//! when that fails, dials once more in the clear on a fresh connection
//! with fresh state (a peer without MSE closes on our public key);
//! `Require` offers RC4 only and never falls back; `Disable` dials in the
//! clear.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use bittern_wire::mse::{
    self, Crypto, CryptoSet, Detected, HandshakeIoError, Initiator, InitiatorConfig, Responder,
    ResponderConfig,
};
use bittern_wire::{Handshake, InfoHash};
use log::debug;

use crate::config::Encryption;
use crate::error::{PeerError, Violation};
use crate::transport::{read_exact_by, PeerStream, Socket};

/// Why an incoming connection was dropped before it reached a torrent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcceptError {
    /// Reading or writing failed, or the deadline passed.
    #[error("io error during the handshake")]
    Io(#[from] io::Error),
    /// The MSE handshake failed (bad key, unknown torrent, no common
    /// method, a stall past the deadline...).
    #[error("encryption handshake failed: {0}")]
    Mse(#[source] HandshakeIoError),
    /// The BitTorrent handshake did not decode.
    #[error("bad handshake: {0}")]
    Handshake(bittern_wire::HandshakeError),
    /// A plain handshake while encryption is required.
    #[error("plaintext handshake refused: encryption is required")]
    PlaintextRefused,
    /// An MSE handshake while encryption is disabled.
    #[error("encrypted handshake refused: encryption is disabled")]
    EncryptedRefused,
    /// The handshake inside MSE named another torrent than MSE did.
    #[error("handshake names another torrent than the encryption handshake")]
    InfoHashMismatch,
}

/// The MSE methods we offer when dialling under `policy`.
fn provide(policy: Encryption) -> CryptoSet {
    match policy {
        Encryption::Require => CryptoSet::RC4,
        _ => CryptoSet::BOTH,
    }
}

/// What we accept when answering MSE under `policy`. `Prefer` picks
/// plaintext when the peer offers both, as libtorrent does by default: the
/// handshake is obfuscated and uploads keep the zero-copy path (a peer
/// that wants RC4, as Transmission and qBittorrent do, offers only RC4).
fn responder_config(policy: Encryption) -> ResponderConfig {
    match policy {
        Encryption::Require => ResponderConfig {
            allowed: CryptoSet::RC4,
            prefer: Crypto::Rc4,
        },
        _ => ResponderConfig {
            allowed: CryptoSet::BOTH,
            prefer: Crypto::Plaintext,
        },
    }
}

/// A socket whose every read and write is bounded by what is left until
/// `deadline` (a read timeout alone restarts with every byte a trickling
/// peer sends).
struct DeadlineIo<'a> {
    socket: &'a mut Socket,
    deadline: Instant,
}

impl DeadlineIo<'_> {
    fn left(&self) -> io::Result<std::time::Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake deadline passed",
            ));
        }
        Ok(left)
    }
}

impl Read for DeadlineIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.socket.set_read_timeout(Some(left))?;
        self.socket.read(buf)
    }
}

impl Write for DeadlineIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.socket.set_write_timeout(Some(left))?;
        self.socket.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

/// Runs the listen side of a new connection until its BitTorrent
/// handshake is read: plain or MSE, as `policy` allows. `lookup` finds a
/// torrent by `HASH('req2', info_hash)`. Nothing is sent before the peer
/// proved it is an MSE peer (or a plain handshake came in).
pub(crate) fn accept(
    mut socket: Socket,
    policy: Encryption,
    lookup: impl Fn(&[u8; 20]) -> Option<InfoHash>,
    deadline: Instant,
) -> Result<(PeerStream, Handshake), AcceptError> {
    // Enough bytes to tell: the 20-byte protocol string, or the first
    // byte that differs from it.
    let mut first = [0u8; 20];
    let mut n = 0;
    let kind = loop {
        match mse::detect(&first[..n]) {
            Detected::NeedMore => {}
            kind => break kind,
        }
        let mut io = DeadlineIo {
            socket: &mut socket,
            deadline,
        };
        match io.read(&mut first[n..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    };
    match kind {
        Detected::Plaintext => {
            if policy == Encryption::Require {
                return Err(AcceptError::PlaintextRefused);
            }
            let mut buf = [0u8; Handshake::LEN];
            buf[..n].copy_from_slice(&first[..n]);
            let mut stream = PeerStream::plain(socket);
            read_exact_by(&mut stream, &mut buf[n..], deadline)?;
            let hs = Handshake::decode(&buf).map_err(AcceptError::Handshake)?;
            Ok((stream, hs))
        }
        _ => {
            if policy == Encryption::Disable {
                return Err(AcceptError::EncryptedRefused);
            }
            let mut machine = Responder::new(lookup, responder_config(policy));
            let mut io = DeadlineIo {
                socket: &mut socket,
                deadline,
            };
            let est = mse::handshake(&mut io, &mut machine, &first[..n], Some(deadline))
                .map_err(AcceptError::Mse)?;
            let skey = est.info_hash;
            let mut stream = PeerStream::encrypted(socket, est);
            let mut buf = [0u8; Handshake::LEN];
            read_exact_by(&mut stream, &mut buf, deadline)?;
            let hs = Handshake::decode(&buf).map_err(AcceptError::Handshake)?;
            if hs.info_hash != skey {
                return Err(AcceptError::InfoHashMismatch);
            }
            Ok((stream, hs))
        }
    }
}

/// Dials `addr` and exchanges BitTorrent handshakes for `info_hash`, with
/// MSE as `policy` says. `attach` is given every socket as soon as it is
/// connected (so the controller can cut a connection mid-handshake); each
/// attempt has `timeout` to connect and as long again for its handshakes.
pub(crate) fn dial(
    addr: SocketAddr,
    ours: &Handshake,
    policy: Encryption,
    timeout: std::time::Duration,
    transport: &dyn Fn(SocketAddr, std::time::Duration) -> Result<Socket, PeerError>,
    attach: &dyn Fn(&Socket) -> Result<(), PeerError>,
) -> Result<(PeerStream, Handshake), PeerError> {
    let connect = || -> Result<Socket, PeerError> {
        let s = transport(addr, timeout)?;
        attach(&s)?;
        Ok(s)
    };
    match policy {
        Encryption::Disable => dial_plain(connect()?, ours, Instant::now() + timeout),
        Encryption::Require => dial_mse(connect()?, ours, policy, Instant::now() + timeout),
        Encryption::Prefer => match dial_mse(connect()?, ours, policy, Instant::now() + timeout) {
            Err(PeerError::Mse(e)) => {
                debug!("{addr}: encryption handshake failed ({e}), dialling in the clear");
                dial_plain(connect()?, ours, Instant::now() + timeout)
            }
            r => r,
        },
    }
}

/// The plain handshake on a new connection.
fn dial_plain(
    socket: Socket,
    ours: &Handshake,
    deadline: Instant,
) -> Result<(PeerStream, Handshake), PeerError> {
    let mut s = PeerStream::plain(socket);
    s.socket().set_write_timeout(Some(
        deadline.saturating_duration_since(Instant::now()).max(MIN),
    ))?;
    s.send(&mut ours.encode())?;
    let theirs = read_theirs(&mut s, ours, deadline)?;
    Ok((s, theirs))
}

/// Shortest timeout set on a socket (zero means "none" to the OS).
const MIN: std::time::Duration = std::time::Duration::from_millis(1);

/// MSE with our handshake as the initial payload, then theirs.
fn dial_mse(
    mut socket: Socket,
    ours: &Handshake,
    policy: Encryption,
    deadline: Instant,
) -> Result<(PeerStream, Handshake), PeerError> {
    let config = InitiatorConfig {
        provide: provide(policy),
        initial_payload: ours.encode().to_vec(),
    };
    let mut machine = Initiator::new(ours.info_hash, config);
    let mut io = DeadlineIo {
        socket: &mut socket,
        deadline,
    };
    let est = mse::handshake(&mut io, &mut machine, &[], Some(deadline)).map_err(PeerError::Mse)?;
    let mut s = PeerStream::encrypted(socket, est);
    // A peer that accepted MSE but then closes or stalls has no second
    // chance in the clear: it speaks MSE.
    let theirs = read_theirs(&mut s, ours, deadline)?;
    Ok((s, theirs))
}

/// Reads and checks the peer's BitTorrent handshake.
fn read_theirs(
    s: &mut PeerStream,
    ours: &Handshake,
    deadline: Instant,
) -> Result<Handshake, PeerError> {
    let mut buf = [0u8; Handshake::LEN];
    read_exact_by(s, &mut buf, deadline)?;
    let hs = Handshake::decode(&buf).map_err(|e| PeerError::Protocol(Violation::Handshake(e)))?;
    if hs.info_hash != ours.info_hash {
        return Err(PeerError::WrongInfoHash);
    }
    Ok(hs)
}
