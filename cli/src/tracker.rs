//! `bittern tracker`: the embedded HTTP tracker from `bittern-tracker`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::anyhow;
use bittern_tracker::server::{ServerConfig, TrackerServer};

use crate::args::TrackerArgs;
use crate::exit::{coded, Code};
use crate::progress;
use crate::signals::Stop;

/// Starts the embedded tracker on `addr`.
///
/// # Errors
/// [`Code::Network`] when the address cannot be bound.
pub fn start(addr: SocketAddr, config: ServerConfig) -> anyhow::Result<TrackerServer> {
    TrackerServer::bind(addr, config).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (choose another port with -p)"
        } else {
            ""
        };
        coded(Code::Network, anyhow!("cannot listen on {addr}: {e}{hint}"))
    })
}

/// Runs `bittern tracker` until SIGINT/SIGTERM.
///
/// # Errors
/// [`Code::Network`] when the port is taken.
pub fn run(args: &TrackerArgs, stop: &Stop) -> anyhow::Result<Code> {
    let config = ServerConfig {
        interval: args.interval,
        min_interval: (args.interval / 4).max(Duration::from_secs(1)),
        peer_ttl: args.interval * 3,
        ..ServerConfig::default()
    };
    let server = start(SocketAddr::new(args.bind, args.port), config)?;
    println!("tracker listening on {}", server.local_addr());
    println!("announce URL: {}", server.announce_url());
    while !stop.requested() {
        std::thread::sleep(Duration::from_millis(200));
    }
    progress::note("stopping tracker");
    server.shutdown();
    Ok(Code::Ok)
}
