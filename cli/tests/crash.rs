//! Crash safety and stopping: SIGKILL in the middle of a download, then
//! restarts; SIGTERM/SIGINT write resume state and send the tracker
//! `stopped`; broken trackers never hold up a download by `--peer` or a
//! shutdown. (The long version of the kill test is
//! `benches/reliability/crash.py`.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bittern_storage::{Backend, FilePool, FileSpec, Layout, ResumeState, Storage};
use bittern_wire::Metainfo;

use crate::util::*;

/// Which pieces of the single-file torrent in `dir` hold their right bytes.
fn intact(meta: &Metainfo, dir: &Path) -> Vec<bool> {
    let files = vec![FileSpec {
        path: meta.info.name.clone().into(),
        length: meta.info.total_length(),
        padding: false,
    }];
    let layout = Layout::new(files, meta.info.piece_length, meta.info.pieces.clone()).unwrap();
    let storage = Storage::new(
        layout,
        dir.to_path_buf(),
        Arc::new(FilePool::new(2)),
        Backend::default(),
    )
    .unwrap();
    (0..meta.info.piece_count())
        .map(|i| storage.check_piece(i).unwrap_or(false))
        .collect()
}

fn resume_path(dst: &Path, meta: &Metainfo) -> PathBuf {
    dst.join(".bittern")
        .join(format!("{}.resume", meta.info_hash.to_hex()))
}

/// Every piece the resume file records as had is intact on disk; returns
/// how many it records (0 without a resume file).
fn resume_claims_hold(dst: &Path, meta: &Metainfo, ok: &[bool]) -> usize {
    let path = resume_path(dst, meta);
    if !path.exists() {
        return 0;
    }
    let state = ResumeState::load(&path).expect("a resume file torn by SIGKILL");
    let had: Vec<usize> = (0..ok.len()).filter(|i| state.have[*i]).collect();
    for i in &had {
        assert!(
            ok[*i],
            "resume state claims piece {i}, which is bad on disk"
        );
    }
    had.len()
}

fn download_args(t: &Path, dst: &Path, port: u16, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "download".to_string(),
        t.display().to_string(),
        "-d".into(),
        dst.display().to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "-p".into(),
        "0".into(),
        "--peer".into(),
        format!("127.0.0.1:{port}"),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn sigkill_mid_download_then_restart_finishes_with_identical_data() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let total = 6 << 20;
    let data = random_file(&src.join("k.bin"), total, 21);
    let t = create(
        &src.join("k.bin"),
        &tmp.path().join("k.torrent"),
        &["--piece-length", "32KiB"],
    );
    let meta = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
    let (mut seed, port) = start_seed(&t, &src, &[]);
    let dst = tmp.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    // A partly present file: the first start has something to check.
    std::fs::write(dst.join("k.bin"), &data[..total / 3]).unwrap();
    let missing_at_start = total - total / 3;

    let limited = download_args(
        &t,
        &dst,
        port,
        &["--exit-on-complete", "--download-limit", "512KiB/s"],
    );
    let mut last_ok = 0;
    let delays = [300u64, 1300, 1800];
    for (k, ms) in delays.iter().enumerate() {
        let p = Proc::spawn(cmd(&limited));
        p.wait_line("listening on", Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(*ms));
        p.signal(libc::SIGKILL);
        let mut p = p;
        let status = p.wait(Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "run {k} ended before the kill: {:?}",
            p.finish(status)
        );
        let ok = intact(&meta, &dst);
        let good = ok.iter().filter(|x| **x).count();
        let claimed = resume_claims_hold(&dst, &meta, &ok);
        eprintln!(
            "kill {}: {good} of {} pieces intact, resume claims {claimed}",
            k + 1,
            ok.len()
        );
        assert!(
            good >= last_ok,
            "a kill lost verified pieces: {good} < {last_ok}"
        );
        last_ok = good;
    }
    assert!(
        last_ok < meta.info.piece_count(),
        "finished before the last kill"
    );
    // Unlimited, to completion.
    let r = run_limited(
        cmd(download_args(&t, &dst, port, &["--exit-on-complete"])),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(std::fs::read(dst.join("k.bin")).unwrap(), data);
    let (down, have, _) = summary(&r.stdout);
    assert_eq!(have, total as u64);
    let plen = meta.info.piece_length;
    let left = (meta.info.piece_count() - last_ok) as u64 * plen;
    assert!(
        down <= left,
        "the last run fetched {down} bytes for {left} missing"
    );
    // What the seeder sent over all runs, over what was missing.
    seed.signal(libc::SIGTERM);
    let status = seed.wait(Duration::from_secs(20));
    let out = seed.finish(status);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(" uploaded "))
        .unwrap_or_else(|| panic!("{out:?}"));
    let up: u64 = line
        .split(" uploaded ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    eprintln!(
        "3 kills: the seeder sent {up} bytes for {missing_at_start} missing ({:.2}x)",
        up as f64 / missing_at_start as f64
    );
    assert!(up >= missing_at_start as u64);
}

/// A scripted HTTP tracker that records each request line and answers
/// with an empty peer list (or `reply` bytes, or nothing when `silent`).
struct ScriptedTracker {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedTracker {
    fn start(reply: Option<&'static [u8]>) -> ScriptedTracker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, stop2) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                reqs.lock().unwrap().push(line);
                match reply {
                    Some(body) => {
                        let _ = write!(
                            s,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = s.write_all(body);
                    }
                    // Silent: keep the socket open, never answer.
                    None => held.push(s),
                }
            }
        });
        ScriptedTracker {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptedTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const EMPTY_REPLY: &[u8] = b"d8:intervali1800e5:peers0:e";

#[test]
fn sigterm_and_sigint_save_resume_state_and_announce_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let tracker = ScriptedTracker::start(Some(EMPTY_REPLY));
    let src = tmp.path().join("src");
    let total = 4 << 20;
    let data = random_file(&src.join("g.bin"), total, 22);
    let t = create(
        &src.join("g.bin"),
        &tmp.path().join("g.torrent"),
        &["--piece-length", "32KiB", "-t", &tracker.url],
    );
    let meta = Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
    let (_seed, port) = start_seed(&t, &src, &[]);
    let dst = tmp.path().join("dst");
    let hash_param = bittern_tracker::percent::encode(&meta.info_hash.0);
    for (sig, code) in [(libc::SIGTERM, 130), (libc::SIGINT, 130)] {
        let before = tracker.requests().len();
        let p = Proc::spawn(cmd(download_args(
            &t,
            &dst,
            port,
            &[
                "--exit-on-complete",
                "--download-limit",
                "1MiB/s",
                "--status-interval",
                "100ms",
            ],
        )));
        p.wait_line("listening on", Duration::from_secs(20));
        // Signal once pieces are verified and the tracker has our start.
        p.wait_stderr("progress above 0%", Duration::from_secs(30), shows_progress);
        wait_until("the started announce", Duration::from_secs(20), || {
            tracker.requests()[before..]
                .iter()
                .any(|r| r.contains(&hash_param) && r.contains("event=started"))
        });
        p.signal(sig);
        let stopped_at = Instant::now();
        let mut p = p;
        let status = p.wait(Duration::from_secs(20));
        let took = stopped_at.elapsed();
        let out = p.finish(status);
        assert_eq!(out.code, Some(code), "signal {sig}: {out:?}");
        let (_, have, _) = summary(&out.stdout);
        assert!(have > 0 && have < total as u64, "{out:?}");
        // (130: interrupted before finishing, as documented.) Resume state
        // written, and true.
        let ok = intact(&meta, &dst);
        let claimed = resume_claims_hold(&dst, &meta, &ok);
        let plen = meta.info.piece_length;
        assert_eq!(
            claimed as u64 * plen,
            have,
            "signal {sig}: resume state does not hold what the summary reports"
        );
        let reqs = tracker.requests()[before..].to_vec();
        eprintln!("signal {sig}: stopped in {took:?}; tracker saw {reqs:?}");
        let ours: Vec<&String> = reqs.iter().filter(|r| r.contains(&hash_param)).collect();
        assert!(
            ours.first().is_some_and(|r| r.contains("event=started")),
            "{reqs:?}"
        );
        assert!(
            ours.last().is_some_and(|r| r.contains("event=stopped")),
            "signal {sig}: no stopped announce: {reqs:?}"
        );
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // And the next start trusts that state and finishes.
    let r = run_limited(
        cmd(download_args(&t, &dst, port, &["--exit-on-complete"])),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(std::fs::read(dst.join("g.bin")).unwrap(), data);
}

#[test]
fn broken_trackers_hold_up_neither_peers_nor_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let silent = ScriptedTracker::start(None);
    let garbage = ScriptedTracker::start(Some(b"<html>502 bad gateway</html>"));
    let udp_silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_url = format!("udp://{}/announce", udp_silent.local_addr().unwrap());
    // A closed port: bind, note the port, close.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/announce", l.local_addr().unwrap())
    };
    let src = tmp.path().join("src");
    let total = 2 << 20;
    let data = random_file(&src.join("b.bin"), total, 23);
    let trackers = [&silent.url, &garbage.url, &udp_url, &closed];
    let mut create_args = vec!["--piece-length", "32KiB"];
    for u in &trackers {
        create_args.extend(["-t", u.as_str()]);
    }
    let t = create(
        &src.join("b.bin"),
        &tmp.path().join("b.torrent"),
        &create_args,
    );
    let (_seed, port) = start_seed(&t, &src, &[]);

    // --peer works while every tracker is broken, and the exit after
    // completion does not wait on them.
    let dst = tmp.path().join("dst");
    let start = Instant::now();
    let r = run_limited(
        cmd(download_args(&t, &dst, port, &["--exit-on-complete"])),
        Duration::from_secs(60),
    );
    let took = start.elapsed();
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(std::fs::read(dst.join("b.bin")).unwrap(), data);
    eprintln!("download with broken trackers: {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        !silent.requests().is_empty(),
        "the silent tracker was never asked"
    );

    // SIGTERM while the trackers are silent (one of its announces hangs
    // on the silent one): out within a few seconds.
    let dst2 = tmp.path().join("dst2");
    let asked = silent.requests().len();
    let p = Proc::spawn(cmd(download_args(&t, &dst2, port, &[])));
    p.wait_line("b.bin: complete", Duration::from_secs(30));
    wait_until(
        "an announce to the silent tracker",
        Duration::from_secs(20),
        || silent.requests().len() > asked,
    );
    p.signal(libc::SIGTERM);
    let start = Instant::now();
    let mut p = p;
    let status = p.wait(Duration::from_secs(30));
    let took = start.elapsed();
    let out = p.finish(status);
    eprintln!(
        "SIGTERM with silent trackers: exit {:?} after {took:?}",
        out.code
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        took < Duration::from_secs(6),
        "shutdown waited {took:?} on trackers"
    );
}
