//! Simulation tests: hundreds of nodes in one process (see `bittern_dht::sim`).

use std::net::SocketAddr;
use std::time::Duration;

use bittern_dht::sim::Sim;
use bittern_dht::{Config, NodeId};
use bittern_wire::InfoHash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sim_config() -> Config {
    Config {
        slow_after: Duration::from_millis(500),
        query_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// 500 nodes join through one node; every routing table fills; a node
/// announces and 20 others find it; find_node lookups converge on the true
/// 8 closest nodes.
#[test]
fn sim_500_nodes_announce_then_lookups_find_the_peer() {
    let n = 500;
    let mut sim = Sim::new(n, 42, &sim_config());
    sim.bootstrap_all(Duration::from_secs(10));
    let sizes: Vec<usize> = sim.nodes.iter().map(|x| x.routing_table().len()).collect();
    let min = sizes.iter().min().copied().unwrap_or(0);
    let avg = sizes.iter().sum::<usize>() / n;
    eprintln!(
        "sim n={n}: routing tables min {min}, mean {avg}; {} datagrams to bootstrap",
        sim.datagrams
    );
    assert!(min >= 8, "every node knows at least k others (min {min})");

    let ih = InfoHash([0x5a; 20]);
    let announcer = 17;
    let now = sim.now;
    let id = sim.nodes[announcer].announce(ih, Some(7777), now);
    sim.flush(announcer);
    let (res, took) = sim
        .wait(announcer, id, Duration::from_secs(30))
        .expect("announce finished");
    eprintln!(
        "announce: stored at {} nodes in {took:?}, {} queries",
        res.announced, res.queries
    );
    assert!(
        res.announced >= 6,
        "announce reached {} nodes",
        res.announced
    );

    let want = SocketAddr::new(sim.addr(announcer).ip(), 7777);
    let mut times = Vec::new();
    let mut msgs = Vec::new();
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..20 {
        let i = rng.random_range(0..n);
        let m = sim.measure(i, Duration::from_secs(30), |node, now| {
            node.get_peers(ih, now)
        });
        let res = m.result.expect("lookup finished");
        assert!(res.peers.contains(&want), "node {i} found {:?}", res.peers);
        // PeersFound reported the announcer before (or when) the lookup ended
        let first = m.peer_times.get(&want).copied();
        assert!(
            first.is_some_and(|t| t <= m.took),
            "{first:?} vs {:?}",
            m.took
        );
        times.push(m.took);
        msgs.push(res.queries);
    }
    msgs.sort_unstable();
    eprintln!(
        "get_peers x20: median {:?}, max {:?}, median queries {}",
        median(times.clone()),
        times.iter().max(),
        msgs[10]
    );

    // find_node converges on the k closest nodes that exist
    let mut exact = 0;
    for t in 0..10u8 {
        let target = NodeId([t.wrapping_mul(37); 20]);
        let i = rng.random_range(0..n);
        let now = sim.now;
        let id = sim.nodes[i].find_node(target, now);
        sim.flush(i);
        let (res, _) = sim
            .wait(i, id, Duration::from_secs(30))
            .expect("lookup finished");
        let got: Vec<SocketAddr> = res.closest.iter().map(|c| c.addr).collect();
        let want = sim.true_closest(&target, 8);
        let overlap = got.iter().filter(|a| want.contains(a)).count();
        assert!(
            overlap >= 7,
            "lookup {t} found {overlap}/8 of the true closest"
        );
        exact += usize::from(overlap == 8);
    }
    eprintln!("find_node x10: {exact}/10 found exactly the true 8 closest");
    assert!(exact >= 8);
}

/// 500 nodes, then 20% leave without a word: lookups route around them
/// (slow queries do not hold the lookup), still find the announced peer,
/// and stay fast.
#[test]
fn sim_500_nodes_with_20_percent_gone() {
    let n = 500;
    let mut sim = Sim::new(n, 7, &sim_config());
    sim.bootstrap_all(Duration::from_secs(10));
    let mut rng = StdRng::seed_from_u64(11);
    while sim.dead.len() < n / 5 {
        let i = rng.random_range(1..n);
        sim.dead.insert(i);
    }
    let live: Vec<usize> = (0..n).filter(|i| !sim.dead.contains(i)).collect();
    let ih = InfoHash([0xc3; 20]);
    let announcer = live[3];
    let now = sim.now;
    let id = sim.nodes[announcer].announce(ih, Some(6000), now);
    sim.flush(announcer);
    let (res, took) = sim
        .wait(announcer, id, Duration::from_secs(60))
        .expect("announce finished");
    eprintln!(
        "announce with 20% gone: stored at {} in {took:?}",
        res.announced
    );
    assert!(res.announced >= 4);
    let want = SocketAddr::new(sim.addr(announcer).ip(), 6000);
    let mut times = Vec::new();
    let mut found = 0;
    for _ in 0..30 {
        let i = live[rng.random_range(0..live.len())];
        let now = sim.now;
        let id = sim.nodes[i].get_peers(ih, now);
        sim.flush(i);
        let (res, took) = sim
            .wait(i, id, Duration::from_secs(60))
            .expect("lookup finished");
        found += usize::from(res.peers.contains(&want));
        times.push(took);
    }
    let med = median(times.clone());
    eprintln!(
        "get_peers x30 with 20% gone: found {found}/30, median {med:?}, max {:?}",
        times.iter().max()
    );
    assert_eq!(found, 30);
    // far below "wait for every timeout": slow_after is 500 ms, the hard
    // timeout 2 s, and a lookup meets several dead nodes
    assert!(med < Duration::from_millis(2500), "median {med:?}");
}
