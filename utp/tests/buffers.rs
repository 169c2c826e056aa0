//! The socket-buffer warning: when the kernel grants less than the
//! multiplexer's socket asks for, `UtpSocket` logs a warning that names the
//! granted size, the wanted one and the sysctl to raise, and reports the
//! granted sizes.
//!
//! The kernel caps `SO_RCVBUF`/`SO_SNDBUF` at `net.core.rmem_max` /
//! `wmem_max` unless the caller has `CAP_NET_ADMIN` (then `*FORCE` works).
//! Those sysctls are read-only inside a private network namespace on this
//! kernel, and the host's must not be touched, so the test asks for twice
//! the current maximum instead. As root it first shows that `*FORCE`
//! grants that without a warning, then drops `CAP_NET_ADMIN` from its own
//! thread (capabilities are per thread; the socket options are set on the
//! calling thread) and binds again. Its own test binary: it installs the
//! process's logger.

use std::sync::Mutex;

use bittern_utp::{MuxConfig, SocketBuffers, UtpSocket};

/// Records every warning.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn take_warnings() -> Vec<String> {
    std::mem::take(&mut *CAPTURE.0.lock().unwrap())
}

fn sysctl(name: &str) -> usize {
    let path = format!("/proc/sys/net/core/{name}");
    let text = std::fs::read_to_string(&path).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{path}: {text:?}"))
}

const CAP_NET_ADMIN: u32 = 12;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Whether this thread has `CAP_NET_ADMIN` in effect; with `drop`, clears
/// it from the thread's effective and permitted sets first.
fn net_admin(drop: bool) -> bool {
    let mut hdr = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget(2) with a v3 header and room for its two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
    if drop {
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        data[0].permitted &= !(1 << CAP_NET_ADMIN);
        // SAFETY: capset(2) on the calling thread (pid 0) with the sets
        // capget returned, less one capability: dropping is always allowed.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
    }
    data[0].effective & (1 << CAP_NET_ADMIN) != 0
}

fn bind(buffer: usize) -> SocketBuffers {
    let cfg = MuxConfig {
        socket_buffer: buffer,
        ..MuxConfig::default()
    };
    let sock = UtpSocket::bind_with("127.0.0.1:0", cfg, Box::new(|_, _| {})).unwrap();
    sock.socket_buffers()
}

#[test]
fn a_capped_socket_buffer_is_warned_about_with_the_sizes() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let (rmax, wmax) = (sysctl("rmem_max"), sysctl("wmem_max"));
    // Twice the larger maximum, at least 4 MiB (and within c_int).
    let want = (2 * rmax.max(wmax)).clamp(4 << 20, 1 << 29);

    if net_admin(false) {
        let got = bind(want);
        let warnings = take_warnings();
        assert!(
            warnings.is_empty(),
            "warned with CAP_NET_ADMIN: {warnings:?}"
        );
        assert_eq!(
            got,
            SocketBuffers {
                recv: want,
                send: want
            }
        );
        assert!(!net_admin(true), "CAP_NET_ADMIN still in effect");
    }

    let got = bind(want);
    let warnings = take_warnings();
    eprintln!("rmem_max {rmax}, wmem_max {wmax}, asked {want}: {got:?}\n{warnings:#?}");
    // The kernel grants exactly its maximum.
    assert_eq!(
        got,
        SocketBuffers {
            recv: rmax,
            send: wmax
        }
    );
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let recv =
        format!("utp: the kernel capped the UDP receive buffer at {rmax} bytes, {want} wanted");
    let send = format!("utp: the kernel capped the UDP send buffer at {wmax} bytes, {want} wanted");
    assert!(warnings[0].starts_with(&recv), "{warnings:?}");
    assert!(
        warnings[0].ends_with(&format!("raise net.core.rmem_max to {want}")),
        "{warnings:?}"
    );
    assert!(warnings[1].starts_with(&send), "{warnings:?}");
    assert!(
        warnings[1].ends_with(&format!("raise net.core.wmem_max to {want}")),
        "{warnings:?}"
    );

    // What the kernel allows is not warned about.
    let got = bind(rmax.min(wmax));
    assert_eq!(
        got,
        SocketBuffers {
            recv: rmax.min(wmax),
            send: rmax.min(wmax)
        }
    );
    let warnings = take_warnings();
    assert!(warnings.is_empty(), "{warnings:?}");
}
