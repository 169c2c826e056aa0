//! The DHT in the CLI: `--dht`/`--no-dht`/`--dht-bootstrap` of `download`
//! and `seed`, the node count in the status output, and
//! `bittern dht get-peers`.

use std::collections::HashSet;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use bittern_dht::{Config, Runner, PUBLIC_ROUTERS};
use bittern_engine::DhtSettings;
use bittern_wire::{InfoHash, Magnet};

use crate::args::{DhtArgs, DhtCommand, DhtCommandArgs, GetPeersArgs};
use crate::exit::{coded, Code};
use crate::signals::Stop;

/// The file under the resume directory (`<DIR>/.bittern`, where the
/// torrents' resume files live) that keeps the node's id and contacts.
pub const STATE_FILE: &str = "dht.dat";

/// The bootstrap nodes to use: the ones given, else the public routers
/// unless we are bound to loopback addresses only (which cannot reach
/// them, so they are not even resolved).
fn bootstrap_nodes(given: &[String], loopback: bool) -> Vec<String> {
    if !given.is_empty() {
        return given.to_vec();
    }
    if loopback {
        return Vec::new();
    }
    PUBLIC_ROUTERS.iter().map(|s| (*s).to_string()).collect()
}

/// The session's DHT settings for these options (`None`: `--no-dht`).
pub fn settings(args: &DhtArgs, loopback: bool, dir: &Path) -> Option<DhtSettings> {
    if args.no_dht && !args.dht {
        return None;
    }
    Some(DhtSettings {
        bootstrap: bootstrap_nodes(&args.dht_bootstrap, loopback),
        state_file: Some(dir.join(".bittern").join(STATE_FILE)),
        ..DhtSettings::default()
    })
}

/// Prints the DHT's node count when it changes (at most every 5 s).
#[derive(Default)]
pub struct NodeCount {
    shown: Option<usize>,
    at: Option<Instant>,
}

impl NodeCount {
    /// Shows `nodes` if it changed and the last line is old enough.
    pub fn show(&mut self, nodes: Option<usize>) {
        let Some(n) = nodes else { return };
        if self.shown == Some(n)
            || self
                .at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.shown = Some(n);
        self.at = Some(Instant::now());
        crate::progress::note(&format!("dht: {n} nodes"));
    }
}

/// Runs `bittern dht ...`.
///
/// # Errors
/// Bad input ([`Code::Usage`]), a socket that cannot be bound
/// ([`Code::Network`]), no node answering ([`Code::Network`]).
pub fn run(args: &DhtCommandArgs, stop: &Stop) -> anyhow::Result<Code> {
    match &args.command {
        DhtCommand::GetPeers(a) => get_peers(a, stop),
    }
}

fn parse_info_hash(s: &str) -> anyhow::Result<InfoHash> {
    if s.starts_with("magnet:") {
        let m = Magnet::parse(s).map_err(|e| coded(Code::Usage, anyhow!("{s}: {e}")))?;
        return Ok(m.swarm_hash());
    }
    InfoHash::from_hex(s).map_err(|_| {
        coded(
            Code::Usage,
            anyhow!("invalid info hash {s:?} (want 40 hex digits or a magnet link)"),
        )
    })
}

fn get_peers(args: &GetPeersArgs, stop: &Stop) -> anyhow::Result<Code> {
    let info_hash = parse_info_hash(&args.info_hash)?;
    let hosts = bootstrap_nodes(&args.bootstrap, args.bind.is_loopback());
    if hosts.is_empty() {
        return Err(coded(
            Code::Usage,
            anyhow!("a node bound to a loopback address needs --bootstrap HOST:PORT"),
        ));
    }
    let mut nodes = Vec::new();
    for h in &hosts {
        match h.to_socket_addrs() {
            Ok(a) => nodes.extend(a),
            Err(e) => crate::progress::note(&format!("dht: cannot resolve {h}: {e}")),
        }
    }
    let local = SocketAddr::new(args.bind, args.port);
    let runner = Runner::bind(local, Config::default())
        .map_err(|e| coded(Code::Network, anyhow!("cannot bind udp {local}: {e}")))?;
    let dht = runner.dht();
    let deadline = Instant::now() + args.timeout;
    let joined = dht.start_bootstrap(&nodes);
    loop {
        if stop.requested() {
            return Ok(Code::Interrupted);
        }
        match joined.recv_timeout(Duration::from_millis(100)) {
            Ok(_) => break,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => break,
        }
    }
    let count = dht.node_count();
    crate::progress::note(&format!("dht: joined, {count} nodes"));
    if count == 0 {
        return Err(coded(Code::Network, anyhow!("no dht node answered")));
    }
    let peers = dht.get_peers_stream(info_hash);
    let mut seen = HashSet::new();
    let mut out = std::io::stdout().lock();
    loop {
        if stop.requested() {
            return Ok(Code::Interrupted);
        }
        match peers.recv_timeout(Duration::from_millis(100)) {
            Ok(p) => {
                if seen.insert(p) && writeln!(out, "{p}").and_then(|()| out.flush()).is_err() {
                    // stdout closed (| head): done
                    return Ok(Code::Ok);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => break,
        }
    }
    crate::progress::note(&format!("dht: {} peers", seen.len()));
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_nodes_given_else_public_routers_unless_loopback() {
        let given = vec!["127.0.0.1:7000".to_string()];
        assert_eq!(bootstrap_nodes(&given, true), given);
        assert_eq!(bootstrap_nodes(&given, false), given);
        assert!(
            bootstrap_nodes(&[], true).is_empty(),
            "loopback: no routers"
        );
        let public = bootstrap_nodes(&[], false);
        assert_eq!(public.len(), PUBLIC_ROUTERS.len());
        assert!(public.iter().any(|h| h == "router.bittorrent.com:6881"));
    }
}
