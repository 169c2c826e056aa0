//! `bittern daemon`: runs [`bittern_daemon::Daemon`] in the foreground
//! until SIGINT/SIGTERM or an RPC `session-close`, then stops every
//! torrent gracefully and saves the config dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use bittern_daemon::{Access, Daemon, DaemonConfig, Error, Limits};
use bittern_engine::SessionConfig;

use crate::args::{DaemonArgs, DaemonNetworkArgs};
use crate::exit::{coded, Code};
use crate::progress;
use crate::signals::Stop;

/// `$XDG_CONFIG_HOME/bittern/daemon`, else `~/.config/bittern/daemon`.
fn default_config_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("bittern").join("daemon")
}

/// The settings the network options change, as `session-set` arguments.
fn overrides(n: &DaemonNetworkArgs) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for (key, on, off) in [
        ("dht-enabled", n.dht, n.no_dht),
        ("utp-enabled", n.utp, n.no_utp),
        ("pex-enabled", n.pex, n.no_pex),
        ("lpd-enabled", n.lpd, n.no_lpd),
    ] {
        // clap's overrides_with leaves only the last of a pair set.
        if on || off {
            m.insert(key.into(), serde_json::Value::Bool(on));
        }
    }
    if !n.dht_bootstrap.is_empty() {
        m.insert("dht-bootstrap".into(), serde_json::json!(n.dht_bootstrap));
    }
    if let Some(e) = &n.encryption {
        m.insert("encryption".into(), serde_json::json!(e));
    }
    m
}

/// Runs `bittern daemon`.
///
/// # Errors
/// A busy or refused address ([`Code::Network`], [`Code::Usage`]), an
/// unusable config dir ([`Code::Filesystem`]).
pub fn run(args: &DaemonArgs, stop: &Stop) -> anyhow::Result<Code> {
    let credentials = match (&args.rpc_username, &args.rpc_password) {
        (Some(u), Some(p)) => Some((u.clone(), p.clone())),
        (None, None) => None,
        _ => {
            return Err(coded(
                Code::Usage,
                anyhow!("--rpc-username and --rpc-password go together"),
            ))
        }
    };
    let whitelist = args
        .rpc_whitelist
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let config = DaemonConfig {
        config_dir: args.config_dir.clone().unwrap_or_else(default_config_dir),
        rpc_addr: SocketAddr::new(args.rpc_bind, args.rpc_port),
        access: Access {
            credentials,
            whitelist,
            host_whitelist: args.rpc_host_whitelist.clone(),
        },
        peer_addr: args.port.map(|p| SocketAddr::new(args.peer_bind, p)),
        peer_bind: Some(args.peer_bind),
        engine: SessionConfig {
            tcp: !args.network.no_tcp,
            ..SessionConfig::default()
        },
        limits: Limits::default(),
        watch_dir: args.watch_dir.clone(),
        data_root: args.data_root.clone(),
        overrides: overrides(&args.network),
    };
    let daemon = Daemon::start(config).map_err(|e| {
        let code = match &e {
            Error::ExposedWithoutAuth(_) | Error::Setting(_) => Code::Usage,
            Error::RpcListen { .. } | Error::Engine(bittern_engine::Error::Listen { .. }) => {
                Code::Network
            }
            Error::Store(_) | Error::WatchDir { .. } | Error::DataRoot { .. } => Code::Filesystem,
            _ => Code::Failure,
        };
        coded(code, anyhow!(e))
    })?;
    println!(
        "rpc listening on http://{}/transmission/rpc",
        daemon.rpc_addr()
    );
    println!("peers listening on {}", daemon.peer_addr());
    let mut trimmer = crate::heap::Trimmer::default();
    let mut round = 0u32;
    while !stop.requested() && !daemon.close_requested() {
        std::thread::sleep(Duration::from_millis(100));
        round = round.wrapping_add(1);
        if round.is_multiple_of(10) {
            trimmer.torrents(daemon.torrent_count());
        }
        trimmer.tick();
    }
    progress::note("stopping daemon");
    daemon.shutdown();
    println!("daemon stopped");
    Ok(Code::Ok)
}
