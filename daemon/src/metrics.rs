//! `/metrics` in Prometheus's text exposition format (version 0.0.4):
//! session totals and, per torrent, byte counters, rates, peers, sizes
//! and its state.
//!
//! Per-torrent series carry only the `hash` label; `bittern_torrent_info`
//! (value 1) maps a hash to its `id` and `name`, the usual "info metric"
//! join, which keeps 10,000 torrents' output small. The session byte
//! counters add up every torrent's ever-downloaded/uploaded bytes plus
//! those of torrents removed while the daemon ran, so they never go down
//! within a run (a restart is a counter reset, as Prometheus expects).

use std::collections::HashMap;
use std::fmt::Write as _;

use bittern_wire::InfoHash;
use parking_lot::Mutex;
use serde_json::Value;

use crate::backend::Backend;
use crate::fields::{status_code, View};
use crate::http::Response;
use crate::state::Torrents;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The states a torrent is reported in.
pub const STATES: &[&str] = &[
    "stopped",
    "checking",
    "queued",
    "downloading",
    "seeding",
    "error",
];

/// What keeps the session counters monotonic across removals: each
/// torrent's last seen totals, and the sum of those of torrents gone.
#[derive(Debug, Default)]
pub struct Totals {
    inner: Mutex<TotalsInner>,
}

#[derive(Debug, Default)]
struct TotalsInner {
    last: HashMap<InfoHash, (u64, u64)>,
    gone: (u64, u64),
}

/// A per-torrent family: name, type, help, and its value.
type Family = (&'static str, &'static str, &'static str, fn(&Row) -> u64);

/// One torrent's figures.
struct Row {
    hash: String,
    id: i64,
    name: String,
    state: &'static str,
    down: u64,
    up: u64,
    rate_down: u64,
    rate_up: u64,
    peers: u64,
    size: u64,
    left: u64,
}

fn u(v: Option<Value>) -> u64 {
    v.and_then(|v| v.as_u64()).unwrap_or(0)
}

fn rows<B: Backend>(torrents: &Torrents<B>) -> Vec<(InfoHash, Row)> {
    let inner = torrents.lock();
    inner
        .entries
        .iter()
        .map(|e| {
            let mut v = View::new(
                e,
                torrents.backend().status(e.hash),
                &inner.settings,
                String::new(),
                &crate::fields::NoLookup,
            );
            let error = v
                .field("error")
                .and_then(|x| x.as_i64())
                .is_some_and(|x| x != 0);
            let state = match v.status_code() {
                _ if error => "error",
                status_code::VERIFYING => "checking",
                status_code::DOWNLOADING => "downloading",
                status_code::SEEDING => "seeding",
                status_code::DOWNLOAD_WAIT | status_code::SEED_WAIT => "queued",
                _ => "stopped",
            };
            let row = Row {
                hash: e.hash.to_hex(),
                id: e.id,
                name: e.name(),
                state,
                down: u(v.field("downloadedEver")),
                up: u(v.field("uploadedEver")),
                rate_down: u(v.field("rateDownload")),
                rate_up: u(v.field("rateUpload")),
                peers: u(v.field("peersConnected")),
                size: u(v.field("sizeWhenDone")),
                left: u(v.field("leftUntilDone")),
            };
            (e.hash, row)
        })
        .collect()
}

/// Escapes a label value: backslash, double quote and line feed.
pub fn escape_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes a family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics of `torrents` as text.
pub fn render<B: Backend>(torrents: &Torrents<B>, totals: &Totals) -> String {
    let rows = rows(torrents);
    let uptime = torrents.started().elapsed().as_secs();
    let (down, up) = {
        let mut t = totals.inner.lock();
        let now: HashMap<InfoHash, (u64, u64)> =
            rows.iter().map(|(h, r)| (*h, (r.down, r.up))).collect();
        let gone: (u64, u64) = t
            .last
            .iter()
            .filter(|(h, _)| !now.contains_key(h))
            .fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
        t.gone.0 += gone.0;
        t.gone.1 += gone.1;
        t.last = now;
        let sum = rows
            .iter()
            .fold((0u64, 0u64), |a, (_, r)| (a.0 + r.down, a.1 + r.up));
        (t.gone.0 + sum.0, t.gone.1 + sum.1)
    };
    let mut out = String::with_capacity(512 + rows.len() * 700);
    let session = [
        (
            "bittern_session_downloaded_bytes_total",
            "counter",
            "Bytes downloaded by every torrent, removed ones included.",
            down,
        ),
        (
            "bittern_session_uploaded_bytes_total",
            "counter",
            "Bytes uploaded by every torrent, removed ones included.",
            up,
        ),
        (
            "bittern_session_download_rate_bytes_per_second",
            "gauge",
            "Current download rate of all torrents.",
            rows.iter().map(|(_, r)| r.rate_down).sum(),
        ),
        (
            "bittern_session_upload_rate_bytes_per_second",
            "gauge",
            "Current upload rate of all torrents.",
            rows.iter().map(|(_, r)| r.rate_up).sum(),
        ),
        (
            "bittern_session_peers",
            "gauge",
            "Peers connected, all torrents.",
            rows.iter().map(|(_, r)| r.peers).sum(),
        ),
        (
            "bittern_session_uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            uptime,
        ),
    ];
    for (name, kind, help, v) in session {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    if let Some(n) = torrents.backend().dht_nodes() {
        family(
            &mut out,
            "bittern_dht_nodes",
            "gauge",
            "Nodes in the DHT routing table (absent with the DHT off).",
        );
        let _ = writeln!(out, "bittern_dht_nodes {n}");
    }
    family(
        &mut out,
        "bittern_session_torrents",
        "gauge",
        "Torrents by state.",
    );
    for s in STATES {
        let n = rows.iter().filter(|(_, r)| r.state == *s).count();
        let _ = writeln!(out, "bittern_session_torrents{{state=\"{s}\"}} {n}");
    }
    family(
        &mut out,
        "bittern_torrent_info",
        "gauge",
        "A torrent's id (this run) and name; always 1.",
    );
    for (_, r) in &rows {
        let _ = writeln!(
            out,
            "bittern_torrent_info{{hash=\"{}\",id=\"{}\",name=\"{}\"}} 1",
            r.hash,
            r.id,
            escape_label(&r.name)
        );
    }
    family(
        &mut out,
        "bittern_torrent_state",
        "gauge",
        "A torrent's current state (the series with value 1).",
    );
    for (_, r) in &rows {
        let _ = writeln!(
            out,
            "bittern_torrent_state{{hash=\"{}\",state=\"{}\"}} 1",
            r.hash, r.state
        );
    }
    let per: [Family; 7] = [
        (
            "bittern_torrent_downloaded_bytes_total",
            "counter",
            "Bytes downloaded since the torrent was added.",
            |r| r.down,
        ),
        (
            "bittern_torrent_uploaded_bytes_total",
            "counter",
            "Bytes uploaded since the torrent was added.",
            |r| r.up,
        ),
        (
            "bittern_torrent_download_rate_bytes_per_second",
            "gauge",
            "Current download rate.",
            |r| r.rate_down,
        ),
        (
            "bittern_torrent_upload_rate_bytes_per_second",
            "gauge",
            "Current upload rate.",
            |r| r.rate_up,
        ),
        ("bittern_torrent_peers", "gauge", "Peers connected.", |r| {
            r.peers
        }),
        (
            "bittern_torrent_wanted_bytes",
            "gauge",
            "Bytes of the wanted files.",
            |r| r.size,
        ),
        (
            "bittern_torrent_left_bytes",
            "gauge",
            "Wanted bytes not verified yet.",
            |r| r.left,
        ),
    ];
    for (name, kind, help, get) in per {
        family(&mut out, name, kind, help);
        for (_, r) in &rows {
            let _ = writeln!(out, "{name}{{hash=\"{}\"}} {}", r.hash, get(r));
        }
    }
    out
}

/// The `/metrics` response.
pub fn response<B: Backend>(torrents: &Torrents<B>, totals: &Totals) -> Response {
    Response::new(200, CONTENT_TYPE, render(torrents, totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label("plain ü"), "plain ü");
    }
}
