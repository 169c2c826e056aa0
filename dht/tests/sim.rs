//! In-process simulation: hundreds of real `Node`s exchanging datagrams
//! through a seeded event queue with per-link latency. No sockets: the
//! addresses below are labels, never bound or contacted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_dht::{Config, Event, LookupId, LookupResult, Node, NodeId};
use bittern_wire::InfoHash;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

enum What {
    Deliver {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Tick(usize),
}

/// A seeded discrete-event network of DHT nodes.
pub struct Sim {
    pub nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
    index: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, What>,
    seq: u64,
    pub now: Instant,
    /// Nodes that have left: everything sent to them is lost.
    pub dead: HashSet<usize>,
    pub datagrams: u64,
    done: HashMap<(usize, LookupId), (LookupResult, Instant)>,
    seed: u64,
}

fn addr_of(i: usize) -> SocketAddr {
    // distinct IPs (tokens are per IP); labels only, never bound
    SocketAddr::from((
        [
            127,
            1 + (i / 60_000) as u8,
            ((i / 250) % 240) as u8,
            (i % 250 + 1) as u8,
        ],
        6881,
    ))
}

impl Sim {
    /// `n` nodes with seeded ids and `config` (its seed is replaced).
    pub fn new(n: usize, seed: u64, config: &Config) -> Sim {
        let start = Instant::now();
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let c = Config {
                    seed: Some(seed.wrapping_mul(1_000_003).wrapping_add(i as u64)),
                    ..config.clone()
                };
                Node::new(c, start)
            })
            .collect();
        let addrs: Vec<SocketAddr> = (0..n).map(addr_of).collect();
        let index = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        Sim {
            nodes,
            addrs,
            index,
            queue: BinaryHeap::new(),
            items: HashMap::new(),
            seq: 0,
            now: start,
            dead: HashSet::new(),
            datagrams: 0,
            done: HashMap::new(),
            seed,
        }
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// One-way latency of a link: 10-200 ms (RTT 20-400 ms), fixed per pair.
    fn latency(&self, a: usize, b: usize) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        // splitmix64 of the pair: cheap and fixed per link
        let mut z =
            (self.seed ^ ((lo as u64) << 32 | hi as u64)).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Duration::from_millis(10 + z % 191)
    }

    fn push(&mut self, at: Instant, what: What) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.items.insert(self.seq, what);
    }

    /// Moves node `i`'s output into the queue and records finished lookups.
    pub fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.datagrams += 1;
            let Some(&to) = self.index.get(&t.to) else {
                continue;
            };
            if self.dead.contains(&to) {
                continue;
            }
            let at = self.now + self.latency(i, to);
            let from = self.addrs[i];
            self.push(
                at,
                What::Deliver {
                    to,
                    from,
                    bytes: t.bytes,
                },
            );
        }
        while let Some(Event::LookupDone { id, result }) = self.nodes[i].poll_event() {
            self.done.insert((i, id), (result, self.now));
        }
        let due = self.nodes[i].next_timeout();
        self.push(due, What::Tick(i));
    }

    /// Runs events until `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            let Some(what) = self.items.remove(&seq) else {
                continue;
            };
            self.now = self.now.max(at);
            match what {
                What::Deliver { to, from, bytes } => {
                    if self.dead.contains(&to) {
                        continue;
                    }
                    self.nodes[to].handle_datagram(from, &bytes, self.now);
                    self.flush(to);
                }
                What::Tick(i) => {
                    if self.nodes[i].next_timeout() <= self.now {
                        self.nodes[i].tick(self.now);
                        self.flush(i);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs until node `i`'s lookup `id` is done (or `limit` passes).
    pub fn wait(
        &mut self,
        i: usize,
        id: LookupId,
        limit: Duration,
    ) -> Option<(LookupResult, Duration)> {
        let started = self.now;
        let end = self.now + limit;
        while self.now < end {
            if let Some((r, at)) = self.done.remove(&(i, id)) {
                return Some((r, at.saturating_duration_since(started)));
            }
            let step = self.now + Duration::from_millis(50);
            self.run_until(step);
        }
        self.done
            .remove(&(i, id))
            .map(|(r, at)| (r, at.saturating_duration_since(started)))
    }

    /// Every node joins through node 0, 20 ms apart; then `settle` passes.
    pub fn bootstrap_all(&mut self, settle: Duration) {
        let seed = [self.addrs[0]];
        for i in 1..self.nodes.len() {
            let now = self.now;
            self.nodes[i].bootstrap(&seed, now);
            self.flush(i);
            let step = self.now + Duration::from_millis(20);
            self.run_until(step);
        }
        let end = self.now + settle;
        self.run_until(end);
    }

    /// The `k` live node ids closest to `target`, by global knowledge.
    pub fn true_closest(&self, target: &NodeId, k: usize) -> Vec<SocketAddr> {
        let mut all: Vec<usize> = (0..self.nodes.len())
            .filter(|i| !self.dead.contains(i))
            .collect();
        all.sort_by_key(|&i| target.distance(&self.nodes[i].id()));
        all.into_iter().take(k).map(|i| self.addrs[i]).collect()
    }
}

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
        let now = sim.now;
        let id = sim.nodes[i].get_peers(ih, now);
        sim.flush(i);
        let (res, took) = sim
            .wait(i, id, Duration::from_secs(30))
            .expect("lookup finished");
        assert!(res.peers.contains(&want), "node {i} found {:?}", res.peers);
        times.push(took);
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
