//! `torrent-get` fields under Transmission's names and JSON types
//! (integers as JSON integers: transmission-remote drops a `-l` row whose
//! `eta`, `id`, sizes, rates or `status` is a float). Unknown names are
//! left out, as Transmission 4 does; so are fields bittern has no data
//! for yet (`desiredAvailable`), and `pieces` while a torrent does not
//! run in the engine.

mod trackers;

use bittern_engine::{AnnouncerStatus, PeerInfo, TorrentState, TorrentStatus};
use bittern_wire::{Bitfield, Magnet, Metainfo};
use serde_json::{json, Value};

use crate::settings::Settings;
use crate::state::Entry;

/// Every `torrent-get` field served, in the order of [`View::field`]'s
/// arms (a unit test checks the two agree; `daemon/RPC.md` lists them,
/// checked by `daemon/tests/rpc_doc.rs`).
pub const FIELDS: &[&str] = &[
    "id",
    "hashString",
    "name",
    "status",
    "error",
    "errorString",
    "eta",
    "etaIdle",
    "leftUntilDone",
    "sizeWhenDone",
    "totalSize",
    "percentDone",
    "percentComplete",
    "metadataPercentComplete",
    "recheckProgress",
    "isFinished",
    "isStalled",
    "isPrivate",
    "rateDownload",
    "rateUpload",
    "uploadRatio",
    "downloadedEver",
    "uploadedEver",
    "corruptEver",
    "haveValid",
    "haveUnchecked",
    "downloadDir",
    "addedDate",
    "doneDate",
    "activityDate",
    "startDate",
    "editDate",
    "dateCreated",
    "secondsDownloading",
    "secondsSeeding",
    "comment",
    "creator",
    "magnetLink",
    "pieceCount",
    "pieceSize",
    "labels",
    "group",
    "queuePosition",
    "bandwidthPriority",
    "downloadLimit",
    "downloadLimited",
    "uploadLimit",
    "uploadLimited",
    "honorsSessionLimits",
    "peer-limit",
    "maxConnectedPeers",
    "seedRatioLimit",
    "seedRatioMode",
    "seedIdleLimit",
    "seedIdleMode",
    "manualAnnounceTime",
    "torrentFile",
    "webseeds",
    "webseedsSendingToUs",
    "file-count",
    "fileCount",
    "files",
    "fileStats",
    "wanted",
    "priorities",
    "trackers",
    "trackerList",
    "trackerStats",
    "pieces",
    "peersConnected",
    "peersGettingFromUs",
    "peersSendingToUs",
    "peersFrom",
    "peers",
];

/// Transmission's torrent status codes.
pub mod status_code {
    /// Stopped (paused, finished or failed).
    pub const STOPPED: i64 = 0;
    /// Checking its data.
    pub const VERIFYING: i64 = 2;
    /// Waiting in the download queue.
    pub const DOWNLOAD_WAIT: i64 = 3;
    /// Downloading.
    pub const DOWNLOADING: i64 = 4;
    /// Waiting in the seed queue.
    pub const SEED_WAIT: i64 = 5;
    /// Seeding.
    pub const SEEDING: i64 = 6;
}

/// What one torrent looks like to `torrent-get`.
pub struct View<'a> {
    /// The daemon's entry.
    pub entry: &'a Entry,
    /// The engine's snapshot, if it runs.
    pub status: Option<TorrentStatus>,
    /// Session settings (for limits the torrent inherits).
    pub settings: &'a Settings,
    /// Where its `.torrent` is kept.
    pub torrent_file: String,
    /// Filled on first use of a peer field.
    peers: Option<Vec<PeerInfo>>,
    engine: &'a dyn Lookup,
}

/// What a [`View`] asks the engine for only when a field needs it (a
/// whole list of torrents costs no peer, piece or tracker lookups).
pub trait Lookup {
    /// The torrent's connected peers.
    fn peers(&self) -> Vec<PeerInfo>;
    /// Its verified pieces, `None` when unknown.
    fn pieces(&self) -> Option<Bitfield>;
    /// Its trackers' state, `None` when not announcing.
    fn trackers(&self) -> Option<AnnouncerStatus>;
}

/// A [`Lookup`] that knows nothing (for views that need no engine data).
pub struct NoLookup;

impl Lookup for NoLookup {
    fn peers(&self) -> Vec<PeerInfo> {
        Vec::new()
    }
    fn pieces(&self) -> Option<Bitfield> {
        None
    }
    fn trackers(&self) -> Option<AnnouncerStatus> {
        None
    }
}

impl<'a> View<'a> {
    /// A view; `engine`'s peers are asked at most once, when a peer field
    /// is asked for.
    pub fn new(
        entry: &'a Entry,
        status: Option<TorrentStatus>,
        settings: &'a Settings,
        torrent_file: String,
        engine: &'a dyn Lookup,
    ) -> View<'a> {
        View {
            entry,
            status,
            settings,
            torrent_file,
            peers: None,
            engine,
        }
    }

    fn peers(&mut self) -> &[PeerInfo] {
        if self.peers.is_none() {
            // Not running, or no peer connected: nothing to ask the engine
            // (a whole list of idle torrents costs no peer lookups).
            let none = self.status.as_ref().is_none_or(|s| s.peers_connected == 0);
            self.peers = Some(if none {
                Vec::new()
            } else {
                self.engine.peers()
            });
        }
        self.peers.as_deref().unwrap_or(&[])
    }

    /// Transmission's status code.
    pub fn status_code(&self) -> i64 {
        use status_code::*;
        let st = self.status.as_ref();
        if self.entry.queued && !st.is_some_and(|s| s.state == TorrentState::Checking) {
            let complete = st.is_some_and(|s| s.wanted_bytes > 0 && s.have_bytes >= s.wanted_bytes);
            return if complete { SEED_WAIT } else { DOWNLOAD_WAIT };
        }
        match st.map(|s| &s.state) {
            None => STOPPED,
            Some(TorrentState::Checking) => VERIFYING,
            Some(TorrentState::Downloading | TorrentState::FetchingMetadata) => DOWNLOADING,
            Some(TorrentState::Seeding) => SEEDING,
            Some(_) => STOPPED,
        }
    }

    fn checked(&self) -> Option<&TorrentStatus> {
        self.status.as_ref().filter(|s| {
            s.state != TorrentState::Checking && s.state != TorrentState::FetchingMetadata
        })
    }

    /// Bytes of the wanted files (piece-exact once the check finished).
    fn size_when_done(&self) -> u64 {
        if let Some(s) = self.checked() {
            return s.wanted_bytes;
        }
        let wanted = &self.entry.record.wanted;
        self.entry
            .visible_files()
            .enumerate()
            .filter(|(k, _)| wanted.get(*k).copied().unwrap_or(true))
            .filter_map(|(_, i)| self.meta().map(|m| m.info.files[i].length))
            .sum()
    }

    fn left_until_done(&self) -> u64 {
        match self.checked() {
            Some(s) => s.wanted_bytes.saturating_sub(s.have_bytes),
            None => self.size_when_done(),
        }
    }

    /// Its metainfo, `None` for a magnet link whose metadata is not here.
    fn meta(&self) -> Option<&'a Metainfo> {
        self.entry.metainfo.as_deref()
    }

    /// Its trackers by tier (a magnet's `tr` each in a tier of its own).
    fn trackers(&self) -> Vec<Vec<String>> {
        match (self.meta(), &self.entry.magnet) {
            (Some(m), _) => m.trackers(),
            (None, Some(link)) => link.trackers.iter().map(|t| vec![t.clone()]).collect(),
            (None, None) => Vec::new(),
        }
    }

    /// Fetched fraction of the metadata: 1 once it is there.
    fn metadata_fraction(&self) -> f64 {
        if self.meta().is_some() {
            return 1.0;
        }
        match self.status.as_ref() {
            Some(s) if s.state == TorrentState::FetchingMetadata => s.progress.clamp(0.0, 1.0),
            _ => 0.0,
        }
    }

    fn total_size(&self) -> u64 {
        self.meta().map_or(0, |m| {
            m.info
                .files
                .iter()
                .filter(|f| !f.padding)
                .map(|f| f.length)
                .sum()
        })
    }

    fn ratio(&self) -> Value {
        let r = self.entry.folded(self.status.as_ref());
        let have = self.status.as_ref().map_or(0, |s| s.have_bytes);
        let base = if r.downloaded_ever > 0 {
            r.downloaded_ever
        } else {
            have
        };
        if base == 0 {
            if r.uploaded_ever > 0 {
                json!(-2)
            } else {
                json!(-1)
            }
        } else {
            json!(r.uploaded_ever as f64 / base as f64)
        }
    }

    /// One visible file's done bytes, by visible index.
    fn file_done(&self, k: usize) -> u64 {
        self.status
            .as_ref()
            .and_then(|s| s.files.get(k))
            .map_or(0, |f| f.done)
    }

    fn wanted(&self, k: usize) -> bool {
        self.entry.record.wanted.get(k).copied().unwrap_or(true)
    }

    fn priority(&self, k: usize) -> i64 {
        i64::from(self.entry.record.priorities.get(k).copied().unwrap_or(0))
    }

    /// The value of field `name`, `None` when unknown or without data.
    pub fn field(&mut self, name: &str) -> Option<Value> {
        let e = self.entry;
        let r = &e.record;
        let m = self.meta();
        let st = self.status.as_ref();
        let rate = |f: fn(&TorrentStatus) -> f64| st.map_or(0, |s| f(s).max(0.0).round() as u64);
        let v = match name {
            "id" => json!(e.id),
            "hashString" => json!(e.hash.to_hex()),
            "name" => json!(e.name()),
            "status" => json!(self.status_code()),
            "error" => json!(if self.error_string().is_empty() { 0 } else { 3 }),
            "errorString" => json!(self.error_string()),
            "eta" => json!(match st.and_then(|s| s.eta) {
                Some(d) if self.status_code() == status_code::DOWNLOADING =>
                    i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                _ => -1,
            }),
            "etaIdle" => json!(-1),
            "leftUntilDone" => json!(self.left_until_done()),
            "sizeWhenDone" => json!(self.size_when_done()),
            "totalSize" => json!(self.total_size()),
            "percentDone" => {
                let size = self.size_when_done();
                let left = self.left_until_done();
                json!(if size == 0 {
                    0.0
                } else {
                    (size - left) as f64 / size as f64
                })
            }
            "percentComplete" => {
                let total = self.total_size();
                let have = st.map_or(0, |s| s.have_bytes);
                json!(if total == 0 {
                    0.0
                } else {
                    have as f64 / total as f64
                })
            }
            "metadataPercentComplete" => json!(self.metadata_fraction()),
            "recheckProgress" => json!(if self.status_code() == status_code::VERIFYING {
                st.map_or(0.0, |s| s.progress)
            } else {
                0.0
            }),
            "isFinished" => json!(r.finished),
            "isStalled" => json!(self.stalled()),
            "isPrivate" => json!(m.is_some_and(|m| m.info.private)),
            "rateDownload" => json!(rate(|s| s.download_rate)),
            "rateUpload" => json!(rate(|s| s.upload_rate)),
            "uploadRatio" => self.ratio(),
            "downloadedEver" => json!(e.folded(st).downloaded_ever),
            "uploadedEver" => json!(e.folded(st).uploaded_ever),
            "corruptEver" => json!(e.folded(st).corrupt_ever),
            "haveValid" => json!(st.map_or(0, |s| s.have_bytes)),
            "haveUnchecked" => json!(0),
            "downloadDir" => json!(r
                .final_dir
                .as_ref()
                .unwrap_or(&r.save_dir)
                .to_string_lossy()),
            "addedDate" => json!(r.added_date),
            "doneDate" => json!(r.done_date),
            "activityDate" => json!(r.activity_date),
            "startDate" => json!(if r.paused { 0 } else { e.start_date }),
            "editDate" => json!(r.edit_date),
            "dateCreated" => json!(m.and_then(|m| m.creation_date).unwrap_or(0)),
            "secondsDownloading" => json!(r.seconds_downloading),
            "secondsSeeding" => json!(r.seconds_seeding),
            "comment" => json!(m.and_then(|m| m.comment.clone()).unwrap_or_default()),
            "creator" => json!(m.and_then(|m| m.created_by.clone()).unwrap_or_default()),
            "magnetLink" => json!(Magnet {
                // a v2-only torrent has no v1 hash: `btmh` alone
                info_hash: match (m, &e.magnet) {
                    (Some(m), _) if !m.info.version.has_v1() => None,
                    (None, Some(l)) if l.info_hash.is_none() => None,
                    _ => Some(e.hash),
                },
                info_hash_v2: match (m, &e.magnet) {
                    (Some(m), _) => m.info_hash_v2.map(|h| h.0),
                    (None, Some(l)) => l.info_hash_v2,
                    (None, None) => None,
                },
                display_name: Some(e.name()),
                exact_length: None,
                trackers: self.trackers().into_iter().flatten().collect(),
                web_seeds: Vec::new(),
                peers: Vec::new(),
            }
            .to_uri()),
            "pieceCount" => json!(m.map_or(0, |m| m.info.piece_count())),
            "pieceSize" => json!(m.map_or(0, |m| m.info.piece_length)),
            "labels" => json!(r.labels),
            "group" => json!(r.group),
            "queuePosition" => json!(r.queue_position),
            "bandwidthPriority" => json!(r.bandwidth_priority),
            "downloadLimit" => json!(r.download_limit),
            "downloadLimited" => json!(r.download_limited),
            "uploadLimit" => json!(r.upload_limit),
            "uploadLimited" => json!(r.upload_limited),
            "honorsSessionLimits" => json!(r.honors_session_limits),
            "peer-limit" | "maxConnectedPeers" => json!(r.peer_limit),
            "seedRatioLimit" => json!(if r.seed_ratio_mode == 0 {
                self.settings.seed_ratio_limit
            } else {
                r.seed_ratio_limit
            }),
            "seedRatioMode" => json!(r.seed_ratio_mode),
            "seedIdleLimit" => json!(r.seed_idle_limit),
            "seedIdleMode" => json!(r.seed_idle_mode),
            "manualAnnounceTime" => json!(-1),
            "torrentFile" => json!(if m.is_some() {
                self.torrent_file.as_str()
            } else {
                ""
            }),
            "webseeds" => json!(match (m, &e.magnet) {
                (Some(m), _) => m.url_list.clone(),
                (None, Some(link)) => link.web_seeds.clone(),
                (None, None) => Vec::new(),
            }),
            // Web seeds in use that moved bytes lately.
            "webseedsSendingToUs" => json!(st.map_or(0, |s| if s.web_seed_rate >= 1.0 {
                s.web_seeds
            } else {
                0
            })),
            "file-count" | "fileCount" => json!(e.visible_files().count()),
            "files" => {
                let files: Vec<Value> = m
                    .iter()
                    .flat_map(|m| e.visible_files().enumerate().map(move |(k, i)| (m, k, i)))
                    .map(|(m, k, i)| {
                        let f = &m.info.files[i];
                        let mut name = vec![m.info.name.clone()];
                        if m.info.multi_file {
                            name.extend(f.path.iter().cloned());
                        }
                        json!({"bytesCompleted": self.file_done(k), "length": f.length,
                               "name": name.join("/")})
                    })
                    .collect();
                json!(files)
            }
            "fileStats" => {
                let stats: Vec<Value> = (0..e.visible_files().count())
                    .map(|k| {
                        json!({"bytesCompleted": self.file_done(k), "wanted": self.wanted(k),
                               "priority": self.priority(k)})
                    })
                    .collect();
                json!(stats)
            }
            "wanted" => {
                let w: Vec<i64> = (0..e.visible_files().count())
                    .map(|k| i64::from(self.wanted(k)))
                    .collect();
                json!(w)
            }
            "priorities" => {
                let p: Vec<i64> = (0..e.visible_files().count())
                    .map(|k| self.priority(k))
                    .collect();
                json!(p)
            }
            "trackers" => {
                let mut list = Vec::new();
                for (tier, urls) in self.trackers().iter().enumerate() {
                    for url in urls {
                        list.push(
                            json!({"announce": url, "id": list.len(), "scrape": scrape_url(url),
                                         "tier": tier}),
                        );
                    }
                }
                json!(list)
            }
            "trackerList" => {
                let tiers: Vec<String> = self.trackers().iter().map(|t| t.join("\n")).collect();
                json!(tiers.join("\n\n"))
            }
            "trackerStats" => {
                let status = if st.is_some() {
                    self.engine.trackers()
                } else {
                    None
                };
                trackers::stats(&self.trackers(), status.as_ref())
            }
            // Transmission's base64 of the have-bitfield (piece 0 the high
            // bit of the first byte); only while the engine runs it.
            "pieces" => {
                let bits = self.engine.pieces()?;
                json!(data_encoding::BASE64.encode(bits.as_bytes()))
            }
            "peersConnected" => json!(st.map_or(0, |s| s.peers_connected)),
            "peersGettingFromUs" => {
                json!(self.peers().iter().filter(|p| p.upload_rate >= 1.0).count())
            }
            "peersSendingToUs" => {
                json!(self
                    .peers()
                    .iter()
                    .filter(|p| p.download_rate >= 1.0)
                    .count())
            }
            "peersFrom" => {
                let incoming = self.peers().iter().filter(|p| p.incoming).count();
                let total = self.peers().len();
                json!({"fromCache": 0, "fromDht": 0, "fromIncoming": incoming, "fromLpd": 0,
                       "fromLtep": 0, "fromPex": 0, "fromTracker": total - incoming})
            }
            "peers" => {
                let pieces = m.map_or(1, |m| m.info.piece_count().max(1)) as f64;
                let list: Vec<Value> = self
                    .peers()
                    .iter()
                    .map(|p| {
                        json!({"address": p.addr.ip().to_string(), "port": p.addr.port(),
                           "clientName": p.client.clone().unwrap_or_default(),
                           "clientIsChoked": p.am_choking, "clientIsInterested": p.am_interested,
                           "peerIsChoked": p.peer_choking, "peerIsInterested": p.peer_interested,
                           "isDownloadingFrom": p.download_rate >= 1.0,
                           "isUploadingTo": p.upload_rate >= 1.0,
                           "isEncrypted": p.encrypted, "isIncoming": p.incoming, "isUTP": p.utp,
                           "flagStr": flag_str(p),
                           "progress": p.pieces as f64 / pieces,
                           "rateToClient": p.download_rate.max(0.0).round() as u64,
                           "rateToPeer": p.upload_rate.max(0.0).round() as u64})
                    })
                    .collect();
                json!(list)
            }
            _ => return None,
        };
        Some(v)
    }

    /// Running without moving data for the stall time (the queue's rule).
    fn stalled(&self) -> bool {
        let (e, s) = (self.entry, self.settings);
        let running = matches!(
            self.status.as_ref().map(|s| &s.state),
            Some(TorrentState::Downloading | TorrentState::Seeding)
        );
        running
            && !e.queued
            && s.queue_stalled_enabled
            && e.last_active.elapsed().as_secs() >= s.queue_stalled_minutes.saturating_mul(60)
    }

    fn error_string(&self) -> String {
        if let Some(e) = &self.entry.error {
            return e.clone();
        }
        match self.status.as_ref().map(|s| &s.state) {
            Some(TorrentState::Error(e)) => e.to_string(),
            _ => String::new(),
        }
    }
}

/// The scrape URL of an announce URL: HTTP's by the BEP 48 convention
/// (or "" when it does not end in `announce`), a UDP tracker's is itself
/// (as Transmission reports it).
fn scrape_url(announce: &str) -> String {
    if announce.to_ascii_lowercase().starts_with("udp://") {
        return announce.to_string();
    }
    match announce.rfind('/') {
        Some(i) if announce[i + 1..].starts_with("announce") => {
            format!("{}/scrape{}", &announce[..i], &announce[i + 1 + 8..])
        }
        _ => String::new(),
    }
}

/// Transmission's peer flags: D/d downloading/interested-choked, U/u the
/// same for uploading, I incoming.
fn flag_str(p: &PeerInfo) -> String {
    let mut s = String::new();
    if p.am_interested {
        s.push(if p.peer_choking { 'd' } else { 'D' });
    }
    if p.peer_interested {
        s.push(if p.am_choking { 'u' } else { 'U' });
    }
    if p.encrypted {
        s.push('E');
    }
    if p.utp {
        s.push('T');
    }
    if p.incoming {
        s.push('I');
    }
    s
}

/// The string literals of the match arms (`"a" | "b" =>`) between the
/// lines holding `from` and `to` in `source`, indented by `indent` spaces:
/// how the tests read a dispatch table out of its code.
#[doc(hidden)]
pub fn arm_names(source: &str, from: &str, to: &str, indent: usize) -> Vec<String> {
    let start = source.find(from).unwrap_or(0);
    let end = source[start..].find(to).map_or(source.len(), |i| start + i);
    let mut names = Vec::new();
    for line in source[start..end].lines() {
        let Some(rest) = line.strip_prefix(&" ".repeat(indent)) else {
            continue;
        };
        if rest.starts_with(' ') {
            continue; // a nested match
        }
        let Some((head, _)) = rest.split_once("=>") else {
            continue;
        };
        let parts: Vec<&str> = head.split('|').map(str::trim).collect();
        let quoted = |p: &&str| p.len() >= 2 && p.starts_with('"') && p.ends_with('"');
        if parts.iter().all(quoted) {
            names.extend(parts.iter().map(|p| p[1..p.len() - 1].to_string()));
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_str_says_encrypted_utp_and_incoming_as_transmission_does() {
        let mut p = PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            client: None,
            download_rate: 0.0,
            upload_rate: 0.0,
            downloaded: 0,
            uploaded: 0,
            am_choking: true,
            peer_choking: true,
            am_interested: true,
            peer_interested: false,
            pieces: 0,
            outstanding: 0,
            incoming: false,
            utp: false,
            seed: false,
            encrypted: false,
            snubbed: false,
        };
        assert_eq!(flag_str(&p), "d");
        (p.encrypted, p.utp, p.incoming) = (true, true, true);
        assert_eq!(flag_str(&p), "dETI");
    }

    #[test]
    fn field_table_lists_exactly_the_served_fields() {
        let arms = arm_names(
            include_str!("fields.rs"),
            "pub fn field(&mut self",
            "fn stalled(&self)",
            12,
        );
        assert_eq!(arms, FIELDS, "FIELDS and View::field's arms differ");
    }

    #[test]
    fn scrape_urls() {
        assert_eq!(
            scrape_url("http://127.0.0.1:6969/announce"),
            "http://127.0.0.1:6969/scrape"
        );
        assert_eq!(
            scrape_url("http://t/x/announce.php?k=1"),
            "http://t/x/scrape.php?k=1"
        );
        assert_eq!(scrape_url("udp://t:1"), "udp://t:1");
        assert_eq!(scrape_url("http://t/a"), "");
    }
}
