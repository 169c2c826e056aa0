//! A small blocking HTTP/1.1 server: one acceptor thread, one thread per
//! connection up to a bound, keep-alive, `Expect: 100-continue`, and limits on the request
//! head, the body and the time a request may take to arrive.
//!
//! Hand-written over `httparse` (already in the tree through `ureq`)
//! rather than a server crate: the RPC needs one route, no TLS and no
//! streaming, and owning the loop keeps the limits and the shutdown (cut
//! every open connection, join the acceptor) in plain sight.
//!
//! At the bound a new connection takes the place of the one that has sat
//! idle longest (waiting for its first request, or between requests), so
//! clients that connect and send nothing cannot lock others out; failing
//! that, of the one whose request has been arriving longest, once that is
//! longer than [`Limits::slow_request`] (a slowloris trickling its bytes);
//! only when every connection is busy otherwise does a newcomer get 503.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::Mutex;

/// Headers read per request at most.
const MAX_HEADERS: usize = 64;

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// Header names in lowercase, values as sent (invalid UTF-8 dropped).
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: IpAddr,
}

impl Request {
    /// The first header named `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response; `Content-Length` and `Connection` are added when written.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides the length.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body and its content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// An HTML page `<h1>CODE: REASON</h1><p>TEXT</p>`.
    pub fn html(status: u16, text: &str) -> Response {
        let body = format!("<h1>{status}: {}</h1><p>{text}</p>", reason(status));
        Response::new(status, "text/html; charset=UTF-8", body)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The reason phrase of the codes this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Answers requests; called on connection threads, so it must be shareable.
pub trait Handler: Send + Sync + 'static {
    /// The response to `req`.
    fn handle(&self, req: &Request) -> Response;
}

/// Bounds on what one client may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request line plus headers.
    pub max_head: usize,
    /// Largest body (a base64 `.torrent` must fit).
    pub max_body: usize,
    /// Connections served at once; more get 503.
    pub max_connections: usize,
    /// How long a kept-alive connection may sit idle, and how long one
    /// request may take to arrive once started.
    pub timeout: Duration,
    /// A request still arriving after this long may be cut to make room
    /// for a new connection at the bound.
    pub slow_request: Duration,
    /// Bytes of request bodies held at once over all connections; a
    /// request that would go beyond gets 503 before its body is read.
    pub max_bodies: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 << 10,
            max_body: 16 << 20,
            max_connections: 32,
            timeout: Duration::from_secs(30),
            slow_request: Duration::from_secs(2),
            max_bodies: 64 << 20,
        }
    }
}

/// Why reading a request failed, with the status to answer (if any).
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between requests.
    Closed,
    /// Nothing more to say: the socket failed or timed out while idle.
    Io(io::Error),
    /// Answer with this status, then close.
    Reply(u16),
}

/// A buffered reader of requests from one connection.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    peer: IpAddr,
    /// Bytes of bodies held over all connections, and their bound.
    budget: Option<(Arc<AtomicUsize>, usize)>,
    /// This connection's share of the budget (its current body).
    reserved: usize,
}

impl<S> Conn<S> {
    /// Gives back this connection's share of the body budget (its last
    /// request has been answered).
    pub fn release(&mut self) {
        if let Some((used, _)) = &self.budget {
            used.fetch_sub(self.reserved, Ordering::SeqCst);
        }
        self.reserved = 0;
    }
}

impl<S> Drop for Conn<S> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<S: Read + Write> Conn<S> {
    /// Wraps a stream from `peer`.
    pub fn new(stream: S, peer: IpAddr) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
            peer,
            budget: None,
            reserved: 0,
        }
    }

    /// Shares `used` (bytes of bodies held) with other connections: a
    /// body that would take it beyond `max` is refused (503) unread.
    pub fn with_budget(mut self, used: Arc<AtomicUsize>, max: usize) -> Conn<S> {
        self.budget = Some((used, max));
        self
    }

    /// The stream.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Whether bytes of a next request are already buffered.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    fn fill(&mut self) -> Result<usize, ReadError> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Reads the next request. `keep_alive` in the result says whether
    /// the connection may serve another after it.
    pub fn read_request(&mut self, limits: &Limits) -> Result<(Request, bool), ReadError> {
        // The head.
        let (head_len, method, path, headers, http10) = loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut slots);
            match req.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) if n > limits.max_head => {
                    return Err(ReadError::Reply(431))
                }
                Ok(httparse::Status::Complete(n)) => {
                    let method = req.method.unwrap_or("").to_string();
                    let target = req.path.unwrap_or("/");
                    let path = target.split('?').next().unwrap_or("/").to_string();
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .filter_map(|h| {
                            std::str::from_utf8(h.value)
                                .ok()
                                .map(|v| (h.name.to_ascii_lowercase(), v.trim().to_string()))
                        })
                        .collect();
                    break (n, method, path, headers, req.version == Some(0));
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > limits.max_head {
                        return Err(ReadError::Reply(431));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => return Err(ReadError::Reply(431)),
                Err(_) => return Err(ReadError::Reply(400)),
            }
            let was_empty = self.buf.is_empty();
            match self.fill()? {
                0 if was_empty => return Err(ReadError::Closed),
                0 => return Err(ReadError::Reply(400)),
                _ => {}
            }
        };
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        if get("transfer-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
            return Err(ReadError::Reply(411));
        }
        let length = match get("content-length") {
            None => 0,
            Some(v) => v.parse::<usize>().map_err(|_| ReadError::Reply(400))?,
        };
        if length > limits.max_body {
            return Err(ReadError::Reply(413));
        }
        self.release();
        if let Some((used, max)) = &self.budget {
            let before = used.fetch_add(length, Ordering::SeqCst);
            if before + length > *max {
                used.fetch_sub(length, Ordering::SeqCst);
                return Err(ReadError::Reply(503));
            }
            self.reserved = length;
        }
        let connection = get("connection").map(str::to_ascii_lowercase);
        let keep_alive = match connection.as_deref() {
            Some(c) if c.contains("close") => false,
            Some(c) if c.contains("keep-alive") => true,
            _ => !http10,
        };
        if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && self.buf.len() - head_len < length
        {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(ReadError::Io)?;
        }
        self.buf
            .reserve_exact((head_len + length).saturating_sub(self.buf.len()));
        while self.buf.len() - head_len < length {
            if self.fill()? == 0 {
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        // The body moves out of the buffer without a second copy.
        let rest = self.buf.split_off(head_len + length);
        let mut body = std::mem::replace(&mut self.buf, rest);
        body.drain(..head_len);
        Ok((
            Request {
                method,
                path,
                headers,
                body,
                peer: self.peer,
            },
            keep_alive,
        ))
    }

    /// Writes `resp`, telling the client whether the connection stays open.
    pub fn write_response(&mut self, resp: &Response, keep_alive: bool) -> io::Result<()> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (n, v) in &resp.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
        if !keep_alive {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&resp.body);
        self.stream.write_all(&bytes)?;
        self.stream.flush()
    }
}

/// A running server; [`shutdown`](Self::shutdown) (or drop) stops it.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Open>>,
    acceptor: Option<JoinHandle<()>>,
}

/// Marks a connection whose request is being answered in its [`Idle`] cell.
const BUSY: u64 = u64::MAX;
/// Flags a connection whose request is arriving (since the time beside it).
const READING: u64 = 1 << 62;

/// A connection's state: the time (milliseconds since the server started)
/// it became idle, or [`READING`] with the time its request began, or
/// [`BUSY`].
type Idle = Arc<AtomicU64>;

/// The open connections: a handle to cut each, and its idle cell.
type Open = HashMap<u64, (TcpStream, Idle)>;

impl HttpServer {
    /// Binds `addr` and serves `handler` on its own threads.
    ///
    /// # Errors
    /// The address cannot be bound or the acceptor thread not started.
    pub fn bind(
        addr: SocketAddr,
        handler: Arc<dyn Handler>,
        limits: Limits,
    ) -> io::Result<HttpServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Open>> = Arc::default();
        let acceptor = {
            let (stop, open) = (stop.clone(), open.clone());
            std::thread::Builder::new()
                .name("bittern-rpc-accept".into())
                .spawn(move || accept_loop(&listener, &handler, &limits, &stop, &open))?
        };
        Ok(HttpServer {
            addr,
            stop,
            open,
            acceptor: Some(acceptor),
        })
    }

    /// The bound address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, cuts every open connection and joins the acceptor.
    pub fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = acceptor.join();
        for (_, (s, _)) in self.open.lock().drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: &TcpListener,
    handler: &Arc<dyn Handler>,
    limits: &Limits,
    stop: &AtomicBool,
    open: &Arc<Mutex<Open>>,
) {
    let active = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(AtomicUsize::new(0));
    let next_id = AtomicU64::new(0);
    let epoch = Instant::now();
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                warn!("rpc accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        if active.load(Ordering::SeqCst) >= limits.max_connections
            && !evict_idlest(open, &active, &draining, limits, epoch)
        {
            debug!("{peer}: too many rpc connections, answering 503");
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let mut c = Conn::new(stream, peer.ip());
            let _ = c.write_response(&Response::html(503, "Too many connections."), false);
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let idle: Idle = Arc::new(AtomicU64::new(millis_since(epoch)));
        let Ok(clone) = stream.try_clone() else {
            // Without a handle to cut it, it could neither be evicted nor
            // shut down: not served.
            warn!("{peer}: cannot clone the rpc connection's socket; dropping it");
            continue;
        };
        open.lock().insert(id, (clone, idle.clone()));
        active.fetch_add(1, Ordering::SeqCst);
        let (handler, limits, open2, active2, draining2, bodies) = (
            handler.clone(),
            limits.clone(),
            open.clone(),
            active.clone(),
            draining.clone(),
            bodies.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("bittern-rpc-conn".into())
            .spawn(move || {
                // Gives the slot back even if the handler panics.
                let _slot = Slot {
                    id,
                    open: open2,
                    active: active2,
                    draining: draining2,
                };
                serve(stream, peer.ip(), &*handler, &limits, &idle, epoch, bodies);
            });
        if let Err(e) = spawned {
            warn!("cannot start an rpc connection thread: {e}");
            open.lock().remove(&id);
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Whether bytes wait unread in the socket's receive queue (`FIONREAD`; a
/// read-only query that leaves the socket's mode alone, unlike a
/// non-blocking peek on this shared descriptor would).
fn has_unread(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points to
    // a live c_int; the fd is open for as long as `stream` is borrowed.
    let r = unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) };
    r == 0 && n > 0
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).map_or(READING - 1, |m| m.min(READING - 1))
}

/// Cuts the connection idle longest (else the slowest request to arrive,
/// past [`Limits::slow_request`]) to make room for a new one, whose slot
/// the newcomer takes at once: the cut connection's thread counts as
/// draining until it ends. Only while more than a quarter of the bound
/// are still draining does it wait (briefly) for one of them to end. False
/// when there is none to cut or no room came in time.
///
/// Waiting for the cut thread to end every time made a newcomer's answer
/// depend on the scheduler: on a machine at load 40 each cut thread took
/// up to the 500 ms allowed to run, 1,000 silent connections took over a
/// minute to get through, and a client behind them timed out
/// (`daemon/tests/server.rs`, issue 25). A connection counts as idle only
/// when no bytes wait in its socket: at that load its thread may not have
/// read a request that arrived 100 ms ago.
fn evict_idlest(
    open: &Mutex<Open>,
    active: &AtomicUsize,
    draining: &AtomicUsize,
    limits: &Limits,
    epoch: Instant,
) -> bool {
    let max = limits.max_connections;
    let now = millis_since(epoch);
    let slow = u64::try_from(limits.slow_request.as_millis()).unwrap_or(u64::MAX);
    let victim = {
        let mut open = open.lock();
        let idlest = open
            .iter()
            .filter_map(|(id, (stream, cell))| {
                let v = cell.load(Ordering::SeqCst);
                if v < READING {
                    // Bytes its thread has not read yet: a request is
                    // arriving (the thread is only slow to run), not idle.
                    (!has_unread(stream)).then_some(((0, v), *id))
                } else if v != BUSY && now.saturating_sub(v & !READING) >= slow {
                    Some(((1, v & !READING), *id))
                } else {
                    None
                }
            })
            .min();
        idlest.and_then(|(_, id)| open.remove(&id))
    };
    let Some((stream, _)) = victim else {
        return false;
    };
    debug!("rpc connection bound reached: cutting the idlest connection");
    let _ = stream.shutdown(Shutdown::Both);
    // Out of `open`: its thread's `Slot` now counts itself as draining.
    draining.fetch_add(1, Ordering::SeqCst);
    active.fetch_sub(1, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_millis(500);
    // A quarter of the bound draining absorbs a slow scheduler; a flood
    // that cuts faster than the cut threads end waits for them, so threads
    // stay within 1.25 times the bound.
    let most_draining = (max / 4).max(1);
    while draining.load(Ordering::SeqCst) > most_draining {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// A connection's place in the bound and in the table of open sockets,
/// released when its thread ends however it ends.
struct Slot {
    id: u64,
    open: Arc<Mutex<Open>>,
    active: Arc<AtomicUsize>,
    /// Threads of cut connections not yet ended.
    draining: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.open.lock().remove(&self.id).is_some() {
            self.active.fetch_sub(1, Ordering::SeqCst);
        } else {
            // Cut by `evict_idlest`, which gave its slot to a newcomer (or
            // taken out by the server's shutdown).
            let _ = self
                .draining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1));
        }
    }
}

/// Serves one connection until it closes, fails, idles out or asks to close.
fn serve(
    stream: TcpStream,
    peer: IpAddr,
    handler: &dyn Handler,
    limits: &Limits,
    idle: &Idle,
    epoch: Instant,
    bodies: Arc<AtomicUsize>,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.timeout));
    let mut conn = Conn::new(
        Deadline::new(stream, limits.timeout, idle.clone(), epoch),
        peer,
    )
    .with_budget(bodies, limits.max_bodies);
    loop {
        conn.stream().restart();
        idle.store(
            if conn.has_pending() {
                READING | millis_since(epoch)
            } else {
                millis_since(epoch)
            },
            Ordering::SeqCst,
        );
        match conn.read_request(limits) {
            Ok((req, keep_alive)) => {
                idle.store(BUSY, Ordering::SeqCst);
                let resp = handler.handle(&req);
                drop(req);
                conn.release();
                if conn.write_response(&resp, keep_alive).is_err() || !keep_alive {
                    return;
                }
            }
            Err(ReadError::Reply(status)) => {
                let text = if status == 503 {
                    "Too many requests at once."
                } else {
                    "Bad request."
                };
                let _ = conn.write_response(&Response::html(status, text), false);
                return;
            }
            Err(ReadError::Closed) => return,
            Err(ReadError::Io(e)) => {
                debug!("{peer}: rpc connection: {e}");
                return;
            }
        }
    }
}

/// A stream whose reads give up at a deadline however the bytes trickle
/// in (a plain read timeout restarts with every byte). The first byte
/// of a request marks the connection [`READING`].
struct Deadline {
    stream: TcpStream,
    limit: Duration,
    until: Instant,
    idle: Idle,
    epoch: Instant,
}

impl Deadline {
    fn new(stream: TcpStream, limit: Duration, idle: Idle, epoch: Instant) -> Deadline {
        Deadline {
            stream,
            limit,
            until: Instant::now() + limit,
            idle,
            epoch,
        }
    }

    fn restart(&mut self) {
        self.until = Instant::now() + self.limit;
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let n = self.stream.read(buf)?;
        if n > 0 && self.idle.load(Ordering::SeqCst) < READING {
            self.idle
                .store(READING | millis_since(self.epoch), Ordering::SeqCst);
        }
        Ok(n)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads from a script of chunks, records what is written.
    struct Script {
        chunks: Vec<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.chunks.is_empty() {
                return Ok(0);
            }
            let c = self.chunks.remove(0);
            buf[..c.len()].copy_from_slice(&c);
            Ok(c.len())
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(chunks: Vec<Vec<u8>>) -> Conn<Script> {
        Conn::new(
            Script {
                chunks,
                written: Vec::new(),
            },
            IpAddr::from([127, 0, 0, 1]),
        )
    }

    const TWO: &[u8] = b"POST /transmission/rpc/?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9091\r\n\
Content-Length: 5\r\nX-Transmission-Session-Id: abc\r\n\r\nhelloGET / HTTP/1.1\r\n\
Connection: close\r\n\r\n";

    #[test]
    fn reads_pipelined_requests_split_at_every_offset() {
        for cut in 1..TWO.len() {
            let mut c = conn(vec![TWO[..cut].to_vec(), TWO[cut..].to_vec()]);
            let limits = Limits::default();
            let (a, ka) = c.read_request(&limits).unwrap();
            assert_eq!(a.method, "POST");
            assert_eq!(a.path, "/transmission/rpc/");
            assert_eq!(a.body, b"hello");
            assert_eq!(a.header("x-transmission-session-id"), Some("abc"));
            assert!(ka);
            let (b, kb) = c.read_request(&limits).unwrap();
            assert_eq!((b.method.as_str(), b.path.as_str()), ("GET", "/"));
            assert!(b.body.is_empty());
            assert!(!kb, "Connection: close");
            assert!(matches!(c.read_request(&limits), Err(ReadError::Closed)));
        }
    }

    #[test]
    fn limits_answer_with_status() {
        let limits = Limits {
            max_head: 64,
            max_body: 10,
            ..Limits::default()
        };
        let big_head = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100));
        let mut c = conn(vec![big_head.into_bytes()]);
        assert!(matches!(
            c.read_request(&limits),
            Err(ReadError::Reply(431))
        ));
        let mut c = conn(vec![
            b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n".to_vec()
        ]);
        assert!(matches!(
            c.read_request(&limits),
            Err(ReadError::Reply(413))
        ));
        let mut c = conn(vec![
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        ]);
        assert!(matches!(
            c.read_request(&limits),
            Err(ReadError::Reply(411))
        ));
        let mut c = conn(vec![b"\x16\x03\x01garbage\r\n\r\n".to_vec()]);
        assert!(matches!(
            c.read_request(&limits),
            Err(ReadError::Reply(400))
        ));
    }

    #[test]
    fn expect_continue_is_answered_before_the_body() {
        let mut c = conn(vec![
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".to_vec(),
            b"ok".to_vec(),
        ]);
        let (r, _) = c.read_request(&Limits::default()).unwrap();
        assert_eq!(r.body, b"ok");
        assert_eq!(c.stream().written, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn http10_closes_unless_asked() {
        let mut c = conn(vec![b"GET / HTTP/1.0\r\n\r\n".to_vec()]);
        assert!(!c.read_request(&Limits::default()).unwrap().1);
    }

    #[test]
    fn writes_length_and_close() {
        let mut c = conn(vec![]);
        let r = Response::new(200, "text/plain", "hi").with_header("X-A", "1");
        c.write_response(&r, false).unwrap();
        let text = String::from_utf8(c.stream().written.clone()).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\n\
Content-Length: 2\r\nConnection: close\r\n\r\nhi"
        );
    }
}
