//! A deterministic in-process network for testing and benchmarking.
//!
//! [`Sim`] runs N real [`Node`]s (the same routing and lookup code as on a
//! socket) that exchange their datagrams through a seeded event queue: no
//! sockets, no threads, no clock. Every link has a fixed one-way latency of
//! 10-200 ms (RTT 20-400 ms) drawn from the seed; nodes in [`Sim::dead`]
//! never answer (everything sent to them is lost) and nodes in
//! [`Sim::late`] answer [`Sim::late_by`] later than their link latency.
//! The addresses are labels (`127.x.y.z:6881`), never bound or contacted.
//!
//! Used by `tests/sim.rs` and `examples/sim.rs` (the N = 1,000 / 10,000
//! measurements).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::id::NodeId;
use crate::lookup::LookupResult;
use crate::node::{Config, Event, LookupId, Node};

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
    /// The nodes; node `i` has address [`Sim::addr`]`(i)`.
    pub nodes: Vec<Node>,
    addrs: Vec<SocketAddr>,
    index: HashMap<SocketAddr, usize>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    items: HashMap<u64, What>,
    seq: u64,
    /// Simulated time.
    pub now: Instant,
    /// Nodes that have left: everything sent to them is lost.
    pub dead: HashSet<usize>,
    /// Nodes whose datagrams take [`Sim::late_by`] longer.
    pub late: HashSet<usize>,
    /// Extra delay of late nodes' datagrams.
    pub late_by: Duration,
    /// Datagrams sent so far (to any node, dead or alive).
    pub datagrams: u64,
    done: HashMap<(usize, LookupId), (LookupResult, Instant)>,
    /// When each lookup first heard of each peer.
    first_seen: HashMap<(usize, LookupId, SocketAddr), Instant>,
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
            late: HashSet::new(),
            late_by: Duration::from_secs(2),
            datagrams: 0,
            done: HashMap::new(),
            first_seen: HashMap::new(),
            seed,
        }
    }

    /// The address of node `i`.
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

    /// Call after driving node `i` directly (e.g. starting a lookup):
    /// moves its output into the queue and records finished lookups.
    pub fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.datagrams += 1;
            let Some(&to) = self.index.get(&t.to) else {
                continue;
            };
            if self.dead.contains(&to) {
                continue;
            }
            let mut at = self.now + self.latency(i, to);
            if self.late.contains(&i) {
                at += self.late_by;
            }
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
        while let Some(ev) = self.nodes[i].poll_event() {
            match ev {
                Event::LookupDone { id, result } => {
                    self.done.insert((i, id), (result, self.now));
                }
                Event::PeersFound { id, peers } => {
                    for p in peers {
                        self.first_seen.entry((i, id, p)).or_insert(self.now);
                    }
                }
            }
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

/// What one lookup cost and found, in simulated time.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The lookup's result (`None` if it did not finish within the limit).
    pub result: Option<LookupResult>,
    /// Time from start to finish.
    pub took: Duration,
    /// Time from start until each peer was first reported.
    pub peer_times: HashMap<SocketAddr, Duration>,
}

impl Sim {
    /// Starts a lookup on node `i` with `start` and runs until it finishes
    /// (at most `limit`).
    pub fn measure(
        &mut self,
        i: usize,
        limit: Duration,
        start: impl FnOnce(&mut Node, Instant) -> LookupId,
    ) -> Measured {
        let now = self.now;
        let id = start(&mut self.nodes[i], now);
        self.flush(i);
        let (result, took) = match self.wait(i, id, limit) {
            Some((r, took)) => (Some(r), took),
            None => (None, limit),
        };
        let mut peer_times = HashMap::new();
        self.first_seen.retain(|(n, l, p), at| {
            if *n == i && *l == id {
                peer_times.insert(*p, at.saturating_duration_since(now));
                false
            } else {
                true
            }
        });
        Measured {
            result,
            took,
            peer_times,
        }
    }
}
