//! bittern-utp ↔ bittern-utp over real UDP sockets on 127.0.0.1, and two
//! multiplexers joined by an in-memory lossy link (a `Transmit` shim).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use bittern_utp::{looks_like_utp, Multiplexer, MuxConfig, Transmit, UtpSocket, UtpStream};

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    bittern_testkit::xorshift64_bytes(len, seed)
}

/// A client writes `data` and half-closes; the acceptor reads to EOF and
/// returns what it got and how long it took.
fn transfer(listener: &UtpSocket, data: Vec<u8>) -> (Vec<u8>, Duration) {
    let addr = listener.local_addr();
    let len = data.len();
    let started = Instant::now();
    let sender = thread::spawn(move || {
        let mut s = UtpStream::connect(addr, Duration::from_secs(5)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&data).expect("write");
        s.shutdown(Shutdown::Write).unwrap();
        // Wait for the receiver's one-byte verdict so the FIN exchange and
        // the last ACKs happen while the stream is alive.
        let mut b = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.read_exact(&mut b).expect("verdict");
        b[0]
    });
    let mut s = listener
        .accept_timeout(Duration::from_secs(5))
        .expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::with_capacity(len);
    s.read_to_end(&mut got).expect("read to eof");
    let elapsed = started.elapsed();
    s.write_all(&[7]).unwrap();
    assert_eq!(sender.join().expect("sender thread"), 7);
    (got, elapsed)
}

#[test]
fn loopback_transfer_of_8_mib_is_byte_identical() {
    let listener = UtpSocket::bind("127.0.0.1:0").unwrap();
    let data = pattern(8 << 20, 1);
    let (got, elapsed) = transfer(&listener, data.clone());
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
    eprintln!(
        "loopback: {} MiB in {:.2} s = {:.1} MB/s",
        data.len() >> 20,
        elapsed.as_secs_f64(),
        data.len() as f64 / elapsed.as_secs_f64() / 1e6
    );
}

#[test]
fn both_directions_at_once_on_ipv6_loopback() {
    let Ok(listener) = UtpSocket::bind("[::1]:0") else {
        eprintln!("no ::1 here, skipped");
        return;
    };
    let addr = listener.local_addr();
    let a = pattern(2 << 20, 2);
    let b = pattern(2 << 20, 3);
    let a2 = a.clone();
    let client = thread::spawn(move || {
        let s = UtpStream::connect(addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let w = s.try_clone().unwrap();
        let writer = thread::spawn(move || {
            (&w).write_all(&a2).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::new();
        (&s).read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        got
    });
    let s = listener.accept_timeout(Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let w = s.try_clone().unwrap();
    let b2 = b.clone();
    let writer = thread::spawn(move || {
        (&w).write_all(&b2).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    (&s).read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == a, "server got wrong bytes");
    assert!(client.join().unwrap() == b, "client got wrong bytes");
}

#[test]
fn connect_to_a_silent_port_times_out_and_read_timeout_is_would_block() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = Instant::now();
    let err = UtpStream::connect(silent.local_addr().unwrap(), Duration::from_millis(300))
        .expect_err("nobody answers");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(t.elapsed() < Duration::from_secs(2));
    // The silent socket got real SYNs.
    let mut buf = [0u8; 100];
    let (n, _) = silent.recv_from(&mut buf).unwrap();
    assert!(looks_like_utp(&buf[..n]));
    assert_eq!(buf[0], 0x41);

    let listener = UtpSocket::bind("127.0.0.1:0").unwrap();
    let mut c = UtpStream::connect(listener.local_addr(), Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let err = c.read(&mut buf).expect_err("no data");
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
}

/// A port nothing listens on draws an ICMP "port unreachable", which the
/// socket's reader takes as a refusal: the connect fails at once with
/// `ConnectionRefused` instead of waiting out its timeout (TimedOut). On
/// Linux only (elsewhere ICMP errors are not enabled).
#[cfg(target_os = "linux")]
#[test]
fn connect_to_a_closed_port_is_refused_without_waiting_for_the_timeout() {
    let socket = UtpSocket::bind("127.0.0.1:0").unwrap();
    // On an address of lo no other test binds, so that no test's socket
    // can take the port in between.
    let closed = std::net::UdpSocket::bind("127.0.0.77:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for _ in 0..3 {
        let err = socket
            .connect(closed, Duration::from_secs(30))
            .expect_err("nothing listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }
    // The socket still carries connections after the errors.
    let listener = UtpSocket::bind("127.0.0.1:0").unwrap();
    let (got, _) = transfer(&listener, pattern(64 << 10, 7));
    assert_eq!(got, pattern(64 << 10, 7));
    let c = socket.connect(listener.local_addr(), Duration::from_secs(5));
    assert!(c.is_ok(), "{c:?}");
}

/// Another thread sending on the shared socket (the DHT) may take the
/// pending ICMP error before the reader sees it; the reader still drains
/// the error queue within a second, so every connect to a closed port is
/// refused, none waits out its timeout. The sender's datagrams all go
/// (`send_retrying`).
#[cfg(target_os = "linux")]
#[test]
fn connects_are_refused_while_another_thread_sends_on_the_socket() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let socket = UtpSocket::bind("127.0.0.1:0").unwrap();
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (udp, to) = (socket.udp().clone(), sink.local_addr().unwrap());
        let (stop, sent) = (stop.clone(), sent.clone());
        thread::spawn(move || {
            let mut failed = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match bittern_utp::icmp::send_retrying(|| udp.send_to(b"d1:q4:ping", to)) {
                    Ok(_) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => failed += 1,
                }
            }
            failed
        })
    };
    // The sender runs before the connects start (a loaded machine may not
    // have scheduled it yet).
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::Relaxed) < 100 {
        assert!(Instant::now() < deadline, "the sender never ran");
        thread::sleep(Duration::from_millis(1));
    }
    for _ in 0..10 {
        let closed = std::net::UdpSocket::bind("127.0.0.77:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = socket
            .connect(closed, Duration::from_secs(20))
            .expect_err("nothing listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    }
    stop.store(true, Ordering::Relaxed);
    let failed = sender.join().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} of {} sends failed", sent + failed);
}

#[test]
fn non_utp_datagrams_reach_the_other_handler_on_the_same_port() {
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let seen2 = seen.clone();
    let sock = UtpSocket::bind_with(
        "127.0.0.1:0",
        MuxConfig::default(),
        Box::new(move |_, d| seen2.lock().unwrap().push(d.to_vec())),
    )
    .unwrap();
    let krpc = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe.send_to(krpc, sock.local_addr()).unwrap();
    // A uTP connection on the same port still works.
    let mut c = UtpStream::connect(sock.local_addr(), Duration::from_secs(5)).unwrap();
    let mut s = sock.accept_timeout(Duration::from_secs(5)).unwrap();
    c.write_all(b"hello").unwrap();
    let mut b = [0u8; 5];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    assert_eq!(seen.lock().unwrap().as_slice(), &[krpc.to_vec()]);
}

/// A link between two in-memory multiplexers that drops every 13th packet
/// and delivers the rest from a delivery thread in a shuffled order.
struct Shim {
    to: OnceLock<Multiplexer>,
    from: SocketAddr,
    count: Mutex<u64>,
    /// Drop every n-th datagram (0: never).
    loss_every: u64,
    /// Refuse every n-th send with WouldBlock, a full socket buffer (0: never).
    stall_every: u64,
    queue: crossbeam_channel::Sender<(SocketAddr, Vec<u8>)>,
}

impl Transmit for Shim {
    fn send_to(&self, datagram: &[u8], _to: SocketAddr) -> std::io::Result<()> {
        let mut c = self.count.lock().unwrap();
        *c += 1;
        if self.stall_every > 0 && (*c).is_multiple_of(self.stall_every) {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        if self.loss_every > 0 && (*c).is_multiple_of(self.loss_every) {
            return Ok(());
        }
        let _ = self.queue.try_send((self.from, datagram.to_vec()));
        Ok(())
    }
}

fn shim_pair(loss_every: u64, stall_every: u64) -> (Multiplexer, Multiplexer, SocketAddr) {
    let a_addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let b_addr: SocketAddr = "127.0.0.1:2".parse().unwrap();
    let mk = |from| {
        let (tx, rx) = crossbeam_channel::bounded::<(SocketAddr, Vec<u8>)>(4096);
        let shim = Arc::new(Shim {
            to: OnceLock::new(),
            from,
            count: Mutex::new(0),
            loss_every,
            stall_every,
            queue: tx,
        });
        (shim, rx)
    };
    let (sa, ra) = mk(a_addr);
    let (sb, rb) = mk(b_addr);
    let a = Multiplexer::new(sa.clone(), Some(a_addr), MuxConfig::default()).unwrap();
    let b = Multiplexer::new(sb.clone(), Some(b_addr), MuxConfig::default()).unwrap();
    let _ = sa.to.set(b.clone());
    let _ = sb.to.set(a.clone());
    for (shim, rx) in [(sa, ra), (sb, rb)] {
        thread::spawn(move || {
            let mut held: Option<(SocketAddr, Vec<u8>)> = None;
            while let Ok(p) = rx.recv_timeout(Duration::from_secs(30)) {
                let Some(to) = shim.to.get() else { return };
                // Swap every other packet with its successor: reordering.
                match held.take() {
                    None => held = Some(p),
                    Some(h) => {
                        to.handle_datagram(p.0, &p.1);
                        to.handle_datagram(h.0, &h.1);
                        to.flush();
                    }
                }
                if rx.is_empty() {
                    if let Some(h) = held.take() {
                        to.handle_datagram(h.0, &h.1);
                        to.flush();
                    }
                }
            }
        });
    }
    (a, b, b_addr)
}

#[test]
fn multiplexers_over_a_lossy_reordering_shim_deliver_every_byte() {
    let (a, b, b_addr) = shim_pair(13, 0);
    let data = pattern(2 << 20, 9);
    let d2 = data.clone();
    let sender = thread::spawn(move || {
        let mut s = a
            .connect(b_addr, Duration::from_secs(10))
            .expect("connect over shim");
        s.write_all(&d2).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut v = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.read_exact(&mut v).unwrap();
    });
    let mut s = b.accept_timeout(Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    s.write_all(&[1]).unwrap();
    sender.join().unwrap();
    assert!(
        got == data,
        "bytes differ ({} of {})",
        got.len(),
        data.len()
    );
}

#[test]
fn data_written_before_dropping_a_standalone_stream_still_arrives() {
    let listener = UtpSocket::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let data = pattern(4 << 20, 11);
    let reader = thread::spawn(move || {
        let mut s = listener.accept_timeout(Duration::from_secs(5)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).map(|_| got)
    });
    {
        // The stream owns the only handle on its socket: dropping it right
        // after write_all must still deliver what is buffered, then a FIN.
        let mut c = UtpStream::connect(addr, Duration::from_secs(5)).unwrap();
        c.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(&data).unwrap();
    }
    let got = reader.join().unwrap().expect("read to eof");
    assert_eq!(got.len(), data.len());
    assert!(got == data);
}

#[test]
fn a_send_buffer_that_refuses_every_fifth_datagram_is_not_loss() {
    let (a, b, b_addr) = shim_pair(0, 5);
    let data = pattern(2 << 20, 12);
    let d2 = data.clone();
    let sender = thread::spawn(move || {
        let mut s = a
            .connect(b_addr, Duration::from_secs(10))
            .expect("connect over shim");
        s.write_all(&d2).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut v = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.read_exact(&mut v).unwrap();
        s.cwnd()
    });
    let mut s = b.accept_timeout(Duration::from_secs(10)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    s.write_all(&[1]).unwrap();
    let cwnd = sender.join().unwrap();
    assert!(
        got == data,
        "bytes differ ({} of {})",
        got.len(),
        data.len()
    );
    // Counted as loss, a refusal every 5th send would halve cwnd again and
    // again; as stalls, slow start runs on.
    assert!(cwnd > 256 * 1024, "cwnd collapsed to {cwnd}");
}

/// Rebinding a port proves its socket was closed, i.e. the reader thread
/// (which holds the socket) and the multiplexer are gone.
fn port_released(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::UdpSocket::bind(addr).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sockets_and_threads_go_away_after_the_last_handle() {
    let listener = UtpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = listener.local_addr();
    let mut c = UtpStream::connect(server_addr, Duration::from_secs(5)).unwrap();
    let client_addr = c.local_addr().unwrap();
    let mut s = listener.accept_timeout(Duration::from_secs(5)).unwrap();
    c.write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    // A second connection waits in the backlog, never accepted: it must not
    // keep the multiplexer alive either.
    let pending = UtpStream::connect(server_addr, Duration::from_secs(5)).unwrap();
    drop(pending);
    drop(listener);
    assert!(
        std::net::UdpSocket::bind(server_addr).is_err(),
        "a live stream keeps its socket"
    );
    drop(c);
    drop(s);
    assert!(port_released(server_addr), "server socket still open");
    assert!(port_released(client_addr), "client socket still open");
}
