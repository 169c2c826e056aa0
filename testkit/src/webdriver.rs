//! A minimal W3C WebDriver client for Debian's headless `chromium` through
//! `chromedriver` (packages `chromium`, `chromium-driver`), hand-written
//! over ureq: a session, navigation, scripts, element find/click/type and
//! screenshots are all the daemon's web page tests need. Nothing is
//! downloaded at test time.
//!
//! Chromium is kept on loopback: every non-loopback URL goes to a dead
//! proxy, the host resolver resolves nothing but 127.0.0.1, and background
//! networking, component updates, sync and pings are off.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Whether `chromium` and `chromedriver` are installed.
pub fn available() -> bool {
    crate::on_path("chromium") && crate::on_path("chromedriver")
}

/// A ureq agent that reports HTTP errors as responses and uses no proxy.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The body of `r` as JSON (panics with the text if it is not).
pub fn json_of(r: &mut ureq::http::Response<ureq::Body>) -> Value {
    let text = r.body_mut().read_to_string().expect("read body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

pub use crate::fixture::free_port;

/// A headless chromium session; closes the browser, then chromedriver,
/// when dropped.
pub struct Browser {
    agent: ureq::Agent,
    base: String,
    driver: Child,
}

impl Browser {
    /// Starts chromedriver and a browser of `width`×`height` pixels with
    /// its profile in `profile`. Panics if either cannot start.
    pub fn start(profile: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("chromedriver did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
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
            "--disable-breakpad",
            "--disable-crash-reporter",
            "--proxy-server=http://127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let agent = agent();
        let base = format!("http://127.0.0.1:{port}/session");
        let v = agent
            .post(&base)
            .send(caps.to_string())
            .map(|mut r| json_of(&mut r));
        let id = v
            .as_ref()
            .ok()
            .and_then(|v| v["value"]["sessionId"].as_str())
            .map(str::to_string);
        let Some(id) = id else {
            let _ = driver.kill();
            let _ = driver.wait();
            panic!("no webdriver session: {v:?}");
        };
        Browser {
            base: format!("{base}/{id}"),
            agent,
            driver,
        }
    }

    /// POSTs a command; returns its `value` (panics on a WebDriver error).
    pub fn post(&self, path: &str, body: Value) -> Value {
        let mut r = self
            .agent
            .post(&format!("{}/{path}", self.base))
            .send(body.to_string())
            .expect("webdriver request");
        let status = r.status();
        let v = json_of(&mut r);
        assert_eq!(status, 200, "webdriver {path} {body}: {v}");
        v["value"].clone()
    }

    /// Loads `url` (returns once the page loaded).
    pub fn goto(&self, url: &str) {
        self.post("url", json!({ "url": url }));
    }

    /// Runs `js` (a function body) in the page; returns what it returns.
    pub fn script(&self, js: &str) -> Value {
        self.post("execute/sync", json!({"script": js, "args": []}))
    }

    /// The element matching `css` (panics if none).
    pub fn find(&self, css: &str) -> String {
        let v = self.post("element", json!({"using": "css selector", "value": css}));
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Clicks the element matching `css`.
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.post(&format!("element/{e}/click"), json!({}));
    }

    /// Types `text` into the element matching `css` (for a file input:
    /// the path of the file to pick).
    pub fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.post(&format!("element/{e}/value"), json!({ "text": text }));
    }

    /// Writes a PNG screenshot of the window to `to` (creating parents).
    pub fn screenshot(&self, to: &Path) {
        let mut r = self
            .agent
            .get(&format!("{}/screenshot", self.base))
            .call()
            .expect("screenshot");
        let v = json_of(&mut r);
        let png = data_encoding::BASE64
            .decode(v["value"].as_str().unwrap_or("").as_bytes())
            .expect("base64 png");
        assert!(png.starts_with(b"\x89PNG"), "not a png");
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(to, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`.
#[track_caller]
pub fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
