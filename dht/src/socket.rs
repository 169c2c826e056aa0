//! The IO layer: [`Dht`] drives a [`Node`] with real time and a shared
//! UDP socket; [`Runner`] owns a socket and a reader thread for
//! standalone use.
//!
//! # Sharing one UDP socket with uTP
//!
//! bittern keeps one UDP socket per address family on the listen port for
//! DHT, uTP and UDP tracker replies, read by one dispatcher thread. The
//! seam is small:
//!
//! - the dispatcher owns the reading; for each datagram where
//!   [`is_krpc`] is true it calls [`Dht::handle_datagram`]. KRPC is a
//!   bencoded dictionary, so its first byte is `d` (0x64); a uTP header's
//!   first byte is type << 4 | version 1 (0x01, 0x11, 0x21, 0x31, 0x41); a
//!   UDP tracker reply starts with a big-endian action 0-3 (0x00). Reading
//!   into a buffer of [`MAX_PACKET`]` + 1` bytes is enough: larger KRPC
//!   datagrams are dropped as malformed;
//! - the DHT sends through anything implementing [`SendTo`] — an
//!   `Arc<UdpSocket>` clone of the same socket works as is;
//! - [`Dht::start`] spawns one timer thread that runs the node's timers;
//!   the dispatcher never waits on the DHT beyond a short mutex hold.
//!
//! [`Runner`] is exactly that arrangement with a dispatcher that only knows
//! the DHT.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_wire::InfoHash;
use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use thiserror::Error;

use crate::id::NodeId;
pub use crate::krpc::MAX_PACKET;
use crate::krpc::{DecodeError, NodeInfo};
use crate::lookup::LookupResult;
use crate::node::{Config, Event, LookupId, Node, Stats, Transmit};
use crate::state::SavedState;

/// Errors of the IO layer.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or configuring the socket, or spawning a thread, failed.
    #[error("dht socket")]
    Io(#[from] io::Error),
    /// A lookup did not finish in time.
    #[error("dht lookup timed out")]
    Timeout,
    /// The DHT was shut down while waiting.
    #[error("dht shut down")]
    Shutdown,
    /// A saved state file is not one.
    #[error("bad dht state file")]
    State(#[from] DecodeError),
}

/// Where the DHT's datagrams go: a UDP socket, or whatever the shared-socket
/// dispatcher provides.
pub trait SendTo: Send + Sync + 'static {
    /// Sends one datagram to `to`.
    ///
    /// # Errors
    /// The socket's error; the DHT logs it and carries on (the query times out).
    fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()>;
}

impl SendTo for UdpSocket {
    fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<()> {
        UdpSocket::send_to(self, bytes, to).map(|_| ())
    }
}

/// True when a datagram on a shared socket is for the DHT (a bencoded
/// dictionary starts with `d`; uTP and UDP tracker packets never do).
pub fn is_krpc(datagram: &[u8]) -> bool {
    datagram.first() == Some(&b'd')
}

struct State {
    node: Node,
    waiters: HashMap<LookupId, Sender<LookupResult>>,
    /// get_peers lookups whose peers are streamed as they arrive.
    streams: HashMap<LookupId, Sender<SocketAddr>>,
    shutdown: bool,
    /// When the timer thread sleeps until; it is woken only if the node's
    /// next timeout moved earlier.
    sleeping_until: Option<Instant>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    sender: Arc<dyn SendTo>,
}

impl Shared {
    /// Takes what the node wants sent and reported, under the lock.
    fn drain(state: &mut State) -> (Vec<Transmit>, Vec<(Sender<LookupResult>, LookupResult)>) {
        let mut out = Vec::new();
        while let Some(t) = state.node.poll_transmit() {
            out.push(t);
        }
        let mut done = Vec::new();
        while let Some(ev) = state.node.poll_event() {
            match ev {
                Event::PeersFound { id, peers } => {
                    if let Some(tx) = state.streams.get(&id) {
                        for p in peers {
                            // bounded: a reader that falls behind loses
                            // peers, never blocks the DHT
                            let _ = tx.try_send(p);
                        }
                    }
                }
                Event::LookupDone { id, result } => {
                    // dropping the stream's sender ends its iterator
                    state.streams.remove(&id);
                    if let Some(tx) = state.waiters.remove(&id) {
                        done.push((tx, result));
                    }
                }
            }
        }
        (out, done)
    }

    /// Sends and reports outside the lock.
    fn flush(&self, out: Vec<Transmit>, done: Vec<(Sender<LookupResult>, LookupResult)>) {
        for t in out {
            if let Err(e) = self.sender.send_to(&t.bytes, t.to) {
                log::debug!("dht: send to {} failed: {e}", t.to);
            }
        }
        for (tx, result) in done {
            // capacity 1 and one result per lookup: never blocks; a waiter
            // that gave up has dropped its receiver
            let _ = tx.try_send(result);
        }
    }

    fn timer_loop(&self) {
        let mut g = self.state.lock();
        loop {
            if g.shutdown {
                return;
            }
            let now = Instant::now();
            let due = g.node.next_timeout();
            if now >= due {
                g.node.tick(now);
                let (out, done) = Shared::drain(&mut g);
                drop(g);
                self.flush(out, done);
                g = self.state.lock();
            } else {
                g.sleeping_until = Some(due);
                self.wake.wait_until(&mut g, due);
                g.sleeping_until = None;
            }
        }
    }
}

/// A DHT node with real time, sending through a [`SendTo`]. Share it as
/// `Arc<Dht>`; dropping the last reference stops its timer thread.
pub struct Dht {
    shared: Arc<Shared>,
    timer: Option<JoinHandle<()>>,
    wait_limit: Duration,
}

impl Dht {
    /// Starts a node that sends through `sender` and spawns its timer
    /// thread. Feed it datagrams with [`Dht::handle_datagram`].
    ///
    /// # Errors
    /// [`Error::Io`] if the thread cannot be spawned.
    pub fn start(config: Config, sender: Arc<dyn SendTo>) -> Result<Dht, Error> {
        let wait_limit = config.lookup_timeout + Duration::from_secs(5);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                node: Node::new(config, Instant::now()),
                waiters: HashMap::new(),
                streams: HashMap::new(),
                shutdown: false,
                sleeping_until: None,
            }),
            wake: Condvar::new(),
            sender,
        });
        let s = Arc::clone(&shared);
        let timer = std::thread::Builder::new()
            .name("dht-timer".into())
            .spawn(move || s.timer_loop())?;
        Ok(Dht {
            shared,
            timer: Some(timer),
            wait_limit,
        })
    }

    /// Handles one datagram that arrived from `from` at `now`.
    pub fn handle_datagram(&self, from: SocketAddr, bytes: &[u8], now: Instant) {
        let (out, done, wake) = {
            let mut g = self.shared.state.lock();
            g.node.handle_datagram(from, bytes, now);
            let wake = g.sleeping_until.is_some_and(|t| g.node.next_timeout() < t);
            let (out, done) = Shared::drain(&mut g);
            (out, done, wake)
        };
        if wake {
            self.shared.wake.notify_one();
        }
        self.shared.flush(out, done);
    }

    /// Starts a lookup with `f` and returns where its result will arrive.
    fn begin(&self, f: impl FnOnce(&mut Node, Instant) -> LookupId) -> Receiver<LookupResult> {
        let (tx, rx) = bounded(1);
        let (out, done) = {
            let mut g = self.shared.state.lock();
            let id = f(&mut g.node, Instant::now());
            g.waiters.insert(id, tx);
            Shared::drain(&mut g)
        };
        self.shared.wake.notify_one();
        self.shared.flush(out, done);
        rx
    }

    fn wait(&self, rx: Receiver<LookupResult>) -> Result<LookupResult, Error> {
        rx.recv_timeout(self.wait_limit).map_err(|e| match e {
            crossbeam_channel::RecvTimeoutError::Timeout => Error::Timeout,
            crossbeam_channel::RecvTimeoutError::Disconnected => Error::Shutdown,
        })
    }

    /// Starts a get_peers lookup without waiting; the result arrives on
    /// the returned channel.
    pub fn start_get_peers(&self, info_hash: InfoHash) -> Receiver<LookupResult> {
        self.begin(|n, now| n.get_peers(info_hash, now))
    }

    /// Starts a get_peers lookup whose peers arrive on the returned
    /// channel as replies bring them (at most 1,000 buffered); the channel
    /// closes when the lookup ends, so `for peer in rx` ends too.
    pub fn get_peers_stream(&self, info_hash: InfoHash) -> Receiver<SocketAddr> {
        self.begin_stream(|n, now| n.get_peers(info_hash, now))
    }

    /// Starts an announce (see [`Dht::announce`]) without waiting; the
    /// peers its get_peers phase finds arrive on the returned channel as
    /// replies bring them, and the channel closes when the lookup ends.
    pub fn announce_stream(&self, info_hash: InfoHash, port: Option<u16>) -> Receiver<SocketAddr> {
        self.begin_stream(|n, now| n.announce(info_hash, port, now))
    }

    /// Starts joining the DHT through `nodes` without waiting (see
    /// [`Dht::bootstrap`]); the result arrives on the returned channel.
    pub fn start_bootstrap(&self, nodes: &[SocketAddr]) -> Receiver<LookupResult> {
        self.begin(|n, now| n.bootstrap(nodes, now))
    }

    fn begin_stream(&self, f: impl FnOnce(&mut Node, Instant) -> LookupId) -> Receiver<SocketAddr> {
        let (tx, rx) = bounded(1000);
        let (out, done) = {
            let mut g = self.shared.state.lock();
            let id = f(&mut g.node, Instant::now());
            g.streams.insert(id, tx);
            Shared::drain(&mut g)
        };
        self.shared.wake.notify_one();
        self.shared.flush(out, done);
        rx
    }

    /// Joins the DHT through `nodes` (a find_node lookup for our own id)
    /// and returns the routing table size afterwards.
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Shutdown`].
    pub fn bootstrap(&self, nodes: &[SocketAddr]) -> Result<usize, Error> {
        let rx = self.begin(|n, now| n.bootstrap(nodes, now));
        self.wait(rx)?;
        Ok(self.node_count())
    }

    /// Looks up the k closest nodes to `target`.
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Shutdown`].
    pub fn find_node(&self, target: NodeId) -> Result<Vec<NodeInfo>, Error> {
        let rx = self.begin(|n, now| n.find_node(target, now));
        Ok(self.wait(rx)?.closest)
    }

    /// Looks up peers of `info_hash`.
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Shutdown`].
    pub fn get_peers(&self, info_hash: InfoHash) -> Result<Vec<SocketAddr>, Error> {
        Ok(self.wait(self.start_get_peers(info_hash))?.peers)
    }

    /// Announces that we serve `info_hash` on `port` (`None`: our UDP
    /// port, via `implied_port`). Returns the peers the lookup found and the
    /// number of nodes that stored the announce. Nodes forget an announce
    /// after 30 minutes (ours do too), so callers re-announce about every
    /// 15 minutes; nothing here does it for them.
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Shutdown`].
    pub fn announce(&self, info_hash: InfoHash, port: Option<u16>) -> Result<LookupResult, Error> {
        let rx = self.begin(|n, now| n.announce(info_hash, port, now));
        self.wait(rx)
    }

    /// Writes our id and good contacts to `path` atomically (a temporary
    /// file beside it, fsync, rename), so a restart can skip bootstrap.
    ///
    /// # Errors
    /// [`Error::Io`] if writing fails (the old file, if any, is intact).
    pub fn save_state(&self, path: &Path) -> Result<(), Error> {
        let bytes = self
            .shared
            .state
            .lock()
            .node
            .saved_state(Instant::now())
            .encode();
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let write = || -> io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
        Ok(())
    }

    /// Reads a state written by [`Dht::save_state`].
    ///
    /// # Errors
    /// [`Error::Io`] if reading fails, [`Error::State`] if it is not a state.
    pub fn load_state(path: &Path) -> Result<SavedState, Error> {
        let bytes = std::fs::read(path)?;
        Ok(SavedState::decode(&bytes)?)
    }

    /// Rejoins through the contacts of a saved state (start the node with
    /// `Config { id: Some(saved.id), .. }` to keep the id). Returns the
    /// routing table size afterwards.
    ///
    /// # Errors
    /// [`Error::Timeout`] or [`Error::Shutdown`].
    pub fn rejoin(&self, saved: &SavedState) -> Result<usize, Error> {
        let addrs: Vec<SocketAddr> = saved.nodes.iter().map(|n| n.addr).collect();
        self.bootstrap(&addrs)
    }

    /// Pings `addr`; it enters the routing table if it answers.
    pub fn add_node(&self, addr: SocketAddr) {
        let (out, done) = {
            let mut g = self.shared.state.lock();
            g.node.add_node(addr, Instant::now());
            Shared::drain(&mut g)
        };
        self.shared.wake.notify_one();
        self.shared.flush(out, done);
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.shared.state.lock().node.id()
    }

    /// Nodes in the routing table.
    pub fn node_count(&self) -> usize {
        self.shared.state.lock().node.routing_table().len()
    }

    /// The routing table's contacts.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        self.shared
            .state
            .lock()
            .node
            .routing_table()
            .entries()
            .map(|e| e.info)
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.shared.state.lock().node.stats()
    }

    /// Runs `f` on the node (for inspection; keep it short, it holds the lock).
    pub fn with_node<R>(&self, f: impl FnOnce(&Node) -> R) -> R {
        f(&self.shared.state.lock().node)
    }
}

impl Drop for Dht {
    fn drop(&mut self) {
        {
            let mut g = self.shared.state.lock();
            g.shutdown = true;
            g.waiters.clear();
            g.streams.clear();
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
    }
}

/// A DHT on its own UDP socket with a reader thread (standalone use and
/// tests; inside bittern the shared-socket dispatcher replaces it).
pub struct Runner {
    dht: Arc<Dht>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl Runner {
    /// Binds `addr` and starts the node and its reader thread.
    ///
    /// # Errors
    /// [`Error::Io`] if binding or spawning fails.
    pub fn bind(addr: SocketAddr, config: Config) -> Result<Runner, Error> {
        let socket = Arc::new(UdpSocket::bind(addr)?);
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let local = socket.local_addr()?;
        let sender: Arc<dyn SendTo> = socket.clone();
        let dht = Arc::new(Dht::start(config, sender)?);
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (Arc::clone(&dht), Arc::clone(&stop));
        let reader = std::thread::Builder::new()
            .name("dht-reader".into())
            .spawn(move || read_loop(&socket, &d, &s))?;
        Ok(Runner {
            dht,
            addr: local,
            stop,
            reader: Some(reader),
        })
    }

    /// The DHT (share it freely).
    pub fn dht(&self) -> &Arc<Dht> {
        &self.dht
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

fn read_loop(socket: &UdpSocket, dht: &Dht, stop: &AtomicBool) {
    let mut buf = vec![0u8; MAX_PACKET + 1];
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if n <= MAX_PACKET && is_krpc(&buf[..n]) {
                    dht.handle_datagram(from, &buf[..n], Instant::now());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => log::debug!("dht: recv failed: {e}"),
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
