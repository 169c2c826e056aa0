//! The byte stream under a peer connection: a raw [`Socket`] (TCP or uTP)
//! and, after an MSE handshake, the cipher of each direction.
//!
//! Peer code never touches a `TcpStream` directly. A connection is a
//! [`PeerStream`] while its BitTorrent handshake is exchanged; then
//! [`PeerStream::split`] gives the reader thread a [`PeerReader`] (the
//! decrypting half, holding whatever payload the MSE handshake already
//! read) and the writer a [`PeerWriter`] (the encrypting half). Each half
//! owns its direction's RC4 state, so the two threads never share one.
//!
//! Uploads: a plaintext TCP connection keeps the zero-copy path
//! ([`PeerWriter::zero_copy`] hands out the `TcpStream` for
//! `bittern_storage::send_vectored`). Encrypted or uTP connections upload
//! from buffers the writer owns, which [`PeerWriter::send_parts`] encrypts
//! in place before one vectored write: the encryption costs no copy beyond
//! the read from storage.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bittern_utp::UtpStream;
use bittern_wire::mse::{Cipher, EncryptedReader, Established};

/// A connected socket of either transport, with the `TcpStream` surface
/// the peer code uses.
#[derive(Debug)]
pub(crate) enum Socket {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A uTP (BEP 29) connection.
    #[allow(dead_code)] // dialled and accepted once the session runs uTP
    Utp(UtpStream),
}

impl Socket {
    /// Another handle to the same connection.
    pub(crate) fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Utp(s) => Socket::Utp(s.try_clone()?),
        })
    }

    /// Shuts the connection down; blocked reads and writes on every handle
    /// return at once.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Utp(s) => s.shutdown(how),
        }
    }

    /// The peer's address.
    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Socket::Tcp(s) => s.peer_addr(),
            Socket::Utp(s) => s.peer_addr(),
        }
    }

    /// How long a read blocks; `None` forever.
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(t),
            Socket::Utp(s) => s.set_read_timeout(t),
        }
    }

    /// How long a write blocks; `None` forever.
    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_write_timeout(t),
            Socket::Utp(s) => s.set_write_timeout(t),
        }
    }

    /// `TCP_NODELAY` on TCP; uTP has its own Nagle and nothing to set.
    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_nodelay(on),
            Socket::Utp(_) => Ok(()),
        }
    }

    /// The transport's name for logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Socket::Tcp(_) => "tcp",
            Socket::Utp(_) => "utp",
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Utp(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Utp(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Utp(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Utp(s) => s.flush(),
        }
    }
}

/// A whole connection, before it is split between the reader and the
/// writer: reads decrypt, [`send`](Self::send) encrypts.
#[derive(Debug)]
pub(crate) struct PeerStream {
    /// The socket, wrapped for its receiving direction: payload the MSE
    /// handshake already read (decrypted), then socket bytes through the
    /// cipher.
    inbound: EncryptedReader<Socket>,
    encrypt: Cipher,
}

impl PeerStream {
    /// A connection without MSE: bytes pass through.
    pub(crate) fn plain(socket: Socket) -> PeerStream {
        PeerStream {
            inbound: EncryptedReader::new(socket, Cipher::plaintext(), Vec::new()),
            encrypt: Cipher::plaintext(),
        }
    }

    /// A connection after an MSE handshake: `est`'s ciphers apply from
    /// here on and its payload is read before the socket.
    pub(crate) fn encrypted(socket: Socket, est: Established) -> PeerStream {
        PeerStream {
            inbound: EncryptedReader::new(socket, est.decrypt, est.received),
            encrypt: est.encrypt,
        }
    }

    /// The raw socket (timeouts, address, shutdown).
    pub(crate) fn socket(&self) -> &Socket {
        self.inbound.get_ref()
    }

    /// Whether the stream is RC4-encrypted (either direction).
    pub(crate) fn is_encrypted(&self) -> bool {
        self.encrypt.is_encrypting() || self.inbound.is_decrypting()
    }

    /// Encrypts `data` in place (it is garbage afterwards) and writes it all.
    pub(crate) fn send(&mut self, data: &mut [u8]) -> io::Result<()> {
        self.encrypt.apply(data);
        self.inbound.get_mut().write_all(data)
    }

    /// The reader's half (the socket with its decrypt state) and the
    /// writer's (a clone of the socket).
    pub(crate) fn split(self) -> io::Result<(PeerReader, PeerWriter)> {
        let writer = PeerWriter {
            socket: self.inbound.get_ref().try_clone()?,
            encrypt: self.encrypt,
        };
        Ok((PeerReader(self.inbound), writer))
    }
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inbound.read(buf)
    }
}

/// The receiving half of a connection (owned by the reader thread).
#[derive(Debug)]
pub(crate) struct PeerReader(EncryptedReader<Socket>);

impl Read for PeerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// The sending half of a connection (owned by the writer).
#[derive(Debug)]
pub(crate) struct PeerWriter {
    socket: Socket,
    encrypt: Cipher,
}

impl PeerWriter {
    /// The raw socket (shutdown).
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The TCP socket for zero-copy sends, when nothing has to be done to
    /// the bytes on the way: a plaintext TCP connection.
    pub(crate) fn zero_copy(&mut self) -> Option<&mut TcpStream> {
        match &mut self.socket {
            Socket::Tcp(s) if !self.encrypt.is_encrypting() => Some(s),
            _ => None,
        }
    }

    /// Encrypts `data` in place (it is garbage afterwards) and writes it all.
    pub(crate) fn send(&mut self, data: &mut [u8]) -> io::Result<()> {
        self.encrypt.apply(data);
        self.socket.write_all(data)
    }

    /// Encrypts every part in place, in order (they are garbage
    /// afterwards), and writes them all with as few syscalls as the kernel
    /// allows.
    pub(crate) fn send_parts(&mut self, parts: &mut [&mut [u8]]) -> io::Result<()> {
        if self.encrypt.is_encrypting() {
            for p in parts.iter_mut() {
                self.encrypt.apply(p);
            }
        }
        let parts: Vec<&[u8]> = parts.iter().map(|p| &**p).collect();
        write_all_vectored(&mut self.socket, &parts)
    }
}

/// Writes every byte of `parts` with as few syscalls as the kernel allows.
pub(crate) fn write_all_vectored<W: Write>(stream: &mut W, parts: &[&[u8]]) -> io::Result<()> {
    let mut skip = 0usize; // bytes of `parts` already written
    let total: usize = parts.iter().map(|p| p.len()).sum();
    while skip < total {
        let mut slices = Vec::with_capacity(parts.len());
        let mut s = skip;
        for p in parts {
            if s >= p.len() {
                s -= p.len();
            } else {
                slices.push(IoSlice::new(&p[s..]));
                s = 0;
            }
        }
        match stream.write_vectored(&slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => skip += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `read_exact` that gives up at `deadline`, however the bytes trickle in
/// (a read timeout alone restarts with every byte: a peer sending one byte
/// every few seconds would hold a handshake slot for minutes).
pub(crate) fn read_exact_by(
    stream: &mut PeerStream,
    mut buf: &mut [u8],
    deadline: Instant,
) -> io::Result<()> {
    while !buf.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.socket().set_read_timeout(Some(left))?;
        match stream.read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use bittern_wire::mse::{Crypto, CryptoSet, Initiator, InitiatorConfig, ObfuscatedHashes};
    use bittern_wire::mse::{Responder, ResponderConfig};
    use bittern_wire::InfoHash;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    /// Both ends of an RC4 connection, after a real handshake.
    fn established() -> (Established, Established) {
        let ih = InfoHash([3; 20]);
        let served: ObfuscatedHashes = [ih].into_iter().collect();
        let config = InitiatorConfig {
            provide: CryptoSet::RC4,
            initial_payload: b"hello".to_vec(),
        };
        let mut a = Initiator::new(ih, config);
        let mut b = Responder::new(|h| served.find(h), ResponderConfig::default());
        assert!(b.feed(&a.output()).unwrap().is_none());
        assert!(a.feed(&b.output()).unwrap().is_none());
        let at_b = b.feed(&a.output()).unwrap().unwrap();
        let at_a = a.feed(&b.output()).unwrap().unwrap();
        assert_eq!(at_b.crypto, Crypto::Rc4);
        (at_a, at_b)
    }

    #[test]
    fn plaintext_tcp_passes_bytes_through_and_keeps_zero_copy() {
        let (a, b) = pair();
        let (_, mut w) = PeerStream::plain(Socket::Tcp(a)).split().unwrap();
        assert!(w.zero_copy().is_some());
        let (mut r, _) = PeerStream::plain(Socket::Tcp(b)).split().unwrap();
        let (mut x, mut y) = (*b"abc", *b"defg");
        w.send_parts(&mut [&mut x, &mut y]).unwrap();
        let mut got = [0u8; 7];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcdefg");
    }

    #[test]
    fn encrypted_halves_carry_each_direction_and_the_handshake_payload() {
        let (a, b) = pair();
        let (at_a, at_b) = established();
        let (mut ra, mut wa) = PeerStream::encrypted(Socket::Tcp(a), at_a).split().unwrap();
        let sb = PeerStream::encrypted(Socket::Tcp(b), at_b);
        assert!(sb.is_encrypted());
        let (mut rb, mut wb) = sb.split().unwrap();
        assert!(wa.zero_copy().is_none(), "rc4 cannot send from maps");
        // B first reads the initial payload the handshake carried.
        let mut hello = [0u8; 5];
        rb.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"hello");
        // Many sends: the keystream stays in step across calls and parts.
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            for c in sent.chunks(7_777) {
                let mut c = c.to_vec();
                let third = c.len() / 3;
                let (x, y) = c.split_at_mut(third);
                wa.send_parts(&mut [x, y]).unwrap();
            }
        });
        let mut got = vec![0u8; data.len()];
        rb.read_exact(&mut got).unwrap();
        t.join().unwrap();
        assert_eq!(got, data);
        // And back.
        let mut msg = *b"the other way";
        wb.send(&mut msg).unwrap();
        let mut got = [0u8; 13];
        ra.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"the other way");
    }

    #[test]
    fn encrypted_bytes_on_the_wire_are_not_the_plaintext() {
        let (a, mut b) = pair();
        let (at_a, _) = established();
        let (_, mut w) = PeerStream::encrypted(Socket::Tcp(a), at_a).split().unwrap();
        let mut msg = [0x55u8; 64];
        w.send(&mut msg).unwrap();
        let mut raw = [0u8; 64];
        b.read_exact(&mut raw).unwrap();
        assert_ne!(raw, [0x55u8; 64]);
    }

    #[test]
    fn read_exact_by_ends_at_the_deadline() {
        let (a, _b) = pair();
        let mut s = PeerStream::plain(Socket::Tcp(a));
        let t = Instant::now();
        let mut buf = [0u8; 4];
        let e = read_exact_by(&mut s, &mut buf, t + Duration::from_millis(200)).unwrap_err();
        assert!(matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ));
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
