//! The UDP (BEP 15) client against scripted fake trackers.

use std::net::SocketAddr;
use std::time::Duration;

use bittern_tracker::udp::codec::{Request, Response};
use bittern_tracker::{announce, scrape, AnnounceEvent, Error, ScrapeStats};
use bittern_wire::{InfoHash, PeerId};

use crate::fake::{good_udp, FakeUdp};
use crate::util::{closed_udp_port, fast_config, params, within};

const QUICK: Duration = Duration::from_secs(2);

fn peers() -> Vec<SocketAddr> {
    vec![
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.3:7003".parse().unwrap(),
    ]
}

#[test]
fn connects_announces_and_reuses_the_connection_id() {
    let t = FakeUdp::start(|_, req| good_udp(req, &peers()));
    let p = params(9, 3, 6881, 1000, AnnounceEvent::Started);
    let r = announce(&t.url(), &p, &fast_config()).unwrap();
    assert_eq!(r.peers, peers());
    assert_eq!(r.interval, Duration::from_secs(1800));
    assert_eq!((r.complete, r.incomplete), (Some(2), Some(4)));
    announce(
        &t.url(),
        &params(9, 3, 6881, 0, AnnounceEvent::Completed),
        &fast_config(),
    )
    .unwrap();
    let reqs = t.requests();
    assert_eq!(reqs.len(), 3, "one connect, two announces: {reqs:?}");
    assert!(matches!(reqs[0], Request::Connect { .. }));
    let Request::Announce {
        connection_id,
        info_hash,
        peer_id,
        left,
        event,
        port,
        key,
        num_want,
        ..
    } = &reqs[1]
    else {
        panic!("expected announce, got {:?}", reqs[1]);
    };
    assert_eq!(*connection_id, 0x4242);
    assert_eq!((*info_hash, *peer_id), (InfoHash([9; 20]), PeerId([3; 20])));
    assert_eq!(
        (*left, *event, *port, *key, *num_want),
        (1000, AnnounceEvent::Started, 6881, 3, 50)
    );
    assert!(matches!(
        &reqs[2],
        Request::Announce {
            event: AnnounceEvent::Completed,
            left: 0,
            ..
        }
    ));
}

#[test]
fn retransmits_lost_packets() {
    // The first two connect packets are "lost".
    let t = FakeUdp::start(|n, req| {
        if n < 2 {
            vec![]
        } else {
            good_udp(req, &peers())
        }
    });
    let r = within(QUICK, || {
        announce(
            &t.url(),
            &params(1, 1, 1, 1, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert_eq!(r.unwrap().peers, peers());
    let reqs = t.requests();
    assert_eq!(reqs.len(), 4);
    // Retransmissions repeat the same transaction.
    assert_eq!(reqs[0], reqs[1]);
    assert_eq!(reqs[1], reqs[2]);
}

#[test]
fn wrong_transaction_id_is_a_typed_error() {
    let t = FakeUdp::start(|_, req| {
        let Request::Connect { transaction_id } = req else {
            return vec![];
        };
        vec![Response::Connect {
            transaction_id: transaction_id.wrapping_add(1),
            connection_id: 1,
        }
        .encode(false)]
    });
    let e = within(QUICK, || {
        announce(
            &t.url(),
            &params(1, 1, 1, 1, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::TransactionMismatch)), "{e:?}");
    assert_eq!(t.requests().len(), 3, "every try was made");
}

#[test]
fn silence_times_out_after_the_configured_tries() {
    let t = FakeUdp::start(|_, _| vec![]);
    // 60 + 120 + 240 ms
    let e = within(Duration::from_millis(1500), || {
        announce(
            &t.url(),
            &params(1, 1, 1, 1, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::Timeout)), "{e:?}");
    assert_eq!(t.requests().len(), 3);
}

#[test]
fn garbage_is_a_bad_response() {
    let t = FakeUdp::start(|_, _| vec![vec![0xde, 0xad], vec![0, 0, 0, 77, 1, 2, 3, 4]]);
    let e = within(QUICK, || {
        announce(
            &t.url(),
            &params(1, 1, 1, 1, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::BadResponse(_))), "{e:?}");
}

#[test]
fn error_action_is_reported() {
    let t = FakeUdp::start(|_, req| match req {
        Request::Announce { transaction_id, .. } => vec![Response::Error {
            transaction_id: *transaction_id,
            message: "torrent not registered".into(),
        }
        .encode(false)],
        _ => good_udp(req, &[]),
    });
    let e = within(QUICK, || {
        announce(
            &t.url(),
            &params(1, 1, 1, 1, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(
        matches!(&e, Err(Error::Udp { message }) if message == "torrent not registered"),
        "{e:?}"
    );
}

#[test]
fn closed_port_is_a_connect_error() {
    let url = format!("udp://127.0.0.1:{}", closed_udp_port());
    let e = within(QUICK, || {
        announce(
            &url,
            &params(1, 1, 1, 1, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::Connect)), "{e:?}");
}

#[test]
fn scrapes_in_chunks_of_74() {
    let t = FakeUdp::start(|_, req| good_udp(req, &[]));
    let hashes: Vec<InfoHash> = (0..100u8).map(|i| InfoHash([i; 20])).collect();
    let got = scrape(&t.url(), &hashes, &fast_config()).unwrap();
    assert_eq!(got.len(), 100);
    for (i, (h, s)) in got.iter().enumerate() {
        assert_eq!(*h, hashes[i]);
        assert_eq!(
            *s,
            ScrapeStats {
                complete: i as u32,
                downloaded: 7,
                incomplete: 1
            }
        );
    }
    let sizes: Vec<usize> = t
        .requests()
        .iter()
        .filter_map(|r| match r {
            Request::Scrape { info_hashes, .. } => Some(info_hashes.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![74, 26]);
}

#[test]
fn ipv6_tracker_returns_ipv6_peers() {
    let socket = std::net::UdpSocket::bind("[::1]:0");
    if !bittern_testkit::require("an IPv6 loopback (::1)", socket.is_ok()) {
        return;
    }
    let socket = socket.unwrap();
    let v6: Vec<SocketAddr> = vec![
        "[::1]:6881".parse().unwrap(),
        "[fe80::1]:51413".parse().unwrap(),
    ];
    let peers = v6.clone();
    let t = FakeUdp::start_on(socket, move |_, req| {
        crate::fake::good_udp_family(req, &peers, true)
    });
    assert!(t.url().starts_with("udp://[::1]:"));
    let r = announce(
        &t.url(),
        &params(2, 2, 2, 2, AnnounceEvent::Started),
        &fast_config(),
    )
    .unwrap();
    assert_eq!(r.peers, v6);
}
