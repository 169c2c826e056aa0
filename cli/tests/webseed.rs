//! `bittern download` from a web seed (BEP 19) alone: nginx on 127.0.0.1
//! serves the data named by `bittern create --web-seed`; `info` lists the
//! seed, the status lines and the summary count its bytes.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// nginx in the foreground on a free 127.0.0.1 port serving `root`;
/// killed on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(root: &Path) -> Option<Nginx> {
        let bin = "/usr/sbin/nginx";
        if !bittern_testkit::require("nginx (Debian nginx-light)", Path::new(bin).is_file()) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log {d}/access.log;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx { child, port, dir })
    }

    /// Requests served so far.
    fn requests(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn download_from_a_web_seed_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("share/a.bin"), 2_000_003, 41);
    random_file(&src.join("share/sub/b.bin"), 700_000, 42);
    let Some(nginx) = Nginx::start(&src) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/", nginx.port);
    let t = create(
        &src.join("share"),
        &tmp.path().join("share.torrent"),
        &["--piece-length", "32KiB", "--web-seed", &url],
    );
    let info = bittern(["info", t.to_str().unwrap()]);
    assert_eq!(info.code, Some(0), "{info:?}");
    assert!(
        info.stdout.contains(&url),
        "info lists the web seed:\n{}",
        info.stdout
    );

    let dst = tmp.path().join("dst");
    let r = run_limited(
        cmd([
            "--status-interval",
            "50ms",
            "download",
            t.to_str().unwrap(),
            "-d",
            dst.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
            "-p",
            "0",
            "--exit-on-complete",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(tree(&dst.join("share")), tree(&src.join("share")));
    let (downloaded, have, of) = summary(&r.stdout);
    assert_eq!((have, of), (2_700_003, 2_700_003));
    assert_eq!(downloaded, 2_700_003);
    assert!(
        r.stdout.contains("(2700003 from web seeds)"),
        "{}",
        r.stdout
    );
    // Plain status lines (no terminal) show the web seed's share.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.contains("(web ") && l.contains("2.6 MiB, ")),
        "{}",
        r.stderr
    );
    assert!(nginx.requests() >= 2, "both files came from nginx");
}

#[test]
fn no_web_seeds_flag_keeps_away_from_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    random_file(&src.join("c.bin"), 300_000, 43);
    let Some(nginx) = Nginx::start(&src) else {
        return;
    };
    let url = format!("http://127.0.0.1:{}/c.bin", nginx.port);
    let t = create(
        &src.join("c.bin"),
        &tmp.path().join("c.torrent"),
        &["--web-seed", &url],
    );
    let dst = tmp.path().join("dst");
    let mut p = Proc::spawn(cmd([
        "download",
        t.to_str().unwrap(),
        "-d",
        dst.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
        "--no-web-seeds",
        "--exit-on-complete",
    ]));
    p.wait_line("listening on", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(nginx.requests(), 0, "the web seed was not asked");
    p.signal(libc::SIGTERM);
    let status = p.wait(Duration::from_secs(20));
    let out = p.finish(status);
    assert!(out.stdout.contains("have 0 of 300000 bytes"), "{out:?}");
}
