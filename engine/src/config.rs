//! Session and torrent configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bittern_tracker::ClientConfig;

/// Settings for a [`Session`](crate::Session).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Address of the listening socket shared by all torrents. Port 0
    /// picks a free port; read it back with `Session::local_addr`.
    pub listen: SocketAddr,
    /// When `listen` is an unspecified address (`0.0.0.0` or `[::]`), also
    /// listen on the other family's unspecified address, on the same port:
    /// IPv4 and IPv6 peers alike. The IPv6 socket is `IPV6_V6ONLY`, so the
    /// two never overlap. A machine without IPv6 keeps its IPv4 socket (the
    /// failure is logged). On by default; a specific `listen` address
    /// binds only itself.
    pub dual_stack: bool,
    /// More addresses to listen on, on the same port as `listen` (the one
    /// it got, when 0 was asked), e.g. `::1` beside `127.0.0.1`.
    pub listen_also: Vec<IpAddr>,
    /// Global upload limit in bytes per second (`None`: unlimited).
    pub upload_limit: Option<u64>,
    /// Global download limit in bytes per second (`None`: unlimited).
    pub download_limit: Option<u64>,
    /// Upper bound on peer connections across all torrents.
    pub max_connections: usize,
    /// Upper bound on connections of one torrent.
    pub max_peers_per_torrent: usize,
    /// Upper bound on outgoing connections still being opened (dialling,
    /// encryption and BitTorrent handshakes), across all torrents. Dials to
    /// addresses that never answer (gone peers handed out by the DHT or
    /// PEX, firewalls that drop) each hold a thread for the connect timeout;
    /// this bounds them, and the burst of SYNs a session with many
    /// addresses sends at once. Further addresses wait their turn (0: no
    /// outgoing connections at all).
    pub max_half_open: usize,
    /// Upper bound on files held open (and mapped) at once, for all torrents.
    pub max_open_files: usize,
    /// Threads of the SHA-1 verification pool (0: one per core).
    pub hash_threads: usize,
    /// Peer id prefix, Azureus style.
    pub peer_id_prefix: Vec<u8>,
    /// How trackers are contacted.
    pub tracker: ClientConfig,
    /// Re-announce intervals and backoff of the session's one announcer;
    /// tests lower `min_interval_floor` to announce every second.
    pub tracker_schedule: bittern_tracker::ScheduleConfig,
    /// Timing knobs; tests shorten them.
    pub timing: Timing,
    /// Whether to announce to the torrents' trackers.
    pub announce: bool,
    /// Peer exchange (BEP 11, `ut_pex`) with peers that speak it: tell
    /// them of our peers and dial those they tell of. Never on private
    /// torrents (BEP 27), whatever this says. On by default.
    pub pex: bool,
    /// How torrent data is read and written (memory maps or positioned IO).
    pub storage_backend: bittern_storage::Backend,
    /// Where verification reads piece data from. `Map` by default: from
    /// the files' read-only maps, one copy less per verified byte (see
    /// DESIGN.md "Measured choices"), used only while the program has
    /// installed `bittern_storage::install_sigbus_guard()` (the `bittern`
    /// binary does); else storage falls back to positioned reads.
    pub hash_source: bittern_storage::HashSource,
    /// Hash blocks on the peer thread as they arrive (no read-back) rather
    /// than reading completed pieces back on the verification threads. The
    /// read-back spreads hashing over the cores, which on a machine with few
    /// cores and one fast peer keeps the peer thread free to receive.
    pub inline_hashing: bool,
    /// v2 torrents (BEP 52): ask a peer for a piece's 16 KiB leaves (a
    /// hash request) as soon as its blocks are first requested, so each
    /// block is checked on arrival and a bad one is dropped before the
    /// piece completes. Off by default, as libtorrent does: a piece is
    /// checked against its piece-layer node when complete, and its leaves
    /// are asked only when it fails, to name the sender of the bad block
    /// (the same exact blame, see `v2::blame`). Asking ahead costs a
    /// bittern seeder one SHA-256 pass over everything it serves (it reads
    /// and hashes each piece's leaves to answer; 2.7-2.9x the v1 seeder's
    /// CPU on 1 GiB, benches/RESULTS-v2-swarm-early-pass.md).
    pub v2_leaves_ahead: bool,
    /// Upload blocks by passing `writev` addresses in read-only maps of
    /// the files, so the kernel copies page cache to socket once, instead
    /// of `pread` into buffers and a vectored write (two copies). On by
    /// default; off keeps the buffered path (for comparison).
    pub mapped_upload: bool,
    /// At a stop, the flush work (verified bytes still waiting for the
    /// disk, plus 256 KiB for each file to sync: every sync ends with a
    /// device cache flush) from which on the resume state records the
    /// pieces unflushed, stamped with this boot's id, instead of waiting
    /// for the disk (they are trusted on restart unless the system
    /// rebooted; after a reboot only those an earlier save flushed are).
    /// 0: never wait; `u64::MAX`: always flush first.
    pub stop_flush_limit: u64,
    /// How long after a piece passes its hash its bytes start going to
    /// disk (`sync_file_range`), rather than the kernel's own flusher
    /// picking them up about 30 s later. A download shorter than this
    /// finishes without spending CPU on writeback while it runs; a longer
    /// one streams to disk at most this far behind, which bounds what a
    /// resume save or a stop has to flush. `Duration::ZERO`: at once.
    pub writeback_delay: Duration,
    /// The DHT (BEP 5) on the listen port's UDP twin; `None`: off. Public
    /// torrents announce there and look up peers; private ones never do.
    pub dht: Option<crate::dht::DhtSettings>,
    /// uTP (BEP 29) on the listen port's UDP twin: incoming uTP
    /// connections are accepted and routed like TCP ones, and outgoing
    /// connections try TCP first and uTP when TCP fails (or uTP alone when
    /// `tcp` is off). Off by default in the engine; the CLI turns it on.
    pub utp: bool,
    /// TCP: outgoing connections may use it and incoming ones are
    /// accepted. Off only for tests that must run over uTP alone.
    pub tcp: bool,
    /// How long an outgoing uTP connect may take.
    pub utp_connect_timeout: Duration,
    /// Settings of every uTP connection (buffers, LEDBAT target, timeouts:
    /// a silent peer fails after `max_timeouts` retransmission timeouts).
    pub utp_conn: crate::UtpConfig,
    /// Download from the torrents' web seeds (BEP 19 `url-list`).
    pub web_seeds: bool,
    /// How web seeds are fetched.
    pub web_seed: crate::webseed::WebSeedConfig,
    /// Local Service Discovery (BEP 14): `None` is off (the default, and
    /// always in tests outside a private network namespace). The session
    /// fills in the listen port, and the listen address when `interface`
    /// is unspecified and it listens on one IPv4 address.
    pub lsd: Option<crate::lsd::LsdConfig>,
    /// Protocol encryption (MSE/PE) policy for every connection.
    pub encryption: Encryption,
}

/// Protocol encryption (MSE/PE) policy: which handshakes the listen port
/// accepts and how we dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Plain BitTorrent only: incoming MSE handshakes are dropped and we
    /// dial in the clear.
    Disable,
    /// Accept both; dial with MSE (offering RC4 and plaintext) and, when
    /// that fails, once more in the clear, as other clients do. Answering
    /// an MSE peer that offers both, pick plaintext after the obfuscated
    /// handshake (libtorrent's default; uploads stay zero-copy); a peer
    /// offering only RC4 gets RC4.
    #[default]
    Prefer,
    /// RC4-encrypted connections only, both ways: plain BitTorrent
    /// handshakes and MSE peers offering only plaintext are dropped.
    Require,
}

impl SessionConfig {
    /// Whether the session needs its UDP socket (DHT or uTP on).
    pub(crate) fn wants_udp(&self) -> bool {
        self.dht.is_some() || self.utp
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6881)),
            dual_stack: true,
            listen_also: Vec::new(),
            upload_limit: None,
            download_limit: None,
            max_connections: 500,
            max_peers_per_torrent: 80,
            max_half_open: 50,
            max_open_files: bittern_storage::DEFAULT_MAX_OPEN,
            hash_threads: 0,
            peer_id_prefix: b"-BT0100-".to_vec(),
            // BEP 15's 8 UDP tries can hold one announce for an hour.
            tracker: ClientConfig {
                udp_max_tries: 4,
                ..ClientConfig::default()
            },
            tracker_schedule: bittern_tracker::ScheduleConfig::default(),
            timing: Timing::default(),
            announce: true,
            pex: true,
            storage_backend: bittern_storage::Backend::default(),
            hash_source: bittern_storage::HashSource::Map,
            inline_hashing: false,
            v2_leaves_ahead: false,
            mapped_upload: true,
            stop_flush_limit: 64 << 20,
            writeback_delay: Duration::from_secs(5),
            dht: None,
            utp: false,
            tcp: true,
            utp_connect_timeout: Duration::from_secs(3),
            utp_conn: crate::UtpConfig::default(),
            web_seeds: true,
            web_seed: crate::webseed::WebSeedConfig::default(),
            lsd: None,
            encryption: Encryption::default(),
        }
    }
}

/// Protocol timers. The defaults follow the mainline client.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How often the choker re-evaluates unchokes.
    pub choke_interval: Duration,
    /// Every this many choke rounds the optimistic unchoke rotates.
    pub optimistic_rounds: u32,
    /// Keep-alive period on an otherwise silent connection.
    pub keepalive: Duration,
    /// A connection with nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// A peer that sends no block for this long while we wait is snubbed;
    /// so is one whose request went overdue within this long.
    pub snub_timeout: Duration,
    /// Slack of every request's deadline, on top of the time the blocks
    /// queued before it take at the peer's rate: an overdue request is
    /// cancelled and asked again (of another peer, or the same one).
    pub request_timeout: Duration,
    /// Timeout for TCP connects and for the handshake.
    pub connect_timeout: Duration,
    /// How often resume state is saved while downloading.
    pub resume_interval: Duration,
    /// The deadline of a graceful stop's network part: the `stopped`
    /// announces of the session's shutdown (what is not sent by then is
    /// abandoned with a log line), and one torrent's `stopped` announce
    /// when it stops alone.
    pub stop_announce_deadline: Duration,
    /// How long the session's shutdown waits, from its start, for every
    /// torrent's local stop work: its last resume save and the release of
    /// its files. Longer than the announce deadline: a save cut off costs
    /// the next start a recheck of that torrent, so only a disk that hangs
    /// should reach it (what is not done by then is abandoned, logged).
    pub stop_save_deadline: Duration,
    /// How long the session's tracker announcer (its scheduler, workers
    /// and channels) lives on after its last torrent left; the next
    /// torrent with a tracker starts a new one. A torrent stopped and
    /// started again within it keeps the announcer's tracker state
    /// (backoff, UDP connection id, the order of `stopped` before
    /// `started`).
    pub announcer_linger: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            choke_interval: Duration::from_secs(10),
            optimistic_rounds: 3,
            keepalive: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(300),
            snub_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            resume_interval: Duration::from_secs(30),
            stop_announce_deadline: Duration::from_secs(3),
            stop_save_deadline: Duration::from_secs(60),
            announcer_linger: Duration::from_secs(30),
        }
    }
}

/// When a complete torrent stops seeding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeedGoal {
    /// Seed until stopped.
    Forever,
    /// Stop as soon as everything wanted is verified. The stop records the
    /// pieces in resume state: flushed first, or, when more than
    /// [`SessionConfig::stop_flush_limit`] would have to be written,
    /// unflushed and vouched for on this boot only.
    None,
    /// Stop when uploaded / size reaches this ratio.
    Ratio(f64),
    /// Stop after seeding this long.
    Time(Duration),
}

/// Per-torrent options for [`Session::add_torrent`](crate::Session::add_torrent).
#[derive(Debug, Clone)]
pub struct TorrentOptions {
    /// One flag per file of the metainfo: `false` skips the file. Empty: all wanted.
    pub wanted_files: Vec<bool>,
    /// When to stop seeding.
    pub seed_goal: SeedGoal,
    /// Per-torrent upload limit in bytes per second.
    pub upload_limit: Option<u64>,
    /// Per-torrent download limit in bytes per second.
    pub download_limit: Option<u64>,
    /// Peers to connect to besides those the trackers give.
    pub peers: Vec<SocketAddr>,
    /// Download pieces in order rather than rarest first.
    pub sequential: bool,
    /// Where resume state lives. `None`: `<save_dir>/.bittern/<info hash>.resume`.
    pub resume_file: Option<PathBuf>,
    /// Start paused.
    pub paused: bool,
    /// Super-seed (BEP 16) while seeding: reveal pieces one at a time to
    /// each peer, the next once the last was seen spreading.
    pub super_seed: bool,
}

impl Default for TorrentOptions {
    fn default() -> Self {
        TorrentOptions {
            wanted_files: Vec::new(),
            seed_goal: SeedGoal::Forever,
            upload_limit: None,
            download_limit: None,
            peers: Vec::new(),
            sequential: false,
            resume_file: None,
            paused: false,
            super_seed: false,
        }
    }
}
