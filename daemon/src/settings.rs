//! Session settings, kept in `settings.json` under Transmission's key
//! names so that `session-get`/`session-set` map onto them one to one.

use serde::{Deserialize, Serialize};

/// The settings a user can change over RPC (`session-set`), plus the
/// daemon's own cumulative counters. Speeds are kB/s (1 kB = 1000 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Settings {
    /// Where added torrents go when `torrent-add` names no directory.
    pub download_dir: String,
    /// Whether added torrents start (else they are added stopped).
    pub start_added_torrents: bool,
    /// Global download limit, kB/s.
    pub speed_limit_down: u64,
    /// Whether it applies.
    pub speed_limit_down_enabled: bool,
    /// Global upload limit, kB/s.
    pub speed_limit_up: u64,
    /// Whether it applies.
    pub speed_limit_up_enabled: bool,
    /// Alternative download limit, kB/s.
    pub alt_speed_down: u64,
    /// Alternative upload limit, kB/s.
    pub alt_speed_up: u64,
    /// Whether the alternative limits are on.
    pub alt_speed_enabled: bool,
    /// Whether the alternative limits follow the schedule.
    pub alt_speed_time_enabled: bool,
    /// Schedule start, minutes after midnight.
    pub alt_speed_time_begin: u64,
    /// Schedule end, minutes after midnight.
    pub alt_speed_time_end: u64,
    /// Schedule days, Sunday = 1 ... Saturday = 64.
    pub alt_speed_time_day: u64,
    /// Seed ratio after which torrents stop.
    #[serde(rename = "seedRatioLimit")]
    pub seed_ratio_limit: f64,
    /// Whether it applies.
    #[serde(rename = "seedRatioLimited")]
    pub seed_ratio_limited: bool,
    /// Idle minutes after which seeding stops.
    pub idle_seeding_limit: u64,
    /// Whether it applies.
    pub idle_seeding_limit_enabled: bool,
    /// Most peers in all.
    pub peer_limit_global: u64,
    /// Most peers per torrent.
    pub peer_limit_per_torrent: u64,
    /// Whether the download queue applies.
    pub download_queue_enabled: bool,
    /// Downloads active at once.
    pub download_queue_size: u64,
    /// Whether the seed queue applies.
    pub seed_queue_enabled: bool,
    /// Seeds active at once.
    pub seed_queue_size: u64,
    /// Whether stalled torrents leave the queue.
    pub queue_stalled_enabled: bool,
    /// Minutes without data after which a torrent is stalled.
    pub queue_stalled_minutes: u64,
    /// Directory for incomplete data.
    pub incomplete_dir: String,
    /// Whether it is used.
    pub incomplete_dir_enabled: bool,
    /// Whether to delete added `.torrent` files.
    pub trash_original_torrent_files: bool,
    /// Whether to run a program when a torrent completes.
    pub script_torrent_done_enabled: bool,
    /// The program (run with Transmission's `TR_*` environment).
    pub script_torrent_done_filename: String,
    /// The peer port used when none is given on the command line.
    pub peer_port: u16,
    /// Times the daemon was started.
    pub session_count: u64,
    /// Payload bytes received in earlier sessions.
    pub cumulative_downloaded_bytes: u64,
    /// Payload bytes sent in earlier sessions.
    pub cumulative_uploaded_bytes: u64,
    /// Torrents added in earlier sessions.
    pub cumulative_files_added: u64,
    /// Seconds the daemon ran in earlier sessions.
    pub cumulative_seconds_active: u64,
    /// When not empty, every directory a client names must be inside it
    /// (see [`crate::paths`]); set by `bittern daemon --data-root`, never
    /// over RPC.
    pub data_root: String,
    /// Bandwidth groups (`group-set`), by name.
    pub bandwidth_groups: Vec<crate::limits::Group>,
    /// The DHT (BEP 5) for public torrents. Takes effect after restart.
    pub dht_enabled: bool,
    /// bittern's own: DHT nodes to join through, `HOST:PORT`. Empty: the
    /// saved contacts, plus the public routers unless peers are bound to
    /// a loopback address. Takes effect after restart.
    pub dht_bootstrap: Vec<String>,
    /// uTP (BEP 29) beside TCP. Takes effect after restart.
    pub utp_enabled: bool,
    /// Peer exchange (BEP 11), never for private torrents. Live: see
    /// [`bittern_engine::Session::set_pex`].
    pub pex_enabled: bool,
    /// Local Service Discovery (BEP 14). Takes effect after restart.
    pub lpd_enabled: bool,
    /// Protocol encryption policy. Live for every connection made from
    /// then on: see [`bittern_engine::Session::set_encryption`].
    pub encryption: EncryptionMode,
    /// Whether the stored blocklist applies (live; see [`crate::blocklist`]).
    pub blocklist_enabled: bool,
    /// Where `blocklist-update` fetches the list; empty (the default):
    /// nowhere.
    pub blocklist_url: String,
}

/// Transmission's `encryption` values and the engine policy each maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptionMode {
    /// Encrypted (RC4) connections only: [`bittern_engine::Encryption::Require`].
    Required,
    /// Accept both, dial encrypted first, then in the clear:
    /// [`bittern_engine::Encryption::Prefer`].
    #[default]
    Preferred,
    /// Transmission accepts both and dials in the clear. The engine has no
    /// such policy; this maps to [`bittern_engine::Encryption::Prefer`]
    /// too (both kinds accepted, as Transmission does), because
    /// [`bittern_engine::Encryption::Disable`] would refuse encrypted
    /// peers that Transmission takes.
    Tolerated,
}

impl From<EncryptionMode> for bittern_engine::Encryption {
    fn from(m: EncryptionMode) -> Self {
        match m {
            EncryptionMode::Required => bittern_engine::Encryption::Require,
            EncryptionMode::Preferred | EncryptionMode::Tolerated => {
                bittern_engine::Encryption::Prefer
            }
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/".into());
        Settings {
            download_dir: format!("{}/Downloads", home.trim_end_matches('/')),
            start_added_torrents: true,
            speed_limit_down: 100,
            speed_limit_down_enabled: false,
            speed_limit_up: 100,
            speed_limit_up_enabled: false,
            alt_speed_down: 50,
            alt_speed_up: 50,
            alt_speed_enabled: false,
            alt_speed_time_enabled: false,
            alt_speed_time_begin: 540,
            alt_speed_time_end: 1020,
            alt_speed_time_day: 127,
            seed_ratio_limit: 2.0,
            seed_ratio_limited: false,
            idle_seeding_limit: 30,
            idle_seeding_limit_enabled: false,
            peer_limit_global: 200,
            peer_limit_per_torrent: 50,
            download_queue_enabled: true,
            download_queue_size: 5,
            seed_queue_enabled: false,
            seed_queue_size: 10,
            queue_stalled_enabled: true,
            queue_stalled_minutes: 30,
            incomplete_dir: format!("{}/Downloads", home.trim_end_matches('/')),
            incomplete_dir_enabled: false,
            trash_original_torrent_files: false,
            script_torrent_done_enabled: false,
            script_torrent_done_filename: String::new(),
            peer_port: 51413,
            session_count: 0,
            cumulative_downloaded_bytes: 0,
            cumulative_uploaded_bytes: 0,
            cumulative_files_added: 0,
            cumulative_seconds_active: 0,
            data_root: String::new(),
            bandwidth_groups: Vec::new(),
            dht_enabled: true,
            dht_bootstrap: Vec::new(),
            utp_enabled: true,
            pex_enabled: true,
            lpd_enabled: false,
            encryption: EncryptionMode::Preferred,
            blocklist_enabled: false,
            blocklist_url: String::new(),
        }
    }
}

/// The keys `session-set` may change (the rest are the daemon's own).
pub const MUTABLE: &[&str] = &[
    "download-dir",
    "start-added-torrents",
    "speed-limit-down",
    "speed-limit-down-enabled",
    "speed-limit-up",
    "speed-limit-up-enabled",
    "alt-speed-down",
    "alt-speed-up",
    "alt-speed-enabled",
    "alt-speed-time-enabled",
    "alt-speed-time-begin",
    "alt-speed-time-end",
    "alt-speed-time-day",
    "seedRatioLimit",
    "seedRatioLimited",
    "idle-seeding-limit",
    "idle-seeding-limit-enabled",
    "peer-limit-global",
    "peer-limit-per-torrent",
    "download-queue-enabled",
    "download-queue-size",
    "seed-queue-enabled",
    "seed-queue-size",
    "queue-stalled-enabled",
    "queue-stalled-minutes",
    "incomplete-dir",
    "incomplete-dir-enabled",
    "trash-original-torrent-files",
    "script-torrent-done-enabled",
    "script-torrent-done-filename",
    "peer-port",
    "dht-enabled",
    "dht-bootstrap",
    "utp-enabled",
    "pex-enabled",
    "lpd-enabled",
    "encryption",
    "blocklist-enabled",
    "blocklist-url",
];

/// The keys of [`MUTABLE`] that take effect only when the daemon starts
/// again (the engine starts the DHT and uTP, and joins LSD's multicast
/// group, once); `session-set` stores them and `session-get` lists the
/// changed ones under `bittern-restart-pending`. `pex-enabled` and
/// `encryption` apply at once, and so does `peer-port` (see
/// `Torrents::set_peer_port`).
pub const AT_RESTART: &[&str] = &["dht-enabled", "dht-bootstrap", "utp-enabled", "lpd-enabled"];

/// The keys of [`Settings`] that `session-get` reports as they are.
pub const REPORTED: &[&str] = MUTABLE;

impl Settings {
    /// The data root, if there is one.
    pub fn root(&self) -> Option<&std::path::Path> {
        (!self.data_root.is_empty()).then(|| std::path::Path::new(&self.data_root))
    }

    /// Applies the [`MUTABLE`] keys of `args` (others are ignored, as
    /// Transmission does).
    ///
    /// # Errors
    /// A value of the wrong type: the message names the key; nothing is
    /// changed then.
    pub fn merge(
        &mut self,
        args: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        let mut current = match serde_json::to_value(&*self) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err("cannot encode settings".into()),
        };
        for (k, v) in args {
            if MUTABLE.contains(&k.as_str()) {
                // Integral doubles for integer keys ("speed-limit-down": 100.0).
                let v = match (current.get(k), v.as_f64()) {
                    (Some(serde_json::Value::Number(n)), Some(f))
                        if n.is_u64() && f.fract() == 0.0 && f >= 0.0 =>
                    {
                        serde_json::Value::from(f as u64)
                    }
                    _ => v.clone(),
                };
                current.insert(k.clone(), v);
            }
        }
        let merged: Settings = serde_json::from_value(serde_json::Value::Object(current))
            .map_err(|e| format!("invalid argument: {e}"))?;
        if let Some(bad) = merged.dht_bootstrap.iter().find(|h| !is_host_port(h)) {
            return Err(format!(
                "invalid argument: dht-bootstrap {bad:?} is not HOST:PORT"
            ));
        }
        *self = merged;
        Ok(())
    }
}

/// `HOST:PORT` with a non-zero port (`[V6]:PORT` too).
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_changes_only_mutable_keys_with_right_types() {
        let mut s = Settings::default();
        let args = json!({"speed-limit-down": 200, "speed-limit-down-enabled": true,
            "alt-speed-enabled": true, "seedRatioLimit": 1.5, "peer-port": 1, "bogus": 3,
            "speed-limit-up": 70.0});
        s.merge(args.as_object().unwrap()).unwrap();
        assert_eq!(s.speed_limit_down, 200);
        assert!(s.speed_limit_down_enabled && s.alt_speed_enabled);
        assert_eq!(s.seed_ratio_limit, 1.5);
        assert_eq!(s.speed_limit_up, 70);
        assert_eq!(s.peer_port, 1, "peer-port is stored (used at restart)");
        let before = s.clone();
        let bad = json!({"speed-limit-up": "fast", "start-added-torrents": false});
        assert!(s.merge(bad.as_object().unwrap()).is_err());
        assert_eq!(s, before, "a bad value changes nothing");
    }

    #[test]
    fn network_settings_merge_and_validate() {
        let mut s = Settings::default();
        assert!(s.dht_enabled && s.utp_enabled && s.pex_enabled && !s.lpd_enabled);
        assert_eq!(s.encryption, EncryptionMode::Preferred);
        let args = json!({"dht-enabled": false, "utp-enabled": false, "pex-enabled": false,
            "lpd-enabled": true, "encryption": "required",
            "dht-bootstrap": ["127.0.0.1:6881", "[::1]:7000", "localhost:1"]});
        s.merge(args.as_object().unwrap()).unwrap();
        assert!(!s.dht_enabled && !s.utp_enabled && !s.pex_enabled && s.lpd_enabled);
        assert_eq!(s.encryption, EncryptionMode::Required);
        assert_eq!(s.dht_bootstrap.len(), 3);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["encryption"], "required");
        let before = s.clone();
        for bad in [
            json!({"encryption": "sometimes"}),
            json!({"dht-bootstrap": ["127.0.0.1"]}),
            json!({"dht-bootstrap": ["127.0.0.1:0"]}),
            json!({"dht-bootstrap": "127.0.0.1:6881"}),
            json!({"dht-enabled": "yes"}),
        ] {
            assert!(s.merge(bad.as_object().unwrap()).is_err(), "{bad}");
            assert_eq!(s, before, "{bad} changed something");
        }
        for (mode, engine) in [
            ("required", bittern_engine::Encryption::Require),
            ("preferred", bittern_engine::Encryption::Prefer),
            ("tolerated", bittern_engine::Encryption::Prefer),
        ] {
            let m: EncryptionMode = serde_json::from_value(json!(mode)).unwrap();
            assert_eq!(bittern_engine::Encryption::from(m), engine);
        }
    }

    #[test]
    fn every_mutable_key_is_a_settings_key() {
        let v = serde_json::to_value(Settings::default()).unwrap();
        for k in MUTABLE {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
