//! [`UtpSocket`]: a UDP socket, its reader thread and a [`Multiplexer`], for
//! standalone use. A session that shares the socket with the DHT owns the
//! reader itself and only uses the multiplexer (see the crate docs); this
//! type is also the reference for how that reader should behave: receive a
//! batch (`recvmmsg`), offer each datagram to
//! [`Multiplexer::handle_datagram`], give the rest to the other protocols,
//! then [`Multiplexer::flush`].

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::mux::{Multiplexer, MuxConfig, Shared};
use crate::stream::UtpStream;

/// Socket buffer size asked for: uTP at loopback speed overflows the
/// kernel's default 208 KiB and reads the drops as congestion.
pub const SOCKET_BUFFER: usize = 4 << 20;
/// Datagrams read per `recvmmsg` call.
const BATCH: usize = 32;
/// Largest datagram read; longer ones are dropped as truncated.
const MAX_DATAGRAM: usize = 4096;
/// How often the reader checks whether its multiplexer is gone, where the
/// multiplexer's drop cannot wake it (not Linux). On Linux the reader
/// blocks (up to [`RELEASE_IDLE`]) and the drop wakes it (`shutdown(SHUT_RD)`).
#[cfg(not(target_os = "linux"))]
const POLL: Duration = Duration::from_millis(100);
/// How long the reader keeps receive buffers that bulk traffic touched
/// once none comes any more. Then it swaps them for a fresh allocation
/// (untouched pages), so a long-lived process that moved data over uTP
/// once does not keep the whole batch (2 MiB with GRO) resident while it
/// only sees the odd DHT packet. On Linux it is also the reader's receive
/// timeout, so a silent socket gets the check too.
const RELEASE_IDLE: Duration = Duration::from_secs(30);
/// A datagram longer than this touched more than one page of its slot.
const PAGE: usize = 4096;

/// Handler for datagrams that are not uTP (DHT, UDP tracker replies).
pub type OtherHandler = Box<dyn FnMut(SocketAddr, &[u8]) + Send>;

/// A bound UDP socket carrying uTP (see the module docs). Streams keep the
/// socket and its reader thread alive after this value is dropped; the
/// thread ends once the last stream and multiplexer clone are gone.
pub struct UtpSocket {
    mux: Multiplexer,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    buffers: SocketBuffers,
}

/// Socket buffer sizes the kernel granted, in usable bytes (half of what
/// `getsockopt` reports on Linux, which counts its bookkeeping too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBuffers {
    /// `SO_RCVBUF`.
    pub recv: usize,
    /// `SO_SNDBUF`.
    pub send: usize,
}

impl UtpSocket {
    /// Binds `addr` with default settings; non-uTP datagrams are dropped.
    ///
    /// # Errors
    /// Bind or thread-spawn errors.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Self::bind_with(addr, MuxConfig::default(), Box::new(|_, _| {}))
    }

    /// Binds `addr`; datagrams that are not uTP go to `other`, called on the
    /// reader thread (keep it short: hand off to a bounded channel).
    ///
    /// # Errors
    /// Bind or thread-spawn errors.
    pub fn bind_with(
        addr: impl ToSocketAddrs,
        cfg: MuxConfig,
        other: OtherHandler,
    ) -> io::Result<Self> {
        let socket = Arc::new(UdpSocket::bind(addr)?);
        let buffers = tune_socket(&socket, cfg.socket_buffer);
        #[cfg(not(target_os = "linux"))]
        socket.set_read_timeout(Some(POLL))?;
        let local = socket.local_addr()?;
        let mux = Multiplexer::new(socket.clone(), Some(local), cfg)?;
        #[cfg(target_os = "linux")]
        mux.on_drop(wake_reader(&socket));
        let weak = mux.downgrade();
        let reader = socket.clone();
        // Before any connect can send a SYN: its ICMP error must be reported.
        let icmp = crate::icmp::enable(&socket);
        thread::Builder::new()
            .name(format!("utp-net {local}"))
            .spawn(move || reader_loop(&reader, &weak, other, icmp))?;
        Ok(Self {
            mux,
            socket,
            local,
            buffers,
        })
    }

    /// The socket buffer sizes the kernel granted (a warning was logged
    /// when they are below [`MuxConfig::socket_buffer`]).
    pub fn socket_buffers(&self) -> SocketBuffers {
        self.buffers
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The UDP socket, to send other protocols' datagrams from the same port.
    /// It reports ICMP errors (see [`crate::icmp`]): send with
    /// [`crate::icmp::send_retrying`], as a send may fail with an earlier
    /// datagram's error without going.
    pub fn udp(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// The multiplexer (connect, accept, counters).
    pub fn multiplexer(&self) -> &Multiplexer {
        &self.mux
    }

    /// See [`Multiplexer::connect`].
    ///
    /// # Errors
    /// `TimedOut`, `ConnectionRefused`.
    pub fn connect(&self, peer: SocketAddr, timeout: Duration) -> io::Result<UtpStream> {
        self.mux.connect(peer, timeout)
    }

    /// See [`Multiplexer::accept`].
    ///
    /// # Errors
    /// See [`Multiplexer::accept`].
    pub fn accept(&self) -> io::Result<UtpStream> {
        self.mux.accept()
    }

    /// See [`Multiplexer::accept_timeout`].
    ///
    /// # Errors
    /// `TimedOut` when nothing arrived.
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<UtpStream> {
        self.mux.accept_timeout(timeout)
    }

    /// See [`Multiplexer::accept_until`].
    ///
    /// # Errors
    /// See [`Multiplexer::accept_until`].
    pub fn accept_until(
        &self,
        stop: &crossbeam_channel::Receiver<()>,
    ) -> io::Result<Option<UtpStream>> {
        self.mux.accept_until(stop)
    }
}

/// Wakes a thread blocked reading `socket` for good: `shutdown(SHUT_RD)`
/// on a UDP socket sets the receive side shut (later reads return at once)
/// and wakes waiting readers, although it answers `ENOTCONN` for an
/// unconnected socket.
#[cfg(target_os = "linux")]
fn wake_reader(socket: &Arc<UdpSocket>) -> Box<dyn FnOnce() + Send> {
    use std::os::fd::AsRawFd;
    let socket = socket.clone();
    Box::new(move || {
        // SAFETY: shutdown(2) on a descriptor the Arc keeps open.
        unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RD) };
    })
}

fn reader_loop(socket: &UdpSocket, weak: &Weak<Shared>, mut other: OtherHandler, icmp: bool) {
    let gro = enable_gro(socket);
    log::debug!("utp reader: UDP GRO {}", if gro { "on" } else { "off" });
    log::debug!(
        "utp reader: ICMP errors {}",
        if icmp { "on" } else { "off" }
    );
    let mut drained = Instant::now();
    let mut batch = Batch::new(gro);
    #[cfg(target_os = "linux")]
    if let Err(e) = socket.set_read_timeout(Some(RELEASE_IDLE)) {
        log::debug!("utp reader: no receive timeout ({e}): idle buffers kept until traffic");
    }
    loop {
        batch.release_if_idle(Instant::now());
        let got = batch.recv(socket);
        let Some(mux) = Multiplexer::upgrade(weak) else {
            return;
        };
        let failed = got.is_err();
        match got {
            Ok(()) => {
                batch.note_bulk(Instant::now());
                for (from, data, segment) in batch.messages() {
                    mux.handle_run(from, segments(data, segment), &mut |d| other(from, d));
                }
                mux.flush();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if crate::icmp::is_icmp_error(&e) => {} // drained below
            Err(e) => log::debug!("utp reader: {e}"),
        }
        // A failed receive is how a pending ICMP error shows. A send may
        // have taken it instead: then the multiplexer's timer drains the
        // queue (it runs while there are connections), and so does this
        // reader once traffic wakes it. After the batch: a connect's answer
        // that came with it counts.
        if icmp && (failed || drained.elapsed() >= crate::icmp::DRAIN_EVERY) {
            drained = Instant::now();
            mux.drain_unreachable();
        }
    }
}

/// Asks for `size`-byte send and receive buffers (`*FORCE` first, which
/// needs `CAP_NET_ADMIN`, else the plain options, which the kernel caps at
/// `net.core.rmem_max` / `wmem_max`) and returns what it granted. When it
/// gave less, logs a warning naming the granted size, the wanted one and
/// the sysctl to raise. Call it on a socket shared with the multiplexer
/// too: with the kernel's default 208 KiB, one window of uTP overflows the
/// receive buffer and the drops read as congestion (use [`SOCKET_BUFFER`]).
/// Off Linux nothing is set and `size` is returned.
pub fn tune_socket(socket: &UdpSocket, size: usize) -> SocketBuffers {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        let mut granted = [0usize; 2];
        let opts = [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, "receive", "rmem_max"),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, "send", "wmem_max"),
        ];
        for (i, (force, plain, what, sysctl)) in opts.into_iter().enumerate() {
            let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let p = (&v as *const libc::c_int).cast();
            // SAFETY: fd is a live socket owned by `socket`; p/len describe a
            // c_int that outlives the calls.
            let set = unsafe {
                libc::setsockopt(fd, libc::SOL_SOCKET, force, p, len) == 0
                    || libc::setsockopt(fd, libc::SOL_SOCKET, plain, p, len) == 0
            };
            let mut got: libc::c_int = 0;
            let mut got_len = len;
            // SAFETY: as above; `got`/`got_len` are valid for writing.
            let read = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    plain,
                    (&mut got as *mut libc::c_int).cast(),
                    &mut got_len,
                ) == 0
            };
            // Linux reports twice the usable size it granted.
            let usable = if read { got.max(0) as usize / 2 } else { 0 };
            granted[i] = usable;
            if !set || !read || usable < size {
                log::warn!(
                    "utp: the kernel capped the UDP {what} buffer at {usable} bytes, {size} wanted: \
                     at speed uTP loses datagrams and reads the drops as congestion; \
                     run with CAP_NET_ADMIN or raise net.core.{sysctl} to {size}"
                );
            }
        }
        SocketBuffers {
            recv: granted[0],
            send: granted[1],
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        SocketBuffers {
            recv: size,
            send: size,
        }
    }
}

/// Reusable buffers for one batch of datagrams. With UDP GRO on, one
/// slot may hold a run of same-sized datagrams from one sender, coalesced
/// by the kernel (its segment size comes in a control message); the batch
/// hands them out one by one.
struct Batch {
    bufs: Vec<u8>,
    /// Bytes per slot: [`MAX_DATAGRAM`], or [`GRO_SLOT`] with GRO on.
    slot: usize,
    /// Per received message: sender, length, segment size (0: one datagram).
    lens: Vec<(SocketAddr, usize, usize)>,
    /// When a datagram last filled more than a page of its slot, if one
    /// has since the buffers were (re)allocated.
    bulk: Option<Instant>,
}

impl Batch {
    fn new(gro: bool) -> Self {
        let slot = if gro { GRO_SLOT } else { MAX_DATAGRAM };
        Self {
            bufs: vec![0; BATCH * slot],
            slot,
            lens: Vec::with_capacity(BATCH),
            bulk: None,
        }
    }

    /// Remembers `now` when the batch just read wrote past the first page
    /// of a slot (small datagrams touch at most a page per slot).
    fn note_bulk(&mut self, now: Instant) {
        if self.lens.iter().any(|&(_, len, _)| len > PAGE) {
            self.bulk = Some(now);
        }
    }

    /// After [`RELEASE_IDLE`] without bulk datagrams, gives the touched
    /// pages of the buffers back to the kernel (see [`release_pages`]).
    /// Call it between batches only: the buffers' contents are lost. True
    /// when it released them.
    fn release_if_idle(&mut self, now: Instant) -> bool {
        match self.bulk {
            Some(t) if now.saturating_duration_since(t) >= RELEASE_IDLE => {
                release_pages(&mut self.bufs);
                self.bulk = None;
                true
            }
            _ => false,
        }
    }

    /// The messages of the batch: sender, bytes, and the size its
    /// datagrams were coalesced at (0 when it is one datagram).
    fn messages(&self) -> impl Iterator<Item = (SocketAddr, &[u8], usize)> {
        self.lens.iter().enumerate().map(|(i, &(from, len, seg))| {
            let at = i * self.slot;
            (from, &self.bufs[at..at + len], seg)
        })
    }

    #[cfg(target_os = "linux")]
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        self.lens.clear();
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        // Room for one int-sized control message per datagram (UDP_GRO).
        let mut controls = [[0u64; 4]; BATCH];
        for i in 0..BATCH {
            iovs[i].iov_base = self.bufs[i * self.slot..].as_mut_ptr().cast();
            iovs[i].iov_len = self.slot;
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen =
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = controls[i].as_mut_ptr().cast();
            msgs[i].msg_hdr.msg_controllen = std::mem::size_of_val(&controls[i]) as _;
        }
        // SAFETY: every pointer in `msgs` points into `addrs`, `iovs`,
        // `controls` and `self.bufs`, which outlive the call; each iovec
        // covers its own slot. The fd is owned by `socket`.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (i, m) in msgs[..n as usize].iter().enumerate() {
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue;
            }
            if let Some(from) = sockaddr_to_std(&addrs[i]) {
                self.lens
                    .push((from, m.msg_len as usize, gro_segment(&m.msg_hdr)));
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn recv(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.lens.clear();
        let (len, from) = socket.recv_from(&mut self.bufs[..MAX_DATAGRAM])?;
        self.lens.push((from, len, 0));
        Ok(())
    }
}

/// Gives the whole pages inside `buf` back to the kernel
/// (`MADV_DONTNEED`): they read as zeros afterwards and are resident again
/// only once written. In place, so it works whatever the allocator does
/// with a freed block (glibc would hand a reallocated one back from its
/// heap, already resident). Off Linux, zeroes nothing and keeps the pages.
fn release_pages(buf: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return,
        };
        let start = buf.as_mut_ptr() as usize;
        let first = start.div_ceil(page) * page;
        let end = (start + buf.len()) / page * page;
        if end > first {
            // SAFETY: [first, end) lies inside `buf`, which is borrowed
            // mutably; the kernel only replaces those pages' bytes by
            // zeros (a valid value for u8), and no allocator metadata lies
            // inside an allocation's own bytes.
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_DONTNEED) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// `UDP_GRO` (linux/udp.h): receive coalesced datagrams, with their size.
#[cfg(target_os = "linux")]
const UDP_GRO: libc::c_int = 104;
/// A receive slot with GRO on: the largest UDP payload (one IP packet).
const GRO_SLOT: usize = 65_536;

/// Asks the kernel to hand over runs of same-sized datagrams from one
/// sender as one buffer (UDP GRO). On loopback a UDP GSO send then stays
/// one buffer end to end instead of being cut into datagrams and queued
/// one by one. False where the kernel refuses (older than 5.0) or
/// `BITTERN_UTP_NO_GRO` is set.
#[cfg(target_os = "linux")]
fn enable_gro(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    if std::env::var_os("BITTERN_UTP_NO_GRO").is_some() {
        return false;
    }
    let on: libc::c_int = 1;
    // SAFETY: a c_int option on a socket `socket` owns.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            UDP_GRO,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn enable_gro(_: &UdpSocket) -> bool {
    false
}

/// The segment size of a coalesced (GRO) message, 0 for a plain datagram.
#[cfg(target_os = "linux")]
fn gro_segment(h: &libc::msghdr) -> usize {
    // SAFETY: the kernel filled `h`'s control buffer; the CMSG macros stay
    // within msg_controllen and the UDP_GRO payload is an int.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(size).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    0
}

/// The datagrams of one received message: `data` cut every `segment`
/// bytes (the last may be shorter), or whole when `segment` is 0.
fn segments(data: &[u8], segment: usize) -> std::slice::Chunks<'_, u8> {
    data.chunks(if segment == 0 {
        data.len().max(1)
    } else {
        segment
    })
}

#[cfg(target_os = "linux")]
pub(crate) fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    use std::net::{SocketAddrV4, SocketAddrV6};
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = u32::from_be(a.sin_addr.s_addr);
            Some(SocketAddrV4::new(ip.into(), u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(
                SocketAddrV6::new(
                    a.sin6_addr.s6_addr.into(),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )
                .into(),
            )
        }
        _ => None,
    }
}

/// `UDP_SEGMENT` (linux/udp.h): the segment size of a GSO send.
#[cfg(target_os = "linux")]
const UDP_SEGMENT: libc::c_int = 103;
/// Most segments in one GSO send (the kernel's `UDP_MAX_SEGMENTS`).
#[cfg(target_os = "linux")]
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (one IP packet's length field).
#[cfg(target_os = "linux")]
const GSO_MAX_BYTES: usize = 65_000;
/// Cleared for good when a GSO send fails in a way that says the kernel or
/// the route cannot segment (then every batch goes as plain `sendmmsg`).
#[cfg(target_os = "linux")]
static GSO_USABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Sends `datagrams` to one peer in one `sendmmsg` call; returns how many
/// the kernel took (a prefix). Runs of equal-sized datagrams (a shorter one
/// may end a run) go as one UDP GSO message each (`UDP_SEGMENT`): the
/// kernel builds and routes one packet and cuts it into datagrams late,
/// instead of walking the whole stack once per datagram. Receivers see
/// ordinary datagrams. Falls back to one message per datagram where GSO is
/// refused (old kernels, no checksum offload, `BITTERN_UTP_NO_GSO` set).
#[cfg(target_os = "linux")]
pub(crate) fn send_batch(
    socket: &UdpSocket,
    datagrams: &[&[u8]],
    to: SocketAddr,
) -> io::Result<usize> {
    use std::sync::atomic::Ordering;
    static NO_GSO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let disabled = *NO_GSO.get_or_init(|| std::env::var_os("BITTERN_UTP_NO_GSO").is_some());
    // Consecutive GSO sends refused with an errno an ICMP error (protocol
    // unreachable, source route failed) can also leave pending: GSO is
    // only given up for good after three, each batch going plainly.
    static DOUBTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    if datagrams.len() > 1 && !disabled && GSO_USABLE.load(Ordering::Relaxed) {
        match send_mmsg(socket, datagrams, to, true) {
            Ok(n) => {
                DOUBTS.store(0, Ordering::Relaxed);
                return Ok(n);
            }
            Err(e) => {
                let give_up = match e.raw_os_error() {
                    Some(libc::EIO | libc::EINVAL) => true,
                    Some(libc::ENOPROTOOPT | libc::EOPNOTSUPP) => {
                        DOUBTS.fetch_add(1, Ordering::Relaxed) + 1 >= 3
                    }
                    _ => return Err(e),
                };
                if give_up {
                    log::debug!("utp: UDP GSO refused ({e}), sending datagram by datagram");
                    GSO_USABLE.store(false, Ordering::Relaxed);
                }
            }
        }
    }
    send_mmsg(socket, datagrams, to, false)
}

/// Lengths of the GSO runs `datagrams` splits into: equal sizes, the last
/// of a run possibly shorter, within the kernel's limits.
#[cfg(target_os = "linux")]
fn gso_runs(datagrams: &[&[u8]]) -> Vec<usize> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < datagrams.len() {
        let size = datagrams[i].len();
        let (mut n, mut bytes) = (1, size);
        while i + n < datagrams.len()
            && n < GSO_MAX_SEGMENTS
            && bytes + datagrams[i + n].len() <= GSO_MAX_BYTES
            && datagrams[i + n].len() <= size
        {
            bytes += datagrams[i + n].len();
            n += 1;
            if datagrams[i + n - 1].len() < size {
                break;
            }
        }
        runs.push(n);
        i += n;
    }
    runs
}

/// One `sendmmsg`: a message per datagram, or with `gso` a message per
/// run (its datagrams as the iovecs, the segment size in a control
/// message). Returns the datagrams the kernel took.
#[cfg(target_os = "linux")]
fn send_mmsg(
    socket: &UdpSocket,
    datagrams: &[&[u8]],
    to: SocketAddr,
    gso: bool,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let (addr, addr_len) = std_to_sockaddr(to);
    let runs = if gso {
        gso_runs(datagrams)
    } else {
        vec![1; datagrams.len()]
    };
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    // One aligned control buffer per message, room for a u16 cmsg.
    let mut controls = vec![[0u64; 4]; runs.len()];
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = (0..runs.len())
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    let mut first = 0;
    for ((m, &n), control) in msgs.iter_mut().zip(&runs).zip(controls.iter_mut()) {
        m.msg_hdr.msg_name = (&addr as *const libc::sockaddr_storage).cast_mut().cast();
        m.msg_hdr.msg_namelen = addr_len;
        m.msg_hdr.msg_iov = &mut iovs[first];
        m.msg_hdr.msg_iovlen = n;
        if n > 1 {
            let segment = datagrams[first].len() as u16;
            m.msg_hdr.msg_control = control.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE of a u16 (16 bytes on Linux) fits the
            // 32-byte, 8-aligned buffer; CMSG_FIRSTHDR points into it and
            // CMSG_DATA at the u16 slot inside it.
            unsafe {
                m.msg_hdr.msg_controllen = libc::CMSG_SPACE(2) as _;
                let c = libc::CMSG_FIRSTHDR(&m.msg_hdr);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), segment);
            }
        }
        first += n;
    }
    // An ICMP error left pending by an earlier datagram fails the call
    // without sending: once more then (see `icmp`).
    let sent = crate::icmp::send_retrying(|| {
        // SAFETY: every msg points at `addr`, at iovecs over live datagram
        // buffers and at its own control buffer, all of which outlive the
        // call; the kernel only reads them.
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if sent < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(sent as usize)
        }
    })?;
    Ok(runs[..sent].iter().sum())
}

#[cfg(target_os = "linux")]
fn std_to_sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
            let sin6 = unsafe {
                &mut *(&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Buffers touched by bulk datagrams are given back after
    /// `RELEASE_IDLE` without more; small datagrams neither count as bulk
    /// nor keep the buffers; nothing is released while bulk keeps coming.
    /// How many pages of `buf` are resident (`mincore`).
    fn resident_pages(buf: &[u8]) -> usize {
        let page = 4096;
        let start = buf.as_ptr() as usize / page * page;
        let end = (buf.as_ptr() as usize + buf.len()).div_ceil(page) * page;
        let mut vec = vec![0u8; (end - start) / page];
        // SAFETY: the range covers `buf`'s pages (mapped); `vec` has one
        // byte per page.
        let r = unsafe { libc::mincore(start as *mut libc::c_void, end - start, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|&&v| v & 1 == 1).count()
    }

    #[test]
    fn bulk_touched_buffers_are_released_once_idle() {
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut b = Batch::new(true);
        let len = b.bufs.len();
        let t0 = Instant::now();
        b.lens = vec![(from, 100, 0); BATCH];
        b.note_bulk(t0);
        assert!(
            !b.release_if_idle(t0 + RELEASE_IDLE * 2),
            "small datagrams only"
        );
        b.lens = vec![(from, 100, 0), (from, 64_000, 1452)];
        b.note_bulk(t0);
        b.bufs.fill(7);
        assert!(resident_pages(&b.bufs) >= len / 4096, "touched");
        assert!(!b.release_if_idle(t0 + RELEASE_IDLE / 2), "still busy");
        b.note_bulk(t0 + RELEASE_IDLE / 2);
        assert!(!b.release_if_idle(t0 + RELEASE_IDLE), "bulk came again");
        assert!(b.release_if_idle(t0 + RELEASE_IDLE * 2));
        assert_eq!(b.bufs.len(), len);
        assert_eq!(resident_pages(&b.bufs[4096..len - 4096]), 0, "given back");
        assert_eq!(b.bufs[70_000], 0, "reads as zeros");
        assert!(!b.release_if_idle(t0 + RELEASE_IDLE * 4), "released once");
    }

    #[test]
    fn gso_runs_split_on_size_and_limits() {
        let zeros = [0u8; 1472];
        let d = |lens: &[usize]| lens.iter().map(|&n| &zeros[..n]).collect::<Vec<_>>();
        // A shorter datagram ends a run; a longer one starts a new one.
        assert_eq!((gso_runs(&d(&[1472, 1472, 100, 1472, 1472]))), [3, 2]);
        assert_eq!((gso_runs(&d(&[100, 1472, 1472]))), [1, 2]);
        // At most 64 KB of payload per run.
        let runs = gso_runs(&d(&[1472; 64]));
        assert_eq!(runs, [44, 20]);
        assert_eq!((gso_runs(&d(&[20; 100]))), [64, 36]);
    }

    /// With GRO on, a GSO batch arrives coalesced (fewer messages than
    /// datagrams, with a segment size) and cut back into the very same
    /// datagrams, in order; with it off, one message per datagram.
    #[test]
    fn a_gro_read_gives_back_the_datagrams_that_were_sent() {
        let lens = [1472, 1472, 1472, 1472, 1472, 900, 1472, 1472, 60];
        let batch: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        for want_gro in [true, false] {
            let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
            rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            tune_socket(&rx, 1 << 20);
            let gro = want_gro && enable_gro(&rx);
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = rx.local_addr().unwrap();
            let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            assert_eq!(send_batch(&tx, &slices, to).unwrap(), batch.len());
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut messages = 0;
            let mut b = Batch::new(gro);
            while got.len() < batch.len() {
                b.recv(&rx).unwrap();
                for (from, data, segment) in b.messages() {
                    assert_eq!(from, tx.local_addr().unwrap());
                    assert!(gro || segment == 0);
                    messages += 1;
                    got.extend(segments(data, segment).map(<[u8]>::to_vec));
                }
            }
            assert_eq!(got, batch, "gro {gro}");
            let gso = GSO_USABLE.load(std::sync::atomic::Ordering::Relaxed)
                && std::env::var_os("BITTERN_UTP_NO_GSO").is_none();
            if gro && gso {
                assert!(
                    messages < batch.len(),
                    "{messages} messages: nothing coalesced"
                );
            } else {
                assert_eq!(messages, batch.len());
            }
            if want_gro && std::env::var_os("BITTERN_UTP_NO_GRO").is_none() {
                assert!(gro, "the kernel refused UDP GRO");
            }
        }
    }

    /// A batch goes out as GSO runs and arrives as the same datagrams, in
    /// order, each with its own length.
    #[test]
    fn a_gso_batch_arrives_as_the_datagrams_it_was() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tune_socket(&rx, 1 << 20);
        let lens = [1472, 1472, 1472, 900, 1472, 1472, 60];
        let batch: Vec<Vec<u8>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let to = rx.local_addr().unwrap();
        let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        assert_eq!(send_batch(&tx, &slices, to).unwrap(), batch.len());
        let mut buf = [0u8; 4096];
        for want in &batch {
            let (n, _) = rx.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &want[..]);
        }
        if std::env::var_os("BITTERN_UTP_NO_GSO").is_none() {
            assert!(
                GSO_USABLE.load(std::sync::atomic::Ordering::Relaxed),
                "the kernel refused UDP GSO on loopback"
            );
        }
    }
}
