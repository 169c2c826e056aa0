//! Issue 25, crash safety of the daemon's store: SIGKILL at random moments
//! while torrents are added, removed, moved (`torrent-set-location` with
//! `move`) and renamed (`torrent-rename-path`); after every restart each
//! torrent's data lies whole exactly where the store says, and every
//! acknowledged change is there. 20 kills by default,
//! `BITTERN_CRASH_ROUNDS=N` for a longer loop. And a config dir on a
//! full filesystem (a tmpfs this test mounts; root only).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::daemon::{free_port, start_daemon, Daemon};
use crate::daemon_attack::Client;
use crate::util::*;

const TORRENTS: usize = 6;

/// Where a torrent's data is: (directory, top name).
type Place = (PathBuf, String);

struct Fixture {
    dirs: [PathBuf; 2],
    meta: Vec<String>,
    /// Per torrent: relative path -> bytes.
    files: Vec<Vec<(PathBuf, Vec<u8>)>>,
}

fn names(k: usize) -> [String; 2] {
    [format!("t{k}"), format!("t{k}_r")]
}

impl Fixture {
    fn new(t: &Path) -> Fixture {
        let dirs = [t.join("a"), t.join("b")];
        std::fs::create_dir_all(&dirs[1]).unwrap();
        let mut meta = Vec::new();
        let mut files = Vec::new();
        for k in 0..TORRENTS {
            let top = dirs[0].join(format!("t{k}"));
            let seed = k as u64 * 10;
            random_file(&top.join("a.bin"), 20_000 + k, seed + 1);
            random_file(&top.join("sub/b.bin"), 30_000, seed + 2);
            let torrent = create(&top, &t.join(format!("t{k}.torrent")), &[]);
            meta.push(data_encoding::BASE64.encode(&std::fs::read(torrent).unwrap()));
            files.push(tree(&top));
        }
        Fixture { dirs, meta, files }
    }

    /// Every place holding something of torrent `k`.
    fn places(&self, k: usize) -> Vec<Place> {
        let mut out = Vec::new();
        for d in &self.dirs {
            for n in names(k) {
                if std::fs::symlink_metadata(d.join(&n)).is_ok() {
                    out.push((d.clone(), n));
                }
            }
        }
        out
    }

    /// Torrent `k`'s data lies whole at exactly one place: that place.
    fn whole(&self, k: usize, round: usize) -> Place {
        let places = self.places(k);
        assert_eq!(places.len(), 1, "round {round}: t{k} at {places:?}");
        let (d, n) = &places[0];
        assert!(
            tree(&d.join(n)) == self.files[k],
            "round {round}: t{k} at {} is not whole",
            d.join(n).display()
        );
        places[0].clone()
    }

    fn k_of(&self, name: &str) -> usize {
        (0..TORRENTS)
            .find(|&k| names(k).iter().any(|n| n == name))
            .unwrap_or_else(|| panic!("unknown torrent {name}"))
    }
}

/// The daemon's torrents: hash -> (k, place).
fn listed(c: &mut Client, fx: &Fixture, round: usize) -> HashMap<String, (usize, Place)> {
    let got = c.ok(json!({"method": "torrent-get",
        "arguments": {"fields": ["hashString", "name", "downloadDir"]}}));
    let mut out = HashMap::new();
    let mut ks = Vec::new();
    for t in got["torrents"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap().to_string();
        let k = fx.k_of(&name);
        ks.push(k);
        let place = (PathBuf::from(t["downloadDir"].as_str().unwrap()), name);
        let old = out.insert(t["hashString"].as_str().unwrap().to_string(), (k, place));
        assert!(old.is_none(), "round {round}: a hash listed twice: {got}");
    }
    ks.sort_unstable();
    ks.dedup();
    assert_eq!(ks.len(), out.len(), "round {round}: a torrent twice: {got}");
    out
}

/// What the test believes: per torrent, its hash and place when added.
#[derive(Default, Clone)]
struct Model {
    hash: HashMap<usize, String>,
    place: HashMap<usize, Option<Place>>,
}

/// Runs random operations until the daemon dies; the torrent of the
/// operation in flight goes into `inflight`.
fn churn(
    port: u16,
    fx: &Fixture,
    model: &Mutex<Model>,
    inflight: &Mutex<Option<usize>>,
    seed: u64,
) -> [usize; 4] {
    let mut c = Client::new(port);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Acknowledged: additions, removals, moves, renames.
    let mut done = [0; 4];
    loop {
        let k = rng.random_range(0..TORRENTS);
        let m = model.lock().unwrap().clone();
        let hash = m.hash.get(&k).cloned();
        *inflight.lock().unwrap() = Some(k);
        let (req, next, kind) = match m.place.get(&k).cloned().flatten() {
            None => {
                // Not in the daemon: its data goes back to its own name.
                let places = fx.places(k);
                let (dir, name) = places[0].clone();
                let base = format!("t{k}");
                if name != base {
                    std::fs::rename(dir.join(&name), dir.join(&base)).unwrap();
                }
                (
                    json!({"method": "torrent-add", "arguments": {"metainfo": fx.meta[k],
                        "download-dir": dir.to_str().unwrap(), "paused": true}}),
                    Some((dir, base)),
                    0,
                )
            }
            Some((dir, name)) => {
                let hash = hash.clone().unwrap();
                match rng.random_range(0..3) {
                    0 => (
                        json!({"method": "torrent-remove", "arguments": {"ids": [hash]}}),
                        None,
                        1,
                    ),
                    1 => {
                        let other = fx.dirs.iter().find(|d| **d != dir).unwrap().clone();
                        (
                            json!({"method": "torrent-set-location", "arguments": {"ids": [hash],
                                "location": other.to_str().unwrap(), "move": true}}),
                            Some((other, name)),
                            2,
                        )
                    }
                    _ => {
                        let to = names(k).into_iter().find(|n| *n != name).unwrap();
                        (
                            json!({"method": "torrent-rename-path", "arguments": {"ids": [hash],
                                "path": name, "name": to}}),
                            Some((dir, to)),
                            3,
                        )
                    }
                }
            }
        };
        let Ok(r) = c.try_post(&serde_json::to_vec(&req).unwrap()) else {
            return done;
        };
        assert_eq!(r["result"], "success", "{req} -> {r}");
        let mut m = model.lock().unwrap();
        if let Some(h) = r["arguments"]["torrent-added"]["hashString"].as_str() {
            m.hash.insert(k, h.to_string());
        }
        m.place.insert(k, next);
        drop(m);
        *inflight.lock().unwrap() = None;
        done[kind] += 1;
    }
}

fn start(config: &Path) -> (Daemon, Client) {
    let d = start_daemon(config, free_port(), free_port(), &[]);
    let c = Client::new(d.rpc);
    (d, c)
}

#[test]
fn store_survives_sigkill_during_add_remove_move_rename() {
    let rounds: usize = std::env::var("BITTERN_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let fx = Fixture::new(t);
    // As root, the second data dir is a tmpfs: moves between the two
    // copy across filesystems (copy, rename into place, remove).
    let _cross = if bittern_testkit::is_root() {
        bittern_testkit::Tmpfs::mount(&fx.dirs[1], "64m")
    } else {
        eprintln!("not root: every move stays on one filesystem (no copy across)");
        None
    };
    let config = t.join("config");
    let model = Mutex::new(Model::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    let (mut total_ops, mut in_flight_kills) = ([0; 4], 0);
    // The torrent whose operation the last kill cut.
    let mut last_cut: Option<usize> = None;
    let began = Instant::now();
    for round in 0..rounds {
        let (mut d, mut c) = start(&config);
        // The store after the restart matches the disk and the model.
        let list = listed(&mut c, &fx, round);
        let inflight: Arc<Mutex<Option<usize>>> = Arc::default();
        {
            let m = model.lock().unwrap();
            for (hash, (k, place)) in &list {
                let at = fx.whole(*k, round);
                assert_eq!(
                    &at, place,
                    "round {round}: t{k} ({hash}): the store says {place:?}, the data is at {at:?}"
                );
            }
            for k in 0..TORRENTS {
                fx.whole(k, round);
                if let Some(expected) = m.place.get(&k) {
                    let got = list
                        .values()
                        .find(|(kk, _)| *kk == k)
                        .map(|(_, p)| p.clone());
                    if got != *expected {
                        // Only the operation cut by the kill may differ.
                        assert!(
                            last_cut == Some(k),
                            "round {round}: t{k} acknowledged at {expected:?}, listed {got:?}"
                        );
                    }
                }
            }
        }
        // Resynchronise with what the daemon says.
        {
            let mut m = model.lock().unwrap();
            m.place = (0..TORRENTS).map(|k| (k, None)).collect();
            for (hash, (k, place)) in list {
                m.hash.insert(k, hash);
                m.place.insert(k, Some(place));
            }
        }
        let kill_after = Duration::from_millis(rng.random_range(20..400));
        let seed = rng.random();
        let ops = std::thread::scope(|s| {
            let h = s.spawn(|| churn(d.rpc, &fx, &model, &inflight, seed));
            std::thread::sleep(kill_after);
            d.proc.signal(libc::SIGKILL);
            d.proc.wait(Duration::from_secs(10));
            h.join().unwrap()
        });
        for (t, n) in total_ops.iter_mut().zip(ops) {
            *t += n;
        }
        let cut = *inflight.lock().unwrap();
        in_flight_kills += usize::from(cut.is_some());
        last_cut = cut;
        drop(c);
    }
    // A last restart, checked as the others.
    let (_d, mut c) = start(&config);
    let list = listed(&mut c, &fx, rounds);
    for (k, place) in list.values() {
        assert_eq!(&fx.whole(*k, rounds), place);
    }
    let leftovers: Vec<_> = fx
        .dirs
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    eprintln!(
        "{rounds} SIGKILLs in {:?}: operations acknowledged (add, remove, move, rename) \
         {total_ops:?}, {in_flight_kills} \
         kills with an operation in flight; store and disk consistent after each; \
         partial copies left by kills: {leftovers:?}",
        began.elapsed()
    );
    assert!(leftovers.is_empty(), "partial copies left: {leftovers:?}");
    // All four operations ran between the kills.
    assert!(total_ops.iter().all(|n| *n > 0), "{total_ops:?}");
    assert!(
        rounds < 20 || in_flight_kills > 0,
        "no kill cut an operation"
    );
}

/// Every file under the config dir: relative path -> bytes.
fn snapshot(dir: &Path) -> HashMap<PathBuf, Vec<u8>> {
    tree(dir).into_iter().collect()
}

fn add(c: &mut Client, fx: &Fixture, k: usize) -> Value {
    c.call(
        json!({"method": "torrent-add", "arguments": {"metainfo": fx.meta[k],
        "download-dir": fx.dirs[0].to_str().unwrap(), "paused": true}}),
    )
}

#[test]
fn a_full_config_filesystem_fails_additions_and_never_truncates_the_store() {
    if !bittern_testkit::require("root (to mount a tmpfs)", bittern_testkit::is_root()) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let fx = Fixture::new(t);
    let config = t.join("config");
    std::fs::create_dir_all(&config).unwrap();
    let Some(_fs) = bittern_testkit::Tmpfs::mount(&config, "1m") else {
        return;
    };
    let (mut d, mut c) = start(&config);
    let mut hashes = Vec::new();
    for k in 0..2 {
        let r = add(&mut c, &fx, k);
        assert_eq!(r["result"], "success", "{r}");
        hashes.push(
            r["arguments"]["torrent-added"]["hashString"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // Fill the filesystem.
    let filler = config.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let before = snapshot(&config);
    // An addition fails with a clear error; so do a move and a rename,
    // which leave the data where it is.
    let r = add(&mut c, &fx, 2);
    let err = r["result"].as_str().unwrap();
    eprintln!("torrent-add on a full config dir: {err}");
    assert!(err.contains("No space left on device"), "{r}");
    let r = c.call(
        json!({"method": "torrent-set-location", "arguments": {"ids": [hashes[0]],
        "location": fx.dirs[1].to_str().unwrap(), "move": true}}),
    );
    assert!(
        r["result"].as_str().unwrap().contains("No space left"),
        "{r}"
    );
    assert!(fx.dirs[0].join("t0").exists() && !fx.dirs[1].join("t0").exists());
    let r = c.call(
        json!({"method": "torrent-rename-path", "arguments": {"ids": [hashes[1]],
        "path": "t1", "name": "t1_r"}}),
    );
    assert!(
        r["result"].as_str().unwrap().contains("No space left"),
        "{r}"
    );
    assert!(fx.dirs[0].join("t1").exists());
    // Settings and records that cannot be saved stay as they were.
    let r = c.call(json!({"method": "session-set", "arguments": {"speed-limit-down": 77}}));
    assert!(
        r["result"].as_str().unwrap().contains("No space left"),
        "{r}"
    );
    // A torrent-set the store cannot hold is refused (it answered
    // success, was saved later, and lost by a kill before that), and
    // changes nothing.
    let r = c.call(
        json!({"method": "torrent-set", "arguments": {"ids": [hashes[0]],
        "labels": ["full"], "uploadLimit": 7}}),
    );
    assert!(
        r["result"].as_str().unwrap().contains("No space left"),
        "torrent-set on a full config dir: {r}"
    );
    let got = c.ok(
        json!({"method": "torrent-get", "arguments": {"ids": [hashes[0]],
        "fields": ["labels", "uploadLimit"]}}),
    );
    assert_eq!(got["torrents"][0]["labels"], json!([]), "{got}");
    assert_ne!(got["torrents"][0]["uploadLimit"], 7, "{got}");
    // Starting runs the torrents but says the state could not be saved.
    let r = c.call(json!({"method": "torrent-start", "arguments": {"ids": hashes}}));
    assert!(
        r["result"].as_str().unwrap().contains("No space left"),
        "torrent-start on a full config dir: {r}"
    );
    std::thread::sleep(Duration::from_millis(2500));
    let during = snapshot(&config);
    for (path, bytes) in &before {
        let now = during
            .get(path)
            .unwrap_or_else(|| panic!("{} vanished", path.display()));
        if path.extension().is_some_and(|e| e == "json") {
            assert!(!now.is_empty(), "{} truncated", path.display());
            serde_json::from_slice::<Value>(now)
                .unwrap_or_else(|e| panic!("{} corrupt: {e}", path.display()));
        } else if path.extension().is_some_and(|e| e == "torrent") {
            assert_eq!(now, bytes, "{} changed", path.display());
        }
    }
    let temps: Vec<_> = during
        .keys()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "temp files left: {temps:?}");
    // Space returns: the daemon takes additions and moves again, and a
    // restart after SIGKILL lists them.
    std::fs::remove_file(&filler).unwrap();
    let r = add(&mut c, &fx, 2);
    assert_eq!(r["result"], "success", "{r}");
    c.ok(
        json!({"method": "torrent-set-location", "arguments": {"ids": [hashes[0]],
        "location": fx.dirs[1].to_str().unwrap(), "move": true}}),
    );
    c.ok(
        json!({"method": "torrent-set", "arguments": {"ids": [hashes[1]],
        "labels": ["kept"]}}),
    );
    d.proc.signal(libc::SIGKILL);
    d.proc.wait(Duration::from_secs(10));
    drop(d);
    let (_d, mut c) = start(&config);
    let list = listed(&mut c, &fx, 0);
    let mut ks: Vec<usize> = list.values().map(|(k, _)| *k).collect();
    ks.sort_unstable();
    assert_eq!(ks, [0, 1, 2]);
    for (k, place) in list.values() {
        assert_eq!(&fx.whole(*k, 0), place);
    }
    assert_eq!(list[&hashes[0]].1 .0, fx.dirs[1]);
    let got = c.ok(json!({"method": "torrent-get", "arguments": {"ids": hashes,
        "fields": ["hashString", "labels"]}}));
    for t in got["torrents"].as_array().unwrap() {
        let want = if t["hashString"] == hashes[1].as_str() {
            json!(["kept"])
        } else {
            json!([])
        };
        assert_eq!(t["labels"], want, "{got}");
    }
}
