//! The methods about the session's door: `port-test`, answered from what
//! the session knows, and `blocklist-update` with the blocklist's
//! application to the engine (see [`crate::blocklist`]).

use std::sync::Arc;
use std::time::Duration;

use bittern_engine::IpFilter;
use serde_json::{json, Map, Value};

use super::{Args, Reply, Rpc};
use crate::backend::Backend;

/// How recent an incoming peer must be for `port-test` to say the port
/// is open.
pub const PORT_TEST_WINDOW: Duration = Duration::from_secs(30 * 60);

/// `port-test`'s answer from what the session already knows, sending
/// nothing anywhere: open iff a peer completed a handshake on an incoming
/// connection (TCP or uTP) within [`PORT_TEST_WINDOW`] (`since` ago), from
/// an address that says something about reachability: any when we listen
/// on loopback addresses only (nothing else can reach us there), else a
/// non-loopback one (a connection from this host proves nothing about
/// the network). With `family` ("ipv4"/"ipv6", Transmission 4.1's
/// `ip_protocol`) the peer must be of that family.
pub fn port_is_open(
    last: Option<(Duration, std::net::IpAddr)>,
    loopback_only: bool,
    family: Option<&str>,
) -> bool {
    let Some((since, from)) = last else {
        return false;
    };
    let family_ok = match family {
        Some("ipv4") => {
            from.is_ipv4()
                || matches!(from, std::net::IpAddr::V6(a) if a.to_ipv4_mapped().is_some())
        }
        Some("ipv6") => {
            matches!(from, std::net::IpAddr::V6(a) if a.to_ipv4_mapped().is_none())
        }
        _ => true,
    };
    since <= PORT_TEST_WINDOW && family_ok && (loopback_only || !from.is_loopback())
}

impl<B: Backend> Rpc<B> {
    /// Hands the engine the stored blocklist, or an empty one when
    /// `blocklist-enabled` is off.
    pub(super) fn apply_blocklist(&self) {
        let on = self.torrents.lock().settings.blocklist_enabled;
        let filter = if on {
            self.blocklist.lock().clone()
        } else {
            Arc::new(IpFilter::new())
        };
        self.torrents.backend().set_ip_filter(filter);
    }

    /// `blocklist-update`: fetches the configured URL (no lock held while
    /// it does), stores and applies the list.
    pub(super) fn blocklist_update(&self) -> Reply {
        let _one = self
            .updating
            .try_lock()
            .ok_or("a blocklist update is already running")?;
        let url = self.torrents.lock().settings.blocklist_url.clone();
        let filter = crate::blocklist::update(&url, self.torrents.store().dir())?;
        let size = filter.len();
        *self.blocklist.lock() = Arc::new(filter);
        self.apply_blocklist();
        let mut out = Map::new();
        out.insert("blocklist-size".into(), json!(size));
        Ok(out)
    }

    /// `port-test` (see [`port_is_open`]), with bittern's own
    /// `bittern-last-incoming`: seconds since the last incoming peer, -1
    /// for none.
    pub(super) fn port_test(&self, args: &Args) -> Reply {
        let backend = self.torrents.backend();
        let last = backend
            .last_incoming()
            .map(|i| (i.at.elapsed(), i.from.ip()));
        let addrs = backend.peer_addrs();
        let loopback_only = !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback());
        let family = args.get("ip_protocol").and_then(Value::as_str);
        if family.is_some_and(|f| f != "ipv4" && f != "ipv6") {
            return Err("invalid ip_protocol (ipv4 or ipv6)".into());
        }
        let mut out = Map::new();
        out.insert(
            "port-is-open".into(),
            json!(port_is_open(last, loopback_only, family)),
        );
        if let Some(f) = family {
            out.insert("ip_protocol".into(), json!(f));
        }
        out.insert(
            "bittern-last-incoming".into(),
            json!(last.map_or(-1, |(since, _)| since.as_secs() as i64)),
        );
        Ok(out)
    }
}
