//! The watch directory: a `.torrent` or `.magnet` file dropped there is
//! added through `torrent-add` (as any RPC client would) and renamed
//! `NAME.added` (a duplicate too), or `NAME.invalid` with a log line when
//! the daemon refuses it. The folder is polled, no inotify: a file is
//! taken once two scans in a row saw the same size and modification time,
//! so one still being written is left alone. Renamed files are never
//! looked at again, so nothing is added twice across restarts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use log::{debug, info, warn};
use serde_json::json;

use crate::backend::Backend;
use crate::rpc::Rpc;

/// How often the folder is scanned.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// What became of a dropped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Added (or already there); renamed `.added`.
    Added(PathBuf),
    /// Refused with this error; renamed `.invalid`.
    Invalid(PathBuf, String),
}

/// Scans one folder, remembering what it saw between scans.
#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    seen: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    done: HashSet<PathBuf>,
}

fn kind(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "torrent" => Some("torrent"),
        "magnet" => Some("magnet"),
        _ => None,
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl Scanner {
    /// A scanner of `dir`.
    pub fn new(dir: PathBuf) -> Scanner {
        Scanner {
            dir,
            seen: HashMap::new(),
            done: HashSet::new(),
        }
    }

    /// The folder watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One scan: adds the files that stayed unchanged since the last scan.
    pub fn scan<B: Backend>(&mut self, rpc: &Rpc<B>) -> Vec<Outcome> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                debug!("watch dir {}: {e}", self.dir.display());
                return Vec::new();
            }
        };
        let mut now = HashMap::new();
        let mut ready = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if kind(&path).is_none() || self.done.contains(&path) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let sig = (meta.len(), meta.modified().ok());
            if self.seen.get(&path) == Some(&sig) {
                ready.push(path.clone());
            }
            now.insert(path, sig);
        }
        self.seen = now;
        ready.sort();
        let mut out = Vec::new();
        for path in ready {
            if let Some(o) = self.take(rpc, &path) {
                self.seen.remove(&path);
                out.push(o);
            }
        }
        out
    }

    /// Adds one file and renames it; `None` when it cannot be read (it is
    /// tried again next scan).
    fn take<B: Backend>(&mut self, rpc: &Rpc<B>, path: &Path) -> Option<Outcome> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                debug!("watch dir: cannot read {}: {e}", path.display());
                return None;
            }
        };
        let args = if kind(path) == Some("magnet") {
            let text = String::from_utf8_lossy(&bytes);
            let link = text.lines().map(str::trim).find(|l| !l.is_empty());
            json!({"filename": link.unwrap_or("")})
        } else {
            json!({"metainfo": data_encoding::BASE64.encode(&bytes)})
        };
        let reply = rpc.call(
            json!({"method": "torrent-add", "arguments": args})
                .to_string()
                .as_bytes(),
            "",
        );
        let result = reply["result"].as_str().unwrap_or("no result").to_string();
        let (suffix, outcome) = if result == "success" {
            let a = &reply["arguments"];
            let t = a
                .get("torrent-added")
                .or_else(|| a.get("torrent-duplicate"));
            let name = t.and_then(|t| t["name"].as_str()).unwrap_or("?");
            info!("watch dir: added {} ({name})", path.display());
            (".added", Outcome::Added(path.to_path_buf()))
        } else {
            warn!("watch dir: cannot add {}: {result}", path.display());
            (".invalid", Outcome::Invalid(path.to_path_buf(), result))
        };
        if let Err(e) = std::fs::rename(path, with_suffix(path, suffix)) {
            warn!("watch dir: cannot rename {}: {e}", path.display());
        }
        self.done.insert(path.to_path_buf());
        Some(outcome)
    }
}

/// A thread scanning a folder every [`INTERVAL`] until dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Creates `dir` if needed and starts scanning it for `rpc`.
    ///
    /// # Errors
    /// The folder cannot be created or the thread not started.
    pub fn start<B: Backend>(dir: PathBuf, rpc: Arc<Rpc<B>>) -> std::io::Result<Watcher> {
        std::fs::create_dir_all(&dir)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        info!("watching {} for .torrent and .magnet files", dir.display());
        let thread = std::thread::Builder::new()
            .name("bittern-watch".into())
            .spawn(move || {
                let mut scanner = Scanner::new(dir);
                while !flag.load(Ordering::SeqCst) {
                    scanner.scan(&rpc);
                    let mut waited = Duration::ZERO;
                    while waited < INTERVAL && !flag.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(100));
                        waited += Duration::from_millis(100);
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops scanning and joins the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}
