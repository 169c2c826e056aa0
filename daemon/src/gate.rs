//! The HTTP side of the RPC, checks in Transmission's order: client IP
//! whitelist (403), Basic auth (401 with a challenge), routing (301 to the
//! web page, 404), the Host header against DNS rebinding when auth is off
//! (421), the `X-Transmission-Session-Id` handshake for every HTTP method
//! (409 carrying the id), then the method itself (POST only, 405). Like
//! Transmission's anti-brute-force, an address that fails Basic auth
//! [`MAX_AUTH_FAILURES`] times in a row is refused (403) for
//! [`AUTH_LOCKOUT`], right password or not. The web
//! page ([`crate::web`]) is served after auth; `/metrics`
//! ([`crate::metrics`]) after auth and the Host check, without the
//! session-id handshake (scrapers do not do it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::distr::{Alphanumeric, SampleString};

use crate::backend::Backend;
use crate::http::{Handler, Request, Response};
use crate::rpc::Rpc;

/// The RPC's path (with or without a trailing slash).
pub const RPC_PATH: &str = "/transmission/rpc";
/// Where the web page lives (it is also served at `/`).
pub const WEB_PATH: &str = "/transmission/web/";
/// Prometheus metrics.
pub const METRICS_PATH: &str = "/metrics";
/// How long a session id stays valid (Transmission: an hour).
pub const SESSION_ID_LIFETIME: Duration = Duration::from_secs(3600);
const SESSION_HEADER: &str = "X-Transmission-Session-Id";
/// Failed logins in a row after which an address is locked out.
pub const MAX_AUTH_FAILURES: u32 = 10;
/// How long a locked-out address is refused.
pub const AUTH_LOCKOUT: Duration = Duration::from_secs(120);
/// Addresses whose failures are remembered at most (the oldest forgotten).
const TRACKED_ADDRESSES: usize = 4096;

/// Failed logins per address: (failures in a row, last failure).
#[derive(Default)]
struct Failures(HashMap<IpAddr, (u32, Instant)>);

impl Failures {
    /// Whether `ip` is locked out now (forgetting a lockout that is over).
    fn locked(&mut self, ip: IpAddr, max: u32, lockout: Duration) -> bool {
        match self.0.get(&ip) {
            Some(&(n, last)) if n >= max => {
                if last.elapsed() < lockout {
                    return true;
                }
                self.0.remove(&ip);
                false
            }
            _ => false,
        }
    }

    fn failed(&mut self, ip: IpAddr, lockout: Duration) {
        if self.0.len() >= TRACKED_ADDRESSES && !self.0.contains_key(&ip) {
            self.0.retain(|_, (_, last)| last.elapsed() < lockout);
            if self.0.len() >= TRACKED_ADDRESSES {
                if let Some(oldest) = self.0.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| *k) {
                    self.0.remove(&oldest);
                }
            }
        }
        let e = self.0.entry(ip).or_insert((0, Instant::now()));
        e.0 = e.0.saturating_add(1);
        e.1 = Instant::now();
    }
}

/// Who may talk to the RPC.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `Some((user, password))`: HTTP Basic auth required.
    pub credentials: Option<(String, String)>,
    /// Client addresses allowed (`*` matches any run of characters, e.g.
    /// `192.168.*.*`); empty: any address.
    pub whitelist: Vec<String>,
    /// Host names allowed in the `Host` header besides IP literals and
    /// `localhost` (checked only when auth is off).
    pub host_whitelist: Vec<String>,
}

/// The RPC behind its checks.
pub struct Gate<B: Backend> {
    rpc: Arc<Rpc<B>>,
    access: Access,
    lifetime: Duration,
    session: Mutex<(String, Instant)>,
    metrics: crate::metrics::Totals,
    failures: Mutex<Failures>,
    max_failures: u32,
    lockout: Duration,
}

fn new_session_id() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 48)
}

impl<B: Backend> Gate<B> {
    /// Guards `rpc` with `access`.
    pub fn new(rpc: Arc<Rpc<B>>, access: Access) -> Gate<B> {
        Gate::with_lifetime(rpc, access, SESSION_ID_LIFETIME)
    }

    /// Like [`new`](Self::new) with another session id lifetime (tests).
    pub fn with_lifetime(rpc: Arc<Rpc<B>>, access: Access, lifetime: Duration) -> Gate<B> {
        Gate {
            rpc,
            access,
            lifetime,
            session: Mutex::new((new_session_id(), Instant::now())),
            metrics: crate::metrics::Totals::default(),
            failures: Mutex::default(),
            max_failures: MAX_AUTH_FAILURES,
            lockout: AUTH_LOCKOUT,
        }
    }

    /// Another anti-brute-force rule: `failures` failed logins in a row
    /// lock an address out for `lockout` (tests; the default is
    /// [`MAX_AUTH_FAILURES`] and [`AUTH_LOCKOUT`]).
    pub fn with_lockout(mut self, failures: u32, lockout: Duration) -> Gate<B> {
        self.max_failures = failures.max(1);
        self.lockout = lockout;
        self
    }

    /// The current session id, renewed once its lifetime is over.
    pub fn session_id(&self) -> String {
        let mut s = self.session.lock();
        if s.1.elapsed() >= self.lifetime {
            *s = (new_session_id(), Instant::now());
        }
        s.0.clone()
    }

    fn authorized(&self, req: &Request) -> bool {
        let Some((user, pass)) = &self.access.credentials else {
            return true;
        };
        let Some(given) = req
            .header("authorization")
            .and_then(|h| {
                h.strip_prefix("Basic ")
                    .or_else(|| h.strip_prefix("basic "))
            })
            .and_then(|b| data_encoding::BASE64.decode(b.trim().as_bytes()).ok())
        else {
            return false;
        };
        let expected = format!("{user}:{pass}");
        constant_time_eq(&given, expected.as_bytes())
    }

    fn host_allowed(&self, req: &Request) -> bool {
        if self.access.credentials.is_some() {
            return true;
        }
        let Some(host) = req.header("host") else {
            // HTTP/1.0 clients may send none: nothing to rebind.
            return true;
        };
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or("")
        } else {
            host.rsplit_once(':').map_or(host, |(h, _)| h)
        };
        name.parse::<IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || name.eq_ignore_ascii_case("localhost.")
            || self
                .access
                .host_whitelist
                .iter()
                .any(|w| glob(&w.to_ascii_lowercase(), &name.to_ascii_lowercase()))
    }
}

impl<B: Backend> Handler for Gate<B> {
    fn handle(&self, req: &Request) -> Response {
        let r = self.route(req);
        r.with_header("Server", "bittern")
    }
}

impl<B: Backend> Gate<B> {
    fn route(&self, req: &Request) -> Response {
        let ip = req.peer.to_canonical().to_string();
        if !self.access.whitelist.is_empty() && !self.access.whitelist.iter().any(|w| glob(w, &ip))
        {
            return Response::html(
                403,
                &format!("Unauthorized IP Address. Either disable the IP address whitelist or add your address ({ip}) to it."),
            );
        }
        if self.access.credentials.is_some() {
            let peer = req.peer.to_canonical();
            let mut failures = self.failures.lock();
            if failures.locked(peer, self.max_failures, self.lockout) {
                return Response::html(
                    403,
                    "Too many unsuccessful login attempts. Wait a while or restart the daemon.",
                );
            }
            if !self.authorized(req) {
                // A request without credentials is how a browser asks for
                // the login prompt: only a wrong password counts.
                if req.header("authorization").is_some() {
                    failures.failed(peer, self.lockout);
                    log::warn!("{peer}: failed rpc login");
                }
                return Response::html(401, "Unauthorized User.")
                    .with_header("WWW-Authenticate", "Basic realm=\"Transmission\"");
            }
            failures.0.remove(&peer);
        }
        let path = req.path.as_str();
        if let Some(page) = crate::web::serve(path) {
            return page;
        }
        if path != RPC_PATH && path != "/transmission/rpc/" && path != METRICS_PATH {
            if path.starts_with("/transmission/") {
                return Response::html(404, "Not found.");
            }
            return Response::html(301, "Moved.").with_header("Location", WEB_PATH);
        }
        if !self.host_allowed(req) {
            return Response::html(
                421,
                "Transmission received your request, but the hostname was unrecognized. To \
                 fix this, choose one of: connect with an IP address or localhost; add the \
                 name to the host whitelist; or turn authentication on.",
            );
        }
        if path == METRICS_PATH {
            // Scrapers do not do the session-id handshake; the Host check
            // above keeps a rebinding page from reading it.
            if req.method != "GET" {
                return Response::html(405, "Metrics take GET requests.")
                    .with_header("Allow", "GET");
            }
            return crate::metrics::response(self.rpc.torrents(), &self.metrics);
        }
        let id = self.session_id();
        if req.header("x-transmission-session-id") != Some(id.as_str()) {
            return Response::html(
                409,
                &format!(
                    "Your request had an invalid session-id header.</p><p>To fix this, read \
                     the {SESSION_HEADER} header of this response and send it with your \
                     requests.</p><p><code>{SESSION_HEADER}: {id}</code>"
                ),
            )
            .with_header(SESSION_HEADER, id);
        }
        if req.method != "POST" {
            return Response::html(405, "The RPC takes POST requests.")
                .with_header("Allow", "POST");
        }
        let body = self.rpc.reply(&req.body, &id);
        Response::new(200, "application/json; charset=UTF-8", body).with_header(SESSION_HEADER, id)
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, tail)) => {
            let Some(rest) = s.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("127.0.0.1", "127.0.0.1"));
        assert!(glob("192.168.*.*", "192.168.1.20"));
        assert!(!glob("192.168.*.*", "10.0.0.1"));
        assert!(glob("*", "::1"));
        assert!(glob("*.example", "box.example"));
        assert!(!glob("127.0.0.1", "127.0.0.10"));
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"u:p", b"u:p"));
        assert!(!constant_time_eq(b"u:p", b"u:q"));
        assert!(!constant_time_eq(b"u:p", b"u:pp"));
    }
}
