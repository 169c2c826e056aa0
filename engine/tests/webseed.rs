//! Web seeds (BEP 19) with no peers: nginx on 127.0.0.1 serving the data,
//! and hand-written HTTP servers that misbehave one way each. The test plays
//! the controller: it assigns runs of pieces, verifies each written piece
//! with storage's hashing and reports failures back.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bittern_engine::webseed::file_urls;
use bittern_engine::{WebSeed, WebSeedConfig, WebSeedError, WebSeedEvent, WebSeeds};
use bittern_storage::Storage;
use bittern_wire::Metainfo;
use crossbeam_channel::bounded;

use crate::util::{assert_same, make_torrent, storage_for};

/// What the driving loop saw.
#[derive(Debug, Default)]
struct Outcome {
    complete: bool,
    bad_pieces: Vec<usize>,
    errors: Vec<String>,
    dropped: Vec<(usize, String)>,
}

fn seeds(meta: &Metainfo, bases: &[String]) -> Vec<WebSeed> {
    bases
        .iter()
        .map(|b| WebSeed {
            url: b.clone(),
            file_urls: file_urls(b, &meta.info),
        })
        .collect()
}

fn test_config() -> WebSeedConfig {
    WebSeedConfig {
        max_request_bytes: 1 << 20,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_secs(5),
        read_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..WebSeedConfig::default()
    }
}

/// Plays the controller: hands out runs of up to `run_len` pieces to idle
/// seeds, verifies every written piece and reports bad ones, until every
/// piece passed, every seed was dropped, or `limit` passed.
fn drive(
    storage: &Arc<Storage>,
    seeds: Vec<WebSeed>,
    config: WebSeedConfig,
    run_len: usize,
    limit: Duration,
) -> Outcome {
    let n = storage.layout().piece_count();
    let (tx, rx) = bounded(64);
    let ws = WebSeeds::spawn(storage.clone(), seeds, config, tx).unwrap();
    let mut todo: BTreeSet<usize> = (0..n).collect();
    let mut had = vec![false; n];
    // Per seed: None = dropped; Some(t) = idle from t; busy seeds are absent
    // from `idle`.
    let mut idle: Vec<Option<Instant>> = vec![Some(Instant::now()); ws.len()];
    let mut busy = vec![false; ws.len()];
    let mut out = Outcome::default();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if had.iter().all(|&h| h) {
            out.complete = true;
            break;
        }
        if idle.iter().all(Option::is_none) {
            break;
        }
        for s in 0..ws.len() {
            let Some(t) = idle[s] else { continue };
            if busy[s] || t > Instant::now() {
                continue;
            }
            let Some(&first) = todo.iter().next() else {
                break;
            };
            let mut end = first + 1;
            while end < first + run_len && todo.contains(&end) {
                end += 1;
            }
            for p in first..end {
                todo.remove(&p);
            }
            match ws.fetch(s, first..end) {
                Ok(()) => busy[s] = true,
                // Gone: its `Dropped` event is on the way.
                Err(_) => {
                    todo.extend(first..end);
                    idle[s] = None;
                }
            }
        }
        let Ok(ev) = rx.recv_timeout(Duration::from_millis(20)) else {
            continue;
        };
        match ev {
            WebSeedEvent::PieceWritten { seed, piece } => {
                if storage.check_piece(piece).unwrap_or(false) {
                    had[piece] = true;
                } else {
                    out.bad_pieces.push(piece);
                    todo.insert(piece);
                    let _ = ws.report_bad_piece(seed, piece);
                }
            }
            WebSeedEvent::RunEnded {
                seed,
                unfinished,
                error,
                ready_at,
            } => {
                todo.extend(unfinished);
                busy[seed] = false;
                if idle[seed].is_some() {
                    idle[seed] = Some(ready_at);
                }
                if let Some(e) = error {
                    out.errors.push(e.to_string());
                }
            }
            WebSeedEvent::Dropped { seed, reason } => {
                idle[seed] = None;
                out.dropped.push((seed, error_chain(&reason)));
            }
        }
    }
    ws.join();
    out
}

fn error_chain(e: &WebSeedError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

// ---------------------------------------------------------------- nginx

/// nginx in the foreground on a free 127.0.0.1 port, serving `root`, with
/// its config, pid file, logs and temp dirs in a temp dir. Killed on drop.
pub(crate) struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    pub(crate) fn start(root: &Path) -> Option<Nginx> {
        Self::start_with(root, "")
    }

    /// As `start`, with `extra` added to the server block (e.g.
    /// `limit_rate 1m;`).
    pub(crate) fn start_with(root: &Path, extra: &str) -> Option<Nginx> {
        let have = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .find(|p| Path::new(p).is_file())
            .map(PathBuf::from);
        if !bittern_testkit::require("nginx (Debian nginx-light)", have.is_some()) {
            return None;
        }
        let bin = have?;
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  default_type application/octet-stream;\n\
             log_format ranges '$request $status $http_range';\n\
             access_log {d}/access.log ranges;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {root};\n\
             location /old/ {{ if ($request_uri ~ ^/old/(.*)$) {{ return 301 /$1; }} }}\n  {extra}\n  }}\n}}\n",
            root = root.display()
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
        let n = Nginx { child, port, dir };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(n.dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(n)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub(crate) fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nginx_single_file_both_url_forms() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "one.bin",
        &[("one.bin", 3_000_000 + 123)],
        64 << 10,
        1,
    );
    let Some(nginx) = Nginx::start(src.path()) else {
        return;
    };
    // A URL ending in '/' gets the name appended; one without is the file.
    for (i, base) in [nginx.url("/"), nginx.url("/one.bin")]
        .into_iter()
        .enumerate()
    {
        let dst = tempfile::tempdir().unwrap();
        let storage = Arc::new(storage_for(&meta, dst.path()));
        let out = drive(
            &storage,
            seeds(&meta, std::slice::from_ref(&base)),
            test_config(),
            40,
            Duration::from_secs(60),
        );
        assert!(out.complete, "{base}: {out:?}");
        assert!(
            out.bad_pieces.is_empty() && out.errors.is_empty(),
            "{out:?}"
        );
        drop(storage);
        assert_same(src.path(), dst.path(), &[PathBuf::from("one.bin")]);
        // Large spans: 3 MB in 1 MiB requests, runs of 40 pieces (2.5 MiB).
        let log = nginx.access_log();
        let gets = log.lines().filter(|l| l.contains(" 206 ")).count();
        assert!(gets <= 5 * (i + 1), "too many requests for 3 MB:\n{log}");
        assert!(log.lines().all(|l| l.contains("bytes=")), "{log}");
    }
}

#[test]
fn nginx_multi_file_with_redirect_and_two_seeds() {
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("a file.bin", 1_000_000),
        ("dir/b#?.bin", 40_000),
        ("dir/empty", 0),
        ("c.bin", 2_500_001),
    ];
    let meta = make_torrent(src.path(), "multi torrent", &files, 32 << 10, 2);
    let Some(nginx) = Nginx::start(src.path()) else {
        return;
    };
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    // Seed 0: no trailing slash (added); seed 1: through a 301 redirect.
    let bases = [nginx.url(""), nginx.url("/old/")];
    let out = drive(
        &storage,
        seeds(&meta, &bases),
        test_config(),
        24,
        Duration::from_secs(60),
    );
    assert!(out.complete, "{out:?}");
    assert!(out.errors.is_empty() && out.dropped.is_empty(), "{out:?}");
    drop(storage);
    // Empty files are the controller's file preparation, not a web seed's.
    let paths: Vec<PathBuf> = files
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|(p, _)| Path::new("multi torrent").join(p))
        .collect();
    assert_same(src.path(), dst.path(), &paths);
    let log = nginx.access_log();
    assert!(log.contains("/multi%20torrent/dir/b%23%3F.bin"), "{log}");
    assert!(
        log.contains("/old/multi%20torrent/"),
        "the redirect seed was used:\n{log}"
    );
    assert!(
        !log.contains("empty"),
        "a zero-length file is never requested:\n{log}"
    );
}

// ------------------------------------------------- hand-written servers

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Mode {
    /// Flips a byte at this offset in the first `times` responses covering it.
    Corrupt { at: u64, times: usize },
    /// Answers 200 with the whole file (like Python's http.server).
    NoRange,
    /// Answers 206 with no Content-Range.
    NoContentRange,
    /// Answers 206 with a correct Content-Range and Content-Length 4 GiB.
    HugeLength,
    /// Answers 206 with a correct Content-Range, no length, and an endless
    /// body (until the client goes away).
    Endless,
    /// Answers the first request 503 with Retry-After: 1, then serves.
    Unavailable,
    /// Answers 206 with the Content-Range one byte off.
    WrongContentRange,
    /// Answers 206 with the right headers, then 100,000 bytes more than
    /// its Content-Length on a connection it keeps open.
    ExtraBytes,
    /// Redirects every request to itself.
    RedirectLoop,
    /// Redirects to a `file:` URL.
    RedirectScheme,
}

pub(crate) struct TinyServer {
    pub(crate) addr: SocketAddr,
    pub(crate) requests: Arc<Mutex<Vec<(Instant, String)>>>,
    written: Arc<AtomicU64>,
}

/// Serves `data` at any path per `mode`, one response per connection.
pub(crate) fn tiny_server(data: Arc<Vec<u8>>, mode: Mode) -> TinyServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let written = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let (r2, w2) = (requests.clone(), written.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (data, r, w, served) = (data.clone(), r2.clone(), w2.clone(), served.clone());
            std::thread::spawn(move || {
                let _ = serve_one(conn, &data, mode, &r, &w, &served);
            });
        }
    });
    TinyServer {
        addr,
        requests,
        written,
    }
}

fn serve_one(
    conn: TcpStream,
    data: &[u8],
    mode: Mode,
    requests: &Mutex<Vec<(Instant, String)>>,
    written: &AtomicU64,
    served: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut range = None;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("range: bytes=") {
            if let Some((a, b)) = v.split_once('-') {
                range = a.parse::<u64>().ok().zip(b.parse::<u64>().ok());
            }
        }
    }
    requests
        .lock()
        .unwrap()
        .push((Instant::now(), format!("{range:?}")));
    let n = served.fetch_add(1, Ordering::SeqCst);
    let mut conn = conn;
    let total = data.len() as u64;
    let (a, b) = range.unwrap_or((0, total - 1));
    let mut body = data[a as usize..=b as usize].to_vec();
    let head = match mode {
        Mode::Corrupt { at, times } => {
            if (a..=b).contains(&at) && n < times {
                body[(at - a) as usize] ^= 0xff;
            }
            format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{total}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        }
        Mode::NoRange => {
            body = data.to_vec();
            format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n")
        }
        Mode::NoContentRange => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ),
        Mode::HugeLength => format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{total}\r\nContent-Length: 4294967296\r\nConnection: close\r\n\r\n"),
        Mode::Endless => {
            conn.write_all(format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{total}\r\nConnection: close\r\n\r\n").as_bytes())?;
            let chunk = vec![7u8; 64 << 10];
            // Until the client closes (or 4 GiB, which it must never take).
            while written.load(Ordering::SeqCst) < 4 << 30 {
                conn.write_all(&chunk)?;
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            return Ok(());
        }
        Mode::WrongContentRange => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {}-{}/{total}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            a + 1,
            b + 1,
            body.len()
        ),
        Mode::ExtraBytes => {
            let head = format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{total}\r\nContent-Length: {}\r\n\r\n", body.len());
            body.extend(std::iter::repeat_n(0xAAu8, 100_000));
            head
        }
        Mode::RedirectLoop => {
            "HTTP/1.1 302 Found\r\nLocation: /f.bin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
        Mode::RedirectScheme => {
            "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
        }
        Mode::Unavailable => {
            if n == 0 {
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{total}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            }
        }
    };
    conn.write_all(head.as_bytes())?;
    let no_body = (mode == Mode::Unavailable && n == 0)
        || matches!(
            mode,
            Mode::HugeLength | Mode::RedirectLoop | Mode::RedirectScheme
        );
    if !no_body {
        conn.write_all(&body)?;
        written.fetch_add(body.len() as u64, Ordering::SeqCst);
    }
    // Let the client read everything before the socket goes away.
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 1024];
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

/// A single-file torrent of `len` random bytes; returns the torrent, the
/// bytes and the dir holding them.
pub(crate) fn single(
    len: u64,
    piece: u64,
    seed: u64,
) -> (Metainfo, Arc<Vec<u8>>, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "f.bin", &[("f.bin", len)], piece, seed);
    let data = std::fs::read(src.path().join("f.bin")).unwrap();
    (meta, Arc::new(data), src)
}

#[test]
fn corrupt_range_is_caught_and_refetched() {
    let (meta, data, src) = single(600_000, 16 << 10, 3);
    let server = tiny_server(
        data,
        Mode::Corrupt {
            at: 100_000,
            times: 1,
        },
    );
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    let base = format!("http://{}/f.bin", server.addr);
    let out = drive(
        &storage,
        seeds(&meta, &[base]),
        test_config(),
        8,
        Duration::from_secs(30),
    );
    assert!(out.complete, "{out:?}");
    assert_eq!(out.bad_pieces, vec![100_000 / (16 << 10)], "{out:?}");
    assert!(out.dropped.is_empty());
    drop(storage);
    assert_same(src.path(), dst.path(), &[PathBuf::from("f.bin")]);
}

#[test]
fn seed_serving_bad_data_repeatedly_is_dropped() {
    let (meta, data, _src) = single(200_000, 16 << 10, 4);
    let server = tiny_server(
        data,
        Mode::Corrupt {
            at: 50_000,
            times: usize::MAX,
        },
    );
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    let base = format!("http://{}/f.bin", server.addr);
    let out = drive(
        &storage,
        seeds(&meta, &[base]),
        test_config(),
        4,
        Duration::from_secs(30),
    );
    assert!(!out.complete);
    assert_eq!(out.bad_pieces, vec![3, 3, 3], "{out:?}");
    assert_eq!(out.dropped.len(), 1, "{out:?}");
    assert!(
        out.dropped[0]
            .1
            .contains("3 pieces from this web seed failed"),
        "{out:?}"
    );
}

#[test]
fn server_without_range_support_is_refused() {
    let (meta, data, _src) = single(300_000, 16 << 10, 5);
    let server = tiny_server(data, Mode::NoRange);
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    let base = format!("http://{}/f.bin", server.addr);
    let out = drive(
        &storage,
        seeds(&meta, &[base]),
        test_config(),
        4,
        Duration::from_secs(30),
    );
    assert!(!out.complete);
    assert_eq!(out.dropped.len(), 1, "{out:?}");
    assert!(
        out.dropped[0].1.contains("server ignores range requests"),
        "{out:?}"
    );
    assert_eq!(
        server.requests.lock().unwrap().len(),
        1,
        "refused after one answer"
    );
}

/// Runs one seed against `mode` with 2 allowed failures; returns the outcome.
fn failing(mode: Mode) -> (Outcome, TinyServer) {
    let (meta, data, _src) = single(300_000, 16 << 10, 6);
    let server = tiny_server(data, mode);
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    let base = format!("http://{}/f.bin", server.addr);
    let config = WebSeedConfig {
        max_failures: 2,
        ..test_config()
    };
    let out = drive(
        &storage,
        seeds(&meta, &[base]),
        config,
        4,
        Duration::from_secs(30),
    );
    (out, server)
}

#[test]
fn missing_content_range_backs_off_then_drops() {
    let (out, server) = failing(Mode::NoContentRange);
    assert!(!out.complete);
    assert_eq!(
        out.errors,
        vec!["partial response without a content-range header"]
    );
    assert_eq!(out.dropped.len(), 1);
    assert!(
        out.dropped[0].1.contains("2 consecutive failures"),
        "{out:?}"
    );
    // Backed off between the two attempts (50 ms base).
    let r = server.requests.lock().unwrap();
    assert_eq!(r.len(), 2);
    assert!(r[1].0 - r[0].0 >= Duration::from_millis(45));
}

#[test]
fn four_gib_content_length_is_refused_unread() {
    let (out, server) = failing(Mode::HugeLength);
    assert!(!out.complete);
    assert_eq!(out.errors.len(), 1, "{out:?}");
    assert!(out.errors[0].contains("longer than the"), "{out:?}");
    assert!(out.dropped[0].1.contains("longer than the"), "{out:?}");
    assert_eq!(server.written.load(Ordering::SeqCst), 0);
}

#[test]
fn endless_body_is_cut_at_the_length_asked_for() {
    let (out, server) = failing(Mode::Endless);
    assert!(!out.complete);
    assert!(
        out.errors[0].contains("longer than the 65536 bytes"),
        "{out:?}"
    );
    // The client stopped reading: the server could push only what the
    // socket buffers hold, never the 4 GiB it tried.
    std::thread::sleep(Duration::from_millis(300));
    let w = server.written.load(Ordering::SeqCst);
    assert!(w < 64 << 20, "server wrote {w} bytes");
}

#[test]
fn wrong_content_range_backs_off_then_drops() {
    let (out, server) = failing(Mode::WrongContentRange);
    assert!(!out.complete);
    assert_eq!(out.errors.len(), 1, "{out:?}");
    assert!(out.errors[0].contains("content-range"), "{out:?}");
    assert!(
        out.dropped[0].1.contains("2 consecutive failures"),
        "{out:?}"
    );
    assert_eq!(server.requests.lock().unwrap().len(), 2);
}

/// More bytes than the Content-Length on a kept-open connection: only the
/// bytes asked for are taken, and the data verifies.
#[test]
fn bytes_past_the_content_length_are_never_taken() {
    let (meta, data, src) = single(300_000, 16 << 10, 8);
    let server = tiny_server(data, Mode::ExtraBytes);
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    let base = format!("http://{}/f.bin", server.addr);
    let out = drive(
        &storage,
        seeds(&meta, &[base]),
        test_config(),
        4,
        Duration::from_secs(30),
    );
    assert!(out.complete, "{out:?}");
    assert!(out.dropped.is_empty(), "{out:?}");
    drop(storage);
    assert_same(src.path(), dst.path(), &[PathBuf::from("f.bin")]);
}

/// A redirect loop is a failure like the others: back off, then dropped;
/// each attempt follows at most `max_redirects` hops.
#[test]
fn a_redirect_loop_backs_off_then_drops() {
    let (out, server) = failing(Mode::RedirectLoop);
    assert!(!out.complete);
    assert!(out.errors[0].contains("more than 5 redirects"), "{out:?}");
    assert!(
        out.dropped[0].1.contains("2 consecutive failures"),
        "{out:?}"
    );
    // two attempts of 1 + 5 requests each
    assert_eq!(server.requests.lock().unwrap().len(), 12);
}

/// A redirect to `file:` drops the seed at once, without a second request.
#[test]
fn a_redirect_to_another_scheme_drops_the_seed() {
    let (out, server) = failing(Mode::RedirectScheme);
    assert!(!out.complete);
    assert_eq!(out.dropped.len(), 1, "{out:?}");
    assert!(
        out.dropped[0]
            .1
            .contains("not http or https: file:///etc/passwd"),
        "{out:?}"
    );
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

#[test]
fn unavailable_with_retry_after_waits_then_completes() {
    let (meta, data, src) = single(100_000, 16 << 10, 7);
    let server = tiny_server(data, Mode::Unavailable);
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    let base = format!("http://{}/f.bin", server.addr);
    let out = drive(
        &storage,
        seeds(&meta, &[base]),
        test_config(),
        8,
        Duration::from_secs(30),
    );
    assert!(out.complete, "{out:?}");
    assert_eq!(out.errors, vec!["service unavailable, retry after 1s"]);
    let r = server.requests.lock().unwrap();
    assert!(
        r[1].0 - r[0].0 >= Duration::from_millis(950),
        "retried after Retry-After"
    );
    drop(storage);
    assert_same(src.path(), dst.path(), &[PathBuf::from("f.bin")]);
}

/// Throughput from nginx on loopback (run by hand: `cargo test -p
/// bittern-engine --test integration webseed::nginx_throughput --
/// --ignored --nocapture`): 256 MiB, 256 KiB pieces, 4 MiB runs and
/// requests, with the verification done here as the controller would.
#[test]
#[ignore]
fn nginx_throughput() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "big.bin",
        &[("big.bin", 256 << 20)],
        256 << 10,
        9,
    );
    let Some(nginx) = Nginx::start(src.path()) else {
        return;
    };
    for seeds_n in [1, 2] {
        let dst = tempfile::tempdir().unwrap();
        let storage = Arc::new(storage_for(&meta, dst.path()));
        let bases: Vec<String> = (0..seeds_n).map(|_| nginx.url("/")).collect();
        let config = WebSeedConfig {
            max_request_bytes: 4 << 20,
            ..test_config()
        };
        let t0 = Instant::now();
        let out = drive(
            &storage,
            seeds(&meta, &bases),
            config,
            16,
            Duration::from_secs(120),
        );
        let secs = t0.elapsed().as_secs_f64();
        assert!(out.complete, "{out:?}");
        println!(
            "web seed x{seeds_n}: 256 MiB in {secs:.2} s = {:.0} MB/s (verify included)",
            (256 << 20) as f64 / secs / 1e6
        );
    }
    // libtorrent's web-seed download of the same data from the same nginx,
    // in the same run (timed inside the script, from add to seeding).
    let have_lt = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .status()
        .is_ok_and(|s| s.success());
    if !bittern_testkit::require("python3-libtorrent", have_lt) {
        return;
    }
    let dst = tempfile::tempdir().unwrap();
    let torrent = dst.path().join("big.torrent");
    let mut bytes = b"d4:info".to_vec();
    bytes.extend_from_slice(&meta.info_bytes);
    bytes.push(b'e');
    std::fs::write(&torrent, bytes).unwrap();
    let out = Command::new("/usr/bin/python3")
        .args(["-c", LT_WEBSEED])
        .arg(&torrent)
        .arg(dst.path())
        .arg(nginx.url("/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("seconds"), "{text}");
    let secs: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    println!(
        "libtorrent web seed: 256 MiB in {secs:.2} s = {:.0} MB/s",
        (256 << 20) as f64 / secs / 1e6
    );
}

const LT_WEBSEED: &str = r#"
import libtorrent as lt, sys, time
s = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_dht": False,
    "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False})
atp = lt.add_torrent_params(); atp.ti = lt.torrent_info(sys.argv[1])
atp.save_path = sys.argv[2]; atp.url_seeds = [sys.argv[3]]
t0 = time.monotonic(); h = s.add_torrent(atp)
while not h.status().is_seeding:
    if time.monotonic() - t0 > 120: sys.exit(1)
    time.sleep(0.01)
print("seconds", time.monotonic() - t0)
"#;

#[test]
fn cancel_hands_back_the_unfinished_pieces() {
    // 64 pieces in one run, served slowly enough (one 16 KiB piece per
    // response chunk is plenty) that the cancel lands mid-run.
    let (meta, data, _src) = single(64 << 14, 16 << 10, 10);
    let server = tiny_server(data, Mode::Corrupt { at: 0, times: 0 });
    let dst = tempfile::tempdir().unwrap();
    let storage = Arc::new(storage_for(&meta, dst.path()));
    let base = format!("http://{}/f.bin", server.addr);
    let (tx, rx) = bounded(256);
    let config = WebSeedConfig {
        max_request_bytes: 16 << 10,
        ..test_config()
    };
    let ws = WebSeeds::spawn(storage.clone(), seeds(&meta, &[base]), config, tx).unwrap();
    ws.fetch(0, 0..64).unwrap();
    let mut written = Vec::new();
    let unfinished = loop {
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            WebSeedEvent::PieceWritten { piece, .. } => {
                if written.is_empty() {
                    ws.cancel(0);
                }
                written.push(piece);
            }
            WebSeedEvent::RunEnded {
                unfinished, error, ..
            } => {
                assert!(error.is_none(), "{error:?}");
                break unfinished;
            }
            other => panic!("{other:?}"),
        }
    };
    // Every piece is accounted for exactly once: written, or handed back.
    assert!(!unfinished.is_empty(), "the cancel came too late to test");
    assert_eq!(written, (0..unfinished.start).collect::<Vec<_>>());
    assert_eq!(unfinished.end, 64);
    for &p in &written {
        assert!(storage.check_piece(p).unwrap(), "piece {p}");
    }
    // The seed still works after a cancel.
    ws.fetch(0, unfinished.clone()).unwrap();
    let mut more = 0;
    while let Ok(ev) = rx.recv_timeout(Duration::from_secs(10)) {
        match ev {
            WebSeedEvent::PieceWritten { .. } => more += 1,
            WebSeedEvent::RunEnded {
                unfinished: u,
                error,
                ..
            } => {
                assert!(u.is_empty() && error.is_none(), "{u:?} {error:?}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(more, unfinished.len());
    ws.join();
}
