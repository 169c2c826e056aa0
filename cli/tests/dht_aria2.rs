//! The DHT against aria2c 1.36 on loopback, both ways: aria2c given only a
//! magnet link finds a bittern seeder through the DHT, and bittern given
//! only a magnet link and aria2c's DHT port finds an aria2c seeder.
//!
//! A third node, an in-process `bittern_dht::Runner` on 127.0.0.1, holds the
//! announces: a DHT of two nodes cannot work with aria2c, whose lookups
//! never look in its own announce store (measured: with only bittern and
//! aria2c, aria2c stores bittern's announce and its own get_peers lookups,
//! retried every 5 s, still find 0 peers), and bittern, like libtorrent,
//! does not list itself in its get_peers replies.
//!
//! aria2c's DHT binds `0.0.0.0` (1.36 has no IPv4 DHT address option), so
//! each test runs in a private network namespace holding only `lo`
//! (`bittern_testkit::netns`); inside it the fixed ports below are free.
//! aria2c gets a fresh `--dht-file-path` (never `~/.cache/aria2/dht.dat`),
//! no trackers, no PEX, no LPD: the DHT is its only peer source.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bittern_dht::{Config, Runner};
use bittern_wire::InfoHash;

use crate::util::*;

/// aria2c's BitTorrent and DHT ports (inside the test's own namespace).
const ARIA_PEER_PORT: u16 = 6881;
const ARIA_DHT_PORT: u16 = 6882;
const SIZE: usize = 4 << 20;

fn aria2_available() -> bool {
    bittern_testkit::aria2::available()
}

/// Writes aria2's IPv4 routing table file (format of aria2's technical
/// notes, "DHT routing table file format") holding the one node `node`,
/// so aria2c's first lookup already has it.
fn write_aria2_dht_dat(path: &Path, node: SocketAddr, node_id: [u8; 20]) {
    let SocketAddr::V4(v4) = node else {
        panic!("aria2's dht.dat holds IPv4 nodes")
    };
    let mtime = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut b = vec![0xa1, 0xa2, 0x02, 0x00, 0x03, 0, 0, 0];
    b.extend_from_slice(&mtime.to_be_bytes());
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&[0x5a; 20]); // aria2c's own id
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    b.push(6);
    b.extend_from_slice(&[0; 7]);
    b.extend_from_slice(&v4.ip().octets());
    b.extend_from_slice(&v4.port().to_be_bytes());
    b.extend_from_slice(&[0; 18]);
    b.extend_from_slice(&node_id);
    b.extend_from_slice(&[0; 4]);
    std::fs::write(path, b).expect("write aria2's dht.dat");
}

/// aria2c with its DHT on and every other peer source off.
fn aria2c(work: &Path, entry: SocketAddr) -> Command {
    let mut c = Command::new("aria2c");
    c.arg("--no-conf")
        .arg("--enable-dht=true")
        .arg("--enable-dht6=false")
        .arg(format!("--dht-entry-point={entry}"))
        .arg(format!("--dht-listen-port={ARIA_DHT_PORT}"))
        .arg(format!("--listen-port={ARIA_PEER_PORT}"))
        .arg(format!(
            "--dht-file-path={}",
            work.join("dht.dat").display()
        ))
        .arg("--bt-enable-lpd=false")
        .arg("--enable-peer-exchange=false")
        .arg("--file-allocation=none")
        .arg(format!("--log={}", work.join("aria2c.log").display()))
        .arg("--log-level=info")
        .arg("--console-log-level=warn")
        .stdin(std::process::Stdio::null());
    c
}

/// The peers `runner` stores for `ih`.
fn stored(runner: &Runner, ih: InfoHash) -> Vec<SocketAddr> {
    runner.dht().with_node(|n| {
        n.peer_store()
            .get(&ih, 100, Instant::now(), &mut rand::rng())
    })
}

fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    bittern_testkit::wait_until(what, limit, cond);
}

fn info_hash(torrent: &Path) -> InfoHash {
    let r = bittern(["info", "--json", torrent.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("info json");
    let hex = v["info_hash"].as_str().expect("info hash");
    InfoHash::from_hex(hex).expect("hex info hash")
}

/// The contacts bittern saved in `<dir>/.bittern/dht.dat`.
fn saved_contacts(dir: &Path) -> Vec<SocketAddr> {
    let bytes = std::fs::read(dir.join(".bittern/dht.dat")).expect("dht state saved");
    let saved = bittern_dht::SavedState::decode(&bytes).expect("a dht state");
    saved.nodes.iter().map(|n| n.addr).collect()
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().rev().take(40).collect();
    lines.join("\n")
}

/// bittern seeds a trackerless torrent and announces it (bootstrap: the
/// third node). aria2c, given only `magnet:?xt=urn:btih:HEX`, with bittern's
/// node as its DHT entry point and in its dht.dat, finds bittern through
/// the DHT, fetches the metadata and the data, byte-identical. aria2c's
/// node entered bittern's routing table (bittern saved it).
#[test]
fn aria2c_magnet_finds_bittern_seeder_through_the_dht() {
    if !aria2_available()
        || !bittern_testkit::netns::run_inside(
            "dht_aria2::aria2c_magnet_finds_bittern_seeder_through_the_dht",
        )
    {
        return;
    }
    let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let data = random_file(&src.join("to-aria.bin"), SIZE, 31);
    let t = create(&src.join("to-aria.bin"), &tmp.path().join("a.torrent"), &[]);
    let ih = info_hash(&t);
    let boot = runner.local_addr().to_string();
    let (mut seed, port) = start_seed(&t, &src, &["--dht-bootstrap", &boot]);
    let ours: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for("bittern's announce", Duration::from_secs(30), || {
        stored(&runner, ih).contains(&ours)
    });

    let work = tmp.path().join("aria");
    let dst = tmp.path().join("dl");
    std::fs::create_dir_all(&work).unwrap();
    write_aria2_dht_dat(&work.join("dht.dat"), ours, [0x11; 20]);
    let mut c = aria2c(&work, ours);
    c.arg("--seed-time=0")
        .arg("-d")
        .arg(&dst)
        .arg(format!("magnet:?xt=urn:btih:{}", ih.to_hex()));
    let mut aria = Proc::spawn(c);
    let status = aria.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "aria2c: {status:?}\n{}",
        tail(&work.join("aria2c.log"))
    );
    let got = std::fs::read(dst.join("to-aria.bin")).expect("aria2c's file");
    assert!(got == data, "aria2c's bytes differ from bittern's");

    seed.signal(libc::SIGINT);
    let status = seed.wait(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    let contacts = saved_contacts(&src);
    let aria_node: SocketAddr = ([127, 0, 0, 1], ARIA_DHT_PORT).into();
    assert!(
        contacts.contains(&aria_node),
        "aria2c's node {aria_node} not in bittern's table: {contacts:?}"
    );
    assert!(
        contacts.iter().all(|a| a.ip().is_loopback()),
        "{contacts:?}"
    );
}

/// aria2c seeds a trackerless torrent and announces it on the DHT (its
/// entry point: the third node, which is asserted to store aria2c's
/// announce). `bittern download MAGNET --dht-bootstrap <aria2c's DHT
/// port>` finds aria2c through the DHT and downloads byte-identical;
/// aria2c's node is in bittern's saved table.
#[test]
fn bittern_magnet_finds_aria2c_seeder_through_the_dht() {
    if !aria2_available()
        || !bittern_testkit::netns::run_inside(
            "dht_aria2::bittern_magnet_finds_aria2c_seeder_through_the_dht",
        )
    {
        return;
    }
    let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let data = random_file(&src.join("from-aria.bin"), SIZE, 32);
    let t = create(
        &src.join("from-aria.bin"),
        &tmp.path().join("b.torrent"),
        &[],
    );
    let ih = info_hash(&t);
    let work = tmp.path().join("aria");
    std::fs::create_dir_all(&work).unwrap();
    let mut c = aria2c(&work, runner.local_addr());
    c.arg("--seed-ratio=0.0")
        .arg("--check-integrity=true")
        .arg("-d")
        .arg(&src)
        .arg(&t);
    let _aria = Proc::spawn(c);
    let aria_peer: SocketAddr = ([127, 0, 0, 1], ARIA_PEER_PORT).into();
    wait_for("aria2c's announce", Duration::from_secs(60), || {
        stored(&runner, ih).contains(&aria_peer)
    });

    let dst = tmp.path().join("dl");
    let aria_node: SocketAddr = ([127, 0, 0, 1], ARIA_DHT_PORT).into();
    let r = download(
        &format!("magnet:?xt=urn:btih:{}", ih.to_hex()),
        dst.to_str().unwrap(),
        &[
            "--dht-bootstrap",
            &aria_node.to_string(),
            "--exit-on-complete",
        ],
        Duration::from_secs(90),
    );
    assert_eq!(r.code, Some(0), "{r:?}\n{}", tail(&work.join("aria2c.log")));
    let got = std::fs::read(dst.join("from-aria.bin")).expect("downloaded file");
    assert!(got == data, "bittern's bytes differ from aria2c's");
    let contacts = saved_contacts(&dst);
    assert!(
        contacts.contains(&aria_node),
        "aria2c's node {aria_node} not in bittern's table: {contacts:?}"
    );
    assert!(
        contacts.iter().all(|a| a.ip().is_loopback()),
        "{contacts:?}"
    );
}
