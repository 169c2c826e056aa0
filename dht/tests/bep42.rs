//! BEP 42 on a sans-IO [`Node`]: our id follows our external address once
//! enough replies name it, node ids are checked against their IP when
//! enforcement is on (local-network addresses exempt), and our replies
//! carry the querier's address in `ip`. No socket is opened: the
//! "public" addresses below only ever exist in memory (TEST-NET-3 voters,
//! BEP 42's example address as ours).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bittern_dht::bep42::{is_secure, secure_id};
use bittern_dht::{Body, Config, Message, Node, NodeId, Query, QueryKind, Response};
use rand::SeedableRng;

fn node(enforce: bool) -> Node {
    Node::new(
        Config {
            seed: Some(42),
            enforce_node_id: enforce,
            ..Config::default()
        },
        Instant::now(),
    )
}

/// Pings `addr` from `n` and answers as `addr` with `id`, naming `ours` as
/// the address the reply was sent to.
fn answer_ping(n: &mut Node, addr: SocketAddr, id: NodeId, ours: Option<SocketAddr>) {
    n.add_node(addr, Instant::now());
    let t = n.poll_transmit().expect("a ping");
    assert_eq!(t.to, addr);
    let tid = Message::decode(&t.bytes).unwrap().tid;
    let reply = Message {
        tid,
        version: None,
        ip: ours,
        read_only: false,
        body: Body::Response(Response {
            id,
            ..Response::default()
        }),
    };
    n.handle_datagram(addr, &reply.encode(), Instant::now());
}

fn in_table(n: &Node, addr: SocketAddr) -> bool {
    n.routing_table().entries().any(|e| e.info.addr == addr)
}

#[test]
fn our_id_becomes_secure_once_three_ips_agree_on_our_address() {
    let mut n = node(false);
    let ours: SocketAddr = "124.31.75.21:6881".parse().unwrap();
    let first = n.id();
    assert!(
        !is_secure(&first, ours.ip()),
        "seeded id happens to be secure"
    );
    // three replies from one IP (different ports) are one vote
    for port in [1000, 1001, 1002] {
        let voter = SocketAddr::from(([203, 0, 113, 1], port));
        answer_ping(&mut n, voter, NodeId([port as u8; 20]), Some(ours));
    }
    assert_eq!(n.external_ip(), None);
    // a reply we never asked for does not vote
    let spoof = Message {
        tid: vec![0x77, 0x77],
        version: None,
        ip: Some(ours),
        read_only: false,
        body: Body::Response(Response {
            id: NodeId([9; 20]),
            ..Response::default()
        }),
    };
    n.handle_datagram(
        "203.0.113.50:1".parse().unwrap(),
        &spoof.encode(),
        Instant::now(),
    );
    n.handle_datagram(
        "203.0.113.51:1".parse().unwrap(),
        &spoof.encode(),
        Instant::now(),
    );
    assert_eq!(n.external_ip(), None);
    assert_eq!(n.id(), first);
    // two more IPs: three agree
    answer_ping(
        &mut n,
        "203.0.113.2:1".parse().unwrap(),
        NodeId([0x42; 20]),
        Some(ours),
    );
    assert_eq!(n.id(), first);
    answer_ping(
        &mut n,
        "203.0.113.3:1".parse().unwrap(),
        NodeId([0x43; 20]),
        Some(ours),
    );
    assert_eq!(n.external_ip(), Some(ours.ip()));
    assert_ne!(n.id(), first);
    assert!(
        is_secure(&n.id(), ours.ip()),
        "{} not secure for {ours}",
        n.id()
    );
    assert_eq!(n.routing_table().own_id(), n.id());
    assert_eq!(n.stats().id_changes, 1);
    // all five contacts survived the new id
    assert_eq!(
        n.routing_table().len(),
        5,
        "{:?}",
        n.routing_table().entries().collect::<Vec<_>>()
    );
    // our queries now carry the new id
    n.add_node("203.0.113.9:1".parse().unwrap(), Instant::now());
    let q = Message::decode(&n.poll_transmit().unwrap().bytes).unwrap();
    let Body::Query(Query { id, .. }) = q.body else {
        panic!("not a query")
    };
    assert_eq!(id, n.id());
}

#[test]
fn a_local_external_address_keeps_our_id() {
    let mut n = node(false);
    let first = n.id();
    let ours: SocketAddr = "192.168.1.5:6881".parse().unwrap();
    for i in 1..=3u8 {
        answer_ping(
            &mut n,
            SocketAddr::from(([203, 0, 113, i], 1)),
            NodeId([i; 20]),
            Some(ours),
        );
    }
    assert_eq!(n.external_ip(), Some(ours.ip()));
    assert_eq!(n.id(), first, "BEP 42 exempts local addresses");
    assert_eq!(n.stats().id_changes, 0);
}

#[test]
fn enforced_ids_must_match_their_ip_except_on_local_networks() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut n = node(true);
    let public: SocketAddr = "203.0.113.7:6881".parse().unwrap();
    answer_ping(&mut n, public, NodeId([0x31; 20]), None);
    assert!(!in_table(&n, public), "an insecure id entered the table");
    assert_eq!(n.stats().insecure_ids, 1);
    let good: SocketAddr = "203.0.113.8:6881".parse().unwrap();
    answer_ping(&mut n, good, secure_id(good.ip(), &mut rng), None);
    assert!(in_table(&n, good));
    let lo: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    answer_ping(&mut n, lo, NodeId([0x32; 20]), None);
    assert!(in_table(&n, lo), "loopback is exempt");
    let v6lo: SocketAddr = "[::1]:7000".parse().unwrap();
    answer_ping(&mut n, v6lo, NodeId([0x33; 20]), None);
    assert!(in_table(&n, v6lo), "::1 is exempt");
    // a querier with an insecure id is answered but never pinged
    let q = Message {
        tid: b"q1".to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Query(Query {
            id: NodeId([0x34; 20]),
            kind: QueryKind::Ping,
        }),
    };
    let querier: SocketAddr = "203.0.113.20:1".parse().unwrap();
    n.handle_datagram(querier, &q.encode(), Instant::now());
    let sent: Vec<_> = std::iter::from_fn(|| n.poll_transmit()).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(matches!(
        Message::decode(&sent[0].bytes).unwrap().body,
        Body::Response(_)
    ));

    // not enforced: the same insecure id enters
    let mut lax = node(false);
    answer_ping(&mut lax, public, NodeId([0x31; 20]), None);
    assert!(in_table(&lax, public));
}

#[test]
fn replies_name_the_queriers_address_in_ip() {
    let mut n = node(false);
    for from in ["127.0.0.1:4000", "[::1]:4001"] {
        let from: SocketAddr = from.parse().unwrap();
        let q = Message {
            tid: b"p".to_vec(),
            version: None,
            ip: None,
            read_only: true,
            body: Body::Query(Query {
                id: NodeId([5; 20]),
                kind: QueryKind::Ping,
            }),
        };
        n.handle_datagram(from, &q.encode(), Instant::now());
        let t = n.poll_transmit().expect("a reply");
        let m = Message::decode(&t.bytes).unwrap();
        assert_eq!(m.ip, Some(from));
        let ip: IpAddr = from.ip();
        assert!(ip.is_loopback());
    }
}
