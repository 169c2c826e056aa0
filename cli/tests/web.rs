//! The daemon's web page in a real headless browser: Debian's `chromium`
//! driven by `chromedriver` over the W3C WebDriver HTTP API (a dozen
//! calls, hand-written with ureq). The daemon seeds one torrent whose data
//! is in place; the page must show it at 100% Seeding and, in its peer
//! list, a slowed-down `bittern download` leeching it; add a .torrent
//! uploaded through its file input, add a magnet link (its metadata and
//! data come from a `bittern seed` named in its `x.pe`, byte-identical),
//! toggle a file, stop and remove through its buttons; each step is
//! checked over the RPC. A `.torrent` and a `.magnet` dropped in the watch
//! dir are added and renamed `.added`. A screenshot goes to
//! `target/web-test/daemon-web.png`.
//! The browser is kept on loopback (see `bittern_testkit::webdriver`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

use bittern_testkit::webdriver::{agent, free_port, json_of, Browser};

/// The daemon's RPC with the session-id handshake.
struct Rpc {
    agent: ureq::Agent,
    url: String,
    id: std::cell::RefCell<String>,
}

impl Rpc {
    fn call(&self, method: &str, args: Value) -> Value {
        for _ in 0..2 {
            let mut r = self
                .agent
                .post(&self.url)
                .header("X-Transmission-Session-Id", self.id.borrow().as_str())
                .send(json!({"method": method, "arguments": args}).to_string())
                .unwrap();
            if r.status() == 409 {
                let id = r.headers()["x-transmission-session-id"].to_str().unwrap();
                *self.id.borrow_mut() = id.to_string();
                continue;
            }
            assert_eq!(r.status(), 200);
            return json_of(&mut r);
        }
        panic!("no session id");
    }

    fn ok(&self, method: &str, args: Value) -> Value {
        let r = self.call(method, args.clone());
        assert_eq!(r["result"], "success", "{method} {args}: {r}");
        r["arguments"].clone()
    }

    /// name -> (status, wanted of file 0) of every torrent.
    fn torrents(&self) -> Vec<(String, i64, bool)> {
        let a = self.ok(
            "torrent-get",
            json!({"fields": ["name", "status", "fileStats"]}),
        );
        a["torrents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["status"].as_i64().unwrap(),
                    // A magnet without metadata has no files yet.
                    t["fileStats"][0]["wanted"].as_bool().unwrap_or(true),
                )
            })
            .collect()
    }
}

/// The list as the page shows it: (id, name, progress text, state).
fn rows(b: &Browser) -> Vec<(String, String, String, String)> {
    let v = b.script(
        "return [...document.querySelectorAll('#rows .row')].map(r => [r.dataset.id, \
         r.querySelector('.name').textContent, r.querySelector('.bar b').textContent, \
         r.querySelector('.state').textContent]);",
    );
    serde_json::from_value(v).unwrap()
}

fn until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    bittern_testkit::webdriver::until(what, Duration::from_secs(15), f)
}

fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/web-test")
        .join(name)
}

#[test]
fn web_page_in_headless_chromium() {
    if !bittern_testkit::require(
        "chromium and chromedriver (Debian packages chromium, chromium-driver)",
        bittern_testkit::webdriver::available(),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    random_file(&t.join("have/a.bin"), 300_000, 21);
    let a = create(&t.join("have/a.bin"), &t.join("a.torrent"), &[]);
    random_file(&t.join("src/b/one.bin"), 100_000, 22);
    random_file(&t.join("src/b/two.bin"), 50_000, 23);
    let b = create(&t.join("src/b"), &t.join("b.torrent"), &[]);
    random_file(&t.join("src/c.bin"), 20_000, 24);
    let c = create(&t.join("src/c.bin"), &t.join("c.torrent"), &[]);
    let d_data = random_file(&t.join("src/d.bin"), 200_000, 25);
    let d = create(&t.join("src/d.bin"), &t.join("d.torrent"), &[]);
    let d_hash = bittern_wire::Metainfo::from_bytes(&std::fs::read(&d).unwrap())
        .unwrap()
        .info_hash
        .to_hex();
    let watch = t.join("watch");

    let port = free_port();
    let daemon = Proc::spawn(cmd([
        "daemon",
        "--config-dir",
        t.join("config").to_str().unwrap(),
        "--rpc-port",
        &port.to_string(),
        "-p",
        "0",
        "--peer-bind",
        "127.0.0.1",
        "--watch-dir",
        watch.to_str().unwrap(),
    ]));
    daemon.wait_line("rpc listening on", Duration::from_secs(20));
    let peers_line = daemon.wait_line("peers listening on", Duration::from_secs(5));
    let peer_port = peers_line.rsplit(':').next().unwrap().trim().to_string();
    let rpc = Rpc {
        agent: agent(),
        url: format!("http://127.0.0.1:{port}/transmission/rpc"),
        id: String::new().into(),
    };
    rpc.ok(
        "session-set",
        json!({"download-dir": t.join("dl").to_str().unwrap()}),
    );
    rpc.ok(
        "torrent-add",
        json!({"filename": a.to_str().unwrap(), "download-dir": t.join("have").to_str().unwrap()}),
    );

    let browser = Browser::start(&t.join("profile"), 1200, 640);
    browser.post("url", json!({"url": format!("http://127.0.0.1:{port}/")}));
    until("a.bin seeding at 100% on the page", || {
        let rows = rows(&browser);
        (rows
            == [(
                "1".to_string(),
                "a.bin".to_string(),
                "100%".to_string(),
                "Seeding".to_string(),
            )])
        .then_some(())
    });

    // A leecher on loopback, slowed down so it stays a while: a.bin's
    // peers column and its peer list show it.
    let _leecher = Proc::spawn(cmd([
        "download",
        a.to_str().unwrap(),
        "-d",
        t.join("leech").to_str().unwrap(),
        "-p",
        "0",
        "--bind",
        "127.0.0.1",
        "--peer",
        &format!("127.0.0.1:{peer_port}"),
        "--download-limit",
        "25kB/s",
        "--seed-time",
        "60s",
    ]));
    browser.click("#rows .row[data-id='1'] .name");
    until("the leecher in a.bin's peers", || {
        let v = browser.script(
            "return document.getElementById('d-peers').textContent + '|' + \
             document.querySelector(\"#rows .row[data-id='1'] .peers\").textContent;",
        );
        let text = v.as_str().unwrap_or("").to_string();
        (text.contains("127.0.0.1:") && text.ends_with("|1")).then_some(text)
    });

    // Upload b.torrent through the file input.
    browser.type_in("#upload", b.to_str().unwrap());
    let b_id = until("b's row", || {
        rows(&browser).into_iter().find(|r| r.1 == "b").map(|r| r.0)
    });
    assert!(
        rpc.torrents().iter().any(|t| t.0 == "b"),
        "b added over rpc"
    );

    // A magnet link through the box: the metadata and then the data come
    // from a seeder named in its x.pe; the row gets the real name and 100%.
    let (_d_seeder, d_port) = start_seed(&d, &t.join("src"), &[]);
    browser.type_in(
        "#magnet",
        &format!("magnet:?xt=urn:btih:{d_hash}&dn=d-magnet&x.pe=127.0.0.1:{d_port}"),
    );
    browser.click("#add-magnet button");
    until("d.bin at 100% from the magnet", || {
        rows(&browser)
            .iter()
            .any(|r| r.1 == "d.bin" && r.2 == "100%")
            .then_some(())
    });
    assert!(std::fs::read(t.join("dl/d.bin")).unwrap() == d_data);

    // The watch dir: a .torrent and a .magnet are added.
    std::fs::copy(&c, watch.join("c.torrent")).unwrap();
    std::fs::write(
        watch.join("m.magnet"),
        "magnet:?xt=urn:btih:0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a\n",
    )
    .unwrap();
    until("c.bin's row from the watch dir", || {
        rows(&browser).iter().any(|r| r.1 == "c.bin").then_some(())
    });
    until("watch dir renames", || {
        (watch.join("c.torrent.added").exists() && watch.join("m.magnet.added").exists())
            .then_some(())
    });
    until("the watched magnet shown fetching its metadata", || {
        rows(&browser)
            .iter()
            .any(|r| {
                r.1 == "0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a" && r.3 == "Fetching metadata"
            })
            .then_some(())
    });

    // b's files: untick the first one.
    browser.click(&format!("#rows .row[data-id='{b_id}'] .name"));
    until("b's files listed", || {
        let n = browser.script("return document.querySelectorAll('#d-files li').length;");
        (n == 2).then_some(())
    });
    browser.click("#d-files li:first-child input");
    until("file 0 of b unwanted over rpc", || {
        rpc.torrents()
            .iter()
            .any(|t| t.0 == "b" && !t.2)
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    browser.screenshot(&artifact("daemon-web.png"));

    // Stop b, then remove it, with the row's buttons.
    browser.click(&format!(
        "#rows .row[data-id='{b_id}'] button[data-act='toggle']"
    ));
    until("b stopped over rpc", || {
        rpc.torrents()
            .iter()
            .any(|t| t.0 == "b" && t.1 == 0)
            .then_some(())
    });
    until("b shown stopped", || {
        rows(&browser)
            .iter()
            .any(|r| r.1 == "b" && r.3 == "Stopped")
            .then_some(())
    });
    browser.click(&format!(
        "#rows .row[data-id='{b_id}'] button[data-act='remove']"
    ));
    browser.click("#c-keep");
    until("b removed over rpc", || {
        (!rpc.torrents().iter().any(|t| t.0 == "b")).then_some(())
    });
    until("b's row gone", || {
        (!rows(&browser).iter().any(|r| r.1 == "b")).then_some(())
    });
    let mut rows: Vec<String> = rows(&browser).into_iter().map(|r| r.1).collect();
    rows.sort();
    // The watched magnet has no seeder: its name is its hash.
    assert_eq!(
        rows,
        [
            "0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a",
            "a.bin",
            "c.bin",
            "d.bin"
        ]
    );

    // Global speed limits through the form.
    browser.script(
        "document.getElementById('down').value = '250'; \
         document.getElementById('down-on').checked = true; \
         document.getElementById('up').value = '75'; return 0;",
    );
    browser.click("#limits button");
    until("limits saved over rpc", || {
        let s = rpc.ok("session-get", json!({}));
        (s["speed-limit-down"] == 250
            && s["speed-limit-down-enabled"] == true
            && s["speed-limit-up"] == 75
            && s["speed-limit-up-enabled"] == false)
            .then_some(())
    });

    // /metrics names the torrents too.
    let mut r = agent()
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.body_mut().read_to_string().unwrap();
    assert!(text.contains("name=\"a.bin\"} 1"), "{text}");
    drop(browser);
    daemon.signal(libc::SIGTERM);
}
