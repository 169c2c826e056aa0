//! The daemon's peer-network settings (`dht-enabled`, `utp-enabled`,
//! `pex-enabled`, `lpd-enabled`, `encryption`, `peer-port`, bittern's
//! `dht-bootstrap`) driven by Debian's `transmission-remote` 3.00, and the
//! daemon finding a magnet's only seeder, a uTP-only libtorrent, through
//! a DHT of libtorrent nodes.
//!
//! Nothing leaves loopback: the daemon's peers are bound to 127.0.0.1, so
//! its TCP listener and its one UDP socket (uTP and the DHT) are bound
//! there and Linux refuses to send from them to any other address; the
//! public DHT routers are only used when peers are bound to a non-loopback
//! address and no `dht-bootstrap` is set, and every test here binds
//! 127.0.0.1 and gives a 127.0.0.1 bootstrap node; the saved DHT contacts
//! are asserted to be loopback. LSD (multicast) is never started: the one
//! test that turns `lpd-enabled` on does so over RPC, where it only takes
//! effect at the next start, and restarts with `--no-lpd`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::daemon::{free_port, remote_ok, start_daemon, wait_list, REMOTE};
use crate::dht::{addrs, LtSwarm};
use crate::util::*;

/// `-si`'s network lines as (label, value).
fn network(rpc: u16) -> Vec<(String, String)> {
    let text = remote_ok(rpc, &["-si"]);
    let labels = [
        "Listenport",
        "uTP enabled",
        "Distributed hash table enabled",
        "Local peer discovery enabled",
        "Peer exchange allowed",
        "Encryption",
    ];
    labels
        .iter()
        .map(|l| {
            let prefix = format!("{l}: ");
            let v = text
                .lines()
                .find_map(|line| line.trim().strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {l:?} in -si:\n{text}"));
            ((*l).to_string(), v.trim().to_string())
        })
        .collect()
}

fn expect(
    port: u16,
    utp: &str,
    dht: &str,
    lpd: &str,
    pex: &str,
    enc: &str,
) -> Vec<(String, String)> {
    [
        ("Listenport", port.to_string()),
        ("uTP enabled", utp.into()),
        ("Distributed hash table enabled", dht.into()),
        ("Local peer discovery enabled", lpd.into()),
        ("Peer exchange allowed", pex.into()),
        ("Encryption", enc.into()),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect()
}

fn settings_json(config: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(config.join("settings.json")).expect("settings.json");
    serde_json::from_str(&text).expect("settings.json is json")
}

/// `GET /metrics` from the daemon.
fn metrics(rpc: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", rpc)).expect("connect");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn dht_nodes_metric(rpc: u16) -> Option<u64> {
    metrics(rpc)
        .lines()
        .find_map(|l| l.strip_prefix("bittern_dht_nodes "))
        .map(|v| v.trim().parse().expect("a count"))
}

/// Defaults like Transmission's in `-si`; `session-set` through
/// transmission-remote's own options changes them (reported at once,
/// saved at once); a graceful restart and a SIGKILL keep them; the
/// daemon's flags change them as transmission-daemon's do.
#[test]
fn network_settings_shown_set_and_kept_across_restarts() {
    if !bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let rpc = free_port();
    // A loopback node nobody answers on: the DHT runs, joins nothing.
    let boot = format!("127.0.0.1:{}", free_port());
    let mut d = start_daemon(&config, rpc, 0, &["--dht-bootstrap", &boot]);
    assert_eq!(
        network(rpc),
        expect(d.peer, "Yes", "Yes", "No", "Yes", "preferred")
    );
    assert_eq!(settings_json(&config)["dht-bootstrap"], json!([boot]));
    assert_eq!(dht_nodes_metric(rpc), Some(0), "the DHT runs, alone");

    // -O no DHT, -X no PEX, --no-utp, -y LPD, -er encryption required, -p port.
    let peer_port = free_port();
    remote_ok(
        rpc,
        &[
            "-O",
            "-X",
            "--no-utp",
            "-y",
            "-er",
            "-p",
            &peer_port.to_string(),
        ],
    );
    assert_eq!(
        network(rpc),
        expect(peer_port, "No", "No", "Yes", "No", "required"),
        "session-get reports what session-set stored"
    );
    let s = settings_json(&config);
    assert_eq!(
        (
            &s["dht-enabled"],
            &s["utp-enabled"],
            &s["pex-enabled"],
            &s["lpd-enabled"],
            &s["encryption"],
            &s["peer-port"]
        ),
        (
            &json!(false),
            &json!(false),
            &json!(false),
            &json!(true),
            &json!("required"),
            &json!(peer_port)
        )
    );
    // DHT, uTP and LSD take effect at the next start (PEX, encryption and
    // the port at once: see encryption_and_pex_apply_live and
    // daemon_net::peer_port_changes_apply_live): the DHT still runs now.
    assert_eq!(dht_nodes_metric(rpc), Some(0));

    // Graceful restart; --no-lpd keeps LSD's multicast from starting (and
    // is stored, as transmission-daemon stores its options). No -p: the
    // stored peer-port is listened on.
    d.proc.signal(libc::SIGTERM);
    assert_eq!(d.proc.wait(Duration::from_secs(30)).code(), Some(0));
    let mut d = crate::daemon::start_daemon_args(&config, rpc, &["--no-lpd"]);
    assert_eq!(d.peer, peer_port, "the stored peer-port is used");
    assert_eq!(
        network(rpc),
        expect(peer_port, "No", "No", "No", "No", "required")
    );
    assert_eq!(dht_nodes_metric(rpc), None, "no DHT after the restart");
    assert_eq!(
        settings_json(&config)["dht-bootstrap"],
        json!([boot]),
        "the bootstrap list is kept"
    );

    // Back on over RPC, then SIGKILL: saved before the kill.
    remote_ok(rpc, &["-o", "-x", "--utp", "-et"]);
    d.proc.signal(libc::SIGKILL);
    d.proc.wait(Duration::from_secs(10));
    let d = start_daemon(&config, rpc, 0, &[]);
    assert_eq!(
        network(rpc),
        expect(d.peer, "Yes", "Yes", "No", "Yes", "tolerated")
    );
    assert_eq!(dht_nodes_metric(rpc), Some(0), "the DHT runs again");
    assert_eq!(settings_json(&config)["encryption"], json!("tolerated"));
}

/// libtorrent's `peer_info::utp_socket` flag (bit 17).
const LT_UTP_SOCKET: u64 = 1 << 17;

/// Eight libtorrent DHT nodes; node 1 seeds a trackerless torrent with TCP
/// off (uTP only: its TCP port refuses connections). The daemon, given one
/// node as `--dht-bootstrap` and the torrent as a bare magnet link through
/// transmission-remote, finds the seeder on the DHT, fetches the metadata
/// and the data over uTP, byte-identical; libtorrent lists the daemon with
/// its uTP flag; the daemon's `/metrics` counts DHT nodes and every
/// contact it saves is a loopback address.
#[test]
fn daemon_downloads_a_magnet_over_dht_and_utp_from_libtorrent() {
    if !libtorrent_available()
        || !bittern_testkit::require(
            "transmission-remote (Debian package transmission-cli)",
            bittern_testkit::on_path(REMOTE),
        )
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lt");
    std::fs::create_dir(&out).unwrap();
    let size = (4 << 20).to_string();
    let (mut lt, ready) = LtSwarm::start(&[
        "--nodes",
        "8",
        "--seed",
        "--size",
        &size,
        "--out",
        out.to_str().unwrap(),
        "--utp-only",
    ]);
    let boot = addrs(&ready["nodes"])[0];
    let ih = ready["info_hash"].as_str().expect("info hash");
    let config = tmp.path().join("config");
    let rpc = free_port();
    // --no-tcp: libtorrent with incoming TCP off still accepts TCP
    // connections and closes them, so a TCP-first dial never falls back
    // to uTP (see the report); uTP alone reaches it.
    let mut d = start_daemon(
        &config,
        rpc,
        0,
        &["--dht-bootstrap", &boot.to_string(), "--no-tcp"],
    );
    // 4 MiB in about 2 s: time to read libtorrent's peer list mid-transfer.
    remote_ok(rpc, &["-d", "2000"]);
    let dl = tmp.path().join("dl");
    remote_ok(
        rpc,
        &[
            "-a",
            &format!("magnet:?xt=urn:btih:{ih}"),
            "-w",
            dl.to_str().unwrap(),
        ],
    );
    // The daemon dials from its UDP socket, the listen port's twin.
    let ours = format!("127.0.0.1:{}", d.peer);
    let mut flags = None;
    let end = Instant::now() + Duration::from_secs(60);
    while flags.is_none() && Instant::now() < end {
        let peers = lt.ask(json!({"cmd": "peers", "node": 1}), Duration::from_secs(10));
        flags = peers["peers"].as_array().and_then(|l| {
            l.iter()
                .find(|p| p["addr"] == ours.as_str())
                .and_then(|p| p["flags"].as_u64())
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    let flags = flags.unwrap_or_else(|| panic!("daemon {ours} never among libtorrent's peers"));
    assert!(
        flags & LT_UTP_SOCKET != 0,
        "libtorrent's flags {flags:#x} lack utp"
    );
    wait_list(rpc, "the magnet downloaded", |l| {
        l.len() == 1 && l[0].0 == "100%" && l[0].2 == "dht-seed.bin"
    });
    let got = std::fs::read(dl.join("dht-seed.bin")).expect("downloaded file");
    let want = std::fs::read(out.join("dht-seed.bin")).expect("seeded file");
    assert!(got == want, "downloaded bytes differ from the seeder's");
    let nodes = dht_nodes_metric(rpc).expect("dht nodes in /metrics");
    assert!(nodes > 0, "the daemon's routing table is empty");

    d.proc.signal(libc::SIGTERM);
    assert_eq!(d.proc.wait(Duration::from_secs(30)).code(), Some(0));
    let state = std::fs::read(config.join("dht.dat")).expect("dht state saved in the config dir");
    let saved = bittern_dht::SavedState::decode(&state).expect("a dht state");
    assert!(!saved.nodes.is_empty(), "no contacts saved");
    assert!(
        saved.nodes.iter().all(|n| n.addr.ip().is_loopback()),
        "{:?}",
        saved.nodes
    );
}

/// What the daemon answers a plaintext BitTorrent handshake for `hash`
/// (with the extension-protocol bit) on `port`: `None` when it closes the
/// connection without a handshake; else its BEP 10 extension handshake
/// (bencoded payload), read within 20 s.
fn plaintext_handshake(port: u16, hash: &[u8; 20]) -> Option<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .expect("connect to the daemon's peer port");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hs = Vec::with_capacity(68);
    hs.push(19u8);
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0]);
    hs.extend_from_slice(hash);
    hs.extend_from_slice(b"-XX0001-livesettings");
    s.write_all(&hs).ok()?;
    let mut reply = [0u8; 68];
    s.read_exact(&mut reply).ok()?;
    assert_eq!(&reply[1..20], b"BitTorrent protocol");
    assert_eq!(
        &reply[28..48],
        hash,
        "the daemon answers for the same torrent"
    );
    // Messages until the extension handshake (id 20, extended id 0).
    for _ in 0..16 {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)
            .expect("a message after the handshake");
        let len = u32::from_be_bytes(len) as usize;
        assert!(len < 1 << 20, "message of {len} bytes");
        let mut msg = vec![0u8; len];
        s.read_exact(&mut msg).expect("message body");
        if len >= 2 && msg[0] == 20 && msg[1] == 0 {
            return Some(msg[2..].to_vec());
        }
    }
    panic!("no extension handshake in the first 16 messages");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `encryption` and `pex-enabled` set over RPC apply without a restart:
/// after `-er` (required) the running daemon refuses a plaintext
/// handshake it answered a moment before, and takes it again after `-ep`;
/// after `-X` (no PEX) its extension handshake no longer offers `ut_pex`,
/// and offers it again after `-x`. `session-get`'s
/// `bittern-restart-pending` lists the settings that wait for a restart
/// (`dht-enabled`, `utp-enabled`, `lpd-enabled`), never these two (nor
/// `peer-port`, which moves at once).
#[test]
fn encryption_and_pex_apply_live() {
    if !bittern_testkit::require(
        "transmission-remote (Debian package transmission-cli)",
        bittern_testkit::on_path(REMOTE),
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    random_file(&data.join("live.bin"), 256 * 1024, 7);
    let torrent = create(
        &data.join("live.bin"),
        &tmp.path().join("live.torrent"),
        &[],
    );
    let rpc = free_port();
    let d = start_daemon(
        &tmp.path().join("config"),
        rpc,
        0,
        &["--no-dht", "--no-lpd"],
    );
    remote_ok(
        rpc,
        &[
            "-a",
            &torrent.display().to_string(),
            "-w",
            &data.display().to_string(),
        ],
    );
    wait_list(rpc, "the torrent is checked complete", |rows| {
        rows.len() == 1 && rows[0].0 == "100%"
    });
    let info = remote_ok(rpc, &["-t", "1", "-i"]);
    let hex = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Hash: "))
        .expect("Hash: in -i")
        .trim()
        .to_string();
    let mut hash = [0u8; 20];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let mut client = crate::daemon_attack::Client::new(rpc);
    let pending = |c: &mut crate::daemon_attack::Client| {
        c.ok(json!({"method": "session-get", "arguments": {}}))["bittern-restart-pending"].clone()
    };
    assert_eq!(pending(&mut client), json!([]));

    // Preferred (the default): plaintext taken, ut_pex offered.
    let ext = plaintext_handshake(d.peer, &hash).expect("plaintext accepted under preferred");
    assert!(contains(&ext, b"6:ut_pex"), "ut_pex offered with PEX on");

    // Required: the same plaintext handshake is refused, no restart.
    remote_ok(rpc, &["-er"]);
    assert_eq!(
        plaintext_handshake(d.peer, &hash),
        None,
        "plaintext refused under required"
    );
    remote_ok(rpc, &["-ep"]);
    assert!(
        plaintext_handshake(d.peer, &hash).is_some(),
        "plaintext taken again"
    );

    // PEX off: not offered in the extension handshake; on again: offered.
    remote_ok(rpc, &["-X"]);
    let ext = plaintext_handshake(d.peer, &hash).expect("plaintext accepted");
    assert!(!contains(&ext, b"6:ut_pex"), "no ut_pex with PEX off");
    remote_ok(rpc, &["-x"]);
    let ext = plaintext_handshake(d.peer, &hash).expect("plaintext accepted");
    assert!(contains(&ext, b"6:ut_pex"), "ut_pex offered again");
    assert_eq!(
        pending(&mut client),
        json!([]),
        "nothing waits for a restart"
    );

    // What needs a restart says so.
    remote_ok(rpc, &["-o", "--no-utp", "-X", "-er"]);
    assert_eq!(
        pending(&mut client),
        json!(["dht-enabled", "utp-enabled"]),
        "DHT and uTP wait for the restart, PEX and encryption do not"
    );
    assert_eq!(plaintext_handshake(d.peer, &hash), None, "required at once");
}
