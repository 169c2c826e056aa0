//! Debian's `opentracker` on 127.0.0.1 (HTTP and UDP on one port) for one
//! test, whitelisting the info hashes the test uses (Debian builds it with
//! `WANT_ACCESSLIST_WHITE`).

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's opentracker.
pub const OPENTRACKER: &str = "/usr/bin/opentracker";

/// A running opentracker, killed (and its directory removed) on drop.
pub struct OpenTracker {
    child: Child,
    /// Its HTTP and UDP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for OpenTracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 free for both TCP and UDP.
pub fn free_tcp_udp_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = tcp.local_addr().expect("a bound address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl OpenTracker {
    /// Starts opentracker on 127.0.0.1 whitelisting `hex_hashes` (40
    /// hex digits each) and returns once it accepts TCP connections (5 s
    /// at most). The whitelist itself is loaded in the background: a test
    /// that must see it applied polls with an announce.
    pub fn start(hex_hashes: &[String]) -> OpenTracker {
        let dir = tempfile::tempdir().expect("a temp dir");
        let list: String = hex_hashes.iter().map(|h| format!("{h}\n")).collect();
        let wl = dir.path().join("whitelist.txt");
        std::fs::write(&wl, list).expect("write the whitelist");
        // As root, opentracker chroots into -d and drops to `nobody`, so the
        // whitelist path is relative to the chroot and must be world-readable.
        let wl_arg = if crate::is_root() {
            use std::os::unix::fs::PermissionsExt;
            let perm = |p: &std::path::Path, mode| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                    .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()))
            };
            perm(dir.path(), 0o755);
            perm(&wl, 0o644);
            "/whitelist.txt".to_string()
        } else {
            wl.display().to_string()
        };
        let port = free_tcp_udp_port();
        let child = Command::new(OPENTRACKER)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-P", &port.to_string(), "-w", &wl_arg, "-d"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start opentracker");
        let ot = OpenTracker {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "opentracker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        ot
    }
}
