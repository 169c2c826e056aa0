//! Interop with libtorrent's DHT on loopback (python3-libtorrent 2.0.8,
//! driven by `testkit/scripts/lt_dht.py`).
//!
//! Only loopback is used, and the test checks it:
//! - every libtorrent session listens on `127.0.0.1` only, its
//!   `dht_bootstrap_nodes` setting is empty (libtorrent's default is a
//!   router on the internet) and an ip_filter blocks everything outside
//!   127/8; the script refuses non-loopback addresses;
//! - our node is bound to 127.0.0.1, bootstrapped only from the libtorrent
//!   endpoints the script printed (asserted to be 127.x), and after the test
//!   every contact in our routing table is asserted to be a loopback address.
//!
//! Skipped (loudly) when Debian's Python cannot import libtorrent; fails
//! instead under `BITTERN_REQUIRE_INTEROP=1`.

use std::net::SocketAddr;
use std::time::Duration;

use bittern_dht::{Config, Runner};
use bittern_wire::InfoHash;
use serde_json::Value;

fn have_libtorrent() -> bool {
    bittern_testkit::libtorrent::available()
}

/// The script's process; killed on drop.
struct Swarm(bittern_testkit::procs::JsonProc);

impl Swarm {
    fn start(args: &[&str]) -> (Swarm, Value) {
        let (p, ready) = bittern_testkit::procs::JsonProc::start(
            "lt_dht.py",
            bittern_testkit::libtorrent::python("lt_dht.py", args),
        );
        (Swarm(p), ready)
    }

    fn ask(&mut self, cmd: Value) -> Value {
        self.0.ask(cmd, Duration::from_secs(60))
    }
}

fn addrs(v: &Value) -> Vec<SocketAddr> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Eight libtorrent nodes; one seeds a trackerless torrent (so libtorrent
/// announces it). Our node bootstraps from them (all eight enter our
/// table), finds the seeder with get_peers, announces two info hashes
/// (explicit port and implied_port), and libtorrent's own get_peers finds
/// us both times. Our node also enters libtorrent's routing tables.
#[test]
fn libtorrent_and_bittern_find_each_other() {
    if !have_libtorrent() {
        return;
    }
    let (mut lt, ready) = Swarm::start(&["--nodes", "8", "--seed", "--timeout", "120"]);
    let lt_nodes = addrs(&ready["nodes"]);
    assert_eq!(lt_nodes.len(), 8);
    assert!(
        lt_nodes.iter().all(|a| a.ip().is_loopback()),
        "{lt_nodes:?}"
    );
    let seeder: SocketAddr = ready["seeder"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("seeder");
    let lt_ih = InfoHash::from_hex(ready["info_hash"].as_str().expect("info_hash")).expect("hex");

    let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).expect("bind");
    let dht = runner.dht();
    let size = dht.bootstrap(&lt_nodes).expect("bootstrap");
    assert_eq!(
        size, 8,
        "all eight libtorrent nodes answered and entered our table"
    );

    // bittern finds libtorrent's seeder
    let peers = dht.get_peers(lt_ih).expect("get_peers");
    assert!(peers.contains(&seeder), "found {peers:?}, want {seeder}");

    // libtorrent finds bittern: explicit port
    let ih1 = InfoHash([0x11; 20]);
    let res = dht.announce(ih1, Some(7001)).expect("announce");
    assert!(
        res.announced >= 7,
        "stored at {} libtorrent nodes",
        res.announced
    );
    let got = lt.ask(serde_json::json!({"cmd": "get_peers", "info_hash": ih1.to_hex(), "node": 2}));
    let want: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    assert!(
        addrs(&got["peers"]).contains(&want),
        "libtorrent found {got}"
    );

    // and implied_port: libtorrent stores our UDP source port
    let ih2 = InfoHash([0x22; 20]);
    let res = dht.announce(ih2, None).expect("announce");
    assert!(res.announced >= 7, "stored at {}", res.announced);
    let got = lt.ask(serde_json::json!({"cmd": "get_peers", "info_hash": ih2.to_hex(), "node": 0}));
    assert!(
        addrs(&got["peers"]).contains(&runner.local_addr()),
        "libtorrent found {got}"
    );
    let got = lt.ask(serde_json::json!({"cmd": "announces"}));
    let stored = got["received"].as_array().map_or(0, |a| {
        a.iter()
            .filter(|x| x[2] == ih2.to_hex() && x[1] == runner.local_addr().port())
            .count()
    });
    assert!(stored >= 2, "announce_peer with implied_port stored: {got}");

    // our node is in libtorrent's routing tables
    let tables = lt.ask(serde_json::json!({"cmd": "table"}));
    let holding = tables["tables"].as_array().map_or(0, |t| {
        t.iter()
            .filter(|t| addrs(t).contains(&runner.local_addr()))
            .count()
    });
    assert!(
        holding >= 7,
        "only {holding}/8 libtorrent tables hold us: {tables}"
    );

    // only loopback was ever contacted
    let ours = dht.nodes();
    assert!(!ours.is_empty());
    assert!(ours.iter().all(|n| n.addr.ip().is_loopback()), "{ours:?}");
    let stats = dht.stats();
    assert_eq!(
        stats.malformed, 0,
        "libtorrent's packets all decoded: {stats:?}"
    );
    eprintln!("interop: {stats:?}; {holding}/8 libtorrent tables hold us");
}
