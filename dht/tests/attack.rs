//! Issue 25's DHT attacks: query floods from one and from many addresses
//! (127.0.0.0/8 is all loopback), attempts to fill the routing table and the
//! peer store, replies to queries never sent, and the amplification probe.
//! The table/store/amplification tests drive a sans-IO `Node` (addresses are
//! data there: nothing is sent); the floods go over real loopback sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bittern_dht::{
    Body, Config, Message, Node, NodeId, NodeInfo, PeerLimits, Query, QueryKind, Response, Runner,
    Want, K,
};
use bittern_wire::InfoHash;

fn msg(tid: &[u8], body: Body) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body,
    }
    .encode()
}

fn query(id: NodeId, tid: &[u8], kind: QueryKind) -> Vec<u8> {
    msg(tid, Body::Query(Query { id, kind }))
}

fn get_peers(ih: InfoHash) -> QueryKind {
    QueryKind::GetPeers {
        info_hash: ih,
        want: Want::default(),
    }
}

/// 127.a.b.c for the i-th fake host.
fn host(i: u32) -> IpAddr {
    let [_, a, b, c] = (i + 1).to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(127, a.max(1), b, c))
}

/// Drains what the node sent: (datagrams, bytes, queries among them).
fn drain(n: &mut Node) -> Vec<(SocketAddr, Message, usize)> {
    std::iter::from_fn(|| n.poll_transmit())
        .map(|t| {
            let m = Message::decode(&t.bytes).expect("we send valid krpc");
            (t.to, m, t.bytes.len())
        })
        .collect()
}

/// Makes `node` ping `addr` and answers as `id`: the node enters the table.
fn join(n: &mut Node, addr: SocketAddr, id: NodeId, now: Instant) {
    n.add_node(addr, now);
    for (to, m, _) in drain(n) {
        if to == addr && matches!(m.body, Body::Query(_)) {
            let r = Body::Response(Response {
                id,
                ..Response::default()
            });
            n.handle_datagram(addr, &msg(&m.tid, r), now);
        }
    }
}

/// A token for `from`, then an announce of `ih` at `port` with it.
fn announce(n: &mut Node, from: SocketAddr, ih: InfoHash, port: u16, now: Instant) {
    let me = NodeId([0x42; 20]);
    n.handle_datagram(from, &query(me, b"g", get_peers(ih)), now);
    let token = drain(n)
        .into_iter()
        .find_map(|(to, m, _)| match m.body {
            Body::Response(r) if to == from => r.token,
            _ => None,
        })
        .expect("a token");
    let kind = QueryKind::AnnouncePeer {
        info_hash: ih,
        port,
        token,
        implied_port: false,
    };
    n.handle_datagram(from, &query(me, b"a", kind), now);
    drain(n);
}

/// A response or error (not a ping the node sends to verify a querier).
fn is_reply(datagram: &[u8]) -> bool {
    Message::decode(datagram).is_ok_and(|m| !matches!(m.body, Body::Query(_)))
}

use bittern_testkit::{cpu_time, rss_kib};

/// The amplification probe: every query kind, in its smallest form from a
/// source we never heard of, against a node whose table and store are as
/// full as replies can use. The largest bytes-out / bytes-in is printed and
/// bounded.
#[test]
fn amplification_is_bounded_for_the_smallest_queries() {
    let mut worst = (0.0f64, String::new());
    for v6 in [false, true] {
        let t0 = Instant::now();
        let config = Config {
            seed: Some(11),
            ..Config::default()
        };
        let mut n = Node::new(config, t0);
        let base = |i: u16| -> SocketAddr {
            if v6 {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 10_000 + i)
            } else {
                SocketAddr::new(host(u32::from(i)), 6881)
            }
        };
        for i in 0..40u16 {
            let mut id = [0u8; 20];
            id[..2].copy_from_slice(&(i * 1601).to_be_bytes());
            join(&mut n, base(i), NodeId(id), t0);
        }
        assert!(n.routing_table().len() >= K, "{}", n.routing_table().len());
        // 200 peers for one hash, 40 more hashes for sample_infohashes
        let ih = InfoHash([0x5a; 20]);
        for i in 0..200u16 {
            let from = if v6 {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 20_000 + i)
            } else {
                SocketAddr::new(host(1000 + u32::from(i)), 6881)
            };
            announce(&mut n, from, ih, 30_000 + i, t0);
        }
        for h in 0..40u8 {
            announce(&mut n, base(0), InfoHash([h; 20]), 4000, t0);
        }
        assert!(n.peer_store().len() >= 200);
        let stranger: SocketAddr = if v6 {
            "[::1]:9".parse().unwrap()
        } else {
            "127.200.0.1:9".parse().unwrap()
        };
        let id = NodeId([0x99; 20]);
        let probes: Vec<(&str, Vec<u8>)> = vec![
            ("ping", query(id, b"t", QueryKind::Ping)),
            (
                "find_node",
                query(
                    id,
                    b"t",
                    QueryKind::FindNode {
                        target: NodeId([0x5a; 20]),
                        want: Want { v4: true, v6: true },
                    },
                ),
            ),
            ("get_peers", query(id, b"t", get_peers(ih))),
            (
                "get_peers want n4 n6",
                query(
                    id,
                    b"t",
                    QueryKind::GetPeers {
                        info_hash: ih,
                        want: Want { v4: true, v6: true },
                    },
                ),
            ),
            (
                "sample_infohashes",
                query(
                    id,
                    b"t",
                    QueryKind::SampleInfohashes {
                        target: NodeId([0; 20]),
                    },
                ),
            ),
            (
                "bad announce",
                query(
                    id,
                    b"t",
                    QueryKind::AnnouncePeer {
                        info_hash: ih,
                        port: 1,
                        token: vec![],
                        implied_port: false,
                    },
                ),
            ),
            (
                "unknown method",
                b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q1:x1:t1:t1:y1:qe".to_vec(),
            ),
            ("garbage", b"d1:y1:qe".to_vec()),
        ];
        for (name, q) in probes {
            n.handle_datagram(stranger, &q, t0);
            let out: usize = drain(&mut n)
                .iter()
                .filter(|(to, m, _)| *to == stranger && !matches!(m.body, Body::Query(_)))
                .map(|(_, _, len)| *len)
                .sum();
            let factor = out as f64 / q.len() as f64;
            let family = if v6 { "v6" } else { "v4" };
            println!(
                "amplification {family} {name}: {} bytes in, {out} out, x{factor:.2}",
                q.len()
            );
            if factor > worst.0 {
                worst = (factor, format!("{family} {name}"));
            }
        }
    }
    println!("largest amplification: x{:.2} ({})", worst.0, worst.1);
    // a reply never exceeds 800 bytes; the smallest get_peers is 94 bytes
    assert!(
        worst.0 <= 8.6,
        "amplification x{:.2} ({})",
        worst.0,
        worst.1
    );
}

/// Replies (with long node lists) to transactions we never opened, from
/// many addresses: all dropped, nothing enters the table, nothing is sent.
#[test]
fn replies_to_queries_never_sent_are_ignored() {
    let t0 = Instant::now();
    let mut n = Node::new(
        Config {
            seed: Some(12),
            ..Config::default()
        },
        t0,
    );
    let nodes: Vec<NodeInfo> = (0..8u8)
        .map(|i| NodeInfo {
            id: NodeId([i; 20]),
            addr: SocketAddr::new(host(u32::from(i) + 50_000), 6881),
        })
        .collect();
    for i in 0..20_000u32 {
        let from = SocketAddr::new(host(i), 6881);
        let r = Body::Response(Response {
            id: NodeId([(i % 251) as u8; 20]),
            nodes: nodes.clone(),
            values: vec![from],
            token: Some(vec![1, 2, 3]),
            ..Response::default()
        });
        n.handle_datagram(from, &msg(&(i as u16).to_be_bytes(), r), t0);
        let e = Body::Error {
            code: 201,
            message: "x".into(),
        };
        n.handle_datagram(from, &msg(b"zz", e), t0);
    }
    assert_eq!(n.stats().unexpected, 40_000);
    assert!(n.routing_table().is_empty());
    assert!(n.peer_store().is_empty());
    assert!(n.poll_transmit().is_none(), "nothing sent in answer");
    assert!(n.poll_event().is_none());
}

/// Fake nodes answer our pings with ids picked to split every bucket, from
/// one IP on 5,000 ports and from 20,000 IPs: the table stays within its
/// per-IP share and the 160 x 8 structure, transactions within their bound.
#[test]
fn fake_nodes_cannot_fill_the_routing_table() {
    let t0 = Instant::now();
    let config = Config {
        seed: Some(13),
        query_rate: 0,
        global_query_rate: 0,
        ..Config::default()
    };
    let max_pending = config.max_pending;
    let per_ip = config.max_nodes_per_ip;
    let mut n = Node::new(config, t0);
    let own = n.id();
    let mut rng_state = 0x1234_5678u64;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    // an id sharing `prefix` bits with ours, then random
    let mut crafted = |prefix: usize| -> NodeId {
        let mut id = own.0;
        for (i, b) in id.iter_mut().enumerate() {
            for bit in 0..8 {
                let pos = i * 8 + bit;
                let mask = 0x80u8 >> bit;
                if pos == prefix || (pos > prefix && next() & 1 == 1) {
                    *b ^= mask;
                }
            }
        }
        NodeId(id)
    };
    let mut attack = |n: &mut Node, from: SocketAddr, i: u32, now: Instant| {
        // the fake node queries us, we ping it, it answers with a new id
        let q = query(crafted((i % 150) as usize), b"q", QueryKind::Ping);
        n.handle_datagram(from, &q, now);
        for (to, m, _) in drain(n) {
            if to == from && matches!(m.body, Body::Query(_)) {
                let r = Body::Response(Response {
                    id: crafted((i % 150) as usize),
                    ..Response::default()
                });
                n.handle_datagram(from, &msg(&m.tid, r), now);
            }
        }
    };
    let one: IpAddr = "127.0.0.1".parse().unwrap();
    for i in 0..5_000u32 {
        attack(&mut n, SocketAddr::new(one, 1024 + i as u16), i, t0);
    }
    let table = n.routing_table();
    println!(
        "one ip, 5,000 ports: table {} entries, replacements {}",
        table.len(),
        table.replacement_count()
    );
    assert_eq!(table.count_ip(one), per_ip);
    assert_eq!(table.len(), per_ip);
    let rss0 = rss_kib();
    for i in 0..20_000u32 {
        attack(&mut n, SocketAddr::new(host(i + 100), 6881), i, t0);
    }
    let table = n.routing_table();
    println!(
        "20,000 ips: table {} entries in {} buckets, replacements {}, rss +{} KiB",
        table.len(),
        table.bucket_count(),
        table.replacement_count(),
        rss_kib().saturating_sub(rss0)
    );
    assert!(table.len() <= 160 * K);
    assert!(table.replacement_count() <= 160 * 8);
    assert!(table.count_ip(one) <= per_ip);
    // unanswered pings time out; the transaction table never passed its bound
    n.tick(t0 + Duration::from_secs(10));
    drain(&mut n);
    assert!(n.stats().queries_sent <= 25_000 + max_pending as u64);
    assert!(rss_kib().saturating_sub(rss0) < 64 * 1024);
}

/// Announces with valid tokens: one IP announcing 50,000 (hash, port)
/// pairs keeps at most `per_ip`; 30,000 IPs together at most `total`; a
/// real peer's re-announce of a stored entry still refreshes it.
#[test]
fn fake_announces_cannot_fill_the_peer_store() {
    let t0 = Instant::now();
    let limits = PeerLimits {
        per_ip: 300,
        total: 5_000,
        ..PeerLimits::default()
    };
    let mut n = Node::new(
        Config {
            seed: Some(14),
            query_rate: 0,
            global_query_rate: 0,
            peer_limits: limits,
            ..Config::default()
        },
        t0,
    );
    let real: SocketAddr = "127.9.9.9:6881".parse().unwrap();
    let real_ih = InfoHash([0xee; 20]);
    announce(&mut n, real, real_ih, 6881, t0);
    let liar: SocketAddr = "127.0.0.1:6881".parse().unwrap();
    for i in 0..5_000u32 {
        let mut ih = [0u8; 20];
        ih[..4].copy_from_slice(&i.to_be_bytes());
        announce(&mut n, liar, InfoHash(ih), 1 + (i % 60_000) as u16, t0);
    }
    println!(
        "one ip, 5,000 announces: {} stored",
        n.peer_store().from_ip(liar.ip())
    );
    assert_eq!(n.peer_store().from_ip(liar.ip()), limits.per_ip);
    for i in 0..30_000u32 {
        let mut ih = [0u8; 20];
        ih[4..8].copy_from_slice(&i.to_be_bytes());
        announce(
            &mut n,
            SocketAddr::new(host(i), 6881),
            InfoHash(ih),
            6881,
            t0,
        );
    }
    println!(
        "30,000 ips: {} stored for {} hashes from {} ips",
        n.peer_store().len(),
        n.peer_store().torrents(),
        n.peer_store().ips()
    );
    assert!(n.peer_store().len() <= limits.total);
    // the real peer's entry is still there and answered
    let me = NodeId([1; 20]);
    n.handle_datagram(real, &query(me, b"g", get_peers(real_ih)), t0);
    let values: Vec<SocketAddr> = drain(&mut n)
        .into_iter()
        .filter_map(|(_, m, _)| match m.body {
            Body::Response(r) => Some(r.values),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(values, vec![real]);
}

/// A real node on a loopback socket, flooded with get_peers: first from
/// one address, then from 2,000 addresses in 127.0.0.0/8. The replies stay
/// within the per-IP and global budgets, memory and CPU stay bounded, and
/// a well-behaved querier is answered afterwards.
#[test]
fn query_floods_from_one_and_many_addresses_are_bounded() {
    let config = Config {
        query_rate: 200,
        global_query_rate: 1_000,
        ..Config::default()
    };
    let runner = Runner::bind("127.0.0.1:0".parse().unwrap(), config).expect("bind");
    let target = runner.local_addr();
    let rss0 = rss_kib();
    let cpu0 = cpu_time();
    let start = Instant::now();
    let ih = InfoHash([0x31; 20]);
    let q = |i: u32| query(NodeId([7; 20]), &i.to_be_bytes(), get_peers(ih));

    // one address: 20,000 queries as fast as the socket takes them
    let one = UdpSocket::bind("127.0.0.1:0").expect("bind");
    one.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let reader = one.try_clone().expect("clone");
    // a reader beside the sender, so no reply is lost to a full buffer
    let counter = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while let Ok((len, _)) = reader.recv_from(&mut buf) {
            n += u64::from(is_reply(&buf[..len]));
        }
        n
    });
    for i in 0..20_000u32 {
        let _ = one.send_to(&q(i), target);
    }
    let mut buf = [0u8; 2048];
    let replies_one = counter.join().expect("reader");
    let t_one = start.elapsed().as_secs_f64();
    // burst 400 + 200/s while the flood lasted
    let bound_one = 400.0 + 200.0 * t_one + 50.0;
    println!("one address: 20,000 queries, {replies_one} replies in {t_one:.1} s");
    assert!(replies_one >= 300, "the burst is served: {replies_one}");
    assert!(
        (replies_one as f64) <= bound_one,
        "{replies_one} > {bound_one}"
    );

    // 2,000 addresses 127.1.x.y, 10 queries each
    let many_start = Instant::now();
    let mut socks = Vec::new();
    for i in 0..2_000u32 {
        let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8);
        let Ok(s) = UdpSocket::bind((ip, 0)) else {
            continue;
        };
        s.set_nonblocking(true).unwrap();
        for j in 0..10u32 {
            let _ = s.send_to(&q(i * 10 + j), target);
        }
        socks.push(s);
    }
    assert!(socks.len() >= 1_900, "bound {} sources", socks.len());
    std::thread::sleep(Duration::from_millis(500));
    let mut replies_many = 0u64;
    for s in &socks {
        while let Ok((len, _)) = s.recv_from(&mut buf) {
            replies_many += u64::from(is_reply(&buf[..len]));
        }
    }
    let t_many = many_start.elapsed().as_secs_f64();
    let bound_many = 2_000.0 + 1_000.0 * (t_many + t_one) + 50.0;
    println!(
        "2,000 addresses: 20,000 queries, {replies_many} replies in {t_many:.1} s (global budget)"
    );
    assert!(replies_many >= 500);
    assert!(
        (replies_many as f64) <= bound_many,
        "{replies_many} > {bound_many}"
    );
    let stats = runner.dht().stats();
    println!(
        "node: {} received, {} answered, {} rate-limited",
        stats.received, stats.queries_answered, stats.rate_limited
    );
    // the socket buffer drops some of the flood before the node sees it
    assert!(stats.rate_limited + stats.queries_answered + 10 >= stats.received);
    assert!(stats.rate_limited >= stats.received / 2);
    let table = runner.dht().with_node(|n| n.routing_table().len());
    assert!(table <= 16 + 2_000, "table {table}");
    let cpu = cpu_time().saturating_sub(cpu0);
    let rss = rss_kib().saturating_sub(rss0);
    println!("flood cost: cpu {cpu:?}, rss +{rss} KiB");
    assert!(rss < 64 * 1024, "rss grew {rss} KiB");
    assert!(cpu < Duration::from_secs(20), "cpu {cpu:?}");
    drop(socks);

    // after the flood a polite querier from a fresh address is answered
    std::thread::sleep(Duration::from_millis(1_500));
    let polite = UdpSocket::bind("127.2.0.1:0").expect("bind");
    polite
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    polite
        .send_to(&query(NodeId([8; 20]), b"ok", QueryKind::Ping), target)
        .unwrap();
    let (len, _) = polite
        .recv_from(&mut buf)
        .expect("answered after the flood");
    let m = Message::decode(&buf[..len]).expect("krpc");
    assert_eq!(m.tid, b"ok");
}
