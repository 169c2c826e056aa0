//! A scripted peer built on `bittern_wire`, for hostile and broken peer tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bittern_wire::{decode_message, Bitfield, Handshake, InfoHash, Message, PeerId};

/// One side of a scripted connection.
pub struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// An owned copy of the messages tests care about.
#[derive(Debug, Clone, PartialEq)]
pub enum Got {
    Request {
        index: u32,
        begin: u32,
        length: u32,
    },
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Bitfield(Vec<u8>),
    Have(u32),
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    /// A BEP 52 hash request.
    HashRequest(bittern_wire::hashes::HashRequest),
    Other(String),
}

/// Accepts the next connection on `listener` that opens with a plain
/// BitTorrent handshake and returns it with that handshake (read timeout
/// 10 s). Like a peer without protocol encryption, it closes a connection
/// that opens with anything else: bittern's default first try is MSE, and
/// its retry in the clear is the next connection.
pub fn accept_plain(listener: &TcpListener) -> std::io::Result<(TcpStream, [u8; 68])> {
    loop {
        let (mut stream, _) = listener.accept()?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut hs = [0u8; 68];
        if stream.read_exact(&mut hs).is_ok() && hs.starts_with(b"\x13BitTorrent protocol") {
            return Ok((stream, hs));
        }
    }
}

impl Wire {
    /// Connects to `addr` and exchanges handshakes.
    pub fn connect(addr: SocketAddr, info_hash: InfoHash) -> std::io::Result<(Wire, Handshake)> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(&Handshake::new(info_hash, PeerId::generate(b"-FK0001-")).encode())?;
        let mut hs = [0u8; 68];
        stream.read_exact(&mut hs)?;
        let theirs = Handshake::decode(&hs).map_err(std::io::Error::other)?;
        Ok((
            Wire {
                stream,
                buf: Vec::new(),
            },
            theirs,
        ))
    }

    /// Accepts one connection on `listener` and exchanges handshakes, as
    /// a peer without protocol encryption (see [`accept_plain`]).
    pub fn accept(listener: &TcpListener, info_hash: InfoHash) -> std::io::Result<Wire> {
        let (mut stream, _) = accept_plain(listener)?;
        stream.write_all(&Handshake::new(info_hash, PeerId::generate(b"-FK0001-")).encode())?;
        Ok(Wire {
            stream,
            buf: Vec::new(),
        })
    }

    /// Wraps a connection whose handshakes are done (or scripted by hand).
    pub fn from_stream(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, m: Message<'_>) -> std::io::Result<()> {
        let mut out = Vec::new();
        m.encode(&mut out);
        self.stream.write_all(&out)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next message, or an error (EOF, timeout, bad frame).
    pub fn recv(&mut self) -> std::io::Result<Got> {
        loop {
            if let Some((m, used)) =
                decode_message(&self.buf, 1 << 20).map_err(std::io::Error::other)?
            {
                let got = match m {
                    Message::Request(b) => Got::Request {
                        index: b.index,
                        begin: b.begin,
                        length: b.length,
                    },
                    Message::Piece { index, begin, data } => Got::Piece {
                        index,
                        begin,
                        data: data.to_vec(),
                    },
                    Message::Bitfield(b) => Got::Bitfield(b.to_vec()),
                    Message::Have(i) => Got::Have(i),
                    Message::Extended { id, payload } => Got::Extended {
                        id,
                        payload: payload.to_vec(),
                    },
                    Message::HashRequest(r) => Got::HashRequest(r),
                    other => Got::Other(format!("{other:?}")),
                };
                self.buf.drain(..used);
                return Ok(got);
            }
            let mut tmp = [0u8; 65536];
            let n = self.stream.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// True when the other side closes the connection within `limit`
    /// (messages it sends meanwhile are discarded).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)));
        let mut tmp = [0u8; 65536];
        while start.elapsed() < limit {
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if bittern_testkit::is_timeout(&e) => {}
                Err(_) => return true,
            }
        }
        false
    }
}

/// A peer that claims every piece and serves `data` (the torrent's bytes
/// end to end), passing each block through `mangle` first. It serves one
/// connection and stops after `max_blocks` blocks (then closes).
pub fn serving_peer(
    info_hash: InfoHash,
    piece_count: usize,
    piece_length: u64,
    data: Vec<u8>,
    max_blocks: usize,
    mangle: fn(&mut [u8]),
) -> (SocketAddr, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let Ok(mut w) = Wire::accept(&listener, info_hash) else {
            return 0;
        };
        let bits = Bitfield::full(piece_count);
        if w.send(Message::Bitfield(bits.as_bytes())).is_err() || w.send(Message::Unchoke).is_err()
        {
            return 0;
        }
        let mut served = 0;
        while served < max_blocks {
            match w.recv() {
                Ok(Got::Request {
                    index,
                    begin,
                    length,
                }) => {
                    let start = index as usize * piece_length as usize + begin as usize;
                    let mut block = data[start..start + length as usize].to_vec();
                    mangle(&mut block);
                    if w.send(Message::Piece {
                        index,
                        begin,
                        data: &block,
                    })
                    .is_err()
                    {
                        break;
                    }
                    served += 1;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = w.stream.shutdown(std::net::Shutdown::Both);
        served
    });
    (addr, t)
}
