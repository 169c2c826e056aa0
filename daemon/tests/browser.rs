//! The web page with 10,000 torrents in headless chromium (Debian's
//! `chromium` + `chromium-driver`, see `bittern_testkit::webdriver`),
//! served by the real HTTP server and gate over a fake engine: the list
//! loads, a change to one torrent deep in the list shows up through the
//! `recently-active` poll, and the page's main thread is never blocked
//! long. Prints the load time and the longest main-thread stall.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_daemon::state::{AddSource, AddSpec};
use bittern_daemon::{Access, Gate, HttpServer, Limits, Rpc, Store, Torrents};
use bittern_engine::TorrentState;
use bittern_testkit::webdriver::{self, Browser};
use bittern_wire::{Metainfo, MetainfoBuilder};

use crate::util::Fake;

const COUNT: usize = 10_000;

#[test]
fn page_stays_responsive_with_10000_torrents() {
    if !bittern_testkit::require(
        "chromium and chromedriver (Debian packages chromium, chromium-driver)",
        webdriver::available(),
    ) {
        return;
    }
    // The store fsyncs every record: keep 10,000 of them in memory.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let fake = Fake::default();
    let store = Store::open(&dir.path().join("config")).unwrap();
    // All 10,000 run (no queue), so the one in the middle completes.
    store
        .save_settings(&bittern_daemon::Settings {
            download_queue_enabled: false,
            ..Default::default()
        })
        .unwrap();
    let torrents = Torrents::open(fake.clone(), store).unwrap();
    let built = Instant::now();
    for i in 0..COUNT {
        let bytes = MetainfoBuilder::new(format!("t{i:05}.bin"))
            .single_file(1000 + i as u64)
            .piece_length(16384)
            .pieces(vec![[(i % 251) as u8; 20]])
            .build()
            .unwrap();
        let metainfo = Metainfo::from_bytes(&bytes).unwrap();
        torrents
            .add(AddSpec {
                source: AddSource::Metainfo {
                    bytes,
                    metainfo: Box::new(metainfo),
                },
                save_dir: dir.path().join("data"),
                paused: false,
                labels: Vec::new(),
                wanted: Vec::new(),
            })
            .unwrap();
    }
    eprintln!("{COUNT} torrents added in {:?}", built.elapsed());
    let deep = torrents.lock().entries[COUNT / 2].hash;
    let rpc = Arc::new(Rpc::new(torrents));
    let gate = Arc::new(Gate::new(rpc.clone(), Access::default()));
    let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), gate, Limits::default()).unwrap();

    let browser = Browser::start(&dir.path().join("profile"), 1200, 800);
    let start = Instant::now();
    browser.goto(&format!("http://{}/", server.local_addr()));
    webdriver::until("10,000 rows", Duration::from_secs(60), || {
        let v = browser.script(
            "return document.body.dataset.ready === '1' \
             ? document.querySelectorAll('#rows .row').length : 0;",
        );
        (v.as_u64() == Some(COUNT as u64)).then_some(())
    });
    let loaded = start.elapsed();

    // Watch the main thread for stalls across a few poll ticks, while one
    // torrent in the middle of the list completes.
    browser.script(
        "window.__lag = 0; let last = performance.now(); \
         (function tick() { const now = performance.now(); \
           window.__lag = Math.max(window.__lag, now - last - 20); last = now; \
           setTimeout(tick, 20); })(); return 0;",
    );
    {
        let mut s = fake.state.lock();
        let t = &mut s.running.get_mut(&deep).unwrap().1;
        t.have_bytes = t.wanted_bytes;
        t.progress = 1.0;
        t.state = TorrentState::Seeding;
    }
    // The daemon's once-a-second tick notes the completion (done date,
    // recently active); without it the row would only show up through
    // `recently-active` while its add is under a minute old, which a
    // loaded machine adding 10,000 torrents does not guarantee.
    rpc.torrents().tick(Duration::from_secs(1), false);
    let id = COUNT / 2 + 1;
    let seen = Instant::now();
    webdriver::until("the deep row updated", Duration::from_secs(15), || {
        let v = browser.script(&format!(
            "const r = document.querySelector(\"#rows .row[data-id='{id}']\"); \
             return r.querySelector('.bar b').textContent + '|' + r.querySelector('.state').textContent;"
        ));
        (v.as_str() == Some("100%|Seeding")).then_some(())
    });
    let update = seen.elapsed();
    std::thread::sleep(Duration::from_secs(4));
    let lag = browser.script("return window.__lag;").as_f64().unwrap();
    eprintln!(
        "{COUNT} torrents: list shown in {loaded:?}, a change seen in {update:?}, \
         longest main-thread stall {lag:.0} ms"
    );
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/web-test")).ok();
    browser.screenshot(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/web-test/daemon-web-10000.png"
    )));
    // Bounds for gross regressions only (a poll that stopped, a page that
    // re-renders 10,000 rows on every tick), not speed claims: this runs
    // on shared CI machines at load averages up to 30, where 1.5 s stalls
    // were seen for the current page.
    assert!(
        update < Duration::from_secs(10),
        "poll far slower than its 2 s ticks: {update:?}"
    );
    assert!(lag < 5000.0, "the page stalled {lag:.0} ms");
}

/// With a password set, the browser's Basic auth covers the page and its
/// RPC calls (handshake included); a wrong password gets no list.
#[test]
fn page_works_behind_basic_auth() {
    if !bittern_testkit::require(
        "chromium and chromedriver (Debian packages chromium, chromium-driver)",
        webdriver::available(),
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    let store = Store::open(&dir.path().join("config")).unwrap();
    let torrents = Torrents::open(fake, store).unwrap();
    let bytes = crate::util::single();
    let metainfo = Metainfo::from_bytes(&bytes).unwrap();
    torrents
        .add(AddSpec {
            source: AddSource::Metainfo {
                bytes,
                metainfo: Box::new(metainfo),
            },
            save_dir: dir.path().join("data"),
            paused: true,
            labels: Vec::new(),
            wanted: Vec::new(),
        })
        .unwrap();
    let gate = Gate::new(
        Arc::new(Rpc::new(torrents)),
        Access {
            credentials: Some(("admin".into(), "s3cret".into())),
            ..Access::default()
        },
    );
    let server = HttpServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(gate),
        Limits::default(),
    )
    .unwrap();
    let port = server.local_addr().port();
    let browser = Browser::start(&dir.path().join("profile"), 800, 400);
    browser.goto(&format!("http://admin:wrong@127.0.0.1:{port}/"));
    let page = browser.script("return document.getElementById('rows') === null;");
    assert_eq!(
        page,
        serde_json::json!(true),
        "the page served without auth"
    );
    browser.goto(&format!("http://admin:s3cret@127.0.0.1:{port}/"));
    webdriver::until("the row behind auth", Duration::from_secs(15), || {
        let v = browser.script(
            "const r = document.querySelector('#rows .row'); \
             return r ? r.querySelector('.name').textContent + '|' + \
             r.querySelector('.state').textContent : null;",
        );
        (v.as_str() == Some("sample.bin|Stopped")).then_some(())
    });
}
