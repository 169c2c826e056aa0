//! Blocking adapters: a driver running a handshake state machine over a
//! `Read + Write` stream, and cipher wrappers for the connection after it.

use std::io::{self, Read, Write};
use std::time::Instant;

use thiserror::Error;

use super::{Cipher, Established, Initiator, MseError, Responder};
use crate::id::InfoHash;

/// Most bytes encrypted ahead of the socket per `write` call.
const WRITE_CHUNK: usize = 64 * 1024;

/// The common shape of [`Initiator`] and [`Responder`], for [`handshake`].
pub trait MseHandshake {
    /// Take received bytes; `Some` when the handshake is done.
    ///
    /// # Errors
    /// The handshake failed.
    fn feed(&mut self, data: &[u8]) -> Result<Option<Established>, MseError>;
    /// Bytes to send now.
    fn output(&mut self) -> Vec<u8>;
}

impl MseHandshake for Initiator {
    fn feed(&mut self, data: &[u8]) -> Result<Option<Established>, MseError> {
        Initiator::feed(self, data)
    }
    fn output(&mut self) -> Vec<u8> {
        Initiator::output(self)
    }
}

impl<F: Fn(&[u8; 20]) -> Option<InfoHash>> MseHandshake for Responder<F> {
    fn feed(&mut self, data: &[u8]) -> Result<Option<Established>, MseError> {
        Responder::feed(self, data)
    }
    fn output(&mut self) -> Vec<u8> {
        Responder::output(self)
    }
}

/// Why [`handshake`] failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandshakeIoError {
    /// The peer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] MseError),
    /// Reading or writing the socket failed (a read timeout included).
    #[error("socket error during the mse handshake")]
    Io(#[from] io::Error),
    /// The peer closed the connection mid-handshake.
    #[error("peer closed the connection during the mse handshake")]
    Closed,
    /// The deadline passed before the handshake finished.
    #[error("mse handshake deadline passed")]
    Deadline,
}

/// Run `machine` over `stream` until the handshake finishes: send its
/// output, read, feed, repeat. `prefix` holds bytes already read from
/// the stream (e.g. those [`super::detect`] looked at).
///
/// The stream should have a read timeout; `deadline` is checked after
/// every read, so a peer trickling bytes is cut off at the deadline plus
/// at most one read timeout.
///
/// # Errors
/// [`HandshakeIoError`].
pub fn handshake<S: Read + Write, H: MseHandshake>(
    stream: &mut S,
    machine: &mut H,
    prefix: &[u8],
    deadline: Option<Instant>,
) -> Result<Established, HandshakeIoError> {
    let mut done = if prefix.is_empty() {
        None
    } else {
        machine.feed(prefix)?
    };
    let mut buf = [0u8; 4096];
    loop {
        let out = machine.output();
        if !out.is_empty() {
            stream.write_all(&out)?;
            stream.flush()?;
        }
        if let Some(est) = done {
            return Ok(est);
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err(HandshakeIoError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(HandshakeIoError::Deadline);
        }
        done = machine.feed(&buf[..n])?;
    }
}

/// Decryption state: payload received during the handshake, then the
/// cipher over socket bytes.
#[derive(Debug)]
struct ReadState {
    cipher: Cipher,
    received: Vec<u8>,
    pos: usize,
}

impl ReadState {
    fn read<R: Read>(&mut self, inner: &mut R, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.received.len() {
            let n = buf.len().min(self.received.len() - self.pos);
            buf[..n].copy_from_slice(&self.received[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.received.len() {
                self.received = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        let n = inner.read(buf)?;
        self.cipher.apply(&mut buf[..n]);
        Ok(n)
    }
}

/// Encryption state. Bytes are encrypted into `pending` once (the
/// keystream advances exactly once per byte) and written from there; a
/// short write or a timeout leaves the rest for the next call, so no
/// byte is lost or encrypted twice.
#[derive(Debug)]
struct WriteState {
    cipher: Cipher,
    /// Encrypted bytes not yet written.
    pending: Vec<u8>,
}

impl WriteState {
    /// Write out every pending byte.
    fn drain<W: Write>(&mut self, inner: &mut W) -> io::Result<()> {
        let mut at = 0;
        let res = loop {
            if at == self.pending.len() {
                break Ok(());
            }
            match inner.write(&self.pending[at..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..at);
        res
    }

    fn write<W: Write>(&mut self, inner: &mut W, buf: &[u8]) -> io::Result<usize> {
        self.drain(inner)?;
        if !self.cipher.is_encrypting() {
            return inner.write(buf);
        }
        let n = buf.len().min(WRITE_CHUNK);
        let start = self.pending.len();
        self.pending.extend_from_slice(&buf[..n]);
        self.cipher.apply(&mut self.pending[start..]);
        // the n bytes are taken; a failure here shows again on the next call
        if let Err(e) = self.drain(inner) {
            log::trace!("encrypted write deferred: {e}");
        }
        Ok(n)
    }

    fn flush<W: Write>(&mut self, inner: &mut W) -> io::Result<()> {
        self.drain(inner)?;
        inner.flush()
    }
}

/// The read half after a handshake: already received payload first, then
/// socket bytes decrypted in place.
#[derive(Debug)]
pub struct EncryptedReader<R> {
    inner: R,
    state: ReadState,
}

impl<R: Read> EncryptedReader<R> {
    /// Wrap `inner`; `received` is plaintext already taken off it.
    pub fn new(inner: R, cipher: Cipher, received: Vec<u8>) -> Self {
        EncryptedReader {
            inner,
            state: ReadState {
                cipher,
                received,
                pos: 0,
            },
        }
    }

    /// The wrapped reader (e.g. to set a timeout).
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The wrapped reader, mutably (e.g. to write to a duplex socket
    /// whose reading direction this wraps).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Whether bytes read are decrypted (RC4), not passed through.
    pub fn is_decrypting(&self) -> bool {
        self.state.cipher.is_encrypting()
    }
}

impl<R: Read> Read for EncryptedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.state.read(&mut self.inner, buf)
    }
}

/// The write half after a handshake: encrypts into a buffer of at most
/// 64 KiB per call and writes from it (see `flush`). With a plaintext
/// cipher it writes straight through.
#[derive(Debug)]
pub struct EncryptedWriter<W> {
    inner: W,
    state: WriteState,
}

impl<W: Write> EncryptedWriter<W> {
    /// Wrap `inner`.
    pub fn new(inner: W, cipher: Cipher) -> Self {
        EncryptedWriter {
            inner,
            state: WriteState {
                cipher,
                pending: Vec::new(),
            },
        }
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}

impl<W: Write> Write for EncryptedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.state.write(&mut self.inner, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.state.flush(&mut self.inner)
    }
}

/// A whole connection after a handshake: reads decrypt, writes encrypt.
#[derive(Debug)]
pub struct EncryptedStream<S> {
    inner: S,
    read: ReadState,
    write: WriteState,
}

impl<S: Read + Write> EncryptedStream<S> {
    /// Wrap `inner` with a finished handshake's ciphers and payload.
    pub fn new(inner: S, est: Established) -> Self {
        EncryptedStream {
            inner,
            read: ReadState {
                cipher: est.decrypt,
                received: est.received,
                pos: 0,
            },
            write: WriteState {
                cipher: est.encrypt,
                pending: Vec::new(),
            },
        }
    }

    /// The wrapped stream (e.g. to set timeouts or shut it down).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Read + Write> Read for EncryptedStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read.read(&mut self.inner, buf)
    }
}

impl<S: Read + Write> Write for EncryptedStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write.write(&mut self.inner, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.write.flush(&mut self.inner)
    }
}
