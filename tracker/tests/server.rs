//! The embedded tracker, driven by the crate's own client and by raw HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_tracker::{announce, scrape, AnnounceEvent, ScrapeStats};
use bittern_wire::InfoHash;

use crate::util::{fast_config, params, within};

fn server() -> TrackerServer {
    TrackerServer::bind("127.0.0.1:0".parse().unwrap(), ServerConfig::default()).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn raw(server: &TrackerServer, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn two_clients_see_each_other_scrape_and_stop() {
    let srv = server();
    let url = srv.announce_url();
    assert_eq!(url, format!("http://{}/announce", srv.local_addr()));
    let cfg = fast_config();
    let a = params(0x44, 0xa, 8001, 500, AnnounceEvent::Started);
    let b = params(0x44, 0xb, 8002, 0, AnnounceEvent::Started);
    let ra = announce(&url, &a, &cfg).unwrap();
    assert!(ra.peers.is_empty(), "never the peer itself: {:?}", ra.peers);
    let rb = announce(&url, &b, &cfg).unwrap();
    assert_eq!(rb.peers, vec![addr(8001)]);
    assert_eq!(rb.interval, ServerConfig::default().interval);
    let ra = announce(&url, &a, &cfg).unwrap();
    assert_eq!(ra.peers, vec![addr(8002)]);
    assert_eq!((ra.complete, ra.incomplete), (Some(1), Some(1)));

    let h = InfoHash([0x44; 20]);
    let s = scrape(&url, &[h, InfoHash([0x45; 20])], &cfg).unwrap();
    assert_eq!(
        s,
        vec![
            (
                h,
                ScrapeStats {
                    complete: 1,
                    downloaded: 0,
                    incomplete: 1
                }
            ),
            (InfoHash([0x45; 20]), ScrapeStats::default()),
        ]
    );

    let mut done = a.clone();
    done.event = AnnounceEvent::Completed;
    done.left = 0;
    announce(&url, &done, &cfg).unwrap();
    let mut stop = b.clone();
    stop.event = AnnounceEvent::Stopped;
    assert!(announce(&url, &stop, &cfg).unwrap().peers.is_empty());
    let s = scrape(&url, &[h], &cfg).unwrap();
    assert_eq!(
        s,
        vec![(
            h,
            ScrapeStats {
                complete: 1,
                downloaded: 1,
                incomplete: 0
            }
        )]
    );
    srv.shutdown();
}

#[test]
fn dictionary_replies_and_ipv6_peers() {
    let srv = server();
    let url = srv.announce_url();
    let cfg = fast_config();
    // The `ip` parameter is honoured from loopback, to simulate hosts.
    let v6 = format!("{url}?ip=%3A%3A1");
    announce(&v6, &params(0x55, 1, 9001, 1, AnnounceEvent::Started), &cfg).unwrap();
    let r = announce(
        &url,
        &params(0x55, 2, 9002, 1, AnnounceEvent::Started),
        &cfg,
    )
    .unwrap();
    assert_eq!(r.peers, vec!["[::1]:9001".parse::<SocketAddr>().unwrap()]);

    let target = format!(
        "GET /announce?info_hash={}&peer_id={}&port=9003&left=1&compact=0 HTTP/1.1\r\nHost: x\r\n\r\n",
        "%55".repeat(20),
        "%03".repeat(20)
    );
    let reply = raw(&srv, target.as_bytes());
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let body = &reply[reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let v = bittern_wire::bencode::decode(body).unwrap();
    let peers = v.get(b"peers").and_then(|p| p.as_list()).unwrap();
    assert_eq!(peers.len(), 2);
    for p in peers {
        assert!(p.get(b"ip").and_then(|i| i.as_str()).is_some());
        assert_eq!(
            p.get(b"peer id")
                .and_then(|i| i.as_bytes())
                .map(<[u8]>::len),
            Some(20)
        );
    }
}

#[test]
fn rejects_bad_requests() {
    let srv = server();
    let reply = raw(&srv, b"GET /nothing HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with(b"HTTP/1.1 404 "));
    let reply = raw(&srv, b"POST /announce HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with(b"HTTP/1.1 405 "));
    let mut huge = b"GET /announce?".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 20_000));
    let reply = raw(&srv, &huge);
    assert!(
        reply.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    let reply = raw(&srv, b"GET /announce?info_hash=short HTTP/1.1\r\n\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("failure reason"), "{text}");
}

#[test]
fn idle_connection_is_closed_after_the_request_timeout() {
    let cfg = ServerConfig {
        request_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let srv = TrackerServer::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.write_all(b"GET /ann").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    within(Duration::from_secs(2), || s.read_to_end(&mut buf).ok());
    assert!(buf.is_empty());
    // Shutdown via Drop does not hang.
    within(Duration::from_secs(2), || drop(srv));
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let cfg = ServerConfig {
        max_connections: 2,
        request_timeout: Duration::from_secs(3),
        ..ServerConfig::default()
    };
    let srv = TrackerServer::bind("127.0.0.1:0".parse().unwrap(), cfg).unwrap();
    // Two idle connections take both slots (once the server has accepted
    // them: connect returns before that).
    let _idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(srv.local_addr()).unwrap())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while srv.active_connections() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle connections were never accepted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut third = TcpStream::connect(srv.local_addr()).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let _ = third.write_all(b"GET /scrape HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let n = within(Duration::from_secs(1), || third.read_to_end(&mut buf));
    assert!(
        n.is_err() || buf.is_empty(),
        "third connection was served: {buf:?}"
    );
    drop(_idle);
    // Once the slots free up, requests are served again.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let reply = raw(&srv, b"GET /scrape HTTP/1.1\r\n\r\n");
        if reply.starts_with(b"HTTP/1.1 200 OK") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "server never recovered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
