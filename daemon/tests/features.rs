//! The daemon features beyond the basic methods, over the fake engine
//! with real files: `torrent-reannounce`, `torrent-rename-path` (on disk,
//! in the store, refusals), bandwidth groups, and live session limits
//! with the alternative-speed schedule.

use std::path::Path;
use std::time::Duration;

use bittern_daemon::Access;
use bittern_wire::Metainfo;
use serde_json::{json, Value};

use crate::util::*;

fn hash_of(bytes: &[u8]) -> bittern_wire::InfoHash {
    Metainfo::from_bytes(bytes).unwrap().info_hash
}

fn get(h: &Harness, fields: &[&str]) -> Value {
    h.ok(json!({"method": "torrent-get", "arguments": {"fields": fields}}))["torrents"].clone()
}

#[test]
fn reannounce_goes_to_the_selected_torrents() {
    let h = Harness::new(Access::default());
    h.add(&multi(), &h.data().join("dl"));
    h.add(&single(), &h.data().join("dl"));
    h.ok(json!({"arguments": {"ids": 2}, "method": "torrent-reannounce"}));
    h.ok(json!({"arguments": {}, "method": "torrent-reannounce"}));
    let s = h.fake.state.lock();
    assert_eq!(s.reannounces.get(&hash_of(&multi())), Some(&1));
    assert_eq!(s.reannounces.get(&hash_of(&single())), Some(&2));
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

fn rename(h: &Harness, ids: Value, path: &str, name: &str) -> Value {
    h.post(&json!({"method": "torrent-rename-path",
        "arguments": {"ids": ids, "path": path, "name": name}}))
}

#[test]
fn rename_path_on_disk_in_the_store_and_refusals() {
    let h = Harness::new(Access::default());
    let dl = h.data().join("dl");
    write(&dl.join("multi/a.txt"), b"aaa");
    write(&dl.join("multi/sub/b.bin"), b"bbb");
    h.add(&multi(), &dl);
    let starts = h.fake.state.lock().starts;
    // A folder inside, then the top folder.
    let r = rename(&h, json!([1]), "multi/sub", "renamed");
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(
        r["arguments"],
        json!({"id": 1, "path": "multi/sub", "name": "renamed"})
    );
    assert_eq!(
        std::fs::read(dl.join("multi/renamed/b.bin")).unwrap(),
        b"bbb"
    );
    assert!(!dl.join("multi/sub").exists());
    let r = rename(&h, json!(1), "multi", "top");
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(std::fs::read(dl.join("top/renamed/b.bin")).unwrap(), b"bbb");
    assert_eq!(std::fs::read(dl.join("top/a.txt")).unwrap(), b"aaa");
    let t = &get(&h, &["name", "files"])[0];
    assert_eq!(t["name"], "top");
    assert_eq!(t["files"][1]["name"], "top/renamed/b.bin");
    {
        let s = h.fake.state.lock();
        assert_eq!(
            s.starts,
            starts + 2,
            "the engine restarts on the renamed files"
        );
        let (start, _) = s.running.values().next().unwrap();
        assert_eq!(
            start.metainfo().unwrap().info.file_paths(),
            [
                std::path::PathBuf::from("top/a.txt"),
                "top/renamed/b.bin".into()
            ]
        );
        assert_eq!(start.metainfo().unwrap().info_hash, hash_of(&multi()));
    }

    // Refused: escapes and bad names; nothing moves.
    let outside = h.data().join("outside");
    write(&outside.join("b.bin"), b"secret");
    for (path, name, why) in [
        ("top/a.txt", "..", "invalid name"),
        ("top/a.txt", "../x", "invalid name"),
        ("top/a.txt", "x/y", "invalid name"),
        ("top/../a.txt", "x", "invalid path"),
        ("top/nothing", "x", "invalid path"),
        ("multi", "x", "invalid path"),
    ] {
        let r = rename(&h, json!(1), path, name);
        assert_eq!(r["result"], why, "{path} -> {name}");
    }
    // A folder of the torrent replaced by a symlink leading outside.
    std::fs::remove_dir_all(dl.join("top/renamed")).unwrap();
    std::os::unix::fs::symlink(&outside, dl.join("top/renamed")).unwrap();
    let r = rename(&h, json!(1), "top/renamed/b.bin", "c.bin");
    assert!(r["result"].as_str().unwrap().contains("outside"), "{r}");
    assert_eq!(std::fs::read(outside.join("b.bin")).unwrap(), b"secret");
    assert!(!outside.join("c.bin").exists());
    // A target that exists.
    write(&dl.join("top/taken"), b"t");
    let r = rename(&h, json!(1), "top/a.txt", "taken");
    assert!(r["result"].as_str().unwrap().contains("exists"), "{r}");
    assert_eq!(std::fs::read(dl.join("top/a.txt")).unwrap(), b"aaa");
    // Exactly one torrent.
    h.add(&single(), &dl);
    let r = rename(&h, json!([1, 2]), "top", "x");
    assert_eq!(r["result"], "torrent-rename-path requires 1 torrent");
    // A single-file torrent: its file is its name.
    write(&dl.join("sample.bin"), b"sss");
    let r = rename(&h, json!(2), "sample.bin", "other.bin");
    assert_eq!(r["result"], "success", "{r}");
    assert_eq!(std::fs::read(dl.join("other.bin")).unwrap(), b"sss");

    // After a restart the renames hold.
    let Harness { dir, .. } = h;
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    let t = get(&h, &["name", "files"]);
    assert_eq!(t[0]["files"][0]["name"], "top/a.txt");
    assert_eq!(t[1]["name"], "other.bin");
    assert_eq!(t[1]["files"][0]["name"], "other.bin");
}

#[test]
fn bandwidth_groups_are_stored_reported_and_applied() {
    let h = Harness::new(Access::default());
    h.add(&multi(), &h.data().join("dl"));
    h.ok(json!({"method": "group-set", "arguments": {"name": "slow",
        "speed-limit-down-enabled": true, "speed-limit-down": 40,
        "speed-limit-up": 7, "honorsSessionLimits": false}}));
    h.ok(json!({"method": "group-set", "arguments": {"name": "other"}}));
    let r = h.ok(json!({"method": "group-get", "arguments": {"group": "slow"}}));
    assert_eq!(
        r["group"],
        json!([{"name": "slow", "honorsSessionLimits": false,
            "speed-limit-down-enabled": true, "speed-limit-down": 40,
            "speed-limit-up-enabled": false, "speed-limit-up": 7}])
    );
    let r = h.ok(json!({"method": "group-get", "arguments": {}}));
    assert_eq!(r["group"].as_array().unwrap().len(), 2);
    h.ok(json!({"method": "torrent-set", "arguments": {"ids": 1, "group": "slow"}}));
    assert_eq!(get(&h, &["group"])[0]["group"], "slow");
    let hash = hash_of(&multi());
    assert_eq!(h.fake.state.lock().limits[&hash], (Some(40_000), None));
    // Changing the group changes its torrents at once.
    h.ok(json!({"method": "group-set", "arguments": {"name": "slow",
        "speed-limit-up-enabled": true}}));
    assert_eq!(
        h.fake.state.lock().limits[&hash],
        (Some(40_000), Some(7_000))
    );
    assert_eq!(
        h.post(&json!({"method": "group-set", "arguments": {"name": " "}}))["result"],
        "no group name"
    );
    // transmission-remote -HL: the session's limits stop applying to it.
    assert!(h.fake.state.lock().honors[&hash]);
    h.ok(json!({"method": "torrent-set", "arguments": {"ids": 1,
        "honorsSessionLimits": false}}));
    assert!(!h.fake.state.lock().honors[&hash]);
    // Kept across a restart, and the torrent starts with its group's limits.
    let Harness { dir, .. } = h;
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    let r = h.ok(json!({"method": "group-get", "arguments": {"group": ["slow"]}}));
    assert_eq!(r["group"][0]["speed-limit-up"], 7);
    let s = h.fake.state.lock();
    let opts = &s.running[&hash].0.options;
    assert_eq!(
        (opts.download_limit, opts.upload_limit),
        (Some(40_000), Some(7_000))
    );
}

/// Today's bit in `alt-speed-time-day` (Sunday = 1).
fn today_bit() -> u64 {
    1 << bittern_daemon::limits::local_now().0
}

#[test]
fn session_limits_and_the_alt_schedule_apply_live() {
    let h = Harness::new(Access::default());
    let last = |h: &Harness| h.fake.state.lock().session_limits.first().copied();
    // transmission-remote -d 300 -u 20
    h.ok(
        json!({"method": "session-set", "arguments": {"speed-limit-down": 300,
        "speed-limit-down-enabled": true}}),
    );
    assert_eq!(last(&h), Some((Some(300_000), None)));
    h.ok(
        json!({"method": "session-set", "arguments": {"speed-limit-up": 20,
        "speed-limit-up-enabled": true}}),
    );
    assert_eq!(last(&h), Some((Some(300_000), Some(20_000))));
    // -as / -asd 30: the alternative limits replace them.
    h.ok(
        json!({"method": "session-set", "arguments": {"alt-speed-down": 30,
        "alt-speed-enabled": true}}),
    );
    assert_eq!(last(&h), Some((Some(30_000), Some(50_000))));
    h.ok(json!({"method": "session-set", "arguments": {"alt-speed-enabled": false}}));
    assert_eq!(last(&h), Some((Some(300_000), Some(20_000))));

    // The schedule: the whole of today on, then today off.
    let t = h.rpc.torrents();
    h.ok(
        json!({"method": "session-set", "arguments": {"alt-speed-time-begin": 0,
        "alt-speed-time-end": 0, "alt-speed-time-day": 127, "alt-speed-time-enabled": true}}),
    );
    t.tick(Duration::from_secs(1), false);
    let alt = |h: &Harness| {
        h.ok(json!({"method": "session-get", "arguments": {"fields": ["alt-speed-enabled"]}}))
            ["alt-speed-enabled"]
            .clone()
    };
    assert_eq!(
        alt(&h),
        true,
        "the schedule switched the alternative limits on"
    );
    assert_eq!(last(&h), Some((Some(30_000), Some(50_000))));
    // A manual switch holds until the schedule's next boundary.
    h.ok(json!({"method": "session-set", "arguments": {"alt-speed-enabled": false}}));
    t.tick(Duration::from_secs(1), false);
    assert_eq!(alt(&h), false);
    h.ok(json!({"method": "session-set", "arguments": {"alt-speed-time-day": 127 & !today_bit()}}));
    h.ok(json!({"method": "session-set", "arguments": {"alt-speed-enabled": true}}));
    t.tick(Duration::from_secs(1), false);
    assert_eq!(alt(&h), false, "not today: the schedule switched them off");
    assert_eq!(last(&h), Some((Some(300_000), Some(20_000))));
    // Saved: a restart starts with the same settings.
    let Harness { dir, .. } = h;
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    let r = h.ok(json!({"method": "session-get", "arguments": {}}));
    assert_eq!(r["alt-speed-time-day"], 127 & !today_bit());
    assert_eq!(r["speed-limit-down"], 300);
}

/// `--move` to another filesystem (tmpfs `/dev/shm` from the temp dir):
/// copied, then the source removed; the store records the new place.
#[test]
fn set_location_moves_across_filesystems() {
    use std::os::unix::fs::MetadataExt;
    let h = Harness::new(Access::default());
    let other = tempfile::tempdir_in("/dev/shm").ok();
    let differs = other.as_ref().is_some_and(|o| {
        std::fs::metadata(o.path()).unwrap().dev() != std::fs::metadata(h.data()).unwrap().dev()
    });
    if !bittern_testkit::require(
        "a writable /dev/shm on another filesystem than the temp dir",
        differs,
    ) {
        return;
    }
    let other = other.unwrap();
    let to = other.path().join("moved");
    let dl = h.data().join("dl");
    write(&dl.join("multi/a.txt"), b"aaa");
    write(&dl.join("multi/sub/b.bin"), &[7u8; 100_000]);
    h.add(&multi(), &dl);
    h.ok(json!({"method": "torrent-set-location",
        "arguments": {"ids": 1, "location": to, "move": true}}));
    assert_eq!(std::fs::read(to.join("multi/a.txt")).unwrap(), b"aaa");
    assert_eq!(
        std::fs::read(to.join("multi/sub/b.bin")).unwrap(),
        [7u8; 100_000]
    );
    assert!(!dl.join("multi").exists(), "the source is gone");
    assert!(
        !to.join(".multi.bittern-move").exists(),
        "no partial copy left"
    );
    let Harness { dir, .. } = h;
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    assert_eq!(
        get(&h, &["downloadDir"])[0]["downloadDir"],
        to.to_str().unwrap()
    );
}

fn three(h: &Harness) -> Vec<Vec<u8>> {
    (0..3u8)
        .map(|i| {
            let bytes = bittern_wire::MetainfoBuilder::new(format!("q{i}.bin"))
                .single_file(1000)
                .piece_length(16384)
                .pieces(vec![[i; 20]])
                .build()
                .unwrap();
            h.add(&bytes, &h.data().join("dl"));
            bytes
        })
        .collect()
}

fn statuses(h: &Harness) -> Vec<(i64, i64)> {
    get(h, &["status", "queuePosition"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["status"].as_i64().unwrap(),
                t["queuePosition"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn download_and_seed_queues() {
    let h = Harness::new(Access::default());
    h.ok(
        json!({"method": "session-set", "arguments": {"download-queue-size": 2,
        "queue-stalled-enabled": false}}),
    );
    let t = three(&h);
    // Two download, the third waits (3 = queued to download).
    assert_eq!(statuses(&h), [(4, 0), (4, 1), (3, 2)]);
    // queue-move-top: the moved one takes a slot, the last one waits.
    h.ok(json!({"method": "queue-move-top", "arguments": {"ids": [3]}}));
    let by_id = |h: &Harness| -> Vec<i64> {
        let mut v: Vec<(i64, i64)> = get(h, &["id", "status"])
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["id"].as_i64().unwrap(), t["status"].as_i64().unwrap()))
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    };
    assert_eq!(by_id(&h), [4, 3, 4]);
    // Stopping one frees its slot.
    h.ok(json!({"method": "torrent-stop", "arguments": {"ids": [1]}}));
    assert_eq!(by_id(&h), [0, 4, 4]);
    // torrent-start-now runs besides the queue's two.
    h.ok(json!({"method": "torrent-start-now", "arguments": {"ids": [1]}}));
    assert_eq!(by_id(&h), [4, 4, 4]);
    // torrent-start goes by queue order (3, 1, 2): 1 takes 2's slot.
    h.ok(json!({"method": "torrent-stop", "arguments": {"ids": [1]}}));
    h.ok(json!({"method": "torrent-start", "arguments": {"ids": [1]}}));
    assert_eq!(by_id(&h), [4, 3, 4]);
    // Stalled torrents hold no slot: with 0 minutes every running one is
    // stalled (the waiting one starts; then it is stalled too).
    h.ok(
        json!({"method": "session-set", "arguments": {"queue-stalled-enabled": true,
        "queue-stalled-minutes": 0}}),
    );
    assert_eq!(by_id(&h), [4, 4, 4]);
    assert_eq!(get(&h, &["isStalled"])[0]["isStalled"], true);
    h.ok(json!({"method": "session-set", "arguments": {"queue-stalled-minutes": 30}}));
    assert_eq!(get(&h, &["isStalled"])[0]["isStalled"], false);
    // Queue off: all run.
    h.ok(
        json!({"method": "session-set", "arguments": {"queue-stalled-enabled": false,
        "download-queue-enabled": false}}),
    );
    assert_eq!(by_id(&h), [4, 4, 4]);

    // Seeds: a seed queue of 1 after a restart with the data complete.
    h.ok(
        json!({"method": "session-set", "arguments": {"seed-queue-enabled": true,
        "seed-queue-size": 1}}),
    );
    let Harness { dir, .. } = h;
    let fake = Fake::default();
    fake.complete.lock().extend(t.iter().map(|b| hash_of(b)));
    let h = Harness::in_dir(dir, Access::default(), fake);
    // Queue order from before the restart: 3, 1, 2 (5 = queued to seed).
    assert_eq!(statuses(&h), [(6, 0), (5, 1), (5, 2)]);
    // /metrics counts them as queued.
    let r = h.raw("GET", "/metrics", &[("Host", "127.0.0.1:9091")], b"");
    let text = String::from_utf8(r.body).unwrap();
    assert!(
        text.contains("bittern_session_torrents{state=\"queued\"} 2")
            && text.contains("bittern_session_torrents{state=\"seeding\"} 1"),
        "{text}"
    );
}

#[test]
fn seed_ratio_and_idle_limits_stop_seeds() {
    let fake = Fake::default();
    fake.complete
        .lock()
        .extend([hash_of(&multi()), hash_of(&single())]);
    let h = Harness::in_dir(tempfile::tempdir().unwrap(), Access::default(), fake);
    h.add(&multi(), &h.data().join("dl"));
    h.add(&single(), &h.data().join("dl"));
    let t = h.rpc.torrents();
    let tick = || t.tick(Duration::from_secs(1), false);
    let states = |h: &Harness| -> Vec<(i64, bool)> {
        get(h, &["status", "isFinished"])
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["status"].as_i64().unwrap(),
                    t["isFinished"].as_bool().unwrap(),
                )
            })
            .collect()
    };
    tick();
    assert_eq!(states(&h), [(6, false), (6, false)]);
    // Session ratio 0.5: multi (300,000 bytes) has uploaded 150,000.
    h.ok(
        json!({"method": "session-set", "arguments": {"seedRatioLimit": 0.5,
        "seedRatioLimited": true}}),
    );
    h.fake
        .state
        .lock()
        .running
        .get_mut(&hash_of(&multi()))
        .unwrap()
        .1
        .uploaded = 149_999;
    tick();
    assert_eq!(states(&h), [(6, false), (6, false)], "not yet");
    h.fake
        .state
        .lock()
        .running
        .get_mut(&hash_of(&multi()))
        .unwrap()
        .1
        .uploaded = 150_000;
    tick();
    assert_eq!(states(&h), [(0, true), (6, false)]);
    // Own idle limit of 0 minutes: idle at once. Mode 2 on the other: never.
    h.ok(
        json!({"method": "torrent-set", "arguments": {"ids": [2], "seedIdleMode": 1,
        "seedIdleLimit": 0}}),
    );
    tick();
    assert_eq!(states(&h), [(0, true), (0, true)]);
    // Started again with an unlimited ratio it seeds on.
    h.ok(json!({"method": "torrent-set", "arguments": {"ids": [1], "seedRatioMode": 2}}));
    h.ok(json!({"method": "torrent-start", "arguments": {"ids": [1]}}));
    tick();
    assert_eq!(states(&h)[0], (6, false));
}

/// With a data root, no directory a client names leads outside it: not
/// through `..`, not through a symlink, not for any of the methods.
#[test]
fn directories_stay_inside_the_data_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(root.join("dl")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    let store = bittern_daemon::Store::open(&dir.path().join("config")).unwrap();
    store
        .save_settings(&bittern_daemon::Settings {
            data_root: root.to_string_lossy().into_owned(),
            download_dir: root.join("dl").to_string_lossy().into_owned(),
            ..Default::default()
        })
        .unwrap();
    let h = Harness::in_dir(dir, Access::default(), Fake::default());
    write(&root.join("dl/multi/a.txt"), b"aaa");
    h.ok(json!({"method": "torrent-add", "arguments": {"metainfo": b64(&multi())}}));
    let refused = |h: &Harness, method: &str, args: Value| {
        let r = h.post(&json!({"method": method, "arguments": args}));
        let msg = r["result"].as_str().unwrap().to_string();
        assert!(
            msg.contains("outside the data root") || msg.contains("`..`"),
            "{method} {args}: {msg}"
        );
    };
    let esc = root.join("escape/x");
    let dots = format!("{}/dl/../../outside", root.display());
    for loc in [json!(esc), json!(dots), json!(outside)] {
        refused(
            &h,
            "torrent-set-location",
            json!({"ids": 1, "location": loc, "move": true}),
        );
        refused(&h, "torrent-set", json!({"ids": 1, "location": loc}));
        refused(&h, "session-set", json!({"download-dir": loc}));
        refused(&h, "session-set", json!({"incomplete-dir": loc}));
        refused(
            &h,
            "torrent-add",
            json!({"metainfo": b64(&single()), "download-dir": loc}),
        );
    }
    assert_eq!(std::fs::read(root.join("dl/multi/a.txt")).unwrap(), b"aaa");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing got out"
    );
    assert_eq!(get(&h, &["id"]).as_array().unwrap().len(), 1);
    // Inside is fine, through a new folder too.
    let inside = root.join("moved/here");
    h.ok(json!({"method": "torrent-set-location",
        "arguments": {"ids": 1, "location": inside, "move": true}}));
    assert_eq!(std::fs::read(inside.join("multi/a.txt")).unwrap(), b"aaa");
}
