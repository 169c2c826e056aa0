//! A flood of half-open MSE handshakes at the listener, in a test binary
//! of its own: it bounds the threads and file descriptors of the process
//! (from /proc/self), which other tests running beside it in the shared
//! integration binary would inflate (CI at load saw 464 threads from 85).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bittern_engine::{Encryption, SeedGoal, Session, SessionConfig, TorrentOptions, TorrentState};
use bittern_wire::mse::{CryptoSet, Initiator, InitiatorConfig};
use bittern_wire::{Handshake, InfoHash, PeerId};

#[path = "util.rs"]
#[allow(dead_code)]
mod util;

use util::{assert_same, config, make_torrent, tempdir, wait_state};

fn session_with(encryption: Encryption, f: impl FnOnce(&mut SessionConfig)) -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut cfg = SessionConfig {
        encryption,
        ..config()
    };
    f(&mut cfg);
    Session::new(cfg).unwrap()
}

/// An MSE initiator for `ih` offering RC4, a BitTorrent handshake as its
/// initial payload.
fn initiator(ih: InfoHash) -> Initiator {
    let hs = Handshake::new(ih, PeerId::generate(b"-FK0001-")).encode();
    Initiator::new(
        ih,
        InitiatorConfig {
            provide: CryptoSet::RC4,
            initial_payload: hs.to_vec(),
        },
    )
}

/// A TCP connection to `to` from `ip` (any address of 127.0.0.0/8).
fn connect_from(ip: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(to) = to else {
        return Err(std::io::ErrorKind::Unsupported.into());
    };
    let sa = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a fresh fd owned by the TcpStream below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sa(ip, 0);
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sa(*to.ip(), to.port());
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn proc_count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// 1,200 connections that send an MSE Ya and stall (600 from 127.0.0.1,
/// 600 from 60 other loopback hosts), with a 60 s handshake deadline so
/// none of them times out during the test: the handshake threads and
/// sockets stay bounded, every stalled connection is closed or refused,
/// and a real bittern peer requiring encryption still downloads the
/// torrent, byte for byte.
#[test]
fn a_flood_of_half_open_mse_handshakes_is_bounded_and_a_real_peer_gets_in() {
    let src = tempdir();
    let dst = tempdir();
    let meta = make_torrent(src.path(), "f.bin", &[("f.bin", 600_000)], 16 * 1024, 48);
    let seeder = session_with(Encryption::Prefer, |c| {
        c.timing.connect_timeout = Duration::from_secs(60);
    });
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    let addr = seeder.local_addr();
    let threads0 = proc_count("/proc/self/task");
    let fds0 = proc_count("/proc/self/fd");
    let ya = initiator(meta.info_hash).output();
    let mut flood = Vec::new();
    let mut peak_threads = 0;
    for i in 0..1_200u32 {
        let c = if i % 2 == 0 {
            TcpStream::connect(addr)
        } else {
            let host = std::net::Ipv4Addr::new(127, 7, 0, (i % 60 + 1) as u8);
            connect_from(host, addr)
        };
        let Ok(mut c) = c else { continue };
        let _ = c.write_all(&ya);
        flood.push(c);
        if i % 100 == 0 {
            peak_threads = peak_threads.max(proc_count("/proc/self/task"));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    peak_threads = peak_threads.max(proc_count("/proc/self/task"));
    let fds = proc_count("/proc/self/fd");
    println!(
        "flood of {}: threads {threads0} -> peak {peak_threads}, fds {fds0} -> {fds} \
         ({} of them the flood's own ends)",
        flood.len(),
        flood.len()
    );
    assert!(flood.len() >= 1_100, "only {} connected", flood.len());
    assert!(
        peak_threads <= threads0 + 256 + 64,
        "{peak_threads} threads (from {threads0})"
    );
    // each pending handshake holds its socket and a handle to cut it
    assert!(
        fds <= fds0 + flood.len() + 2 * 256 + 64,
        "{fds} fds (from {fds0})"
    );

    // a real peer, requiring encryption, while the flood holds on
    let leecher = session_with(Encryption::Require, |_| {});
    let opts = TorrentOptions {
        peers: vec![addr],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let start = Instant::now();
    while l.status().state != TorrentState::Stopped {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the real peer did not get in: {:?}",
            l.status()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    // the flood's connections were cut (to make room) or are still pending
    let mut closed = 0;
    for c in &mut flood {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1024];
        loop {
            match c.read(&mut b) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    println!("{closed} of the flood's connections closed by the seeder");
    assert!(closed >= flood.len() - 256 - 8, "{closed} closed");
}
