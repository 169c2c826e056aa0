//! Announce and scrape parameters and results shared by the HTTP and UDP
//! clients, and the client configuration.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_wire::{InfoHash, PeerId};

/// The `event` of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnnounceEvent {
    /// A regular announce.
    None,
    /// The first announce of a torrent to a tracker.
    Started,
    /// The download has just finished.
    Completed,
    /// The torrent is being stopped.
    Stopped,
}

impl AnnounceEvent {
    /// The value of the HTTP `event` parameter; `None` for a regular announce.
    pub fn as_http(self) -> Option<&'static str> {
        match self {
            AnnounceEvent::None => None,
            AnnounceEvent::Started => Some("started"),
            AnnounceEvent::Completed => Some("completed"),
            AnnounceEvent::Stopped => Some("stopped"),
        }
    }

    /// Parses the HTTP `event` parameter (`""` and unknown values are `None`).
    pub fn from_http(s: &[u8]) -> AnnounceEvent {
        match s {
            b"started" => AnnounceEvent::Started,
            b"completed" => AnnounceEvent::Completed,
            b"stopped" => AnnounceEvent::Stopped,
            _ => AnnounceEvent::None,
        }
    }

    /// The BEP 15 event code.
    pub fn udp_code(self) -> u32 {
        match self {
            AnnounceEvent::None => 0,
            AnnounceEvent::Completed => 1,
            AnnounceEvent::Started => 2,
            AnnounceEvent::Stopped => 3,
        }
    }

    /// Parses a BEP 15 event code (unknown codes are `None`).
    pub fn from_udp_code(code: u32) -> AnnounceEvent {
        match code {
            1 => AnnounceEvent::Completed,
            2 => AnnounceEvent::Started,
            3 => AnnounceEvent::Stopped,
            _ => AnnounceEvent::None,
        }
    }
}

/// What a client tells the tracker in one announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we accept peer connections on.
    pub port: u16,
    /// Bytes uploaded since `started`.
    pub uploaded: u64,
    /// Bytes downloaded since `started`.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
    /// Why we announce.
    pub event: AnnounceEvent,
    /// How many peers we would like; `None` lets the tracker decide.
    pub numwant: Option<u32>,
    /// A random value that lets the tracker recognise us across IP changes.
    pub key: u32,
    /// The `tracker id` the tracker gave us in an earlier reply.
    pub tracker_id: Option<Vec<u8>>,
}

/// A tracker's answer to an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// How long to wait before the next regular announce.
    pub interval: Duration,
    /// The tracker's floor for announces made early.
    pub min_interval: Option<Duration>,
    /// A value to echo in later announces (`trackerid`).
    pub tracker_id: Option<Vec<u8>>,
    /// Seeders in the swarm, if the tracker said.
    pub complete: Option<u32>,
    /// Leechers in the swarm, if the tracker said.
    pub incomplete: Option<u32>,
    /// Peers, IPv4 and IPv6 together, without duplicates.
    pub peers: Vec<SocketAddr>,
    /// A `warning message` from the tracker.
    pub warning: Option<String>,
}

/// Scrape counters for one torrent (BEP 48 / BEP 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Completed downloads the tracker has seen.
    pub downloaded: u32,
    /// Leechers.
    pub incomplete: u32,
}

/// Timeouts and limits for one tracker request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// TCP connect timeout for HTTP trackers.
    pub connect_timeout: Duration,
    /// How long to wait for an HTTP response (headers and body each).
    pub read_timeout: Duration,
    /// Responses larger than this are rejected with [`Error::TooLarge`](crate::Error).
    pub max_response_size: usize,
    /// BEP 15 retransmission: the n-th try waits `udp_base_timeout * 2^n`.
    pub udp_base_timeout: Duration,
    /// BEP 15 retransmission: how many times a UDP request is sent.
    pub udp_max_tries: u32,
    /// The HTTP `User-Agent`.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(20),
            max_response_size: 2 << 20,
            udp_base_timeout: Duration::from_secs(15),
            udp_max_tries: 8,
            user_agent: concat!("bittern/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl ClientConfig {
    /// The longest a UDP request can take with every retransmission.
    pub fn udp_worst_case(&self) -> Duration {
        (0..self.udp_max_tries).fold(Duration::ZERO, |acc, n| {
            acc.saturating_add(self.udp_base_timeout.saturating_mul(1u32 << n.min(16)))
        })
    }

    /// A copy whose timeouts fit in `budget` (used for the `stopped`
    /// announce at shutdown, which must not hang).
    pub fn within(&self, budget: Duration) -> ClientConfig {
        let mut c = self.clone();
        let budget = budget.max(Duration::from_millis(1));
        // An HTTP request may take connect + 2 * read (headers, then body).
        c.connect_timeout = c.connect_timeout.min(budget / 2);
        c.read_timeout = c.read_timeout.min(budget / 4);
        c.udp_base_timeout = c.udp_base_timeout.min(budget);
        while c.udp_max_tries > 1 && c.udp_worst_case() > budget {
            c.udp_max_tries -= 1;
        }
        c
    }
}

/// Bytes transferred so far, as the engine reports them to the announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransferStats {
    /// Bytes uploaded since the torrent started.
    pub uploaded: u64,
    /// Bytes downloaded since the torrent started.
    pub downloaded: u64,
    /// Bytes still missing.
    pub left: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_codes_round_trip() {
        for e in [
            AnnounceEvent::None,
            AnnounceEvent::Started,
            AnnounceEvent::Completed,
            AnnounceEvent::Stopped,
        ] {
            assert_eq!(AnnounceEvent::from_udp_code(e.udp_code()), e);
            assert_eq!(
                AnnounceEvent::from_http(e.as_http().unwrap_or("").as_bytes()),
                e
            );
        }
        assert_eq!(AnnounceEvent::Started.udp_code(), 2);
    }

    #[test]
    fn within_budget_bounds_every_timeout() {
        let c = ClientConfig::default().within(Duration::from_secs(2));
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.read_timeout, Duration::from_millis(500));
        assert_eq!(c.udp_max_tries, 1);
        assert!(c.udp_worst_case() <= Duration::from_secs(2));
        let d = ClientConfig::default();
        assert_eq!(d.udp_worst_case(), Duration::from_secs(15 * 255));
    }
}

/// One tracker's state, for display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerStatus {
    /// The tracker URL (one copy shared by every torrent on it).
    pub url: std::sync::Arc<str>,
    /// Its tier (0 is tried first).
    pub tier: usize,
    /// The error of the last failed announce, cleared by a success.
    pub last_error: Option<String>,
    /// When it last answered successfully.
    pub last_success: Option<Instant>,
    /// Peers it returned last time.
    pub last_peer_count: usize,
    /// Whether it has accepted our `started` (and so gets `stopped`).
    pub started: bool,
    /// When its last announce ended, answered or failed.
    pub last_announce: Option<Instant>,
    /// Seeders it reported last (announce or scrape).
    pub seeders: Option<u32>,
    /// Leechers it reported last (announce or scrape).
    pub leechers: Option<u32>,
    /// Completed downloads it reported in its last scrape.
    pub downloaded: Option<u32>,
    /// When its last scrape for this torrent ended.
    pub last_scrape: Option<Instant>,
    /// The error of the last scrape, `None` when it answered (or never
    /// was scraped).
    pub last_scrape_error: Option<String>,
}

/// A snapshot of one torrent's tracker state in the
/// [`SessionAnnouncer`](crate::SessionAnnouncer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnouncerStatus {
    /// Every tracker, in tier order.
    pub trackers: Vec<TrackerStatus>,
    /// When any tracker last answered.
    pub last_success: Option<Instant>,
    /// Seeders according to the last answer.
    pub seeders: Option<u32>,
    /// Leechers according to the last answer.
    pub leechers: Option<u32>,
    /// When the next announce is due (`None` once stopped).
    pub next_announce: Option<Instant>,
    /// Consecutive rounds in which every tracker failed.
    pub failures: u32,
    /// Successful announces so far.
    pub announces: u64,
}
