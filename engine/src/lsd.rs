//! Local Service Discovery (BEP 14): a self-contained component with its
//! own thread that announces torrents on the LSD multicast group and
//! reports the peers it hears about.
//!
//! The caller (the controller) sends [`LsdCommand`]s with `try_send` and
//! never blocks; peers come out as [`LsdEvent`]s on the caller's bounded
//! channel, also with `try_send` (discovery is lossy anyway: a full
//! channel drops the event, logged at debug), so neither side blocks on
//! the other.
//!
//! Like libtorrent, the socket is bound to the LSD port with
//! `SO_REUSEADDR` (other clients on the machine share it), joins the
//! group on the given interface address, sends through that interface
//! (`IP_MULTICAST_IF`) with loopback on, and recognises its own looped-back
//! announces by a random cookie. The datagrams are libtorrent's exact
//! format ([`bittern_wire::lsd`]).
//!
//! Rate limits: each torrent is announced when added, then every
//! [`LsdConfig::reannounce`] (5 min); at most one datagram goes out per
//! [`LsdConfig::min_packet_interval`] (1 s), carrying every due torrent that
//! fits in 1400 bytes; at most [`LsdConfig::max_incoming_per_sec`] incoming
//! datagrams are looked at per second (Transmission's limit is 10).
//! Private torrents (BEP 27) are never announced, and peers heard for them
//! are never reported.
//!
//! Wiring (for the controller): one [`Lsd`] per session (not per torrent),
//! on the listen address and port, started only with `--lsd` and never in
//! tests outside a private network namespace; `Add` each public torrent
//! when it starts, `Remove` it when it stops, and feed `Peer` events to
//! the torrent's candidates like any other peer source.
//!
//! IPv6: with [`LsdConfig::interface_v6`] set, a second socket and thread
//! do the same on `[ff15::efc0:988f]:6771` through that interface (same
//! headers, `Host: [ff15::efc0:988f]:6771`, same cookie); a peer heard
//! there is reported at its IPv6 source address. (Linux loops IPv6
//! multicast on `lo` once `lo` has the multicast flag and a `local` route
//! for the group: the recipe of the engine's LSD tests.)
//!
//! Not filtered yet: libtorrent drops announces from outside the
//! interface's network (it knows the netmask); here every source but
//! unspecified and multicast ones is taken.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bittern_wire::lsd::{LsdAnnounce, LSD_GROUP_V4, LSD_GROUP_V6, LSD_PORT, MAX_DATAGRAM};
use bittern_wire::InfoHash;
use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};

use crate::listener::set_int;

/// Settings of the LSD component.
#[derive(Debug, Clone)]
pub struct LsdConfig {
    /// The address of the interface to announce and listen on (the
    /// session's listen address; `127.0.0.1` in tests).
    pub interface: Ipv4Addr,
    /// Our BitTorrent listen port, put in the `Port` header.
    pub listen_port: u16,
    /// The UDP port of the group: [`LSD_PORT`] (6771) except in tests.
    pub lsd_port: u16,
    /// How often each torrent is announced again (BEP 14: 5 min).
    pub reannounce: Duration,
    /// The least time between two datagrams sent.
    pub min_packet_interval: Duration,
    /// Incoming datagrams looked at per second; the rest are dropped.
    pub max_incoming_per_sec: u32,
    /// Multicast TTL: 1 keeps announces on the local link.
    pub ttl: u32,
    /// Also announce and listen on the IPv6 group through the interface of
    /// this index (0: the system's default multicast interface); `None`:
    /// IPv4 only. The session fills it in when it listens on IPv6.
    pub interface_v6: Option<u32>,
}

impl LsdConfig {
    /// Defaults for announcing `listen_port` on `interface`.
    pub fn new(interface: Ipv4Addr, listen_port: u16) -> LsdConfig {
        LsdConfig {
            interface,
            listen_port,
            lsd_port: LSD_PORT,
            reannounce: Duration::from_secs(300),
            min_packet_interval: Duration::from_secs(1),
            max_incoming_per_sec: 10,
            ttl: 1,
            interface_v6: None,
        }
    }
}

/// What the caller tells the LSD component.
#[derive(Debug, Clone)]
pub enum LsdCommand {
    /// Announce this torrent (unless `private`) and report peers for it.
    Add {
        /// The torrent (v1 hash, or the truncated v2 hash).
        info_hash: InfoHash,
        /// BEP 27: never announced, never reported.
        private: bool,
    },
    /// Stop announcing this torrent and reporting its peers.
    Remove(InfoHash),
}

/// What the LSD component reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsdEvent {
    /// A peer on the local network announced a torrent we added.
    Peer {
        /// The torrent.
        info_hash: InfoHash,
        /// The datagram's source address with the announced port.
        addr: SocketAddr,
    },
}

/// The running LSD component. Dropping it stops the thread (it ends within
/// its receive timeout, 200 ms); [`Lsd::join`] waits for it.
#[derive(Debug)]
pub struct Lsd {
    /// One command queue per family's thread (IPv4, then IPv6).
    txs: Vec<Sender<LsdCommand>>,
    threads: Vec<JoinHandle<()>>,
    cookie: String,
    /// Which groups were joined: (IPv4, IPv6).
    joined: (bool, bool),
}

impl Lsd {
    /// Opens the socket, joins the group on `config.interface` and starts
    /// the thread; the same on the IPv6 group when
    /// [`LsdConfig::interface_v6`] is set (a failure there is logged and
    /// LSD runs on IPv4 alone; a failure on the IPv4 group with the IPv6
    /// one joined leaves LSD on IPv6 alone).
    ///
    /// # Errors
    /// No group could be joined (the IPv4 socket's error is returned, for
    /// example no multicast route on that interface), or a thread could
    /// not start.
    pub fn spawn(config: LsdConfig, events: Sender<LsdEvent>) -> io::Result<Lsd> {
        let cookie = format!("{:x}", rand::random::<u32>() & 0x7fff_ffff);
        let group = SocketAddr::V4(SocketAddrV4::new(LSD_GROUP_V4, config.lsd_port));
        // Each family's group on its own: one that cannot be joined (no
        // route for 239.0.0.0/8, no IPv6 multicast) leaves the other on.
        let mut sockets = Vec::new();
        let v4 = match open_socket(&config) {
            Ok(s) => {
                sockets.push((s, group, "lsd"));
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Some(index) = config.interface_v6 {
            match open_socket_v6(&config, index) {
                Ok(s) => {
                    let group =
                        SocketAddr::V6(SocketAddrV6::new(LSD_GROUP_V6, config.lsd_port, 0, 0));
                    sockets.push((s, group, "lsd6"));
                }
                Err(e) => log::warn!("lsd: not on the ipv6 group (interface index {index}): {e}"),
            }
        }
        match &v4 {
            Err(_) if sockets.is_empty() => {
                return Err(v4.err().unwrap_or_else(|| io::Error::other("no lsd group")))
            }
            Err(e) => log::warn!("lsd: not on the ipv4 group, ipv6 only: {e}"),
            Ok(()) => {}
        }
        let mut lsd = Lsd {
            txs: Vec::new(),
            threads: Vec::new(),
            cookie: cookie.clone(),
            joined: (v4.is_ok(), sockets.iter().any(|(_, g, _)| g.is_ipv6())),
        };
        for (socket, group, name) in sockets {
            let (tx, rx) = bounded(256);
            let worker = Worker {
                socket,
                group,
                config: config.clone(),
                cookie: cookie.clone(),
                commands: rx,
                events: events.clone(),
                torrents: HashMap::new(),
                next_send: Instant::now(),
                window: (Instant::now(), 0),
            };
            let thread = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || worker.run())?;
            lsd.txs.push(tx);
            lsd.threads.push(thread);
        }
        Ok(lsd)
    }

    /// Whether the IPv6 group is joined.
    pub fn on_ipv6(&self) -> bool {
        self.joined.1
    }

    /// Whether the IPv4 group is joined (a session whose IPv4 group
    /// cannot be joined still runs LSD on the IPv6 one).
    pub fn on_ipv4(&self) -> bool {
        self.joined.0
    }

    /// Our cookie (announces carrying it are our own, looped back).
    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Queues a command without blocking.
    ///
    /// # Errors
    /// The queue is full or the thread has ended (the command comes back).
    pub fn send(&self, cmd: LsdCommand) -> Result<(), TrySendError<LsdCommand>> {
        // Taken if any family's thread took it (each keeps its own
        // schedule); otherwise the first failure comes back.
        let mut failed = None;
        let mut taken = false;
        for tx in &self.txs {
            match tx.try_send(cmd.clone()) {
                Ok(()) => taken = true,
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match (taken, failed) {
            (true, _) => Ok(()),
            (false, Some(e)) => Err(e),
            (false, None) => Err(TrySendError::Disconnected(cmd)),
        }
    }

    /// Stops the threads and waits for them.
    pub fn join(mut self) {
        self.txs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A UDP socket bound to `0.0.0.0:lsd_port` with `SO_REUSEADDR`, joined to
/// the group on the interface, sending through it with loopback on.
fn open_socket(config: &LsdConfig) -> io::Result<UdpSocket> {
    // SAFETY: plain socket(2) call; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: config.lsd_port.to_be(),
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd and a sockaddr_in of the size given.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let ifaddr = libc::in_addr {
        s_addr: u32::from(config.interface).to_be(),
    };
    // SAFETY: valid fd, an in_addr option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&ifaddr as *const libc::in_addr).cast(),
            std::mem::size_of::<libc::in_addr>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let socket = UdpSocket::from(owned);
    socket.join_multicast_v4(&LSD_GROUP_V4, &config.interface)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(config.ttl)?;
    Ok(socket)
}

/// A UDP socket bound to `[::]:lsd_port` (IPv6 only, `SO_REUSEADDR`),
/// joined to the IPv6 group on interface `index`, sending through it with
/// loopback on and `ttl` hops.
fn open_socket_v6(config: &LsdConfig, index: u32) -> io::Result<UdpSocket> {
    // SAFETY: plain socket(2) call; the fd is owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let set = |level, name, v| set_int(fd, level, name, v);
    set(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    set(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    let addr = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: config.lsd_port.to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr { s6_addr: [0; 16] },
        sin6_scope_id: 0,
    };
    // SAFETY: valid fd and a sockaddr_in6 of the size given.
    let r = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    set(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_IF,
        libc::c_int::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    )?;
    set(
        libc::IPPROTO_IPV6,
        libc::IPV6_MULTICAST_HOPS,
        libc::c_int::try_from(config.ttl).unwrap_or(1),
    )?;
    let socket = UdpSocket::from(owned);
    socket.join_multicast_v6(&LSD_GROUP_V6, index)?;
    socket.set_multicast_loop_v6(true)?;
    Ok(socket)
}

struct Torrent {
    private: bool,
    next_announce: Instant,
}

struct Worker {
    socket: UdpSocket,
    /// The group and port announces go to (this worker's family).
    group: SocketAddr,
    config: LsdConfig,
    cookie: String,
    commands: Receiver<LsdCommand>,
    events: Sender<LsdEvent>,
    torrents: HashMap<InfoHash, Torrent>,
    /// No datagram goes out before this.
    next_send: Instant,
    /// Start of the current one-second window and datagrams seen in it.
    window: (Instant, u32),
}

impl Worker {
    fn run(mut self) {
        let mut buf = [0u8; 2048];
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(c) => self.command(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if now >= self.next_send {
                self.announce_due(now);
            }
            let wait = self.next_wakeup(now).saturating_duration_since(now);
            let wait = wait.clamp(Duration::from_millis(1), Duration::from_millis(200));
            if let Err(e) = self.socket.set_read_timeout(Some(wait)) {
                log::warn!("lsd: cannot set the socket timeout: {e}");
                return;
            }
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.incoming(&buf[..n], from),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    log::debug!("lsd: receive failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn command(&mut self, c: LsdCommand) {
        match c {
            LsdCommand::Add { info_hash, private } => {
                let next_announce = Instant::now();
                self.torrents.insert(
                    info_hash,
                    Torrent {
                        private,
                        next_announce,
                    },
                );
            }
            LsdCommand::Remove(h) => {
                self.torrents.remove(&h);
            }
        }
    }

    /// When something is next due: a send, or the receive poll.
    fn next_wakeup(&self, now: Instant) -> Instant {
        let due = self
            .torrents
            .values()
            .filter(|t| !t.private)
            .map(|t| t.next_announce)
            .min();
        match due {
            Some(d) => d.max(self.next_send),
            None => now + Duration::from_millis(200),
        }
    }

    /// Sends one datagram with the most overdue torrents that fit.
    fn announce_due(&mut self, now: Instant) {
        let mut due: Vec<(Instant, InfoHash)> = self
            .torrents
            .iter()
            .filter(|(_, t)| !t.private && t.next_announce <= now)
            .map(|(h, t)| (t.next_announce, *h))
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort();
        let group = self.group;
        let msg = LsdAnnounce {
            port: self.config.listen_port,
            info_hashes: due.iter().map(|&(_, h)| h).collect(),
            cookie: Some(self.cookie.clone()),
        };
        let Some(first) = msg.encode_many(group).into_iter().next() else {
            return;
        };
        debug_assert!(first.len() <= MAX_DATAGRAM);
        // The hashes in the first datagram are the first ones of `due`.
        let sent = LsdAnnounce::parse(&first).map_or(0, |a| a.info_hashes.len());
        self.next_send = now + self.config.min_packet_interval;
        match self.socket.send_to(&first, group) {
            Ok(_) => {
                for &(_, h) in due.iter().take(sent) {
                    if let Some(t) = self.torrents.get_mut(&h) {
                        t.next_announce = now + self.config.reannounce;
                    }
                }
                log::debug!("lsd: announced {sent} torrents");
            }
            Err(e) => log::debug!("lsd: announce failed: {e}"),
        }
    }

    fn incoming(&mut self, datagram: &[u8], from: SocketAddr) {
        let now = Instant::now();
        if now.duration_since(self.window.0) >= Duration::from_secs(1) {
            self.window = (now, 0);
        }
        self.window.1 += 1;
        if self.window.1 > self.config.max_incoming_per_sec {
            return;
        }
        let a = match LsdAnnounce::parse(datagram) {
            Ok(a) => a,
            Err(e) => {
                log::trace!("lsd: {from}: {e}");
                return;
            }
        };
        if a.cookie.as_deref() == Some(self.cookie.as_str()) {
            return; // our own, looped back
        }
        if from.ip().is_unspecified() || from.ip().is_multicast() {
            log::debug!("lsd: dropping an announce from {from}");
            return;
        }
        let addr = SocketAddr::new(from.ip(), a.port);
        for h in a.info_hashes {
            if self.torrents.get(&h).is_none_or(|t| t.private) {
                continue;
            }
            let ev = LsdEvent::Peer { info_hash: h, addr };
            match self.events.try_send(ev) {
                Ok(()) => log::debug!("lsd: peer {addr} for {h}"),
                Err(TrySendError::Full(_)) => log::debug!("lsd: event queue full, dropped {addr}"),
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}
