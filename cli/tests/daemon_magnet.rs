//! Magnet links and `.torrent` URLs in `bittern daemon`, driven by real
//! clients on 127.0.0.1: `transmission-remote -a MAGNET` adds a link whose
//! `x.pe` names a `bittern seed`; torrent-get shows the metadata state
//! (name from `dn`, no size) until the seeder is up; the daemon is
//! SIGKILLed and stopped gracefully mid-fetch and keeps the magnet; the
//! data then arrives byte-identical and the fetched `.torrent` is kept, so
//! a restart with no peer at all knows the name and size. The Python
//! `transmission-rpc` package adds magnets too (seeded by `bittern seed`
//! and by libtorrent), and `transmission-remote -a URL` a `.torrent`
//! served on loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bittern_testkit::webdriver::{agent, json_of};
use bittern_wire::Metainfo;
use serde_json::{json, Value};

use crate::daemon::{free_port, remote_ok, start_daemon, trpc_python, wait_list, REMOTE};
use crate::util::*;

/// One RPC call with the session-id handshake; returns `arguments`.
pub(crate) fn rpc(port: u16, method: &str, args: Value) -> Value {
    let agent = agent();
    let url = format!("http://127.0.0.1:{port}/transmission/rpc");
    let mut id = String::new();
    for _ in 0..2 {
        let mut r = agent
            .post(&url)
            .header("X-Transmission-Session-Id", id.as_str())
            .send(json!({"method": method, "arguments": args}).to_string())
            .unwrap();
        if r.status() == 409 {
            id = r.headers()["x-transmission-session-id"]
                .to_str()
                .unwrap()
                .to_string();
            continue;
        }
        let v = json_of(&mut r);
        assert_eq!(v["result"], "success", "{method}: {v}");
        return v["arguments"].clone();
    }
    panic!("no session id");
}

/// The first torrent's fields of the metadata question.
fn magnet_view(port: u16) -> Value {
    let a = rpc(
        port,
        "torrent-get",
        json!({"fields": ["name", "hashString", "totalSize", "sizeWhenDone",
                          "metadataPercentComplete", "status", "magnetLink"]}),
    );
    a["torrents"][0].clone()
}

fn hash_of(torrent: &Path) -> String {
    Metainfo::from_bytes(&std::fs::read(torrent).unwrap())
        .unwrap()
        .info_hash
        .to_hex()
}

fn spawn_seed(torrent: &Path, dir: &Path, port: u16) -> Proc {
    let p = Proc::spawn(cmd([
        "seed",
        torrent.to_str().unwrap(),
        "-d",
        dir.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]));
    p.wait_line("verified, seeding", Duration::from_secs(30));
    p
}

fn have_remote() -> bool {
    bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    )
}

#[test]
fn transmission_remote_adds_a_magnet_that_survives_restarts() {
    if !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = random_file(&t.join("src/m.bin"), 2_000_000, 41);
    let tor = create(
        &t.join("src/m.bin"),
        &t.join("m.torrent"),
        &["--piece-length", "16KiB"],
    );
    let hash = hash_of(&tor);
    let seed_port = free_port();
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=film&x.pe=127.0.0.1:{seed_port}");
    let config = t.join("config");
    let dl = t.join("dl");

    // No seeder yet: the metadata state, as Transmission shows it.
    let mut d = start_daemon(&config, 0, 0, &[]);
    let out = remote_ok(d.rpc, &["-a", &link, "-w", dl.to_str().unwrap()]);
    assert!(out.contains("success"), "{out}");
    let v = magnet_view(d.rpc);
    assert_eq!(v["name"], "film", "{v}");
    assert_eq!(v["hashString"], hash.as_str());
    assert_eq!(v["totalSize"], 0);
    assert_eq!(v["sizeWhenDone"], 0);
    assert_eq!(v["metadataPercentComplete"], 0.0);
    assert_eq!(v["status"], 4, "downloading (the metadata)");
    assert!(v["magnetLink"]
        .as_str()
        .unwrap()
        .starts_with(&format!("magnet:?xt=urn:btih:{hash}")));
    wait_list(d.rpc, "the magnet's -l row", |l| {
        l.len() == 1 && l[0].2 == "film"
    });
    // The same link again: a duplicate, still one torrent.
    remote_ok(d.rpc, &["-a", &link]);
    assert_eq!(
        rpc(d.rpc, "torrent-get", json!({"fields": ["id"]}))["torrents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // SIGKILL mid-fetch, then a graceful stop mid-fetch: still there.
    d.proc.signal(libc::SIGKILL);
    d.proc.wait(Duration::from_secs(10));
    let mut d = start_daemon(&config, 0, 0, &[]);
    assert_eq!(magnet_view(d.rpc)["name"], "film");
    assert_eq!(magnet_view(d.rpc)["totalSize"], 0);
    d.proc.signal(libc::SIGTERM);
    d.proc.wait(Duration::from_secs(20));
    assert!(!config.join(format!("torrents/{hash}.torrent")).exists());

    // The seeder is up: the restarted daemon fetches and downloads.
    let seeder = spawn_seed(&tor, &t.join("src"), seed_port);
    let mut d = start_daemon(&config, 0, 0, &[]);
    assert_eq!(magnet_view(d.rpc)["hashString"], hash.as_str());
    wait_list(d.rpc, "m.bin complete", |l| {
        l.len() == 1 && l[0].0 == "100%" && l[0].2 == "m.bin"
    });
    assert!(
        std::fs::read(dl.join("m.bin")).unwrap() == data,
        "data differs"
    );
    let kept = config.join(format!("torrents/{hash}.torrent"));
    wait_until(
        "the fetched .torrent saved",
        Duration::from_secs(10),
        || kept.exists(),
    );
    let meta = Metainfo::from_bytes(&std::fs::read(&kept).unwrap()).unwrap();
    assert_eq!(meta.info_hash.to_hex(), hash);

    // No peer left, graceful restart: name and size known at once, and
    // it seeds from the data in place.
    drop(seeder);
    d.proc.signal(libc::SIGTERM);
    d.proc.wait(Duration::from_secs(20));
    let d = start_daemon(&config, 0, 0, &[]);
    let v = magnet_view(d.rpc);
    assert_eq!(v["name"], "m.bin", "{v}");
    assert_eq!(v["totalSize"], 2_000_000);
    assert_eq!(v["metadataPercentComplete"], 1.0);
    wait_list(d.rpc, "m.bin seeding after the restart", |l| {
        l == [("100%".into(), "Idle".into(), "m.bin".into())]
    });
}

/// Serves `body` as `/x.torrent` to `n` connections; returns the URL.
fn serve(body: Vec<u8>, n: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/x.torrent")
}

#[test]
fn python_adds_a_magnet_and_transmission_remote_a_url() {
    let python = trpc_python();
    if !bittern_testkit::trpc_available() || !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = random_file(&t.join("src/p.bin"), 1_000_000, 42);
    let tor = create(
        &t.join("src/p.bin"),
        &t.join("p.torrent"),
        &["--piece-length", "16KiB"],
    );
    let hash = hash_of(&tor);
    let seed_port = free_port();
    let _seeder = spawn_seed(&tor, &t.join("src"), seed_port);
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let link = format!("magnet:?xt=urn:btih:{hash}&x.pe=127.0.0.1:{seed_port}");
    let out = Command::new(&python)
        .arg(script("trpc_magnet.py"))
        .arg(d.rpc.to_string())
        .arg(&link)
        .arg(t.join("dl"))
        .arg("p.bin")
        .arg("1000000")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
    assert!(std::fs::read(t.join("dl/p.bin")).unwrap() == data);

    // A .torrent by URL: fetched by the daemon, then it seeds from dl.
    let url = serve(std::fs::read(&tor).unwrap(), 1);
    let out = remote_ok(d.rpc, &["-a", &url, "-w", t.join("dl").to_str().unwrap()]);
    assert!(out.contains("success"), "{out}");
    wait_list(d.rpc, "p.bin from the URL, complete", |l| {
        l == [("100%".into(), "Idle".into(), "p.bin".into())]
            || l == [("100%".into(), "Seeding".into(), "p.bin".into())]
    });
}

#[test]
fn python_adds_a_magnet_seeded_by_libtorrent() {
    let python = trpc_python();
    if !bittern_testkit::trpc_available()
        || !bittern_testkit::require(
            "python3-libtorrent (Debian package)",
            libtorrent_available(),
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = random_file(&t.join("src/lt.bin"), 1_500_000, 43);
    let tor = create(
        &t.join("src/lt.bin"),
        &t.join("lt.torrent"),
        &["--piece-length", "32KiB"],
    );
    let hash = hash_of(&tor);
    let mut c = Command::new(PYTHON);
    c.arg(script("lt_seed.py"))
        .arg(&tor)
        .arg(t.join("src"))
        .stdin(std::process::Stdio::null());
    let seeder = Proc::spawn(c);
    let line = seeder.wait_line("PORT ", Duration::from_secs(30));
    let port = line.trim().trim_start_matches("PORT ").to_string();
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=from-lt&x.pe=127.0.0.1:{port}");
    let out = Command::new(&python)
        .arg(script("trpc_magnet.py"))
        .arg(d.rpc.to_string())
        .arg(&link)
        .arg(t.join("dl"))
        .arg("lt.bin")
        .arg("1500000")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
    assert!(std::fs::read(t.join("dl/lt.bin")).unwrap() == data);
    drop(seeder);
}

/// A `btmh`-only (v2-only, BEP 52) magnet through the RPC's
/// `torrent-add`: libtorrent seeds the v2 torrent on loopback, the daemon
/// fetches its metadata and piece layer and downloads the file
/// byte-identical. The torrent is known by its v2 hash truncated to 20
/// bytes (its name on the wire: a v2-only torrent has no v1 hash), which
/// `torrent-added` and `torrent-get` report as `hashString`; its
/// `magnetLink` is `btmh` again.
#[test]
fn rpc_adds_a_btmh_only_magnet_seeded_by_libtorrent() {
    if !bittern_testkit::require(
        "python3-libtorrent (Debian package)",
        libtorrent_available(),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = random_file(&t.join("src/v2.bin"), 1_200_000, 44);
    let tor = create(
        &t.join("src/v2.bin"),
        &t.join("v2.torrent"),
        &["--v2", "--piece-length", "32KiB"],
    );
    let meta = Metainfo::from_bytes(&std::fs::read(&tor).unwrap()).unwrap();
    assert!(!meta.info.version.has_v1());
    let v2 = meta.info_hash_v2.unwrap().to_hex();
    let truncated = meta.info_hash.to_hex();
    assert_eq!(truncated, v2[..40]);
    let mut c = Command::new(PYTHON);
    c.arg(bittern_testkit::libtorrent::script("lt_seed.py"))
        .arg(&tor)
        .arg(t.join("src"))
        .stdin(std::process::Stdio::null());
    let seeder = Proc::spawn(c);
    let line = seeder.wait_line("PORT ", Duration::from_secs(30));
    let port = line.trim().trim_start_matches("PORT ").to_string();
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let link = format!("magnet:?xt=urn:btmh:1220{v2}&dn=v2.bin&x.pe=127.0.0.1:{port}");
    let dl = t.join("dl");
    let a = rpc(
        d.rpc,
        "torrent-add",
        json!({"filename": link, "download-dir": dl.to_str().unwrap()}),
    );
    assert_eq!(a["torrent-added"]["hashString"], truncated.as_str(), "{a}");
    wait_until("the v2 file downloaded", Duration::from_secs(90), || {
        let v = rpc(
            d.rpc,
            "torrent-get",
            json!({"fields": ["leftUntilDone", "totalSize"]}),
        );
        let t = &v["torrents"][0];
        t["totalSize"] == 1_200_000 && t["leftUntilDone"] == 0
    });
    assert!(
        std::fs::read(dl.join("v2.bin")).unwrap() == data,
        "data differs"
    );
    let v = magnet_view(d.rpc);
    assert_eq!(v["hashString"], truncated.as_str(), "{v}");
    assert_eq!(v["name"], "v2.bin", "{v}");
    assert!(
        v["magnetLink"]
            .as_str()
            .unwrap()
            .starts_with(&format!("magnet:?xt=urn:btmh:1220{v2}")),
        "{v}"
    );
    drop(seeder);
}
