//! The session's DHT with bittern-only nodes on 127.0.0.1: public torrents
//! are announced and found through it, private ones never touch it, and
//! the BEP 5 `port` message puts a peer's node into the routing table.
//! Every socket is bound to 127.0.0.1 and every bootstrap node is a local
//! `bittern_dht::Runner`, so nothing leaves loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bittern_dht::{Config, Runner};
use bittern_engine::{DhtSettings, Session, SessionConfig, TorrentOptions, TorrentState};
use bittern_wire::{InfoHash, Metainfo, MetainfoBuilder};
use rand::{Rng, SeedableRng};

use crate::util::*;

fn dht_session(bootstrap: &[SocketAddr]) -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    Session::new(SessionConfig {
        dht: Some(DhtSettings {
            bootstrap: bootstrap.iter().map(SocketAddr::to_string).collect(),
            ..DhtSettings::default()
        }),
        ..config()
    })
    .unwrap()
}

/// A private (BEP 27) single-file torrent of random bytes at `dir/name`.
fn make_private(dir: &Path, name: &str, size: usize) -> Metainfo {
    let mut data = vec![0u8; size];
    rand::rngs::StdRng::seed_from_u64(7).fill(&mut data[..]);
    let path = dir.join(name);
    std::fs::write(&path, &data).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let hashes =
        bittern_storage::hash_files(&[(path, size as u64)], 16384, &pool, &|_, _| {}).unwrap();
    let bytes = MetainfoBuilder::new(name)
        .piece_length(16384)
        .pieces(hashes)
        .single_file(size as u64)
        .private(true)
        .build()
        .unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.info.private);
    m
}

/// Peers the bootstrap node stores for `ih`.
fn stored(runner: &Runner, ih: InfoHash) -> Vec<SocketAddr> {
    runner.dht().with_node(|n| {
        n.peer_store()
            .get(&ih, 100, Instant::now(), &mut rand::rng())
    })
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A seeds a public and a private torrent with the DHT on: the public one
/// is announced (a third node stores A's port), the private one never is.
/// B, with the DHT and no other peer source, downloads the public torrent
/// from A byte-identical and never finds a peer for the private one.
#[test]
fn dht_finds_public_torrents_and_never_private_ones() {
    let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let boot = [runner.local_addr()];
    let src = tempfile::tempdir().unwrap();
    let public = make_torrent(src.path(), "pub.bin", &[("pub.bin", 600_000)], 16384, 3);
    let private = make_private(src.path(), "priv.bin", 300_000);
    let a = dht_session(&boot);
    assert_eq!(a.udp_addr().map(|u| u.port()), Some(a.local_addr().port()));
    let ta = a
        .add_torrent(public.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    let tp = a
        .add_torrent(private.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    wait_state(&tp, TorrentState::Seeding, Duration::from_secs(20));
    let a_addr = a.local_addr();
    wait_for("A's announce", Duration::from_secs(20), || {
        stored(&runner, public.info_hash).contains(&a_addr)
    });
    assert!(a.dht_nodes().unwrap() >= 1);

    let dst = tempfile::tempdir().unwrap();
    let b = dht_session(&boot);
    let tb = b
        .add_torrent(public.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    let tbp = b
        .add_torrent(private.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(30));
    assert_same(src.path(), dst.path(), &["pub.bin".into()]);
    std::thread::sleep(Duration::from_millis(1500));
    let s = tbp.status();
    assert_eq!(s.pieces_have, 0, "private torrent got data: {s:?}");
    assert_eq!(s.peers_known, 0, "private torrent found peers: {s:?}");
    assert!(
        stored(&runner, private.info_hash).is_empty(),
        "a private torrent was announced"
    );
    // Both A's and B's public announces reached the bootstrap node.
    let b_addr = b.local_addr();
    wait_for("B's announce", Duration::from_secs(10), || {
        stored(&runner, public.info_hash).contains(&b_addr)
    });
}

/// Two sessions with the DHT on but no bootstrap node at all: C connects
/// to A as a plain peer; each sends its DHT port (BEP 5 `port`), the other
/// pings it and it enters the routing table. Without the message neither
/// table could hold anything.
#[test]
fn port_message_puts_the_peers_node_in_the_table() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "p.bin", &[("p.bin", 200_000)], 16384, 5);
    let a = dht_session(&[]);
    let ta = a
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    assert_eq!(a.dht_nodes(), Some(0));
    let dst = tempfile::tempdir().unwrap();
    let c = dht_session(&[]);
    let tc = c
        .add_torrent(
            meta,
            dst.path(),
            TorrentOptions {
                peers: vec![a.local_addr()],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_state(&tc, TorrentState::Seeding, Duration::from_secs(30));
    let (a_udp, c_udp) = (a.udp_addr().unwrap(), c.udp_addr().unwrap());
    wait_for("A's node in C's table", Duration::from_secs(10), || {
        c.dht_contacts().contains(&a_udp)
    });
    wait_for("C's node in A's table", Duration::from_secs(10), || {
        a.dht_contacts().contains(&c_udp)
    });
}

/// The node's state is saved under the given file at shutdown, and a new
/// session started from it (no bootstrap node given) rejoins through the
/// saved contacts, with the same node id.
#[test]
fn saved_state_rejoins_without_bootstrap() {
    let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".bittern/dht.dat");
    let with_state = |bootstrap: Vec<String>| {
        Session::new(SessionConfig {
            dht: Some(DhtSettings {
                bootstrap,
                state_file: Some(state.clone()),
                ..DhtSettings::default()
            }),
            ..config()
        })
        .unwrap()
    };
    let mut first = with_state(vec![runner.local_addr().to_string()]);
    wait_for("the first join", Duration::from_secs(10), || {
        first.dht_nodes() == Some(1)
    });
    let first_udp = first.udp_addr().unwrap();
    let first_id = first.dht_id();
    first.shutdown();
    let saved = bittern_dht::SavedState::decode(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        saved.nodes.iter().map(|n| n.addr).collect::<Vec<_>>(),
        vec![runner.local_addr()]
    );
    // The bootstrap node knew the first session's node under this id.
    let known = runner.dht().nodes();
    assert!(known
        .iter()
        .any(|n| n.addr == first_udp && n.id == saved.id));

    let second = with_state(Vec::new());
    wait_for("the rejoin", Duration::from_secs(10), || {
        second.dht_contacts().contains(&runner.local_addr())
    });
    assert_eq!(second.dht_id(), Some(saved.id));
    assert_eq!(first_id, Some(saved.id));
}
