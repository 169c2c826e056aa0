//! The listening sockets (mainline SingleportListener): one port for every
//! torrent, on one or more addresses, each with an accept thread that
//! reads the 68-byte handshake and routes the socket to the torrent with
//! that info hash.
//!
//! IPv4 and IPv6 are separate sockets on the same port: an IPv6 socket is
//! bound with `IPV6_V6ONLY`, so `0.0.0.0:P` and `[::]:P` never overlap
//! (and IPv4 peers never show up as `::ffff:a.b.c.d`), whatever the
//! system's `net.ipv6.bindv6only` says. See
//! [`SessionConfig::dual_stack`](crate::SessionConfig::dual_stack).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, warn};
use parking_lot::Mutex;

use crate::config::{Encryption, SessionConfig};
use crate::error::Error;
use crate::session::{Registry, SessionShared};
use crate::torrent::{Ctl, TorrentCommand};
use crate::transport::Socket;

/// Handshakes being read at once; beyond it the oldest is dropped to make
/// room for the newcomer (a flood of half-open handshakes cannot shut a
/// real peer out for the whole handshake deadline).
const MAX_PENDING_HANDSHAKES: usize = 256;
/// Handshake threads alive at most, counting those cut to make room that
/// have not ended yet (on a loaded machine they end late): beyond it a
/// newcomer is refused, so the bound on threads is hard.
const MAX_HANDSHAKE_THREADS: usize = MAX_PENDING_HANDSHAKES + 32;
/// Dropped handshakes are logged at most this often (with a count).
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);
/// Handshakes pending from one host (127.0.0.1 exempt), so that silent
/// connections from one attacker cannot shut every other peer out.
const MAX_PENDING_PER_HOST: usize = 8;
/// Connections the kernel queues before `accept` (std uses 128).
const BACKLOG: libc::c_int = 1024;
/// Tries at finding a port free on every address when port 0 was asked:
/// the port the first socket got may be taken on another address.
const PORT_TRIES: usize = 8;

/// Binds a TCP listening socket on `addr`, IPv6 ones with `IPV6_V6ONLY`.
///
/// # Errors
/// What `socket`, `setsockopt`, `bind` or `listen` failed with (for
/// example `EADDRINUSE`, or `EAFNOSUPPORT` on a machine without IPv6).
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let family = if addr.is_ipv6() {
        libc::AF_INET6
    } else {
        libc::AF_INET
    };
    // SAFETY: plain socket(2) call; the fd is owned right below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // As std does: a restarted client can bind its port again at once,
    // while connections of the last run are in TIME_WAIT.
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let r = match addr {
        SocketAddr::V4(a) => {
            let sa = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: valid fd and a sockaddr_in of the size given.
            unsafe {
                libc::bind(
                    fd,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
            let sa = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: valid fd and a sockaddr_in6 of the size given.
            unsafe {
                libc::bind(
                    fd,
                    (&sa as *const libc::sockaddr_in6).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid, bound fd.
    if unsafe { libc::listen(fd, BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(owned))
}

/// `setsockopt` of a `c_int` option on `fd`.
pub(crate) fn set_int(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: valid fd, a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The unspecified address of the other family (`[::]` for `0.0.0.0`).
fn other_unspecified(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => Ipv6Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED.into(),
    }
}

/// Binds every listening address of `config` on one port: `listen`, the
/// other family's unspecified address when [`SessionConfig::dual_stack`]
/// applies (a failure there, such as a machine without IPv6, is logged
/// and skipped), and each of [`SessionConfig::listen_also`]. With port 0
/// the port `listen` gets is used for all, and another is tried when it is
/// taken on one of the other addresses.
///
/// # Errors
/// [`Error::Listen`] when `listen` or one of `listen_also` cannot be bound.
pub(crate) fn bind_all(config: &SessionConfig) -> Result<Vec<TcpListener>, Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        match bind_once(config) {
            Err(Retry::PortTaken(addr, source)) if tries >= PORT_TRIES => {
                return Err(Error::Listen { addr, source })
            }
            Err(Retry::PortTaken(..)) => {}
            Err(Retry::Fatal(e)) => return Err(e),
            Ok(all) => return Ok(all),
        }
    }
}

enum Retry {
    /// The ephemeral port `listen` got is in use on another address.
    PortTaken(SocketAddr, io::Error),
    Fatal(Error),
}

fn bind_once(config: &SessionConfig) -> Result<Vec<TcpListener>, Retry> {
    let first = bind(config.listen).map_err(|source| {
        Retry::Fatal(Error::Listen {
            addr: config.listen,
            source,
        })
    })?;
    let port = first
        .local_addr()
        .map_err(|source| {
            Retry::Fatal(Error::Listen {
                addr: config.listen,
                source,
            })
        })?
        .port();
    let ephemeral = config.listen.port() == 0;
    let mut all = vec![first];
    let dual = config.dual_stack && config.listen.ip().is_unspecified();
    if dual {
        let addr = SocketAddr::new(other_unspecified(config.listen.ip()), port);
        match bind(addr) {
            Ok(l) => all.push(l),
            Err(e) if ephemeral && e.kind() == io::ErrorKind::AddrInUse => {
                return Err(Retry::PortTaken(addr, e))
            }
            Err(e) => warn!("not listening on {addr}: {e}"),
        }
    }
    for ip in &config.listen_also {
        let addr = SocketAddr::new(*ip, port);
        if *ip == config.listen.ip() || (dual && *ip == other_unspecified(config.listen.ip())) {
            continue;
        }
        match bind(addr) {
            Ok(l) => all.push(l),
            Err(e) if ephemeral && e.kind() == io::ErrorKind::AddrInUse => {
                return Err(Retry::PortTaken(addr, e))
            }
            Err(source) => return Err(Retry::Fatal(Error::Listen { addr, source })),
        }
    }
    Ok(all)
}

/// One listening socket and its accept thread.
pub(crate) struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// A clone of the socket, to wake the blocked `accept` at shutdown.
    socket: TcpListener,
    thread: Option<JoinHandle<()>>,
}

/// What every accept thread of a session shares: the slots of handshakes
/// being read, in all and per remote host.
#[derive(Default, Clone)]
pub(crate) struct Pending {
    all: Arc<AtomicUsize>,
    per_host: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// A handle on each pending handshake's socket, oldest first, to cut
    /// the oldest when the bound is reached.
    open: Arc<Mutex<VecDeque<(u64, Socket)>>>,
    next: Arc<AtomicU64>,
    /// When a drop was last logged, and drops since.
    dropped: Arc<Mutex<(Option<Instant>, u64)>>,
}

impl Listener {
    /// Starts the accept thread of `socket`.
    pub(crate) fn spawn(
        socket: TcpListener,
        registry: Registry,
        commands: Sender<Ctl>,
        shared: Arc<SessionShared>,
        pending: Pending,
    ) -> Result<Listener, Error> {
        let addr = socket.local_addr().map_err(Error::Spawn)?;
        let clone = socket.try_clone().map_err(Error::Spawn)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bittern-listener".into())
                .spawn(move || listen(socket, &registry, &commands, &stop, &shared, &pending))
                .map_err(Error::Spawn)?
        };
        Ok(Listener {
            addr,
            stop,
            socket: clone,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the accept thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Linux wakes an `accept` blocked on a socket shut down (EINVAL);
        // a connection to it wakes it anywhere.
        // SAFETY: shutdown(2) on a valid fd we own a clone of.
        unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_RDWR) };
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        if let Some(t) = self.thread.take() {
            if !t.is_finished() {
                let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
            }
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn listen(
    listener: TcpListener,
    registry: &Registry,
    commands: &Sender<Ctl>,
    stop: &AtomicBool,
    shared: &Arc<SessionShared>,
    pending: &Pending,
) {
    loop {
        let conn = listener.accept();
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if !shared.config.tcp {
            debug!("dropping incoming tcp connection: tcp is off");
            continue;
        }
        admit(Socket::Tcp(stream), registry, commands, shared, pending);
    }
}

/// Admission of an incoming connection, TCP or uTP alike: bounded pending
/// handshakes in all and per host, then a short-lived thread reads the
/// handshake and routes the connection to its torrent.
pub(crate) fn admit(
    socket: Socket,
    registry: &Registry,
    commands: &Sender<Ctl>,
    shared: &Arc<SessionShared>,
    pending: &Pending,
) {
    if shared.connections.load(Ordering::Relaxed) >= shared.config.max_connections {
        debug!("dropping incoming connection: too many");
        return;
    }
    let Ok(peer) = socket.peer_addr() else {
        return;
    };
    let host = peer.ip();
    if shared.blocked(host) {
        // Closed unread: the blocklist refuses it before any handshake.
        return;
    }
    {
        let mut hosts = pending.per_host.lock();
        let n = hosts.entry(host).or_insert(0);
        // 127.0.0.1 and ::1 are exempt: every peer of a local test or
        // demo swarm comes from there.
        let local = host == Ipv4Addr::LOCALHOST || host == Ipv6Addr::LOCALHOST;
        if *n >= MAX_PENDING_PER_HOST && !local {
            debug!("{peer}: dropping incoming connection: too many pending from this host");
            return;
        }
        *n += 1;
    }
    if pending.all.load(Ordering::Relaxed) >= MAX_HANDSHAKE_THREADS {
        // cut handshakes still ending: no thread for this one
        debug!("{peer}: dropping incoming connection: too many handshakes ending");
        pending.release(host);
        return;
    }
    if pending.all.load(Ordering::Relaxed) >= MAX_PENDING_HANDSHAKES {
        // the oldest pending handshake makes room: its thread sees the
        // socket closed and ends
        let oldest = pending.open.lock().pop_front();
        match oldest {
            Some((_, old)) => {
                let _ = old.shutdown(Shutdown::Both);
                pending.note_drop(peer);
            }
            None => {
                debug!("{peer}: dropping incoming connection: too many handshakes pending");
                pending.release(host);
                return;
            }
        }
    }
    pending.all.fetch_add(1, Ordering::Relaxed);
    let id = pending.next.fetch_add(1, Ordering::Relaxed);
    if let Ok(handle) = socket.try_clone() {
        pending.open.lock().push_back((id, handle));
    }
    let (registry, slot) = (registry.clone(), pending.clone());
    let commands = commands.clone();
    let timeout = shared.config.timing.connect_timeout;
    let policy = shared.encryption();
    let session = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("bittern-handshake".into())
        .spawn(move || {
            route(socket, &registry, &commands, timeout, policy, &session);
            slot.finish(id, host);
        });
    if spawned.is_err() {
        pending.finish(id, host);
    }
}

/// The thread that takes incoming uTP connections of one multiplexer and
/// admits them like TCP ones.
pub(crate) struct UtpAcceptor {
    /// Dropped to end the thread: its accept wakes at once.
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl UtpAcceptor {
    /// Starts the accept thread of `mux`.
    pub(crate) fn spawn(
        mux: bittern_utp::Multiplexer,
        registry: Registry,
        commands: Sender<Ctl>,
        shared: Arc<SessionShared>,
        pending: Pending,
    ) -> Result<UtpAcceptor, Error> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("bittern-utp-accept".into())
            .spawn(move || loop {
                match mux.accept_until(&stopped) {
                    Ok(Some(s)) => admit(Socket::Utp(s), &registry, &commands, &shared, &pending),
                    Ok(None) => break,
                    Err(e) => {
                        debug!("utp accept: {e}");
                        // The stop still ends the thread at once.
                        let pause = stopped.recv_timeout(Duration::from_millis(50));
                        if !matches!(pause, Err(crossbeam_channel::RecvTimeoutError::Timeout)) {
                            break;
                        }
                    }
                }
            })
            .map_err(Error::Spawn)?;
        Ok(UtpAcceptor {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread (at once: a shutdown does not wait on a poll
    /// interval) and waits for it.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UtpAcceptor {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Pending {
    /// Ends handshake `id`: forgets its socket handle, frees its slots.
    fn finish(&self, id: u64, host: IpAddr) {
        self.open.lock().retain(|(i, _)| *i != id);
        self.all.fetch_sub(1, Ordering::Relaxed);
        self.release(host);
    }

    /// Logs that a pending handshake was cut for `newcomer`: the first
    /// time, then at most once per [`DROP_LOG_EVERY`] with a count.
    fn note_drop(&self, newcomer: SocketAddr) {
        let mut d = self.dropped.lock();
        d.1 += 1;
        if d.0.is_some_and(|t| t.elapsed() < DROP_LOG_EVERY) {
            return;
        }
        warn!(
            "{} pending handshake(s) dropped, the oldest first, to make room for new \
             connections ({MAX_PENDING_HANDSHAKES} at most; latest from {newcomer})",
            d.1
        );
        *d = (Some(Instant::now()), 0);
    }

    /// Frees the per-host slot taken by `admit`.
    fn release(&self, host: IpAddr) {
        let mut hosts = self.per_host.lock();
        if let Some(n) = hosts.get_mut(&host) {
            *n -= 1;
            if *n == 0 {
                hosts.remove(&host);
            }
        }
    }
}

/// Reads the handshake (plain or MSE, as `policy` allows) and hands the
/// connection to its torrent.
fn route(
    socket: Socket,
    registry: &Registry,
    commands: &Sender<Ctl>,
    timeout: Duration,
    policy: Encryption,
    shared: &SessionShared,
) {
    let peer = socket.peer_addr().ok();
    let utp = matches!(socket, Socket::Utp(_));
    let lookup = |h: &[u8; 20]| registry.lock().find_obfuscated(h);
    let deadline = Instant::now() + timeout;
    let (stream, hs) = match crate::handshake::accept(socket, policy, lookup, deadline) {
        Ok(x) => x,
        Err(e) => {
            debug!("{peer:?}: incoming connection dropped: {e}");
            return;
        }
    };
    let target = registry.lock().get(&hs.info_hash).copied();
    match target {
        Some(id) => {
            if let Some(from) = peer {
                shared.note_incoming(from, utp);
            }
            if commands
                .try_send(Ctl::Command(
                    id,
                    TorrentCommand::Incoming(Box::new(stream), hs),
                ))
                .is_err()
            {
                debug!("{peer:?}: torrent busy, dropping connection");
            }
        }
        None => debug!(
            "{peer:?}: handshake for unknown torrent {}",
            hs.info_hash.to_hex()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this machine has an IPv6 loopback to bind.
    fn have_v6() -> bool {
        std::net::TcpListener::bind("[::1]:0").is_ok()
    }

    #[test]
    fn v4_and_v6_sockets_share_a_port_without_overlapping() {
        if !bittern_testkit::require("an IPv6 loopback (::1)", have_v6()) {
            return;
        }
        let config = SessionConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            ..SessionConfig::default()
        };
        let all = bind_all(&config).unwrap();
        assert_eq!(all.len(), 2, "0.0.0.0 and [::]");
        let (a, b) = (all[0].local_addr().unwrap(), all[1].local_addr().unwrap());
        assert_eq!(a.port(), b.port());
        assert!(a.is_ipv4() && b.is_ipv6() && b.ip().is_unspecified());
        // Each family reaches its own socket: the IPv6 one is V6ONLY, so
        // an IPv4 client never lands on it as ::ffff:127.0.0.1.
        let _c4 = TcpStream::connect((Ipv4Addr::LOCALHOST, a.port())).unwrap();
        let (s4, from4) = all[0].accept().unwrap();
        assert_eq!(from4.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
        let _c6 = TcpStream::connect((Ipv6Addr::LOCALHOST, a.port())).unwrap();
        let (s6, from6) = all[1].accept().unwrap();
        assert_eq!(from6.ip(), IpAddr::from(Ipv6Addr::LOCALHOST));
        drop((s4, s6));

        // Without dual stack, one socket; a specific IPv6 address beside a
        // specific IPv4 one shares its port.
        let config = SessionConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            listen_also: vec![Ipv6Addr::LOCALHOST.into()],
            ..SessionConfig::default()
        };
        let all = bind_all(&config).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[1].local_addr().unwrap(),
            SocketAddr::new(
                Ipv6Addr::LOCALHOST.into(),
                all[0].local_addr().unwrap().port()
            )
        );
        let config = SessionConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            dual_stack: false,
            ..SessionConfig::default()
        };
        assert_eq!(bind_all(&config).unwrap().len(), 1);
    }

    #[test]
    fn a_taken_extra_address_fails_or_moves_the_port() {
        if !bittern_testkit::require("an IPv6 loopback (::1)", have_v6()) {
            return;
        }
        // A fixed port taken on ::1 is an error naming that address.
        let busy = bind("[::1]:0".parse().unwrap()).unwrap();
        let port = busy.local_addr().unwrap().port();
        let config = SessionConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            listen_also: vec![Ipv6Addr::LOCALHOST.into()],
            ..SessionConfig::default()
        };
        match bind_all(&config) {
            Err(Error::Listen { addr, source }) => {
                assert_eq!(addr, SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port));
                assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
            }
            other => panic!("expected a listen error, got {:?}", other.map(|v| v.len())),
        }
    }

    #[test]
    fn stopping_a_listener_wakes_its_accept() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let clone = socket.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let _ = socket.accept();
                stop.load(Ordering::SeqCst)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        // SAFETY: shutdown(2) on a valid fd.
        unsafe { libc::shutdown(clone.as_raw_fd(), libc::SHUT_RDWR) };
        let began = Instant::now();
        assert!(t.join().unwrap());
        assert!(began.elapsed() < Duration::from_secs(1));
    }
}
