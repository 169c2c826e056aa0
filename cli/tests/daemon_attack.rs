//! Issue 25 against the real `bittern daemon` on 127.0.0.1: request bodies
//! of 1 GiB, JSON nested 100,000 deep, 1,000 connections that send
//! nothing (threads, file descriptors and RSS of the daemon read from
//! /proc), and directories and renames that try to leave `--data-root`
//! through `..` or symlinks. The store's crash safety is in
//! `daemon_crash.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::daemon::{free_port, start_daemon};
use crate::util::*;

/// One raw request on its own connection; (status, head, body).
pub(crate) fn raw(port: u16, request: &[u8]) -> (u16, String, Vec<u8>) {
    try_raw(port, request).unwrap_or_else(|e| panic!("request to the daemon: {e}"))
}

/// [`raw`] that reports a failed connection (a daemon being killed).
pub(crate) fn try_raw(port: u16, request: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    c.write_all(request)?;
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no response head"))?;
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, head, out[split + 4..].to_vec()))
}

/// An RPC client doing the session-id handshake.
pub(crate) struct Client {
    pub port: u16,
    pub(crate) id: String,
}

impl Client {
    pub(crate) fn new(port: u16) -> Client {
        Client {
            port,
            id: String::new(),
        }
    }

    /// POSTs `body` (raw bytes); the parsed reply.
    pub(crate) fn post(&mut self, body: &[u8]) -> Value {
        self.try_post(body)
            .unwrap_or_else(|e| panic!("rpc to the daemon: {e}"))
    }

    /// [`post`](Self::post) that reports a failed connection.
    pub(crate) fn try_post(&mut self, body: &[u8]) -> std::io::Result<Value> {
        for _ in 0..2 {
            let mut req = format!(
                "POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
                 X-Transmission-Session-Id: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                self.port,
                self.id,
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(body);
            let (status, head, reply) = try_raw(self.port, &req)?;
            if status == 409 {
                self.id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Transmission-Session-Id: "))
                    .unwrap_or("")
                    .trim()
                    .to_string();
                continue;
            }
            assert_eq!(status, 200, "{head}");
            return serde_json::from_slice(&reply).map_err(std::io::Error::other);
        }
        Err(std::io::Error::other("session id refused twice"))
    }

    pub(crate) fn call(&mut self, v: Value) -> Value {
        self.post(&serde_json::to_vec(&v).unwrap())
    }

    /// `call` that must succeed; its arguments.
    pub(crate) fn ok(&mut self, v: Value) -> Value {
        let r = self.call(v.clone());
        assert_eq!(r["result"], "success", "{v} -> {r}");
        r["arguments"].clone()
    }
}

/// (threads, open fds, RSS in KiB) of a process, from /proc.
pub(crate) fn usage(pid: u32) -> (usize, usize, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap()
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (field("Threads:") as usize, fds, field("VmRSS:"))
}

#[test]
fn rpc_attacks_on_the_real_daemon_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let d = start_daemon(&tmp.path().join("config"), free_port(), free_port(), &[]);
    let port = d.rpc;
    let pid = d.proc.child.id();
    let mut client = Client::new(port);
    client.ok(json!({"method": "session-get"}));
    let base = usage(pid);

    // 1 GiB announced: refused from the head alone, before any body byte.
    let start = Instant::now();
    let (status, _, _) = raw(
        port,
        format!(
            "POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            1u64 << 30
        )
        .as_bytes(),
    );
    assert_eq!(status, 413);
    assert!(start.elapsed() < Duration::from_secs(5));
    // With Expect: 100-continue the client is never invited to send it.
    let (status, head, _) = raw(
        port,
        format!(
            "POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            1u64 << 30
        )
        .as_bytes(),
    );
    assert_eq!(status, 413, "{head}");
    // Chunked (no length to check up front) is refused too.
    let (status, _, _) = raw(
        port,
        b"POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(status, 411);
    // A client that streams 1 GiB anyway is cut off early.
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(
        format!(
            "POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            1u64 << 30
        )
        .as_bytes(),
    )
    .unwrap();
    let chunk = vec![b'['; 1 << 20];
    let mut sent = 0u64;
    while sent < 1 << 30 {
        match c.write(&chunk) {
            Ok(n) => sent += n as u64,
            Err(_) => break,
        }
    }
    eprintln!("1 GiB body: the daemon cut the connection after {sent} bytes were sent");
    assert!(sent < 256 << 20, "{sent} bytes accepted");
    drop(c);

    // JSON nested 100,000 deep, on a real connection thread's stack.
    let depth = 100_000;
    for body in [
        "[".repeat(depth) + &"]".repeat(depth),
        format!(
            r#"{{"method":"torrent-get","arguments":{{"fields":{}{}}}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    ] {
        let r = client.post(body.as_bytes());
        assert_ne!(r["result"], "success", "{r}");
    }

    // 1,000 connections that send nothing.
    raise_fd_limit();
    let silent: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let during = usage(pid);
    let start = Instant::now();
    client.ok(json!({"method": "session-get"}));
    let took = start.elapsed();
    eprintln!(
        "daemon (threads, fds, RSS KiB): at rest {base:?}, with 1000 silent connections \
         {during:?}; a normal client answered in {took:?}"
    );
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    let bound = bittern_daemon::Limits::default().max_connections;
    assert!(
        during.0 <= base.0 + bound + 2,
        "threads {base:?} -> {during:?}"
    );
    // Two descriptors per connection: its socket and the clone that
    // shutdown (or eviction) cuts.
    assert!(
        during.1 <= base.1 + 2 * bound + 8,
        "fds {base:?} -> {during:?}"
    );
    assert!(during.2 <= base.2 + 64 * 1024, "RSS {base:?} -> {during:?}");
    drop(silent);
    // The daemon's threads see the closes and let go of their sockets in
    // their own time (a loaded machine can take seconds): wait for it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = usage(pid);
    while after.1 > base.1 + 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = usage(pid);
    }
    eprintln!("after the attacks: {after:?}");
    assert!(after.1 <= base.1 + 4, "fds leaked: {base:?} -> {after:?}");
    client.ok(json!({"method": "session-get"}));
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn paths_cannot_leave_the_data_root() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let root = t.join("root");
    let outside = t.join("outside");
    std::fs::create_dir_all(root.join("in")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    // A torrent whose data is in place, with a folder that an attacker
    // made a symlink to the outside.
    write(&root.join("in/top/a.bin"), &[1u8; 20_000]);
    write(&t.join("src/top/a.bin"), &[1u8; 20_000]);
    write(&t.join("src/top/sub/b.bin"), &[2u8; 20_000]);
    write(&outside.join("b.bin"), &[2u8; 20_000]);
    std::os::unix::fs::symlink(&outside, root.join("in/top/sub")).unwrap();
    let torrent = create(&t.join("src/top"), &t.join("top.torrent"), &[]);
    let meta = data_encoding::BASE64.encode(&std::fs::read(&torrent).unwrap());
    let d = start_daemon(
        &t.join("config"),
        free_port(),
        free_port(),
        &["--data-root", root.to_str().unwrap()],
    );
    let mut c = Client::new(d.rpc);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for bad in [
        format!("{}/../outside", s(&root)),
        format!("{}/in/../../outside", s(&root)),
        s(&root.join("link")),
        s(&root.join("link/deeper/new")),
        s(&outside),
        "../outside".into(),
    ] {
        let r = c.call(json!({"method": "torrent-add",
            "arguments": {"metainfo": meta, "download-dir": bad, "paused": true}}));
        assert_ne!(r["result"], "success", "torrent-add to {bad}: {r}");
        let r = c.call(json!({"method": "session-set",
            "arguments": {"download-dir": bad}}));
        assert_ne!(r["result"], "success", "session-set to {bad}: {r}");
        let r = c.call(json!({"method": "session-set",
            "arguments": {"incomplete-dir": bad, "incomplete-dir-enabled": true}}));
        assert_ne!(r["result"], "success", "incomplete-dir {bad}: {r}");
    }
    let added = c.ok(json!({"method": "torrent-add",
        "arguments": {"metainfo": meta, "download-dir": s(&root.join("in")), "paused": true}}));
    let hash = added["torrent-added"]["hashString"]
        .as_str()
        .unwrap()
        .to_string();
    for bad in [
        s(&root.join("link")),
        format!("{}/in/../../outside", s(&root)),
    ] {
        let r = c.call(json!({"method": "torrent-set-location",
            "arguments": {"ids": [hash], "location": bad, "move": true}}));
        assert_ne!(r["result"], "success", "set-location to {bad}: {r}");
    }
    for (path, name) in [
        ("top/a.bin", "../../../outside/a.bin"),
        ("top/a.bin", "x/../../a.bin"),
        ("top", ".."),
        ("top/../..", "x"),
        // Its folder resolves outside: renaming inside it would write there.
        ("top/sub/b.bin", "c.bin"),
    ] {
        let r = c.call(json!({"method": "torrent-rename-path",
            "arguments": {"ids": [hash], "path": path, "name": name}}));
        assert_ne!(r["result"], "success", "rename {path} -> {name}: {r}");
    }
    // Nothing moved: the data is where it was, the outside untouched.
    let mut out: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    out.sort();
    assert_eq!(out, ["b.bin"]);
    assert_eq!(
        std::fs::read(root.join("in/top/a.bin")).unwrap(),
        [1u8; 20_000]
    );
    assert!(!t.join("a.bin").exists() && !t.join("c.bin").exists());
    let got = c.ok(json!({"method": "torrent-get",
        "arguments": {"ids": [hash], "fields": ["downloadDir", "name"]}}));
    assert_eq!(got["torrents"][0]["downloadDir"], s(&root.join("in")));
    assert_eq!(got["torrents"][0]["name"], "top");
}

/// 32 clients (the connection bound) each sending a 15 MiB body at once:
/// the bodies held are bounded over all connections (the rest get 503),
/// so the daemon's RSS stays far below 32 x 15 MiB.
#[test]
fn big_bodies_at_once_stay_within_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let d = start_daemon(&tmp.path().join("config"), free_port(), free_port(), &[]);
    let (port, pid) = (d.rpc, d.proc.child.id());
    let mut client = Client::new(port);
    client.ok(json!({"method": "session-get"}));
    let base = usage(pid).2;
    let pad = "a".repeat(15 << 20);
    let body = format!(r#"{{"method":"session-get","arguments":{{"pad":"{pad}"}}}}"#);
    let request = format!(
        "POST /transmission/rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Transmission-Session-Id: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        client.id,
        body.len()
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (peak, statuses) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(usage(pid).2);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let senders: Vec<_> = (0..32)
            .map(|_| s.spawn(|| try_raw(port, request.as_bytes()).map(|r| r.0)))
            .collect();
        let statuses: Vec<_> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (sampler.join().unwrap(), statuses)
    });
    let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    let busy = statuses.iter().filter(|s| matches!(s, Ok(503))).count();
    eprintln!(
        "32 x 15 MiB bodies at once: {ok} answered, {busy} refused with 503, \
         {} cut; daemon RSS {base} KiB -> peak {peak} KiB",
        32 - ok - busy
    );
    assert!(ok >= 1, "{statuses:?}");
    assert!(
        peak < base + 256 * 1024,
        "RSS {base} -> {peak} KiB for 32 x 15 MiB"
    );
    client.ok(json!({"method": "session-get"}));
}

/// Raises this process's soft limit on open files (to its hard limit, at
/// most 8192) so that 1,000 client sockets fit under a 1,024 default.
fn raise_fd_limit() {
    bittern_testkit::raise_fd_limit();
}
