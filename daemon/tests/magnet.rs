//! Magnet links and URLs in `torrent-add` over a fake engine: a magnet
//! without metadata looks as in Transmission (name from `dn`, no size,
//! metadata progress), duplicates are answered as such, the record comes
//! back after a restart, the fetched metadata is adopted and saved so the
//! next restart starts from the `.torrent`; a `.torrent` URL on loopback
//! is fetched, within a size bound.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use bittern_daemon::{Access, Source};
use bittern_wire::Metainfo;
use serde_json::{json, Value};

use crate::util::*;

const FIELDS: &[&str] = &[
    "id",
    "name",
    "hashString",
    "status",
    "totalSize",
    "sizeWhenDone",
    "leftUntilDone",
    "percentDone",
    "metadataPercentComplete",
    "magnetLink",
    "files",
    "pieceCount",
    "trackers",
    "torrentFile",
];

fn get(h: &Harness) -> Value {
    let r = h.ok(json!({"method": "torrent-get", "arguments": {"fields": FIELDS}}));
    r["torrents"][0].clone()
}

fn hash_of(bytes: &[u8]) -> String {
    Metainfo::from_bytes(bytes).unwrap().info_hash.to_hex()
}

#[test]
fn magnet_without_metadata_then_adopted_across_restarts() {
    let h = Harness::new(Access::default());
    let dl = h.data().join("dl");
    let hash = hash_of(&single());
    let link = format!(
        "magnet:?xt=urn:btih:{}&dn=My+Film&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce",
        hash.to_uppercase()
    );
    let a = h.ok(json!({"method": "torrent-add", "arguments": {
        "filename": link, "download-dir": dl.to_str().unwrap()}}));
    assert_eq!(
        a["torrent-added"],
        json!({"hashString": hash, "id": 1, "name": "My Film"})
    );
    let t = get(&h);
    assert_eq!(t["name"], "My Film");
    assert_eq!(int(&t, "status"), 4, "downloading (the metadata)");
    for k in ["totalSize", "sizeWhenDone", "leftUntilDone", "pieceCount"] {
        assert_eq!(int(&t, k), 0, "{k}");
    }
    assert_eq!(t["percentDone"], 0.0);
    assert_eq!(t["metadataPercentComplete"], 0.5);
    assert_eq!(t["files"], json!([]));
    assert_eq!(t["torrentFile"], "");
    assert_eq!(
        t["trackers"][0]["announce"],
        "http://127.0.0.1:6969/announce"
    );
    let m = t["magnetLink"].as_str().unwrap();
    assert!(m.starts_with(&format!("magnet:?xt=urn:btih:{hash}")), "{m}");
    assert!(m.contains("dn=My"), "{m}");

    // The same hash again, as a magnet or as a .torrent: a duplicate.
    let d = h.ok(json!({"method": "torrent-add", "arguments": {"filename": link}}));
    assert_eq!(d["torrent-duplicate"]["id"], 1);
    let d = h.ok(json!({"method": "torrent-add", "arguments": {"metainfo": b64(&single())}}));
    assert_eq!(d["torrent-duplicate"]["hashString"], hash);
    // A link without a v1 info hash is refused.
    let r = h.post(&json!({"method": "torrent-add", "arguments": {"filename": "magnet:?dn=x"}}));
    assert!(r["result"].as_str().unwrap().contains("info hash"), "{r}");

    // A restart before the metadata arrives: the magnet comes back.
    let Harness { dir, .. } = h;
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    assert_eq!(get(&h)["name"], "My Film");
    {
        let st = h.fake.state.lock();
        assert_eq!(st.running.len(), 1);
        let (start, _) = st.running.values().next().unwrap();
        assert!(matches!(&start.source, Source::Magnet(m)
            if m.info_hash.map(|x| x.to_hex()) == Some(hash.clone())));
        assert_eq!(start.save_dir, dl);
    }

    // The engine fetched the metadata: the daemon adopts and saves it.
    let key = Metainfo::from_bytes(&single()).unwrap().info_hash;
    h.fake.state.lock().fetched.insert(key, single());
    h.rpc.torrents().tick(Duration::from_secs(1), true);
    let t = get(&h);
    assert_eq!(t["name"], "sample.bin");
    assert_eq!(int(&t, "totalSize"), 3_000_000);
    assert_eq!(t["metadataPercentComplete"], 1.0);
    assert_eq!(int(&t, "pieceCount"), 92);
    let saved = h.data().join(format!("config/torrents/{hash}.torrent"));
    assert_eq!(std::fs::read(&saved).unwrap(), single());
    assert_eq!(t["torrentFile"], saved.to_str().unwrap());

    // The next restart starts it from the saved .torrent: no fetch.
    let Harness { dir, .. } = h;
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    assert_eq!(get(&h)["name"], "sample.bin");
    let st = h.fake.state.lock();
    let (start, _) = st.running.values().next().unwrap();
    assert_eq!(start.metainfo().unwrap().info_hash, key);
    drop(st);

    // Removed: the record, the .torrent and the fetched copy go.
    h.ok(json!({"method": "torrent-remove", "arguments": {"ids": [1]}}));
    assert!(!saved.exists());
}

/// Serves `body` once per connection with `status` and `length` as the
/// declared Content-Length; returns the URL.
fn serve(status: &'static str, body: Vec<u8>, length: usize, n: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body[..body.len().min(length)]);
        }
    });
    format!("http://127.0.0.1:{port}/x.torrent")
}

#[test]
fn torrent_added_by_url() {
    let h = Harness::new(Access::default());
    let body = multi();
    let url = serve("200 OK", body.clone(), body.len(), 1);
    let a = h.ok(json!({"method": "torrent-add", "arguments": {"filename": url}}));
    assert_eq!(a["torrent-added"]["name"], "multi");
    assert_eq!(a["torrent-added"]["hashString"], hash_of(&body));
    let r = h.post(&json!({"method": "torrent-add", "arguments": {
        "filename": serve("404 Not Found", Vec::new(), 0, 1)}}));
    assert!(r["result"].as_str().unwrap().contains("404"), "{r}");
    // Declared larger than the bound: refused before reading the body.
    let r = h.post(&json!({"method": "torrent-add", "arguments": {
        "filename": serve("200 OK", Vec::new(), 17 << 20, 1)}}));
    assert!(r["result"].as_str().unwrap().contains("more than"), "{r}");
    // Not a torrent.
    let r = h.post(&json!({"method": "torrent-add", "arguments": {
        "filename": serve("200 OK", b"<html>".to_vec(), 6, 1)}}));
    assert_eq!(r["result"], "invalid or corrupt torrent file");
    assert_eq!(
        h.ok(json!({"method": "torrent-get", "arguments": {"fields": ["id"]}}))["torrents"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
