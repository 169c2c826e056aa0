//! Interop with a real tracker: Debian's `opentracker`, on 127.0.0.1 over
//! HTTP and UDP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_tracker::{announce, scrape, AnnounceEvent, ScrapeStats};
use bittern_wire::InfoHash;

use crate::util::{fast_config, have_tool, params};

pub use bittern_testkit::opentracker::OpenTracker;

pub fn start(hashes: &[InfoHash]) -> OpenTracker {
    let hex: Vec<String> = hashes.iter().map(|h| h.to_hex()).collect();
    let ot = OpenTracker::start(&hex);
    let port = ot.port;
    let deadline = Instant::now() + Duration::from_secs(5);
    // The whitelist is loaded by a background thread: wait until the first
    // hash is accepted (a `stopped` for an unknown peer adds nobody).
    let url = format!("http://127.0.0.1:{port}/announce");
    let mut probe = params(hashes[0].0[0], 0xee, 1, 0, AnnounceEvent::Stopped);
    probe.info_hash = hashes[0];
    while announce(&url, &probe, &fast_config()).is_err() {
        assert!(
            Instant::now() < deadline,
            "opentracker never accepted the whitelist"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ot
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Two clients see each other, scrape counts are right, `stopped` removes.
fn swarm_scenario(url: &str, hash: u8) {
    let cfg = fast_config();
    let a = params(hash, 0xa1, 7101, 1000, AnnounceEvent::Started);
    let b = params(hash, 0xb2, 7102, 0, AnnounceEvent::Started);
    announce(url, &a, &cfg).unwrap();
    let rb = announce(url, &b, &cfg).unwrap();
    assert!(
        rb.peers.contains(&addr(7101)),
        "{url}: b got {:?}",
        rb.peers
    );
    let mut a2 = a.clone();
    a2.event = AnnounceEvent::None;
    let ra = announce(url, &a2, &cfg).unwrap();
    assert!(
        ra.peers.contains(&addr(7102)),
        "{url}: a got {:?}",
        ra.peers
    );
    assert_eq!((ra.complete, ra.incomplete), (Some(1), Some(1)));

    let h = InfoHash([hash; 20]);
    let s = scrape(url, &[h], &cfg).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].1.complete, s[0].1.incomplete), (1, 1), "{url}: {s:?}");

    let mut stop_b = b.clone();
    stop_b.event = AnnounceEvent::Stopped;
    announce(url, &stop_b, &cfg).unwrap();
    let ra = announce(url, &a2, &cfg).unwrap();
    assert!(
        !ra.peers.contains(&addr(7102)),
        "{url}: stopped peer still listed"
    );
    let s = scrape(url, &[h], &cfg).unwrap();
    assert_eq!(
        s[0].1,
        ScrapeStats {
            complete: 0,
            downloaded: s[0].1.downloaded,
            incomplete: 1
        }
    );
}

#[test]
fn opentracker_http_and_udp() {
    if !have_tool("opentracker") {
        return;
    }
    let ot = start(&[InfoHash([0x11; 20]), InfoHash([0x22; 20])]);
    swarm_scenario(&format!("http://127.0.0.1:{}/announce", ot.port), 0x11);
    swarm_scenario(&format!("udp://127.0.0.1:{}/announce", ot.port), 0x22);
    // A torrent not on the whitelist is refused with a typed failure.
    let e = announce(
        &format!("http://127.0.0.1:{}/announce", ot.port),
        &params(0x33, 1, 1, 1, AnnounceEvent::Started),
        &fast_config(),
    );
    assert!(
        matches!(e, Err(bittern_tracker::Error::Failure(_))),
        "{e:?}"
    );
}
