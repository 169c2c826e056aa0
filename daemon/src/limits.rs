//! Speed limits as the engine applies them: the session's (normal or
//! alternative, the latter switched by a weekly schedule), and each
//! torrent's own combined with its bandwidth group's. Units on the RPC
//! are kB/s (1 kB = 1000 bytes); the engine takes bytes per second.
//!
//! A torrent with `honorsSessionLimits` false skips the session's
//! limiters (normal or alternative). What bittern does not do of
//! Transmission's model: a group's `honorsSessionLimits` (stored and
//! reported) and `bandwidthPriority` (stored and reported, not used to
//! share bandwidth).

use serde::{Deserialize, Serialize};

use crate::settings::Settings;
use crate::store::Record;

/// Minutes in a day.
const DAY: u32 = 24 * 60;

/// A bandwidth group (`group-set` / `group-get`, Transmission 4.0): a
/// named pair of limits that torrents joining it (`torrent-set group`)
/// obey besides their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    /// Its name, unique.
    pub name: String,
    /// Whether the session's limits apply to its torrents (stored only).
    #[serde(rename = "honorsSessionLimits")]
    pub honors_session_limits: bool,
    /// Whether the download limit applies.
    #[serde(rename = "speed-limit-down-enabled")]
    pub speed_limit_down_enabled: bool,
    /// Download limit, kB/s.
    #[serde(rename = "speed-limit-down")]
    pub speed_limit_down: u64,
    /// Whether the upload limit applies.
    #[serde(rename = "speed-limit-up-enabled")]
    pub speed_limit_up_enabled: bool,
    /// Upload limit, kB/s.
    #[serde(rename = "speed-limit-up")]
    pub speed_limit_up: u64,
}

impl Default for Group {
    fn default() -> Self {
        Group {
            name: String::new(),
            honors_session_limits: true,
            speed_limit_down_enabled: false,
            speed_limit_down: 0,
            speed_limit_up_enabled: false,
            speed_limit_up: 0,
        }
    }
}

/// `kb` kB/s in bytes per second when `on`.
fn bytes(on: bool, kb: u64) -> Option<u64> {
    on.then(|| kb.saturating_mul(1000))
}

/// The tighter of two optional limits.
fn tighter(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The session's (download, upload) limits in bytes per second: the
/// alternative ones while `alt-speed-enabled`, else the normal ones where
/// enabled.
pub fn session_limits(s: &Settings) -> (Option<u64>, Option<u64>) {
    if s.alt_speed_enabled {
        (bytes(true, s.alt_speed_down), bytes(true, s.alt_speed_up))
    } else {
        (
            bytes(s.speed_limit_down_enabled, s.speed_limit_down),
            bytes(s.speed_limit_up_enabled, s.speed_limit_up),
        )
    }
}

/// A torrent's own (download, upload) limits in bytes per second: its
/// limits where enabled, tightened by its group's.
pub fn torrent_limits(s: &Settings, r: &Record) -> (Option<u64>, Option<u64>) {
    let mut down = bytes(r.download_limited, r.download_limit);
    let mut up = bytes(r.upload_limited, r.upload_limit);
    if let Some(g) = s
        .bandwidth_groups
        .iter()
        .find(|g| !r.group.is_empty() && g.name == r.group)
    {
        down = tighter(down, bytes(g.speed_limit_down_enabled, g.speed_limit_down));
        up = tighter(up, bytes(g.speed_limit_up_enabled, g.speed_limit_up));
    }
    (down, up)
}

/// Whether the alternative limits' schedule covers `minute` (after local
/// midnight) of `weekday` (0 = Sunday). As in Transmission, a window runs
/// from `begin` to `end` on each day of the `days` bitmask (Sunday = 1 …
/// Saturday = 64); an `end` at or before `begin` runs past midnight into
/// the next day (so `begin == end` is a whole day).
pub fn in_alt_window(weekday: u32, minute: u32, begin: u64, end: u64, days: u64) -> bool {
    let begin = u32::try_from(begin.min(u64::from(DAY - 1))).unwrap_or(0);
    let end = u32::try_from(end.min(u64::from(DAY - 1))).unwrap_or(0);
    let stop = if end <= begin { end + DAY } else { end };
    // The window of today, or yesterday's running past midnight.
    [(weekday % 7, minute), ((weekday + 6) % 7, minute + DAY)]
        .iter()
        .any(|&(day, at)| days & (1 << day) != 0 && (begin..stop).contains(&at))
}

/// Local weekday (0 = Sunday) and minute after midnight, now.
pub fn local_now() -> (u32, u32) {
    // SAFETY: `time(NULL)` only returns the time.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: an all-zero `tm` is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time and an out value; the reentrant
    // variant keeps no shared state.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return (0, 0);
    }
    let wd = u32::try_from(tm.tm_wday).unwrap_or(0);
    let min = u32::try_from(tm.tm_hour * 60 + tm.tm_min).unwrap_or(0);
    (wd, min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_windows() {
        // 09:00-17:00 on weekdays (Mon..Fri = 2+4+8+16+32 = 62).
        let (b, e, wd) = (540, 1020, 62);
        assert!(in_alt_window(1, 540, b, e, wd), "monday 09:00");
        assert!(!in_alt_window(1, 1020, b, e, wd), "end is exclusive");
        assert!(!in_alt_window(0, 600, b, e, wd), "sunday");
        assert!(!in_alt_window(3, 539, b, e, wd));
        // 22:00-06:00 on Friday only: runs into Saturday morning.
        let (b, e, fri) = (1320, 360, 32);
        assert!(in_alt_window(5, 1380, b, e, fri));
        assert!(in_alt_window(6, 300, b, e, fri), "saturday 05:00");
        assert!(!in_alt_window(6, 1380, b, e, fri), "saturday night");
        assert!(
            !in_alt_window(5, 300, b, e, fri),
            "friday 05:00 is thursday's"
        );
        // begin == end: the whole day.
        assert!(in_alt_window(2, 0, 0, 0, 4) && in_alt_window(2, 1439, 0, 0, 4));
        assert!(!in_alt_window(3, 0, 0, 0, 4));
        assert!(!in_alt_window(2, 600, 0, 0, 0), "no days");
    }

    #[test]
    fn limits_combine() {
        let mut s = Settings::default();
        assert_eq!(session_limits(&s), (None, None));
        s.speed_limit_down_enabled = true;
        s.speed_limit_down = 200;
        assert_eq!(session_limits(&s), (Some(200_000), None));
        s.alt_speed_enabled = true;
        assert_eq!(session_limits(&s), (Some(50_000), Some(50_000)));
        let mut r = Record {
            upload_limited: true,
            upload_limit: 30,
            group: "g".into(),
            ..Record::default()
        };
        assert_eq!(torrent_limits(&s, &r), (None, Some(30_000)));
        s.bandwidth_groups.push(Group {
            name: "g".into(),
            speed_limit_down_enabled: true,
            speed_limit_down: 70,
            speed_limit_up_enabled: true,
            speed_limit_up: 40,
            ..Group::default()
        });
        assert_eq!(torrent_limits(&s, &r), (Some(70_000), Some(30_000)));
        r.group.clear();
        assert_eq!(torrent_limits(&s, &r), (None, Some(30_000)));
    }
}
