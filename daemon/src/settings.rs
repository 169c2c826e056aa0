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
];

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
        *self = merged;
        Ok(())
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
        assert_eq!(s.peer_port, 51413, "peer-port is not mutable over rpc");
        let before = s.clone();
        let bad = json!({"speed-limit-up": "fast", "start-added-torrents": false});
        assert!(s.merge(bad.as_object().unwrap()).is_err());
        assert_eq!(s, before, "a bad value changes nothing");
    }

    #[test]
    fn every_mutable_key_is_a_settings_key() {
        let v = serde_json::to_value(Settings::default()).unwrap();
        for k in MUTABLE {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
