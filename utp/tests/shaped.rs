//! uTP over a shaped link: `lo` inside a private network namespace the test
//! creates (`unshare --net`; the body first asserts that the namespace is
//! not the one the test started in and that it holds only `lo`), shaped by
//! the kernel.
//!
//! This kernel has no `netem` (`CONFIG_NET_SCH_NETEM` is not set; only
//! `tbf` and `htb` among the shapers), so delay and loss come from what it
//! has: a `tbf` rate limit whose queue holds up to a given latency (the
//! delay LEDBAT measures, and tail drops when it overflows) and an
//! nftables rule that drops a random share of UDP datagrams (`numgen
//! random`). `lo`'s MTU is set to 1500 so that TCP segments are sized as
//! on a real link and fit `tbf`'s bucket.
//!
//! Both tests re-run themselves inside the namespace (`BITTERN_UTP_NETNS=1`)
//! and need root, `unshare`, `ip`, `tc` and `nft` (Debian iproute2 and
//! nftables); without them they skip, or fail under
//! `BITTERN_REQUIRE_INTEROP=1`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bittern_utp::{UtpSocket, UtpStream};

const INSIDE_ENV: &str = "BITTERN_UTP_NETNS";
const OUTER_NS_ENV: &str = "BITTERN_UTP_OUTER_NETNS";

fn netns_id() -> String {
    let link = std::fs::read_link("/proc/self/ns/net").unwrap();
    link.to_string_lossy().into_owned()
}

/// Outside: runs test `name` of this binary again in a fresh network
/// namespace and checks that it ran and passed there. True when the caller
/// is already inside and should run the body.
fn in_namespace(name: &str) -> bool {
    if std::env::var(INSIDE_ENV).as_deref() == Ok("1") {
        return true;
    }
    let ok = bittern_testkit::is_root()
        && ["unshare", "ip", "tc", "nft"]
            .iter()
            .all(|t| bittern_testkit::on_path(t));
    if !bittern_testkit::require(
        "root with unshare(1), ip(8), tc(8) and nft(8) (iproute2, nftables), for the shaped-link uTP tests",
        ok,
    ) {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE_ENV, "1")
        .env(OUTER_NS_ENV, netns_id())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{name} failed in the namespace:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") && stderr.contains(&format!("UTP-NETNS-RAN {name}")),
        "{name} did not run in the namespace:\n{stdout}\n{stderr}"
    );
    false
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Inside: asserts the namespace is private and holds only `lo`, brings
/// `lo` up with MTU 1500 and shapes it: `tbf` at `rate` with a queue of
/// `latency`, and a random `udp_loss_pct` % of UDP datagrams dropped.
fn shape_private_lo(name: &str, rate: &str, latency: &str, udp_loss_pct: u32) {
    let outer = std::env::var(OUTER_NS_ENV).unwrap_or_default();
    assert!(
        outer.starts_with("net:["),
        "outer namespace unknown: {outer:?}"
    );
    assert_ne!(netns_id(), outer, "not in a private network namespace");
    bittern_testkit::netns::assert_only_lo("the namespace must hold only lo");
    run("ip", &["link", "set", "lo", "mtu", "1500", "up"]);
    // The queue sits on an ifb device fed from lo's ingress: there the
    // packets no longer belong to their sockets, as in a router's queue. A
    // queue on lo's egress would still count against TCP's small-queue
    // limit (TSQ, about 1 ms of data per socket), which starves TCP behind
    // any standing queue and says nothing about LEDBAT.
    run("ip", &["link", "add", "ifb0", "type", "ifb"]);
    run("ip", &["link", "set", "ifb0", "mtu", "1500", "up"]);
    run(
        "tc",
        &["qdisc", "add", "dev", "lo", "handle", "ffff:", "ingress"],
    );
    run(
        "tc",
        &[
            "filter", "add", "dev", "lo", "parent", "ffff:", "protocol", "all", "u32", "match",
            "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", "ifb0",
        ],
    );
    run(
        "tc",
        &[
            "qdisc", "add", "dev", "ifb0", "root", "tbf", "rate", rate, "burst", "16kb", "latency",
            latency,
        ],
    );
    if udp_loss_pct > 0 {
        run("nft", &["add", "table", "inet", "shape"]);
        run(
            "nft",
            &[
                "add",
                "chain",
                "inet",
                "shape",
                "out",
                "{ type filter hook output priority 0; }",
            ],
        );
        let rule = format!("meta l4proto udp numgen random mod 100 lt {udp_loss_pct} counter drop");
        let mut args = vec!["add", "rule", "inet", "shape", "out"];
        args.extend(rule.split(' '));
        run("nft", &args);
    }
    eprintln!("UTP-NETNS-RAN {name}");
}

/// (bytes sent, packets dropped) of the shaping queue.
fn qdisc_stats() -> (u64, u64) {
    let s = run("tc", &["-s", "qdisc", "show", "dev", "ifb0"]);
    let num_after = |key: &str| -> u64 {
        let i = s.find(key).unwrap_or_else(|| panic!("no {key:?} in {s}")) + key.len();
        s[i..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad {key:?} in {s}"))
    };
    (num_after("Sent"), num_after("dropped"))
}

/// Packets the nftables loss rule dropped.
fn nft_dropped() -> u64 {
    let s = run("nft", &["list", "table", "inet", "shape"]);
    let i = s.find("counter packets").expect("nft counter") + "counter packets".len();
    s[i..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("nft counter value")
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    bittern_testkit::xorshift64_bytes(len, seed)
}

/// 3 MiB through a 20 Mbit/s link with a 50 ms queue and 1 % of UDP
/// datagrams dropped in each direction (data and ACKs): every byte arrives
/// in order, and the counters show the link did drop packets.
#[test]
fn utp_through_loss_and_a_queueing_link_is_byte_identical() {
    let name = "shaped::utp_through_loss_and_a_queueing_link_is_byte_identical";
    if !in_namespace(name) {
        return;
    }
    shape_private_lo(name, "20mbit", "50ms", 1);
    let listener = UtpSocket::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let data = pattern(3 << 20, 22);
    let sent = data.clone();
    let started = Instant::now();
    let sender = thread::spawn(move || {
        let mut s = UtpStream::connect(addr, Duration::from_secs(10)).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&sent).expect("write");
        s.shutdown(Shutdown::Write).unwrap();
        let mut b = [0u8; 1];
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.read_exact(&mut b).expect("verdict");
        b[0]
    });
    let mut s = listener
        .accept_timeout(Duration::from_secs(10))
        .expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read to eof");
    let took = started.elapsed();
    s.write_all(&[7]).unwrap();
    assert_eq!(sender.join().expect("sender thread"), 7);
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes differ");
    let (bytes, tail_drops) = qdisc_stats();
    let lost = nft_dropped();
    eprintln!(
        "shaped: 3 MiB in {took:.2?} ({:.2} MB/s) through 20 Mbit/s; nft dropped {lost} datagrams, tbf {tail_drops}, tbf sent {bytes} bytes",
        data.len() as f64 / took.as_secs_f64() / 1e6
    );
    assert!(lost > 0, "the loss rule dropped nothing");
    assert!(bytes >= data.len() as u64, "the data did not cross the tbf");
}

/// Counts bytes read from a reader until `stop`.
fn count_reads(mut r: impl Read, count: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        match r.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if bittern_testkit::is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// Writes until `stop` or an error.
fn write_until(mut w: impl Write, stop: Arc<AtomicBool>) {
    let buf = vec![0x5au8; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        match w.write(&buf) {
            Ok(_) => {}
            Err(e) if bittern_testkit::is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// A TCP connection to `to` with CUBIC congestion control, set on the
/// socket before connecting (this machine's default is BBR, which does not
/// fill queues; LEDBAT is built to yield to loss-based TCP).
fn cubic_connect(to: std::net::SocketAddr) -> TcpStream {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the fd is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd is a fresh socket nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let cc = b"cubic";
    // SAFETY: cc outlives the call; the length is its length.
    let rc = unsafe {
        libc::setsockopt(
            owned.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            cc.as_ptr().cast(),
            cc.len() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "TCP_CONGESTION cubic: {}",
        std::io::Error::last_os_error()
    );
    let std::net::SocketAddr::V4(v4) = to else {
        panic!("ipv4 only")
    };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sa is a valid sockaddr_in of the given size.
    let rc = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            std::ptr::addr_of!(sa).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
    TcpStream::from(owned)
}

/// Bytes `count` grows by over `span`, as bytes per second.
fn rate_over(count: &AtomicU64, span: Duration) -> f64 {
    let a = count.load(Ordering::Relaxed);
    let t = Instant::now();
    thread::sleep(span);
    let b = count.load(Ordering::Relaxed);
    (b - a) as f64 / t.elapsed().as_secs_f64()
}

/// LEDBAT yields to TCP. `lo` limited to 40 Mbit/s (5 MB/s) with a queue
/// of up to 300 ms (room above uTP's 100 ms target). A uTP bulk flow runs
/// alone, then a TCP bulk flow (Linux's default congestion control) joins:
/// TCP fills the queue, uTP sees its one-way delay over target and backs
/// off. Asserted generously (a loaded machine slows both): uTP alone moves
/// at least 40 % of the link; together uTP gets under half of what the
/// two move and TCP at least 40 % of the link.
#[test]
fn utp_yields_to_tcp_on_a_rate_limited_link() {
    let name = "shaped::utp_yields_to_tcp_on_a_rate_limited_link";
    if !in_namespace(name) {
        return;
    }
    let link = 40e6 / 8.0;
    shape_private_lo(name, "40mbit", "300ms", 0);
    let stop = Arc::new(AtomicBool::new(false));

    let listener = UtpSocket::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr();
    let utp_bytes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    {
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            let s = UtpStream::connect(addr, Duration::from_secs(10)).expect("utp connect");
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            write_until(s, stop);
        }));
    }
    let r = listener
        .accept_timeout(Duration::from_secs(10))
        .expect("utp accept");
    r.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    {
        let (count, stop) = (utp_bytes.clone(), stop.clone());
        threads.push(thread::spawn(move || count_reads(r, count, stop)));
    }
    // Past slow start, then uTP alone.
    thread::sleep(Duration::from_secs(2));
    let utp_alone = rate_over(&utp_bytes, Duration::from_secs(3));

    let tl = TcpListener::bind("127.0.0.1:0").unwrap();
    let taddr = tl.local_addr().unwrap();
    let tcp_bytes = Arc::new(AtomicU64::new(0));
    {
        let stop = stop.clone();
        threads.push(thread::spawn(move || {
            let s = cubic_connect(taddr);
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            write_until(s, stop);
        }));
    }
    let (t, _) = tl.accept().unwrap();
    t.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    {
        let (count, stop) = (tcp_bytes.clone(), stop.clone());
        threads.push(thread::spawn(move || count_reads(t, count, stop)));
    }
    // Let TCP fill the queue and LEDBAT react, then measure both.
    thread::sleep(Duration::from_secs(3));
    let (u0, t0, at) = (
        utp_bytes.load(Ordering::Relaxed),
        tcp_bytes.load(Ordering::Relaxed),
        Instant::now(),
    );
    thread::sleep(Duration::from_secs(6));
    let span = at.elapsed().as_secs_f64();
    let utp_with = (utp_bytes.load(Ordering::Relaxed) - u0) as f64 / span;
    let tcp_with = (tcp_bytes.load(Ordering::Relaxed) - t0) as f64 / span;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let share = utp_with / (utp_with + tcp_with);
    eprintln!(
        "ledbat: link {:.2} MB/s; uTP alone {:.2} MB/s ({:.0} %); together uTP {:.2} MB/s, TCP {:.2} MB/s (TCP {:.0} % of the link, uTP share {:.0} %)",
        link / 1e6,
        utp_alone / 1e6,
        100.0 * utp_alone / link,
        utp_with / 1e6,
        tcp_with / 1e6,
        100.0 * tcp_with / link,
        100.0 * share
    );
    assert!(
        utp_alone >= 0.4 * link,
        "uTP alone moved {utp_alone:.0} B/s"
    );
    assert!(share < 0.5, "uTP kept {:.0} % against TCP", 100.0 * share);
    assert!(tcp_with >= 0.4 * link, "TCP moved {tcp_with:.0} B/s");
}
