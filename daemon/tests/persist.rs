//! The store across restarts: the same torrents come back in the same
//! state (ids renumbered in queue order, as Transmission does).

use bittern_daemon::Access;
use serde_json::json;

use crate::util::*;

#[test]
fn torrents_come_back_after_a_restart() {
    let h = Harness::new(Access::default());
    let dl = h.data().join("dl");
    h.add(&single(), &dl);
    h.add(&multi(), &dl);
    h.ok(json!({"method": "torrent-stop", "arguments": {"ids": [1]}}));
    h.ok(
        json!({"method": "torrent-set", "arguments": {"ids": [2], "labels": ["x"],
        "files-unwanted": [0], "uploadLimit": 7, "uploadLimited": true}}),
    );
    h.ok(json!({"method": "queue-move-top", "arguments": {"ids": [2]}}));
    h.ok(
        json!({"method": "session-set", "arguments": {"download-dir": "/srv/dl",
        "speed-limit-up": 42}}),
    );
    let fields = json!([
        "name",
        "status",
        "labels",
        "wanted",
        "uploadLimit",
        "uploadLimited",
        "queuePosition",
        "downloadDir",
        "addedDate",
        "hashString"
    ]);
    let before = h.ok(json!({"method": "torrent-get", "arguments": {"fields": fields}}));
    // No graceful stop: the records were written at each change.
    let Harness { dir, .. } = h;
    let h2 = Harness::in_dir(dir, Access::default(), Fake::default());
    let after = h2.ok(json!({"method": "torrent-get", "arguments": {"fields": fields}}));
    assert_eq!(before, after);
    let ids = h2.ok(json!({"method": "torrent-get", "arguments": {"fields": ["id", "name"]}}));
    assert_eq!(
        ids["torrents"],
        json!([{"id": 1, "name": "multi"}, {"id": 2, "name": "sample.bin"}])
    );
    let s = h2.ok(
        json!({"method": "session-get", "arguments": {"fields": ["download-dir",
        "speed-limit-up"]}}),
    );
    assert_eq!(s, json!({"download-dir": "/srv/dl", "speed-limit-up": 42}));
    // The engine got the saved state back: the stopped one paused, the
    // other running (it starts paused, then the queue starts it).
    let st = h2.fake.state.lock();
    let paused: Vec<bool> = ["sample.bin", "multi"]
        .iter()
        .map(|n| {
            let (start, status) = st
                .running
                .values()
                .find(|(s, _)| s.metainfo().is_some_and(|m| m.info.name == *n))
                .unwrap();
            assert!(start.options.paused, "{n} waits for the queue");
            status.state == bittern_engine::TorrentState::Paused
        })
        .collect();
    assert_eq!(paused, [true, false]);
}
