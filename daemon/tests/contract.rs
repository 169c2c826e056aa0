//! The transcripts of `shared/reference/transmission-rpc-transcripts.md`
//! (a real transmission-daemon 3.00 with transmission-remote 3.00, curl,
//! the Python transmission-rpc package, and Sonarr's request sequence)
//! replayed against the gate over a fake engine: the same requests must get
//! replies of the same shape, status codes, headers and JSON types.

use bittern_daemon::Access;
use serde_json::{json, Value};

use crate::util::*;

const SESSION: &str = "x-transmission-session-id";

#[test]
fn handshake_409_for_every_method_and_both_paths() {
    let h = Harness::new(Access::default());
    for (method, path) in [
        ("GET", "/transmission/rpc"),
        ("POST", "/transmission/rpc"),
        ("POST", "/transmission/rpc/"),
        ("OPTIONS", "/transmission/rpc"),
    ] {
        let r = h.raw(method, path, &[("Host", "127.0.0.1:9091")], b"");
        assert_eq!(r.status, 409, "{method} {path}");
        let id = r.header(SESSION).expect("409 carries the session id");
        assert_eq!(id.len(), 48);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(id, h.gate.session_id());
        assert!(String::from_utf8_lossy(&r.body).contains("409: Conflict"));
    }
    // A wrong id is refused too; the right one works on both paths.
    let r = h.raw("POST", "/transmission/rpc", &[(SESSION, "0")], b"{}");
    assert_eq!(r.status, 409);
    let id = h.gate.session_id();
    for path in ["/transmission/rpc", "/transmission/rpc/"] {
        let r = h.raw(
            "POST",
            path,
            &[(SESSION, &id)],
            br#"{"method":"session-get"}"#,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header(SESSION), Some(id.as_str()));
    }
    // GET with a valid id: the RPC takes POST.
    assert_eq!(
        h.raw("GET", "/transmission/rpc", &[(SESSION, &id)], b"")
            .status,
        405
    );
}

#[test]
fn session_id_rotates() {
    let h = Harness::new(Access::default());
    let gate = bittern_daemon::Gate::with_lifetime(
        std::sync::Arc::new(bittern_daemon::Rpc::new(
            bittern_daemon::Torrents::open(
                Fake::default(),
                bittern_daemon::Store::open(&h.data().join("c2")).unwrap(),
            )
            .unwrap(),
        )),
        Access::default(),
        std::time::Duration::from_millis(50),
    );
    let a = gate.session_id();
    std::thread::sleep(std::time::Duration::from_millis(80));
    let b = gate.session_id();
    assert_ne!(a, b, "an expired id is replaced");
    assert_eq!(gate.session_id(), b);
}

#[test]
fn routing_redirects_and_404s() {
    let h = Harness::new(Access::default());
    assert_eq!(h.raw("GET", "/", &[], b"").status, 200, "the web page");
    let r = h.raw("GET", "/index.php", &[], b"");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/transmission/web/"));
    assert_eq!(h.raw("GET", "/transmission/web/", &[], b"").status, 200);
    assert_eq!(h.raw("GET", "/transmission/other", &[], b"").status, 404);
}

#[test]
fn basic_auth_is_checked_before_the_session_id() {
    let h = Harness::new(Access {
        credentials: Some(("u".into(), "p".into())),
        ..Access::default()
    });
    let good = format!("Basic {}", b64(b"u:p"));
    let bad = format!("Basic {}", b64(b"u:wrong"));
    let r = h.raw(
        "POST",
        "/transmission/rpc",
        &[],
        br#"{"method":"session-get"}"#,
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Transmission\"")
    );
    assert_eq!(
        h.raw("POST", "/transmission/rpc", &[("Authorization", &bad)], b"")
            .status,
        401
    );
    // The web page needs auth too.
    assert_eq!(h.raw("GET", "/transmission/web/", &[], b"").status, 401);
    let r = h.raw(
        "POST",
        "/transmission/rpc",
        &[("Authorization", &good)],
        b"",
    );
    assert_eq!(r.status, 409, "auth passes, then the handshake");
    // With auth on, the Host check is skipped (as in 3.00).
    let r = h.raw(
        "POST",
        "/transmission/rpc",
        &[("Authorization", &good), ("Host", "evil.example")],
        b"",
    );
    assert_eq!(r.status, 409);
    let id = h.gate.session_id();
    let r = h.raw(
        "POST",
        "/transmission/rpc",
        &[("Authorization", &good), (SESSION, &id)],
        br#"{"method":"session-get","arguments":{"fields":["version"]}}"#,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn host_header_is_checked_against_dns_rebinding_when_auth_is_off() {
    let h = Harness::new(Access {
        host_whitelist: vec!["*.lan".into()],
        ..Access::default()
    });
    for host in [
        "evil.example",
        "evil.example:9091",
        "127.0.0.1.evil.example",
    ] {
        let r = h.raw("POST", "/transmission/rpc", &[("Host", host)], b"");
        assert_eq!(r.status, 421, "{host}");
    }
    for host in [
        "127.0.0.1:9091",
        "localhost:9091",
        "LOCALHOST",
        "[::1]:9091",
        "box.lan:9091",
    ] {
        let r = h.raw("POST", "/transmission/rpc", &[("Host", host)], b"");
        assert_eq!(r.status, 409, "{host}");
    }
}

#[test]
fn client_address_whitelist() {
    let mut h = Harness::new(Access {
        whitelist: vec!["127.0.0.1".into(), "::1".into()],
        ..Access::default()
    });
    assert_eq!(h.raw("GET", "/transmission/rpc", &[], b"").status, 409);
    h.peer = "::1".parse().unwrap();
    assert_eq!(h.raw("GET", "/transmission/rpc", &[], b"").status, 409);
    h.peer = "::ffff:127.0.0.1".parse().unwrap();
    assert_eq!(h.raw("GET", "/transmission/rpc", &[], b"").status, 409);
    h.peer = "10.1.2.3".parse().unwrap();
    assert_eq!(h.raw("GET", "/transmission/rpc", &[], b"").status, 403);
}

#[test]
fn error_replies_match_transmission() {
    let h = Harness::new(Access::default());
    assert_eq!(
        h.post(&json!({"method": "bogus", "tag": 7})),
        json!({"arguments": {}, "result": "method name not recognized", "tag": 7})
    );
    let id = h.gate.session_id();
    let r = h.raw("POST", "/transmission/rpc", &[(SESSION, &id)], b"hello");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, json!({"arguments": {}, "result": "no method name"}));
    assert_eq!(
        h.post(&json!({"method": "torrent-get", "arguments": {}})),
        json!({"arguments": {"torrents": []}, "result": "no fields specified"})
    );
    for args in [
        json!({"metainfo": "aGVsbG8="}),
        json!({"metainfo": "not base64!"}),
        json!({"filename": "/nonexistent.torrent"}),
    ] {
        assert_eq!(
            h.post(&json!({"method": "torrent-add", "arguments": args})),
            json!({"arguments": {}, "result": "invalid or corrupt torrent file"})
        );
    }
    assert_eq!(
        h.post(&json!({"method": "free-space", "arguments": {"path": "tmp"}})),
        json!({"arguments": {}, "result": "directory path is not absolute"})
    );
    let r = h.ok(json!({"method": "free-space", "arguments": {"path": "/tmp"}}));
    assert_eq!(r["path"], "/tmp");
    int(&r, "size-bytes");
    int(&r, "total_size");
    // Never reaching outside: port-test answers from what the session
    // knows (nothing yet: closed); blocklist-update has no URL to fetch.
    let r = h.ok(json!({"method": "port-test"}));
    assert_eq!(r["port-is-open"], false);
    let r = h.post(&json!({"method": "blocklist-update"}));
    assert!(r["result"]
        .as_str()
        .unwrap()
        .contains("blocklist-url is not set"));
    // Deep JSON is refused by the parser's depth limit, not a crash.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = h.raw(
        "POST",
        "/transmission/rpc",
        &[(SESSION, &id)],
        deep.as_bytes(),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn transmission_remote_add_list_info_files() {
    let h = Harness::new(Access::default());
    let dl = h.data().join("dl");
    let single = single();
    let hash = bittern_wire::Metainfo::from_bytes(&single)
        .unwrap()
        .info_hash
        .to_hex();
    // -a single.torrent
    let r = h.post(
        &json!({"arguments": {"metainfo": b64(&single), "download-dir": dl},
        "method": "torrent-add", "tag": 8}),
    );
    assert_eq!(
        r,
        json!({"arguments": {"torrent-added": {"hashString": hash, "id": 1, "name": "sample.bin"}},
               "result": "success", "tag": 8})
    );
    assert!(dl.is_dir(), "download-dir is created");
    // -l
    let r = h.ok(
        json!({"arguments": {"fields": ["error", "errorString", "eta", "id",
        "isFinished", "leftUntilDone", "name", "peersGettingFromUs", "peersSendingToUs",
        "rateDownload", "rateUpload", "sizeWhenDone", "status", "uploadRatio"]},
        "method": "torrent-get", "tag": 4}),
    );
    let t = &r["torrents"][0];
    for k in [
        "error",
        "eta",
        "id",
        "leftUntilDone",
        "peersGettingFromUs",
        "peersSendingToUs",
        "rateDownload",
        "rateUpload",
        "sizeWhenDone",
        "status",
    ] {
        int(t, k);
    }
    assert_eq!(t["errorString"], "");
    assert_eq!(t["eta"], -1);
    assert_eq!(t["isFinished"], false);
    assert_eq!(t["leftUntilDone"], 3_000_000);
    assert_eq!(t["sizeWhenDone"], 3_000_000);
    assert_eq!(t["status"], 4, "downloading");
    assert_eq!(t["uploadRatio"], -1);
    assert_eq!(t.as_object().unwrap().len(), 14);
    // -t 1 -i
    let fields = [
        "activityDate",
        "addedDate",
        "bandwidthPriority",
        "comment",
        "corruptEver",
        "creator",
        "dateCreated",
        "desiredAvailable",
        "doneDate",
        "downloadDir",
        "downloadedEver",
        "downloadLimit",
        "downloadLimited",
        "error",
        "errorString",
        "eta",
        "hashString",
        "haveUnchecked",
        "haveValid",
        "honorsSessionLimits",
        "id",
        "isFinished",
        "isPrivate",
        "labels",
        "leftUntilDone",
        "magnetLink",
        "name",
        "peersConnected",
        "peersGettingFromUs",
        "peersSendingToUs",
        "peer-limit",
        "pieceCount",
        "pieceSize",
        "rateDownload",
        "rateUpload",
        "recheckProgress",
        "secondsDownloading",
        "secondsSeeding",
        "seedRatioMode",
        "seedRatioLimit",
        "sizeWhenDone",
        "startDate",
        "status",
        "totalSize",
        "uploadedEver",
        "uploadLimit",
        "uploadLimited",
        "webseeds",
        "webseedsSendingToUs",
    ];
    let r = h.ok(
        json!({"arguments": {"fields": fields.to_vec(), "ids": 1}, "method": "torrent-get",
        "tag": 2}),
    );
    let t = &r["torrents"][0];
    for f in fields {
        if f != "desiredAvailable" {
            assert!(t.get(f).is_some(), "-i field {f} missing");
        }
    }
    for k in [
        "activityDate",
        "addedDate",
        "corruptEver",
        "dateCreated",
        "doneDate",
        "downloadedEver",
        "downloadLimit",
        "haveValid",
        "haveUnchecked",
        "peer-limit",
        "pieceCount",
        "pieceSize",
        "secondsDownloading",
        "startDate",
        "totalSize",
        "uploadedEver",
        "uploadLimit",
    ] {
        int(t, k);
    }
    assert_eq!(t["comment"], "bittern test");
    assert_eq!(t["hashString"], hash);
    assert_eq!(t["pieceCount"], 92);
    assert_eq!(t["pieceSize"], 32768);
    assert_eq!(t["downloadDir"], dl.to_str().unwrap());
    assert!(t["magnetLink"]
        .as_str()
        .unwrap()
        .starts_with(&format!("magnet:?xt=urn:btih:{hash}")));
    assert!(int(t, "addedDate") > 1_700_000_000);
    // -t 1 -f
    let r = h.ok(
        json!({"arguments": {"fields": ["files", "name", "priorities", "wanted"],
        "ids": 1}, "method": "torrent-get", "tag": 3}),
    );
    assert_eq!(
        r["torrents"][0],
        json!({"files": [{"bytesCompleted": 0, "length": 3_000_000, "name": "sample.bin"}],
               "name": "sample.bin", "priorities": [0], "wanted": [1]})
    );
}

#[test]
fn start_stop_all_duplicate_and_start_paused() {
    let h = Harness::new(Access::default());
    let dl = h.data().join("dl");
    h.add(&single(), &dl);
    let status = |h: &Harness| -> Vec<i64> {
        let r = h.ok(json!({"method": "torrent-get", "arguments": {"fields": ["status"]}}));
        r["torrents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(status(&h), [4]);
    // --start-paused, then -a multi.torrent -w DIR: added stopped.
    h.ok(json!({"arguments": {"start-added-torrents": false}, "method": "session-set"}));
    let r = h.add(&multi(), &h.data().join("dl2"));
    assert_eq!(r["torrent-added"]["id"], 2);
    assert_eq!(r["torrent-added"]["name"], "multi");
    assert_eq!(status(&h), [4, 0]);
    // -t all -S / -s: no ids at all means every torrent.
    h.ok(json!({"arguments": {}, "method": "torrent-stop"}));
    assert_eq!(status(&h), [0, 0]);
    h.ok(json!({"arguments": {}, "method": "torrent-start"}));
    assert_eq!(status(&h), [4, 4]);
    // -a single.torrent -S: a duplicate.
    let r = h.ok(
        json!({"arguments": {"metainfo": b64(&single()), "paused": true},
        "method": "torrent-add", "tag": 8}),
    );
    assert_eq!(r["torrent-duplicate"]["id"], 1);
    assert_eq!(r["torrent-duplicate"]["name"], "sample.bin");
    assert_eq!(status(&h), [4, 4], "a duplicate changes nothing");
    // -t 2 -r
    h.ok(json!({"arguments": {"delete-local-data": false, "ids": 2}, "method": "torrent-remove"}));
    assert_eq!(status(&h), [4]);
    assert_eq!(h.fake.state.lock().running.len(), 1);
}

#[test]
fn session_get_set_stats() {
    let h = Harness::new(Access::default());
    let s = h.ok(json!({"method": "session-get", "tag": 0}));
    // Sonarr's check: a dotted number >= 4.0 at the start of `version`.
    let v = s["version"].as_str().unwrap();
    let num: Vec<u32> = v
        .split_whitespace()
        .next()
        .unwrap()
        .split('.')
        .take(2)
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(num >= vec![4, 0], "{v}");
    assert_eq!(s["rpc-version"], 17);
    int(&s, "rpc-version-minimum");
    assert_eq!(s["session-id"], h.gate.session_id().as_str());
    for k in [
        "alt-speed-down",
        "alt-speed-time-begin",
        "alt-speed-time-day",
        "blocklist-size",
        "cache-size-mb",
        "download-dir-free-space",
        "download-queue-size",
        "idle-seeding-limit",
        "peer-limit-global",
        "peer-limit-per-torrent",
        "peer-port",
        "queue-stalled-minutes",
        "seed-queue-size",
        "speed-limit-down",
        "speed-limit-up",
    ] {
        int(&s, k);
    }
    for k in [
        "alt-speed-enabled",
        "dht-enabled",
        "idle-seeding-limit-enabled",
        "pex-enabled",
        "seedRatioLimited",
        "speed-limit-down-enabled",
        "start-added-torrents",
        "utp-enabled",
    ] {
        assert!(s[k].is_boolean(), "{k}");
    }
    assert!(s["seedRatioLimit"].is_number());
    assert!(s["download-dir"].is_string() && s["config-dir"].is_string());
    assert_eq!(s["units"]["speed-bytes"], 1000);
    // fields
    let s = h.ok(
        json!({"method": "session-get", "arguments": {"fields": ["version",
        "rpc-version", "download-dir"]}}),
    );
    assert_eq!(s.as_object().unwrap().len(), 3);
    // -d 200 -U -as
    h.ok(
        json!({"arguments": {"alt-speed-enabled": true, "speed-limit-down": 200,
        "speed-limit-down-enabled": true, "speed-limit-up-enabled": false},
        "method": "session-set"}),
    );
    let s = h.ok(json!({"method": "session-get"}));
    assert_eq!(s["speed-limit-down"], 200);
    assert_eq!(s["speed-limit-down-enabled"], true);
    assert_eq!(s["alt-speed-enabled"], true);
    let bad = h.post(&json!({"arguments": {"speed-limit-down": "x"}, "method": "session-set"}));
    assert_ne!(bad["result"], "success");
    // The peer network: Transmission's defaults, stored by session-set,
    // a bad value refused whole.
    let s = h.ok(json!({"method": "session-get"}));
    assert_eq!(
        (
            &s["dht-enabled"],
            &s["utp-enabled"],
            &s["pex-enabled"],
            &s["lpd-enabled"]
        ),
        (&json!(true), &json!(true), &json!(true), &json!(false))
    );
    assert_eq!(s["encryption"], "preferred");
    assert_eq!(s["dht-bootstrap"], json!([]));
    h.ok(
        json!({"method": "session-set", "arguments": {"dht-enabled": false,
        "encryption": "required", "dht-bootstrap": ["127.0.0.1:6881"]}}),
    );
    let bad = h.post(
        &json!({"method": "session-set", "arguments": {"pex-enabled": false,
        "encryption": "always"}}),
    );
    assert_ne!(bad["result"], "success");
    let s = h.ok(json!({"method": "session-get"}));
    assert_eq!(
        (
            &s["dht-enabled"],
            &s["pex-enabled"],
            &s["encryption"],
            &s["dht-bootstrap"]
        ),
        (
            &json!(false),
            &json!(true),
            &json!("required"),
            &json!(["127.0.0.1:6881"])
        )
    );
    // -st
    h.add(&single(), &h.data().join("dl"));
    let st = h.ok(json!({"method": "session-stats", "tag": 1}));
    for k in [
        "activeTorrentCount",
        "pausedTorrentCount",
        "torrentCount",
        "downloadSpeed",
        "uploadSpeed",
    ] {
        int(&st, k);
    }
    assert_eq!(st["torrentCount"], 1);
    assert_eq!(st["activeTorrentCount"], 1);
    for part in ["current-stats", "cumulative-stats"] {
        for k in [
            "uploadedBytes",
            "downloadedBytes",
            "filesAdded",
            "secondsActive",
            "sessionCount",
        ] {
            int(&st[part], k);
        }
    }
    assert_eq!(st["current-stats"]["filesAdded"], 1);
    // session-close is acknowledged.
    h.ok(json!({"method": "session-close"}));
}

#[test]
fn ids_hash_recently_active_table_and_queue() {
    let h = Harness::new(Access::default());
    let a = h.add(&single(), &h.data().join("dl"))["torrent-added"].clone();
    let b = h.add(&multi(), &h.data().join("dl"))["torrent-added"].clone();
    let hash_a = a["hashString"].as_str().unwrap();
    let r = h.ok(
        json!({"method": "torrent-get", "arguments": {"fields": ["id", "name"],
        "ids": hash_a.to_uppercase()}}),
    );
    assert_eq!(r["torrents"], json!([{"id": 1, "name": "sample.bin"}]));
    let r = h.ok(
        json!({"method": "torrent-get", "arguments": {"fields": ["id", "name"],
        "format": "table"}}),
    );
    assert_eq!(
        r["torrents"],
        json!([["id", "name"], [1, "sample.bin"], [2, "multi"]])
    );
    // queue-move-top of the second, then its queuePosition is 0.
    h.ok(json!({"method": "queue-move-top", "arguments": {"ids": [2]}}));
    let r = h.ok(
        json!({"method": "torrent-get", "arguments": {"fields": ["id",
        "queuePosition"]}}),
    );
    assert_eq!(
        r["torrents"],
        json!([{"id": 2, "queuePosition": 0}, {"id": 1, "queuePosition": 1}])
    );
    h.ok(json!({"method": "queue-move-down", "arguments": {"ids": [2]}}));
    h.ok(json!({"method": "torrent-set", "arguments": {"ids": [1], "queuePosition": 1}}));
    let r = h.ok(json!({"method": "torrent-get", "arguments": {"fields": ["id"]}}));
    assert_eq!(r["torrents"], json!([{"id": 2}, {"id": 1}]));
    // recently-active: both were just added; a removed one is listed.
    h.ok(json!({"method": "torrent-remove", "arguments": {"ids": [b["hashString"]]}}));
    let r = h.ok(
        json!({"method": "torrent-get", "arguments": {"fields": ["id"],
        "ids": "recently-active"}}),
    );
    assert_eq!(r, json!({"removed": [2], "torrents": [{"id": 1}]}));
}

#[test]
fn torrent_set_limits_labels_files() {
    let h = Harness::new(Access::default());
    h.add(&multi(), &h.data().join("dl"));
    let starts = h.fake.state.lock().starts;
    // -t 3 -d 100 -u 50 -sr 1.5
    h.ok(
        json!({"arguments": {"downloadLimit": 100, "downloadLimited": true, "ids": 1,
        "seedRatioLimit": 1.5, "seedRatioMode": 1, "uploadLimit": 50, "uploadLimited": true},
        "method": "torrent-set"}),
    );
    {
        let s = h.fake.state.lock();
        assert_eq!(s.starts, starts, "limits and seed ratio need no restart");
        let (start, _) = s.running.values().next().unwrap();
        assert_eq!(
            start.options.seed_goal,
            bittern_engine::SeedGoal::Forever,
            "the daemon enforces seed limits itself"
        );
        assert_eq!(
            s.limits.get(&start.metainfo().unwrap().info_hash),
            Some(&(Some(100_000), Some(50_000))),
            "limits go to the running torrent"
        );
    }
    // A limit alone changes live: no restart.
    h.ok(json!({"arguments": {"ids": 1, "downloadLimit": 20}, "method": "torrent-set"}));
    {
        let s = h.fake.state.lock();
        assert_eq!(s.starts, starts, "no restart for a limit");
        let (start, _) = s.running.values().next().unwrap();
        assert_eq!(
            s.limits.get(&start.metainfo().unwrap().info_hash),
            Some(&(Some(20_000), Some(50_000)))
        );
    }
    let hash = h.ok(json!({"method": "torrent-get", "arguments": {"fields": ["hashString"]}}))
        ["torrents"][0]["hashString"]
        .as_str()
        .unwrap()
        .to_uppercase();
    h.ok(json!({"arguments": {"ids": [hash], "labels": ["tv-sonarr"],
        "files-unwanted": [1], "priority-high": [0]}, "method": "torrent-set"}));
    let r = h.ok(
        json!({"method": "torrent-get", "arguments": {"fields": ["labels", "wanted",
        "priorities", "fileStats", "downloadLimit", "downloadLimited", "seedRatioLimit",
        "seedRatioMode", "files", "file-count"]}}),
    );
    let t = &r["torrents"][0];
    assert_eq!(t["labels"], json!(["tv-sonarr"]));
    assert_eq!(t["wanted"], json!([1, 0]));
    assert_eq!(t["priorities"], json!([1, 0]));
    assert_eq!(t["fileStats"][1]["wanted"], false);
    assert_eq!(t["downloadLimit"], 20);
    assert_eq!(t["downloadLimited"], true);
    assert_eq!(t["seedRatioLimit"], 1.5);
    assert_eq!(t["seedRatioMode"], 1);
    assert_eq!(t["file-count"], 2);
    assert_eq!(t["files"][1]["name"], "multi/sub/b.bin");
    let s = h.fake.state.lock();
    let opts = &s.running.values().next().unwrap().0.options;
    assert_eq!(
        opts.wanted_files,
        [true, false],
        "the engine got the file selection"
    );
    drop(s);
    let r = h.post(&json!({"arguments": {"ids": [1], "labels": ["a,b"]}, "method": "torrent-set"}));
    assert_ne!(r["result"], "success");
    let r = h.post(&json!({"arguments": {"ids": [1], "files-wanted": [5]},
        "method": "torrent-set"}));
    assert_ne!(r["result"], "success");
}

#[test]
fn remove_and_delete_local_data() {
    let h = Harness::new(Access::default());
    let dl = h.data().join("dl");
    std::fs::create_dir_all(dl.join("multi/sub")).unwrap();
    std::fs::write(dl.join("multi/a.txt"), b"a").unwrap();
    std::fs::write(dl.join("multi/sub/b.bin"), b"b").unwrap();
    std::fs::write(dl.join("keep.txt"), b"k").unwrap();
    h.add(&multi(), &dl);
    h.ok(json!({"arguments": {"delete-local-data": true, "ids": 1}, "method": "torrent-remove"}));
    assert!(!dl.join("multi").exists(), "data and empty dirs deleted");
    assert!(dl.join("keep.txt").exists(), "nothing else");
}

#[test]
fn verify_drops_resume_state_and_restarts() {
    let h = Harness::new(Access::default());
    h.add(&single(), &h.data().join("dl"));
    let resume = {
        let s = h.fake.state.lock();
        s.running
            .values()
            .next()
            .unwrap()
            .0
            .options
            .resume_file
            .clone()
            .unwrap()
    };
    assert!(resume.starts_with(h.data().join("config/resume")));
    std::fs::write(&resume, b"state").unwrap();
    let starts = h.fake.state.lock().starts;
    h.ok(json!({"arguments": {"ids": 1}, "method": "torrent-verify"}));
    assert!(!resume.exists());
    assert_eq!(h.fake.state.lock().starts, starts + 1);
}

/// Sonarr's sequence (TransmissionProxy): GET probe, session-get,
/// torrent-add with labels and a category dir, torrent-set by uppercase
/// hash, queue-move-top, its 21-field poll, remove by lowercase hash.
#[test]
fn sonarr_sequence_is_accepted() {
    let h = Harness::new(Access::default());
    let auth = format!("Basic {}", b64(b":"));
    let r = h.raw(
        "GET",
        "/transmission/rpc",
        &[("Authorization", &auth), ("Host", "127.0.0.1:9091")],
        b"",
    );
    assert_eq!(
        r.status, 409,
        "a preemptive empty Basic header is ignored with auth off"
    );
    let s = h.ok(json!({"method": "session-get", "arguments": {}}));
    for k in [
        "version",
        "rpc-version",
        "download-dir",
        "seedRatioLimit",
        "seedRatioLimited",
        "idle-seeding-limit",
        "idle-seeding-limit-enabled",
    ] {
        assert!(s.get(k).is_some(), "{k}");
    }
    let dir = h.data().join("dl/tv-sonarr");
    let r = h.ok(
        json!({"method": "torrent-add", "arguments": {"metainfo": b64(&single()),
        "paused": false, "download-dir": dir, "labels": ["tv-sonarr"]}}),
    );
    let hash = r["torrent-added"]["hashString"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(dir.is_dir());
    h.ok(
        json!({"method": "torrent-set", "arguments": {"ids": [hash.to_uppercase()],
        "seedRatioLimit": 2.5, "seedRatioMode": 1}}),
    );
    h.ok(json!({"method": "queue-move-top", "arguments": {"ids": [hash.to_uppercase()]}}));
    let fields = [
        "id",
        "hashString",
        "name",
        "downloadDir",
        "totalSize",
        "leftUntilDone",
        "isFinished",
        "eta",
        "status",
        "secondsDownloading",
        "secondsSeeding",
        "errorString",
        "uploadedEver",
        "downloadedEver",
        "seedRatioLimit",
        "seedRatioMode",
        "seedIdleLimit",
        "seedIdleMode",
        "fileCount",
        "file-count",
        "labels",
    ];
    let r = h.ok(json!({"method": "torrent-get", "arguments": {"fields": fields}}));
    let t = &r["torrents"][0];
    for f in fields {
        assert!(t.get(f).is_some(), "{f}");
    }
    for k in [
        "id",
        "totalSize",
        "leftUntilDone",
        "eta",
        "status",
        "secondsDownloading",
        "secondsSeeding",
        "uploadedEver",
        "downloadedEver",
        "seedRatioMode",
        "seedIdleLimit",
        "seedIdleMode",
        "file-count",
    ] {
        int(t, k);
    }
    // Sonarr's output path: downloadDir + "/" + name is where the data is.
    assert_eq!(
        format!(
            "{}/{}",
            t["downloadDir"].as_str().unwrap(),
            t["name"].as_str().unwrap()
        ),
        dir.join("sample.bin").to_str().unwrap()
    );
    assert_eq!(t["seedRatioLimit"], 2.5);
    assert_eq!(t["labels"], json!(["tv-sonarr"]));
    h.ok(
        json!({"method": "torrent-remove", "arguments": {"ids": [hash.to_lowercase()],
        "delete-local-data": false}}),
    );
    let r = h.ok(json!({"method": "torrent-get", "arguments": {"fields": ["id"]}}));
    assert_eq!(r["torrents"], json!([]));
}

/// The Python transmission-rpc package's calls, in its order.
#[test]
fn python_client_sequence_is_accepted() {
    let h = Harness::new(Access::default());
    let id = h.gate.session_id();
    let _ = id;
    let r = h.raw(
        "POST",
        "/transmission/rpc",
        &[(SESSION, "0")],
        br#"{"method": "session-get", "arguments": {}}"#,
    );
    assert_eq!(r.status, 409);
    let s = h.ok(json!({"method": "session-get", "arguments": {}}));
    assert!(s.get("version").is_some() && s.get("rpc-version").is_some());
    let r = h.ok(
        json!({"method": "torrent-add", "arguments": {"download-dir":
        h.data().join("dl3"), "paused": true, "labels": ["py"], "metainfo": b64(&multi())}}),
    );
    let tid = r["torrent-added"]["id"].clone();
    for m in ["torrent-start", "torrent-stop", "torrent-verify"] {
        h.ok(json!({"method": m, "arguments": {"ids": [tid]}}));
    }
    h.ok(
        json!({"method": "torrent-set", "arguments": {"uploadLimit": 10,
        "labels": ["py", "x"], "ids": [tid]}}),
    );
    let r = h.ok(
        json!({"method": "torrent-get", "arguments": {"fields": ["id", "labels",
        "uploadLimit", "status", "percentDone", "fileStats", "files"], "ids": [tid]}}),
    );
    let t = &r["torrents"][0];
    assert_eq!(t["labels"], json!(["py", "x"]));
    assert_eq!(t["uploadLimit"], 10);
    assert_eq!(
        t["status"], 0,
        "stopped by torrent-stop, still stopped after verify"
    );
    assert!(t["percentDone"].is_number());
    h.ok(json!({"method": "session-stats", "arguments": {}}));
    h.ok(
        json!({"method": "torrent-remove", "arguments": {"delete-local-data": false,
        "ids": [tid]}}),
    );
}

/// transmission-remote `--move DIR` and `--find DIR`.
#[test]
fn set_location_moves_or_finds_data() {
    let h = Harness::new(Access::default());
    let (dl, moved, found) = (
        h.data().join("dl"),
        h.data().join("moved"),
        h.data().join("found"),
    );
    std::fs::create_dir_all(dl.join("multi/sub")).unwrap();
    std::fs::write(dl.join("multi/a.txt"), b"a").unwrap();
    std::fs::write(dl.join("multi/sub/b.bin"), b"b").unwrap();
    h.add(&multi(), &dl);
    let starts = h.fake.state.lock().starts;
    h.ok(
        json!({"arguments": {"ids": 1, "location": moved, "move": true},
        "method": "torrent-set-location"}),
    );
    assert!(!dl.join("multi").exists());
    assert_eq!(std::fs::read(moved.join("multi/sub/b.bin")).unwrap(), b"b");
    let dir = |h: &Harness| {
        h.ok(json!({"method": "torrent-get", "arguments": {"fields": ["downloadDir"]}}))["torrents"]
            [0]["downloadDir"]
            .clone()
    };
    assert_eq!(dir(&h), moved.to_str().unwrap());
    {
        let s = h.fake.state.lock();
        assert_eq!(s.starts, starts + 1, "restarted at the new place");
        assert_eq!(s.running.values().next().unwrap().0.save_dir, moved);
    }
    h.ok(
        json!({"arguments": {"ids": 1, "location": found, "move": false},
        "method": "torrent-set-location"}),
    );
    assert!(moved.join("multi/a.txt").exists(), "--find moves nothing");
    assert_eq!(dir(&h), found.to_str().unwrap());
    // Moving onto existing data is refused; the torrent stays where it was.
    std::fs::create_dir_all(moved.join("multi")).unwrap();
    let r = h.post(
        &json!({"arguments": {"ids": 1, "location": dl, "move": false},
        "method": "torrent-set-location"}),
    );
    assert_eq!(r["result"], "success");
    let r = h.post(
        &json!({"arguments": {"ids": 1, "location": moved, "move": true},
        "method": "torrent-set-location"}),
    );
    assert!(
        r["result"].as_str().unwrap().contains("already exists"),
        "{r}"
    );
    assert_eq!(dir(&h), dl.to_str().unwrap());
}

/// `corruptEver` is the engine's count of bytes thrown away as corrupt:
/// whole pieces that failed their hash check and, for a v2 torrent, single
/// blocks that failed their merkle leaf on arrival (which are no hash
/// failure), not hash failures times the piece length.
#[test]
fn corrupt_ever_counts_bad_blocks_caught_on_arrival() {
    let h = Harness::new(Access::default());
    let dir = h.data().join("dl");
    let r = h.add(&single(), &dir);
    let hash = r["torrent-added"]["hashString"]
        .as_str()
        .unwrap()
        .to_string();
    {
        let mut s = h.fake.state.lock();
        let (_, st) = s.running.values_mut().next().unwrap();
        // one 32 KiB piece failed its check, one 16 KiB block its leaf
        st.hash_failures = 1;
        st.corrupt = 32768 + 16384;
    }
    let r = h.ok(json!({"method": "torrent-get", "arguments": {"ids": [hash],
        "fields": ["corruptEver"]}}));
    assert_eq!(r["torrents"][0]["corruptEver"], json!(32768 + 16384), "{r}");
}
