//! The watch directory over a fake engine: a dropped `.torrent` is added
//! once stable and renamed `.added`, a `.magnet` too; a magnet link
//! without an info hash and a corrupt file are renamed `.invalid`; other
//! files are left alone; a restart adds nothing again.

use std::sync::Arc;

use bittern_daemon::watch::{Outcome, Scanner};
use bittern_daemon::{Rpc, Store, Torrents};
use serde_json::json;

use crate::util::*;

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn count(rpc: &Rpc<Fake>) -> usize {
    let r = rpc.call(
        json!({"method": "torrent-get", "arguments": {"fields": ["id"]}})
            .to_string()
            .as_bytes(),
        "",
    );
    r["arguments"]["torrents"].as_array().unwrap().len()
}

#[test]
fn dropped_files_are_added_once_and_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let watch = dir.path().join("watch");
    std::fs::create_dir(&watch).unwrap();
    let open = || {
        let store = Store::open(&dir.path().join("config")).unwrap();
        Arc::new(Rpc::new(Torrents::open(Fake::default(), store).unwrap()))
    };
    let rpc = open();
    let mut scanner = Scanner::new(watch.clone());
    std::fs::write(watch.join("a.torrent"), single()).unwrap();
    std::fs::write(watch.join("B.TORRENT"), multi()).unwrap();
    std::fs::write(watch.join("bad.torrent"), b"not bencode").unwrap();
    std::fs::write(
        watch.join("m.magnet"),
        "\nmagnet:?xt=urn:btih:0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a\n",
    )
    .unwrap();
    std::fs::write(watch.join("nohash.magnet"), "magnet:?dn=x\n").unwrap();
    std::fs::write(watch.join("notes.txt"), b"x").unwrap();
    assert!(scanner.scan(&rpc).is_empty(), "first sight: not yet stable");
    assert_eq!(count(&rpc), 0);
    let mut out = scanner.scan(&rpc);
    out.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(out.len(), 5, "{out:?}");
    assert!(out.contains(&Outcome::Added(watch.join("a.torrent"))));
    assert!(out.contains(&Outcome::Added(watch.join("B.TORRENT"))));
    assert!(out.contains(&Outcome::Added(watch.join("m.magnet"))));
    assert!(out.iter().any(|o| matches!(o,
        Outcome::Invalid(p, e) if p.ends_with("nohash.magnet") && e.contains("info hash"))));
    assert!(out.iter().any(|o| matches!(o,
        Outcome::Invalid(p, e) if p.ends_with("bad.torrent") && e.contains("corrupt"))));
    assert_eq!(count(&rpc), 3);
    let r = rpc.call(
        json!({"method": "torrent-get", "arguments": {"fields": ["hashString"], "ids": [3]}})
            .to_string()
            .as_bytes(),
        "",
    );
    assert_eq!(
        r["arguments"]["torrents"][0]["hashString"],
        "0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a"
    );
    assert_eq!(
        names(&watch),
        [
            "B.TORRENT.added",
            "a.torrent.added",
            "bad.torrent.invalid",
            "m.magnet.added",
            "nohash.magnet.invalid",
            "notes.txt"
        ]
    );
    assert!(scanner.scan(&rpc).is_empty());
    assert!(scanner.scan(&rpc).is_empty());

    // Removed, then a restart with the same folder: nothing comes back.
    let r = rpc.call(
        json!({"method": "torrent-remove", "arguments": {"ids": [1]}})
            .to_string()
            .as_bytes(),
        "",
    );
    assert_eq!(r["result"], "success");
    rpc.torrents().shutdown();
    drop(rpc);
    let rpc = open();
    assert_eq!(count(&rpc), 2);
    let mut scanner = Scanner::new(watch.clone());
    for _ in 0..3 {
        assert!(scanner.scan(&rpc).is_empty());
    }
    assert_eq!(count(&rpc), 2);

    // A file still growing between scans waits for the next stable one.
    let grow = watch.join("late.torrent");
    let bytes = multi();
    std::fs::write(&grow, &bytes[..100]).unwrap();
    assert!(scanner.scan(&rpc).is_empty());
    std::fs::write(&grow, &bytes).unwrap();
    assert!(scanner.scan(&rpc).is_empty(), "changed since the last scan");
    assert_eq!(
        scanner.scan(&rpc),
        [Outcome::Added(grow.clone())],
        "stable now"
    );
    assert_eq!(count(&rpc), 3);
}
