//! The web page's routes and `/metrics` through the gate: who may read
//! them, and the metrics checked by a strict parser of Prometheus's text
//! format (every family's `# HELP`/`# TYPE` before its samples, names,
//! label syntax and escapes, no duplicate series).

use std::collections::{BTreeMap, HashMap};

use bittern_daemon::Access;
use bittern_wire::{Metainfo, MetainfoBuilder};
use serde_json::json;

use crate::util::*;

/// A series: metric name and its labels.
type Series = (String, BTreeMap<String, String>);

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `name{a="x",b="y"}` labels; strict about quotes and escapes.
fn labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut out = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let name = &s[..eq];
        if !valid_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        s = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw line feed in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if out.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        s = &s[end + 1..];
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

/// Parses the whole exposition strictly; returns every sample.
fn parse(text: &str) -> Result<HashMap<Series, f64>, String> {
    if !text.ends_with('\n') {
        return Err("no final line feed".into());
    }
    let mut help: HashMap<String, String> = HashMap::new();
    let mut kind: HashMap<String, String> = HashMap::new();
    let mut closed: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let (word, rest) = rest.split_once(' ').ok_or("bad comment")?;
            let (name, text) = rest.split_once(' ').ok_or("bad comment")?;
            if !valid_name(name) {
                return Err(format!("bad name {name:?}"));
            }
            if name != current {
                if closed.contains(&name.to_string()) {
                    return Err(format!("family {name} reopened"));
                }
                if !current.is_empty() {
                    closed.push(current.clone());
                }
                current = name.to_string();
            }
            match word {
                "HELP" => {
                    if kind.contains_key(name) || help.insert(name.into(), text.into()).is_some() {
                        return Err(format!("HELP of {name} misplaced"));
                    }
                }
                "TYPE" => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&text) {
                        return Err(format!("bad type {text}"));
                    }
                    if text == "counter" && !name.ends_with("_total") {
                        return Err(format!("counter {name} without _total"));
                    }
                    if kind.insert(name.into(), text.into()).is_some() {
                        return Err(format!("TYPE of {name} twice"));
                    }
                }
                _ => return Err(format!("unexpected comment {line:?}")),
            }
            continue;
        }
        let end = line.find(['{', ' ']).ok_or("sample without value")?;
        let name = &line[..end];
        if name != current || !help.contains_key(name) || !kind.contains_key(name) {
            return Err(format!(
                "sample of {name} outside its family (HELP and TYPE first)"
            ));
        }
        let (labels, rest) = match line[end..].strip_prefix('{') {
            Some(r) => labels(r)?,
            None => (BTreeMap::new(), &line[end..]),
        };
        let value = rest.strip_prefix(' ').ok_or("no space before value")?;
        let v: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
        };
        if samples.insert((name.to_string(), labels), v).is_some() {
            return Err(format!("duplicate series in {line:?}"));
        }
    }
    Ok(samples)
}

#[test]
fn strict_parser_rejects_malformed_text() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{l=\"q\\\"\\\\\\n\"} 1\n";
    let s = parse(good).unwrap();
    assert_eq!(s.keys().next().unwrap().1["l"], "q\"\\\n");
    for bad in [
        "a 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=\"x\\t\"} 1\n",
        "# HELP a x\n# TYPE a gauge\na{l=x} 1\n",
        "# HELP a x\n# TYPE a counter\na 1\n",
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n",
        "# HELP a x\n# TYPE a gauge\na one\n",
        "# HELP a x\n# TYPE a gauge\na 1",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}

fn get(h: &Harness, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = h.raw("GET", path, headers, b"");
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn metrics(h: &Harness) -> HashMap<Series, f64> {
    let r = h.raw("GET", "/metrics", &[("Host", "127.0.0.1:9091")], b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(r.body).unwrap();
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    (
        name.to_string(),
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

#[test]
fn metrics_parse_and_follow_the_torrents() {
    let h = Harness::new(Access::default());
    let m = metrics(&h);
    assert_eq!(
        m[&series("bittern_session_torrents", &[("state", "seeding")])],
        0.0
    );
    assert_eq!(
        m[&series("bittern_session_downloaded_bytes_total", &[])],
        0.0
    );

    // A name that needs escaping (file names cannot hold a backslash or a
    // line feed; the unit test of escape_label covers those), and a second
    // torrent.
    let odd = "a \"quoted\" <b>name";
    let bytes = MetainfoBuilder::new(odd)
        .single_file(1000)
        .piece_length(16384)
        .pieces(vec![[1u8; 20]])
        .build()
        .unwrap();
    let a = h.add(&bytes, h.data())["torrent-added"].clone();
    h.add(&single(), h.data());
    let hash_a = a["hashString"].as_str().unwrap().to_string();
    let hash_b = Metainfo::from_bytes(&single()).unwrap().info_hash;
    {
        let mut s = h.fake.state.lock();
        let t = &mut s.running.get_mut(&hash_b).unwrap().1;
        t.downloaded = 5000;
        t.uploaded = 700;
        t.download_rate = 1234.4;
        t.peers_connected = 3;
    }
    let m = metrics(&h);
    assert_eq!(
        m[&series(
            "bittern_torrent_info",
            &[("hash", &hash_a), ("id", "1"), ("name", odd)]
        )],
        1.0,
        "the name comes back unescaped"
    );
    let b = hash_b.to_hex();
    let at = |name: &str| m[&series(name, &[("hash", &b)])];
    assert_eq!(at("bittern_torrent_downloaded_bytes_total"), 5000.0);
    assert_eq!(at("bittern_torrent_uploaded_bytes_total"), 700.0);
    assert_eq!(at("bittern_torrent_download_rate_bytes_per_second"), 1234.0);
    assert_eq!(at("bittern_torrent_peers"), 3.0);
    assert_eq!(at("bittern_torrent_wanted_bytes"), 3_000_000.0);
    assert_eq!(at("bittern_torrent_left_bytes"), 3_000_000.0);
    assert_eq!(
        m[&series(
            "bittern_torrent_state",
            &[("hash", &b), ("state", "downloading")]
        )],
        1.0
    );
    assert_eq!(
        m[&series("bittern_session_torrents", &[("state", "downloading")])],
        2.0
    );
    assert_eq!(m[&series("bittern_session_peers", &[])], 3.0);
    assert_eq!(
        m[&series("bittern_session_downloaded_bytes_total", &[])],
        5000.0
    );

    // Stopped, then removed: the session counter does not go down.
    h.ok(json!({"method": "torrent-stop", "arguments": {"ids": [2]}}));
    let m = metrics(&h);
    assert_eq!(
        m[&series(
            "bittern_torrent_state",
            &[("hash", &b), ("state", "stopped")]
        )],
        1.0
    );
    h.ok(json!({"method": "torrent-remove", "arguments": {"ids": [2]}}));
    let m = metrics(&h);
    assert!(!m.keys().any(|(_, l)| l.get("hash") == Some(&b)));
    assert_eq!(
        m[&series("bittern_session_downloaded_bytes_total", &[])],
        5000.0
    );
    assert_eq!(
        m[&series("bittern_session_uploaded_bytes_total", &[])],
        700.0
    );
}

#[test]
fn page_and_metrics_sit_behind_the_gate() {
    let h = Harness::new(Access {
        credentials: Some(("u".into(), "p".into())),
        ..Access::default()
    });
    let auth = format!("Basic {}", b64(b"u:p"));
    for path in ["/", "/transmission/web/app.js", "/metrics"] {
        assert_eq!(get(&h, path, &[]).0, 401, "{path} without auth");
        assert_eq!(get(&h, path, &[("Authorization", &auth)]).0, 200, "{path}");
    }
    let h = Harness::new(Access {
        whitelist: vec!["10.0.0.*".into()],
        ..Access::default()
    });
    assert_eq!(get(&h, "/", &[]).0, 403);
    assert_eq!(get(&h, "/metrics", &[]).0, 403);

    let h = Harness::new(Access::default());
    // DNS rebinding: a foreign Host cannot read the metrics (auth off).
    assert_eq!(get(&h, "/metrics", &[("Host", "evil.example:9091")]).0, 421);
    assert_eq!(get(&h, "/metrics", &[("Host", "localhost:9091")]).0, 200);
    assert_eq!(h.raw("POST", "/metrics", &[], b"").status, 405);
    let r = h.raw("GET", "/transmission/web/", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.starts_with("default-src 'self'")));
    let page = String::from_utf8_lossy(&r.body);
    for asset in ["app.js", "style.css", "icon.svg"] {
        let path = format!("/transmission/web/{asset}");
        assert!(page.contains(&path), "{asset} linked");
        assert_eq!(get(&h, &path, &[]).0, 200, "{asset} served");
    }
    assert_eq!(get(&h, "/transmission/web/nope.js", &[]).0, 404);
}
