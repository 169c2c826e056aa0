//! The session announcer: many torrents, one scheduler, a fixed pool.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_tracker::udp::codec::Request;
use bittern_tracker::{
    ScheduleConfig, SessionAnnouncer, SessionConfig, SessionHandle, StatsSource, TorrentKey,
    TrackerEvent, TransferStats,
};
use bittern_wire::{InfoHash, PeerId};

use crate::fake::{good_udp, FakeHttp, FakeUdp, HttpReply};
use crate::util::{fast_config, have_tool, within};

fn config(name: &str, port: u16) -> SessionConfig {
    let mut c = SessionConfig::new(PeerId([port as u8; 20]), port);
    c.client = fast_config();
    c.schedule = ScheduleConfig {
        backoff_base: Duration::from_millis(200),
        backoff_max: Duration::from_millis(1600),
        min_interval_floor: Duration::from_millis(500),
        max_interval: Duration::from_secs(3600),
        default_min_interval: Duration::from_millis(500),
    };
    c.per_tracker = 4;
    c.thread_name = name.to_string();
    c
}

fn hash(k: u64) -> InfoHash {
    let mut h = [0x5a; 20];
    h[..8].copy_from_slice(&k.to_be_bytes());
    InfoHash(h)
}

fn stats(left: u64) -> StatsSource {
    Arc::new(move || TransferStats {
        uploaded: 0,
        downloaded: 0,
        left,
    })
}

fn add_all(h: &SessionHandle, n: u64, url: &str, left: u64) {
    for k in 0..n {
        assert!(h.add(
            TorrentKey(k),
            hash(k),
            vec![vec![url.to_string()]],
            stats(left),
        ));
    }
}

/// Threads of this process whose name starts with `prefix-`.
fn threads_named(prefix: &str) -> usize {
    bittern_testkit::threads_named(&format!("{prefix}-"))
}

fn wait_until(what: &str, limit: Duration, f: impl FnMut() -> bool) {
    bittern_testkit::wait_until(what, limit, f);
}

fn server(interval: u64) -> TrackerServer {
    TrackerServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            interval: Duration::from_secs(interval),
            min_interval: Duration::from_secs(interval),
            max_connections: 256,
            ..ServerConfig::default()
        },
    )
    .unwrap()
}

#[test]
fn five_hundred_torrents_one_announce_each_per_interval_on_a_fixed_pool() {
    const N: u64 = 500;
    let srv = server(2);
    let h = SessionAnnouncer::spawn(config("t500", 6500)).unwrap();
    assert_eq!(h.threads(), 1, "workers start with the first requests");
    add_all(&h, N, &srv.announce_url(), 0);
    let start = Instant::now();
    let counts = |srv: &TrackerServer| -> Vec<u64> {
        (0..N).map(|k| srv.announce_count(&hash(k))).collect()
    };
    wait_until("every started", Duration::from_secs(20), || {
        counts(&srv).iter().all(|&c| c >= 1)
    });
    let first_round = start.elapsed();
    let all_started = Instant::now();
    assert_eq!(threads_named("t500"), 5, "scheduler and 4 workers");
    assert_eq!(h.threads(), 5);
    // Every torrent's second announce falls one interval (2 s) after its
    // first, the third two intervals after: at 3 s, exactly two each.
    thread::sleep(Duration::from_secs(3).saturating_sub(all_started.elapsed()));
    let c = counts(&srv);
    let wrong: Vec<(usize, u64)> = c
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, n)| n != 2)
        .collect();
    assert!(
        wrong.is_empty(),
        "first round took {first_round:?}; torrents without exactly 2 announces: {:?}",
        &wrong[..wrong.len().min(10)]
    );
    assert_eq!(srv.announce_requests(), 2 * N);
    assert_eq!(threads_named("t500"), 5);
    let st = h.status(TorrentKey(7)).unwrap();
    assert_eq!((st.announces, st.seeders), (2, Some(1)));
    eprintln!("500 torrents: first round {first_round:?}");

    // Shutdown sends `stopped` for every torrent within the deadline.
    assert!((0..N).all(|k| srv.peer_count(&hash(k)) == 1));
    let took = Instant::now();
    let done = within(Duration::from_millis(2500), || {
        h.shutdown(Duration::from_secs(2))
    });
    eprintln!("500 stopped in {:?}", took.elapsed());
    assert!(done, "shutdown finished in time");
    let left: Vec<u64> = (0..N).filter(|&k| srv.peer_count(&hash(k)) != 0).collect();
    assert!(left.is_empty(), "still listed: {left:?}");
    assert_eq!(srv.announce_requests(), 3 * N);
    wait_until("threads gone", Duration::from_secs(2), || {
        threads_named("t500") == 0
    });
}

#[test]
fn remove_sends_stopped_for_that_torrent_only() {
    let srv = server(60);
    let h = SessionAnnouncer::spawn(config("trm", 6501)).unwrap();
    add_all(&h, 3, &srv.announce_url(), 10);
    wait_until("started", Duration::from_secs(5), || {
        (0..3).all(|k| srv.peer_count(&hash(k)) == 1)
    });
    let stopping = h.remove(TorrentKey(1));
    assert!(stopping.wait(Duration::from_secs(3)));
    assert_eq!(
        (0..3).map(|k| srv.peer_count(&hash(k))).collect::<Vec<_>>(),
        [1, 0, 1]
    );
    assert!(h.status(TorrentKey(1)).is_none());
    assert!(
        h.remove(TorrentKey(99)).wait(Duration::from_secs(1)),
        "unknown key"
    );
    assert!(h.shutdown(Duration::from_secs(2)));
}

#[test]
fn two_sessions_find_each_other_and_need_peers_is_early() {
    let srv = TrackerServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            min_interval: Duration::ZERO,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let url = srv.announce_url();
    let a = SessionAnnouncer::spawn(config("tpa", 6601)).unwrap();
    let b = SessionAnnouncer::spawn(config("tpb", 6602)).unwrap();
    assert!(a.add(TorrentKey(1), hash(1), vec![vec![url.clone()]], stats(5)));
    wait_until("a started", Duration::from_secs(5), || {
        srv.peer_count(&hash(1)) == 1
    });
    assert!(b.add(TorrentKey(2), hash(1), vec![vec![url]], stats(0)));
    let ev = b.events().recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        ev,
        TrackerEvent::Peers(TorrentKey(2), vec!["127.0.0.1:6601".parse().unwrap()])
    );
    a.need_peers(TorrentKey(1));
    let ev = a.events().recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        ev,
        TrackerEvent::Peers(TorrentKey(1), vec!["127.0.0.1:6602".parse().unwrap()])
    );
    a.completed(TorrentKey(1));
    wait_until("completed", Duration::from_secs(5), || {
        a.status(TorrentKey(1)).is_some_and(|s| s.announces == 3)
    });
    assert!(a.shutdown(Duration::from_secs(2)) && b.shutdown(Duration::from_secs(2)));
}

/// A listener that counts connections and closes each at once.
fn slamming_tracker() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/announce", l.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            c.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = s.read(&mut [0; 512]);
        }
    });
    (url, count)
}

fn assert_backs_off_once(attempts: usize, what: &str) {
    // Per torrent it would be 100 or more; one backoff of 200 ms doubling
    // (jitter takes up to half off) allows at most 5 tries in 1.5 s.
    assert!((2..=5).contains(&attempts), "{what}: {attempts} attempts");
}

#[test]
fn a_failing_tracker_backs_off_once_for_all_torrents() {
    // Connections closed without an answer.
    let (url, count) = slamming_tracker();
    let h = SessionAnnouncer::spawn(config("tfc", 6701)).unwrap();
    add_all(&h, 100, &url, 1);
    thread::sleep(Duration::from_millis(1500));
    assert_backs_off_once(count.load(Ordering::SeqCst), "closing tracker");
    let st = h.status(TorrentKey(0)).unwrap();
    assert_eq!(st.announces, 0);
    assert!(h.shutdown(Duration::from_secs(1)));

    // Garbage replies.
    let fake = FakeHttp::start(|_, _| HttpReply::Body(b"this is not bencode".to_vec()));
    let h = SessionAnnouncer::spawn(config("tfg", 6702)).unwrap();
    add_all(&h, 100, &fake.url(), 1);
    thread::sleep(Duration::from_millis(1500));
    assert_backs_off_once(fake.requests().len(), "garbage tracker");
    assert!(h.events().is_empty());
    // Nothing was started, so shutting down sends nothing.
    let before = fake.requests().len();
    assert!(h.shutdown(Duration::from_secs(1)));
    assert_eq!(fake.requests().len(), before);
}

#[test]
fn udp_tracker_connection_id_is_shared_by_all_torrents() {
    let peer: SocketAddr = "127.0.0.1:7777".parse().unwrap();
    let fake = FakeUdp::start(move |_, req| good_udp(req, &[peer]));
    let h = SessionAnnouncer::spawn(config("tud", 6801)).unwrap();
    add_all(&h, 50, &fake.url(), 1);
    let mut got = HashSet::new();
    while got.len() < 50 {
        match h.events().recv_timeout(Duration::from_secs(5)) {
            Ok(TrackerEvent::Peers(k, p)) => {
                assert_eq!(p, vec![peer]);
                got.insert(k);
            }
            other => panic!("{other:?} after {} torrents", got.len()),
        }
    }
    let reqs = fake.requests();
    let connects = reqs
        .iter()
        .filter(|r| matches!(r, Request::Connect { .. }))
        .count();
    let announces: Vec<&Request> = reqs
        .iter()
        .filter(|r| matches!(r, Request::Announce { .. }))
        .collect();
    assert_eq!(connects, 1, "one connection id for 50 torrents");
    assert_eq!(announces.len(), 50);
    if let Request::Announce {
        num_want,
        port,
        key,
        ..
    } = announces[0]
    {
        assert_eq!((*num_want, *port), (50, 6801));
        assert!(announces
            .iter()
            .all(|r| matches!(r, Request::Announce { key: k, .. } if k == key)));
    }
    // A batched scrape: 50 torrents in one packet.
    h.scrape_all();
    let mut scraped = 0;
    while scraped < 50 {
        if let Ok(TrackerEvent::Scraped(..)) = h.events().recv_timeout(Duration::from_secs(5)) {
            scraped += 1;
        }
    }
    let scrapes = fake
        .requests()
        .iter()
        .filter(|r| matches!(r, Request::Scrape { .. }))
        .count();
    assert_eq!(scrapes, 1);
    assert!(h.shutdown(Duration::from_secs(2)));
    let stops = fake
        .requests()
        .iter()
        .filter(|r| matches!(r, Request::Announce { event, .. } if *event == bittern_tracker::AnnounceEvent::Stopped))
        .count();
    assert_eq!(stops, 50);
}

#[test]
fn scrapes_are_batched_on_the_embedded_tracker() {
    let srv = server(60);
    let h = SessionAnnouncer::spawn(config("tsc", 6901)).unwrap();
    add_all(&h, 120, &srv.announce_url(), 0);
    wait_until("started", Duration::from_secs(10), || {
        srv.announce_requests() == 120
    });
    h.scrape_all();
    let mut seen = HashMap::new();
    while seen.len() < 120 {
        match h.events().recv_timeout(Duration::from_secs(5)) {
            Ok(TrackerEvent::Scraped(k, s)) => {
                seen.insert(k, s.complete);
            }
            Ok(_) => {}
            Err(e) => panic!("{e} after {} scrapes", seen.len()),
        }
    }
    assert!(seen.values().all(|&c| c == 1));
    assert_eq!(srv.scrape_requests(), 3, "50 + 50 + 20");
    assert!(h.shutdown(Duration::from_secs(2)));
}

#[test]
fn ipv6_peers_are_delivered() {
    let mut body = b"d8:intervali1800e5:peers0:6:peers618:".to_vec();
    body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&7000u16.to_be_bytes());
    body.push(b'e');
    let fake = FakeHttp::start(move |_, _| HttpReply::Body(body.clone()));
    let h = SessionAnnouncer::spawn(config("tv6", 6902)).unwrap();
    assert!(h.add(TorrentKey(3), hash(3), vec![vec![fake.url()]], stats(1)));
    let ev = h.events().recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        ev,
        TrackerEvent::Peers(TorrentKey(3), vec!["[::1]:7000".parse().unwrap()])
    );
    let line = &fake.requests()[0];
    assert!(
        line.contains("event=started") && line.contains("numwant=50") && line.contains("port=6902"),
        "{line}"
    );
    assert!(h.shutdown(Duration::from_secs(2)));
}

#[test]
fn opentracker_over_udp_with_the_session_announcer() {
    if !have_tool("opentracker") {
        return;
    }
    let hashes: Vec<InfoHash> = (0..10).map(hash).collect();
    let ot = crate::opentracker::start(&hashes);
    let url = format!("udp://127.0.0.1:{}/announce", ot.port);
    let a = SessionAnnouncer::spawn(config("toa", 7201)).unwrap();
    add_all(&a, 10, &url, 0);
    wait_until("a's announces", Duration::from_secs(10), || {
        (0..10).all(|k| a.status(TorrentKey(k)).is_some_and(|s| s.announces == 1))
    });
    let b = SessionAnnouncer::spawn(config("tob", 7202)).unwrap();
    add_all(&b, 10, &url, 5);
    let mut found = HashSet::new();
    while found.len() < 10 {
        match b.events().recv_timeout(Duration::from_secs(10)) {
            Ok(TrackerEvent::Peers(k, p)) => {
                assert!(p.contains(&"127.0.0.1:7201".parse().unwrap()), "{p:?}");
                found.insert(k);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(a.shutdown(Duration::from_secs(2)) && b.shutdown(Duration::from_secs(2)));
}

#[test]
fn dropping_the_handle_stops_every_torrent_and_every_thread() {
    let srv = server(60);
    let h = SessionAnnouncer::spawn(config("tdr", 7301)).unwrap();
    add_all(&h, 20, &srv.announce_url(), 1);
    wait_until("started", Duration::from_secs(5), || {
        (0..20).all(|k| srv.peer_count(&hash(k)) == 1)
    });
    assert_eq!(threads_named("tdr"), 5);
    drop(h);
    wait_until("threads gone", Duration::from_secs(4), || {
        threads_named("tdr") == 0
    });
    assert!((0..20).all(|k| srv.peer_count(&hash(k)) == 0));
}

/// CPU clock ticks (user + system) of this process's threads named
/// `prefix-*`.
fn cpu_ticks(prefix: &str) -> u64 {
    let want = format!("{prefix}-");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| {
            let dir = e.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if !comm.starts_with(&want) {
                return None;
            }
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the parenthesised name; utime and stime are
            // fields 14 and 15 of the whole line.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f[11].parse::<u64>().ok()? + f[12].parse::<u64>().ok()?)
        })
        .sum()
}

#[test]
fn two_thousand_idle_torrents_cost_no_cpu() {
    const N: u64 = 2000;
    let srv = server(1800);
    let h = SessionAnnouncer::spawn(config("tid", 7401)).unwrap();
    let start = Instant::now();
    add_all(&h, N, &srv.announce_url(), 0);
    wait_until("every started", Duration::from_secs(30), || {
        srv.announce_requests() >= N
    });
    let round = start.elapsed();
    let busy = cpu_ticks("tid");
    thread::sleep(Duration::from_millis(1500));
    let idle = cpu_ticks("tid") - busy;
    eprintln!("2000 torrents: first round {round:?}, {busy} ticks; idle 1.5 s: {idle} ticks");
    assert!(idle <= 1, "announcer threads used {idle} ticks while idle");
    assert_eq!(threads_named("tid"), 5);
    assert_eq!(srv.announce_requests(), N);
    assert!(h.shutdown(Duration::from_secs(5)));
}

/// Workers end after 10 s without a job (a session whose torrents are
/// quiet between announces, or gone, holds only the scheduler), and a
/// later request starts one again.
#[test]
fn idle_workers_end_and_a_later_request_starts_one_again() {
    let srv = server(600);
    let h = SessionAnnouncer::spawn(config("tidle", 6511)).unwrap();
    add_all(&h, 3, &srv.announce_url(), 0);
    wait_until("the first announces", Duration::from_secs(20), || {
        (0..3).all(|k| srv.announce_count(&hash(k)) >= 1)
    });
    assert!(threads_named("tidle") >= 2, "a worker ran them");
    wait_until("idle workers to end", Duration::from_secs(40), || {
        threads_named("tidle") == 1
    });
    h.completed(TorrentKey(0));
    wait_until("the completed announce", Duration::from_secs(20), || {
        srv.announce_count(&hash(0)) >= 2
    });
}

/// With `idle_exit`, an announcer runs while it has a torrent, sends the
/// `stopped` of the last one removed, then ends its threads by itself;
/// `add` then says it took nothing (its owner starts a new announcer).
#[test]
fn an_idle_announcer_ends_after_its_last_torrent_and_refuses_additions() {
    let srv = server(600);
    let mut c = config("tiex", 6512);
    c.idle_exit = Some(Duration::from_millis(300));
    let h = SessionAnnouncer::spawn(c).unwrap();
    add_all(&h, 2, &srv.announce_url(), 0);
    wait_until("both started", Duration::from_secs(20), || {
        (0..2).all(|k| srv.peer_count(&hash(k)) == 1)
    });
    assert!(h.remove(TorrentKey(0)).wait(Duration::from_secs(10)));
    thread::sleep(Duration::from_millis(1200));
    assert!(!h.has_ended(), "ended with a torrent in it");
    assert!(threads_named("tiex") >= 1);
    assert!(h.remove(TorrentKey(1)).wait(Duration::from_secs(10)));
    assert_eq!(
        srv.peer_count(&hash(0)) + srv.peer_count(&hash(1)),
        0,
        "stopped sent"
    );
    wait_until("the idle announcer to end", Duration::from_secs(20), || {
        h.has_ended() && threads_named("tiex") == 0
    });
    assert_eq!(h.threads(), 0);
    assert!(!h.add(
        TorrentKey(7),
        hash(7),
        vec![vec![srv.announce_url()]],
        stats(0)
    ));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.peer_count(&hash(7)), 0, "an ended announcer announced");
}

/// An HTTP tracker a few milliseconds away (each reply `delay` after its
/// request) that keeps connections open (HTTP/1.1 keep-alive), one thread
/// per connection. Counts connections and the torrents whose `stopped`
/// arrived.
struct DistantTracker {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stopped: Arc<std::sync::Mutex<HashSet<String>>>,
}

impl DistantTracker {
    fn start(delay: Duration) -> DistantTracker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(std::sync::Mutex::new(HashSet::new()));
        let (c, s) = (connections.clone(), stopped.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let line = head.lines().next().unwrap_or("").to_string();
                        thread::sleep(delay);
                        if line.contains("event=stopped") {
                            let hash = line
                                .split(['?', '&'])
                                .find_map(|p| p.strip_prefix("info_hash="))
                                .unwrap_or("")
                                .to_string();
                            s.lock().unwrap().insert(hash);
                        }
                        let body = "d8:intervali1800e5:peers0:e";
                        // One write: head and body in one segment.
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        use std::io::Write;
                        if stream.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        DistantTracker {
            addr,
            connections,
            stopped,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }
}

/// Issue 19: 2,000 torrents on one tracker 10 ms away all get their
/// `stopped` within the 3 s stop deadline: batches of stops go out on
/// several workers at once, each batch one after another on one kept-alive
/// connection (one connection per stop and two in flight took 10 s).
#[test]
fn two_thousand_stops_to_a_distant_tracker_within_the_deadline() {
    const N: u64 = 2000;
    let tracker = DistantTracker::start(Duration::from_millis(10));
    let mut cfg = config("tds", 7401);
    // Generous request timeouts: the test machine may be loaded.
    cfg.client.connect_timeout = Duration::from_secs(2);
    cfg.client.read_timeout = Duration::from_secs(2);
    let h = SessionAnnouncer::spawn(cfg).unwrap();
    add_all(&h, N, &tracker.url(), 0);
    wait_until("every started", Duration::from_secs(60), || {
        (0..N)
            .step_by(97)
            .all(|k| h.status(TorrentKey(k)).is_some_and(|s| s.announces == 1))
            && (0..N).all(|k| h.status(TorrentKey(k)).is_some_and(|s| s.announces == 1))
    });
    let before = tracker.connections.load(Ordering::SeqCst);
    let start = Instant::now();
    let done = within(Duration::from_secs(6), || {
        h.shutdown(Duration::from_secs(3))
    });
    let took = start.elapsed();
    let stopped = tracker.stopped.lock().unwrap().len();
    let connections = tracker.connections.load(Ordering::SeqCst) - before;
    eprintln!(
        "{N} stops to a tracker 10 ms away: {stopped} in {took:?} on {connections} connections"
    );
    assert_eq!(stopped as u64, N, "stops that reached the tracker");
    assert!(done, "shutdown finished within its deadline");
    assert!(
        (connections as u64) < N / 8,
        "stops share kept-alive connections: {connections} for {N}"
    );
}
