//! The HTTP client against scripted fake trackers.

use std::net::SocketAddr;
use std::time::Duration;

use bittern_tracker::{announce, scrape, AnnounceEvent, Error, ScrapeStats};
use bittern_wire::InfoHash;

use crate::fake::{good_http_body, FakeHttp, HttpReply};
use crate::util::{closed_tcp_port, fast_config, params, within};

const QUICK: Duration = Duration::from_secs(3);

fn peers() -> Vec<SocketAddr> {
    vec![
        "127.0.0.1:7001".parse().unwrap(),
        "127.0.0.2:7002".parse().unwrap(),
    ]
}

#[test]
fn announces_and_parses_compact_peers() {
    let t = FakeHttp::start(|_, _| HttpReply::Body(good_http_body(&peers())));
    let r = announce(
        &t.url(),
        &params(0xab, 1, 6881, 99, AnnounceEvent::Started),
        &fast_config(),
    )
    .unwrap();
    assert_eq!(r.peers, peers());
    assert_eq!(r.interval, Duration::from_secs(1800));
    assert_eq!((r.complete, r.incomplete), (Some(2), Some(4)));
    let line = &t.requests()[0];
    assert!(line.starts_with("GET /announce?info_hash=%AB%AB"), "{line}");
    for part in [
        "port=6881",
        "left=99",
        "event=started",
        "compact=1",
        "numwant=50",
    ] {
        assert!(line.contains(part), "{part} missing in {line}");
    }
    assert!(line.contains(&format!("peer_id={}", "%01".repeat(20))));
}

#[test]
fn decodes_gzip_and_follows_redirects() {
    let target = FakeHttp::start(|_, _| HttpReply::Gzip(good_http_body(&peers())));
    let url = target.url();
    let redirector = FakeHttp::start(move |_, line| {
        let query = line.split_once('?').map(|(_, q)| q).unwrap_or("");
        let query = query.split(' ').next().unwrap_or("");
        HttpReply::Redirect(format!("{url}?{query}"))
    });
    let r = announce(
        &redirector.url(),
        &params(1, 1, 1, 0, AnnounceEvent::None),
        &fast_config(),
    )
    .unwrap();
    assert_eq!(r.peers, peers());
    assert_eq!(redirector.requests().len(), 1);
    assert_eq!(target.requests().len(), 1);
}

#[test]
fn failure_reason_is_a_typed_failure() {
    let t = FakeHttp::start(|n, _| match n {
        0 => HttpReply::Body(b"d14:failure reason12:unregisterede".to_vec()),
        _ => HttpReply::Status(403, b"d14:failure reason6:bannede".to_vec()),
    });
    let p = params(1, 1, 1, 0, AnnounceEvent::None);
    assert!(
        matches!(announce(&t.url(), &p, &fast_config()), Err(Error::Failure(f)) if f == "unregistered")
    );
    assert!(
        matches!(announce(&t.url(), &p, &fast_config()), Err(Error::Failure(f)) if f == "banned")
    );
}

#[test]
fn http_error_status() {
    let t = FakeHttp::start(|_, _| HttpReply::Status(500, b"<html>down</html>".to_vec()));
    let e = within(QUICK, || {
        announce(
            &t.url(),
            &params(1, 1, 1, 0, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::HttpStatus { status: 500 })), "{e:?}");
}

#[test]
fn garbage_bencode() {
    let t = FakeHttp::start(|_, _| HttpReply::Body(b"d8:intervali18".to_vec()));
    let e = within(QUICK, || {
        announce(
            &t.url(),
            &params(1, 1, 1, 0, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::Bencode(_))), "{e:?}");
    let t = FakeHttp::start(|_, _| HttpReply::Body(b"<html>hello</html>".to_vec()));
    let e = announce(
        &t.url(),
        &params(1, 1, 1, 0, AnnounceEvent::None),
        &fast_config(),
    );
    assert!(matches!(e, Err(Error::Bencode(_))), "{e:?}");
}

#[test]
fn hundred_megabyte_reply_is_cut_off() {
    for content_length in [true, false] {
        let t = FakeHttp::start(move |_, _| HttpReply::Huge { content_length });
        let e = within(QUICK, || {
            announce(
                &t.url(),
                &params(1, 1, 1, 0, AnnounceEvent::None),
                &fast_config(),
            )
        });
        assert!(matches!(e, Err(Error::TooLarge { limit: 65536 })), "{e:?}");
        // The client stopped reading long before 100 MB were sent.
        std::thread::sleep(Duration::from_millis(50));
        let sent = t.huge_sent.load(std::sync::atomic::Ordering::SeqCst);
        eprintln!("huge reply (content-length: {content_length}): server wrote {sent} bytes before the client hung up");
        assert!(sent < 32 << 20, "server managed to send {sent} bytes");
    }
}

#[test]
fn silent_tracker_times_out() {
    let t = FakeHttp::start(|_, _| HttpReply::Silence);
    let e = within(QUICK, || {
        announce(
            &t.url(),
            &params(1, 1, 1, 0, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::Timeout)), "{e:?}");
}

#[test]
fn closed_port_is_a_connect_error() {
    let url = format!("http://127.0.0.1:{}/announce", closed_tcp_port());
    let e = within(QUICK, || {
        announce(
            &url,
            &params(1, 1, 1, 0, AnnounceEvent::None),
            &fast_config(),
        )
    });
    assert!(matches!(e, Err(Error::Connect)), "{e:?}");
}

#[test]
fn unsupported_scheme() {
    let e = announce(
        "wss://127.0.0.1/announce",
        &params(1, 1, 1, 0, AnnounceEvent::None),
        &fast_config(),
    );
    assert!(matches!(e, Err(Error::UnsupportedScheme { .. })), "{e:?}");
}

#[test]
fn scrapes_over_http() {
    let body = format!(
        "d5:filesd20:{}d8:completei3e10:downloadedi9e10:incompletei1eeee",
        "\u{5}".repeat(20)
    );
    let t = FakeHttp::start(move |_, _| HttpReply::Body(body.clone().into_bytes()));
    let got = scrape(&t.url(), &[InfoHash([5; 20])], &fast_config()).unwrap();
    assert_eq!(
        got,
        vec![(
            InfoHash([5; 20]),
            ScrapeStats {
                complete: 3,
                downloaded: 9,
                incomplete: 1
            }
        )]
    );
    assert_eq!(
        t.requests()[0],
        format!("GET /scrape?info_hash={} HTTP/1.1", "%05".repeat(20))
    );
}

#[test]
fn https_trackers_speak_tls() {
    // A plain-HTTP server behind an https:// URL: the client must start a
    // TLS handshake (so the server never sees an HTTP request line) and fail
    // with a typed error, not talk plain text.
    let t = FakeHttp::start(|_, _| HttpReply::Body(good_http_body(&peers())));
    let url = t.url().replace("http://", "https://");
    let e = announce(
        &url,
        &params(1, 1, 1, 0, AnnounceEvent::None),
        &fast_config(),
    );
    assert!(e.is_err(), "{e:?}");
    assert!(!matches!(e, Err(Error::TlsUnsupported { .. })), "{e:?}");
    assert!(
        t.requests().is_empty(),
        "plain HTTP was sent: {:?}",
        t.requests()
    );
}
