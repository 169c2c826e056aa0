//! `port-test` answered from the session's own evidence; the blocklist's
//! settings, `blocklist-update` from a URL served on 127.0.0.1 by a
//! one-shot HTTP server in this process (hostile lines,
//! a redirect that is not followed), the list stored and reloaded, and
//! handed to the engine only while enabled; `pieces` and `trackerStats`
//! over the fake engine.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bittern_daemon::Access;
use serde_json::{json, Value};

use crate::util::{single, Fake, Harness};

/// Serves `replies` (status line and headers, body) to one request each
/// on 127.0.0.1; returns the URL.
fn serve(replies: Vec<(String, Vec<u8>)>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/list", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for (head, body) in replies {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    url
}

fn set(h: &Harness, args: Value) {
    h.ok(json!({"method": "session-set", "arguments": args}));
}

fn session(h: &Harness) -> Value {
    h.ok(json!({"method": "session-get", "arguments": {}}))
}

#[test]
fn blocklist_update_fetches_only_the_configured_url() {
    let h = Harness::new(Access::default());
    let s = session(&h);
    assert_eq!(
        (
            &s["blocklist-enabled"],
            &s["blocklist-url"],
            &s["blocklist-size"]
        ),
        (&json!(false), &json!(""), &json!(0)),
        "no default URL"
    );
    let r = h.post(&json!({"method": "blocklist-update"}));
    assert!(r["result"].as_str().unwrap().contains("not set"), "{r}");
    set(&h, json!({"blocklist-url": "ftp://127.0.0.1/x"}));
    let r = h.post(&json!({"method": "blocklist-update"}));
    assert!(r["result"].as_str().unwrap().contains("not an http"), "{r}");

    let list = "# hostile and mixed lines\n\
                blocked host:127.0.0.2-127.0.0.2\n\
                10.1.0.0 - 10.1.0.255 , 000 , emule style\n\
                10.9.0.0 - 10.9.0.255 , 255 , allowed level\n\
                \u{0}\u{1}garbage\n\
                v6:fd00::1-fd00::ff\n";
    let url = serve(vec![
        ("HTTP/1.1 200 OK".into(), list.as_bytes().to_vec()),
        (
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere".into(),
            Vec::new(),
        ),
        ("HTTP/1.1 200 OK".into(), b"nothing useful\n".to_vec()),
    ]);
    set(&h, json!({"blocklist-url": url, "blocklist-enabled": true}));
    let r = h.ok(json!({"method": "blocklist-update"}));
    assert_eq!(
        r["blocklist-size"], 3,
        "three ranges; the allowed and garbage lines skipped"
    );
    assert_eq!(session(&h)["blocklist-size"], 3);
    let stored = std::fs::read_to_string(h.data().join("config/blocklist.txt")).unwrap();
    assert_eq!(
        stored,
        "10.1.0.0-10.1.0.255\n127.0.0.2-127.0.0.2\nfd00::1-fd00::ff\n"
    );
    let f = h
        .fake
        .state
        .lock()
        .ip_filter
        .clone()
        .expect("handed to the engine");
    assert!(f.contains("127.0.0.2".parse().unwrap()) && !f.contains("127.0.0.1".parse().unwrap()));
    assert!(f.contains("fd00::80".parse().unwrap()));

    // A redirect is not followed (it could lead anywhere); a body with no
    // range is refused; either way the stored list stays.
    let r = h.post(&json!({"method": "blocklist-update"}));
    assert!(r["result"].as_str().unwrap().contains("302"), "{r}");
    let r = h.post(&json!({"method": "blocklist-update"}));
    assert!(
        r["result"].as_str().unwrap().contains("no address ranges"),
        "{r}"
    );
    assert_eq!(session(&h)["blocklist-size"], 3);

    // Disabled: the engine gets an empty filter; enabled again: the list.
    set(&h, json!({"blocklist-enabled": false}));
    assert!(h.fake.state.lock().ip_filter.as_ref().unwrap().is_empty());
    set(&h, json!({"blocklist-enabled": true}));
    assert_eq!(h.fake.state.lock().ip_filter.as_ref().unwrap().len(), 3);

    // A restart (a new daemon on the same config dir) brings the list
    // back and applies it at once.
    let Harness { dir, .. } = h;
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    assert_eq!(session(&h)["blocklist-size"], 3);
    assert_eq!(session(&h)["blocklist-enabled"], true);
    assert_eq!(h.fake.state.lock().ip_filter.as_ref().unwrap().len(), 3);
}

#[test]
fn port_test_answers_from_incoming_peers_only() {
    let h = Harness::new(Access::default());
    let open = |h: &Harness, extra: Value| {
        h.ok(json!({"method": "port-test", "arguments": extra}))["port-is-open"].clone()
    };
    assert_eq!(open(&h, json!({})), false, "no peer came in");
    let incoming = |secs: u64, from: &str| bittern_engine::Incoming {
        at: Instant::now() - Duration::from_secs(secs),
        from: from.parse().unwrap(),
        utp: false,
    };
    // The fake listens on 127.0.0.1 only: a loopback peer is evidence.
    h.fake.state.lock().incoming = Some(incoming(5, "127.0.0.1:40000"));
    assert_eq!(open(&h, json!({})), true);
    let r = h.ok(json!({"method": "port-test", "arguments": {"ip_protocol": "ipv6"}}));
    assert_eq!(
        (&r["port-is-open"], &r["ip_protocol"]),
        (&json!(false), &json!("ipv6"))
    );
    assert!(r["bittern-last-incoming"].as_i64().unwrap() >= 5);
    // Too long ago.
    h.fake.state.lock().incoming = Some(incoming(31 * 60, "127.0.0.1:40000"));
    assert_eq!(open(&h, json!({})), false);

    use bittern_daemon::rpc::port_is_open;
    let day = Duration::from_secs(60);
    let lo = "127.0.0.1".parse().unwrap();
    let far = "192.0.2.7".parse().unwrap();
    assert!(
        !port_is_open(Some((day, lo)), false, None),
        "a public listener: loopback proves nothing"
    );
    assert!(port_is_open(Some((day, far)), false, None));
    assert!(port_is_open(Some((day, far)), false, Some("ipv4")));
    assert!(!port_is_open(None, true, None));
}

#[test]
fn pieces_and_tracker_stats_as_transmission_sends_them() {
    let fake = Fake::default();
    let bytes = single();
    let meta = bittern_wire::Metainfo::from_bytes(&bytes).unwrap();
    fake.complete.lock().push(meta.info_hash);
    let h = Harness::in_dir(tempfile::tempdir().unwrap(), Access::default(), fake);
    let id = h.add(&bytes, h.data())["torrent-added"]["id"].clone();
    let t = h.ok(json!({"method": "torrent-get",
                        "arguments": {"ids": [id], "fields": ["pieces", "pieceCount", "trackerStats"]}}));
    let t = &t["torrents"][0];
    // 92 pieces, all had: 11 bytes of ones, then 0xf0 (spare bits clear).
    let mut want = vec![0xffu8; 11];
    want.push(0xf0);
    assert_eq!(t["pieceCount"], 92);
    assert_eq!(t["pieces"], data_encoding::BASE64.encode(&want));
    let ts = &t["trackerStats"][0];
    assert_eq!(ts["announce"], "http://127.0.0.1:6969/announce");
    assert_eq!(ts["host"], "http://127.0.0.1:6969");
    assert_eq!(ts["scrape"], "http://127.0.0.1:6969/scrape");
    // The keys and types transmission-remote 3.00 insists on for -it.
    for k in [
        "downloadCount",
        "id",
        "announceState",
        "scrapeState",
        "lastAnnouncePeerCount",
        "lastAnnounceStartTime",
        "lastAnnounceTime",
        "lastScrapeStartTime",
        "lastScrapeTime",
        "leecherCount",
        "nextAnnounceTime",
        "nextScrapeTime",
        "seederCount",
        "tier",
    ] {
        assert!(ts[k].is_i64(), "{k} is an integer: {ts}");
    }
    for k in [
        "hasAnnounced",
        "hasScraped",
        "isBackup",
        "lastAnnounceSucceeded",
        "lastAnnounceTimedOut",
        "lastScrapeSucceeded",
        "lastScrapeTimedOut",
    ] {
        assert!(ts[k].is_boolean(), "{k} is a boolean: {ts}");
    }
    for k in ["host", "lastAnnounceResult", "lastScrapeResult", "sitename"] {
        assert!(ts[k].is_string(), "{k} is a string: {ts}");
    }
}
