//! The RPC method layer: Transmission's legacy envelope
//! (`{"method", "arguments", "tag"}` in, `{"result", "arguments", "tag"}`
//! out; failures are HTTP 200 with an error string in `result`) and the
//! methods, over [`Torrents`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bittern_engine::{AnnouncerStatus, IpFilter, PeerInfo};
use bittern_wire::{Bitfield, InfoHash};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::backend::Backend;
use crate::fields::{Lookup, View};
use crate::paths::checked_dir;
use crate::settings::{Settings, AT_RESTART, REPORTED};
use crate::state::{AddSource, AddSpec, Ids, Move, Sel, Torrents};

/// `version` as session-get reports it: Transmission's format
/// (`"$version ($revision)"`) with a 4.0 number, because Sonarr and Radarr
/// parse it and use labels only from 4.0 on.
pub const VERSION: &str = concat!("4.0.6 (bittern ", env!("CARGO_PKG_VERSION"), ")");
/// The RPC version of Transmission 4.0.
pub const RPC_VERSION: i64 = 17;

mod guard;

pub use guard::{port_is_open, PORT_TEST_WINDOW};

type Args = Map<String, Value>;
type Reply = Result<Args, String>;

/// Every method name [`Rpc`] recognises, in the order of its dispatch
/// (a unit test checks they agree). `port-test` never asks an outside
/// service (see [`port_is_open`]); `blocklist-update` fetches only the
/// configured `blocklist-url` (see [`crate::blocklist`]).
pub const METHODS: &[&str] = &[
    "session-get",
    "session-set",
    "session-stats",
    "session-close",
    "torrent-get",
    "torrent-add",
    "torrent-start",
    "torrent-start-now",
    "torrent-stop",
    "torrent-verify",
    "torrent-remove",
    "torrent-set",
    "queue-move-top",
    "queue-move-up",
    "queue-move-down",
    "queue-move-bottom",
    "free-space",
    "port-test",
    "blocklist-update",
    "torrent-set-location",
    "torrent-reannounce",
    "torrent-rename-path",
    "group-get",
    "group-set",
];

/// The method layer: the Transmission RPC methods over the torrent table.
pub struct Rpc<B: Backend> {
    torrents: Torrents<B>,
    close: AtomicBool,
    /// The settings the engine started with (for what applies at the
    /// next start only, see [`crate::settings::AT_RESTART`]).
    started: Settings,
    /// The stored blocklist (applied while `blocklist-enabled`).
    blocklist: Mutex<Arc<IpFilter>>,
    /// Held by the `blocklist-update` running (one fetch at a time).
    updating: Mutex<()>,
}

/// [`Lookup`] of one torrent in a [`Backend`].
struct Engine<'a, B: Backend> {
    backend: &'a B,
    hash: InfoHash,
}

impl<B: Backend> Lookup for Engine<'_, B> {
    fn peers(&self) -> Vec<PeerInfo> {
        self.backend.peers(self.hash)
    }
    fn pieces(&self) -> Option<Bitfield> {
        self.backend.pieces(self.hash)
    }
    fn trackers(&self) -> Option<AnnouncerStatus> {
        self.backend.tracker_status(self.hash)
    }
}

impl<B: Backend> Rpc<B> {
    /// Serves `torrents`.
    pub fn new(torrents: Torrents<B>) -> Rpc<B> {
        let blocklist = Arc::new(crate::blocklist::load(torrents.store().dir()));
        Rpc::with_blocklist(torrents, blocklist)
    }

    /// Serves `torrents` with `blocklist` as the stored list (already
    /// read from the config dir), handed to the engine if enabled. The
    /// daemon gives the engine the list before its torrents start, so no
    /// dial slips through at start.
    pub fn with_blocklist(torrents: Torrents<B>, blocklist: Arc<IpFilter>) -> Rpc<B> {
        let started = torrents.lock().settings.clone();
        if started.blocklist_enabled {
            torrents.backend().set_ip_filter(blocklist.clone());
        }
        Rpc {
            torrents,
            close: AtomicBool::new(false),
            started,
            blocklist: Mutex::new(blocklist),
            updating: Mutex::new(()),
        }
    }

    /// The torrents.
    pub fn torrents(&self) -> &Torrents<B> {
        &self.torrents
    }

    /// Whether a client sent `session-close`.
    pub fn close_requested(&self) -> bool {
        self.close.load(Ordering::SeqCst)
    }

    /// Answers one request body with the reply body, serialised.
    /// `torrent-get` is written straight to bytes (see
    /// `torrent_get_json`); every other reply through [`Rpc::call`].
    pub fn reply(&self, body: &[u8], session_id: &str) -> Vec<u8> {
        let request: Option<Map<String, Value>> = serde_json::from_slice(body).ok();
        if let Some(r) = &request {
            if r.get("method").and_then(Value::as_str) == Some("torrent-get") {
                let empty = Map::new();
                let args = r
                    .get("arguments")
                    .and_then(Value::as_object)
                    .unwrap_or(&empty);
                if let Ok(bytes) = self.torrent_get_json(args, r.get("tag")) {
                    return bytes;
                }
            }
        }
        serde_json::to_vec(&self.answer(request, session_id)).unwrap_or_else(|_| b"{}".to_vec())
    }

    /// Answers one request body with the reply. `session_id` is
    /// reported by `session-get`.
    pub fn call(&self, body: &[u8], session_id: &str) -> Value {
        self.answer(serde_json::from_slice(body).ok(), session_id)
    }

    fn answer(&self, request: Option<Map<String, Value>>, session_id: &str) -> Value {
        let tag = request.as_ref().and_then(|r| r.get("tag")).cloned();
        let method = request
            .as_ref()
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str);
        let empty = Map::new();
        let args = request
            .as_ref()
            .and_then(|r| r.get("arguments"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let (result, arguments) = match method {
            None => ("no method name".to_string(), Map::new()),
            Some(m) => match self.method(m, args, session_id) {
                Ok(a) => ("success".to_string(), a),
                Err(e) if m == "torrent-get" => {
                    let mut a = Map::new();
                    a.insert("torrents".into(), json!([]));
                    (e, a)
                }
                Err(e) => (e, Map::new()),
            },
        };
        let mut out = Map::new();
        out.insert("arguments".into(), Value::Object(arguments));
        out.insert("result".into(), json!(result));
        if let Some(tag) = tag {
            out.insert("tag".into(), tag);
        }
        Value::Object(out)
    }

    fn method(&self, name: &str, args: &Args, session_id: &str) -> Reply {
        let t = &self.torrents;
        let ids = || parse_ids(args.get("ids"));
        match name {
            "session-get" => Ok(self.session_get(args, session_id)),
            "session-set" => {
                let mut s = t.lock().settings.clone();
                s.merge(args)?;
                if let Some(d) = args.get("download-dir").and_then(Value::as_str) {
                    s.download_dir = checked_dir(s.root(), d)?.to_string_lossy().into_owned();
                }
                if let Some(d) = args.get("incomplete-dir").and_then(Value::as_str) {
                    s.incomplete_dir = checked_dir(s.root(), d)?.to_string_lossy().into_owned();
                }
                // A new peer port is listened on at once; one that cannot
                // be bound fails the call with nothing stored.
                if args.contains_key("peer-port") && s.peer_port != t.backend().peer_port() {
                    t.set_peer_port(s.peer_port)?;
                }
                let reschedule = args.keys().any(|k| k.starts_with("alt-speed-time"));
                t.set_settings(s, reschedule)?;
                if args.contains_key("blocklist-enabled") {
                    self.apply_blocklist();
                }
                Ok(Map::new())
            }
            "session-stats" => Ok(self.session_stats()),
            "session-close" => {
                self.close.store(true, Ordering::SeqCst);
                Ok(Map::new())
            }
            "torrent-get" => self.torrent_get(args),
            "torrent-add" => self.torrent_add(args),
            "torrent-start" | "torrent-start-now" => {
                t.start(&ids(), name == "torrent-start-now")?;
                Ok(Map::new())
            }
            "torrent-stop" => {
                t.stop(&ids())?;
                Ok(Map::new())
            }
            "torrent-verify" => {
                t.verify(&ids())?;
                Ok(Map::new())
            }
            "torrent-remove" => {
                let delete = args
                    .get("delete-local-data")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                t.remove(&ids(), delete)?;
                Ok(Map::new())
            }
            "torrent-set" => self.torrent_set(args),
            "queue-move-top" | "queue-move-up" | "queue-move-down" | "queue-move-bottom" => {
                let how = match name {
                    "queue-move-top" => Move::Top,
                    "queue-move-up" => Move::Up,
                    "queue-move-down" => Move::Down,
                    _ => Move::Bottom,
                };
                t.queue_move(&ids(), how)?;
                Ok(Map::new())
            }
            "free-space" => free_space(args),
            "port-test" => self.port_test(args),
            "blocklist-update" => self.blocklist_update(),
            "torrent-set-location" => {
                let location = args
                    .get("location")
                    .and_then(Value::as_str)
                    .ok_or("no location")?;
                let location = checked_dir(t.lock().settings.root(), location)?;
                let move_data = args.get("move").and_then(as_bool).unwrap_or(false);
                t.set_location(&ids(), &location, move_data)?;
                Ok(Map::new())
            }
            "torrent-reannounce" => {
                t.reannounce(&ids());
                Ok(Map::new())
            }
            "torrent-rename-path" => self.rename_path(args),
            "group-get" => self.group_get(args),
            "group-set" => self.group_set(args),
            _ => Err("method name not recognized".into()),
        }
    }

    fn session_get(&self, args: &Args, session_id: &str) -> Args {
        let inner = self.torrents.lock();
        let s = &inner.settings;
        let mut out = Map::new();
        let mut pending = Vec::new();
        if let (Ok(Value::Object(all)), Ok(Value::Object(started))) =
            (serde_json::to_value(s), serde_json::to_value(&self.started))
        {
            for k in REPORTED {
                if let Some(v) = all.get(*k) {
                    out.insert((*k).to_string(), v.clone());
                }
            }
            // bittern's own: the stored settings the engine takes only at
            // its next start, where they differ from the running ones.
            pending = AT_RESTART
                .iter()
                .filter(|k| all.get(**k) != started.get(**k))
                .map(|k| json!(k))
                .collect();
        }
        out.insert("bittern-restart-pending".into(), Value::Array(pending));
        let free = statvfs(Path::new(&s.download_dir)).map_or(-1, |(free, _)| free as i64);
        // The port listened on (session-set moves it at once; `-p` may
        // differ from the stored setting).
        let peer_port = self.torrents.backend().peer_port();
        let extra = json!({
            "version": VERSION,
            "rpc-version": RPC_VERSION,
            "rpc-version-minimum": 14,
            "rpc-version-semver": "5.3.0",
            "session-id": session_id,
            "config-dir": self.torrents.store().dir().to_string_lossy(),
            "peer-port": peer_port,
            "peer-port-random-on-start": false,
            "port-forwarding-enabled": false,
            "blocklist-size": self.blocklist.lock().len(),
            "cache-size-mb": 4,
            "rename-partial-files": false,
            "default-trackers": "",
            "download-dir-free-space": free,
            "units": {
                "memory-bytes": 1024, "memory-units": ["KiB", "MiB", "GiB", "TiB"],
                "size-bytes": 1000, "size-units": ["kB", "MB", "GB", "TB"],
                "speed-bytes": 1000, "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"]
            },
        });
        if let Value::Object(extra) = extra {
            out.extend(extra);
        }
        if let Some(fields) = args.get("fields").and_then(Value::as_array) {
            let wanted: Vec<&str> = fields.iter().filter_map(Value::as_str).collect();
            out.retain(|k, _| wanted.contains(&k.as_str()));
        }
        out
    }

    fn session_stats(&self) -> Args {
        let t = &self.torrents;
        let inner = t.lock();
        let (mut down, mut up, mut rd, mut ru, mut active, mut paused) = (0, 0, 0.0, 0.0, 0, 0);
        for e in &inner.entries {
            let st = t.backend().status(e.hash);
            if let Some(s) = &st {
                down += s.downloaded;
                up += s.uploaded;
                rd += s.download_rate;
                ru += s.upload_rate;
            }
            let running = st.is_some_and(|s| {
                matches!(
                    s.state,
                    bittern_engine::TorrentState::Downloading
                        | bittern_engine::TorrentState::Seeding
                        | bittern_engine::TorrentState::Checking
                        | bittern_engine::TorrentState::FetchingMetadata
                )
            });
            if running {
                active += 1;
            } else {
                paused += 1;
            }
        }
        let s = &inner.settings;
        let secs = t.started().elapsed().as_secs();
        let current = json!({"uploadedBytes": up, "downloadedBytes": down,
            "filesAdded": inner.files_added, "secondsActive": secs, "sessionCount": 1});
        let cumulative = json!({
            "uploadedBytes": s.cumulative_uploaded_bytes + up,
            "downloadedBytes": s.cumulative_downloaded_bytes + down,
            "filesAdded": s.cumulative_files_added + inner.files_added,
            "secondsActive": s.cumulative_seconds_active + secs,
            "sessionCount": s.session_count});
        let v = json!({
            "activeTorrentCount": active, "pausedTorrentCount": paused,
            "torrentCount": inner.entries.len(),
            "downloadSpeed": rd.round() as u64, "uploadSpeed": ru.round() as u64,
            "current-stats": current, "cumulative-stats": cumulative});
        let mut out = v.as_object().cloned().unwrap_or_default();
        // bittern's own: the DHT routing table's size, when the DHT runs.
        if let Some(n) = t.backend().dht_nodes() {
            out.insert("dhtNodes".into(), json!(n));
        }
        out
    }

    fn torrent_get(&self, args: &Args) -> Reply {
        let bytes = self.torrent_get_json(args, None)?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(mut reply)) => match reply.remove("arguments") {
                Some(Value::Object(a)) => Ok(a),
                _ => Err("internal error".into()),
            },
            _ => Err("internal error".into()),
        }
    }

    /// The whole reply to a `torrent-get`, written as JSON straight into
    /// one buffer: each field's value is serialised where it is made,
    /// with no object per torrent and no tree for the reply (10,000
    /// torrents are listed every few seconds by some frontends). Fields
    /// come in the order asked. Errors (no fields) are answered by
    /// [`Rpc::call`]'s general path.
    fn torrent_get_json(&self, args: &Args, tag: Option<&Value>) -> Result<Vec<u8>, String> {
        let fields: Vec<&str> = args
            .get("fields")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if fields.is_empty() {
            return Err("no fields specified".into());
        }
        // Each name as a JSON string once, with its colon.
        let keys: Vec<Vec<u8>> = fields
            .iter()
            .map(|f| {
                let mut k = serde_json::to_vec(f).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
        let table = args.get("format").and_then(Value::as_str) == Some("table");
        let needs_file = fields.contains(&"torrentFile");
        let ids = parse_ids(args.get("ids"));
        let t = &self.torrents;
        let inner = t.lock();
        let selected = inner.select(&ids);
        let mut out = Vec::with_capacity(64 + selected.len() * 40 * fields.len());
        out.extend_from_slice(b"{\"arguments\":{");
        if ids == Ids::RecentlyActive {
            let removed: Vec<i64> = inner.removed.iter().map(|(id, _)| *id).collect();
            out.extend_from_slice(b"\"removed\":");
            write_json(&mut out, &removed);
            out.push(b',');
        }
        out.extend_from_slice(b"\"torrents\":[");
        if table {
            write_json(&mut out, &fields);
        }
        let backend = t.backend();
        for (n, i) in selected.into_iter().enumerate() {
            let e = &inner.entries[i];
            let engine = Engine {
                backend,
                hash: e.hash,
            };
            let file = if needs_file {
                let path = t.store().torrent_path(&e.hash.to_hex());
                path.to_string_lossy().into_owned()
            } else {
                String::new()
            };
            let mut view = View::new(e, backend.status(e.hash), &inner.settings, file, &engine);
            if n > 0 || table {
                out.push(b',');
            }
            if table {
                out.push(b'[');
                for (k, f) in fields.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    match view.field(f) {
                        Some(v) => write_json(&mut out, &v),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                out.push(b']');
            } else {
                out.push(b'{');
                let mut first = true;
                for (f, key) in fields.iter().zip(&keys) {
                    if let Some(v) = view.field(f) {
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        out.extend_from_slice(key);
                        write_json(&mut out, &v);
                    }
                }
                out.push(b'}');
            }
        }
        drop(inner);
        out.extend_from_slice(b"]},\"result\":\"success\"");
        if let Some(tag) = tag {
            out.extend_from_slice(b",\"tag\":");
            write_json(&mut out, tag);
        }
        out.push(b'}');
        Ok(out)
    }

    fn torrent_add(&self, args: &Args) -> Reply {
        let source = crate::source::add_source(args)?;
        let settings: Settings = self.torrents.lock().settings.clone();
        let dir = args
            .get("download-dir")
            .and_then(Value::as_str)
            .unwrap_or(&settings.download_dir);
        let save_dir = checked_dir(settings.root(), dir)?;
        std::fs::create_dir_all(&save_dir)
            .map_err(|e| format!("cannot create {}: {e}", save_dir.display()))?;
        let paused = args
            .get("paused")
            .and_then(as_bool)
            .unwrap_or(!settings.start_added_torrents);
        let labels = match args.get("labels") {
            Some(v) => parse_labels(v)?,
            None => Vec::new(),
        };
        // A magnet's files are not known yet: its selection waits for
        // `torrent-set` (as in Transmission).
        let visible = match &source {
            AddSource::Metainfo { metainfo, .. } => {
                metainfo.info.files.iter().filter(|f| !f.padding).count()
            }
            AddSource::Magnet(_) => 0,
        };
        let mut wanted = vec![true; visible];
        apply_wanted(&mut wanted, args)?;
        let wanted = if wanted.iter().all(|w| *w) {
            Vec::new()
        } else {
            wanted
        };
        let added = self.torrents.add(AddSpec {
            source,
            save_dir,
            paused,
            labels,
            wanted,
        })?;
        let key = if added.new {
            "torrent-added"
        } else {
            "torrent-duplicate"
        };
        let mut out = Map::new();
        out.insert(
            key.into(),
            json!({"hashString": added.hash.to_hex(), "id": added.id, "name": added.name}),
        );
        Ok(out)
    }

    fn rename_path(&self, args: &Args) -> Reply {
        let path = args.get("path").and_then(Value::as_str).ok_or("no path")?;
        let name = args.get("name").and_then(Value::as_str).ok_or("no name")?;
        let id = self
            .torrents
            .rename_path(&parse_ids(args.get("ids")), path, name)?;
        let v = json!({"id": id, "path": path, "name": name});
        Ok(v.as_object().cloned().unwrap_or_default())
    }

    /// `group-get`: every group, or those `group` (4.0) or `name` (4.1)
    /// names (a string or a list).
    fn group_get(&self, args: &Args) -> Reply {
        let wanted: Option<Vec<String>> =
            args.get("group")
                .or_else(|| args.get("name"))
                .map(|v| match v {
                    Value::String(s) => vec![s.clone()],
                    Value::Array(l) => l
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    _ => Vec::new(),
                });
        let inner = self.torrents.lock();
        let groups: Vec<Value> = inner
            .settings
            .bandwidth_groups
            .iter()
            .filter(|g| wanted.as_ref().is_none_or(|w| w.contains(&g.name)))
            .filter_map(|g| serde_json::to_value(g).ok())
            .collect();
        let mut out = Map::new();
        out.insert("group".into(), Value::Array(groups));
        Ok(out)
    }

    /// `group-set`: creates or changes the group `name`; its torrents get
    /// the new limits at once.
    fn group_set(&self, args: &Args) -> Reply {
        let name = args
            .get("name")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or("no group name")?;
        let mut settings = self.torrents.lock().settings.clone();
        let groups = &mut settings.bandwidth_groups;
        let at = match groups.iter().position(|g| g.name == name) {
            Some(i) => i,
            None => {
                groups.push(crate::limits::Group {
                    name: name.to_string(),
                    ..Default::default()
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[at];
        let flag = |k: &str| args.get(k).and_then(as_bool);
        let kb = |k: &str| args.get(k).and_then(as_i64).map(|v| v.max(0) as u64);
        if let Some(v) = flag("honorsSessionLimits") {
            g.honors_session_limits = v;
        }
        if let Some(v) = flag("speed-limit-down-enabled") {
            g.speed_limit_down_enabled = v;
        }
        if let Some(v) = kb("speed-limit-down") {
            g.speed_limit_down = v;
        }
        if let Some(v) = flag("speed-limit-up-enabled") {
            g.speed_limit_up_enabled = v;
        }
        if let Some(v) = kb("speed-limit-up") {
            g.speed_limit_up = v;
        }
        self.torrents.set_settings(settings, false)?;
        Ok(Map::new())
    }

    fn torrent_set(&self, args: &Args) -> Reply {
        let ids = parse_ids(args.get("ids"));
        if let Some(location) = args.get("location") {
            // As torrent-set-location without moving the data.
            let location = location.as_str().ok_or("invalid location")?;
            let location = checked_dir(self.torrents.lock().settings.root(), location)?;
            self.torrents.set_location(&ids, &location, false)?;
        }
        let labels = match args.get("labels") {
            Some(v) => Some(parse_labels(v)?),
            None => None,
        };
        self.torrents.update(&ids, |e, r| {
            let before = r.clone();
            let int = |k: &str| args.get(k).and_then(as_i64);
            let flag = |k: &str| args.get(k).and_then(as_bool);
            if let Some(v) = int("downloadLimit") {
                r.download_limit = v.max(0) as u64;
            }
            if let Some(v) = flag("downloadLimited") {
                r.download_limited = v;
            }
            if let Some(v) = int("uploadLimit") {
                r.upload_limit = v.max(0) as u64;
            }
            if let Some(v) = flag("uploadLimited") {
                r.upload_limited = v;
            }
            if let Some(v) = flag("honorsSessionLimits") {
                r.honors_session_limits = v;
            }
            if let Some(v) = int("bandwidthPriority") {
                r.bandwidth_priority = v.clamp(-1, 1);
            }
            if let Some(v) = int("peer-limit") {
                r.peer_limit = v.max(0);
            }
            if let Some(v) = args.get("seedRatioLimit").and_then(Value::as_f64) {
                r.seed_ratio_limit = v.max(0.0);
            }
            if let Some(v) = int("seedRatioMode") {
                r.seed_ratio_mode = v.clamp(0, 2);
            }
            if let Some(v) = int("seedIdleLimit") {
                r.seed_idle_limit = v.max(0);
            }
            if let Some(v) = int("seedIdleMode") {
                r.seed_idle_mode = v.clamp(0, 2);
            }
            if let Some(l) = &labels {
                r.labels = l.clone();
            }
            if let Some(g) = args.get("group") {
                r.group = g
                    .as_str()
                    .ok_or("group must be a string")?
                    .trim()
                    .to_string();
            }
            let visible = e.visible_files().count();
            let mut wanted = if r.wanted.len() == visible {
                r.wanted.clone()
            } else {
                vec![true; visible]
            };
            apply_wanted(&mut wanted, args)?;
            r.wanted = if wanted.iter().all(|w| *w) {
                Vec::new()
            } else {
                wanted
            };
            let mut prio = if r.priorities.len() == visible {
                r.priorities.clone()
            } else {
                vec![0; visible]
            };
            for (key, p) in [
                ("priority-high", 1),
                ("priority-normal", 0),
                ("priority-low", -1),
            ] {
                for k in file_indices(args.get(key), visible)? {
                    prio[k] = p;
                }
            }
            r.priorities = if prio.iter().all(|p| *p == 0) {
                Vec::new()
            } else {
                prio
            };
            // What the engine takes only at start: restart it when that
            // changed. Limits change live (below); seed limits are the
            // daemon's own.
            Ok(r.wanted != before.wanted)
        })?;
        self.torrents.apply_limits(&ids);
        if let Some(pos) = args.get("queuePosition").and_then(as_i64) {
            self.torrents.set_queue_position(&ids, pos)?;
        }
        Ok(Map::new())
    }
}

/// Appends `v` as JSON (serialising a `Value` or a plain list cannot fail).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Parses `ids` in every form clients send.
pub fn parse_ids(v: Option<&Value>) -> Ids {
    fn one(v: &Value) -> Sel {
        if let Some(n) = as_i64(v) {
            return Sel::Id(n);
        }
        match v.as_str().map(InfoHash::from_hex) {
            Some(Ok(h)) => Sel::Hash(h),
            _ => Sel::Nothing,
        }
    }
    match v {
        None | Some(Value::Null) => Ids::All,
        Some(Value::String(s)) if s == "recently-active" => Ids::RecentlyActive,
        Some(Value::Array(list)) => Ids::Some(list.iter().map(one).collect()),
        Some(other) => Ids::Some(vec![one(other)]),
    }
}

/// An integer, also from an integral double.
fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
            .map(|f| f as i64)
    })
}

/// A boolean, also from 0/1 (older clients).
fn as_bool(v: &Value) -> Option<bool> {
    v.as_bool().or_else(|| as_i64(v).map(|n| n != 0))
}

fn parse_labels(v: &Value) -> Result<Vec<String>, String> {
    let list = v.as_array().ok_or("labels must be a list of strings")?;
    let mut out: Vec<String> = Vec::new();
    for l in list {
        let s = l.as_str().ok_or("labels must be a list of strings")?.trim();
        if s.is_empty() || s.contains(',') {
            return Err("labels cannot be empty or contain commas".into());
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    Ok(out)
}

/// File indices from `files-wanted` and friends: a list of indices, or an
/// empty list meaning every file (Transmission's convention).
fn file_indices(v: Option<&Value>, count: usize) -> Result<Vec<usize>, String> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let list = v.as_array().ok_or("file lists must be lists of indices")?;
    if list.is_empty() {
        return Ok((0..count).collect());
    }
    list.iter()
        .map(|x| {
            as_i64(x)
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n < count)
                .ok_or_else(|| "file index out of range".to_string())
        })
        .collect()
}

fn apply_wanted(wanted: &mut [bool], args: &Args) -> Result<(), String> {
    for (key, flag) in [("files-wanted", true), ("files-unwanted", false)] {
        for k in file_indices(args.get(key), wanted.len())? {
            wanted[k] = flag;
        }
    }
    Ok(())
}

fn free_space(args: &Args) -> Reply {
    let path = args.get("path").and_then(Value::as_str).unwrap_or("");
    if !Path::new(path).is_absolute() {
        return Err("directory path is not absolute".into());
    }
    let (free, total) = statvfs(Path::new(path)).map_err(|e| e.to_string())?;
    let v = json!({"path": path, "size-bytes": free, "total_size": total});
    Ok(v.as_object().cloned().unwrap_or_default())
}

/// Free (for unprivileged users) and total bytes of the filesystem of `path`.
fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // field widths vary by target
    let frsize = st.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_table_lists_exactly_the_dispatched_methods() {
        let arms = crate::fields::arm_names(
            include_str!("rpc.rs"),
            "fn method(&self",
            "method name not recognized",
            12,
        );
        assert_eq!(arms, METHODS, "METHODS and Rpc::method's arms differ");
    }

    #[test]
    fn ids_in_every_form() {
        let h = "0ca7f07bf09ca3fcaf077b7e85e79cff922f5a3a";
        let hash = InfoHash::from_hex(h).unwrap();
        assert_eq!(parse_ids(None), Ids::All);
        assert_eq!(parse_ids(Some(&json!(3))), Ids::Some(vec![Sel::Id(3)]));
        assert_eq!(
            parse_ids(Some(&json!(h.to_uppercase()))),
            Ids::Some(vec![Sel::Hash(hash)])
        );
        assert_eq!(
            parse_ids(Some(&json!([1, h, "junk", 2.0]))),
            Ids::Some(vec![Sel::Id(1), Sel::Hash(hash), Sel::Nothing, Sel::Id(2)])
        );
        assert_eq!(
            parse_ids(Some(&json!("recently-active"))),
            Ids::RecentlyActive
        );
    }

    #[test]
    fn labels_and_file_lists() {
        assert_eq!(parse_labels(&json!(["a", " b ", "a"])).unwrap(), ["a", "b"]);
        assert!(parse_labels(&json!(["a,b"])).is_err());
        assert!(parse_labels(&json!([""])).is_err());
        assert!(parse_labels(&json!("a")).is_err());
        assert_eq!(file_indices(Some(&json!([])), 3).unwrap(), [0, 1, 2]);
        assert_eq!(file_indices(Some(&json!([2, 0])), 3).unwrap(), [2, 0]);
        assert!(file_indices(Some(&json!([3])), 3).is_err());
        let mut w = vec![true; 3];
        let args = json!({"files-unwanted": [1, 2], "files-wanted": [2]});
        apply_wanted(&mut w, args.as_object().unwrap()).unwrap();
        assert_eq!(
            w,
            [true, false, false],
            "a file both wanted and unwanted ends unwanted"
        );
    }

    #[test]
    fn free_space_needs_an_absolute_path() {
        let rel = json!({"path": "tmp"});
        assert_eq!(
            free_space(rel.as_object().unwrap()).unwrap_err(),
            "directory path is not absolute"
        );
        let abs = json!({"path": "/"});
        let out = free_space(abs.as_object().unwrap()).unwrap();
        assert!(out["size-bytes"].is_u64() && out["total_size"].as_u64().unwrap() > 0);
    }
}
