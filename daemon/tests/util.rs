//! A fake engine and a harness that sends requests through the gate as
//! the HTTP server would.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bittern_daemon::{
    Access, Backend, BackendError, Gate, Handler, Request, Response, Rpc, Source, Start, Store,
    Torrents,
};
use bittern_engine::{FileStatus, PeerInfo, TorrentState, TorrentStatus};
use bittern_wire::{InfoHash, MetainfoBuilder};
use parking_lot::Mutex;
use serde_json::{json, Value};

/// What the fake engine was asked to do.
#[derive(Default)]
pub struct FakeState {
    pub running: HashMap<InfoHash, (Start, TorrentStatus)>,
    pub starts: usize,
    pub removes: usize,
    /// Reannounces asked for, by torrent.
    pub reannounces: HashMap<InfoHash, usize>,
    /// Live limit changes: per torrent, and the session's (last first).
    pub limits: HashMap<InfoHash, (Option<u64>, Option<u64>)>,
    pub session_limits: Vec<(Option<u64>, Option<u64>)>,
    pub honors: HashMap<InfoHash, bool>,
    /// Metadata "fetched" for magnet links, handed out by `torrent_file`.
    pub fetched: HashMap<InfoHash, Vec<u8>>,
    /// The IP filter last handed to the engine.
    pub ip_filter: Option<Arc<bittern_engine::IpFilter>>,
    /// What `last_incoming` answers.
    pub incoming: Option<bittern_engine::Incoming>,
    /// The peer port after a `rebind` (51413 before).
    pub port: Option<u16>,
}

/// An engine that keeps statuses in memory: a started torrent is
/// `Downloading` (or `Paused`) with nothing yet, unless `complete` says
/// its data is there, then `Seeding`.
#[derive(Clone, Default)]
pub struct Fake {
    pub state: Arc<Mutex<FakeState>>,
    pub complete: Arc<Mutex<Vec<InfoHash>>>,
}

impl Backend for Fake {
    fn start(&self, start: Start) -> Result<(), BackendError> {
        let Source::Metainfo(m) = &start.source else {
            return self.start_magnet(start);
        };
        let complete = self.complete.lock().contains(&m.info_hash);
        let wanted = m.info.total_length();
        let have = if complete { wanted } else { 0 };
        let state = if start.options.paused {
            TorrentState::Paused
        } else if complete {
            TorrentState::Seeding
        } else {
            TorrentState::Downloading
        };
        let files = m
            .info
            .files
            .iter()
            .map(|f| FileStatus {
                path: m.info.disk_path(f),
                length: f.length,
                done: if complete { f.length } else { 0 },
                wanted: true,
            })
            .collect();
        let status = TorrentStatus {
            name: m.info.name.clone(),
            state,
            progress: if complete { 1.0 } else { 0.0 },
            wanted_bytes: wanted,
            have_bytes: have,
            downloaded: 0,
            uploaded: 0,
            download_rate: 0.0,
            upload_rate: 0.0,
            eta: None,
            peers_connected: 0,
            peers_connecting: 0,
            seeds_connected: 0,
            peers_known: 0,
            pieces_have: 0,
            pieces_total: m.info.piece_count(),
            files,
            hash_failures: 0,
            corrupt: 0,
            written: 0,
            web_seeds: 0,
            web_seed_downloaded: 0,
            web_seed_rate: 0.0,
        };
        let mut s = self.state.lock();
        if s.running.contains_key(&m.info_hash) {
            return Err(BackendError::Engine(
                bittern_engine::Error::DuplicateTorrent(m.info_hash.to_hex()),
            ));
        }
        s.starts += 1;
        s.running.insert(m.info_hash, (start, status));
        Ok(())
    }

    fn remove(&self, hash: InfoHash) {
        let mut s = self.state.lock();
        s.removes += 1;
        s.running.remove(&hash);
    }

    fn pause(&self, hash: InfoHash) -> Result<(), BackendError> {
        let mut s = self.state.lock();
        let t = s.running.get_mut(&hash).ok_or(BackendError::NotRunning)?;
        t.1.state = TorrentState::Paused;
        Ok(())
    }

    fn resume(&self, hash: InfoHash) -> Result<(), BackendError> {
        let mut s = self.state.lock();
        let t = s.running.get_mut(&hash).ok_or(BackendError::NotRunning)?;
        t.1.state = if t.1.have_bytes == t.1.wanted_bytes {
            TorrentState::Seeding
        } else {
            TorrentState::Downloading
        };
        Ok(())
    }

    fn reannounce(&self, hash: InfoHash) -> Result<(), BackendError> {
        let mut s = self.state.lock();
        if !s.running.contains_key(&hash) {
            return Err(BackendError::NotRunning);
        }
        *s.reannounces.entry(hash).or_default() += 1;
        Ok(())
    }

    fn set_limits(
        &self,
        hash: InfoHash,
        download: Option<u64>,
        upload: Option<u64>,
        honors_session: bool,
    ) -> Result<(), BackendError> {
        let mut s = self.state.lock();
        if !s.running.contains_key(&hash) {
            return Err(BackendError::NotRunning);
        }
        s.limits.insert(hash, (download, upload));
        s.honors.insert(hash, honors_session);
        Ok(())
    }

    fn set_session_limits(&self, download: Option<u64>, upload: Option<u64>) {
        self.state
            .lock()
            .session_limits
            .insert(0, (download, upload));
    }

    fn status(&self, hash: InfoHash) -> Option<TorrentStatus> {
        self.state.lock().running.get(&hash).map(|t| t.1.clone())
    }

    fn peers(&self, _hash: InfoHash) -> Vec<PeerInfo> {
        Vec::new()
    }

    fn torrent_file(&self, hash: InfoHash) -> Option<Vec<u8>> {
        self.state.lock().fetched.get(&hash).cloned()
    }

    fn peer_port(&self) -> u16 {
        self.state.lock().port.unwrap_or(51413)
    }

    fn rebind(&self, port: u16) -> Result<HashMap<InfoHash, TorrentStatus>, BackendError> {
        let mut s = self.state.lock();
        s.port = Some(port);
        let finals = s
            .running
            .drain()
            .map(|(h, (_, status))| (h, status))
            .collect();
        Ok(finals)
    }

    fn peer_addrs(&self) -> Vec<std::net::SocketAddr> {
        vec![([127, 0, 0, 1], 51413).into()]
    }

    fn set_ip_filter(&self, filter: Arc<bittern_engine::IpFilter>) {
        self.state.lock().ip_filter = Some(filter);
    }

    fn last_incoming(&self) -> Option<bittern_engine::Incoming> {
        self.state.lock().incoming
    }

    /// Every piece of a complete torrent, none of the others.
    fn pieces(&self, hash: InfoHash) -> Option<bittern_wire::Bitfield> {
        let s = self.state.lock();
        let st = &s.running.get(&hash)?.1;
        if st.pieces_total == 0 {
            return None;
        }
        let mut b = bittern_wire::Bitfield::new(st.pieces_total);
        if st.wanted_bytes > 0 && st.have_bytes == st.wanted_bytes {
            for i in 0..st.pieces_total {
                b.set(i);
            }
        }
        Some(b)
    }

    fn shutdown(&self) {}
}

impl Fake {
    /// A magnet link starts fetching its metadata: no size, its `dn` as name.
    fn start_magnet(&self, start: Start) -> Result<(), BackendError> {
        let Source::Magnet(link) = &start.source else {
            return Err(BackendError::NotRunning);
        };
        let hash = link.info_hash.ok_or(BackendError::NotRunning)?;
        let status = TorrentStatus {
            name: link.display_name.clone().unwrap_or_else(|| hash.to_hex()),
            state: if start.options.paused {
                TorrentState::Paused
            } else {
                TorrentState::FetchingMetadata
            },
            progress: 0.5,
            wanted_bytes: 0,
            have_bytes: 0,
            downloaded: 0,
            uploaded: 0,
            download_rate: 0.0,
            upload_rate: 0.0,
            eta: None,
            peers_connected: 0,
            peers_connecting: 0,
            seeds_connected: 0,
            peers_known: 0,
            pieces_have: 0,
            pieces_total: 0,
            files: Vec::new(),
            hash_failures: 0,
            corrupt: 0,
            written: 0,
            web_seeds: 0,
            web_seed_downloaded: 0,
            web_seed_rate: 0.0,
        };
        let mut s = self.state.lock();
        if s.running.contains_key(&hash) {
            return Err(BackendError::Engine(
                bittern_engine::Error::DuplicateTorrent(hash.to_hex()),
            ));
        }
        s.starts += 1;
        s.running.insert(hash, (start, status));
        Ok(())
    }
}

/// The single-file torrent of the transcripts: `sample.bin`, 3,000,000
/// bytes in 32 KiB pieces.
pub fn single() -> Vec<u8> {
    MetainfoBuilder::new("sample.bin")
        .single_file(3_000_000)
        .piece_length(32768)
        .pieces(vec![[7u8; 20]; 92])
        .announce("http://127.0.0.1:6969/announce")
        .comment("bittern test")
        .build()
        .unwrap()
}

/// The multi-file torrent of the transcripts.
pub fn multi() -> Vec<u8> {
    MetainfoBuilder::new("multi")
        .file(vec!["a.txt".into()], 100_000)
        .file(vec!["sub".into(), "b.bin".into()], 200_000)
        .piece_length(32768)
        .pieces(vec![[9u8; 20]; 10])
        .announce("http://127.0.0.1:6969/announce")
        .build()
        .unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

/// A gate over a fake engine and a store in a temp dir.
pub struct Harness {
    pub gate: Gate<Fake>,
    pub rpc: Arc<Rpc<Fake>>,
    pub fake: Fake,
    pub dir: tempfile::TempDir,
    pub peer: IpAddr,
}

impl Harness {
    pub fn new(access: Access) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        Harness::in_dir(dir, access, Fake::default())
    }

    pub fn in_dir(dir: tempfile::TempDir, access: Access, fake: Fake) -> Harness {
        let store = Store::open(&dir.path().join("config")).unwrap();
        let torrents = Torrents::open(fake.clone(), store).unwrap();
        let rpc = Arc::new(Rpc::new(torrents));
        Harness {
            gate: Gate::with_lifetime(rpc.clone(), access, Duration::from_secs(3600)),
            rpc,
            fake,
            dir,
            peer: IpAddr::from([127, 0, 0, 1]),
        }
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let req = Request {
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: body.to_vec(),
            peer: self.peer,
        };
        self.gate.handle(&req)
    }

    /// POSTs `body` with the current session id, as transmission-remote does
    /// (form content type, trailing slash); returns the parsed reply.
    pub fn post(&self, body: &Value) -> Value {
        let id = self.gate.session_id();
        let text = serde_json::to_vec(body).unwrap();
        let r = self.raw(
            "POST",
            "/transmission/rpc/",
            &[
                ("Host", "127.0.0.1:9091"),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Transmission-Session-Id", &id),
            ],
            &text,
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=UTF-8")
        );
        serde_json::from_slice(&r.body).unwrap()
    }

    /// `post` that must succeed; returns `arguments`.
    pub fn ok(&self, body: Value) -> Value {
        let r = self.post(&body);
        assert_eq!(r["result"], "success", "{body} -> {r}");
        r["arguments"].clone()
    }

    pub fn add(&self, bytes: &[u8], dir: &Path) -> Value {
        self.ok(json!({"method": "torrent-add", "arguments": {
            "metainfo": b64(bytes), "download-dir": dir.to_str().unwrap()}, "tag": 8}))
    }
}

/// Asserts `v[key]` is a JSON integer (not a float).
#[track_caller]
pub fn int(v: &Value, key: &str) -> i64 {
    let x = &v[key];
    assert!(x.is_i64() || x.is_u64(), "{key} is not an integer: {x}");
    x.as_i64().unwrap()
}
