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

pub(crate) fn dht_session(bootstrap: &[SocketAddr]) -> Session {
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
pub(crate) fn stored(runner: &Runner, ih: InfoHash) -> Vec<SocketAddr> {
    runner.dht().with_node(|n| {
        n.peer_store()
            .get(&ih, 100, Instant::now(), &mut rand::rng())
    })
}

fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    bittern_testkit::wait_until(what, limit, cond);
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

/// Every public torrent is announced again every `reannounce`. A seeds X
/// with a 2 s interval, B seeds Y with the default (15 min); both join
/// through R1 and announce there. Then R2, a fresh node, joins through R1,
/// A and B: only an announce sent after R2 joined can put a peer in its
/// store, so R2 storing A for X proves the re-announce, and R2 not storing
/// B for Y (while A's re-announces keep arriving) shows it is the interval
/// that did it.
#[test]
fn public_torrents_are_announced_again_on_the_interval() {
    let r1 = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let boot = vec![r1.local_addr().to_string()];
    let src = tempfile::tempdir().unwrap();
    let x = make_torrent(src.path(), "x.bin", &[("x.bin", 100_000)], 16384, 11);
    let y = make_torrent(src.path(), "y.bin", &[("y.bin", 100_000)], 16384, 12);
    let session = |reannounce: Duration| {
        Session::new(SessionConfig {
            dht: Some(DhtSettings {
                bootstrap: boot.clone(),
                reannounce,
                ..DhtSettings::default()
            }),
            ..config()
        })
        .unwrap()
    };
    let a = session(Duration::from_secs(2));
    let b = session(DhtSettings::default().reannounce);
    let ta = a
        .add_torrent(x.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    let tb = b
        .add_torrent(y.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(20));
    let (a_addr, b_addr) = (a.local_addr(), b.local_addr());
    wait_for("the first announces", Duration::from_secs(20), || {
        stored(&r1, x.info_hash).contains(&a_addr) && stored(&r1, y.info_hash).contains(&b_addr)
    });

    let r2 = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    r2.dht()
        .bootstrap(&[
            r1.local_addr(),
            a.udp_addr().unwrap(),
            b.udp_addr().unwrap(),
        ])
        .unwrap();
    assert!(stored(&r2, x.info_hash).is_empty() && stored(&r2, y.info_hash).is_empty());
    wait_for(
        "A's re-announce at the new node",
        Duration::from_secs(30),
        || stored(&r2, x.info_hash).contains(&a_addr),
    );
    // Two more of A's intervals: B still has not announced again.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        stored(&r2, y.info_hash).is_empty(),
        "B announced again before its 15 minutes"
    );
}

/// Dual stack (BEP 32): a session listening on 127.0.0.1 and [::1] runs
/// an IPv4 node and an IPv6 node, each bootstrapping from the nodes of its
/// family, announcing every public torrent and saving its own contacts
/// (`dht.dat`, `dht6.dat`); the IPv4 node answers a BEP 32 `want` of `n6`
/// from the IPv6 node's contacts. A session on [::1] only, bootstrapped from the
/// IPv6 node alone, finds the seeder through the DHT over IPv6 and
/// downloads byte-identical.
#[test]
fn dual_stack_session_runs_an_ipv4_and_an_ipv6_node() {
    if !crate::ipv6::have_ipv6_loopback() {
        return;
    }
    let _ = env_logger::builder().is_test(true).try_init();
    let r4 = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let r6 = Runner::bind("[::1]:0".parse().unwrap(), Config::default()).unwrap();
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "ds.bin", &[("ds.bin", 400_000)], 16384, 13);
    let state = src.path().join(".bittern/dht.dat");
    let mut a = Session::new(SessionConfig {
        listen_also: vec![std::net::Ipv6Addr::LOCALHOST.into()],
        dht: Some(DhtSettings {
            bootstrap: vec![r4.local_addr().to_string(), r6.local_addr().to_string()],
            state_file: Some(state.clone()),
            ..DhtSettings::default()
        }),
        ..config()
    })
    .unwrap();
    let ids = a.dht_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        !ids[0].1 && ids[1].1,
        "an IPv4 node, then an IPv6 node: {ids:?}"
    );
    let ta = a
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    let port = a.local_addr().port();
    let (a4, a6): (SocketAddr, SocketAddr) = (
        ([127, 0, 0, 1], port).into(),
        (std::net::Ipv6Addr::LOCALHOST, port).into(),
    );
    wait_for(
        "announces on both families",
        Duration::from_secs(20),
        || stored(&r4, meta.info_hash) == vec![a4] && stored(&r6, meta.info_hash) == vec![a6],
    );
    // Each bootstrap node knows only the node of its own family.
    assert!(
        r4.dht().nodes().iter().all(|n| n.addr == a4),
        "{:?}",
        r4.dht().nodes()
    );
    assert!(
        r6.dht().nodes().iter().all(|n| n.addr == a6),
        "{:?}",
        r6.dht().nodes()
    );
    let contacts = a.dht_contacts();
    assert!(
        contacts.contains(&r4.local_addr()) && contacts.contains(&r6.local_addr()),
        "{contacts:?}"
    );
    assert_eq!(a.dht_nodes(), Some(2));
    // BEP 32: A's IPv4 node, asked over IPv4 with want n4 and n6, names
    // the IPv6 node's contact (r6) in nodes6
    let asker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    asker
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    wait_for("nodes6 from the IPv4 node", Duration::from_secs(10), || {
        let q = bittern_dht::Message {
            tid: b"w6".to_vec(),
            version: None,
            ip: None,
            read_only: true,
            body: bittern_dht::Body::Query(bittern_dht::Query {
                id: bittern_dht::NodeId([0x66; 20]),
                kind: bittern_dht::QueryKind::FindNode {
                    target: bittern_dht::NodeId([0x67; 20]),
                    want: bittern_dht::Want { v4: true, v6: true },
                },
            }),
        };
        asker.send_to(&q.encode(), a4).unwrap();
        let mut buf = [0u8; 2048];
        let Ok((len, _)) = asker.recv_from(&mut buf) else {
            return false;
        };
        match bittern_dht::Message::decode(&buf[..len]).map(|m| m.body) {
            Ok(bittern_dht::Body::Response(r)) => {
                r.nodes.iter().any(|n| n.addr == r4.local_addr())
                    && r.nodes6.iter().any(|n| n.addr == r6.local_addr())
            }
            _ => false,
        }
    });

    let dst = tempfile::tempdir().unwrap();
    let b = Session::new(SessionConfig {
        listen: "[::1]:0".parse().unwrap(),
        dht: Some(DhtSettings {
            bootstrap: vec![r6.local_addr().to_string()],
            ..DhtSettings::default()
        }),
        ..config()
    })
    .unwrap();
    assert_eq!(b.dht_ids().len(), 1);
    let tb = b
        .add_torrent(meta.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(30));
    assert_same(src.path(), dst.path(), &["ds.bin".into()]);

    a.shutdown();
    let saved = |p: &Path| -> Vec<SocketAddr> {
        let s = bittern_dht::SavedState::decode(&std::fs::read(p).unwrap()).unwrap();
        s.nodes.iter().map(|n| n.addr).collect()
    };
    let v4 = saved(&state);
    let v6 = saved(&src.path().join(".bittern/dht6.dat"));
    assert!(
        v4.contains(&r4.local_addr()) && v4.iter().all(SocketAddr::is_ipv4),
        "{v4:?}"
    );
    assert!(
        v6.contains(&r6.local_addr()) && v6.iter().all(SocketAddr::is_ipv6),
        "{v6:?}"
    );
}

/// A downloading torrent short of peers looks them up again every
/// `lookup_interval`, not only when it announces. B (interval 1 s) starts
/// first: its announce finds no one. Only then does a seeder appear: A
/// runs without a DHT (it can never find B), and a helper node announces
/// A's address for it at the bootstrap node. B finds A through a later
/// lookup (its next announce is 15 minutes away) and downloads.
#[test]
fn a_torrent_short_of_peers_looks_them_up_again() {
    let r = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "late.bin", &[("late.bin", 300_000)], 16384, 14);
    let dst = tempfile::tempdir().unwrap();
    let b = Session::new(SessionConfig {
        dht: Some(DhtSettings {
            bootstrap: vec![r.local_addr().to_string()],
            lookup_interval: Duration::from_secs(1),
            ..DhtSettings::default()
        }),
        ..config()
    })
    .unwrap();
    let tb = b
        .add_torrent(meta.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    let b_addr = b.local_addr();
    wait_for("B's first announce", Duration::from_secs(20), || {
        stored(&r, meta.info_hash).contains(&b_addr)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(tb.status().peers_known, 0);

    let (a, ta) = seeding(&meta, src.path());
    assert_eq!(ta.status().state, TorrentState::Seeding);
    let helper = Runner::bind("127.0.0.1:0".parse().unwrap(), Config::default()).unwrap();
    helper.dht().bootstrap(&[r.local_addr()]).unwrap();
    helper
        .dht()
        .announce(meta.info_hash, Some(a.local_addr().port()))
        .unwrap();
    // Stored by the bootstrap node's own thread, in its own time.
    wait_for(
        "the helper's announce of A",
        Duration::from_secs(20),
        || stored(&r, meta.info_hash).contains(&a.local_addr()),
    );
    wait_state(&tb, TorrentState::Seeding, Duration::from_secs(30));
    assert_same(src.path(), dst.path(), &["late.bin".into()]);
}

/// A peer's `yourip` (BEP 10) is a vote for our external address at the
/// DHT node (BEP 42). With one vote enough, A's node settles on 127.0.0.1
/// once C connects to it; being a loopback address, BEP 42 leaves A's id
/// as it was. C runs no DHT and A has no bootstrap node, so no DHT reply
/// (whose `ip` key also votes) can have told A.
#[test]
fn a_peers_yourip_tells_the_dht_our_external_address() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "y.bin", &[("y.bin", 100_000)], 16384, 15);
    let voting = || {
        Session::new(SessionConfig {
            dht: Some(DhtSettings {
                node: Config {
                    external_ip_votes: 1,
                    ..Config::default()
                },
                ..DhtSettings::default()
            }),
            ..config()
        })
        .unwrap()
    };
    let a = voting();
    let id = a.dht_id();
    let ta = a
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&ta, TorrentState::Seeding, Duration::from_secs(20));
    assert!(a.dht_external_ips().is_empty());
    let dst = tempfile::tempdir().unwrap();
    let c = session();
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
    let lo: std::net::IpAddr = [127, 0, 0, 1].into();
    wait_for("A's external address", Duration::from_secs(10), || {
        a.dht_external_ips() == vec![lo]
    });
    assert_eq!(a.dht_id(), id, "a loopback address keeps any id");
}
