//! A standalone DHT node on loopback, for poking at with other tools
//! (e.g. `dht_lt.py --probe`).
//!
//! ```text
//! cargo run -p bittern-dht --example node -- --bind 127.0.0.1:7881 \
//!     [--bootstrap 127.0.0.1:P ...] [--seconds 60]
//! ```
//!
//! Refuses non-loopback addresses. Prints the routing table size and the
//! counters every 5 seconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_dht::{Config, Runner};

fn loopback(s: &str) -> SocketAddr {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => a,
        _ => {
            eprintln!("not a loopback address: {s}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut bind = loopback("127.0.0.1:0");
    let mut boot = Vec::new();
    let mut seconds = 60u64;
    let mut i = 1;
    while i + 1 < args.len() {
        match args[i].as_str() {
            "--bind" => bind = loopback(&args[i + 1]),
            "--bootstrap" => boot.push(loopback(&args[i + 1])),
            "--seconds" => seconds = args[i + 1].parse().unwrap_or(60),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    let runner = match Runner::bind(bind, Config::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bind {bind}: {e}");
            std::process::exit(1);
        }
    };
    let dht = runner.dht();
    println!("listening on {} id {}", runner.local_addr(), dht.id());
    if !boot.is_empty() {
        match dht.bootstrap(&boot) {
            Ok(n) => println!("bootstrapped: {n} nodes"),
            Err(e) => println!("bootstrap failed: {e}"),
        }
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_secs(5));
        let stored = dht.with_node(|n| n.peer_store().len());
        println!(
            "table {} nodes, {stored} peers stored, {:?}",
            dht.node_count(),
            dht.stats()
        );
    }
}
