//! `bittern daemon` driven by a real Transmission client: Debian's
//! `transmission-remote` 3.00 (package `transmission-cli`) adds a torrent
//! whose data is in place (it seeds) and one that downloads from a
//! `bittern seed` on loopback (byte-identical), lists, stops and starts,
//! moves, removes; the daemon is restarted gracefully and after SIGKILL and lists
//! the same torrents in the same states. All on 127.0.0.1.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

pub(crate) const REMOTE: &str = "transmission-remote";

/// A running daemon and the ports it printed.
pub(crate) struct Daemon {
    pub proc: Proc,
    pub rpc: u16,
    pub peer: u16,
}

fn port_of(line: &str) -> u16 {
    let tail = line.rsplit(':').next().unwrap();
    tail.trim_end_matches("/transmission/rpc")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no port in {line:?}"))
}

pub(crate) fn start_daemon(config: &Path, rpc_port: u16, peer_port: u16, extra: &[&str]) -> Daemon {
    let port = peer_port.to_string();
    let mut args = vec!["-p", &port];
    args.extend_from_slice(extra);
    start_daemon_args(config, rpc_port, &args)
}

/// [`start_daemon`] without `-p`: peers on 127.0.0.1 at the settings' port.
pub(crate) fn start_daemon_args(config: &Path, rpc_port: u16, extra: &[&str]) -> Daemon {
    let mut args = vec![
        "daemon".to_string(),
        "--config-dir".into(),
        config.display().to_string(),
        "--rpc-port".into(),
        rpc_port.to_string(),
        "--peer-bind".into(),
        "127.0.0.1".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let proc = Proc::spawn(cmd(&args));
    let rpc = port_of(&proc.wait_line("rpc listening on", Duration::from_secs(20)));
    let peer = port_of(&proc.wait_line("peers listening on", Duration::from_secs(5)));
    Daemon { proc, rpc, peer }
}

/// Runs transmission-remote against the daemon; returns (exit code, stdout).
pub(crate) fn remote(rpc: u16, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(REMOTE)
        .arg(format!("127.0.0.1:{rpc}"))
        .args(args)
        .output()
        .expect("run transmission-remote");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

pub(crate) fn remote_ok(rpc: u16, args: &[&str]) -> String {
    let (code, text) = remote(rpc, args);
    assert_eq!(code, Some(0), "transmission-remote {args:?}: {text}");
    text
}

/// `-l` rows as (done, status, name): the id and rates left out.
pub(crate) fn list(rpc: u16) -> Vec<(String, String, String)> {
    let text = remote_ok(rpc, &["-l"]);
    let mut lines = text.lines();
    assert!(
        lines
            .next()
            .is_some_and(|h| h.trim_start().starts_with("ID")),
        "{text}"
    );
    lines
        .take_while(|l| !l.starts_with("Sum:"))
        .map(|l| {
            // ID Done Have ETA Up Down Ratio Status Name: the status is
            // the words between the ratio (a number, None or Inf) and the
            // name (no spaces in these tests).
            let t: Vec<&str> = l.split_whitespace().collect();
            let name = t[t.len() - 1].to_string();
            let done = t[1].to_string();
            let ratio = t[..t.len() - 1]
                .iter()
                .rposition(|w| w.parse::<f64>().is_ok() || *w == "None" || *w == "Inf")
                .unwrap_or_else(|| panic!("no ratio in {l:?}"));
            let status = t[ratio + 1..t.len() - 1].join(" ");
            (done, status, name)
        })
        .collect()
}

pub(crate) fn wait_list(rpc: u16, what: &str, cond: impl Fn(&[(String, String, String)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let l = list(rpc);
        if cond(&l) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what}: {l:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn transmission_remote_drives_the_daemon_across_restarts() {
    if !bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let config = t.join("config");
    // A: data already in place -> it seeds. B: downloads from a seeder.
    random_file(&t.join("have/a.bin"), 1_500_000, 11);
    let b_data = random_file(&t.join("src/b.bin"), 2_000_000, 12);
    let a = create(&t.join("have/a.bin"), &t.join("a.torrent"), &[]);
    let b = create(&t.join("src/b.bin"), &t.join("b.torrent"), &[]);
    let (rpc, peer) = (free_port(), free_port());
    let mut d = start_daemon(&config, rpc, peer, &[]);
    assert_eq!((d.rpc, d.peer), (rpc, peer));

    let out = remote_ok(
        rpc,
        &[
            "-a",
            a.to_str().unwrap(),
            "-w",
            t.join("have").to_str().unwrap(),
        ],
    );
    assert!(out.contains("success"), "{out}");
    wait_list(rpc, "seeding a", |l| {
        l == [("100%".into(), "Idle".into(), "a.bin".into())]
    });
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
        &["--peer", &format!("127.0.0.1:{peer}")],
    );
    wait_list(rpc, "b downloaded", |l| {
        l.len() == 2 && l[1].0 == "100%" && l[1].2 == "b.bin"
    });
    assert!(
        std::fs::read(t.join("dl/b.bin")).unwrap() == b_data,
        "downloaded data is byte-identical"
    );
    // -i and -f print what the daemon says.
    let info = remote_ok(rpc, &["-t", "2", "-i"]);
    assert!(
        info.contains("Name: b.bin") && info.contains("Percent Done: 100%"),
        "{info}"
    );
    let files = remote_ok(rpc, &["-t", "1", "-f"]);
    assert!(
        files.contains("a.bin (1 files)") && files.contains("1.50 MB"),
        "{files}"
    );

    // Stop and start.
    remote_ok(rpc, &["-t", "1", "-S"]);
    wait_list(rpc, "a stopped", |l| l[0].1 == "Stopped");
    remote_ok(rpc, &["-t", "1", "-s"]);
    wait_list(rpc, "a started", |l| l[0].1 != "Stopped");
    remote_ok(rpc, &["-t", "2", "-S"]);
    wait_list(rpc, "b stopped", |l| l[1].1 == "Stopped");
    let before = list(rpc);

    // Graceful restart (SIGTERM), then SIGKILL: same list both times.
    d.proc.signal(libc::SIGTERM);
    let status = d.proc.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    // Both torrents' resume state is saved (also the one only checked,
    // never downloaded), so a restart need not hash them again.
    let resumes = std::fs::read_dir(config.join("resume"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "resume"))
        })
        .count();
    assert_eq!(resumes, 2);
    let mut d = start_daemon(&config, rpc, peer, &["-vv"]);
    wait_list(rpc, "the same list after a graceful restart", |l| {
        l == before
    });
    let vouched = d
        .proc
        .wait_stderr("resume state vouches", Duration::from_secs(5), |l| {
            l.contains("resume state vouches for")
        });
    let lines = d.proc.stderr.lock().unwrap().clone();
    assert!(
        lines.contains("vouches for 92 pieces (92 durable)")
            && lines.contains("vouches for 123 pieces (123 durable)"),
        "no rehash after a graceful restart: {vouched}\n{lines}"
    );
    d.proc.signal(libc::SIGKILL);
    d.proc.wait(Duration::from_secs(10));
    let d = start_daemon(&config, rpc, peer, &["-vv"]);
    wait_list(rpc, "the same list after SIGKILL", |l| l == before);
    // The resume state written before the kill still vouches: no rehash
    // after a SIGKILL either.
    let vouched = d
        .proc
        .wait_stderr("resume state vouches", Duration::from_secs(5), |l| {
            l.contains("resume state vouches for")
        });
    let lines = d.proc.stderr.lock().unwrap().clone();
    assert!(
        lines.contains("vouches for 92 pieces (92 durable)")
            && lines.contains("vouches for 123 pieces (123 durable)"),
        "no rehash after SIGKILL: {vouched}\n{lines}"
    );

    // --move: the data goes along and is still complete there.
    let moved = t.join("moved");
    remote_ok(rpc, &["-t", "1", "--move", moved.to_str().unwrap()]);
    assert!(moved.join("a.bin").exists() && !t.join("have/a.bin").exists());
    wait_list(rpc, "a complete after --move", |l| {
        l[0] == ("100%".into(), "Idle".into(), "a.bin".into())
    });
    // Remove a (data kept), remove-and-delete b (data gone).
    remote_ok(rpc, &["-t", "1", "-r"]);
    wait_list(rpc, "a removed", |l| l.len() == 1 && l[0].2 == "b.bin");
    assert!(moved.join("a.bin").exists());
    remote_ok(rpc, &["-t", "all", "--remove-and-delete"]);
    wait_list(rpc, "b removed", |l| l.is_empty());
    assert!(!t.join("dl/b.bin").exists());
    // --exit (session-close) stops it.
    remote_ok(rpc, &["--exit"]);
    let mut d = d;
    assert_eq!(d.proc.wait(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn transmission_remote_with_auth() {
    if !bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = start_daemon(
        &tmp.path().join("config"),
        0,
        0,
        &["--rpc-username", "u", "--rpc-password", "p w"],
    );
    let (code, text) = remote(d.rpc, &["-l"]);
    assert_ne!(code, Some(0), "no credentials: refused ({text})");
    let (code, _) = remote(d.rpc, &["-n", "u:wrong", "-l"]);
    assert_ne!(code, Some(0));
    let si = remote_ok(d.rpc, &["-n", "u:p w", "-si"]);
    assert!(si.contains("RPC version: 17"), "{si}");
}

#[test]
fn daemon_refuses_a_public_rpc_address_without_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let r = bittern([
        "daemon",
        "--config-dir",
        tmp.path().to_str().unwrap(),
        "--rpc-bind",
        "0.0.0.0",
        "--rpc-port",
        "0",
        "-p",
        "0",
        "--peer-bind",
        "127.0.0.1",
    ]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("without a password"), "{}", r.stderr);
}

/// The venv interpreter with PyPI's transmission-rpc that
/// `scripts/test.sh` makes (`BITTERN_TRPC_PYTHON` overrides).
pub(crate) fn trpc_python() -> std::path::PathBuf {
    bittern_testkit::trpc_python()
}

#[test]
fn python_transmission_rpc_drives_the_daemon() {
    let python = trpc_python();
    if !bittern_testkit::trpc_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    random_file(&t.join("have/a.bin"), 1_500_000, 21);
    let a = create(&t.join("have/a.bin"), &t.join("a.torrent"), &[]);
    let d = start_daemon(&t.join("config"), 0, 0, &[]);
    let out = Command::new(&python)
        .arg(script("trpc_client.py"))
        .arg(d.rpc.to_string())
        .arg(&a)
        .arg(t.join("have"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains("OK"), "{text}");
}

/// The restart test of issue 20: 20 torrents in several states (seeding,
/// stopped, incomplete with no peer to download from), SIGKILL once the
/// periodic save has written their resume state (no graceful stop), then
/// start again: the same list, and every torrent with data comes back on
/// its resume state's word, without a full rehash.
#[test]
fn twenty_torrents_survive_sigkill_without_a_rehash() {
    if !bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let config = t.join("config");
    let mut d = start_daemon(&config, 0, 0, &[]);
    let rpc = d.rpc;
    let (src, empty) = (t.join("src"), t.join("empty"));
    for i in 0..20u64 {
        let name = format!("t{i:02}.bin");
        random_file(&src.join(&name), 40_000 + 1_000 * i as usize, 700 + i);
        let torrent = create(
            &src.join(&name),
            &t.join(format!("{name}.torrent")),
            &["--piece-length", "16KiB"],
        );
        // The first 15 find their data; the last 5 download into an
        // empty directory from nobody.
        let dir = if i < 15 { &src } else { &empty };
        remote_ok(
            rpc,
            &["-a", torrent.to_str().unwrap(), "-w", dir.to_str().unwrap()],
        );
    }
    wait_list(rpc, "15 complete, 5 empty", |l| {
        l.len() == 20
            && l[..15].iter().all(|r| r.0 == "100%")
            && l[15..].iter().all(|r| r.0 == "0%")
    });
    remote_ok(rpc, &["-t", "1-5", "-S"]);
    wait_list(rpc, "five stopped", |l| {
        l.iter().filter(|r| r.1 == "Stopped").count() == 5
    });
    // The periodic save (every 30 s while something changed) writes the
    // resume state of every torrent with data.
    let resumes = || {
        std::fs::read_dir(config.join("resume"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "resume"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    wait_until("resume state saved", Duration::from_secs(90), || {
        resumes() >= 15
    });
    let before = list(rpc);
    d.proc.signal(libc::SIGKILL);
    d.proc.wait(Duration::from_secs(10));
    let d = start_daemon(&config, rpc, d.peer, &["-vv"]);
    wait_list(rpc, "the same 20 after SIGKILL", |l| l == before);
    let vouched = || {
        d.proc
            .stderr
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains("resume state vouches for") && !l.contains("for 0 pieces"))
            .count()
    };
    wait_until("15 torrents vouched for", Duration::from_secs(30), || {
        vouched() >= 15
    });
    let text = d.proc.stderr.lock().unwrap().clone();
    assert_eq!(vouched(), 15, "{text}");
}
