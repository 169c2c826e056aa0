//! A small embedded HTTP tracker (BEP 3 announce, BEP 23 compact and
//! dictionary peers, BEP 7 `peers6`, BEP 48 scrape) on `std::net`.
//!
//! One accept thread hands each connection to a short-lived thread; the
//! number of connections served at once is bounded (extra ones are closed),
//! each has read and write timeouts and a cap on the request head, and a
//! connection serves one request (`Connection: close`). The peer table
//! lives behind one mutex; announces are rare enough that this never
//! matters. A peer's address is the socket's remote IP (the `ip` parameter
//! is honoured only from loopback, so tests can simulate several hosts)
//! with the announced port.

pub mod request;
mod swarm;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bittern_wire::InfoHash;
use parking_lot::Mutex;

use request::{parse_head, scrape_hashes, AnnounceRequest, HttpRequest, RequestError};
use swarm::{announce_body, failure_body, scrape_body, Limits, Swarms};

/// Settings of a [`TrackerServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The `interval` told to clients.
    pub interval: Duration,
    /// The `min interval` told to clients.
    pub min_interval: Duration,
    /// A peer that has not announced for this long is forgotten.
    pub peer_ttl: Duration,
    /// Peers returned when the client gives no `numwant`.
    pub default_numwant: u32,
    /// Most peers returned to one announce.
    pub max_numwant: u32,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// Time allowed to receive a request and send the reply.
    pub request_timeout: Duration,
    /// Longest accepted request head in bytes.
    pub max_request_size: usize,
    /// Most torrents tracked.
    pub max_torrents: usize,
    /// Most peers tracked per torrent.
    pub max_peers_per_torrent: usize,
    /// Most torrents in one scrape reply.
    pub max_scrape: usize,
    /// Honour the `ip` parameter from loopback clients.
    pub allow_ip_param_from_loopback: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            interval: Duration::from_secs(120),
            min_interval: Duration::from_secs(30),
            peer_ttl: Duration::from_secs(360),
            default_numwant: 50,
            max_numwant: 200,
            max_connections: 64,
            request_timeout: Duration::from_secs(5),
            max_request_size: 8192,
            max_torrents: 100_000,
            max_peers_per_torrent: 10_000,
            max_scrape: 1000,
            allow_ip_param_from_loopback: true,
        }
    }
}

struct State {
    config: ServerConfig,
    swarms: Mutex<Swarms>,
    active: AtomicUsize,
    shutdown: AtomicBool,
    counters: Counters,
}

/// What the tracker has served, for status pages and tests.
#[derive(Default)]
struct Counters {
    announces: AtomicU64,
    scrapes: AtomicU64,
    /// Announces per torrent, for at most `max_torrents` torrents.
    per_torrent: Mutex<HashMap<InfoHash, AnnounceStats>>,
}

/// When announces for one torrent arrived (any peer), for status pages and
/// tests: how many, the first and last, and the shortest and longest gap
/// between two in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceStats {
    /// Announces served.
    pub count: u64,
    /// When the first arrived.
    pub first: Instant,
    /// When the last arrived.
    pub last: Instant,
    /// The shortest time between two announces in a row (`None` before
    /// the second).
    pub shortest_gap: Option<Duration>,
    /// The longest time between two announces in a row.
    pub longest_gap: Option<Duration>,
}

/// A running tracker. Serves in background threads until
/// [`TrackerServer::shutdown`] or drop.
pub struct TrackerServer {
    local_addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TrackerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl TrackerServer {
    /// Binds `addr` (port 0 picks a free port) and starts serving.
    ///
    /// # Errors
    /// The bind error, e.g. address in use.
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> std::io::Result<TrackerServer> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let state = Arc::new(State {
            config,
            swarms: Mutex::new(Swarms::default()),
            active: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let st = Arc::clone(&state);
        let accept = thread::Builder::new()
            .name("tracker-accept".into())
            .spawn(move || accept_loop(listener, st))?;
        log::info!("tracker listening on http://{local_addr}/announce");
        Ok(TrackerServer {
            local_addr,
            state,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// How many connections are being served now: accepted and not yet
    /// finished (for an instant, one more while an extra one is turned
    /// away at the [`ServerConfig::max_connections`] limit).
    pub fn active_connections(&self) -> usize {
        self.state.active.load(Ordering::SeqCst)
    }

    /// Well-formed announce requests served so far.
    pub fn announce_requests(&self) -> u64 {
        self.state.counters.announces.load(Ordering::SeqCst)
    }

    /// Scrape requests served so far (one request may name many torrents).
    pub fn scrape_requests(&self) -> u64 {
        self.state.counters.scrapes.load(Ordering::SeqCst)
    }

    /// Announces served for one torrent so far (counted for the first
    /// [`ServerConfig::max_torrents`] torrents seen).
    pub fn announce_count(&self, info_hash: &InfoHash) -> u64 {
        self.state
            .counters
            .per_torrent
            .lock()
            .get(info_hash)
            .map_or(0, |s| s.count)
    }

    /// When announces for one torrent arrived (see [`AnnounceStats`]);
    /// `None` before the first (or past [`ServerConfig::max_torrents`]).
    pub fn announce_stats(&self, info_hash: &InfoHash) -> Option<AnnounceStats> {
        self.state
            .counters
            .per_torrent
            .lock()
            .get(info_hash)
            .copied()
    }

    /// Peers the tracker lists for one torrent now.
    pub fn peer_count(&self, info_hash: &InfoHash) -> usize {
        self.state.swarms.lock().peer_count(info_hash)
    }

    /// The URL to put in a torrent (`http://ip:port/announce`; an
    /// unspecified bind address is given as loopback).
    pub fn announce_url(&self) -> String {
        format!("http://{}/announce", reachable(self.local_addr))
    }

    /// Stops accepting and joins the accept thread. Connections being served
    /// finish on their own within the request timeout.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.state.shutdown.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            // Wake the blocking accept.
            let _ = TcpStream::connect_timeout(&reachable(self.local_addr), Duration::from_secs(1));
            if accept.join().is_err() {
                log::error!("tracker accept thread panicked");
            }
        }
    }
}

impl Drop for TrackerServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Decrements the active-connection count when a connection thread ends.
struct ActiveGuard(Arc<State>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming() {
        if state.shutdown.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                log::debug!("tracker accept failed: {e}");
                // Avoid spinning on persistent errors such as EMFILE.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if state.active.fetch_add(1, Ordering::SeqCst) >= state.config.max_connections {
            state.active.fetch_sub(1, Ordering::SeqCst);
            log::debug!("tracker busy; closing a connection");
            continue;
        }
        let guard = ActiveGuard(Arc::clone(&state));
        let spawned = thread::Builder::new()
            .name("tracker-conn".into())
            .spawn(move || {
                let guard = guard;
                if let Err(e) = serve(stream, &guard.0) {
                    log::debug!("tracker connection: {e}");
                }
            });
        if let Err(e) = spawned {
            log::warn!("could not start tracker connection thread: {e}");
        }
    }
}

fn serve(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let cfg = &state.config;
    stream.set_read_timeout(Some(cfg.request_timeout))?;
    stream.set_write_timeout(Some(cfg.request_timeout))?;
    let remote = stream.peer_addr()?;
    let deadline = Instant::now() + cfg.request_timeout;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let req = loop {
        match parse_head(&buf, cfg.max_request_size) {
            Ok(Some(req)) => break req,
            Ok(None) => {}
            Err(RequestError::TooLarge) => {
                return respond(&mut stream, 431, "text/plain", b"request too large")
            }
            Err(RequestError::Method) => {
                return respond(&mut stream, 405, "text/plain", b"method not allowed")
            }
            Err(_) => return respond(&mut stream, 400, "text/plain", b"bad request"),
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let body = route(&req, remote, state);
    match body {
        Some(body) => respond(&mut stream, 200, "text/plain", &body),
        None => respond(&mut stream, 404, "text/plain", b"not found"),
    }
}

fn route(req: &HttpRequest, remote: SocketAddr, state: &State) -> Option<Vec<u8>> {
    let cfg = &state.config;
    let limits = Limits {
        peer_ttl: cfg.peer_ttl,
        max_torrents: cfg.max_torrents,
        max_peers_per_torrent: cfg.max_peers_per_torrent,
        default_numwant: cfg.default_numwant,
        max_numwant: cfg.max_numwant,
    };
    match req.path.as_str() {
        "/announce" => Some(match AnnounceRequest::from_query(&req.query) {
            Err(reason) => failure_body(reason),
            Ok(a) => {
                state
                    .counters
                    .count_announce(&a.info_hash, cfg.max_torrents);
                let mut ip = canonical(remote.ip());
                if cfg.allow_ip_param_from_loopback && ip.is_loopback() {
                    if let Some(claimed) = a.ip {
                        ip = canonical(claimed);
                    }
                }
                let addr = SocketAddr::new(ip, a.port);
                let result = state
                    .swarms
                    .lock()
                    .announce(&a, addr, Instant::now(), &limits);
                match result {
                    Ok(reply) => announce_body(
                        &reply,
                        a.compact,
                        a.no_peer_id,
                        cfg.interval,
                        cfg.min_interval,
                    ),
                    Err(reason) => failure_body(reason),
                }
            }
        }),
        "/scrape" => {
            state.counters.scrapes.fetch_add(1, Ordering::SeqCst);
            let hashes = scrape_hashes(&req.query);
            let stats =
                state
                    .swarms
                    .lock()
                    .scrape(&hashes, Instant::now(), cfg.peer_ttl, cfg.max_scrape);
            Some(scrape_body(&stats))
        }
        _ => None,
    }
}

impl Counters {
    fn count_announce(&self, info_hash: &InfoHash, max_torrents: usize) {
        self.announces.fetch_add(1, Ordering::SeqCst);
        let now = Instant::now();
        let mut per = self.per_torrent.lock();
        if let Some(s) = per.get_mut(info_hash) {
            let gap = now.saturating_duration_since(s.last);
            s.count += 1;
            s.last = now;
            s.shortest_gap = Some(s.shortest_gap.map_or(gap, |g| g.min(gap)));
            s.longest_gap = Some(s.longest_gap.map_or(gap, |g| g.max(gap)));
        } else if per.len() < max_torrents {
            per.insert(
                *info_hash,
                AnnounceStats {
                    count: 1,
                    first: now,
                    last: now,
                    shortest_gap: None,
                    longest_gap: None,
                },
            );
        }
    }
}

/// Unwraps IPv4-mapped IPv6 addresses (from dual-stack sockets).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn respond(stream: &mut TcpStream, status: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}
