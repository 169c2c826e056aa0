//! BEP 32 `want` on a dual-stack host: an IPv4 node handed the IPv6
//! node's contacts ([`Node::set_other_family`]) answers a `want` naming
//! `n6` with them in `nodes6`, and a query without `want` with its own
//! family only. Sans-IO.

use std::net::SocketAddr;
use std::time::Instant;

use bittern_dht::{
    Body, Config, Message, Node, NodeId, NodeInfo, Query, QueryKind, Response, Want,
};

fn find_node(n: &mut Node, from: SocketAddr, want: Want) -> Response {
    let q = Message {
        tid: b"f".to_vec(),
        version: None,
        ip: None,
        read_only: true,
        body: Body::Query(Query {
            id: NodeId([0x10; 20]),
            kind: QueryKind::FindNode {
                target: NodeId([0x20; 20]),
                want,
            },
        }),
    };
    n.handle_datagram(from, &q.encode(), Instant::now());
    let t = n.poll_transmit().expect("a reply");
    match Message::decode(&t.bytes).unwrap().body {
        Body::Response(r) => r,
        other => panic!("not a response: {other:?}"),
    }
}

#[test]
fn want_n6_is_answered_from_the_other_familys_node() {
    let mut n = Node::new(
        Config {
            seed: Some(32),
            ..Config::default()
        },
        Instant::now(),
    );
    // one IPv4 contact in our own table
    let v4: SocketAddr = "127.0.0.5:7000".parse().unwrap();
    n.add_node(v4, Instant::now());
    let ping = Message::decode(&n.poll_transmit().unwrap().bytes).unwrap();
    let pong = Message {
        tid: ping.tid,
        version: None,
        ip: None,
        read_only: false,
        body: Body::Response(Response {
            id: NodeId([0x21; 20]),
            ..Response::default()
        }),
    };
    n.handle_datagram(v4, &pong.encode(), Instant::now());
    let v6 = NodeInfo {
        id: NodeId([0x22; 20]),
        addr: "[::1]:7001".parse().unwrap(),
    };
    let from: SocketAddr = "127.0.0.9:1".parse().unwrap();
    // before the sibling's contacts: nothing of IPv6 to give
    let r = find_node(&mut n, from, Want { v4: true, v6: true });
    assert!(r.nodes6.is_empty());
    n.set_other_family(&[v6]);
    let r = find_node(&mut n, from, Want { v4: true, v6: true });
    assert_eq!(r.nodes.iter().map(|x| x.addr).collect::<Vec<_>>(), vec![v4]);
    assert_eq!(r.nodes6, vec![v6]);
    let r = find_node(
        &mut n,
        from,
        Want {
            v4: false,
            v6: true,
        },
    );
    assert!(r.nodes.is_empty());
    assert_eq!(r.nodes6, vec![v6]);
    // no want: the querier's family only
    let r = find_node(&mut n, from, Want::default());
    assert_eq!(r.nodes.len(), 1);
    assert!(r.nodes6.is_empty());
}
