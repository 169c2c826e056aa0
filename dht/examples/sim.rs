//! Lookup performance in a simulated DHT of N nodes (no sockets).
//!
//! ```text
//! cargo run --release -p bittern-dht --example sim -- \
//!     [--nodes 1000] [--dead 20] [--late 0] [--late-ms 1000] [--lookups 200] [--seed 1] \
//!     [--alpha 3] [--slow-after-ms 500] [--timeout-ms 2000]
//! ```
//!
//! Every node joins through node 0; then `--dead` percent of the nodes stop
//! answering (they stay in everyone's routing table, as departed nodes do)
//! and `--late` percent answer `--late-ms` late (each datagram they send
//! is delayed by that much on top of the link latency). 20 live nodes announce one info
//! hash each; `--lookups` get_peers lookups from random live nodes look for
//! a random one of them. Prints success rate, median and 95th-percentile
//! lookup time (simulated; until the lookup converged on the k closest), the
//! time until the announcer was first reported, and queries per lookup.

use std::time::{Duration, Instant};

use bittern_dht::sim::Sim;
use bittern_dht::Config;
use bittern_wire::InfoHash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--nodes", 1000) as usize;
    let dead = arg(&args, "--dead", 20) as usize;
    let late = arg(&args, "--late", 0) as usize;
    let lookups = arg(&args, "--lookups", 200) as usize;
    let seed = arg(&args, "--seed", 1);
    let config = Config {
        alpha: arg(&args, "--alpha", 3) as usize,
        slow_after: Duration::from_millis(arg(&args, "--slow-after-ms", 500)),
        query_timeout: Duration::from_millis(arg(&args, "--timeout-ms", 2000)),
        ..Config::default()
    };
    let wall = Instant::now();
    let mut sim = Sim::new(n, seed, &config);
    sim.late_by = Duration::from_millis(arg(&args, "--late-ms", 1000));
    sim.bootstrap_all(Duration::from_secs(10));
    let sizes: Vec<usize> = sim.nodes.iter().map(|x| x.routing_table().len()).collect();
    let boot_msgs = sim.datagrams;
    println!(
        "n={n} dead={dead}% late={late}% (+{:?}) alpha={} slow_after={:?} timeout={:?} seed={seed}",
        sim.late_by, config.alpha, config.slow_after, config.query_timeout
    );
    println!(
        "bootstrap: tables min {} mean {} max {}; {} datagrams ({:.0}/node); {:.1} s wall",
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().sum::<usize>() / n.max(1),
        sizes.iter().max().unwrap_or(&0),
        boot_msgs,
        boot_msgs as f64 / n as f64,
        wall.elapsed().as_secs_f64()
    );
    let mut rng = StdRng::seed_from_u64(seed ^ 0xd1);
    while sim.dead.len() < n * dead / 100 {
        sim.dead.insert(rng.random_range(1..n));
    }
    while sim.late.len() < n * late / 100 {
        let i = rng.random_range(1..n);
        if !sim.dead.contains(&i) {
            sim.late.insert(i);
        }
    }
    let live: Vec<usize> = (0..n)
        .filter(|i| !sim.dead.contains(i) && !sim.late.contains(i))
        .collect();
    let mut torrents = Vec::new();
    for j in 0..20u16 {
        let who = live[rng.random_range(0..live.len())];
        let mut ih = [0u8; 20];
        rng.fill(&mut ih[..]);
        let ih = InfoHash(ih);
        let m = sim.measure(who, Duration::from_secs(60), |node, now| {
            node.announce(ih, Some(1000 + j), now)
        });
        let stored = m.result.map_or(0, |r| r.announced);
        torrents.push((
            ih,
            std::net::SocketAddr::new(sim.addr(who).ip(), 1000 + j),
            stored,
        ));
    }
    let stored: Vec<usize> = torrents.iter().map(|t| t.2).collect();
    println!("announces: stored at {:?} nodes", stored);
    let mut times = Vec::new();
    let mut first = Vec::new();
    let mut queries = Vec::new();
    let mut ok = 0;
    for _ in 0..lookups {
        let who = live[rng.random_range(0..live.len())];
        let (ih, want, _) = torrents[rng.random_range(0..torrents.len())];
        let m = sim.measure(who, Duration::from_secs(60), |node, now| {
            node.get_peers(ih, now)
        });
        if let Some(r) = &m.result {
            if r.peers.contains(&want) {
                ok += 1;
            }
            queries.push(r.queries);
        }
        if let Some(t) = m.peer_times.get(&want) {
            first.push(*t);
        }
        times.push(m.took);
    }
    times.sort();
    first.sort();
    queries.sort_unstable();
    let mean_q = queries.iter().sum::<usize>() as f64 / queries.len().max(1) as f64;
    println!(
        "get_peers x{lookups}: success {:.1}% ({ok}), median {:?}, p95 {:?}, max {:?}; queries/lookup mean {:.1} median {} p95 {}",
        100.0 * ok as f64 / lookups.max(1) as f64,
        pct(&times, 50),
        pct(&times, 95),
        times.last().copied().unwrap_or_default(),
        mean_q,
        queries.get(queries.len() / 2).copied().unwrap_or(0),
        queries.get((queries.len() * 95 / 100).min(queries.len().saturating_sub(1))).copied().unwrap_or(0),
    );
    println!(
        "  time to find the peer (first reply with it): median {:?}, p95 {:?}",
        pct(&first, 50),
        pct(&first, 95)
    );
    println!("wall {:.1} s", wall.elapsed().as_secs_f64());
}
