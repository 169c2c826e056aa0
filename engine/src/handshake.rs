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
//! Outgoing ([`dial`], steps from [`dial_steps`]): `Prefer` runs MSE
//! offering RC4 and plaintext (the peer picks) and, when that fails, dials
//! once more in the clear on a fresh connection with fresh state (a peer
//! without MSE closes on our public key), except for a peer known to be
//! plaintext-only, dialled in the clear first and by MSE only if that
//! fails; `Require` offers RC4 only and never falls back; `Disable` dials
//! in the clear.

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

/// How a dialled connection sets up, in order: each step on a fresh
/// connection, the next only when the one before failed in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialStep {
    /// MSE (RC4 or plaintext as `provide` allows), then the handshake.
    Mse,
    /// The 68-byte handshake in the clear.
    Plain,
}

/// The dial rule (engine/DESIGN.md, "Dialling and encryption"): what we
/// know of the peer's encryption support is `known` (`Some(true)`: its
/// PEX flag `0x01`, its extension handshake's `e`, or an encrypted
/// connection to it; `Some(false)`: our last MSE dial to it failed and
/// the plain one worked, and nothing since said it supports MSE).
pub(crate) fn dial_steps(policy: Encryption, known: Option<bool>) -> &'static [DialStep] {
    match (policy, known) {
        (Encryption::Disable, _) => &[DialStep::Plain],
        (Encryption::Require, _) => &[DialStep::Mse],
        // Known plaintext-only: skip the round trips of a doomed MSE try
        // (and still try MSE if the clear handshake is refused).
        (Encryption::Prefer, Some(false)) => &[DialStep::Plain, DialStep::Mse],
        // Known to support it, or unknown: MSE first, as other clients
        // default, then once in the clear.
        (Encryption::Prefer, _) => &[DialStep::Mse, DialStep::Plain],
    }
}

/// Dials `addr` and exchanges BitTorrent handshakes for `info_hash`, with
/// MSE as `steps` say (see [`dial_steps`]). `attach` is given every socket
/// as soon as it is connected (so the controller can cut a connection
/// mid-handshake); each attempt has `timeout` to connect and as long again
/// for its handshakes. A failed connect ends the dial; a failed handshake
/// moves on to the next step. Returns the stream, their handshake, the
/// step that worked and whether one failed before it. `v2` is a hybrid's
/// truncated v2 hash: a peer may answer our v1 hash and v2 bit with it
/// (BEP 52's upgrade, as bittern's listener does).
pub(crate) fn dial(
    addr: SocketAddr,
    (ours, v2): (&Handshake, Option<InfoHash>),
    policy: Encryption,
    steps: &[DialStep],
    timeout: std::time::Duration,
    transport: &dyn Fn(SocketAddr, std::time::Duration) -> Result<Socket, PeerError>,
    attach: &dyn Fn(&Socket) -> Result<(), PeerError>,
) -> Result<(PeerStream, Handshake, DialStep, bool), PeerError> {
    let connect = || -> Result<Socket, PeerError> {
        let s = transport(addr, timeout)?;
        attach(&s)?;
        Ok(s)
    };
    let mut last = PeerError::Closed;
    for (i, step) in steps.iter().enumerate() {
        let socket = connect()?;
        let deadline = Instant::now() + timeout;
        let r = match step {
            DialStep::Mse => dial_mse(socket, (ours, v2), policy, deadline),
            DialStep::Plain => dial_plain(socket, (ours, v2), deadline),
        };
        match r {
            Ok((s, hs)) => return Ok((s, hs, *step, i > 0)),
            // A peer without MSE closes on our public key; one that wants
            // MSE only closes on a clear handshake.
            Err(e @ (PeerError::Mse(_) | PeerError::Io(_))) if i + 1 < steps.len() => {
                debug!("{addr}: {step:?} handshake failed ({e}), trying the next way");
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The plain handshake on a new connection.
fn dial_plain(
    socket: Socket,
    (ours, v2): (&Handshake, Option<InfoHash>),
    deadline: Instant,
) -> Result<(PeerStream, Handshake), PeerError> {
    let mut s = PeerStream::plain(socket);
    s.socket().set_write_timeout(Some(
        deadline.saturating_duration_since(Instant::now()).max(MIN),
    ))?;
    s.send(&mut ours.encode())?;
    let theirs = read_theirs(&mut s, (ours, v2), deadline)?;
    Ok((s, theirs))
}

/// Shortest timeout set on a socket (zero means "none" to the OS).
const MIN: std::time::Duration = std::time::Duration::from_millis(1);

/// MSE with our handshake as the initial payload, then theirs.
fn dial_mse(
    mut socket: Socket,
    (ours, v2): (&Handshake, Option<InfoHash>),
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
    let theirs = read_theirs(&mut s, (ours, v2), deadline)?;
    Ok((s, theirs))
}

/// Reads and checks the peer's BitTorrent handshake: it names the hash we
/// named or, when we set the v2 bit, the torrent's truncated v2 hash `v2`
/// (the upgrade of a hybrid's connection, BEP 52).
fn read_theirs(
    s: &mut PeerStream,
    (ours, v2): (&Handshake, Option<InfoHash>),
    deadline: Instant,
) -> Result<Handshake, PeerError> {
    let mut buf = [0u8; Handshake::LEN];
    read_exact_by(s, &mut buf, deadline)?;
    let hs = Handshake::decode(&buf).map_err(|e| PeerError::Protocol(Violation::Handshake(e)))?;
    let upgraded = ours.supports_v2() && v2 == Some(hs.info_hash);
    if hs.info_hash != ours.info_hash && !upgraded {
        return Err(PeerError::WrongInfoHash);
    }
    Ok(hs)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use bittern_wire::PeerId;

    use super::*;

    #[test]
    fn dial_rule_mse_first_unless_known_plaintext_only() {
        use DialStep::{Mse, Plain};
        for known in [None, Some(true), Some(false)] {
            assert_eq!(dial_steps(Encryption::Require, known), [Mse]);
            assert_eq!(dial_steps(Encryption::Disable, known), [Plain]);
        }
        assert_eq!(dial_steps(Encryption::Prefer, None), [Mse, Plain]);
        assert_eq!(dial_steps(Encryption::Prefer, Some(true)), [Mse, Plain]);
        assert_eq!(dial_steps(Encryption::Prefer, Some(false)), [Plain, Mse]);
    }

    /// A plaintext-only peer: answers a clear handshake, closes on
    /// anything else. Counts the connections it saw.
    fn plaintext_peer(info_hash: InfoHash) -> (SocketAddr, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 68];
                if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"\x13BitTorrent protocol") {
                    let theirs = Handshake::new(info_hash, PeerId([9; 20]));
                    let _ = s.write_all(&theirs.encode());
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
        (addr, seen)
    }

    #[test]
    fn a_known_plaintext_peer_is_dialled_once_in_the_clear() {
        let info_hash = InfoHash([7; 20]);
        let ours = Handshake::new(info_hash, PeerId([1; 20]));
        let ok = |_: &Socket| Ok(());
        let tcp = |a: SocketAddr, t: Duration| -> Result<Socket, PeerError> {
            Ok(Socket::Tcp(std::net::TcpStream::connect_timeout(&a, t)?))
        };
        let t = Duration::from_secs(5);

        // Unknown: MSE first (refused: the peer closes), then the clear.
        let (addr, seen) = plaintext_peer(info_hash);
        let steps = dial_steps(Encryption::Prefer, None);
        let (s, hs, step, fell_back) =
            dial(addr, (&ours, None), Encryption::Prefer, steps, t, &tcp, &ok).unwrap();
        assert_eq!((step, fell_back), (DialStep::Plain, true));
        assert!(!s.is_encrypted());
        assert_eq!(hs.peer_id, PeerId([9; 20]));
        assert_eq!(seen.load(Ordering::SeqCst), 2);

        // Known plaintext-only: one connection, in the clear.
        let (addr, seen) = plaintext_peer(info_hash);
        let steps = dial_steps(Encryption::Prefer, Some(false));
        let (_, _, step, fell_back) =
            dial(addr, (&ours, None), Encryption::Prefer, steps, t, &tcp, &ok).unwrap();
        assert_eq!((step, fell_back), (DialStep::Plain, false));
        assert_eq!(seen.load(Ordering::SeqCst), 1);

        // Require never falls back.
        let (addr, seen) = plaintext_peer(info_hash);
        let steps = dial_steps(Encryption::Require, Some(false));
        assert!(dial(
            addr,
            (&ours, None),
            Encryption::Require,
            steps,
            t,
            &tcp,
            &ok
        )
        .is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    /// A hybrid dialled by its v1 hash with the v2 bit may be answered with
    /// its truncated v2 hash (BEP 52's upgrade, what bittern's listener
    /// does): taken when we set the bit and it is our v2 hash, refused
    /// otherwise.
    #[test]
    fn an_upgraded_answer_to_a_hybrid_dial_is_taken() {
        let (v1, v2) = (InfoHash([7; 20]), InfoHash([8; 20]));
        let ok = |_: &Socket| Ok(());
        let tcp = |a: SocketAddr, t: Duration| -> Result<Socket, PeerError> {
            Ok(Socket::Tcp(std::net::TcpStream::connect_timeout(&a, t)?))
        };
        let (t, plain) = (Duration::from_secs(5), &[DialStep::Plain][..]);
        let with_bit = Handshake::new(v1, PeerId([1; 20])).with_v2(true);
        let (addr, _) = plaintext_peer(v2);
        let (_, hs, _, _) = dial(
            addr,
            (&with_bit, Some(v2)),
            Encryption::Prefer,
            plain,
            t,
            &tcp,
            &ok,
        )
        .unwrap();
        assert_eq!(hs.info_hash, v2);
        // without the bit, or another torrent's hash: refused
        let without = Handshake::new(v1, PeerId([1; 20]));
        let (addr, _) = plaintext_peer(v2);
        let r = dial(
            addr,
            (&without, Some(v2)),
            Encryption::Prefer,
            plain,
            t,
            &tcp,
            &ok,
        );
        assert!(matches!(r, Err(PeerError::WrongInfoHash)));
        let (addr, _) = plaintext_peer(InfoHash([9; 20]));
        let r = dial(
            addr,
            (&with_bit, Some(v2)),
            Encryption::Prefer,
            plain,
            t,
            &tcp,
            &ok,
        );
        assert!(matches!(r, Err(PeerError::WrongInfoHash)));
    }
}
