//! The multiplexer: every uTP connection on one UDP socket.
//!
//! It does not read the socket. Whoever owns the socket's receive side (the
//! session's UDP thread, shared with the DHT and the UDP tracker client, or
//! [`UtpSocket`](crate::UtpSocket) for standalone use) hands each datagram to
//! [`Multiplexer::handle_datagram`] and calls [`Multiplexer::flush`] when a
//! receive batch is drained, which sends the deferred ACKs (one per
//! connection per batch, unless one went out earlier: a quarter of the
//! receive buffer arrived unacknowledged, the reader took data, a data
//! packet carried it, or a timer tick). Sending goes through a
//! [`Transmit`], normally the same `UdpSocket`, so replies leave from the
//! port the peer talks to.
//!
//! A timer thread (`utp-timer`, one per multiplexer) runs retransmission,
//! keep-alive and idle timers every few milliseconds while connections
//! exist and also flushes ACKs, so a dispatcher that never calls `flush` is
//! slower but still correct. With no connection it sleeps until one is
//! made or accepted (no periodic wake-up). It ends when the last
//! `Multiplexer` clone and stream are dropped.
//!
//! Connections are keyed by `(peer address, recv_id)`. A SYN from an unknown
//! key creates a connection only while fewer than `max_connections` exist and
//! the accept backlog has room; a packet for an unknown key that is not a SYN
//! is dropped without allocating.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::conn::{Config, Connection, Outgoing};
use crate::packet::{looks_like_utp, Packet, PacketType};
use crate::stream::UtpStream;

/// Sends one datagram. Implemented for `UdpSocket` (and `Arc` of anything
/// that implements it); a test can wrap one to drop or delay packets.
pub trait Transmit: Send + Sync + 'static {
    /// Sends `datagram` to `to`. `WouldBlock` (a full socket buffer) is not
    /// loss: the packet is kept and retried on the next tick.
    ///
    /// # Errors
    /// The socket's send error.
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()>;

    /// Sends several datagrams to one peer; returns how many went (a prefix).
    /// The default calls `send_to` in turn; `UdpSocket` uses `sendmmsg`.
    ///
    /// # Errors
    /// The first send's error when none went.
    fn send_batch(&self, datagrams: &[&[u8]], to: SocketAddr) -> io::Result<usize> {
        for (i, d) in datagrams.iter().enumerate() {
            if let Err(e) = self.send_to(d, to) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(datagrams.len())
    }

    /// Reports the "destination unreachable" errors queued on the socket
    /// (see [`crate::icmp`]): for each, the address and the start of the
    /// datagram that drew it. The multiplexer's timer asks while it has
    /// connections, so a connect is refused even when another thread's
    /// send took the socket's pending error. The default reports none.
    fn drain_unreachable(&self, each: &mut dyn FnMut(SocketAddr, &[u8])) -> usize {
        let _ = each;
        0
    }
}

impl Transmit for UdpSocket {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        crate::icmp::send_retrying(|| UdpSocket::send_to(self, datagram, to)).map(|_| ())
    }

    #[cfg(target_os = "linux")]
    fn send_batch(&self, datagrams: &[&[u8]], to: SocketAddr) -> io::Result<usize> {
        crate::socket::send_batch(self, datagrams, to)
    }

    fn drain_unreachable(&self, each: &mut dyn FnMut(SocketAddr, &[u8])) -> usize {
        crate::icmp::drain(self, &mut |u| {
            if u.refuses() {
                each(u.to, u.quote());
            }
        })
    }
}

impl<T: Transmit> Transmit for Arc<T> {
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        (**self).send_to(datagram, to)
    }

    fn send_batch(&self, datagrams: &[&[u8]], to: SocketAddr) -> io::Result<usize> {
        (**self).send_batch(datagrams, to)
    }

    fn drain_unreachable(&self, each: &mut dyn FnMut(SocketAddr, &[u8])) -> usize {
        (**self).drain_unreachable(each)
    }
}

/// Datagrams handed to the socket per `send_batch` call: four full UDP GSO
/// messages of 44 full-sized datagrams (64 gave one of 44 and one of 20,
/// and more `sendmmsg` calls per window).
const SEND_BATCH: usize = 176;
/// Of those, datagrams copied out of the send queue (the ones carrying a
/// selective ACK): each keeps a buffer the connection reuses, so this
/// bounds what a connection holds.
const COPY_BATCH: usize = 64;

/// The packet in `d` when it is a uTP packet other than a SYN for
/// connection `id`.
fn same_connection(d: &[u8], id: u16) -> Option<Packet<'_>> {
    if !looks_like_utp(d) {
        return None;
    }
    let p = Packet::decode(d).ok()?;
    (p.header.connection_id == id && p.header.ty != PacketType::Syn).then_some(p)
}
/// How often a cancellable connect asks whether it was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// Multiplexer settings.
#[derive(Debug, Clone, Copy)]
pub struct MuxConfig {
    /// Per-connection settings. `packet_size` is lowered to 1452 for IPv6
    /// peers automatically.
    pub conn: Config,
    /// Accept incoming SYNs at all.
    pub accept_incoming: bool,
    /// Streams accepted but not yet taken by `accept`.
    pub backlog: usize,
    /// Most connections (any state) on this multiplexer: bounds SYN floods.
    pub max_connections: usize,
    /// Timer period.
    pub tick: Duration,
    /// Send and receive buffer size [`UtpSocket`](crate::UtpSocket) asks
    /// the kernel for (see [`tune_socket`](crate::tune_socket)); unused by
    /// a multiplexer on a socket the caller owns.
    pub socket_buffer: usize,
}

impl Default for MuxConfig {
    fn default() -> Self {
        Self {
            conn: Config::default(),
            accept_incoming: true,
            backlog: 64,
            max_connections: 1024,
            tick: Duration::from_millis(5),
            socket_buffer: crate::SOCKET_BUFFER,
        }
    }
}

/// Mutable per-connection state behind the cell's lock.
pub(crate) struct CellState {
    pub(crate) conn: Connection,
    pub(crate) buf: Vec<u8>,
    /// Buffers for the datagrams of one `send_batch` that are not sent
    /// from the send queue in place (those carrying a selective ACK).
    pub(crate) batch: Vec<Vec<u8>>,
    /// The datagrams of one `send_batch`, in order.
    pub(crate) outgoing: Vec<Outgoing>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) write_closed: bool,
    pub(crate) handle_alive: bool,
    /// On the multiplexer's deferred list (ACK and wake-up at `flush`).
    pub(crate) queued: bool,
}

/// One connection: its state and the condition variables its stream waits on.
pub(crate) struct ConnCell {
    pub(crate) peer: SocketAddr,
    pub(crate) state: Mutex<CellState>,
    /// Data, EOF or an error arrived.
    pub(crate) readable: Condvar,
    /// Send buffer space freed, connected, or an error.
    pub(crate) writable: Condvar,
}

pub(crate) struct Shared {
    pub(crate) transmit: Box<dyn Transmit>,
    pub(crate) local_addr: Option<SocketAddr>,
    cfg: MuxConfig,
    epoch: Instant,
    conns: Mutex<HashMap<(SocketAddr, u16), Arc<ConnCell>>>,
    deferred: Mutex<Vec<Arc<ConnCell>>>,
    /// Accepted connections waiting for `accept`. Cells, not streams: a
    /// stream holds `Arc<Shared>`, which would make a cycle.
    accept_tx: Sender<Arc<ConnCell>>,
    accept_rx: Receiver<Arc<ConnCell>>,
    rng: AtomicU64,
    /// Set (to itself) by a dropped stream whose connection still has data
    /// or a FIN in flight, so the multiplexer outlives its last user handle
    /// until the timer sees no lingering connection and clears it.
    pub(crate) linger: Mutex<Option<Arc<Shared>>>,
    /// Wakes the timer thread when a connection is added (it sleeps
    /// without a deadline while the table is empty); dropped with the
    /// multiplexer, which ends the thread.
    wake: Sender<()>,
    /// Run when the multiplexer is dropped: `UtpSocket` wakes its reader
    /// thread with it, so the reader needs no polling timeout.
    pub(crate) on_drop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.get_mut().take() {
            f();
        }
    }
}

impl Shared {
    /// See [`Multiplexer::handle_unreachable`].
    fn handle_unreachable(&self, peer: SocketAddr, quote: &[u8]) -> usize {
        let cells: Vec<Arc<ConnCell>> = {
            let conns = self.conns.lock();
            match quote {
                [] => conns
                    .iter()
                    .filter(|((addr, _), _)| *addr == peer)
                    .map(|(_, c)| c.clone())
                    .collect(),
                // A SYN (type 4, version 1) carries the connect's own id.
                [0x41, _, hi, lo, ..] => conns
                    .get(&(peer, u16::from_be_bytes([*hi, *lo])))
                    .cloned()
                    .into_iter()
                    .collect(),
                _ => return 0,
            }
        };
        let mut failed = 0;
        for cell in cells {
            let mut st = cell.state.lock();
            if st.conn.on_unreachable() {
                failed += 1;
                drop(st);
                cell.readable.notify_all();
                cell.writable.notify_all();
            }
        }
        if failed > 0 {
            log::debug!("utp {peer}: unreachable, {failed} connect(s) refused");
        }
        failed
    }

    /// Drains the socket's "destination unreachable" reports into
    /// [`handle_unreachable`](Self::handle_unreachable) (see [`crate::icmp`]).
    pub(crate) fn drain_unreachable(&self) {
        self.transmit.drain_unreachable(&mut |to, quote| {
            self.handle_unreachable(to, quote);
        });
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Tells the timer thread a connection was added.
    fn wake_timer(&self) {
        let _ = self.wake.try_send(());
    }

    fn random(&self) -> u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(self.rng.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed));
        h.finish()
    }

    /// Sends everything the connection may send now, then an owed ACK.
    pub(crate) fn pump(&self, peer: SocketAddr, st: &mut CellState, now_us: u64) {
        self.pump_data(peer, st, now_us);
        let mut buf = std::mem::take(&mut st.buf);
        if st.conn.poll_ack(now_us, &mut buf) {
            if let Err(e) = self.transmit.send_to(&buf, peer) {
                log::debug!("utp {peer}: ack send failed: {e}");
            }
        }
        st.buf = buf;
    }

    /// Sends what the windows allow, but leaves an owed bare ACK for the end
    /// of the receive batch (`flush`) or the next timer tick.
    pub(crate) fn pump_data(&self, peer: SocketAddr, st: &mut CellState, now_us: u64) {
        let mut batch = std::mem::take(&mut st.batch);
        let mut outgoing = std::mem::take(&mut st.outgoing);
        outgoing.clear();
        let mut copied = 0;
        loop {
            if copied == batch.len() {
                batch.push(Vec::with_capacity(1500));
            }
            let got = st.conn.poll_transmit_queued(now_us, &mut batch[copied]);
            if let Some(o) = got {
                outgoing.push(o);
                if o == Outgoing::Copied {
                    copied += 1;
                }
                if outgoing.len() < SEND_BATCH && copied < COPY_BATCH {
                    continue;
                }
            }
            if outgoing.is_empty() {
                break;
            }
            // Datagrams in the send queue go to the socket from there.
            let mut k = 0;
            let datagrams: Vec<&[u8]> = outgoing
                .iter()
                .map(|o| match o {
                    Outgoing::Queued(seq) => st.conn.queued_datagram(*seq).unwrap_or_default(),
                    Outgoing::Copied => {
                        k += 1;
                        &batch[k - 1][..]
                    }
                })
                .collect();
            let sent = match self.transmit.send_batch(&datagrams, peer) {
                Ok(sent) => sent.min(datagrams.len()),
                Err(e) => {
                    log::debug!("utp {peer}: send failed, will retry: {e}");
                    0
                }
            };
            // What the socket did not take was never sent: not loss.
            let unsent: Vec<u16> = datagrams[sent..]
                .iter()
                .filter(|d| d.len() >= 18)
                .map(|d| u16::from_be_bytes([d[16], d[17]]))
                .collect();
            drop(datagrams);
            for &seq in &unsent {
                st.conn.undo_transmit_seq(seq);
            }
            outgoing.clear();
            copied = 0;
            if !unsent.is_empty() || got.is_none() {
                break;
            }
        }
        st.batch = batch;
        st.outgoing = outgoing;
    }

    /// The connection a packet from `from` belongs to; a resent SYN
    /// matches the connection it opened (keyed by its id + 1).
    fn lookup(&self, from: SocketAddr, p: &Packet<'_>) -> Option<Arc<ConnCell>> {
        let id = p.header.connection_id;
        let conns = self.conns.lock();
        match conns.get(&(from, id)) {
            Some(c) => Some(c.clone()),
            None if p.header.ty == PacketType::Syn => {
                conns.get(&(from, id.wrapping_add(1))).cloned()
            }
            None => None,
        }
    }

    /// Sends the deferred ACKs of the connections touched since the last
    /// flush and wakes their readers (when there is something to read) and
    /// writers (when enough send buffer is free): one wake-up per batch,
    /// not per packet.
    fn flush(&self) {
        let cells = std::mem::take(&mut *self.deferred.lock());
        let now = self.now_us();
        for cell in cells {
            let mut st = cell.state.lock();
            st.queued = false;
            self.pump(cell.peer, &mut st, now);
            let readable = st.conn.readable();
            let wake_writer = st.conn.writer_should_wake();
            drop(st);
            if readable {
                cell.readable.notify_all();
            }
            if wake_writer {
                cell.writable.notify_all();
            }
        }
    }

    fn cell_config(&self, peer: SocketAddr) -> Config {
        let mut c = self.cfg.conn;
        if peer.is_ipv6() {
            c.packet_size = c.packet_size.min(1452);
        }
        c
    }
}

/// The connection table of one UDP socket (see the module docs). Cheap to
/// clone; all clones share the table.
#[derive(Clone)]
pub struct Multiplexer {
    shared: Arc<Shared>,
}

impl Multiplexer {
    /// A multiplexer sending through `transmit`; `local_addr` is what
    /// streams report as theirs. Starts the timer thread.
    ///
    /// # Errors
    /// `InvalidInput` when `cfg.conn` fails [`Config::validate`]; the
    /// timer thread's spawn error.
    pub fn new(
        transmit: impl Transmit,
        local_addr: Option<SocketAddr>,
        cfg: MuxConfig,
    ) -> io::Result<Self> {
        cfg.conn
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (accept_tx, accept_rx) = crossbeam_channel::bounded(cfg.backlog.max(1));
        let (wake, woken) = crossbeam_channel::bounded(1);
        let shared = Arc::new(Shared {
            transmit: Box::new(transmit),
            local_addr,
            cfg,
            epoch: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            deferred: Mutex::new(Vec::new()),
            accept_tx,
            accept_rx,
            rng: AtomicU64::new(0),
            linger: Mutex::new(None),
            wake,
            on_drop: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        thread::Builder::new()
            .name("utp-timer".into())
            .spawn(move || timer_loop(weak, &woken, cfg.tick))?;
        Ok(Self { shared })
    }

    /// Offers one received datagram. Returns false when it is not uTP
    /// ([`looks_like_utp`]), so the caller can hand it to the DHT or the
    /// tracker client; true when it was taken (even if then dropped as
    /// malformed or unknown). Streams waiting for what it brought are woken
    /// by [`flush`](Self::flush), once per receive batch (at once when an
    /// ACK is overdue, see [`handle_run`](Self::handle_run)).
    pub fn handle_datagram(&self, from: SocketAddr, datagram: &[u8]) -> bool {
        if !looks_like_utp(datagram) {
            return false;
        }
        self.handle_run(from, [datagram], &mut |_| {});
        true
    }

    /// Offers datagrams from one sender in arrival order, e.g. one UDP GRO
    /// read cut into its datagrams. Consecutive packets of one connection
    /// are taken under one lock and answered by one round of sending. The
    /// ACK and the reader's wake-up wait for [`flush`](Self::flush) at the
    /// end of the receive batch, unless a quarter of the connection's
    /// receive buffer arrived since its last ACK
    /// ([`Connection::ack_overdue`](crate::Connection::ack_overdue)): then
    /// both happen at once.
    /// Datagrams that are not uTP go to `other`.
    pub fn handle_run<'a>(
        &self,
        from: SocketAddr,
        datagrams: impl IntoIterator<Item = &'a [u8]>,
        other: &mut dyn FnMut(&'a [u8]),
    ) {
        let sh = &self.shared;
        let mut it = datagrams.into_iter().peekable();
        while let Some(d) = it.next() {
            if !looks_like_utp(d) {
                other(d);
                continue;
            }
            let Ok(p) = Packet::decode(d) else {
                log::trace!("utp {from}: malformed packet dropped");
                continue;
            };
            let id = p.header.connection_id;
            let now = sh.now_us();
            let Some(cell) = sh.lookup(from, &p) else {
                if p.header.ty == PacketType::Syn {
                    self.incoming_syn(from, &p, now);
                } else {
                    log::trace!("utp {from}: {:?} for unknown connection {id}", p.header.ty);
                }
                continue;
            };
            let mut st = cell.state.lock();
            st.conn.on_packet(&p, now);
            // The rest of the run for this connection, under the same lock.
            while let Some(q) = it.peek().and_then(|d| same_connection(d, id)) {
                it.next();
                st.conn.on_packet(&q, now);
            }
            sh.pump_data(from, &mut st, now);
            if st.conn.ack_overdue() {
                sh.pump(from, &mut st, now);
                let wake_writer = st.conn.writer_should_wake();
                let readable = st.conn.readable();
                drop(st);
                if readable {
                    cell.readable.notify_all();
                }
                if wake_writer {
                    cell.writable.notify_all();
                }
            } else if !st.queued {
                st.queued = true;
                drop(st);
                sh.deferred.lock().push(cell);
            }
        }
    }

    fn incoming_syn(&self, from: SocketAddr, syn: &Packet<'_>, now: u64) {
        let sh = &self.shared;
        if !sh.cfg.accept_incoming {
            return;
        }
        let key = (from, syn.header.connection_id.wrapping_add(1));
        let mut conns = sh.conns.lock();
        if conns.len() >= sh.cfg.max_connections || sh.accept_tx.is_full() {
            log::debug!("utp {from}: SYN refused (table or backlog full)");
            return;
        }
        let conn = Connection::accept(sh.cell_config(from), syn, sh.random() as u16, now);
        let cell = Arc::new(ConnCell {
            peer: from,
            state: Mutex::new(CellState {
                conn,
                buf: Vec::with_capacity(1500),
                batch: Vec::new(),
                outgoing: Vec::new(),
                read_timeout: None,
                write_timeout: None,
                write_closed: false,
                handle_alive: true,
                queued: false,
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
        });
        conns.insert(key, cell.clone());
        drop(conns);
        sh.wake_timer();
        {
            let mut st = cell.state.lock();
            sh.pump(from, &mut st, now);
        }
        match sh.accept_tx.try_send(cell) {
            Ok(()) => log::debug!("utp {from}: accepted connection {}", key.1),
            Err(TrySendError::Full(cell) | TrySendError::Disconnected(cell)) => {
                // As if accepted and dropped: closed, and reaped by the timer.
                let mut st = cell.state.lock();
                st.handle_alive = false;
                st.conn.close(now);
                log::debug!("utp {from}: backlog full, connection dropped");
            }
        }
    }

    /// Sends the ACKs deferred during the receive batch that just ended
    /// and wakes the streams that can now read or write.
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Fails, as refused, a connect to `peer` still waiting for the answer
    /// to its SYN, when the network reported that nothing listens there
    /// (an ICMP "destination unreachable", see [`crate::icmp`]). `quote` is
    /// the start of the datagram that drew the report: when it is one of
    /// our SYNs, only the connect that sent it fails; when it is empty (a
    /// router that quotes only the UDP header), every connect to `peer`
    /// still waiting does; anything else (a DHT query, a data packet)
    /// fails nothing. Open connections are left alone. Returns how many
    /// connects it failed.
    pub fn handle_unreachable(&self, peer: SocketAddr, quote: &[u8]) -> usize {
        self.shared.handle_unreachable(peer, quote)
    }

    /// Opens a connection to `peer`, waiting at most `timeout` for the
    /// handshake.
    ///
    /// # Errors
    /// `TimedOut` when no answer came in time, `ConnectionRefused` on a reset.
    pub fn connect(&self, peer: SocketAddr, timeout: Duration) -> io::Result<UtpStream> {
        self.connect_cancellable(peer, timeout, &|| false)
    }

    /// [`connect`](Self::connect) that also gives up, with `Interrupted`,
    /// as soon as `cancelled` returns true (asked every 20 ms, without any
    /// lock of the multiplexer held): for a caller whose connection is
    /// closed while it dials a peer that never answers.
    ///
    /// # Errors
    /// As [`connect`](Self::connect); `Interrupted` when cancelled.
    pub fn connect_cancellable(
        &self,
        peer: SocketAddr,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> io::Result<UtpStream> {
        let sh = &self.shared;
        let now = sh.now_us();
        let deadline = Instant::now() + timeout;
        let (key, cell) = {
            let mut conns = sh.conns.lock();
            if conns.len() >= sh.cfg.max_connections {
                return Err(io::Error::other("utp connection table full"));
            }
            let mut id = sh.random() as u16;
            while conns.contains_key(&(peer, id)) || conns.contains_key(&(peer, id.wrapping_add(1)))
            {
                id = id.wrapping_add(2);
            }
            let conn = Connection::connect(sh.cell_config(peer), id, sh.random() as u16, now);
            let cell = Arc::new(ConnCell {
                peer,
                state: Mutex::new(CellState {
                    conn,
                    buf: Vec::with_capacity(1500),
                    batch: Vec::new(),
                    outgoing: Vec::new(),
                    read_timeout: None,
                    write_timeout: None,
                    write_closed: false,
                    handle_alive: true,
                    queued: false,
                }),
                readable: Condvar::new(),
                writable: Condvar::new(),
            });
            conns.insert((peer, id), cell.clone());
            ((peer, id), cell)
        };
        sh.wake_timer();
        let mut st = cell.state.lock();
        sh.pump(peer, &mut st, now);
        let result = loop {
            if st.conn.is_connected() {
                break Ok(());
            }
            if let Some(f) = st.conn.failure() {
                break Err(crate::stream::failure_error(f));
            }
            let slice = (Instant::now() + CANCEL_POLL).min(deadline);
            let timed_out = cell.writable.wait_until(&mut st, slice).timed_out();
            if timed_out && MutexGuard::unlocked(&mut st, cancelled) {
                break Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "utp connect cancelled",
                ));
            }
            if timed_out && Instant::now() >= deadline {
                break Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "utp connect timed out",
                ));
            }
        };
        drop(st);
        match result {
            Ok(()) => {
                log::debug!("utp {peer}: connected as {}", key.1);
                Ok(UtpStream::new(cell, sh.clone()))
            }
            Err(e) => {
                sh.conns.lock().remove(&key);
                Err(e)
            }
        }
    }

    /// Waits for the next incoming connection.
    ///
    /// # Errors
    /// Never in practice (the multiplexer keeps its own sender alive).
    pub fn accept(&self) -> io::Result<UtpStream> {
        let cell = (self.shared.accept_rx.recv())
            .map_err(|_| io::Error::other("utp multiplexer closed"))?;
        Ok(UtpStream::new(cell, self.shared.clone()))
    }

    /// Waits at most `timeout` for the next incoming connection.
    ///
    /// # Errors
    /// `TimedOut` when none arrived.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<UtpStream> {
        let cell = (self.shared.accept_rx.recv_timeout(timeout))
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no utp connection arrived"))?;
        Ok(UtpStream::new(cell, self.shared.clone()))
    }

    /// Waits for the next incoming connection until `stop` gets a message
    /// or is disconnected (its senders dropped): then `Ok(None)` at once, so
    /// an accept thread can be ended without polling on a timeout.
    ///
    /// # Errors
    /// Never in practice (the multiplexer keeps its own sender alive).
    pub fn accept_until(&self, stop: &Receiver<()>) -> io::Result<Option<UtpStream>> {
        crossbeam_channel::select! {
            recv(self.shared.accept_rx) -> cell => {
                let cell = cell.map_err(|_| io::Error::other("utp multiplexer closed"))?;
                Ok(Some(UtpStream::new(cell, self.shared.clone())))
            }
            recv(stop) -> _ => Ok(None),
        }
    }

    /// Runs `f` when the multiplexer (its last clone and stream) is dropped.
    pub(crate) fn on_drop(&self, f: Box<dyn FnOnce() + Send>) {
        *self.shared.on_drop.lock() = Some(f);
    }

    /// See [`Shared::drain_unreachable`].
    pub(crate) fn drain_unreachable(&self) {
        self.shared.drain_unreachable();
    }

    pub(crate) fn downgrade(&self) -> Weak<Shared> {
        Arc::downgrade(&self.shared)
    }

    pub(crate) fn upgrade(weak: &Weak<Shared>) -> Option<Self> {
        weak.upgrade().map(|shared| Self { shared })
    }

    /// Number of connections in the table (open, half-open or closing).
    pub fn connection_count(&self) -> usize {
        self.shared.conns.lock().len()
    }
}

/// Ticks every connection. A dropped stream whose connection still has
/// data or a FIN in flight keeps the multiplexer (and so the socket) alive
/// through `Shared::linger`, like a kernel keeps a closed TCP socket; once
/// no connection lingers the timer releases it, and the thread ends with
/// the last user handle.
///
/// Without connections nothing is timed: the thread sleeps until a
/// connection is added (`Shared::wake`) or the multiplexer is dropped
/// (the channel disconnects), so an idle socket costs no wake-ups.
fn timer_loop(weak: Weak<Shared>, woken: &Receiver<()>, tick: Duration) {
    let mut cells = Vec::new();
    let mut buf = Vec::new();
    let mut idle = true;
    let mut drained = std::time::Instant::now();
    loop {
        let wait = if idle {
            woken.recv().map_err(|_| ())
        } else {
            match woken.recv_timeout(tick) {
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(()),
                _ => Ok(()),
            }
        };
        if wait.is_err() {
            return;
        }
        let Some(sh) = weak.upgrade() else { return };
        let mut lingering = false;
        if drained.elapsed() >= crate::icmp::DRAIN_EVERY {
            drained = std::time::Instant::now();
            sh.drain_unreachable();
        }
        sh.flush();
        cells.clear();
        cells.extend(sh.conns.lock().iter().map(|(k, c)| (*k, c.clone())));
        let now = sh.now_us();
        let mut dead = Vec::new();
        for (key, cell) in cells.drain(..) {
            let mut st = cell.state.lock();
            let failed_before = st.conn.failure().is_some();
            st.conn.on_tick(now);
            sh.pump(cell.peer, &mut st, now);
            if !st.handle_alive {
                if st.conn.is_finished(now) {
                    if st.conn.failure().is_none() && !st.conn.send_drained() {
                        st.conn.reset_packet(now, &mut buf);
                        let _ = sh.transmit.send_to(&buf, cell.peer);
                    }
                    dead.push(key);
                } else {
                    lingering = true;
                }
            }
            let changed = st.conn.failure().is_some() != failed_before;
            drop(st);
            if changed {
                cell.readable.notify_all();
                cell.writable.notify_all();
            }
        }
        {
            let mut conns = sh.conns.lock();
            for key in dead.drain(..) {
                conns.remove(&key);
            }
            // A connection added after this reads the table has sent a
            // wake token, so the sleep below ends at once.
            idle = conns.is_empty();
        }
        if !lingering {
            let released = sh.linger.lock().take();
            drop(released);
        }
    }
}
