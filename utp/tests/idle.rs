//! An idle uTP socket costs no wake-ups: with no connection the timer
//! thread (`utp-timer`) sleeps until one is made, and the reader
//! (`utp-net …`) blocks in `recvmmsg` until a datagram comes or the socket
//! is dropped. Counted from the kernel's context-switch counters of each
//! thread (`/proc/self/task/TID/status`), in a test binary of its own so
//! no other test's sockets are counted. Before the change the timer woke
//! every 50 ms and the reader every 100 ms: ~60 wake-ups in 2 s.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bittern_utp::{UtpSocket, UtpStream};

/// (tid, name) of this process's threads whose name starts with `utp-`.
fn utp_threads() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let tid = e.file_name().to_string_lossy().into_owned();
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let comm = comm.trim().to_string();
        if comm.starts_with("utp-") {
            out.push((tid, comm));
        }
    }
    out.sort();
    out
}

/// Voluntary + involuntary context switches of thread `tid` so far.
fn switches(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// Wake-ups of every `utp-` thread over `span`.
fn wakeups_over(span: Duration) -> Vec<(String, u64)> {
    let threads = utp_threads();
    let before: Vec<u64> = threads.iter().map(|(t, _)| switches(t)).collect();
    std::thread::sleep(span);
    threads
        .iter()
        .zip(before)
        .map(|((t, name), b)| (name.clone(), switches(t) - b))
        .collect()
}

#[test]
fn an_idle_socket_does_not_wake_up() {
    let a = UtpSocket::bind("127.0.0.1:0").unwrap();
    let b = UtpSocket::bind("127.0.0.1:0").unwrap();
    // Two sockets: two timers, two readers (named once they run).
    let end = Instant::now() + Duration::from_secs(5);
    while utp_threads().len() != 4 {
        assert!(Instant::now() < end, "{:?}", utp_threads());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let idle = wakeups_over(Duration::from_secs(2));
    eprintln!("idle, no connection ever: {idle:?}");
    for (name, n) in &idle {
        assert!(*n <= 2, "{name} woke {n} times in 2 s while idle");
    }

    // A connection wakes the timer; once it is closed and reaped the
    // sockets are quiet again.
    let addr = b.local_addr();
    let client = std::thread::spawn(move || {
        let mut s = UtpStream::connect(addr, Duration::from_secs(5)).expect("connect");
        s.write_all(b"ping").expect("write");
        let mut got = [0u8; 4];
        s.read_exact(&mut got).expect("read");
        got
    });
    let mut s = b.accept_timeout(Duration::from_secs(5)).expect("accept");
    let mut got = [0u8; 4];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    s.write_all(b"pong").unwrap();
    assert_eq!(&client.join().unwrap(), b"pong");
    drop(s);
    let end = Instant::now() + Duration::from_secs(30);
    while b.multiplexer().connection_count() + a.multiplexer().connection_count() > 0 {
        assert!(Instant::now() < end, "connections never reaped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b_count = b.multiplexer().connection_count();
    assert_eq!(b_count, 0);
    std::thread::sleep(Duration::from_millis(100));
    let after = wakeups_over(Duration::from_secs(2));
    eprintln!("idle after a closed connection: {after:?}");
    for (name, n) in &after {
        assert!(
            *n <= 2,
            "{name} woke {n} times in 2 s after its connection closed"
        );
    }

    // Dropping the sockets ends every thread (the reader is woken by the
    // drop, not by a timeout).
    drop(a);
    drop(b);
    let end = Instant::now() + Duration::from_secs(5);
    while !utp_threads().is_empty() {
        assert!(Instant::now() < end, "threads left: {:?}", utp_threads());
        std::thread::sleep(Duration::from_millis(10));
    }
}
