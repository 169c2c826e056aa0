//! A hybrid (v1 + v2, BEP 52) swarm with a v1-only client in it:
//! libtorrent seeds a hybrid torrent it made (BEP 47 padding files between
//! the files), and bittern and Enhanced CTorrent (Debian `ctorrent`,
//! v1-only: plain handshake, no reserved bits, SHA-1 pieces) download it
//! through bittern's tracker on loopback.
//!
//! Why ctorrent and not aria2c or transmission-cli: both choke on the
//! empty dictionary key (`""`) that a BEP 52 `file tree` uses for every
//! file. aria2c 1.36 drops those keys when it re-encodes the info
//! dictionary to hash it, so it computes a wrong info hash for every
//! hybrid torrent (`aria2c -S` prints it; it is the SHA-1 of the info
//! dictionary with each file's `{"": {...}}` emptied) and announces and
//! handshakes under that hash: it never meets the swarm. Given the magnet
//! link instead, it fetches and checks the metadata, then starts the data
//! download under the same wrong hash (its `.aria2` control file records
//! it). Transmission 3.00's parser gives the empty key the quark of "no
//! key" and rejects the dictionary: `transmission-show` says "Error
//! parsing .torrent file", and from a magnet it loops on "magnet status:
//! checksum passed 1, metainfo parsed 0".
//!
//! ctorrent keeps one connection per IP address ("Connection from
//! duplicate peer 127.0.0.1") and drops tracker peers with its own, so
//! each client has a loopback address: bittern and the tracker 127.0.0.1,
//! libtorrent 127.0.0.2, ctorrent 127.0.0.3.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bittern_engine::{SessionConfig, TorrentOptions, TorrentState};
use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_wire::{MetaVersion, Metainfo};

use crate::interop::{free_port, have_libtorrent, init_log, python, Proc, FILES};
use crate::util::*;

const CTORRENT: &str = "/usr/bin/ctorrent";
/// ctorrent's listen address (see the module docs).
const CTORRENT_IP: &str = "127.0.0.3";
/// libtorrent's listen and outgoing address.
const LT_IP: [u8; 4] = [127, 0, 0, 2];

/// Most bytes bittern counted to and from each peer address while waiting
/// for `state` (peers leave the list when they disconnect).
type Counts = Vec<(SocketAddr, u64, u64)>;

fn wait_counting(
    t: &bittern_engine::TorrentHandle,
    counts: &mut Counts,
    until: impl Fn(&bittern_engine::TorrentHandle) -> bool,
    limit: Duration,
    why: &str,
    logs: &dyn Fn() -> String,
) {
    let start = Instant::now();
    loop {
        for p in t.peers() {
            match counts.iter_mut().find(|(a, _, _)| *a == p.addr) {
                Some(c) => {
                    c.1 = c.1.max(p.downloaded);
                    c.2 = c.2.max(p.uploaded);
                }
                None => counts.push((p.addr, p.downloaded, p.uploaded)),
            }
        }
        if until(t) {
            return;
        }
        if let TorrentState::Error(e) = t.status().state {
            panic!("bittern torrent failed: {e}\n{}", logs());
        }
        assert!(
            start.elapsed() < limit,
            "{why} (bittern {:?}, peers {counts:?})\n{}",
            t.status(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The blocks ctorrent's `-v` log says it received from the peer it
/// dialled at `addr` ("Connecting to IP:PORT (peer 0x…)", then "Receiving
/// piece N/OFFSET/LEN from 0x…").
fn ctorrent_blocks_from(log: &str, addr: SocketAddr) -> usize {
    let tag = format!("Connecting to {addr} (peer ");
    let ids: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once(&tag).map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(')').next())
        .collect();
    log.lines()
        .filter(|l| l.contains("Receiving piece "))
        .filter(|l| ids.iter().any(|id| l.ends_with(&format!(" from {id}"))))
        .count()
}

/// libtorrent seeds a hybrid torrent; bittern and ctorrent (v1-only)
/// download it from the same tracker, bittern at 2 MB/s (so its transfer
/// spans several of the ticks that publish per-peer counts), ctorrent at
/// 300 KB/s. Once bittern has it all the libtorrent seeder leaves, so what
/// ctorrent still lacks can only come from bittern. Both downloads are byte-identical to
/// the source; bittern took data from libtorrent (over a v2 handshake:
/// libtorrent's hybrid torrent upgrades) and gave data to ctorrent over
/// a v1 one, SHA-1 pieces only; ctorrent's log shows blocks from bittern.
#[test]
fn hybrid_swarm_with_a_v1_only_client() {
    if !have_libtorrent()
        || !bittern_testkit::require("ctorrent (Debian ctorrent)", Path::new(CTORRENT).exists())
    {
        return;
    }
    init_log();
    let (src, dst, ct_dir, work) = (tempdir(), tempdir(), tempdir(), tempdir());
    let tracker = TrackerServer::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerConfig::default(),
    )
    .unwrap();
    let url = tracker.announce_url();
    // the data, then libtorrent's hybrid torrent of it
    let _ = make_torrent(src.path(), "hyswarm", FILES, 64 * 1024, 523);
    let torrent = work.path().join("hyswarm.torrent");
    let mut made = Proc::spawn(
        "libtorrent creator",
        python(
            "lt_create.py",
            &[
                src.path().join("hyswarm").as_os_str(),
                torrent.as_os_str(),
                "hybrid".as_ref(),
                "65536".as_ref(),
                url.as_ref(),
            ],
        ),
        work.path().join("lt_create.log"),
    );
    let v1 = made.expect_line("INFO_HASH ", Duration::from_secs(60));
    let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(meta.info.version, MetaVersion::Hybrid);
    assert_eq!(meta.info_hash.to_hex(), v1, "libtorrent's v1 hash");
    assert!(
        meta.info.files.iter().any(|f| f.padding),
        "libtorrent's hybrid has BEP 47 padding files"
    );
    let real: Vec<_> = meta
        .info
        .files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| meta.info.disk_path(f))
        .collect();

    let mut lt = Proc::spawn(
        "libtorrent seeder",
        python(
            "lt_seed.py",
            &[
                torrent.as_os_str(),
                src.path().as_os_str(),
                "127.0.0.2:0".as_ref(),
            ],
        ),
        work.path().join("lt_seed.log"),
    );
    lt.expect_line("PORT ", Duration::from_secs(60));
    crate::interop::wait_for_seeder_on_tracker(&url, &meta);

    let session = bittern_engine::Session::new(SessionConfig {
        announce: true,
        ..config()
    })
    .unwrap();
    let h = session
        .add_torrent(
            meta.clone(),
            dst.path(),
            TorrentOptions {
                download_limit: Some(2_000_000),
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    let mut counts = Counts::new();
    // ctorrent asks the tracker for peers once, when it starts: bittern
    // must be known by then
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers = bittern_tracker::scrape(
            &url,
            &[meta.info_hash],
            &bittern_tracker::ClientConfig::default(),
        )
        .ok()
        .and_then(|r| r.first().map(|(_, st)| st.complete + st.incomplete))
        .unwrap_or(0);
        if peers >= 2 {
            break;
        }
        wait_counting(
            &h,
            &mut counts,
            |_| true,
            Duration::from_secs(1),
            "",
            &|| String::new(),
        );
        assert!(Instant::now() < deadline, "bittern never announced");
        std::thread::sleep(Duration::from_millis(50));
    }

    let ct_port = free_port();
    let ct_log = work.path().join("ctorrent.log");
    let ct_out = std::fs::File::create(&ct_log).unwrap();
    let mut ct = Command::new(CTORRENT)
        .args(["-e", "0", "-D", "300", "-v", "-i", CTORRENT_IP, "-p"])
        .arg(ct_port.to_string())
        .arg(&torrent)
        .current_dir(ct_dir.path())
        .stdin(Stdio::null())
        .stdout(ct_out.try_clone().unwrap())
        .stderr(ct_out)
        .spawn()
        .unwrap();
    let logs = || {
        let text = std::fs::read_to_string(&ct_log).unwrap_or_default();
        let tail: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("Cache:") && !l.contains("Receiving piece"))
            .rev()
            .take(60)
            .collect();
        let lt_log = std::fs::read_to_string(work.path().join("lt_seed.log")).unwrap_or_default();
        let lt_tail: Vec<&str> = lt_log.lines().rev().take(20).collect();
        format!(
            "ctorrent (newest first):\n{}\nlibtorrent (newest first):\n{}",
            tail.join("\n"),
            lt_tail.join("\n")
        )
    };
    wait_counting(
        &h,
        &mut counts,
        |t| t.status().state == TorrentState::Seeding,
        Duration::from_secs(90),
        "bittern did not finish",
        &logs,
    );
    assert_same(src.path(), dst.path(), &real);
    assert_eq!(h.status().hash_failures, 0);
    // the seeder leaves: ctorrent finishes from bittern alone
    drop(lt);
    let limit = Instant::now() + Duration::from_secs(120);
    let status = loop {
        wait_counting(&h, &mut counts, |_| true, Duration::from_secs(1), "", &logs);
        if let Some(status) = ct.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > limit {
            let _ = ct.kill();
            let _ = ct.wait();
            panic!("ctorrent did not finish\n{}", logs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "ctorrent exited with {status}\n{}",
        logs()
    );
    assert_same(src.path(), ct_dir.path(), &real);

    // ctorrent dials from 127.0.0.1 (it binds only its listener), or is
    // dialled at 127.0.0.3: every peer but libtorrent is ctorrent
    let is_ct = |a: &SocketAddr| a.ip() != std::net::IpAddr::from(LT_IP);
    let from_lt: u64 = counts
        .iter()
        .filter(|(a, _, _)| a.ip() == std::net::IpAddr::from(LT_IP))
        .map(|c| c.1)
        .sum();
    let to_ct: u64 = counts
        .iter()
        .filter(|(a, _, _)| is_ct(a))
        .map(|c| c.2)
        .sum();
    let ct_text = std::fs::read_to_string(&ct_log).unwrap_or_default();
    let ct_from_us = ctorrent_blocks_from(&ct_text, session.local_addr());
    eprintln!(
        "hybrid swarm: bittern got {from_lt} B from libtorrent and {} B from ctorrent, \
         sent {to_ct} B to ctorrent; ctorrent's log: {ct_from_us} blocks from bittern",
        counts
            .iter()
            .filter(|(a, _, _)| is_ct(a))
            .map(|c| c.1)
            .sum::<u64>()
    );
    assert!(
        from_lt > 0,
        "bittern got nothing from libtorrent: {counts:?}"
    );
    assert!(to_ct > 0, "bittern sent nothing to ctorrent: {counts:?}");
    assert!(
        ct_from_us > 0,
        "ctorrent's log shows no block from bittern\n{}",
        logs()
    );
    tracker.shutdown();
}
