//! The persistent store under the config dir:
//!
//! ```text
//! settings.json             session settings (Transmission key names)
//! torrents/<hash>.torrent   the metainfo as added
//! torrents/<hash>.json      the torrent's record (save dir, paused, labels, ...)
//! resume/<hash>.resume      the engine's resume state (pieces verified)
//! resume/<hash>.torrent     the metadata the engine fetched for a magnet
//! ```
//!
//! A torrent added by magnet link has a record (with its link) and no
//! `torrents/<hash>.torrent` until its metadata has been fetched; the
//! daemon then writes it there.
//!
//! Every file is written atomically: a temp file in the same directory,
//! fsync, rename over the old one, fsync of the directory. A SIGKILL at any
//! moment leaves either the old or the new version. At an add the
//! `.torrent` is written before the record and at a removal the record
//! goes first, so a record never lacks its metainfo; a `.torrent` without a
//! record is ignored at load.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::warn;
use serde::{Deserialize, Serialize};

use crate::settings::Settings;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A JSON file is corrupt.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// What the daemon remembers of one torrent besides its metainfo. Rates
/// and limits use Transmission's units (kB/s, 1 kB = 1000 bytes); dates
/// are Unix seconds, 0 for never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Record {
    /// 40 lowercase hex digits.
    pub info_hash: String,
    /// The directory holding the torrent's data.
    pub save_dir: PathBuf,
    /// Stopped by the user.
    pub paused: bool,
    /// User labels.
    pub labels: Vec<String>,
    /// One flag per file (padding files excluded); empty: all wanted.
    pub wanted: Vec<bool>,
    /// One priority per file (-1 low, 0 normal, 1 high); empty: all normal.
    pub priorities: Vec<i8>,
    /// Place in the queue, 0 first.
    pub queue_position: i64,
    /// When it was added.
    pub added_date: i64,
    /// When its wanted data was first complete.
    pub done_date: i64,
    /// Last time data moved.
    pub activity_date: i64,
    /// Last change of its settings.
    pub edit_date: i64,
    /// Payload bytes received over all sessions before the current one.
    pub downloaded_ever: u64,
    /// Payload bytes sent over all sessions before the current one.
    pub uploaded_ever: u64,
    /// Bytes of pieces that failed their check, before the current session.
    pub corrupt_ever: u64,
    /// Seconds spent downloading.
    pub seconds_downloading: u64,
    /// Seconds spent seeding.
    pub seconds_seeding: u64,
    /// Download limit, kB/s.
    pub download_limit: u64,
    /// Whether [`download_limit`](Self::download_limit) applies.
    pub download_limited: bool,
    /// Upload limit, kB/s.
    pub upload_limit: u64,
    /// Whether [`upload_limit`](Self::upload_limit) applies.
    pub upload_limited: bool,
    /// Whether the session's limits apply too.
    pub honors_session_limits: bool,
    /// -1 low, 0 normal, 1 high.
    pub bandwidth_priority: i64,
    /// Most peers.
    pub peer_limit: i64,
    /// Seed ratio at which to stop (with mode 1).
    pub seed_ratio_limit: f64,
    /// 0 session setting, 1 own limit, 2 unlimited.
    pub seed_ratio_mode: i64,
    /// Idle minutes after which to stop seeding (with mode 1).
    pub seed_idle_limit: i64,
    /// 0 session setting, 1 own limit, 2 unlimited.
    pub seed_idle_mode: i64,
    /// Its bandwidth group's name; empty: none.
    pub group: String,
    /// Renames of its files and folders (`torrent-rename-path`), in order.
    pub renames: Vec<crate::state::Rename>,
    /// Where its data goes once complete, while it is downloaded in the
    /// incomplete dir ([`save_dir`](Self::save_dir)).
    pub final_dir: Option<PathBuf>,
    /// Stopped by its seed ratio or idle limit.
    pub finished: bool,
    /// The magnet link it was added by (`None`: added from a metainfo).
    pub magnet: Option<String>,
    /// A move or rename of its data that was begun and not yet recorded
    /// as done: written before the data moves, so that a crash in between
    /// leaves a record that says where to look (settled at the next load).
    pub pending: Option<Pending>,
}

/// A move (`torrent-set-location` with `move`) or rename
/// (`torrent-rename-path`) of a torrent's data, begun.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Pending {
    /// What is moved or renamed.
    pub src: PathBuf,
    /// Where it goes.
    pub dst: PathBuf,
    /// A move: the new save directory.
    pub save_dir: Option<PathBuf>,
    /// A rename: the rename to add to [`Record::renames`].
    pub rename: Option<crate::state::Rename>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            info_hash: String::new(),
            save_dir: PathBuf::new(),
            paused: false,
            labels: Vec::new(),
            wanted: Vec::new(),
            priorities: Vec::new(),
            queue_position: 0,
            added_date: 0,
            done_date: 0,
            activity_date: 0,
            edit_date: 0,
            downloaded_ever: 0,
            uploaded_ever: 0,
            corrupt_ever: 0,
            seconds_downloading: 0,
            seconds_seeding: 0,
            download_limit: 100,
            download_limited: false,
            upload_limit: 100,
            upload_limited: false,
            honors_session_limits: true,
            bandwidth_priority: 0,
            peer_limit: 50,
            seed_ratio_limit: 2.0,
            seed_ratio_mode: 0,
            seed_idle_limit: 30,
            seed_idle_mode: 0,
            group: String::new(),
            renames: Vec::new(),
            final_dir: None,
            finished: false,
            magnet: None,
            pending: None,
        }
    }
}

/// A saved torrent: its record and its metainfo (`None` for a magnet link
/// whose metadata was not fetched yet).
pub type Saved = (Record, Option<Vec<u8>>);

/// The config dir.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating) `dir` and its `torrents/` and `resume/` folders.
    ///
    /// # Errors
    /// A folder cannot be created.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for d in [dir.to_path_buf(), dir.join("torrents"), dir.join("resume")] {
            fs::create_dir_all(&d).map_err(|source| StoreError::Io { path: d, source })?;
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The config dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a torrent's metainfo is kept.
    pub fn torrent_path(&self, hash: &str) -> PathBuf {
        self.dir.join("torrents").join(format!("{hash}.torrent"))
    }

    fn record_path(&self, hash: &str) -> PathBuf {
        self.dir.join("torrents").join(format!("{hash}.json"))
    }

    /// Where the engine keeps a torrent's resume state.
    pub fn resume_path(&self, hash: &str) -> PathBuf {
        self.dir.join("resume").join(format!("{hash}.resume"))
    }

    /// The settings; defaults when the file does not exist yet.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load_settings(&self) -> Result<Settings, StoreError> {
        let path = self.dir.join("settings.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Saves the settings.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_settings(&self, settings: &Settings) -> Result<(), StoreError> {
        let path = self.dir.join("settings.json");
        let bytes = serde_json::to_vec_pretty(settings).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    /// Saves a newly added torrent: its metainfo (none yet for a magnet
    /// link), then its record.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn add(&self, record: &Record, metainfo: Option<&[u8]>) -> Result<(), StoreError> {
        if let Some(m) = metainfo {
            self.save_metainfo(&record.info_hash, m)?;
        }
        self.save(record)
    }

    /// Saves the metainfo of a torrent (fetched for a magnet link).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_metainfo(&self, hash: &str, metainfo: &[u8]) -> Result<(), StoreError> {
        write_atomic(&self.torrent_path(hash), metainfo)
    }

    /// Saves a torrent's record.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, record: &Record) -> Result<(), StoreError> {
        let path = self.record_path(&record.info_hash);
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        write_atomic(&path, &bytes)
    }

    /// Forgets a torrent: record first, then metainfo and resume state.
    ///
    /// # Errors
    /// The record cannot be deleted.
    pub fn remove(&self, hash: &str) -> Result<(), StoreError> {
        let record = self.record_path(hash);
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(StoreError::Io {
                    path: record,
                    source,
                })
            }
        }
        sync_dir(&self.dir.join("torrents"));
        let fetched = self.resume_path(hash).with_extension("torrent");
        for p in [self.torrent_path(hash), self.resume_path(hash), fetched] {
            let _ = fs::remove_file(p);
        }
        Ok(())
    }

    /// Every saved torrent (record and metainfo bytes), in queue order. A
    /// record that cannot be read, or whose metainfo is missing, is
    /// skipped with a warning.
    ///
    /// # Errors
    /// The torrents folder cannot be listed.
    pub fn load_all(&self) -> Result<Vec<Saved>, StoreError> {
        let dir = self.dir.join("torrents");
        let entries = fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            let record: Record = match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    warn!("skipping torrent record {}: {e}", path.display());
                    continue;
                }
            };
            match fs::read(self.torrent_path(&record.info_hash)) {
                Ok(bytes) => out.push((record, Some(bytes))),
                // Added by magnet link, metadata not fetched yet.
                Err(e) if e.kind() == io::ErrorKind::NotFound && record.magnet.is_some() => {
                    out.push((record, None));
                }
                Err(e) => warn!(
                    "skipping torrent record {}: its metainfo: {e}",
                    path.display()
                ),
            }
        }
        out.sort_by(|a, b| {
            (a.0.queue_position, a.0.added_date).cmp(&(b.0.queue_position, b.0.added_date))
        });
        Ok(out)
    }
}

/// Replaces `path` with `bytes` atomically and durably: temp file, fsync,
/// rename, fsync of the directory.
///
/// # Errors
/// Any step fails (the temp file is removed).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", rand::random::<u32>()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    sync_dir(dir);
    Ok(())
}

/// fsyncs a directory so a rename or removal in it is durable.
fn sync_dir(dir: &Path) {
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        log::debug!("cannot sync {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_queue_order() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        for (i, hash) in ["bb", "aa", "cc"].iter().enumerate() {
            let r = Record {
                info_hash: hash.to_string(),
                queue_position: [2, 0, 1][i],
                labels: vec![format!("l{i}")],
                paused: i == 1,
                ..Record::default()
            };
            store.add(&r, Some(hash.as_bytes())).unwrap();
        }
        // A record without metainfo and a stray temp file are ignored.
        write_atomic(
            &tmp.path().join("torrents/dd.json"),
            b"{\"info-hash\":\"dd\"}",
        )
        .unwrap();
        fs::write(tmp.path().join("torrents/.x.tmp"), b"junk").unwrap();
        let all = store.load_all().unwrap();
        let order: Vec<&str> = all.iter().map(|(r, _)| r.info_hash.as_str()).collect();
        assert_eq!(order, ["aa", "cc", "bb"]);
        assert_eq!(all[0].1.as_deref(), Some(&b"aa"[..]));
        assert!(all[0].0.paused);
        assert_eq!(all[0].0.labels, ["l1"]);
        store.remove("aa").unwrap();
        assert_eq!(store.load_all().unwrap().len(), 2);
        assert!(!store.torrent_path("aa").exists());
    }

    #[test]
    fn magnet_records_load_without_metainfo_and_leave_nothing_on_removal() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let r = Record {
            info_hash: "ee".into(),
            magnet: Some("magnet:?xt=urn:btih:ee".into()),
            ..Record::default()
        };
        store.add(&r, None).unwrap();
        let all = store.load_all().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0.magnet, r.magnet);
        assert!(all[0].1.is_none());
        // The metadata arrives: the engine's copy and the store's.
        let fetched = store.resume_path("ee").with_extension("torrent");
        fs::write(&fetched, b"meta").unwrap();
        store.save_metainfo("ee", b"meta").unwrap();
        assert_eq!(
            store.load_all().unwrap()[0].1.as_deref(),
            Some(&b"meta"[..])
        );
        store.remove("ee").unwrap();
        assert!(store.load_all().unwrap().is_empty());
        assert!(!fetched.exists());
        assert!(!store.torrent_path("ee").exists());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("s.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
        // A directory in the way: the error names the path, no temp left.
        let d = tmp.path().join("d");
        fs::create_dir(&d).unwrap();
        fs::write(d.join("x"), b"").unwrap();
        assert!(write_atomic(&d, b"x").is_err());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 2);
    }

    #[test]
    fn settings_default_when_missing_and_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut s = store.load_settings().unwrap();
        assert_eq!(s, Settings::default());
        s.download_dir = "/data".into();
        s.speed_limit_down = 250;
        store.save_settings(&s).unwrap();
        assert_eq!(store.load_settings().unwrap(), s);
        fs::write(tmp.path().join("settings.json"), b"{not json").unwrap();
        assert!(store.load_settings().is_err());
    }
}
