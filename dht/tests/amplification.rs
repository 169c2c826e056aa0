//! No amplification: a get_peers reply to a querier whose address is not
//! proven (it never answered one of our queries from that address) holds
//! at most 8 peers, so a spoofed source cannot turn a small query into a
//! large reply aimed at someone else; a proven querier gets up to 50.
//! Sans-IO: the addresses exist only in memory.

use std::net::SocketAddr;
use std::time::Instant;

use bittern_dht::{Body, Config, Message, Node, NodeId, Query, QueryKind, Response, Want};
use bittern_wire::InfoHash;

fn query(id: NodeId, tid: &[u8], kind: QueryKind) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        version: None,
        ip: None,
        read_only: false,
        body: Body::Query(Query { id, kind }),
    }
    .encode()
}

/// Sends `bytes` from `from`; returns the reply to it (other datagrams,
/// such as pings of the querier, are dropped).
fn ask(n: &mut Node, from: SocketAddr, bytes: &[u8]) -> (Message, usize) {
    n.handle_datagram(from, bytes, Instant::now());
    let mut reply = None;
    while let Some(t) = n.poll_transmit() {
        let m = Message::decode(&t.bytes).unwrap();
        if t.to == from && !matches!(m.body, Body::Query(_)) {
            reply = Some((m, t.bytes.len()));
        }
    }
    reply.expect("a reply")
}

fn values(m: &Message) -> usize {
    match &m.body {
        Body::Response(r) => r.values.len(),
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn get_peers_replies_to_unproven_queriers_stay_small() {
    let mut n = Node::new(
        Config {
            seed: Some(3),
            query_rate: 0,
            ..Config::default()
        },
        Instant::now(),
    );
    let ih = InfoHash([0x5c; 20]);
    let gp = |tid: &[u8], id: NodeId| {
        query(
            id,
            tid,
            QueryKind::GetPeers {
                info_hash: ih,
                want: Want::default(),
            },
        )
    };
    // 60 peers announce (each IP gets its token first)
    for i in 0..60u8 {
        let from = SocketAddr::from(([127, 0, 2, i], 6881));
        let (m, _) = ask(&mut n, from, &gp(b"t", NodeId([i; 20])));
        let Body::Response(r) = m.body else { panic!() };
        let ann = QueryKind::AnnouncePeer {
            info_hash: ih,
            port: 6881,
            token: r.token.expect("token"),
            implied_port: false,
        };
        let (m, _) = ask(&mut n, from, &query(NodeId([i; 20]), b"a", ann));
        assert!(matches!(m.body, Body::Response(_)));
    }
    let q: SocketAddr = "127.0.1.1:7000".parse().unwrap();
    let q_id = NodeId([0xee; 20]);
    let sent = gp(b"g1", q_id);
    let (m, size) = ask(&mut n, q, &sent);
    assert_eq!(values(&m), 8, "unproven querier");
    assert!(
        size <= 3 * sent.len(),
        "reply {size} bytes for a {}-byte query",
        sent.len()
    );
    // q answers a query of ours: proven
    n.add_node(q, Instant::now());
    let ping = Message::decode(&n.poll_transmit().unwrap().bytes).unwrap();
    let pong = Message {
        tid: ping.tid,
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(Response {
            id: q_id,
            ..Response::default()
        }),
    };
    n.handle_datagram(q, &pong.encode(), Instant::now());
    let (m, _) = ask(&mut n, q, &gp(b"g2", q_id));
    assert_eq!(values(&m), 50, "proven querier");
    // the same id from another address is not proven
    let (m, _) = ask(&mut n, "127.0.1.2:7000".parse().unwrap(), &gp(b"g3", q_id));
    assert_eq!(values(&m), 8);
}
