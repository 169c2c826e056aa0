//! Child processes the tests drive (real clients, helper scripts): each is
//! killed on drop, and each keeps its output where a failing test can show
//! it.
//!
//! - [`LineProc`]: stdout lines arrive on a channel (the helper scripts
//!   print `PORT n`, `DONE n`, ...), stderr goes to a log file whose tail a
//!   failure prints.
//! - [`Logged`]: stdout and stderr both go to files (transmission-cli,
//!   which rewrites one status line with `\r`).
//! - [`JsonProc`]: a command/answer script speaking one JSON object a line
//!   on stdin and stdout (the DHT swarms).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The last `n` lines of the text file at `path` (empty when unreadable).
pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A child process killed on drop; stdout lines arrive on a channel,
/// stderr goes to a log file shown when something fails.
pub struct LineProc {
    name: &'static str,
    /// The process.
    pub child: Child,
    /// Its stdout, one line a message (ends when stdout closes).
    pub lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl LineProc {
    /// Starts `cmd` (stdin closed) with its stderr in the file `log`;
    /// panics naming `name` when it cannot start.
    pub fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> LineProc {
        let err = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        LineProc {
            name,
            child,
            lines,
            log,
        }
    }

    /// The rest (trimmed) of the first stdout line starting with `prefix`;
    /// other lines are echoed to stderr. Fails with the log after `limit`.
    pub fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                    eprintln!("{}: {line}", self.name);
                }
                Err(e) => self.fail(&format!("no {prefix:?} line ({e:?})")),
            }
        }
    }

    /// Waits for the process to exit; fails with the log after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) => {}
                Err(e) => self.fail(&format!("cannot wait: {e}")),
            }
            if Instant::now() > deadline {
                self.fail("did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last 40 lines of its stderr log.
    pub fn tail(&self) -> String {
        tail_lines(&self.log, 40)
    }

    /// Panics with `why` and the tail of its log.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{}: {why}; last lines of {}:\n{}",
            self.name,
            self.log.display(),
            self.tail()
        )
    }
}

impl Drop for LineProc {
    fn drop(&mut self) {
        // A test failing on its own assertion (not through `fail`) shows
        // the other client's side too: what a flaky run needs to be read.
        if std::thread::panicking() {
            eprintln!(
                "{}: last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.tail()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process killed on drop whose stdout and stderr go to files.
pub struct Logged {
    /// The process.
    pub child: Child,
    /// Where its stdout goes.
    pub out: PathBuf,
    /// Where its stderr goes.
    pub err: PathBuf,
}

impl Logged {
    /// Starts `cmd` (stdin closed) with its output in `work/<stem>.out`
    /// and `work/<stem>.err`; panics naming `name` when it cannot start.
    pub fn spawn(name: &str, mut cmd: Command, work: &Path, stem: &str) -> Logged {
        let out = work.join(format!("{stem}.out"));
        let err = work.join(format!("{stem}.err"));
        let file = |p: &Path| {
            std::fs::File::create(p)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()))
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file(&out))
            .stderr(file(&err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Logged { child, out, err }
    }

    /// Whether its stdout so far contains `what`.
    pub fn says(&self, what: &str) -> bool {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .contains(what)
    }

    /// Waits until its stdout contains `what`; panics with [`Logged::tail`]
    /// after `limit`.
    pub fn wait_says(&self, what: &str, limit: Duration) {
        let start = Instant::now();
        while !self.says(what) {
            assert!(
                start.elapsed() < limit,
                "no {what:?} in the output within {limit:?}; {}",
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last 2,000 bytes of its output (`\r`-separated status lines
    /// made readable) and its log.
    pub fn tail(&self) -> String {
        let read = |p: &Path| {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            let start = t.len().saturating_sub(2000);
            let start = (start..t.len())
                .find(|&i| t.is_char_boundary(i))
                .unwrap_or(t.len());
            t[start..].replace('\r', "\n")
        };
        format!("stdout:\n{}\nstderr:\n{}", read(&self.out), read(&self.err))
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A script that reads one JSON command a line on stdin and prints one
/// JSON object a line on stdout; asked to quit (`{"cmd":"quit"}`), then
/// killed, on drop.
pub struct JsonProc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
}

impl JsonProc {
    /// Starts `cmd` with piped stdin and stdout (stderr inherited), and
    /// returns it with its first line, which must be `"event": "ready"`
    /// (within 60 s).
    pub fn start(name: &str, mut cmd: Command) -> (JsonProc, Value) {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::sync_channel(16);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut p = JsonProc {
            name: name.to_string(),
            child,
            stdin,
            lines,
        };
        let ready = p.next(Duration::from_secs(60));
        assert_eq!(ready["event"], "ready", "{ready}");
        (p, ready)
    }

    /// The next JSON line; panics after `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Value {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("{} did not answer within {timeout:?}: {e}", self.name))
    }

    /// Sends one command and waits (up to `timeout`) for its answer.
    pub fn ask(&mut self, cmd: Value, timeout: Duration) -> Value {
        writeln!(self.stdin, "{cmd}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("cannot write to {}: {e}", self.name));
        self.next(timeout)
    }
}

impl Drop for JsonProc {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{{\"cmd\":\"quit\"}}");
        let _ = self.stdin.flush();
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
