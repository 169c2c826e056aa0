//! `trackerStats`: one object per tracker with the keys Transmission 3.00
//! sends (transmission-remote's `-it` prints a tracker only when every one
//! of them is there with its type) plus 4.0's `sitename`, filled from the
//! session announcer's state (`bittern_engine::TorrentHandle::tracker_status`).
//! A torrent that does not announce (stopped, queued, no metadata yet)
//! lists its trackers with nothing learnt, as Transmission does.
//!
//! Mapping: `lastAnnounce*` from the tracker's last announce (answered or
//! failed; `lastAnnounceResult` is `"Success"` or the error), seeder,
//! leecher and download counts from its last answer or scrape (-1 when it
//! never said), `nextAnnounceTime` the torrent's next announce, and
//! `announceState` 1 (waiting) while one is scheduled, else 0 (inactive).
//! bittern does not date the start of a request (`last*StartTime` 0), nor
//! tell a timeout from other errors (`last*TimedOut` false), nor schedule
//! scrapes (`nextScrapeTime` 0). `isBackup` is true for every tracker of
//! a tier but the one in use: the one that answered last, else the first.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bittern_engine::{AnnouncerStatus, TrackerStatus};
use serde_json::{json, Value};

/// Transmission's `announceState`/`scrapeState`: nothing scheduled.
const INACTIVE: i64 = 0;
/// Transmission's `announceState`/`scrapeState`: waiting for its time.
const WAITING: i64 = 1;

/// The `trackerStats` array for `tiers` (the torrent's announce list),
/// with what `status` knows of each.
pub(super) fn stats(tiers: &[Vec<String>], status: Option<&AnnouncerStatus>) -> Value {
    let now = (Instant::now(), SystemTime::now());
    let unix = |t: Option<Instant>| -> i64 {
        let Some(t) = t else { return 0 };
        let at = if t <= now.0 {
            now.1.checked_sub(now.0 - t)
        } else {
            now.1.checked_add(t - now.0)
        };
        at.and_then(|a| a.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
    };
    let known = |url: &str| status.and_then(|s| s.trackers.iter().find(|t| &*t.url == url));
    let next = status.and_then(|s| s.next_announce);
    let mut list = Vec::new();
    for (tier, urls) in tiers.iter().enumerate() {
        // The tracker in use in this tier: the one that answered last.
        let current = urls
            .iter()
            .enumerate()
            .filter_map(|(i, u)| known(u).and_then(|t| t.last_success).map(|at| (at, i)))
            .max()
            .map_or(0, |(_, i)| i);
        for (i, url) in urls.iter().enumerate() {
            let blank = TrackerStatus::default();
            let t = known(url).unwrap_or(&blank);
            let announced = t.last_announce.is_some();
            let ok = announced && t.last_error.is_none();
            let result = match (&t.last_error, announced) {
                (Some(e), _) => e.clone(),
                (None, true) => "Success".to_string(),
                (None, false) => String::new(),
            };
            let scraped = t.last_scrape.is_some();
            let scrape = super::scrape_url(url);
            let count = |n: Option<u32>| n.map_or(-1, i64::from);
            list.push(json!({
                "announce": url,
                "announceState": if next.is_some() { WAITING } else { INACTIVE },
                "downloadCount": count(t.downloaded),
                "hasAnnounced": announced,
                "hasScraped": scraped,
                "host": host(url),
                "id": list.len(),
                "isBackup": i != current,
                "lastAnnouncePeerCount": t.last_peer_count,
                "lastAnnounceResult": result,
                "lastAnnounceStartTime": 0,
                "lastAnnounceSucceeded": ok,
                "lastAnnounceTime": unix(t.last_announce),
                "lastAnnounceTimedOut": false,
                "lastScrapeResult": t.last_scrape_error.clone().unwrap_or_default(),
                "lastScrapeStartTime": 0,
                "lastScrapeSucceeded": scraped && t.last_scrape_error.is_none(),
                "lastScrapeTime": unix(t.last_scrape),
                "lastScrapeTimedOut": false,
                "leecherCount": count(t.leechers),
                "nextAnnounceTime": unix(next),
                "nextScrapeTime": 0,
                "scrape": scrape,
                // bittern schedules no scrapes.
                "scrapeState": INACTIVE,
                "seederCount": count(t.seeders),
                "sitename": sitename(url),
                "tier": tier,
            }));
        }
    }
    Value::Array(list)
}

/// `scheme://host[:port]` of a URL, as Transmission 3.00's `host`.
fn host(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}://{authority}")
}

/// The host name without its port (Transmission 4.0's `sitename` is the
/// registrable name; bittern keeps no public-suffix list).
fn sitename(url: &str) -> String {
    let h = host(url);
    let authority = h.split_once("://").map_or(h.as_str(), |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("").to_string();
    }
    authority.split(':').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hosts_and_sitenames() {
        assert_eq!(
            host("http://127.0.0.1:6969/announce"),
            "http://127.0.0.1:6969"
        );
        assert_eq!(host("udp://u:p@t.example:80"), "udp://t.example:80");
        assert_eq!(sitename("http://t.example:80/a"), "t.example");
        assert_eq!(sitename("http://[::1]:80/a"), "::1");
    }

    #[test]
    fn what_the_announcer_knows_is_reported() {
        let (a, b) = ("http://127.0.0.1:1/announce", "udp://127.0.0.1:2");
        let now = Instant::now();
        let status = AnnouncerStatus {
            trackers: vec![
                TrackerStatus {
                    url: a.into(),
                    tier: 0,
                    last_error: Some("connection refused".into()),
                    last_announce: Some(now - Duration::from_secs(10)),
                    ..TrackerStatus::default()
                },
                TrackerStatus {
                    url: b.into(),
                    tier: 0,
                    last_success: Some(now),
                    last_announce: Some(now),
                    last_peer_count: 3,
                    seeders: Some(1),
                    leechers: Some(2),
                    ..TrackerStatus::default()
                },
            ],
            next_announce: Some(now + Duration::from_secs(1800)),
            ..AnnouncerStatus::default()
        };
        let tiers = vec![vec![a.to_string(), b.to_string()]];
        let v = stats(&tiers, Some(&status));
        let (x, y) = (&v[0], &v[1]);
        assert_eq!(x["lastAnnounceSucceeded"], false);
        assert_eq!(x["lastAnnounceResult"], "connection refused");
        assert_eq!(x["isBackup"], true, "b answered: a is the backup");
        assert_eq!(x["seederCount"], -1);
        assert_eq!((y["id"].as_i64(), y["tier"].as_i64()), (Some(1), Some(0)));
        assert_eq!(y["lastAnnounceResult"], "Success");
        assert_eq!(y["lastAnnouncePeerCount"], 3);
        assert_eq!(
            (y["seederCount"].as_i64(), y["leecherCount"].as_i64()),
            (Some(1), Some(2))
        );
        assert_eq!(y["scrape"], b);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let last = x["lastAnnounceTime"].as_i64().unwrap();
        assert!((wall - 12..=wall - 8).contains(&last), "{last} vs {wall}");
        let next = y["nextAnnounceTime"].as_i64().unwrap();
        assert!((wall + 1790..=wall + 1810).contains(&next));
        assert_eq!(y["announceState"], WAITING);
        // Not announcing: listed, nothing known.
        let v = stats(&tiers, None);
        assert_eq!(v[0]["hasAnnounced"], false);
        assert_eq!(v[0]["lastAnnounceTime"], 0);
        assert_eq!(v[0]["announceState"], INACTIVE);
        assert_eq!(v[0]["isBackup"], false);
    }
}
