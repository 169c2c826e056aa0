//! Command-line arguments (clap derive).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::units::{parse_duration, parse_rate, parse_size};

/// bittern: a fast BitTorrent client.
#[derive(Debug, Parser)]
#[command(
    name = "bittern",
    version,
    about = "bittern: a BitTorrent client (create, inspect, verify, download, seed, track)",
    after_long_help = crate::exit::HELP,
    after_help = "Run `bittern --help` for exit codes; `bittern <command> --help` for details."
)]
pub struct Cli {
    /// Print no progress display or notes (results and errors still print).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Time between plain status lines when stderr is not a terminal (e.g. 5s).
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_duration,
          default_value = "2s", hide_short_help = true)]
    pub status_interval: Duration,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a .torrent from a file or a directory (hashes in parallel).
    Create(CreateArgs),
    /// Show what a .torrent file or magnet link describes.
    Info(InfoArgs),
    /// Recheck data on disk against a torrent; exit 0 only if all is there.
    Verify(VerifyArgs),
    /// Download torrents (then seed until stopped, unless told otherwise).
    Download(DownloadArgs),
    /// Verify local data, then serve it until stopped.
    Seed(SeedArgs),
    /// Run the embedded HTTP tracker.
    Tracker(TrackerArgs),
    /// Loopback demo and benchmark: a tracker, a seeder and N leechers.
    Swarm(SwarmArgs),
    /// Run in the foreground as a daemon driven over Transmission's RPC.
    Daemon(DaemonArgs),
    /// Talk to the Mainline DHT directly (debugging).
    Dht(DhtCommandArgs),
    /// Drive a running `bittern daemon` (or any Transmission) over its RPC.
    Remote(RemoteArgs),
}

/// `--piece-length`: a size or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceLength {
    /// Pick a power of two for the total size.
    Auto,
    /// This many bytes.
    Fixed(u64),
}

fn parse_piece_length(s: &str) -> Result<PieceLength, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(PieceLength::Auto);
    }
    let n = parse_size(s).map_err(|e| e.to_string())?;
    if !n.is_power_of_two() || !(16 << 10..=512 << 20).contains(&n) {
        return Err(format!(
            "piece length {s:?} must be a power of two from 16KiB to 512MiB, or `auto`"
        ));
    }
    Ok(PieceLength::Fixed(n))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("invalid ratio {s:?} (examples: 1.0, 2.5)")),
    }
}

/// `bittern create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// File or directory to share.
    pub path: PathBuf,
    /// Where to write the torrent [default: <name>.torrent].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Tracker announce URL; repeat for more (each becomes its own tier).
    #[arg(short = 't', long = "tracker", value_name = "URL")]
    pub trackers: Vec<String>,
    /// Piece size (power of two, e.g. 256KiB) or `auto` (1,000-2,000 pieces).
    #[arg(long, value_name = "SIZE|auto", default_value = "auto", value_parser = parse_piece_length)]
    pub piece_length: PieceLength,
    /// Mark the torrent private (BEP 27: trackers only, no DHT/PEX).
    #[arg(long)]
    pub private: bool,
    /// A comment stored in the torrent.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// Web seed URL (BEP 19); repeat for more.
    #[arg(long = "web-seed", value_name = "URL")]
    pub web_seeds: Vec<String>,
    /// `source` tag in the info dictionary (changes the info hash).
    #[arg(long, value_name = "TEXT")]
    pub source: Option<String>,
    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Write a v2-only torrent (BEP 52: per-file SHA-256 merkle trees).
    /// Only libtorrent-based clients (qBittorrent, Deluge 2) read these;
    /// Transmission 4, aria2 and rTorrent do not.
    #[arg(long, conflicts_with = "hybrid")]
    pub v2: bool,
    /// Write a hybrid v1 + v2 torrent: v2 clients use the merkle trees,
    /// v1 clients the SHA-1 pieces (with BEP 47 padding between files).
    /// The default stays v1, which every client reads (Transmission 3
    /// refuses hybrids, Transmission 4 only uses their v1 half).
    #[arg(long)]
    pub hybrid: bool,
}

/// `bittern info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// A .torrent file or a magnet link.
    #[arg(value_name = "TORRENT|MAGNET")]
    pub torrent: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `bittern verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The .torrent file.
    pub torrent: PathBuf,
    /// Save directory holding the data (<DIR>/<name>).
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Options shared by `download` and `seed`.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Save directory: each torrent's data lives at <DIR>/<name>.
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Port to listen on for peers (0 picks a free one).
    #[arg(short, long, default_value_t = 6881)]
    pub port: u16,
    /// Address to listen on for peers, IPv4 or IPv6; repeat for more, all
    /// on one port (e.g. `--bind 127.0.0.1 --bind ::1`). Default: every
    /// address of both families (0.0.0.0 and ::).
    #[arg(long, value_name = "ADDR")]
    pub bind: Vec<IpAddr>,
    /// Connect to this peer too (`HOST:PORT`, `[V6ADDR]:PORT`); repeat for more.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<String>,
    /// Upload limit for the session, e.g. 1MB/s.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub upload_limit: Option<u64>,
    /// Most peer connections per torrent.
    #[arg(long, value_name = "N", default_value_t = 80)]
    pub max_peers: usize,
    /// Most outgoing connections being opened at once (dialling and
    /// handshaking), across all torrents; more addresses wait their turn.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_half_open: usize,
    /// Find peers on the local network by Local Service Discovery (BEP 14
    /// multicast on 239.192.152.143:6771; never for private torrents).
    #[arg(long, overrides_with = "no_lsd")]
    pub lsd: bool,
    /// No Local Service Discovery (the default).
    #[arg(long, overrides_with = "lsd")]
    pub no_lsd: bool,
    /// Do not download from the torrents' web seeds (BEP 19 `url-list`).
    #[arg(long)]
    pub no_web_seeds: bool,
    /// Protocol encryption (MSE/PE): `prefer` accepts both and dials
    /// encrypted first, retrying in the clear; `require` allows only
    /// RC4-encrypted connections; `disable` speaks plain BitTorrent only.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = EncryptionArg::Prefer)]
    pub encryption: EncryptionArg,
    /// DHT options.
    #[command(flatten)]
    pub dht: DhtArgs,
    /// Transport options.
    #[command(flatten)]
    pub transport: TransportArgs,
    /// Turn peer exchange (BEP 11) off; it is always off for private
    /// torrents.
    #[arg(long)]
    pub no_pex: bool,
}

/// `--encryption` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncryptionArg {
    /// Accept both; dial encrypted first, then in the clear.
    Prefer,
    /// Encrypted (RC4) connections only.
    Require,
    /// Plain BitTorrent only.
    Disable,
}

impl From<EncryptionArg> for bittern_engine::Encryption {
    fn from(a: EncryptionArg) -> Self {
        match a {
            EncryptionArg::Prefer => bittern_engine::Encryption::Prefer,
            EncryptionArg::Require => bittern_engine::Encryption::Require,
            EncryptionArg::Disable => bittern_engine::Encryption::Disable,
        }
    }
}

/// Peer transports of `download` and `seed`.
#[derive(Debug, Args)]
pub struct TransportArgs {
    /// Accept uTP peers on the listen port and dial uTP when TCP fails (the
    /// default).
    #[arg(long, overrides_with = "no_utp")]
    pub utp: bool,
    /// Neither accept nor dial uTP.
    #[arg(long)]
    pub no_utp: bool,
    /// Accept and dial TCP peers (the default).
    #[arg(long, overrides_with = "no_tcp")]
    pub tcp: bool,
    /// Neither accept nor dial TCP (uTP only; needs uTP on).
    #[arg(long)]
    pub no_tcp: bool,
}

/// DHT (BEP 5) options of `download` and `seed`.
#[derive(Debug, Args)]
pub struct DhtArgs {
    /// Find peers of public torrents on the DHT too (the default).
    #[arg(long, overrides_with = "no_dht")]
    pub dht: bool,
    /// Do not run a DHT node.
    #[arg(long)]
    pub no_dht: bool,
    /// Join the DHT through this node; repeat for more. Without it the
    /// public routers are used (unless --bind is a loopback address, which
    /// cannot reach them).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
}

/// `bittern dht`.
#[derive(Debug, Args)]
pub struct DhtCommandArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DhtCommand,
}

/// The `dht` subcommands.
#[derive(Debug, Subcommand)]
pub enum DhtCommand {
    /// Look up peers of an info hash on the DHT and print them as they are found.
    GetPeers(GetPeersArgs),
}

/// `bittern dht get-peers`.
#[derive(Debug, Args)]
pub struct GetPeersArgs {
    /// The info hash (40 hex digits) or a magnet link carrying one.
    #[arg(value_name = "INFOHASH")]
    pub info_hash: String,
    /// Join the DHT through this node; repeat for more (default: the public routers).
    #[arg(long = "bootstrap", value_name = "HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// Address to bind the DHT node's UDP socket to.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// UDP port of the DHT node (0 picks a free one).
    #[arg(short, long, default_value_t = 0)]
    pub port: u16,
    /// Give up after this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `bittern download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// One or more .torrent files or magnet links (one session serves
    /// them all). A magnet link's metadata is fetched from its `x.pe`
    /// peers, its `tr=` trackers and `--peer`.
    #[arg(required = true, value_name = "TORRENT|MAGNET")]
    pub torrents: Vec<String>,
    /// Write the .torrent of a magnet link here once its metadata has
    /// been fetched (it is kept under <DIR>/.bittern/ in any case).
    #[arg(long, value_name = "FILE")]
    pub save_torrent: Option<PathBuf>,
    /// Shared peer options.
    #[command(flatten)]
    pub common: PeerArgs,
    /// Download only files whose path matches (`*`, `?`); repeat for more.
    #[arg(long = "only", value_name = "PATTERN")]
    pub only: Vec<String>,
    /// Exit as soon as everything wanted is verified (without waiting for
    /// the disk to catch up; see README).
    #[arg(long, group = "goal")]
    pub exit_on_complete: bool,
    /// After completing, seed until uploaded/size reaches R, then exit.
    #[arg(long, value_name = "R", group = "goal", value_parser = parse_ratio)]
    pub seed_ratio: Option<f64>,
    /// After completing, seed for this long (e.g. 30m, 2h), then exit.
    #[arg(long, value_name = "DURATION", group = "goal", value_parser = parse_duration)]
    pub seed_time: Option<Duration>,
    /// Download limit for the session, e.g. 10MB/s.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub download_limit: Option<u64>,
}

/// `bittern seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// One or more .torrent files whose data is complete under DIR.
    #[arg(required = true, value_name = "TORRENT")]
    pub torrents: Vec<String>,
    /// Shared peer options.
    #[command(flatten)]
    pub common: PeerArgs,
    /// Super-seed (BEP 16): as an initial seeder, reveal pieces one at a
    /// time to each peer, the next once the last was seen spreading, so
    /// the swarm gets about one copy from us.
    #[arg(long)]
    pub super_seed: bool,
}

/// `bittern tracker`.
#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// Port to serve HTTP on (0 picks a free one).
    #[arg(short, long, default_value_t = 6969)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Announce interval told to clients.
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_duration)]
    pub interval: Duration,
}

/// `bittern swarm`.
#[derive(Debug, Args)]
pub struct SwarmArgs {
    /// Bytes of random data to share.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub size: u64,
    /// Number of leechers.
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub leechers: u32,
    /// Piece size (power of two) or `auto`.
    #[arg(long, value_name = "SIZE|auto", default_value = "auto", value_parser = parse_piece_length)]
    pub piece_length: PieceLength,
    /// Give up if no leecher makes progress for this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub stall_timeout: Duration,
}

/// `bittern daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Settings, torrents and resume state [default: $XDG_CONFIG_HOME/bittern/daemon].
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Address of the RPC (a non-loopback one needs a password).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub rpc_bind: IpAddr,
    /// Port of the RPC.
    #[arg(long, value_name = "PORT", default_value_t = 9091)]
    pub rpc_port: u16,
    /// Require HTTP Basic auth with this user name.
    #[arg(long, value_name = "USER", requires = "rpc_password")]
    pub rpc_username: Option<String>,
    /// ... and this password.
    #[arg(long, value_name = "PASSWORD", requires = "rpc_username")]
    pub rpc_password: Option<String>,
    /// Client addresses allowed, comma-separated, `*` wildcards; empty: any.
    #[arg(long, value_name = "LIST", default_value = "127.0.0.1,::1")]
    pub rpc_whitelist: String,
    /// Host names accepted in the Host header when auth is off (besides IP
    /// addresses and localhost); repeat for more.
    #[arg(long = "rpc-host-whitelist", value_name = "NAME")]
    pub rpc_host_whitelist: Vec<String>,
    /// Port to listen on for peers (0 picks a free one) [default: the
    /// settings' peer-port, 51413].
    #[arg(short, long)]
    pub port: Option<u16>,
    /// Address to listen on for peers (on -p's port, else the settings').
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub peer_bind: IpAddr,
    /// Add every .torrent or .magnet file dropped in this folder (then
    /// renamed NAME.added, or NAME.invalid if refused).
    #[arg(long, value_name = "DIR")]
    pub watch_dir: Option<PathBuf>,
    /// Refuse every download dir, incomplete dir or new location a client
    /// names outside this folder (symlinks resolved).
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Peer-network settings (stored, like `session-set`).
    #[command(flatten)]
    pub network: DaemonNetworkArgs,
}

/// `bittern daemon`'s peer-network options. Each one given changes the
/// stored setting of the same Transmission name, as transmission-daemon's
/// options do; those not given keep the stored value.
#[derive(Debug, Args)]
pub struct DaemonNetworkArgs {
    /// Run a DHT node (`dht-enabled`; on by default).
    #[arg(long, overrides_with = "no_dht")]
    pub dht: bool,
    /// Run no DHT node.
    #[arg(long, overrides_with = "dht")]
    pub no_dht: bool,
    /// Join the DHT through this node (`dht-bootstrap`); repeat for more.
    /// Without any, the public routers, unless peers are bound to a
    /// loopback address.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// Accept and dial uTP (`utp-enabled`; on by default).
    #[arg(long, overrides_with = "no_utp")]
    pub utp: bool,
    /// No uTP.
    #[arg(long, overrides_with = "utp")]
    pub no_utp: bool,
    /// Peer exchange (`pex-enabled`; on by default).
    #[arg(long, overrides_with = "no_pex")]
    pub pex: bool,
    /// No peer exchange.
    #[arg(long, overrides_with = "pex")]
    pub no_pex: bool,
    /// Local peer discovery, BEP 14 (`lpd-enabled`; off by default).
    #[arg(long, overrides_with = "no_lpd")]
    pub lpd: bool,
    /// No local peer discovery.
    #[arg(long, overrides_with = "lpd")]
    pub no_lpd: bool,
    /// Neither accept nor dial TCP peers, uTP only (this run only, not a
    /// stored setting; for tests against uTP-only peers).
    #[arg(long)]
    pub no_tcp: bool,
    /// Protocol encryption (`encryption`): `required`, `preferred` (the
    /// default) or `tolerated`.
    #[arg(long, value_name = "MODE", value_parser = ["required", "preferred", "tolerated"])]
    pub encryption: Option<String>,
}

/// `bittern remote`.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// The daemon's RPC URL.
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:9091/transmission/rpc"
    )]
    pub url: String,
    /// HTTP Basic auth.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub auth: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub action: RemoteAction,
}

/// `bittern remote` actions. Torrents are named by id, info hash, or `all`.
#[derive(Debug, Subcommand)]
pub enum RemoteAction {
    /// List the torrents.
    List,
    /// Add .torrent files (read here, sent whole) or magnet links.
    Add {
        /// Files or magnet links.
        #[arg(required = true, value_name = "TORRENT")]
        torrents: Vec<String>,
        /// Where the data goes (on the daemon's machine).
        #[arg(short = 'w', long = "download-dir", value_name = "DIR")]
        dir: Option<String>,
        /// Add them stopped.
        #[arg(long)]
        paused: bool,
    },
    /// Start torrents.
    Start {
        /// Ids, info hashes, or `all`.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Stop torrents.
    Stop {
        /// Ids, info hashes, or `all`.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Remove torrents (their data stays unless --delete).
    Remove {
        /// Ids, info hashes, or `all`.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Delete their data too.
        #[arg(long)]
        delete: bool,
    },
    /// Show one torrent in detail.
    Info {
        /// An id or an info hash.
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_units_and_goals() {
        let cli = Cli::try_parse_from([
            "bittern",
            "download",
            "a.torrent",
            "b.torrent",
            "--download-limit",
            "10MB/s",
            "--seed-time",
            "30m",
            "-p",
            "0",
            "--bind",
            "127.0.0.1",
            "--peer",
            "127.0.0.1:7000",
            "--only",
            "*.iso",
        ])
        .unwrap();
        let Command::Download(d) = cli.command else {
            panic!("not download")
        };
        assert_eq!(d.torrents, ["a.torrent", "b.torrent"]);
        assert_eq!(d.download_limit, Some(10_000_000));
        assert_eq!(d.seed_time, Some(Duration::from_secs(1800)));
        assert_eq!(d.common.port, 0);
        assert_eq!(d.common.peers, ["127.0.0.1:7000"]);
        assert_eq!(d.common.bind, [IpAddr::from([127, 0, 0, 1])]);
        assert_eq!(d.only, ["*.iso"]);
        // goals are exclusive
        assert!(Cli::try_parse_from([
            "bittern",
            "download",
            "a.torrent",
            "--exit-on-complete",
            "--seed-ratio",
            "2"
        ])
        .is_err());
    }

    #[test]
    fn piece_lengths() {
        assert_eq!(parse_piece_length("auto"), Ok(PieceLength::Auto));
        assert_eq!(
            parse_piece_length("256KiB"),
            Ok(PieceLength::Fixed(256 << 10))
        );
        assert!(parse_piece_length("100KiB").is_err());
        assert!(parse_piece_length("8KiB").is_err());
        assert!(parse_piece_length("1GiB").is_err());
    }
}
