//! Web seeds (BEP 19) through a whole session: the controller drives them
//! (runs of missing pieces, verification, bad pieces refetched), alone or
//! alongside a bittern peer. Servers run on 127.0.0.1 only.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bittern_engine::{
    SeedGoal, Session, SessionConfig, TorrentEvent, TorrentHandle, TorrentOptions, TorrentState,
    WebSeedConfig,
};
use bittern_wire::Metainfo;

use crate::util::{assert_same, config, make_torrent, wait_state};
use crate::webseed::{single, tiny_server, Mode, Nginx};

fn ws_config() -> SessionConfig {
    SessionConfig {
        web_seed: WebSeedConfig {
            max_request_bytes: 1 << 20,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ..WebSeedConfig::default()
        },
        ..config()
    }
}

fn session_with(cfg: SessionConfig) -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    Session::new(cfg).unwrap()
}

/// Adds `meta` (with its `url-list`) to a fresh session saving into `dst`,
/// with the given peers, stopping once complete.
fn leech(
    session: &Session,
    meta: &Metainfo,
    dst: &Path,
    peers: Vec<std::net::SocketAddr>,
) -> TorrentHandle {
    let opts = TorrentOptions {
        peers,
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    session.add_torrent(meta.clone(), dst, opts).unwrap()
}

/// Waits for the torrent to stop (complete, goal `None`); returns the
/// web-seed bytes and the largest number of web seeds seen in use.
fn finish(t: &TorrentHandle, limit: Duration) -> (u64, usize) {
    let start = Instant::now();
    let mut seeds = 0;
    loop {
        let s = t.status();
        seeds = seeds.max(s.web_seeds);
        if s.state == TorrentState::Stopped {
            return (s.web_seed_downloaded, seeds);
        }
        if let TorrentState::Error(e) = &s.state {
            panic!("torrent failed: {e}");
        }
        assert!(start.elapsed() < limit, "not complete: {s:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn web_seed_only_single_file_from_nginx() {
    let src = tempfile::tempdir().unwrap();
    let size = 5_000_000 + 77;
    let mut meta = make_torrent(src.path(), "one.bin", &[("one.bin", size)], 64 << 10, 11);
    let Some(nginx) = Nginx::start(src.path()) else {
        return;
    };
    meta.url_list = vec![nginx.url("/one.bin")];
    let dst = tempfile::tempdir().unwrap();
    let s = session_with(ws_config());
    let t = leech(&s, &meta, dst.path(), Vec::new());
    let (web, seeds) = finish(&t, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &[PathBuf::from("one.bin")]);
    assert_eq!(web, size, "every byte came from the web seed, once");
    // The count of running seeds is sampled every 10 ms, and on a quiet
    // machine the whole download can fit between two samples: `web`
    // above proves the seed ran; this, that no second one did.
    assert!(seeds <= 1, "{seeds} web seeds");
    assert_eq!(t.status().hash_failures, 0);
    // Large ranges: 5 MB in at most 1 MiB requests, one run per request.
    let log = nginx.access_log();
    let gets = log.lines().filter(|l| l.contains(" 206 ")).count();
    assert!((5..=8).contains(&gets), "{gets} requests:\n{log}");
}

#[test]
fn web_seed_only_multi_file_from_nginx() {
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("a file.bin", 1_300_000),
        ("sub dir/b#?.bin", 40_000),
        ("sub dir/empty", 0),
        ("c.bin", 2_100_001),
    ];
    let mut meta = make_torrent(src.path(), "multi ws", &files, 32 << 10, 12);
    let Some(nginx) = Nginx::start(src.path()) else {
        return;
    };
    // No trailing slash: added for a multi-file torrent.
    meta.url_list = vec![nginx.url("")];
    let dst = tempfile::tempdir().unwrap();
    let s = session_with(ws_config());
    let t = leech(&s, &meta, dst.path(), Vec::new());
    let (web, _) = finish(&t, Duration::from_secs(60));
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(p, _)| Path::new("multi ws").join(p))
        .collect();
    assert_same(src.path(), dst.path(), &paths);
    assert_eq!(web, 1_300_000 + 40_000 + 2_100_001);
    let log = nginx.access_log();
    assert!(log.contains("/multi%20ws/sub%20dir/b%23%3F.bin"), "{log}");
}

#[test]
fn corrupt_range_is_caught_and_the_piece_refetched() {
    let (meta0, data, src) = single(900_000, 16 << 10, 13);
    // One response covering byte 300 000 has it flipped.
    let server = tiny_server(
        data,
        Mode::Corrupt {
            at: 300_000,
            times: 1,
        },
    );
    let mut meta = meta0;
    meta.url_list = vec![format!("http://{}/f.bin", server.addr)];
    let dst = tempfile::tempdir().unwrap();
    let s = session_with(ws_config());
    let t = leech(&s, &meta, dst.path(), Vec::new());
    let events = t.events();
    finish(&t, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &[PathBuf::from("f.bin")]);
    let failed: Vec<usize> = events
        .try_iter()
        .filter_map(|e| match e {
            TorrentEvent::HashFailed(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        vec![300_000 / (16 << 10)],
        "the corrupt piece, once"
    );
    assert_eq!(t.status().hash_failures, 1);
}

/// Python's http.server on 127.0.0.1 serving `dir`; killed on drop.
struct PyServer {
    child: Child,
    port: u16,
}

impl PyServer {
    fn start(dir: &Path) -> Option<PyServer> {
        if !bittern_testkit::require("python3", bittern_testkit::on_path("python3")) {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "http.server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(PyServer { child, port })
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn python_http_server_without_range_support_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let mut meta = make_torrent(src.path(), "p.bin", &[("p.bin", 700_000)], 16 << 10, 14);
    let Some(py) = PyServer::start(src.path()) else {
        return;
    };
    meta.url_list = vec![format!("http://127.0.0.1:{}/p.bin", py.port)];
    let dst = tempfile::tempdir().unwrap();
    let s = session_with(ws_config());
    let t = leech(&s, &meta, dst.path(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match t.events().recv_timeout(left) {
            Ok(TorrentEvent::WebSeedDropped { url, reason }) => {
                assert_eq!(url, meta.url_list[0]);
                break reason;
            }
            Ok(_) => {}
            Err(e) => panic!("web seed not dropped: {e}; {:?}", t.status()),
        }
    };
    assert!(
        reason.contains("server ignores range requests")
            && reason.contains("web seeds need range support"),
        "{reason}"
    );
    // The event goes out at once, the status with the controller's next
    // publish (late on a loaded machine: web_seeds 1 seen right after the
    // event at load 49).
    let start = Instant::now();
    while t.status().web_seeds != 0 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = t.status();
    assert_eq!(st.web_seeds, 0, "{st:?}");
    assert_eq!(st.pieces_have, 0, "nothing taken from a 200 answer");
    assert_eq!(st.state, TorrentState::Downloading);
}

#[test]
fn web_seed_and_a_bittern_peer_complete_together() {
    let src = tempfile::tempdir().unwrap();
    let size = 12 << 20;
    let mut meta = make_torrent(src.path(), "both.bin", &[("both.bin", size)], 64 << 10, 15);
    // 2 MB/s per connection: the web seed alone would need 6 s.
    let Some(nginx) = Nginx::start_with(src.path(), "limit_rate 2m;") else {
        return;
    };
    meta.url_list = vec![nginx.url("/both.bin")];
    // The peer at 2 MB/s too: each source has half the work.
    let seeder = session_with(config());
    let seed_opts = TorrentOptions {
        upload_limit: Some(2 << 20),
        ..TorrentOptions::default()
    };
    let st = seeder
        .add_torrent(meta.clone(), src.path(), seed_opts)
        .unwrap();
    wait_state(&st, TorrentState::Seeding, Duration::from_secs(20));
    let peer = seeder.local_addr();
    let dst = tempfile::tempdir().unwrap();
    let s = session_with(ws_config());
    let t = leech(&s, &meta, dst.path(), vec![peer]);
    let (web, _) = finish(&t, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &[PathBuf::from("both.bin")]);
    let status = t.status();
    // Peer bytes as the leecher counted them (the seeder's own count is
    // sampled every 250 ms).
    let from_peer = status.downloaded - web;
    assert!(st.status().uploaded > 0);
    assert!(web >= size / 4, "the web seed did its share: {status:?}");
    assert!(from_peer >= size / 4, "the peer did its share: {status:?}");
    assert!(
        web + from_peer >= size,
        "web {web} + peer {from_peer} cover {size}"
    );
    assert_eq!(status.hash_failures, 0);
    eprintln!("web seed {web} bytes, peer {from_peer} bytes of {size}");
}

#[test]
fn peers_finish_a_slow_web_seeds_run_in_endgame() {
    let src = tempfile::tempdir().unwrap();
    let size = 4 << 20;
    let mut meta = make_torrent(src.path(), "slow.bin", &[("slow.bin", size)], 64 << 10, 16);
    // 100 KB/s: the seed's first 1 MiB run alone would take 10 s.
    let Some(nginx) = Nginx::start_with(src.path(), "limit_rate 100k;") else {
        return;
    };
    meta.url_list = vec![nginx.url("/slow.bin")];
    // The peer serves at 2 MiB/s (about 2 s in all), so the web seed has
    // begun its run before the peer could have finished alone; unlimited,
    // a loopback peer can finish before the seed is given a run at all.
    let seeder = session_with(SessionConfig {
        upload_limit: Some(2 << 20),
        ..config()
    });
    let st = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&st, TorrentState::Seeding, Duration::from_secs(20));
    let dst = tempfile::tempdir().unwrap();
    let s = session_with(ws_config());
    let started = Instant::now();
    let t = leech(&s, &meta, dst.path(), vec![seeder.local_addr()]);
    let (web, seeds) = finish(&t, Duration::from_secs(60));
    let took = started.elapsed();
    assert_same(src.path(), dst.path(), &[PathBuf::from("slow.bin")]);
    assert_eq!(seeds, 1, "the web seed ran");
    // The peer got the seed's reserved pieces as endgame duplicates: the
    // download did not wait for the slow seed.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(web < 1 << 20, "the seed's run was cut short: {web} bytes");
    assert_eq!(t.status().hash_failures, 0);
}
