//! The HTTP server over real loopback sockets: keep-alive, limits, the
//! connection bound and shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_daemon::{Handler, HttpServer, Limits, Request, Response};

/// Answers with the method, path and body length.
struct Echo;

impl Handler for Echo {
    fn handle(&self, req: &Request) -> Response {
        assert!(req.path != "/panic", "handler bug");
        let text = format!("{} {} {}", req.method, req.path, req.body.len());
        Response::new(200, "text/plain", text)
    }
}

fn server(limits: Limits) -> HttpServer {
    HttpServer::bind("127.0.0.1:0".parse().unwrap(), Arc::new(Echo), limits).unwrap()
}

fn connect(s: &HttpServer) -> TcpStream {
    let c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c
}

/// Reads one response (head + Content-Length body); returns (status, body).
fn response(c: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut byte).unwrap(), 1, "connection closed mid-head");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = server(Limits::default());
    let mut c = connect(&s);
    for i in 0..3 {
        let body = "x".repeat(i * 10);
        write!(
            c,
            "POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        assert_eq!(
            response(&mut c),
            (200, format!("POST /transmission/rpc {}", i * 10))
        );
    }
}

#[test]
fn oversized_body_is_refused_before_it_is_read() {
    let s = server(Limits {
        max_body: 1000,
        ..Limits::default()
    });
    let mut c = connect(&s);
    c.write_all(b"POST / HTTP/1.1\r\nContent-Length: 100000000\r\n\r\n")
        .unwrap();
    assert_eq!(response(&mut c).0, 413);
    let mut rest = Vec::new();
    assert_eq!(c.read_to_end(&mut rest).unwrap(), 0, "then closed");
}

#[test]
fn connections_beyond_the_bound_get_503() {
    let s = server(Limits {
        max_connections: 1,
        ..Limits::default()
    });
    let mut first = connect(&s);
    first.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(response(&mut first).0, 200);
    // In the middle of a request, it cannot be cut for a newcomer.
    first.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut second = connect(&s);
    assert_eq!(response(&mut second).0, 503);
    drop(first);
    // The slot frees once the first connection ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect(&s);
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        if response(&mut c).0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_slow_request_times_out_and_shutdown_cuts_idle_connections() {
    let mut s = server(Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    });
    let mut slow = connect(&s);
    slow.write_all(b"GET / HT").unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "closed at the deadline"
    );
    // An idle kept-alive connection ends when the server stops.
    let mut s2 = server(Limits::default());
    let mut idle = connect(&s2);
    idle.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(response(&mut idle).0, 200);
    let start = Instant::now();
    s2.shutdown();
    assert_eq!(idle.read(&mut [0u8; 16]).unwrap_or(0), 0);
    assert!(start.elapsed() < Duration::from_secs(3));
    s.shutdown();
}

#[test]
fn a_panicking_handler_gives_its_slot_back() {
    let s = server(Limits {
        max_connections: 1,
        ..Limits::default()
    });
    let mut c = connect(&s);
    c.write_all(b"GET /panic HTTP/1.1\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect(&s);
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        if response(&mut c).0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slot lost to a panic");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Threads of this process (`/proc/self/status`).
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Issue 25: 1,000 connections that send nothing do not lock a normal
/// client out (each newcomer takes the place of the idlest), and the
/// server's threads stay within its bound.
#[test]
fn a_thousand_silent_connections_do_not_lock_out_a_client() {
    let limits = Limits::default();
    let max = limits.max_connections;
    let s = server(limits);
    let before = threads();
    raise_fd_limit();
    let silent: Vec<TcpStream> = (0..1000).map(|_| connect(&s)).collect();
    // Let the acceptor take them all.
    std::thread::sleep(Duration::from_millis(500));
    let during = threads();
    let start = Instant::now();
    let mut c = connect(&s);
    c.write_all(b"POST /transmission/rpc HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    assert_eq!(response(&mut c), (200, "POST /transmission/rpc 2".into()));
    let took = start.elapsed();
    eprintln!(
        "1000 silent connections: threads {before} -> {during} (bound {max}), a client answered in {took:?}"
    );
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    // Other tests run threads in this process too: a margin of 16.
    assert!(
        during <= before + max + 16,
        "threads {before} -> {during} with a bound of {max}"
    );
    drop(silent);
}

/// Issue 25: connections trickling a request byte by byte (slowloris) fill
/// the bound; past `slow_request` the slowest gives way to a newcomer.
#[test]
fn slowloris_connections_give_way_to_a_client() {
    let s = server(Limits {
        max_connections: 8,
        slow_request: Duration::from_millis(300),
        ..Limits::default()
    });
    let slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut c = connect(&s);
            c.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
            c
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickle = {
        let stop = stop.clone();
        let mut conns: Vec<TcpStream> = slow.iter().map(|c| c.try_clone().unwrap()).collect();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for c in &mut conns {
                    let _ = c.write_all(b"a");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(600));
    let start = Instant::now();
    let mut c = connect(&s);
    c.write_all(b"GET /ok HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(response(&mut c), (200, "GET /ok 0".into()));
    assert!(start.elapsed() < Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    trickle.join().unwrap();
    drop(slow);
}

/// Issue 25: bodies held at once are bounded over all connections; a
/// request beyond gets 503 before its body is read.
#[test]
fn bodies_in_flight_share_one_budget() {
    let s = server(Limits {
        max_body: 1 << 20,
        max_bodies: (2 << 20) + 4096,
        ..Limits::default()
    });
    let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 1 << 20);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = connect(&s);
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&[b'x'; 1000]).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = connect(&s);
    third.write_all(head.as_bytes()).unwrap();
    assert_eq!(response(&mut third).0, 503);
    // A small request still fits; a finished body gives its share back.
    let mut small = connect(&s);
    small
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        .unwrap();
    assert_eq!(response(&mut small), (200, "POST / 3".into()));
    held[0].write_all(&vec![b'x'; (1 << 20) - 1000]).unwrap();
    assert_eq!(response(&mut held[0]), (200, format!("POST / {}", 1 << 20)));
    let mut fourth = connect(&s);
    fourth.write_all(head.as_bytes()).unwrap();
    fourth.write_all(&vec![b'y'; 1 << 20]).unwrap();
    assert_eq!(response(&mut fourth), (200, format!("POST / {}", 1 << 20)));
    drop(held);
}

/// Raises this process's soft limit on open files (to its hard limit, at
/// most 8192) so that 1,000 client sockets fit under a 1,024 default.
fn raise_fd_limit() {
    bittern_testkit::raise_fd_limit();
}
