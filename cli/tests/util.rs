//! Helpers: running the built `bittern` binary, watching its output,
//! making data, and the interop skip rule.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bittern")
}

/// A `bittern` command with a clean environment for logging.
pub fn cmd<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null());
    c
}

/// Finished run: exit code and output as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs to completion, killing the process after `limit`.
pub fn run_limited(mut c: Command, limit: Duration) -> Run {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bittern");
    let mut p = Proc::wrap(child);
    let status = p.wait(limit);
    p.finish(status)
}

/// Whether `line` is a plain status line (`LABEL: P% (...)`, as printed
/// when stderr is not a terminal) showing more than 0% verified.
pub fn shows_progress(line: &str) -> bool {
    line.split_once(": ")
        .and_then(|(_, rest)| rest.split_once("% ("))
        .and_then(|(pct, _)| pct.parse::<f64>().ok())
        .is_some_and(|p| p > 0.0)
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after
/// `limit`.
pub fn wait_until(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    bittern_testkit::wait_until(what, limit, cond);
}

/// Runs `bittern ARGS` with a one-minute limit.
pub fn bittern<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_limited(cmd(args), Duration::from_secs(60))
}

/// A running process whose stdout lines arrive on a channel and whose
/// stderr is collected line by line as it comes. Killed on drop.
pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Starts `c` with piped output.
    pub fn spawn(mut c: Command) -> Proc {
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bittern");
        Proc::wrap(child)
    }

    fn wrap(mut child: Child) -> Proc {
        let (tx, lines) = channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let err = child.stderr.take().expect("piped stderr");
        let (so, se) = (stdout.clone(), stderr.clone());
        let r1 = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                so.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let r2 = std::thread::spawn(move || {
            let mut err = BufReader::new(err);
            let mut line = Vec::new();
            while err.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                se.lock().unwrap().push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
        Proc {
            child,
            lines,
            stdout,
            stderr,
            readers: vec![r1, r2],
        }
    }

    /// Waits for a stdout line containing `needle`; returns it.
    pub fn wait_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line with {needle:?} within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout.lock().unwrap(),
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Waits (polling) for a stderr line for which `pred` holds; returns it.
    pub fn wait_stderr(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .find(|l| pred(l))
                .map(str::to_owned);
            if let Some(line) = found {
                return line;
            }
            if Instant::now() > deadline {
                panic!(
                    "no stderr line with {what} within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout.lock().unwrap(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid has no memory-safety contract.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for exit (kills after `limit` and panics).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "bittern did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout.lock().unwrap(),
                    self.stderr.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Collects the output after exit.
    pub fn finish(&mut self, status: ExitStatus) -> Run {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Run {
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes `size` seeded random bytes to `path` (creating parents).
pub fn random_file(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    bittern_testkit::random_file(path, size, seed)
}

/// Every file under `dir`, relative, sorted (skipping `.bittern`).
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap() == ".bittern" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Parses `downloaded N bytes` and `have H of W bytes` from a summary line.
pub fn summary(stdout: &str) -> (u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.contains(": downloaded "))
        .unwrap_or_else(|| panic!("no summary line in:\n{stdout}"));
    let num_after = |key: &str| -> u64 {
        let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let have = num_after("have ");
    let of = num_after(&format!("have {have} of "));
    (num_after("downloaded "), have, of)
}

/// Creates a torrent of `path` with `bittern create` and returns its path.
pub fn create(path: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "create".to_string(),
        path.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let r = bittern(&args);
    assert_eq!(r.code, Some(0), "create failed: {r:?}");
    out.to_path_buf()
}

/// Starts `bittern seed TORRENT -d DIR` on loopback and waits until it
/// seeds; returns the process and its port.
pub fn start_seed(torrent: &Path, dir: &Path, extra: &[&str]) -> (Proc, u16) {
    let mut args = vec![
        "seed".to_string(),
        torrent.display().to_string(),
        "-d".into(),
        dir.display().to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "-p".into(),
        "0".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let p = Proc::spawn(cmd(&args));
    let line = p.wait_line("listening on ", Duration::from_secs(20));
    let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    p.wait_line("verified, seeding", Duration::from_secs(30));
    (p, port)
}

/// Debian's Python, the only one that imports `python3-libtorrent`.
pub use bittern_testkit::libtorrent::PYTHON;

/// Whether `/usr/bin/python3 -c 'import libtorrent'` works (else skip or fail).
pub fn libtorrent_available() -> bool {
    bittern_testkit::libtorrent::available()
}

/// A helper script in `testkit/scripts/`.
pub fn script(name: &str) -> PathBuf {
    bittern_testkit::libtorrent::script(name)
}

/// Runs `bittern download WHAT -d DST --bind 127.0.0.1 -p 0 EXTRA...`,
/// killed after `limit`.
pub fn download(what: &str, dst: &str, extra: &[&str], limit: Duration) -> Run {
    let mut args = vec![
        "download",
        what,
        "-d",
        dst,
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
    ];
    args.extend_from_slice(extra);
    run_limited(cmd(args), limit)
}
