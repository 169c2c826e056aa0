//! ICMP errors on a shared UDP socket: a uTP connect to a port nothing
//! listens on is refused at once instead of waiting out its connect
//! timeout.
//!
//! A UDP socket that is not connected hears nothing of the ICMP "port
//! unreachable" its datagram drew, unless it asks with `IP_RECVERR`
//! (`IPV6_RECVERR`). Then the kernel queues each ICMP error on the
//! socket's error queue, with the address the datagram went to and the
//! start of the datagram, and also sets the socket's pending error, which
//! the next receive *or send* call on the socket returns in place of doing
//! its work (Linux 6.18 does both). So:
//!
//! - the reader drains the error queue ([`drain`]) whenever a receive
//!   fails, and tells the multiplexer
//!   ([`Multiplexer::handle_unreachable`](crate::Multiplexer::handle_unreachable))
//!   of each "destination unreachable" (port, host or network). A send
//!   may have taken the pending error instead, so the queue is also
//!   drained every [`DRAIN_EVERY`] by the multiplexer's timer while it has
//!   connections ([`Transmit::drain_unreachable`](crate::Transmit::drain_unreachable)),
//!   and by the reader when traffic wakes it (an undrained queue counts
//!   against the receive buffer). An idle socket still never wakes;
//! - every send on the socket retries once when it fails with an error an
//!   ICMP message can leave pending ([`is_icmp_error`]): that error belongs
//!   to an earlier datagram, and this one was not sent.
//!
//! Only connects (SYN sent, no answer yet) are failed by an ICMP error, and
//! only the one whose SYN the message quotes (by its connection id; by the
//! address alone when the message quotes no payload, as old routers do):
//! an error drawn by an earlier datagram to the same address (a DHT query
//! to a port that has since opened) refuses nothing, and a forged message
//! must guess the 16-bit id. An open connection has its own timeouts and
//! is left alone. Linux only; elsewhere nothing is enabled and a connect
//! to a closed port waits for its timeout.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// How often the error queue is drained when no receive failed (see the
/// module docs).
pub const DRAIN_EVERY: Duration = Duration::from_millis(250);
/// Most error-queue entries read per [`drain`] (the rest wait for the next).
const DRAIN_MAX: usize = 256;

/// Asks the kernel to report ICMP errors on `socket` (`IP_RECVERR`, and
/// `IPV6_RECVERR` on an IPv6 socket). True when it took. Once on, every
/// send on the socket must treat [`is_icmp_error`] as "retry once".
pub fn enable(socket: &UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        let on: libc::c_int = 1;
        let set = |level, name| {
            // SAFETY: a c_int option on a socket `socket` owns.
            unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    name,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                ) == 0
            }
        };
        match socket.local_addr() {
            // An IPv6 socket may carry IPv4-mapped traffic too: ask for both.
            Ok(SocketAddr::V6(_)) => {
                let v6 = set(libc::SOL_IPV6, libc::IPV6_RECVERR);
                set(libc::SOL_IP, libc::IP_RECVERR) || v6
            }
            Ok(SocketAddr::V4(_)) => set(libc::SOL_IP, libc::IP_RECVERR),
            Err(_) => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        false
    }
}

/// True when a send or receive error may be an ICMP error left pending on
/// the socket by an earlier datagram (see the module docs).
pub fn is_icmp_error(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        matches!(
            e.raw_os_error(),
            Some(
                libc::ECONNREFUSED
                    | libc::EHOSTUNREACH
                    | libc::ENETUNREACH
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EPROTO
                    | libc::EACCES
                    | libc::EMSGSIZE
                    | libc::ENOPROTOOPT
                    | libc::EOPNOTSUPP
            )
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = e;
        false
    }
}

/// Runs `send`, and once more when it failed with [`is_icmp_error`] (the
/// error was an earlier datagram's, this one did not go).
pub fn send_retrying<T>(mut send: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match send() {
        Err(e) if is_icmp_error(&e) => send(),
        other => other,
    }
}

/// Bytes of the quoted datagram kept: a uTP header.
const QUOTE: usize = 20;

/// An ICMP error read from the error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable {
    /// Where the datagram that drew it was going.
    pub to: SocketAddr,
    /// The error it stands for (`ECONNREFUSED` for "port unreachable").
    pub errno: i32,
    /// True for ICMPv6, false for ICMP (v4).
    pub v6: bool,
    /// The ICMP type and code.
    pub icmp_type: u8,
    /// See [`icmp_type`](Self::icmp_type).
    pub icmp_code: u8,
    quote: [u8; QUOTE],
    quote_len: u8,
}

impl Unreachable {
    /// True when nothing at [`to`](Self::to) can answer: "destination
    /// unreachable" for the port, the host or the network (not "time
    /// exceeded" or "packet filtered", which may pass).
    pub fn refuses(&self) -> bool {
        match (self.v6, self.icmp_type) {
            // net, host, port unreachable
            (false, 3) => matches!(self.icmp_code, 0 | 1 | 3),
            // no route, address unreachable, port unreachable
            (true, 1) => matches!(self.icmp_code, 0 | 3 | 4),
            _ => false,
        }
    }

    /// The start (up to 20 bytes) of the datagram the message quotes:
    /// empty when it quoted only the UDP header.
    pub fn quote(&self) -> &[u8] {
        &self.quote[..usize::from(self.quote_len)]
    }
}

/// Reads the socket's error queue without blocking and calls `each` for
/// every ICMP error in it (at most 256 per call). Returns how many it read.
pub fn drain(socket: &UdpSocket, each: &mut dyn FnMut(Unreachable)) -> usize {
    #[cfg(target_os = "linux")]
    {
        let mut n = 0;
        while n < DRAIN_MAX {
            match read_one(socket) {
                Some(Some(u)) => each(u),
                Some(None) => {}
                None => break,
            }
            n += 1;
        }
        n
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (socket, each);
        0
    }
}

/// One error-queue entry: `None` when the queue is empty (or the read
/// failed), `Some(None)` for an entry that is not an ICMP error (or names
/// no address).
#[cfg(target_os = "linux")]
fn read_one(socket: &UdpSocket) -> Option<Option<Unreachable>> {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut data = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points at `addr`, `iov` (over `data`) and `control`,
    // which outlive the call; the fd is owned by `socket`.
    let got = unsafe {
        libc::recvmsg(
            socket.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if got < 0 {
        return None;
    }
    let Some(to) = crate::socket::sockaddr_to_std(&addr) else {
        return Some(None);
    };
    // SAFETY: CMSG_LEN only computes a length.
    let need =
        unsafe { libc::CMSG_LEN(std::mem::size_of::<libc::sock_extended_err>() as u32) } as usize;
    // SAFETY: the kernel filled the control buffer; the CMSG macros stay
    // within msg_controllen, and an IP(V6)_RECVERR message long enough
    // carries a sock_extended_err (read unaligned).
    let err = unsafe {
        let mut found = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            if ((level == libc::SOL_IP && ty == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && ty == libc::IPV6_RECVERR))
                && (*c).cmsg_len as usize >= need
            {
                let e =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::sock_extended_err>());
                if e.ee_origin == libc::SO_EE_ORIGIN_ICMP || e.ee_origin == libc::SO_EE_ORIGIN_ICMP6
                {
                    found = Some(e);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        found
    };
    let Some(e) = err else {
        return Some(None);
    };
    let quoted = (got as usize).min(data.len()).min(QUOTE);
    let mut quote = [0u8; QUOTE];
    quote[..quoted].copy_from_slice(&data[..quoted]);
    Some(Some(Unreachable {
        to,
        errno: e.ee_errno as i32,
        v6: e.ee_origin == libc::SO_EE_ORIGIN_ICMP6,
        icmp_type: e.ee_type,
        icmp_code: e.ee_code,
        quote,
        quote_len: quoted as u8,
    }))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_to_a_closed_loopback_port_is_reported_with_its_address() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable(&socket));
        // A port nothing listens on: bind one, note it, close it.
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        socket.send_to(b"x", closed).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The pending error comes first, then the queue names the address.
        let mut buf = [0u8; 16];
        let e = socket.recv_from(&mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
        let mut seen = Vec::new();
        assert_eq!(drain(&socket, &mut |u| seen.push(u)), 1);
        assert_eq!(seen.len(), 1);
        let u = seen[0];
        assert_eq!((u.to, u.errno), (closed, libc::ECONNREFUSED));
        assert_eq!((u.v6, u.icmp_type, u.icmp_code), (false, 3, 3));
        assert_eq!(u.quote(), b"x", "the datagram is quoted");
        assert!(u.refuses());
        assert_eq!(drain(&socket, &mut |_| panic!("queue drained")), 0);
    }

    #[test]
    fn a_send_failed_by_an_earlier_datagrams_error_is_tried_once_more() {
        // Whether a send takes the pending error depends on the kernel;
        // the wrapper's rule is checked on its own.
        let mut calls = 0;
        let sent = send_retrying(|| {
            calls += 1;
            match calls {
                1 => Err(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
                _ => Ok(5),
            }
        });
        assert_eq!((sent.unwrap(), calls), (5, 2));
        // Other errors are not retried, nor a second ICMP one.
        let mut calls = 0;
        let sent: io::Result<()> = send_retrying(|| {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::EBADF))
        });
        assert_eq!(
            (sent.unwrap_err().raw_os_error(), calls),
            (Some(libc::EBADF), 1)
        );
        let mut calls = 0;
        let sent: io::Result<()> = send_retrying(|| {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::EHOSTUNREACH))
        });
        assert!(sent.is_err());
        assert_eq!(calls, 2);
    }
}
