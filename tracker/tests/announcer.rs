//! One torrent in the session announcer: retries after hostile trackers,
//! tier fall-through, `completed` once, the stop deadline, and worker
//! threads started only when requests need them. (These were the tests of
//! the per-torrent announcer thread the session announcer replaced.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_tracker::udp::codec::{Request, Response};
use bittern_tracker::{
    ScheduleConfig, SessionAnnouncer, SessionConfig, SessionHandle, StatsSource, TorrentKey,
    TrackerEvent, TransferStats,
};
use bittern_wire::{InfoHash, PeerId};

use crate::fake::{good_http_body, good_udp, FakeHttp, FakeUdp, HttpReply};
use crate::util::{closed_tcp_port, fast_config, within};

const KEY: TorrentKey = TorrentKey(1);

fn config(name: &str) -> SessionConfig {
    let mut c = SessionConfig::new(PeerId([1; 20]), 6001);
    c.client = fast_config();
    c.schedule = ScheduleConfig {
        backoff_base: Duration::from_millis(40),
        backoff_max: Duration::from_millis(200),
        min_interval_floor: Duration::from_millis(10),
        max_interval: Duration::from_secs(3600),
        default_min_interval: Duration::from_millis(10),
    };
    c.thread_name = name.to_string();
    c
}

fn stats(left: u64) -> StatsSource {
    Arc::new(move || TransferStats {
        uploaded: 1,
        downloaded: 2,
        left,
    })
}

fn peers() -> Vec<SocketAddr> {
    vec!["127.0.0.1:7777".parse().unwrap()]
}

/// Starts an announcer for one torrent on `tiers`.
fn one(name: &str, tiers: Vec<Vec<String>>, left: u64) -> SessionHandle {
    one_with(config(name), tiers, left)
}

fn one_with(c: SessionConfig, tiers: Vec<Vec<String>>, left: u64) -> SessionHandle {
    let h = SessionAnnouncer::spawn(c).unwrap();
    assert!(h.add(KEY, InfoHash([0x66; 20]), tiers, stats(left)));
    h
}

fn wait_peers(h: &SessionHandle) -> Vec<SocketAddr> {
    match h.events().recv_timeout(Duration::from_secs(5)) {
        Ok(TrackerEvent::Peers(key, p)) => {
            assert_eq!(key, KEY);
            p
        }
        other => panic!("no peers delivered: {other:?}"),
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Threads of this process whose name starts with `prefix-`.
fn threads_named(prefix: &str) -> usize {
    bittern_testkit::threads_named(&format!("{prefix}-"))
}

/// Each hostile behaviour fails the first announces; the announcer backs
/// off, retries and gets peers once the tracker behaves.
#[test]
fn retries_after_every_hostile_http_case() {
    type Case = (&'static str, fn() -> HttpReply);
    let cases: Vec<Case> = vec![
        ("garbage", || HttpReply::Body(b"i-0e junk".to_vec())),
        ("huge", || HttpReply::Huge {
            content_length: false,
        }),
        ("silence", || HttpReply::Silence),
        ("status", || HttpReply::Status(502, Vec::new())),
        ("failure", || {
            HttpReply::Body(b"d14:failure reason4:nopee".to_vec())
        }),
    ];
    for (name, bad) in cases {
        let t = FakeHttp::start(move |n, _| {
            if n < 2 {
                bad()
            } else {
                HttpReply::Body(good_http_body(&peers()))
            }
        });
        let h = one("ahx", vec![vec![t.url()]], 10);
        // An unreachable tracker keeps the torrent waiting for its backoff
        // (the torrent's own `failures` count only refusals).
        wait_until("a recorded error", || {
            h.status(KEY)
                .is_some_and(|st| st.trackers[0].last_error.is_some())
        });
        assert_eq!(wait_peers(&h), peers(), "{name}");
        assert!(t.requests().len() >= 3, "{name}");
        // The first successful announce is still `started`.
        assert!(
            t.requests()[2].contains("event=started"),
            "{name}: {:?}",
            t.requests()
        );
        let st = h.status(KEY).unwrap();
        assert_eq!(st.failures, 0);
        assert!(st.trackers[0].last_error.is_none());
        assert!(h.shutdown(Duration::from_millis(500)));
    }
}

#[test]
fn retries_after_hostile_udp_and_closed_port() {
    let t = FakeUdp::start(|n, req| match req {
        // Wrong transaction id for the first connect attempt's 3 tries.
        Request::Connect { transaction_id } if n < 3 => vec![Response::Connect {
            transaction_id: transaction_id ^ 1,
            connection_id: 0x4242,
        }
        .encode(false)],
        _ => good_udp(req, &peers()),
    });
    let dead = format!("http://127.0.0.1:{}/announce", closed_tcp_port());
    // The closed port is in the first tier, so every round falls through to
    // the UDP tracker in the second tier.
    let h = one("aud", vec![vec![dead.clone()], vec![t.url()]], 10);
    assert_eq!(wait_peers(&h), peers());
    let st = h.status(KEY).unwrap();
    let dead_status = st.trackers.iter().find(|s| *s.url == *dead).unwrap();
    assert!(
        dead_status
            .last_error
            .as_deref()
            .unwrap()
            .contains("connect"),
        "{dead_status:?}"
    );
    assert!(!dead_status.started);
    assert!(h.shutdown(Duration::from_millis(500)));
}

#[test]
fn completed_is_sent_once_and_stopped_at_the_end() {
    let t = FakeHttp::start(|_, _| HttpReply::Body(good_http_body(&peers())));
    let h = one("aco", vec![vec![t.url()]], 0);
    wait_peers(&h);
    h.completed(KEY);
    h.completed(KEY);
    wait_until("completed announce", || {
        t.requests().iter().any(|r| r.contains("event=completed"))
    });
    h.completed(KEY);
    std::thread::sleep(Duration::from_millis(50));
    within(Duration::from_secs(1), || {
        h.shutdown(Duration::from_millis(800))
    });
    let reqs = t.requests();
    let events: Vec<&str> = reqs
        .iter()
        .map(|r| {
            ["started", "completed", "stopped"]
                .into_iter()
                .find(|e| r.contains(&format!("event={e}")))
                .unwrap_or("none")
        })
        .collect();
    assert_eq!(events, ["started", "completed", "stopped"], "{reqs:?}");
    assert!(reqs[1].contains("uploaded=1&downloaded=2&left=0"));
}

#[test]
fn stop_never_waits_past_its_deadline() {
    // Answers `started`, then goes silent: `stopped` cannot complete.
    let t = FakeHttp::start(|n, _| {
        if n == 0 {
            HttpReply::Body(good_http_body(&peers()))
        } else {
            HttpReply::Silence
        }
    });
    let mut c = config("asd");
    c.client.read_timeout = Duration::from_secs(10);
    c.stop_deadline = Duration::from_millis(300);
    let h = one_with(c, vec![vec![t.url()]], 5);
    wait_peers(&h);
    // Removing the torrent: its receipt comes at the deadline.
    let stopping = h.remove(KEY);
    within(Duration::from_millis(600), || {
        assert!(stopping.wait(Duration::from_secs(5)));
    });
    assert!(t.requests().last().unwrap().contains("event=stopped"));
    within(Duration::from_millis(600), || {
        h.shutdown(Duration::from_millis(300))
    });

    // Same with a UDP tracker that answers `started` and then goes silent,
    // stopped by the shutdown.
    let u = FakeUdp::start(|n, req| {
        if n < 2 {
            good_udp(req, &peers())
        } else {
            vec![]
        }
    });
    let mut c = config("asu");
    c.client.udp_base_timeout = Duration::from_secs(5);
    let h = one_with(c, vec![vec![u.url()]], 5);
    wait_peers(&h);
    within(Duration::from_millis(600), || {
        h.shutdown(Duration::from_millis(300))
    });
    assert!(matches!(
        u.requests().last(),
        Some(Request::Announce {
            event: bittern_tracker::AnnounceEvent::Stopped,
            ..
        })
    ));
}

#[test]
fn no_stopped_for_trackers_never_started() {
    let t = FakeHttp::start(|_, _| HttpReply::Status(500, vec![]));
    let h = one("ans", vec![vec![t.url()]], 5);
    wait_until("a failure", || {
        h.status(KEY)
            .is_some_and(|st| st.trackers[0].last_error.is_some())
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(h.shutdown(Duration::from_millis(300)));
    assert!(t.requests().iter().all(|r| !r.contains("event=stopped")));
}

/// An announcer with nothing to announce holds only its scheduler; one
/// torrent on one tracker (one request at a time) needs one worker.
#[test]
fn workers_start_only_when_requests_need_them() {
    let h = SessionAnnouncer::spawn(config("alz")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(threads_named("alz"), 1, "the scheduler only");
    assert_eq!(h.threads(), 1);
    let t = FakeHttp::start(|_, _| HttpReply::Body(good_http_body(&peers())));
    assert!(h.add(KEY, InfoHash([0x66; 20]), vec![vec![t.url()]], stats(5)));
    wait_peers(&h);
    h.need_peers(KEY);
    wait_peers(&h);
    assert_eq!(threads_named("alz"), 2, "the scheduler and one worker");
    assert_eq!(h.threads(), 2);
    assert!(h.shutdown(Duration::from_secs(1)));
    wait_until("threads gone", || threads_named("alz") == 0);
}
