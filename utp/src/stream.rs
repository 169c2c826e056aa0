//! [`UtpStream`]: a uTP connection as a blocking `Read + Write` object, the
//! shape of a `TcpStream`, for thread-per-peer code.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::Failure;
use crate::mux::{ConnCell, Shared};
use crate::socket::UtpSocket;

pub(crate) fn failure_error(f: Failure) -> io::Error {
    match f {
        Failure::Refused => {
            io::Error::new(io::ErrorKind::ConnectionRefused, "utp connection refused")
        }
        Failure::Reset => io::Error::new(io::ErrorKind::ConnectionReset, "utp connection reset"),
        Failure::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "utp connection timed out"),
    }
}

struct Handle {
    cell: Arc<ConnCell>,
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let now = self.shared.now_us();
        let mut st = self.cell.state.lock();
        st.handle_alive = false;
        st.conn.close(now);
        st.conn.shutdown_read(); // nobody reads any more: discard, keep the window open
        self.shared.pump(self.cell.peer, &mut st, now);
        let lingers = !st.conn.is_finished(now);
        drop(st);
        if lingers {
            *self.shared.linger.lock() = Some(self.shared.clone());
        }
    }
}

/// One uTP connection. Reads and writes block like a `TcpStream`'s, up to
/// the read/write timeouts (then `WouldBlock`). Clones made with
/// [`try_clone`](Self::try_clone) share the connection; the last one dropped
/// closes it gracefully: buffered data and then a FIN are still delivered
/// (the multiplexer lingers up to `Config::linger_us`), like `TcpStream`.
pub struct UtpStream {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for UtpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpStream")
            .field("peer", &self.inner.cell.peer)
            .finish()
    }
}

impl UtpStream {
    pub(crate) fn new(cell: Arc<ConnCell>, shared: Arc<Shared>) -> Self {
        Self {
            inner: Arc::new(Handle { cell, shared }),
        }
    }

    /// Connects from a new UDP socket of its own, bound to the unspecified
    /// address of `peer`'s family on an ephemeral port. For a session, use
    /// [`Multiplexer::connect`](crate::Multiplexer::connect) on the shared
    /// socket instead, so the peer sees our listen port.
    ///
    /// # Errors
    /// Binding errors, `TimedOut`, `ConnectionRefused`.
    pub fn connect(peer: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let bind: SocketAddr = if peer.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        // The stream keeps the multiplexer, and so the socket and its reader
        // thread, alive after `UtpSocket` itself is dropped.
        UtpSocket::bind(bind)?.connect(peer, timeout)
    }

    /// Another handle to the same connection (shared timeouts and state).
    ///
    /// # Errors
    /// Never; `io::Result` for `TcpStream` compatibility.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            inner: self.inner.clone(),
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.inner.cell.peer)
    }

    /// The local UDP socket's address, when the multiplexer knows it.
    ///
    /// # Errors
    /// `Unsupported` when the multiplexer was built without one.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .shared
            .local_addr
            .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "local address unknown"))
    }

    /// Sets how long `read` blocks; `None` forever.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration, as `TcpStream`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        self.inner.cell.state.lock().read_timeout = t;
        Ok(())
    }

    /// Sets how long `write` blocks when the send buffer is full.
    ///
    /// # Errors
    /// `InvalidInput` for a zero duration, as `TcpStream`.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        check_timeout(t)?;
        self.inner.cell.state.lock().write_timeout = t;
        Ok(())
    }

    /// `Write`: FIN after the buffered data, later writes fail with
    /// `BrokenPipe`. `Read`: reads return 0 and incoming data is discarded.
    /// `Both`: both, and every blocked reader and writer wakes up.
    ///
    /// # Errors
    /// Never; `io::Result` for `TcpStream` compatibility.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let h = &self.inner;
        let now = h.shared.now_us();
        let mut st = h.cell.state.lock();
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            st.write_closed = true;
            st.conn.close(now);
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            st.conn.shutdown_read();
        }
        h.shared.pump(h.cell.peer, &mut st, now);
        drop(st);
        h.cell.readable.notify_all();
        h.cell.writable.notify_all();
        Ok(())
    }

    /// Current congestion window in bytes (diagnostics).
    pub fn cwnd(&self) -> u32 {
        self.inner.cell.state.lock().conn.cwnd()
    }

    /// Smoothed round-trip time, once measured (diagnostics).
    pub fn rtt(&self) -> Option<Duration> {
        self.inner
            .cell
            .state
            .lock()
            .conn
            .srtt_us()
            .map(Duration::from_micros)
    }
}

fn check_timeout(t: Option<Duration>) -> io::Result<()> {
    if t == Some(Duration::ZERO) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "zero timeout"));
    }
    Ok(())
}

fn would_block() -> io::Error {
    io::Error::new(io::ErrorKind::WouldBlock, "utp operation timed out")
}

impl Read for UtpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Read for &UtpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let h = &self.inner;
        let mut st = h.cell.state.lock();
        let deadline = st.read_timeout.map(|t| Instant::now() + t);
        loop {
            let n = st.conn.read(buf);
            if n > 0 {
                let now = h.shared.now_us();
                h.shared.pump(h.cell.peer, &mut st, now); // an owed ACK or window update
                return Ok(n);
            }
            if let Some(f) = st.conn.failure() {
                return Err(failure_error(f));
            }
            if st.conn.at_eof() || buf.is_empty() {
                return Ok(0);
            }
            match deadline {
                None => h.cell.readable.wait(&mut st),
                Some(d) => {
                    if h.cell.readable.wait_until(&mut st, d).timed_out() && !st.conn.readable() {
                        return Err(would_block());
                    }
                }
            }
        }
    }
}

impl Write for UtpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &UtpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Takes as much of `bufs`, in order, as the send buffer has room for
    /// under one lock, and sends once: a peer message's header and its
    /// block go out together, not as a small packet and then the rest.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let h = &self.inner;
        let mut st = h.cell.state.lock();
        let deadline = st.write_timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(f) = st.conn.failure() {
                return Err(failure_error(f));
            }
            if st.write_closed {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "utp stream shut down",
                ));
            }
            if bufs.iter().all(|b| b.is_empty()) {
                return Ok(0);
            }
            let mut n = 0;
            for b in bufs {
                let took = st.conn.write(b);
                n += took;
                if took < b.len() {
                    break;
                }
            }
            if n > 0 {
                let now = h.shared.now_us();
                h.shared.pump(h.cell.peer, &mut st, now);
                return Ok(n);
            }
            match deadline {
                None => h.cell.writable.wait(&mut st),
                Some(d) => {
                    if h.cell.writable.wait_until(&mut st, d).timed_out()
                        && st.conn.write_space() == 0
                    {
                        return Err(would_block());
                    }
                }
            }
        }
    }

    /// Data goes out as the windows allow; like `TcpStream::flush`, a no-op.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
