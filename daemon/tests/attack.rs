//! Issue 25, attacks on the RPC through the gate: password brute force,
//! CSRF without a session id, a foreign Host header, JSON nested 100,000
//! deep. (Bodies of 1 GiB and 1,000 silent connections meet the real
//! socket server: `server.rs` and the cli's `daemon_attack.rs`.)

use std::net::IpAddr;
use std::time::Duration;

use bittern_daemon::{Access, Gate};
use serde_json::Value;

use crate::util::*;

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        data_encoding::BASE64.encode(format!("{user}:{pass}").as_bytes())
    )
}

fn with_password() -> Harness {
    Harness::new(Access {
        credentials: Some(("u".into(), "right".into())),
        ..Access::default()
    })
}

/// The status of a session-get with these credentials, from `peer`.
fn login(h: &mut Harness, peer: [u8; 4], pass: &str) -> u16 {
    h.peer = IpAddr::from(peer);
    let auth = basic("u", pass);
    let id = h.gate.session_id();
    h.raw(
        "POST",
        "/transmission/rpc",
        &[
            ("Host", "127.0.0.1:9091"),
            ("Authorization", &auth),
            ("X-Transmission-Session-Id", &id),
        ],
        br#"{"method":"session-get"}"#,
    )
    .status
}

#[test]
fn password_brute_force_is_locked_out() {
    let mut h = with_password();
    let attacker = [127, 0, 0, 2];
    for i in 0..bittern_daemon::gate::MAX_AUTH_FAILURES {
        assert_eq!(login(&mut h, attacker, &format!("guess{i}")), 401);
    }
    // Locked out: even the right password is refused now.
    assert_eq!(login(&mut h, attacker, "right"), 403);
    assert_eq!(login(&mut h, attacker, "guess"), 403);
    // Another address is not.
    assert_eq!(login(&mut h, [127, 0, 0, 3], "right"), 200);
    // A prompt without credentials does not count as a failure.
    h.peer = IpAddr::from([127, 0, 0, 4]);
    for _ in 0..50 {
        let r = h.raw("GET", "/transmission/rpc", &[("Host", "127.0.0.1")], b"");
        assert_eq!(r.status, 401);
    }
    assert_eq!(login(&mut h, [127, 0, 0, 4], "right"), 200);
}

#[test]
fn a_lockout_ends_and_a_success_resets_the_count() {
    let mut h = with_password();
    let rpc = h.rpc.clone();
    h.gate = Gate::with_lifetime(
        rpc,
        Access {
            credentials: Some(("u".into(), "right".into())),
            ..Access::default()
        },
        Duration::from_secs(3600),
    )
    .with_lockout(3, Duration::from_millis(300));
    let ip = [127, 0, 0, 9];
    // Two failures, a success: the count starts again.
    for _ in 0..2 {
        assert_eq!(login(&mut h, ip, "x"), 401);
    }
    assert_eq!(login(&mut h, ip, "right"), 200);
    for _ in 0..2 {
        assert_eq!(login(&mut h, ip, "x"), 401);
    }
    assert_eq!(login(&mut h, ip, "right"), 200);
    for _ in 0..3 {
        assert_eq!(login(&mut h, ip, "x"), 401);
    }
    assert_eq!(login(&mut h, ip, "right"), 403);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(login(&mut h, ip, "right"), 200);
}

#[test]
fn csrf_without_the_session_id_is_refused() {
    let h = Harness::new(Access::default());
    let body = br#"{"method":"torrent-add","arguments":{"filename":"/etc/passwd"}}"#;
    for headers in [
        vec![("Host", "127.0.0.1:9091")],
        vec![
            ("Host", "127.0.0.1:9091"),
            ("X-Transmission-Session-Id", "forged"),
        ],
        vec![
            ("Host", "127.0.0.1:9091"),
            ("Content-Type", "text/plain"),
            ("Origin", "http://evil.example"),
        ],
    ] {
        let r = h.raw("POST", "/transmission/rpc", &headers, body);
        assert_eq!(r.status, 409, "{headers:?}");
        assert!(!String::from_utf8_lossy(&r.body).contains("success"));
    }
    assert_eq!(h.fake.state.lock().starts, 0, "nothing was added");
}

#[test]
fn a_foreign_host_header_is_refused() {
    let h = Harness::new(Access {
        host_whitelist: vec!["nas.lan".into()],
        ..Access::default()
    });
    let id = h.gate.session_id();
    let status = |host: &str| {
        h.raw(
            "POST",
            "/transmission/rpc",
            &[("Host", host), ("X-Transmission-Session-Id", &id)],
            br#"{"method":"session-get"}"#,
        )
        .status
    };
    for bad in [
        "evil.example",
        "evil.example:9091",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "nas.lan.evil.example",
    ] {
        assert_eq!(status(bad), 421, "{bad}");
    }
    for good in ["127.0.0.1:9091", "localhost", "[::1]:9091", "NAS.lan:9091"] {
        assert_eq!(status(good), 200, "{good}");
    }
    let m = h.raw("GET", "/metrics", &[("Host", "evil.example")], b"");
    assert_eq!(m.status, 421, "metrics too");
}

#[test]
fn json_nested_100000_deep_is_refused_without_overflow() {
    let h = Harness::new(Access::default());
    let depth = 100_000;
    let arrays = "[".repeat(depth) + &"]".repeat(depth);
    let objects = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
    let in_arguments = format!(r#"{{"method":"torrent-get","arguments":{{"fields":{arrays}}}}}"#);
    for body in [arrays.clone(), objects, in_arguments] {
        let id = h.gate.session_id();
        let r = h.raw(
            "POST",
            "/transmission/rpc",
            &[("Host", "127.0.0.1"), ("X-Transmission-Session-Id", &id)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_ne!(v["result"], "success", "{v}");
    }
    // Still answering.
    let v = h.post(&serde_json::json!({"method": "session-get"}));
    assert_eq!(v["result"], "success");
}
