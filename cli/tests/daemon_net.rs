//! What `bittern daemon` knows of its network, asked by real clients:
//! `transmission-remote -pt` answered from the last incoming peer;
//! `-t N -it` and the Python transmission-rpc package's `tracker_stats`
//! and `pieces` (checked against the pieces that hash right on disk); the
//! blocklist fetched from 127.0.0.1 with `--blocklist-update`, a blocked
//! peer at 127.0.0.2 never dialled (TCP or uTP) nor accepted while one at
//! 127.0.0.1 serves.
//!
//! Nothing leaves loopback: the daemon's peers are bound to 127.0.0.1
//! (`--peer-bind`), so with no `dht-bootstrap` the DHT knows no router and
//! LSD is off by default; the tracker, the seeders, the blocklist's HTTP
//! server and the trap all listen on 127.0.0.1 or 127.0.0.2; the only
//! peers named (tracker replies, magnet `x.pe`) are those.

use std::net::{TcpListener, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::daemon::{
    free_port, remote, remote_ok, start_daemon, trpc_python, wait_list, Daemon, REMOTE,
};
use crate::daemon_magnet::rpc;
use crate::util::*;

fn have_remote() -> bool {
    bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    )
}

/// The `Port is open:` answer of `-pt`.
fn port_test(d: &Daemon) -> String {
    let out = remote_ok(d.rpc, &["-pt"]);
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Port is open:"))
        .unwrap_or_else(|| panic!("no answer in -pt: {out}"))
        .trim()
        .to_string()
}

#[test]
fn port_test_tracker_stats_and_pieces_with_real_clients() {
    if !have_remote() {
        return;
    }
    let python = trpc_python();
    let trpc = Command::new(&python)
        .args(["-c", "import transmission_rpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !bittern_testkit::require(
        "the Python transmission-rpc package (scripts/test.sh)",
        trpc,
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tracker = Proc::spawn(cmd(["tracker", "--bind", "127.0.0.1", "-p", "0"]));
    let url = tracker.wait_line("announce URL: ", Duration::from_secs(20));
    let url = url.trim_start_matches("announce URL: ").trim().to_string();
    // a.bin is 16 whole pieces, so no piece spans both files: b.bin's
    // pieces are all unwanted.
    random_file(&t.join("src/m/a.bin"), 16 * 65_536, 31);
    random_file(&t.join("src/m/b.bin"), 700_000, 32);
    let m = create(
        &t.join("src/m"),
        &t.join("m.torrent"),
        &["-t", &url, "--piece-length", "64KiB"],
    );
    // The seeder announces first: the tracker hands it to the daemon.
    let (_seeder, _) = start_seed(&m, &t.join("src"), &[]);
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    assert_eq!(port_test(&d), "No", "no peer has come in yet");

    // Added stopped, b.bin unwanted (-G 1), then started.
    remote_ok(d.rpc, &["--start-paused"]);
    let dl = t.join("dl");
    remote_ok(
        d.rpc,
        &["-a", m.to_str().unwrap(), "-w", dl.to_str().unwrap()],
    );
    remote_ok(d.rpc, &["-t", "1", "-G", "1"]);
    remote_ok(d.rpc, &["-t", "1", "-s"]);
    wait_list(d.rpc, "a.bin downloaded", |l| {
        l.len() == 1 && l[0].0 == "100%"
    });
    assert_eq!(
        std::fs::read(t.join("dl/m/a.bin")).unwrap(),
        std::fs::read(t.join("src/m/a.bin")).unwrap()
    );
    // The daemon dialled the seeder: still nothing came in.
    assert_eq!(port_test(&d), "No");
    // A second seeder dials the daemon: an incoming peer, so the port
    // (on loopback, where nothing else can reach it) is open.
    let daemon_peer = format!("127.0.0.1:{}", d.peer);
    let (_dialer, _) = start_seed(&m, &t.join("src"), &["--peer", &daemon_peer]);
    let start = Instant::now();
    while port_test(&d) != "Yes" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "-pt never said Yes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // -it prints the tracker with what the announce brought.
    let start = Instant::now();
    let info = loop {
        let info = remote_ok(d.rpc, &["-t", "1", "-it"]);
        if info.contains("Got a list of") || start.elapsed() > Duration::from_secs(60) {
            break info;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let host = url.trim_end_matches("/announce");
    assert!(info.contains(&format!("Tracker 0: {host}")), "{info}");
    assert!(info.contains("Active in tier 0"), "{info}");
    assert!(info.contains("Got a list of"), "{info}");
    assert!(info.contains("Asking for more peers in"), "{info}");
    // bittern schedules no scrapes: no line about them.
    assert!(!info.contains("peer counts"), "{info}");

    let out = Command::new(&python)
        .arg(script("trpc_trackers.py"))
        .arg(d.rpc.to_string())
        .arg(&m)
        .arg(&dl)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
}

/// A peer at 127.0.0.2 that only counts what reaches it, over TCP and UDP
/// (uTP), on one port.
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Trap {
    fn new() -> Trap {
        let tcp = TcpListener::bind("127.0.0.2:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = UdpSocket::bind(("127.0.0.2", port)).unwrap();
        tcp.set_nonblocking(true).unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                if tcp.accept().is_ok() {
                    h.fetch_add(1, Ordering::SeqCst);
                }
                if udp.recv_from(&mut buf).is_ok() {
                    h.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Trap { port, hits, stop }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Connects from `from` to the daemon's peers, sends a plain BitTorrent
/// handshake for `hash` and returns how many bytes came back before the
/// daemon closed (68 and more: it answered).
fn handshake_from(from: &str, port: u16, hash: &str) -> usize {
    let code = format!(
        "import socket,sys\n\
         s=socket.socket(); s.settimeout(10); s.bind(('{from}',0)); s.connect(('127.0.0.1',{port}))\n\
         s.sendall(b'\\x13BitTorrent protocol'+bytes(8)+bytes.fromhex('{hash}')+b'-XX0000-123456789012')\n\
         n=0\n\
         try:\n\
         \x20   while n<68:\n\
         \x20       b=s.recv(4096)\n\
         \x20       if not b: break\n\
         \x20       n+=len(b)\n\
         except (ConnectionResetError, socket.timeout): pass\n\
         print(n)\n"
    );
    let out = Command::new(PYTHON)
        .args(["-c", &code])
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("python: {out:?}"))
}

#[test]
fn the_blocklist_keeps_a_peer_at_127_0_0_2_out() {
    if !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // The list, served by Python's http.server on 127.0.0.1, with lines
    // of every format and some junk.
    let www = t.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("list.p2p"),
        "# test list\n\
         loopback two:127.0.0.2-127.0.0.2\n\
         010.000.000.000 - 010.255.255.255 , 000 , private net\n\
         \u{1}\u{2} not a range at all\n\
         v6 block:fd00::-fd00::ffff\n",
    )
    .unwrap();
    let http_port = free_port();
    let _http = Proc::spawn({
        let mut c = Command::new(PYTHON);
        c.args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &http_port.to_string(),
        ])
        .arg("--directory")
        .arg(&www);
        c
    });
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    random_file(&t.join("src/n.bin"), 1_500_000, 41);
    let n = create(&t.join("src/n.bin"), &t.join("n.torrent"), &[]);
    let hash = bittern_wire::Metainfo::from_bytes(&std::fs::read(&n).unwrap())
        .unwrap()
        .info_hash
        .to_hex();
    let (_seeder, seed_port) = start_seed(&n, &t.join("src"), &[]);
    let trap = Trap::new();
    let d = start_daemon(&t.join("config"), 0, 0, &[]);

    // No URL yet: a clear error, nothing fetched.
    let (code, out) = remote(d.rpc, &["--blocklist-update"]);
    assert!(
        code != Some(0) && out.contains("blocklist-url is not set"),
        "{out}"
    );
    rpc(
        d.rpc,
        "session-set",
        json!({"blocklist-url": format!("http://127.0.0.1:{http_port}/list.p2p")}),
    );
    // transmission-remote 3.00 prints the result, not the size it gets
    // back (the daemon's tests check the reply); session-get has it.
    let out = remote_ok(d.rpc, &["--blocklist-update"]);
    assert!(out.contains("responded: \"success\""), "{out}");
    let s = rpc(d.rpc, "session-get", json!({"fields": ["blocklist-size"]}));
    assert_eq!(
        s["blocklist-size"], 3,
        "three ranges; the junk line skipped"
    );

    // The control: with the list stored but blocklist-enabled off, the
    // daemon does dial 127.0.0.2 (a magnet naming only the trap).
    let control = format!(
        "magnet:?xt=urn:btih:{}&x.pe=127.0.0.2:{}",
        "ab".repeat(20),
        trap.port
    );
    remote_ok(
        d.rpc,
        &["-a", &control, "-w", t.join("dl0").to_str().unwrap()],
    );
    let start = Instant::now();
    while trap.hits() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the control never dialled the trap"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    remote_ok(d.rpc, &["-t", "1", "-r"]);
    wait_list(d.rpc, "the control removed", |l| l.is_empty());

    rpc(d.rpc, "session-set", json!({"blocklist-enabled": true}));
    std::thread::sleep(Duration::from_millis(500));
    let before = trap.hits();
    // The trap first in the link, then the real seeder at 127.0.0.1.
    let link = format!(
        "magnet:?xt=urn:btih:{hash}&dn=n.bin&x.pe=127.0.0.2:{}&x.pe=127.0.0.1:{seed_port}",
        trap.port
    );
    remote_ok(d.rpc, &["-a", &link, "-w", t.join("dl").to_str().unwrap()]);
    wait_list(d.rpc, "n.bin downloaded", |l| {
        l.len() == 1 && l[0].0 == "100%"
    });
    assert_eq!(
        std::fs::read(t.join("dl/n.bin")).unwrap(),
        std::fs::read(t.join("src/n.bin")).unwrap()
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        trap.hits(),
        before,
        "nothing reached 127.0.0.2 once blocked"
    );

    // Incoming: from 127.0.0.2 closed unanswered, from 127.0.0.1 answered.
    assert_eq!(handshake_from("127.0.0.2", d.peer, &hash), 0);
    assert!(handshake_from("127.0.0.1", d.peer, &hash) >= 68);

    // Stored and reloaded: after a restart the size is the same.
    let mut d = d;
    d.proc.signal(libc::SIGTERM);
    assert_eq!(d.proc.wait(Duration::from_secs(30)).code(), Some(0));
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let s = rpc(
        d.rpc,
        "session-get",
        json!({"fields": ["blocklist-size", "blocklist-enabled"]}),
    );
    assert_eq!(
        (&s["blocklist-size"], &s["blocklist-enabled"]),
        (&json!(3), &json!(true))
    );
    assert_eq!(
        handshake_from("127.0.0.2", d.peer, &hash),
        0,
        "blocked after the restart"
    );
}

/// `transmission-remote -p PORT` moves the peer listener at once: the old
/// port is closed, a leecher given only the new one downloads from the
/// daemon, nothing waits for a restart; a port in use is refused and the
/// old one kept.
#[test]
fn peer_port_changes_apply_live() {
    if !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = random_file(&t.join("src/p.bin"), 1_200_000, 51);
    let p = create(&t.join("src/p.bin"), &t.join("p.torrent"), &[]);
    let d = start_daemon(&t.join("config"), 0, 0, &["--no-dht"]);
    remote_ok(
        d.rpc,
        &[
            "-a",
            p.to_str().unwrap(),
            "-w",
            t.join("src").to_str().unwrap(),
        ],
    );
    wait_list(d.rpc, "p.bin seeding", |l| l.len() == 1 && l[0].0 == "100%");

    // A port someone else holds: refused, nothing changes.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let (code, out) = remote(d.rpc, &["-p", &taken_port]);
    assert!(code != Some(0) && out.contains("cannot listen"), "{out}");
    let listen = |rpc: u16| {
        let s = rpc_get(rpc);
        (
            s["peer-port"].as_u64().unwrap() as u16,
            s["bittern-restart-pending"].clone(),
        )
    };
    assert_eq!(listen(d.rpc), (d.peer, json!([])));

    let new_port = free_port();
    remote_ok(d.rpc, &["-p", &new_port.to_string()]);
    assert_eq!(
        listen(d.rpc),
        (new_port, json!([])),
        "in effect now, no restart"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", d.peer)).is_err(),
        "the old port is closed"
    );
    let si = remote_ok(d.rpc, &["-si"]);
    assert!(si.contains(&format!("Listenport: {new_port}")), "{si}");
    // The torrent runs again in the new session, still complete.
    wait_list(d.rpc, "p.bin seeding again", |l| {
        l.len() == 1 && l[0].0 == "100%" && l[0].1 != "Stopped"
    });

    let r = run_limited(
        cmd([
            "download",
            p.to_str().unwrap(),
            "-d",
            t.join("dl").to_str().unwrap(),
            "--bind",
            "127.0.0.1",
            "-p",
            "0",
            "--peer",
            &format!("127.0.0.1:{new_port}"),
            "--exit-on-complete",
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(std::fs::read(t.join("dl/p.bin")).unwrap(), data);
    assert_eq!(port_test(&d), "Yes", "the leecher came in on the new port");
}

fn rpc_get(port: u16) -> serde_json::Value {
    rpc(port, "session-get", json!({}))
}
