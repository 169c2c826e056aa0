//! The announcer thread: schedule, retries, events, stop deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_tracker::udp::codec::{Request, Response};
use bittern_tracker::{Announcer, AnnouncerConfig, AnnouncerHandle, ScheduleConfig, TransferStats};
use bittern_wire::{InfoHash, PeerId};

use crate::fake::{good_http_body, good_udp, FakeHttp, FakeUdp, HttpReply};
use crate::util::{closed_tcp_port, fast_config, within};

fn config(tiers: Vec<Vec<String>>, peer: u8, port: u16) -> AnnouncerConfig {
    let mut c = AnnouncerConfig::new(tiers, InfoHash([0x66; 20]), PeerId([peer; 20]), port);
    c.client = fast_config();
    c.schedule = ScheduleConfig {
        backoff_base: Duration::from_millis(40),
        backoff_max: Duration::from_millis(200),
        min_interval_floor: Duration::from_millis(10),
        max_interval: Duration::from_secs(3600),
        default_min_interval: Duration::from_millis(10),
    };
    c
}

fn stats(left: u64) -> Arc<dyn Fn() -> TransferStats + Send + Sync> {
    Arc::new(move || TransferStats {
        uploaded: 1,
        downloaded: 2,
        left,
    })
}

fn peers() -> Vec<SocketAddr> {
    vec!["127.0.0.1:7777".parse().unwrap()]
}

fn wait_peers(h: &AnnouncerHandle) -> Vec<SocketAddr> {
    h.peers()
        .recv_timeout(Duration::from_secs(5))
        .expect("no peers delivered")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_announcers_find_each_other_through_the_embedded_tracker() {
    let srv = TrackerServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            min_interval: Duration::ZERO,
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let url = srv.announce_url();
    let a = Announcer::spawn(config(vec![vec![url.clone()]], 1, 6001), stats(10));
    wait_until("a's started", || a.status().announces == 1);
    let b = Announcer::spawn(config(vec![vec![url]], 2, 6002), stats(0));
    assert_eq!(wait_peers(&b), vec!["127.0.0.1:6001".parse().unwrap()]);
    a.need_peers();
    assert_eq!(wait_peers(&a), vec!["127.0.0.1:6002".parse().unwrap()]);
    let st = a.status();
    assert_eq!((st.seeders, st.leechers), (Some(1), Some(1)));
    assert!(st.trackers[0].started && st.trackers[0].last_error.is_none());
    // Stopping b removes it from the swarm.
    within(Duration::from_secs(2), || b.stop(Duration::from_secs(1)));
    a.need_peers();
    wait_until("a's re-announce", || a.status().announces == 3);
    assert_eq!(a.status().seeders, Some(0));
    a.stop(Duration::from_secs(1));
}

/// With a sink, peer lists go to the callback (here tagged, as an engine
/// tags them with its torrent) and the handle's channel stays empty.
#[test]
fn spawn_with_sink_hands_peers_to_the_callback() {
    let t = FakeHttp::start(|_, _| HttpReply::Body(good_http_body(&peers())));
    let (tx, rx) = crossbeam_channel::bounded(4);
    let h = Announcer::spawn_with_sink(config(vec![vec![t.url()]], 1, 6001), stats(10), move |p| {
        let _ = tx.try_send((7u64, p));
    });
    let got = rx.recv_timeout(Duration::from_secs(5));
    assert_eq!(got.ok(), Some((7, peers())));
    assert!(h.peers().try_recv().is_err());
    h.stop(Duration::from_millis(500));
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
        let h = Announcer::spawn(config(vec![vec![t.url()]], 1, 6001), stats(10));
        wait_until("a recorded failure", || {
            let st = h.status();
            st.failures >= 1 && st.trackers[0].last_error.is_some()
        });
        let got = h.peers().recv_timeout(Duration::from_secs(5));
        assert_eq!(got.as_deref().ok(), Some(&peers()[..]), "{name}");
        assert!(t.requests().len() >= 3, "{name}");
        // The first successful announce is still `started`.
        assert!(
            t.requests()[2].contains("event=started"),
            "{name}: {:?}",
            t.requests()
        );
        let st = h.status();
        assert_eq!(st.failures, 0);
        assert!(st.trackers[0].last_error.is_none());
        h.stop(Duration::from_millis(500));
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
    let h = Announcer::spawn(
        config(vec![vec![dead.clone()], vec![t.url()]], 1, 6001),
        stats(10),
    );
    assert_eq!(wait_peers(&h), peers());
    let st = h.status();
    let dead_status = st.trackers.iter().find(|s| s.url == dead).unwrap();
    assert!(
        dead_status
            .last_error
            .as_deref()
            .unwrap()
            .contains("connect"),
        "{dead_status:?}"
    );
    assert!(!dead_status.started);
    h.stop(Duration::from_millis(500));
}

#[test]
fn completed_is_sent_once_and_stopped_at_the_end() {
    let t = FakeHttp::start(|_, _| HttpReply::Body(good_http_body(&peers())));
    let h = Announcer::spawn(config(vec![vec![t.url()]], 1, 6001), stats(0));
    wait_peers(&h);
    h.completed();
    h.completed();
    wait_until("completed announce", || {
        t.requests().iter().any(|r| r.contains("event=completed"))
    });
    h.completed();
    std::thread::sleep(Duration::from_millis(50));
    within(Duration::from_secs(1), || {
        h.stop(Duration::from_millis(800))
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
    let mut c = config(vec![vec![t.url()]], 1, 6001);
    c.client.read_timeout = Duration::from_secs(10);
    let h = Announcer::spawn(c, stats(5));
    wait_peers(&h);
    within(Duration::from_millis(600), || {
        h.stop(Duration::from_millis(300))
    });
    assert!(t.requests().last().unwrap().contains("event=stopped"));

    // Same with a UDP tracker that answers `started` and then goes silent.
    let u = FakeUdp::start(|n, req| {
        if n < 2 {
            good_udp(req, &peers())
        } else {
            vec![]
        }
    });
    let mut c = config(vec![vec![u.url()]], 1, 6001);
    c.client.udp_base_timeout = Duration::from_secs(5);
    let h = Announcer::spawn(c, stats(5));
    wait_peers(&h);
    within(Duration::from_millis(600), || {
        h.stop(Duration::from_millis(300))
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
    let h = Announcer::spawn(config(vec![vec![t.url()]], 1, 6001), stats(5));
    wait_until("a failure", || h.status().failures >= 1);
    h.stop(Duration::from_millis(300));
    assert!(t.requests().iter().all(|r| !r.contains("event=stopped")));
}
