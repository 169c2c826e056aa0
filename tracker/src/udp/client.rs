//! The BEP 15 client: connect, announce and scrape over one UDP socket,
//! with retransmission and connection-id reuse.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use bittern_wire::InfoHash;
use parking_lot::Mutex;

use super::codec::{Request, Response, MAX_SCRAPE_HASHES};
use crate::error::{Error, Result};
use crate::types::{AnnounceParams, AnnounceResponse, ClientConfig, ScrapeStats};

/// How long a connection id may be used (BEP 15: one minute).
const CONNECTION_ID_TTL: Duration = Duration::from_secs(60);
/// Largest datagram we accept.
const MAX_DATAGRAM: usize = 65_536;
/// How often an expired connection id is renewed within one request.
const MAX_RECONNECTS: u32 = 2;

/// Connection ids by tracker address, shared by every announce in the
/// process so that a torrent's regular announces and other torrents on the
/// same tracker skip the connect round trip.
static CONNECTIONS: LazyLock<Mutex<HashMap<SocketAddr, (u64, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Splits `udp://host:port[/path]` into host and port.
pub(crate) fn parse_url(url: &str) -> Result<(String, u16)> {
    let bad = |reason| Error::BadUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("udp://")
        .ok_or_else(|| Error::UnsupportedScheme {
            url: url.to_string(),
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (h, p.strip_prefix(':').ok_or_else(|| bad("missing port"))?)
    } else {
        authority
            .rsplit_once(':')
            .ok_or_else(|| bad("missing port"))?
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
    if port == 0 {
        return Err(bad("invalid port"));
    }
    Ok((host.to_string(), port))
}

/// One exchange with one UDP tracker.
struct Session<'a> {
    socket: UdpSocket,
    addr: SocketAddr,
    config: &'a ClientConfig,
    buf: Vec<u8>,
}

/// Why a transaction ended without an answer for it.
enum Outcome {
    Answer(Response),
    /// The connection id became too old before the tracker answered.
    Expired,
}

impl<'a> Session<'a> {
    fn open(url: &str, config: &'a ClientConfig) -> Result<Session<'a>> {
        let (host, port) = parse_url(url)?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|_| Error::Resolve { host: host.clone() })?
            .next()
            .ok_or(Error::Resolve { host })?;
        let local: SocketAddr = if addr.is_ipv6() {
            "[::]:0".parse().map_err(|_| Error::Connect)?
        } else {
            "0.0.0.0:0".parse().map_err(|_| Error::Connect)?
        };
        let socket = UdpSocket::bind(local)?;
        // A connected socket only receives the tracker's datagrams and
        // reports an ICMP "port unreachable" as ECONNREFUSED.
        socket.connect(addr)?;
        Ok(Session {
            socket,
            addr,
            config,
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    /// Sends the packet built by `make` (given a fresh transaction id) and
    /// waits for the answer, retransmitting with BEP 15's backoff. Stray
    /// packets (other transaction ids, undecodable data) are ignored but
    /// remembered, so that a tracker that only sends those gives a typed
    /// error rather than a bare timeout.
    fn transact(
        &mut self,
        make: &dyn Fn(u32) -> Vec<u8>,
        valid_until: Option<Instant>,
    ) -> Result<Outcome> {
        let transaction_id: u32 = rand::random();
        let packet = make(transaction_id);
        let mut mismatched = false;
        let mut garbage = false;
        for n in 0..self.config.udp_max_tries.max(1) {
            if valid_until.is_some_and(|t| Instant::now() >= t) {
                return Ok(Outcome::Expired);
            }
            self.send(&packet)?;
            let deadline = Instant::now() + retry_wait(self.config, n);
            while let Some(len) = recv_until(&self.socket, &mut self.buf, deadline)? {
                match Response::decode(&self.buf[..len], self.addr.is_ipv6()) {
                    Ok(resp) if resp.transaction_id() == transaction_id => {
                        return Ok(Outcome::Answer(resp))
                    }
                    Ok(resp) => {
                        log::debug!(
                            "udp tracker {}: ignoring transaction {:#x}",
                            self.addr,
                            resp.transaction_id()
                        );
                        mismatched = true;
                    }
                    Err(e) => {
                        log::debug!("udp tracker {}: ignoring bad packet: {e}", self.addr);
                        garbage = true;
                    }
                }
            }
        }
        Err(if mismatched {
            Error::TransactionMismatch
        } else if garbage {
            Error::BadResponse("undecodable udp tracker packet")
        } else {
            Error::Timeout
        })
    }

    fn send(&self, packet: &[u8]) -> Result<()> {
        match self.socket.send(packet) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(Error::Connect),
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// A connection id: cached if fresh (and `fresh` is false), else a new
    /// one from a connect exchange. Returns it with its expiry.
    fn connection_id(&mut self, fresh: bool) -> Result<(u64, Instant)> {
        if !fresh {
            if let Some(&(id, at)) = CONNECTIONS.lock().get(&self.addr) {
                if at.elapsed() < CONNECTION_ID_TTL {
                    return Ok((id, at + CONNECTION_ID_TTL));
                }
            }
        }
        let outcome = self.transact(
            &|transaction_id| Request::Connect { transaction_id }.encode(),
            None,
        )?;
        match outcome {
            Outcome::Answer(Response::Connect { connection_id, .. }) => {
                let now = Instant::now();
                let mut cache = CONNECTIONS.lock();
                cache.retain(|_, (_, at)| at.elapsed() < CONNECTION_ID_TTL);
                cache.insert(self.addr, (connection_id, now));
                Ok((connection_id, now + CONNECTION_ID_TTL))
            }
            Outcome::Answer(Response::Error { message, .. }) => Err(Error::Udp { message }),
            _ => Err(Error::BadResponse(
                "udp tracker answered connect with another action",
            )),
        }
    }

    /// Runs a request that needs a connection id, renewing the id when it
    /// expires mid-request or when a cached id is refused.
    fn with_connection(&mut self, make: &dyn Fn(u64, u32) -> Vec<u8>) -> Result<Response> {
        let mut fresh = false;
        let mut renewals = 0;
        loop {
            let (id, valid_until) = self.connection_id(fresh)?;
            let was_cached = !fresh;
            match self.transact(&|tid| make(id, tid), Some(valid_until))? {
                Outcome::Answer(Response::Error { message, .. }) => {
                    CONNECTIONS.lock().remove(&self.addr);
                    if was_cached && renewals < MAX_RECONNECTS {
                        // The tracker may have forgotten our id; try once more
                        // with a fresh one before believing the error.
                        renewals += 1;
                        fresh = true;
                        continue;
                    }
                    return Err(Error::Udp { message });
                }
                Outcome::Answer(resp) => return Ok(resp),
                Outcome::Expired if renewals < MAX_RECONNECTS => {
                    renewals += 1;
                    fresh = true;
                }
                Outcome::Expired => return Err(Error::Timeout),
            }
        }
    }
}

/// How long try `n` (from 0) waits for an answer: BEP 15's
/// `15 * 2^n` seconds, from the configured base.
fn retry_wait(config: &ClientConfig, n: u32) -> Duration {
    config
        .udp_base_timeout
        .saturating_mul(1u32 << n.min(16))
        .max(Duration::from_millis(1))
}

/// The next datagram from `socket` into `buf` (its length), or `None`
/// once `until` has passed.
fn recv_until(socket: &UdpSocket, buf: &mut [u8], until: Instant) -> Result<Option<usize>> {
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(None);
        }
        socket.set_read_timeout(Some(until - now))?;
        match socket.recv(buf) {
            Ok(len) => return Ok(Some(len)),
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(Error::Connect),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The BEP 15 announce packet for `params`.
fn announce_packet(params: &AnnounceParams, connection_id: u64, transaction_id: u32) -> Vec<u8> {
    let num_want = params
        .numwant
        .map(|n| i32::try_from(n).unwrap_or(i32::MAX))
        .unwrap_or(-1);
    Request::Announce {
        connection_id,
        transaction_id,
        info_hash: params.info_hash,
        peer_id: params.peer_id,
        downloaded: params.downloaded,
        left: params.left,
        uploaded: params.uploaded,
        event: params.event,
        ip: 0,
        key: params.key,
        num_want,
        port: params.port,
    }
    .encode()
}

fn announce_response(resp: Response) -> Result<AnnounceResponse> {
    match resp {
        Response::Announce {
            interval,
            leechers,
            seeders,
            peers,
            ..
        } => Ok(AnnounceResponse {
            interval: Duration::from_secs(u64::from(interval)),
            min_interval: None,
            tracker_id: None,
            complete: Some(seeders),
            incomplete: Some(leechers),
            peers: crate::http::dedup(peers),
            warning: None,
        }),
        Response::Error { message, .. } => Err(Error::Udp { message }),
        _ => Err(Error::BadResponse(
            "udp tracker answered announce with another action",
        )),
    }
}

/// Announces several torrents to one UDP tracker at once (the `stopped`
/// announces of a shutdown): one connection id for all, every packet sent
/// before any answer is awaited, answers matched by transaction id, the
/// unanswered sent again with BEP 15's backoff, all before `deadline`.
///
/// Returns one entry per `params`, in order: `None` for a torrent whose
/// announce got no answer (lost, or the deadline came first).
///
/// # Errors
/// When the tracker cannot be reached at all (no connection id, or not
/// one answer).
pub(crate) fn announce_many(
    url: &str,
    params: &[AnnounceParams],
    config: &ClientConfig,
    deadline: Instant,
) -> Result<Vec<Option<Result<AnnounceResponse>>>> {
    let mut session = Session::open(url, config)?;
    let (connection_id, _) = session.connection_id(false)?;
    let mut out: Vec<Option<Result<AnnounceResponse>>> = params.iter().map(|_| None).collect();
    // Transaction ids: distinct within the batch.
    let first: u32 = rand::random();
    let tid = |i: usize| first.wrapping_add(i as u32);
    let mut answered = 0;
    for n in 0..config.udp_max_tries.max(1) {
        let now = Instant::now();
        if now >= deadline || answered == params.len() {
            break;
        }
        for (i, p) in params.iter().enumerate() {
            if out[i].is_none() {
                session.send(&announce_packet(p, connection_id, tid(i)))?;
            }
        }
        let until = (now + retry_wait(config, n)).min(deadline);
        while answered < params.len() {
            let Some(len) = recv_until(&session.socket, &mut session.buf, until)? else {
                break;
            };
            let Ok(resp) = Response::decode(&session.buf[..len], session.addr.is_ipv6()) else {
                log::debug!("udp tracker {}: ignoring a bad packet", session.addr);
                continue;
            };
            let i = resp.transaction_id().wrapping_sub(first) as usize;
            if i < params.len() && out[i].is_none() {
                out[i] = Some(announce_response(resp));
                answered += 1;
            }
        }
    }
    if answered == 0 && !params.is_empty() {
        return Err(Error::Timeout);
    }
    Ok(out)
}

/// Announces over UDP.
pub(crate) fn announce(
    url: &str,
    params: &AnnounceParams,
    config: &ClientConfig,
) -> Result<AnnounceResponse> {
    let mut session = Session::open(url, config)?;
    let resp = session.with_connection(&|connection_id, transaction_id| {
        announce_packet(params, connection_id, transaction_id)
    })?;
    match resp {
        Response::Announce { .. } => announce_response(resp),
        _ => Err(Error::BadResponse(
            "udp tracker answered announce with another action",
        )),
    }
}

/// Scrapes over UDP, [`MAX_SCRAPE_HASHES`] torrents per packet.
pub(crate) fn scrape(
    url: &str,
    info_hashes: &[InfoHash],
    config: &ClientConfig,
) -> Result<Vec<(InfoHash, ScrapeStats)>> {
    let mut session = Session::open(url, config)?;
    let mut out = Vec::with_capacity(info_hashes.len());
    for chunk in info_hashes.chunks(MAX_SCRAPE_HASHES) {
        let resp = session.with_connection(&|connection_id, transaction_id| {
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes: chunk.to_vec(),
            }
            .encode()
        })?;
        match resp {
            Response::Scrape { stats, .. } if stats.len() == chunk.len() => {
                out.extend(chunk.iter().copied().zip(stats));
            }
            Response::Scrape { .. } => {
                return Err(Error::BadResponse(
                    "udp scrape answered the wrong number of torrents",
                ))
            }
            _ => {
                return Err(Error::BadResponse(
                    "udp tracker answered scrape with another action",
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_udp_urls() {
        assert_eq!(
            parse_url("udp://tracker.example:6969/announce").unwrap(),
            ("tracker.example".to_string(), 6969)
        );
        assert_eq!(
            parse_url("udp://127.0.0.1:80").unwrap(),
            ("127.0.0.1".to_string(), 80)
        );
        assert_eq!(
            parse_url("udp://[::1]:1337/x?y").unwrap(),
            ("::1".to_string(), 1337)
        );
        assert!(matches!(
            parse_url("udp://host/announce"),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(
            parse_url("udp://host:0"),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(parse_url("udp://:80"), Err(Error::BadUrl { .. })));
        assert!(matches!(
            parse_url("udp://[::1:80"),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(
            parse_url("http://h:1"),
            Err(Error::UnsupportedScheme { .. })
        ));
    }
}
