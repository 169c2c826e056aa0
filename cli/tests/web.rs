//! The daemon's web page in a real headless browser: Debian's `chromium`
//! driven by `chromedriver` over the W3C WebDriver HTTP API (a dozen
//! calls, hand-written with ureq). The daemon seeds one torrent whose data
//! is in place; the page must show it at 100% Seeding, add a .torrent
//! uploaded through its file input, show the magnet error, toggle a file,
//! stop and remove through its buttons; each step is checked over the RPC.
//! A `.torrent` and a `.magnet` dropped in the watch dir are added and
//! renamed `.added` / `.invalid`. A screenshot goes to
//! `target/web-test/daemon-web.png`.
//!
//! Chromium is kept on loopback: a dead proxy for every non-loopback URL,
//! a host resolver that resolves nothing, and background networking,
//! component updates, sync and pings off.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn json_of(r: &mut ureq::http::Response<ureq::Body>) -> Value {
    let text = r.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
                    t["fileStats"][0]["wanted"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

/// A WebDriver session; closes the browser, then chromedriver, on drop.
struct Browser {
    agent: ureq::Agent,
    base: String,
    _driver: Proc,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = free_port();
        let mut c = std::process::Command::new("chromedriver");
        c.arg(format!("--port={port}"));
        let driver = Proc::spawn(c);
        driver.wait_line("started successfully", Duration::from_secs(10));
        let agent = agent();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1200,640",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-client-side-phishing-detection",
            "--no-pings",
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ];
        let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let base = format!("http://127.0.0.1:{port}/session");
        let mut r = agent.post(&base).send(caps.to_string()).unwrap();
        let v: Value = json_of(&mut r);
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no webdriver session: {v}"));
        Browser {
            base: format!("{base}/{id}"),
            agent,
            _driver: driver,
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let mut r = self
            .agent
            .post(&format!("{}/{path}", self.base))
            .send(body.to_string())
            .unwrap();
        let status = r.status();
        let v: Value = json_of(&mut r);
        assert_eq!(status, 200, "webdriver {path} {body}: {v}");
        v["value"].clone()
    }

    fn script(&self, js: &str) -> Value {
        self.post("execute/sync", json!({"script": js, "args": []}))
    }

    fn find(&self, css: &str) -> String {
        let v = self.post("element", json!({"using": "css selector", "value": css}));
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.post(&format!("element/{e}/click"), json!({}));
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.post(&format!("element/{e}/value"), json!({"text": text}));
    }

    fn screenshot(&self, to: &Path) {
        let mut r = self
            .agent
            .get(&format!("{}/screenshot", self.base))
            .call()
            .unwrap();
        let v: Value = json_of(&mut r);
        let png = data_encoding::BASE64
            .decode(v["value"].as_str().unwrap().as_bytes())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }

    /// The list as the page shows it: (id, name, progress text, state).
    fn rows(&self) -> Vec<(String, String, String, String)> {
        let v = self.script(
            "return [...document.querySelectorAll('#rows .row')].map(r => [r.dataset.id, \
             r.querySelector('.name').textContent, r.querySelector('.bar b').textContent, \
             r.querySelector('.state').textContent]);",
        );
        serde_json::from_value(v).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
    }
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn artifact(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/web-test")
        .join(name)
}

#[test]
fn web_page_in_headless_chromium() {
    let have = bittern_testkit::on_path("chromium") && bittern_testkit::on_path("chromedriver");
    if !bittern_testkit::require(
        "chromium and chromedriver (Debian packages chromium, chromium-driver)",
        have,
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

    let browser = Browser::start(&t.join("profile"));
    browser.post("url", json!({"url": format!("http://127.0.0.1:{port}/")}));
    until("a.bin seeding at 100% on the page", || {
        let rows = browser.rows();
        (rows
            == [(
                "1".to_string(),
                "a.bin".to_string(),
                "100%".to_string(),
                "Seeding".to_string(),
            )])
        .then_some(())
    });

    // Upload b.torrent through the file input.
    browser.type_in("#upload", b.to_str().unwrap());
    let b_id = until("b's row", || {
        browser.rows().into_iter().find(|r| r.1 == "b").map(|r| r.0)
    });
    assert!(
        rpc.torrents().iter().any(|t| t.0 == "b"),
        "b added over rpc"
    );

    // A magnet: refused until the engine takes magnets; the page says so.
    browser.type_in(
        "#magnet",
        "magnet:?xt=urn:btih:0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a",
    );
    browser.click("#add-magnet button");
    let msg = until("the magnet error", || {
        let v = browser.script(
            "const m = document.getElementById('message'); return m.hidden ? null : m.textContent;",
        );
        v.as_str().map(str::to_string)
    });
    assert!(msg.contains("magnet"), "{msg}");

    // The watch dir: a .torrent is added, a .magnet left as .invalid.
    std::fs::copy(&c, watch.join("c.torrent")).unwrap();
    std::fs::write(
        watch.join("m.magnet"),
        "magnet:?xt=urn:btih:0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a\n",
    )
    .unwrap();
    until("c.bin's row from the watch dir", || {
        browser.rows().iter().any(|r| r.1 == "c.bin").then_some(())
    });
    until("watch dir renames", || {
        (watch.join("c.torrent.added").exists() && watch.join("m.magnet.invalid").exists())
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
        browser
            .rows()
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
        (!browser.rows().iter().any(|r| r.1 == "b")).then_some(())
    });
    let rows: Vec<String> = browser.rows().into_iter().map(|r| r.1).collect();
    assert_eq!(rows, ["a.bin", "c.bin"]);

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
