//! `bittern daemon` features driven by real clients on 127.0.0.1:
//! speed limits (session, per torrent, alternative, a torrent ignoring
//! the session's) changed with
//! `transmission-remote` while a download runs, measured in verified
//! bytes; `--reannounce` counted at a tracker; rename, bandwidth groups
//! and a move with the Python `transmission-rpc` package, checked on disk
//! and after a restart.

use std::process::Command;
use std::time::{Duration, Instant};

use bittern_tracker::server::{ServerConfig, TrackerServer};

use crate::daemon::{free_port, remote_ok, start_daemon, trpc_python, wait_list, REMOTE};
use crate::util::*;

fn have_remote() -> bool {
    bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    )
}

/// Verified bytes of torrent `id`, from the `Have:` line of
/// `transmission-remote -t ID -i` (units of 1000).
fn have(rpc: u16, id: &str) -> u64 {
    let text = remote_ok(rpc, &["-t", id, "-i"]);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Have:"))
        .unwrap_or_else(|| panic!("no Have: in {text}"));
    let mut w = line.split_whitespace().skip(1);
    let n = w.next().unwrap_or("None");
    if n == "None" {
        return 0;
    }
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("{line}"));
    let unit = match w.next() {
        Some("B") => 1.0,
        Some("kB") => 1e3,
        Some("MB") => 1e6,
        Some("GB") => 1e9,
        other => panic!("unit {other:?} in {line}"),
    };
    (n * unit) as u64
}

/// Bytes per second torrent 1 gains over `secs`.
fn rate_over(rpc: u16, secs: u64) -> f64 {
    let (h0, t0) = (have(rpc, "1"), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let h1 = have(rpc, "1");
    h1.saturating_sub(h0) as f64 / t0.elapsed().as_secs_f64()
}

/// A measured rate fits a limit of `kb` kB/s: at most the limit plus what
/// bursts and 16 KiB pieces in flight add over the span, and not stalled.
#[track_caller]
fn within(rate: f64, kb: f64, what: &str) {
    let limit = kb * 1000.0;
    eprintln!("{what}: measured {rate:.0} B/s");
    assert!(
        rate <= limit * 1.2 + 40_000.0 && rate >= limit * 0.25,
        "{what}: {rate:.0} B/s against a limit of {limit} B/s"
    );
}

#[test]
fn speed_limits_change_while_a_download_runs() {
    if !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = random_file(&t.join("src/b.bin"), 3_000_000, 31);
    let b = create(
        &t.join("src/b.bin"),
        &t.join("b.torrent"),
        &["--piece-length", "16KiB"],
    );
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let rpc = d.rpc;
    // The session limit is set on the running daemon, before the add.
    remote_ok(rpc, &["-d", "200"]);
    remote_ok(
        rpc,
        &[
            "-a",
            b.to_str().unwrap(),
            "-w",
            t.join("dl").to_str().unwrap(),
        ],
    );
    let (_seeder, _) = start_seed(
        &b,
        &t.join("src"),
        &["--peer", &format!("127.0.0.1:{}", d.peer)],
    );
    wait_until("first bytes", Duration::from_secs(30), || {
        have(rpc, "1") > 0
    });
    within(rate_over(rpc, 3), 200.0, "session limit 200 kB/s");
    // Per torrent, tighter: -t 1 -d 50.
    remote_ok(rpc, &["-t", "1", "-d", "50"]);
    std::thread::sleep(Duration::from_millis(500));
    within(rate_over(rpc, 3), 50.0, "torrent limit 50 kB/s");
    // Alternative limits: -asd 100 -as, the torrent's own lifted.
    remote_ok(rpc, &["-t", "1", "-D"]);
    remote_ok(rpc, &["-asd", "100", "-as"]);
    std::thread::sleep(Duration::from_millis(500));
    within(rate_over(rpc, 3), 100.0, "alternative limit 100 kB/s");
    assert!(have(rpc, "1") < 2_000_000, "still downloading");
    // Back to the session's 200 kB/s, but the torrent ignores it (-HL):
    // the last megabyte or more comes in well under the 5 s it would take.
    remote_ok(rpc, &["-AS"]);
    remote_ok(rpc, &["-t", "1", "-HL"]);
    let t0 = Instant::now();
    wait_list(rpc, "b complete", |l| l.len() == 1 && l[0].0 == "100%");
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "not limited by the session: {:?}",
        t0.elapsed()
    );
    assert!(std::fs::read(t.join("dl/b.bin")).unwrap() == data);
}

#[test]
fn reannounce_reaches_the_tracker() {
    if !have_remote() {
        return;
    }
    let tracker = TrackerServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            interval: Duration::from_secs(1800),
            min_interval: Duration::from_secs(1),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    random_file(&t.join("have/a.bin"), 200_000, 32);
    let a = create(
        &t.join("have/a.bin"),
        &t.join("a.torrent"),
        &["-t", &tracker.announce_url()],
    );
    let hash = bittern_wire::Metainfo::from_bytes(&std::fs::read(&a).unwrap())
        .unwrap()
        .info_hash;
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let rpc = d.rpc;
    remote_ok(
        rpc,
        &[
            "-a",
            a.to_str().unwrap(),
            "-w",
            t.join("have").to_str().unwrap(),
        ],
    );
    wait_list(rpc, "a seeding", |l| l.len() == 1 && l[0].0 == "100%");
    wait_until("started announce", Duration::from_secs(20), || {
        tracker.announce_count(&hash) >= 1
    });
    let started = Instant::now();
    let before = tracker.announce_count(&hash);
    // A manual announce waits for the min interval like Transmission's
    // (bittern floors a tracker's at 30 s); until then nothing else
    // announces, with an interval of 1800 s.
    std::thread::sleep(Duration::from_secs(31).saturating_sub(started.elapsed()));
    assert_eq!(
        tracker.announce_count(&hash),
        before,
        "no announce of its own within the 1800 s interval"
    );
    remote_ok(rpc, &["-t", "1", "--reannounce"]);
    wait_until("the reannounce", Duration::from_secs(10), || {
        tracker.announce_count(&hash) == before + 1
    });
    tracker.shutdown();
}

#[test]
fn python_client_renames_groups_and_moves() {
    let python = trpc_python();
    if !bittern_testkit::trpc_available() || !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let f = random_file(&t.join("have/dir/sub/f.bin"), 300_000, 33);
    let g = random_file(&t.join("have/dir/g.bin"), 100_000, 34);
    let torrent = create(&t.join("have/dir"), &t.join("dir.torrent"), &[]);
    let config = t.join("config");
    let mut d = start_daemon(&config, 0, 0, &[]);
    let moved = t.join("moved");
    let out = Command::new(&python)
        .arg(script("trpc_features.py"))
        .arg(d.rpc.to_string())
        .arg(&torrent)
        .arg(t.join("have"))
        .arg(&moved)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
    // On disk: renamed, then moved; nothing left behind.
    assert!(std::fs::read(moved.join("top/renamed/f.bin")).unwrap() == f);
    assert!(std::fs::read(moved.join("top/g.bin")).unwrap() == g);
    assert!(!t.join("have/dir").exists() && !t.join("have/top").exists());
    // After a restart: same names, same place, complete.
    d.proc.signal(libc::SIGTERM);
    assert_eq!(d.proc.wait(Duration::from_secs(30)).code(), Some(0));
    let d = start_daemon(&config, 0, 0, &[]);
    wait_list(d.rpc, "top complete", |l| {
        l.len() == 1 && l[0].0 == "100%" && l[0].2 == "top"
    });
    let files = remote_ok(d.rpc, &["-t", "1", "-f"]);
    assert!(
        files.contains("top/renamed/f.bin") && files.contains("top/g.bin"),
        "{files}"
    );
    let info = remote_ok(d.rpc, &["-t", "1", "-i"]);
    assert!(
        info.contains(&format!("Location: {}", moved.display())),
        "{info}"
    );
}

#[test]
fn seed_queue_with_python_and_transmission_remote() {
    let python = trpc_python();
    if !bittern_testkit::trpc_available() || !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let torrents: Vec<_> = (0..3)
        .map(|i| {
            let f = t.join(format!("have/q{i}.bin"));
            random_file(&f, 100_000, 40 + i);
            create(&f, &t.join(format!("q{i}.torrent")), &[])
        })
        .collect();
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let mut py = Command::new(&python);
    py.arg(script("trpc_queue.py"))
        .arg(d.rpc.to_string())
        .arg(t.join("have"))
        .args(&torrents);
    let out = py.output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
    // transmission-remote shows the waiting one as Queued, every row.
    // Now: 0 stopped, 1 (started now) and 2 seeding. Start 0: it is
    // first in the queue of one, so 2 waits; 1 runs outside the queue.
    remote_ok(d.rpc, &["-t", "1", "-s"]);
    wait_list(d.rpc, "2 queued", |l| {
        l.len() == 3 && l[0].1 == "Idle" && l[1].1 == "Idle" && l[2].1 == "Queued"
    });
}

/// `-c DIR` (incomplete dir) and `--torrent-done-script` with
/// transmission-remote: the data lives in the incomplete dir while it
/// downloads, moves to the download dir when complete, and the script
/// sees Transmission's variables. Then `-sr 1` stops a seed at ratio 1 as
/// a `bittern download` leecher takes a full copy: "Finished", and still
/// after a restart.
#[test]
fn incomplete_dir_done_script_and_seed_ratio() {
    if !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = random_file(&t.join("src/b.bin"), 2_000_000, 51);
    let b = create(
        &t.join("src/b.bin"),
        &t.join("b.torrent"),
        &["--piece-length", "16KiB"],
    );
    let hash = bittern_wire::Metainfo::from_bytes(&std::fs::read(&b).unwrap())
        .unwrap()
        .info_hash;
    let env_out = t.join("done.env");
    let script_path = t.join("done.sh");
    std::fs::write(
        &script_path,
        format!(
            "#!/bin/sh\nenv | grep '^TR_' > '{}.tmp'\nmv '{0}.tmp' '{0}'\n",
            env_out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &script_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (inc, dl) = (t.join("incomplete"), t.join("dl"));
    let config = t.join("config");
    let mut d = start_daemon(&config, 0, 0, &[]);
    let rpc = d.rpc;
    remote_ok(rpc, &["-c", inc.to_str().unwrap()]);
    remote_ok(
        rpc,
        &["--torrent-done-script", script_path.to_str().unwrap()],
    );
    remote_ok(rpc, &["-d", "400"]);
    remote_ok(
        rpc,
        &["-a", b.to_str().unwrap(), "-w", dl.to_str().unwrap()],
    );
    let (seeder, _) = start_seed(
        &b,
        &t.join("src"),
        &["--peer", &format!("127.0.0.1:{}", d.peer)],
    );
    wait_until("first bytes", Duration::from_secs(30), || {
        have(rpc, "1") > 0
    });
    assert!(
        inc.join("b.bin").exists(),
        "downloading into the incomplete dir"
    );
    assert!(!dl.join("b.bin").exists());
    let info = remote_ok(rpc, &["-t", "1", "-i"]);
    assert!(
        info.contains(&format!("Location: {}", dl.display())),
        "{info}"
    );
    remote_ok(rpc, &["-D"]);
    wait_until("b.bin in the download dir", Duration::from_secs(60), || {
        dl.join("b.bin").exists()
    });
    assert!(std::fs::read(dl.join("b.bin")).unwrap() == data);
    assert!(!inc.join("b.bin").exists(), "moved, not copied");
    wait_until("the done script", Duration::from_secs(20), || {
        env_out.exists()
    });
    let env = std::fs::read_to_string(&env_out).unwrap();
    for want in [
        "TR_TORRENT_NAME=b.bin".to_string(),
        format!("TR_TORRENT_DIR={}", dl.display()),
        format!("TR_TORRENT_HASH={}", hash.to_hex()),
        "TR_TORRENT_ID=1".into(),
        "TR_TORRENT_BYTES_DOWNLOADED=2000000".into(),
        "TR_APP_VERSION=4.0.6 (bittern".into(),
        "TR_TIME_LOCALTIME=".into(),
    ] {
        assert!(env.contains(&want), "{want} not in:\n{env}");
    }
    wait_list(rpc, "b seeding from dl", |l| {
        l.len() == 1 && l[0].0 == "100%"
    });
    // The first seed goes away: the leecher below must take every byte
    // from the daemon (it would otherwise learn the seed by PEX and take
    // part of the copy from it, leaving the daemon's ratio under 1).
    drop(seeder);

    // Seed ratio 1: a leecher takes one full copy, then b stops.
    remote_ok(rpc, &["-t", "1", "-sr", "1"]);
    let leech = t.join("leech");
    let mut leecher = Proc::spawn(cmd([
        "download",
        b.to_str().unwrap(),
        "-d",
        leech.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
        "--peer",
        &format!("127.0.0.1:{}", d.peer),
        "--exit-on-complete",
    ]));
    assert_eq!(leecher.wait(Duration::from_secs(60)).code(), Some(0));
    assert!(std::fs::read(leech.join("b.bin")).unwrap() == data);
    wait_list(rpc, "b finished at ratio 1", |l| l[0].1 == "Finished");
    // Stopped for good: the same after a restart.
    d.proc.signal(libc::SIGTERM);
    assert_eq!(d.proc.wait(Duration::from_secs(30)).code(), Some(0));
    let d = start_daemon(&config, 0, 0, &[]);
    std::thread::sleep(Duration::from_secs(2));
    wait_list(d.rpc, "b still finished", |l| l[0].1 == "Finished");
}

/// `bittern remote` against `bittern daemon` with a password: the 401
/// without `--auth`, then add (and a duplicate), list, stop, start,
/// info, remove with its data; an unreachable daemon is a network error.
#[test]
fn bittern_remote_drives_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    random_file(&t.join("have/a.bin"), 300_000, 61);
    let a = create(&t.join("have/a.bin"), &t.join("a.torrent"), &[]);
    let d = start_daemon(
        &t.join("config"),
        0,
        0,
        &["--rpc-username", "u", "--rpc-password", "pw"],
    );
    let url = format!("http://127.0.0.1:{}/transmission/rpc", d.rpc);
    let remote = |extra: &[&str]| {
        let mut args = vec!["remote", "--url", url.as_str()];
        args.extend_from_slice(extra);
        bittern(&args)
    };
    let r = remote(&["list"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("--auth"), "{}", r.stderr);
    let r = remote(&["--auth", "u:wrong", "list"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    let ok = |extra: &[&str]| {
        let mut args = vec!["--auth", "u:pw"];
        args.extend_from_slice(extra);
        let r = remote(&args);
        assert_eq!(r.code, Some(0), "{extra:?}: {r:?}");
        r.stdout
    };
    let have = t.join("have");
    let out = ok(&["add", a.to_str().unwrap(), "-w", have.to_str().unwrap()]);
    assert!(out.starts_with("added: a.bin (id 1, "), "{out}");
    let out = ok(&["add", a.to_str().unwrap()]);
    assert!(out.starts_with("already there: a.bin (id 1"), "{out}");
    let row = |out: &str| -> Vec<String> {
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].trim_start().starts_with("ID"), "{out}");
        lines[1..]
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    wait_until("seeding", Duration::from_secs(30), || {
        row(&ok(&["list"]))
            .first()
            .is_some_and(|l| l.starts_with("1 100% ") && l.contains(" Seeding a.bin"))
    });
    ok(&["stop", "1"]);
    wait_until("stopped", Duration::from_secs(10), || {
        row(&ok(&["list"]))[0].contains(" Stopped a.bin")
    });
    ok(&["start", "all"]);
    wait_until("seeding again", Duration::from_secs(10), || {
        row(&ok(&["list"]))[0].contains(" Seeding a.bin")
    });
    let info = ok(&["info", "1"]);
    assert!(
        info.contains("Name: a.bin") && info.contains(&format!("Location: {}", have.display())),
        "{info}"
    );
    assert!(info.contains("Done: 100.0%"), "{info}");
    assert_eq!(remote(&["--auth", "u:pw", "info", "x"]).code, Some(2));
    ok(&["remove", "1", "--delete"]);
    assert!(row(&ok(&["list"])).is_empty());
    assert!(!have.join("a.bin").exists(), "--delete removed the data");
    // Nobody there: a network error.
    let dead = format!("http://127.0.0.1:{}/transmission/rpc", free_port());
    let r = bittern(["remote", "--url", dead.as_str(), "list"]);
    assert_eq!(r.code, Some(4), "{r:?}");
}

/// `bittern daemon --data-root`: transmission-remote's `--move` through a
/// symlink leading outside, and `-w` outside, are refused with the
/// daemon's message; the data stays. A move inside works.
#[test]
fn data_root_refuses_escapes_from_transmission_remote() {
    if !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let root = t.join("root");
    let data = random_file(&root.join("have/a.bin"), 100_000, 71);
    let a = create(&root.join("have/a.bin"), &t.join("a.torrent"), &[]);
    std::fs::create_dir_all(t.join("outside")).unwrap();
    std::os::unix::fs::symlink(t.join("outside"), root.join("escape")).unwrap();
    let d = start_daemon(
        &t.join("config"),
        0,
        0,
        &["--data-root", root.to_str().unwrap()],
    );
    let rpc = d.rpc;
    let (_, out) = crate::daemon::remote(
        rpc,
        &[
            "-a",
            a.to_str().unwrap(),
            "-w",
            t.join("outside").to_str().unwrap(),
        ],
    );
    assert!(out.contains("outside the data root"), "{out}");
    remote_ok(
        rpc,
        &[
            "-a",
            a.to_str().unwrap(),
            "-w",
            root.join("have").to_str().unwrap(),
        ],
    );
    wait_list(rpc, "a seeding", |l| l.len() == 1 && l[0].0 == "100%");
    let escape = root.join("escape/stolen");
    let (_, out) = crate::daemon::remote(rpc, &["-t", "1", "--move", escape.to_str().unwrap()]);
    assert!(out.contains("outside the data root"), "{out}");
    assert!(std::fs::read(root.join("have/a.bin")).unwrap() == data);
    assert_eq!(std::fs::read_dir(t.join("outside")).unwrap().count(), 0);
    let inside = root.join("moved");
    remote_ok(rpc, &["-t", "1", "--move", inside.to_str().unwrap()]);
    assert!(std::fs::read(inside.join("a.bin")).unwrap() == data);
}

/// `bittern remote` against Debian's `transmission-daemon` 3.00 on
/// loopback (no DHT, LPD, PEX, UPnP or blocklist): the same commands work
/// with the real thing.
#[test]
fn bittern_remote_drives_transmission_daemon() {
    if !bittern_testkit::require(
        "transmission-daemon (Debian package transmission-daemon)",
        bittern_testkit::on_path("transmission-daemon"),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (rpc, peer) = (free_port(), free_port());
    let conf = t.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let dl = t.join("dl");
    std::fs::write(
        conf.join("settings.json"),
        serde_json::json!({
            "rpc-port": rpc, "rpc-bind-address": "127.0.0.1",
            "rpc-authentication-required": false, "rpc-whitelist": "127.0.0.1",
            "peer-port": peer, "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
            "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
            "port-forwarding-enabled": false, "utp-enabled": false,
            "blocklist-enabled": false, "download-dir": dl,
        })
        .to_string(),
    )
    .unwrap();
    let mut c = Command::new("transmission-daemon");
    c.args(["-f", "-g"]).arg(&conf);
    let _trd = Proc::spawn(c);
    random_file(&dl.join("x.bin"), 300_000, 81);
    let x = create(&dl.join("x.bin"), &t.join("x.torrent"), &[]);
    let url = format!("http://127.0.0.1:{rpc}/transmission/rpc");
    let remote = |extra: &[&str]| {
        let mut args = vec!["remote", "--url", url.as_str()];
        args.extend_from_slice(extra);
        bittern(&args)
    };
    wait_until("transmission-daemon's rpc", Duration::from_secs(20), || {
        remote(&["list"]).code == Some(0)
    });
    let r = remote(&["add", x.to_str().unwrap(), "-w", dl.to_str().unwrap()]);
    assert!(r.stdout.starts_with("added: x.bin (id 1, "), "{r:?}");
    wait_until("seeding", Duration::from_secs(30), || {
        remote(&["list"]).stdout.contains(" Seeding ")
    });
    assert_eq!(remote(&["stop", "all"]).code, Some(0));
    wait_until("stopped", Duration::from_secs(10), || {
        remote(&["list"]).stdout.contains(" Stopped ")
    });
    let info = remote(&["info", "1"]).stdout;
    assert!(
        info.contains("Name: x.bin") && info.contains("Done: 100.0%"),
        "{info}"
    );
    assert_eq!(remote(&["remove", "1"]).code, Some(0));
    let list = remote(&["list"]).stdout;
    assert_eq!(list.lines().count(), 1, "{list}");
}

/// The alternative-speed schedule set with transmission-remote
/// (`--alt-speed-time-begin/end`, `--alt-speed-days`, `-asc`): a window
/// covering all of today switches the turtle limits on, one on another day
/// switches them off, as `-si` shows.
#[test]
fn alt_speed_schedule_from_transmission_remote() {
    if !have_remote() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = start_daemon(&tmp.path().join("config"), 0, 0, &[]);
    let rpc = d.rpc;
    let turtle = || {
        let si = remote_ok(rpc, &["-si"]);
        let line = si
            .lines()
            .find(|l| l.contains("Download speed limit"))
            .unwrap_or_else(|| panic!("{si}"))
            .to_string();
        line.contains("Enabled turtle limit")
    };
    assert!(!turtle());
    remote_ok(
        rpc,
        &[
            "--alt-speed-time-begin",
            "0000",
            "--alt-speed-time-end",
            "0000",
            "-asc",
        ],
    );
    wait_until("turtle on", Duration::from_secs(5), turtle);
    // transmission-remote's days: 1 = Monday ... 7 = Sunday.
    let today = bittern_daemon::limits::local_now().0;
    let other = (today + 1) % 7;
    let number = if other == 0 { 7 } else { other };
    remote_ok(rpc, &["--alt-speed-days", &number.to_string()]);
    wait_until("turtle off", Duration::from_secs(5), || !turtle());
}
