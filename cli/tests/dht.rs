//! The DHT end to end against libtorrent 2.0.8 on loopback: eight
//! libtorrent DHT nodes (`testkit/scripts/lt_dht_swarm.py`, configured as in
//! shared/reference/dht.md), trackerless torrents, and bittern given only
//! `--dht-bootstrap`.
//!
//! Nothing leaves loopback, and each test checks it:
//! - bittern runs with `--bind 127.0.0.1` (its TCP listener and its UDP
//!   socket are bound there: Linux does not route a 127/8 source out of a
//!   non-loopback device) and with `--dht-bootstrap` pointing at a 127.0.0.1
//!   libtorrent node, so the public routers are neither used nor resolved;
//! - every libtorrent session listens on 127.0.0.1 only, has an empty
//!   `dht_bootstrap_nodes` (its default is a router on the internet) and an
//!   ip_filter blocking everything outside 127/8; the addresses it printed
//!   are asserted to be loopback;
//! - after the run, every contact bittern saved in its DHT state file is
//!   asserted to be a loopback address.
//!
//! The DHT tests run both clients with their defaults (uTP and TCP on), so
//! DHT and uTP share bittern's one UDP socket while they run; the uTP tests
//! turn TCP off on both sides.
//!
//! Skipped (loudly) when Debian's Python cannot import libtorrent; fails
//! instead under `BITTERN_REQUIRE_INTEROP=1`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::*;

/// The script's process; asked to quit, then killed, on drop.
pub struct LtSwarm(bittern_testkit::procs::JsonProc);

impl LtSwarm {
    /// Starts `lt_dht_swarm.py ARGS` and returns its "ready" line.
    pub fn start(args: &[&str]) -> (LtSwarm, Value) {
        let (p, ready) = bittern_testkit::procs::JsonProc::start(
            "lt_dht_swarm.py",
            bittern_testkit::libtorrent::python("lt_dht_swarm.py", args),
        );
        let s = LtSwarm(p);
        let nodes = addrs(&ready["nodes"]);
        assert!(!nodes.is_empty(), "{ready}");
        assert!(nodes.iter().all(|a| a.ip().is_loopback()), "{nodes:?}");
        (s, ready)
    }

    /// Sends one command and waits for its answer.
    pub fn ask(&mut self, cmd: Value, timeout: Duration) -> Value {
        self.0.ask(cmd, timeout)
    }

    /// How many libtorrent routing tables hold `node`.
    pub fn tables_holding(&mut self, node: SocketAddr) -> usize {
        let tables = self.ask(json!({"cmd": "table"}), Duration::from_secs(30));
        tables["tables"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| addrs(t).contains(&node)).count())
    }
}

/// Socket addresses in a JSON array of strings.
pub fn addrs(v: &Value) -> Vec<SocketAddr> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The contacts bittern saved in `<dir>/.bittern/dht.dat`: there are some,
/// and every one is a loopback address.
fn assert_saved_contacts_loopback(dir: &Path) {
    let state = dir.join(".bittern/dht.dat");
    let bytes = std::fs::read(&state).expect("dht state saved under the resume dir");
    let saved = bittern_dht::SavedState::decode(&bytes).expect("a dht state");
    assert!(!saved.nodes.is_empty(), "no contacts saved");
    assert!(
        saved.nodes.iter().all(|n| n.addr.ip().is_loopback()),
        "{:?}",
        saved.nodes
    );
}

const SIZE: usize = 4 << 20;

/// libtorrent's download limit (bytes/s) where a test reads its peer list
/// after the leech: SIZE then takes about 4 s, so the script's polls of
/// that list see bittern's connection even on a loaded machine (unlimited,
/// 4 MiB over loopback can come and go in 70 ms, between two polls).
const LEECH_LIMIT: u64 = 1 << 20;

/// A libtorrent node seeds a trackerless torrent; `bittern download` given
/// the .torrent and only `--dht-bootstrap` (one libtorrent node) finds the
/// seeder through the DHT and downloads it byte-identical. bittern's node
/// enters libtorrent's routing tables, and its state is saved.
#[test]
fn download_finds_libtorrent_seeder_through_the_dht_only() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lt");
    std::fs::create_dir(&out).unwrap();
    let size = SIZE.to_string();
    let (mut lt, ready) = LtSwarm::start(&[
        "--nodes",
        "8",
        "--seed",
        "--size",
        &size,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(addrs(&ready["nodes"]).len(), 8);
    let boot = addrs(&ready["nodes"])[0];
    let torrent = ready["torrent"].as_str().expect("torrent path").to_string();
    let dst = tmp.path().join("dl");
    let r = download(
        &torrent,
        dst.to_str().unwrap(),
        &["--dht-bootstrap", &boot.to_string(), "--exit-on-complete"],
        Duration::from_secs(90),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let got = std::fs::read(dst.join("dht-seed.bin")).expect("downloaded file");
    let want = std::fs::read(out.join("dht-seed.bin")).expect("seeded file");
    assert_eq!(got.len(), SIZE);
    assert!(got == want, "downloaded bytes differ from the seeder's");
    // The only peer source was the DHT: no tracker in the torrent, no --peer.
    let port: u16 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("listening on 127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
        .expect("listening line");
    let ours: SocketAddr = ([127, 0, 0, 1], port).into();
    let holding = lt.tables_holding(ours);
    assert!(
        holding >= 1,
        "bittern's node {ours} is in no libtorrent table"
    );
    assert_saved_contacts_loopback(&dst);
    // The status output shows the routing table's size.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("dht: ") && l.ends_with(" nodes")),
        "no dht node count in {}",
        r.stderr
    );

    // `bittern dht get-peers` through the same swarm prints the seeder.
    let ih = ready["info_hash"].as_str().expect("info hash");
    let seeder = ready["seeder"].as_str().expect("seeder");
    let r = run_limited(
        cmd([
            "dht",
            "get-peers",
            ih,
            "--bind",
            "127.0.0.1",
            "--bootstrap",
            &boot.to_string(),
            "--timeout",
            "30s",
        ]),
        Duration::from_secs(60),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.stdout.lines().any(|l| l == seeder),
        "get-peers printed {:?}, want {seeder}",
        r.stdout
    );
}

/// `bittern dht get-peers` refuses a loopback node without --bootstrap
/// (the public routers are unreachable from there) and a bad info hash.
#[test]
fn dht_get_peers_input_errors() {
    let ih = "ab".repeat(20);
    let r = bittern(["dht", "get-peers", ih.as_str(), "--bind", "127.0.0.1"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("needs --bootstrap"), "{}", r.stderr);
    let r = bittern(["dht", "get-peers", "xyz", "--bootstrap", "127.0.0.1:1"]);
    assert_eq!(r.code, Some(2), "{r:?}");
    assert!(r.stderr.contains("invalid info hash"), "{}", r.stderr);
}

/// `bittern seed` of a trackerless torrent with only `--dht-bootstrap`: a
/// libtorrent node given the .torrent (no tracker, no peer) finds bittern
/// through the DHT (its peer source says so) and downloads byte-identical.
/// bittern's node is in libtorrent's routing tables.
#[test]
fn libtorrent_finds_bittern_seeder_through_the_dht() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let data = random_file(&src.join("mine.bin"), SIZE, 21);
    let t = create(&src.join("mine.bin"), &tmp.path().join("mine.torrent"), &[]);
    let (mut lt, ready) = LtSwarm::start(&["--nodes", "8"]);
    assert_eq!(addrs(&ready["nodes"]).len(), 8);
    let boot = addrs(&ready["nodes"])[0].to_string();
    let (mut seed, port) = start_seed(&t, &src, &["--dht-bootstrap", &boot]);
    let ours: SocketAddr = ([127, 0, 0, 1], port).into();
    let got = lt.ask(
        json!({"cmd": "leech", "torrent": t, "node": 3, "timeout": 60, "limit": LEECH_LIMIT}),
        Duration::from_secs(90),
    );
    assert_eq!(got["ok"], true, "libtorrent did not finish: {got}");
    let path = got["path"].as_str().expect("path");
    let bytes = std::fs::read(path).expect("libtorrent's file");
    assert!(bytes == data, "libtorrent's bytes differ from bittern's");
    // libtorrent's peer_info.source: dht = 0x2.
    let peers = got["peers"].as_array().cloned().unwrap_or_default();
    let bittern = peers
        .iter()
        .find(|p| p["addr"] == ours.to_string())
        .unwrap_or_else(|| panic!("bittern {ours} not among libtorrent's peers {peers:?}"));
    let source = bittern["source"].as_u64().unwrap_or(0);
    assert!(source & 0x2 != 0, "peer source {source:#x} is not dht");
    let holding = lt.tables_holding(ours);
    assert!(
        holding >= 1,
        "bittern's node {ours} is in no libtorrent table"
    );
    seed.signal(libc::SIGINT);
    let status = seed.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert_saved_contacts_loopback(&src);
}

/// A libtorrent node seeds a trackerless torrent; `bittern download` given
/// only `magnet:?xt=urn:btih:HEX` and `--dht-bootstrap` finds the seeder
/// through the DHT, fetches the metadata from it and the data,
/// byte-identical.
#[test]
fn magnet_download_through_the_dht_alone() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lt");
    std::fs::create_dir(&out).unwrap();
    let size = SIZE.to_string();
    let (_lt, ready) = LtSwarm::start(&[
        "--nodes",
        "8",
        "--seed",
        "--size",
        &size,
        "--out",
        out.to_str().unwrap(),
    ]);
    let boot = addrs(&ready["nodes"])[0];
    let ih = ready["info_hash"].as_str().expect("info hash");
    let magnet = format!("magnet:?xt=urn:btih:{ih}");
    let dst = tmp.path().join("dl");
    let r = download(
        &magnet,
        dst.to_str().unwrap(),
        &["--dht-bootstrap", &boot.to_string(), "--exit-on-complete"],
        Duration::from_secs(90),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let got = std::fs::read(dst.join("dht-seed.bin")).expect("downloaded file");
    let want = std::fs::read(out.join("dht-seed.bin")).expect("seeded file");
    assert!(got == want, "downloaded bytes differ from the seeder's");
    assert_saved_contacts_loopback(&dst);
}

/// bittern seeds a trackerless torrent with only `--dht-bootstrap`; a
/// libtorrent node given only the magnet link finds bittern through the
/// DHT, gets the metadata from it (ut_metadata) and the data.
#[test]
fn libtorrent_magnet_finds_bittern_seeder() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let data = random_file(&src.join("mag.bin"), SIZE, 24);
    let t = create(&src.join("mag.bin"), &tmp.path().join("mag.torrent"), &[]);
    let info = bittern(["info", "--json", t.to_str().unwrap()]);
    let v: Value = serde_json::from_str(&info.stdout).expect("info json");
    let ih = v["info_hash"].as_str().expect("info hash").to_string();
    let (mut lt, ready) = LtSwarm::start(&["--nodes", "8"]);
    let boot = addrs(&ready["nodes"])[0].to_string();
    let (_seed, port) = start_seed(&t, &src, &["--dht-bootstrap", &boot]);
    let ours: SocketAddr = ([127, 0, 0, 1], port).into();
    let got = lt.ask(
        json!({"cmd": "leech", "torrent": format!("magnet:?xt=urn:btih:{ih}"), "node": 3, "timeout": 60, "limit": LEECH_LIMIT}),
        Duration::from_secs(90),
    );
    assert_eq!(got["ok"], true, "libtorrent did not finish: {got}");
    let bytes = std::fs::read(got["path"].as_str().expect("path")).expect("libtorrent's file");
    assert!(bytes == data, "libtorrent's bytes differ from bittern's");
    let peers = got["peers"].as_array().cloned().unwrap_or_default();
    let me = peers
        .iter()
        .find(|p| p["addr"] == ours.to_string())
        .unwrap_or_else(|| panic!("bittern {ours} not among libtorrent's peers {peers:?}"));
    let source = me["source"].as_u64().unwrap_or(0);
    assert!(source & 0x2 != 0, "peer source {source:#x} is not dht");
}

/// libtorrent's `peer_info::utp_socket` flag (bit 17).
const LT_UTP_SOCKET: u64 = 1 << 17;

/// A libtorrent node with TCP off (`enable_outgoing_tcp` and
/// `enable_incoming_tcp` false, 4 MiB socket buffers) seeds; `bittern
/// download --no-tcp --peer SEEDER` fetches it over uTP byte-identical,
/// and libtorrent lists bittern with its uTP flag while connected.
#[test]
fn utp_download_from_libtorrent_with_tcp_off() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lt");
    std::fs::create_dir(&out).unwrap();
    let size = SIZE.to_string();
    let (mut lt, ready) = LtSwarm::start(&[
        "--nodes",
        "2",
        "--seed",
        "--size",
        &size,
        "--out",
        out.to_str().unwrap(),
        "--utp-only",
    ]);
    let seeder = ready["seeder"].as_str().expect("seeder").to_string();
    let torrent = ready["torrent"].as_str().expect("torrent").to_string();
    let dst = tmp.path().join("dl");
    let p = Proc::spawn(cmd([
        "download",
        &torrent,
        "-d",
        dst.to_str().unwrap(),
        "--bind",
        "127.0.0.1",
        "-p",
        "0",
        "--no-dht",
        // TCP stays on: libtorrent with incoming TCP off still accepts a
        // TCP connection and closes it before its handshake, and bittern
        // must then dial the same peer over uTP.
        "--peer",
        &seeder,
        // 4 MiB in about 2 s: time to read libtorrent's peer list mid-transfer
        "--download-limit",
        "2MiB/s",
    ]));
    let line = p.wait_line("listening on ", Duration::from_secs(20));
    let port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
    // bittern dials from its one UDP socket, the listen port's twin, so
    // libtorrent sees it at the listen port.
    let ours = format!("127.0.0.1:{port}");
    let mut flags = None;
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while flags.is_none() && std::time::Instant::now() < end {
        let peers = lt.ask(json!({"cmd": "peers", "node": 1}), Duration::from_secs(10));
        flags = peers["peers"].as_array().and_then(|l| {
            l.iter()
                .find(|p| p["addr"] == ours.as_str())
                .and_then(|p| p["flags"].as_u64())
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    let flags = flags.unwrap_or_else(|| panic!("bittern {ours} never among libtorrent's peers"));
    assert!(
        flags & LT_UTP_SOCKET != 0,
        "libtorrent's flags {flags:#x} lack utp"
    );
    p.wait_line("dht-seed.bin: complete", Duration::from_secs(60));
    let got = std::fs::read(dst.join("dht-seed.bin")).expect("downloaded file");
    let want = std::fs::read(out.join("dht-seed.bin")).expect("seeded file");
    assert!(got == want, "downloaded bytes differ from the seeder's");
}

/// bittern seeds with `--no-tcp`; a libtorrent node with TCP off is told
/// bittern's address and downloads over uTP byte-identical; its peer
/// flags for bittern show uTP.
#[test]
fn utp_upload_to_libtorrent_with_tcp_off() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let data = random_file(&src.join("up.bin"), SIZE, 22);
    let t = create(&src.join("up.bin"), &tmp.path().join("up.torrent"), &[]);
    let (mut lt, _ready) = LtSwarm::start(&["--nodes", "2", "--utp-only"]);
    let (_seed, port) = start_seed(&t, &src, &["--no-dht", "--no-tcp"]);
    let ours = format!("127.0.0.1:{port}");
    let got = lt.ask(
        json!({"cmd": "leech", "torrent": t, "node": 1, "peer": ours, "timeout": 60, "limit": LEECH_LIMIT}),
        Duration::from_secs(90),
    );
    assert_eq!(got["ok"], true, "libtorrent did not finish: {got}");
    let bytes = std::fs::read(got["path"].as_str().expect("path")).expect("libtorrent's file");
    assert!(bytes == data, "libtorrent's bytes differ from bittern's");
    let peers = got["peers"].as_array().cloned().unwrap_or_default();
    let me = peers
        .iter()
        .find(|p| p["addr"] == ours.as_str())
        .unwrap_or_else(|| panic!("bittern {ours} not among libtorrent's peers {peers:?}"));
    let flags = me["flags"].as_u64().unwrap_or(0);
    assert!(
        flags & LT_UTP_SOCKET != 0,
        "libtorrent's flags {flags:#x} lack utp"
    );
}

/// Dual stack against libtorrent on `[::1]` (BEP 32): eight libtorrent DHT
/// nodes on `[::1]`, one seeding; `bittern download MAGNET --bind
/// 127.0.0.1 --bind ::1 --dht-bootstrap [::1]:P` runs an IPv4 and an IPv6
/// node, and the IPv6 one finds the seeder (metadata and data,
/// byte-identical). bittern's IPv6 node enters libtorrent's tables and its
/// contacts are saved in `dht6.dat`.
#[test]
fn dual_stack_download_finds_libtorrent_seeder_over_ipv6() {
    if !libtorrent_available()
        || !bittern_testkit::require(
            "an IPv6 loopback (::1)",
            std::net::TcpListener::bind("[::1]:0").is_ok(),
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lt");
    std::fs::create_dir(&out).unwrap();
    let size = SIZE.to_string();
    let (mut lt, ready) = LtSwarm::start(&[
        "--nodes",
        "8",
        "--ipv6",
        "--seed",
        "--size",
        &size,
        "--out",
        out.to_str().unwrap(),
    ]);
    let boot = addrs(&ready["nodes"])[0];
    assert!(boot.is_ipv6(), "{boot}");
    let ih = ready["info_hash"].as_str().expect("info hash");
    let dst = tmp.path().join("dl");
    let r = run_limited(
        cmd([
            "download",
            &format!("magnet:?xt=urn:btih:{ih}"),
            "-d",
            dst.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
            "--bind",
            "::1",
            "-p",
            "0",
            "--dht-bootstrap",
            &boot.to_string(),
            "--exit-on-complete",
        ]),
        Duration::from_secs(90),
    );
    assert_eq!(r.code, Some(0), "{r:?}");
    let got = std::fs::read(dst.join("dht-seed.bin")).expect("downloaded file");
    let want = std::fs::read(out.join("dht-seed.bin")).expect("seeded file");
    assert!(got == want, "downloaded bytes differ from the seeder's");
    let port: u16 = r
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("listening on 127.0.0.1:"))
        .and_then(|p| p.split(',').next()?.trim().parse().ok())
        .expect("listening line");
    assert!(
        r.stdout.contains(&format!("[::1]:{port}")),
        "not listening on [::1]: {}",
        r.stdout
    );
    let ours: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    assert!(
        lt.tables_holding(ours) >= 1,
        "bittern's IPv6 node {ours} is in no libtorrent table"
    );
    let bytes = std::fs::read(dst.join(".bittern/dht6.dat")).expect("dht6.dat saved");
    let saved = bittern_dht::SavedState::decode(&bytes).expect("a dht state");
    assert!(!saved.nodes.is_empty(), "no IPv6 contacts saved");
    assert!(
        saved
            .nodes
            .iter()
            .all(|n| n.addr.is_ipv6() && n.addr.ip().is_loopback()),
        "{:?}",
        saved.nodes
    );
}

/// `--no-dht` runs no node: with `--dht-bootstrap` given too, the
/// bootstrap node never hears from it, its port does not answer a DHT
/// ping and no `dht:` status line appears; the same seed with the DHT on
/// (the default) joins, through the second of two `--dht-bootstrap`.
#[test]
fn no_dht_runs_no_node() {
    let runner = bittern_dht::Runner::bind(
        "127.0.0.1:0".parse().unwrap(),
        bittern_dht::Config::default(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    random_file(&src.join("n.bin"), 100_000, 25);
    let t = create(&src.join("n.bin"), &tmp.path().join("n.torrent"), &[]);
    let boot = runner.local_addr().to_string();
    let (off, port) = start_seed(&t, &src, &["--no-dht", "--dht-bootstrap", &boot]);
    let probe = bittern_dht::Runner::bind(
        "127.0.0.1:0".parse().unwrap(),
        bittern_dht::Config::default(),
    )
    .unwrap();
    let joined = probe
        .dht()
        .bootstrap(&[SocketAddr::from(([127, 0, 0, 1], port))])
        .unwrap_or(0);
    assert_eq!(joined, 0, "a --no-dht session answered a DHT query");
    assert_eq!(
        runner.dht().stats().received,
        0,
        "--no-dht contacted the bootstrap node"
    );
    assert!(
        !off.stderr.lock().unwrap().contains("dht: "),
        "{}",
        off.stderr.lock().unwrap()
    );
    drop(off);
    // --dht-bootstrap repeats: a dead loopback node first, then the runner
    let (on, _) = start_seed(
        &t,
        &src,
        &["--dht-bootstrap", "127.0.0.1:9", "--dht-bootstrap", &boot],
    );
    on.wait_stderr("the dht node count", Duration::from_secs(20), |l| {
        l.starts_with("dht: ") && !l.starts_with("dht: 0 ")
    });
    assert!(runner.dht().node_count() >= 1);
}
