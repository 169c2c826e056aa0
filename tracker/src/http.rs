//! HTTP trackers (BEP 3, BEP 23 compact peers, BEP 7 `peers6`, BEP 48
//! scrape) over ureq.
//!
//! URL building and response parsing are pure functions (the parsers are
//! fuzz targets); [`get`] is the only IO.

use std::collections::HashSet;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bittern_wire::bencode::{self, Limits, Value};
use bittern_wire::InfoHash;

use crate::error::{Error, Result};
use crate::percent;
use crate::types::{AnnounceParams, AnnounceResponse, ClientConfig, ScrapeStats};
use crate::udp::codec::{parse_compact_v4, parse_compact_v6};

/// Redirects followed before giving up.
const MAX_REDIRECTS: u32 = 5;
/// Interval assumed when a successful reply has none (mainline's default).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1800);

/// Builds the announce URL: `base` plus the BEP 3 query parameters, with
/// `info_hash` and `peer_id` percent-encoded as raw bytes.
pub fn announce_url(base: &str, p: &AnnounceParams) -> String {
    let mut url = String::with_capacity(base.len() + 200);
    url.push_str(base);
    url.push(if base.contains('?') { '&' } else { '?' });
    url.push_str("info_hash=");
    url.push_str(&percent::encode(&p.info_hash.0));
    url.push_str("&peer_id=");
    url.push_str(&percent::encode(&p.peer_id.0));
    url.push_str(&format!(
        "&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
        p.port, p.uploaded, p.downloaded, p.left, p.key
    ));
    if let Some(event) = p.event.as_http() {
        url.push_str("&event=");
        url.push_str(event);
    }
    if let Some(n) = p.numwant {
        url.push_str(&format!("&numwant={n}"));
    }
    if let Some(id) = &p.tracker_id {
        url.push_str("&trackerid=");
        url.push_str(&percent::encode(id));
    }
    url
}

/// The BEP 48 scrape URL for an announce URL: the last path component must
/// start with `announce`, which is replaced by `scrape`. `None` if the
/// tracker does not support scrape by that convention.
pub fn scrape_url(announce: &str) -> Option<String> {
    let (path, query) = match announce.find('?') {
        Some(q) => announce.split_at(q),
        None => (announce, ""),
    };
    let authority = path.find("://").map_or(0, |i| i + 3);
    path[authority..].find('/')?;
    let slash = path.rfind('/')?;
    let rest = path[slash + 1..].strip_prefix("announce")?;
    Some(format!("{}/scrape{rest}{query}", &path[..slash]))
}

/// Builds the scrape query for `info_hashes` onto a scrape URL.
pub fn scrape_query(scrape: &str, info_hashes: &[InfoHash]) -> String {
    let mut url = scrape.to_string();
    let mut sep = if scrape.contains('?') { '&' } else { '?' };
    for h in info_hashes {
        url.push(sep);
        url.push_str("info_hash=");
        url.push_str(&percent::encode(&h.0));
        sep = '&';
    }
    url
}

fn limits(max: usize) -> Limits {
    Limits {
        max_depth: 16,
        max_len: max.max(1),
        max_string_len: max.max(1),
        max_items: 1 << 20,
    }
}

fn decode_body(body: &[u8], max: usize) -> Result<Value> {
    if body.len() > max {
        return Err(Error::TooLarge { limit: max });
    }
    // Some trackers append a newline; accept trailing bytes after the value.
    let (v, _) = bencode::decode_prefix(body, &limits(max)).map_err(Error::Bencode)?;
    if v.as_dict().is_none() {
        return Err(Error::BadResponse("tracker response is not a dictionary"));
    }
    Ok(v)
}

fn failure(v: &Value) -> Option<Error> {
    v.get(b"failure reason").map(|r| {
        Error::Failure(
            String::from_utf8_lossy(r.as_bytes().unwrap_or(b"(not a string)")).into_owned(),
        )
    })
}

fn count(v: &Value, key: &[u8]) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_int)
        .map(|i| u32::try_from(i.max(0)).unwrap_or(u32::MAX))
}

fn secs(v: &Value, key: &[u8]) -> Option<Duration> {
    v.get(key)
        .and_then(Value::as_int)
        .map(|i| Duration::from_secs(u64::try_from(i).unwrap_or(0)))
}

/// Removes duplicate peers, keeping the first occurrence.
pub(crate) fn dedup(peers: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = HashSet::with_capacity(peers.len());
    peers.into_iter().filter(|p| seen.insert(*p)).collect()
}

/// Parses an announce reply (at most `max` bytes are accepted).
///
/// # Errors
/// [`Error::Failure`] when the tracker sent a `failure reason`;
/// [`Error::Bencode`], [`Error::BadResponse`] or [`Error::TooLarge`] for
/// a malformed reply.
pub fn parse_announce(body: &[u8], max: usize) -> Result<AnnounceResponse> {
    let v = decode_body(body, max)?;
    if let Some(e) = failure(&v) {
        return Err(e);
    }
    let mut peers = Vec::new();
    match v.get(b"peers") {
        Some(Value::Bytes(b)) => peers.extend(parse_compact_v4(b)),
        Some(Value::List(list)) => {
            for entry in list {
                let ip = entry
                    .get(b"ip")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<IpAddr>().ok());
                let port = entry
                    .get(b"port")
                    .and_then(Value::as_int)
                    .and_then(|p| u16::try_from(p).ok());
                if let (Some(ip), Some(port)) = (ip, port) {
                    if port != 0 {
                        peers.push(SocketAddr::new(ip, port));
                    }
                }
            }
        }
        Some(_) => return Err(Error::BadResponse("peers is neither a string nor a list")),
        None => {}
    }
    if let Some(Value::Bytes(b)) = v.get(b"peers6") {
        peers.extend(parse_compact_v6(b));
    }
    Ok(AnnounceResponse {
        interval: secs(&v, b"interval").unwrap_or(DEFAULT_INTERVAL),
        min_interval: secs(&v, b"min interval"),
        tracker_id: v
            .get(b"tracker id")
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec),
        complete: count(&v, b"complete"),
        incomplete: count(&v, b"incomplete"),
        peers: dedup(peers),
        warning: v
            .get(b"warning message")
            .and_then(Value::as_bytes)
            .map(|w| String::from_utf8_lossy(w).into_owned()),
    })
}

/// Parses a scrape reply, returning the stats of those of `info_hashes`
/// the tracker reported on (all reported torrents if `info_hashes` is empty).
///
/// # Errors
/// As [`parse_announce`].
pub fn parse_scrape(
    body: &[u8],
    info_hashes: &[InfoHash],
    max: usize,
) -> Result<Vec<(InfoHash, ScrapeStats)>> {
    let v = decode_body(body, max)?;
    if let Some(e) = failure(&v) {
        return Err(e);
    }
    let files = v
        .get(b"files")
        .and_then(Value::as_dict)
        .ok_or(Error::BadResponse("scrape reply has no files dictionary"))?;
    let mut out = Vec::new();
    for (key, stats) in files {
        let Ok(hash) = <[u8; 20]>::try_from(key.as_slice()) else {
            continue;
        };
        let hash = InfoHash(hash);
        if !info_hashes.is_empty() && !info_hashes.contains(&hash) {
            continue;
        }
        out.push((
            hash,
            ScrapeStats {
                complete: count(stats, b"complete").unwrap_or(0),
                downloaded: count(stats, b"downloaded").unwrap_or(0),
                incomplete: count(stats, b"incomplete").unwrap_or(0),
            },
        ));
    }
    // Report in the order asked for.
    if !info_hashes.is_empty() {
        out.sort_by_key(|(h, _)| info_hashes.iter().position(|x| x == h));
    }
    Ok(out)
}

/// Fetches `url` and returns the body (at most `config.max_response_size`
/// bytes after gzip decoding); the whole request takes at most
/// `connect_timeout + 2 * read_timeout`. A non-2xx status whose body is a bencoded
/// `failure reason` becomes [`Error::Failure`], otherwise
/// [`Error::HttpStatus`].
pub fn get(url: &str, config: &ClientConfig) -> Result<Vec<u8>> {
    Client::new(config).get(url, None)
}

/// An HTTP client that keeps connections open between requests (ureq's
/// agent pools them by host), for a run of requests to one tracker: the
/// `stopped` announces of many torrents at shutdown go one after another on
/// one connection where the tracker keeps it open (HTTP/1.1 keep-alive);
/// a tracker that closes after each reply (opentracker) costs a connect
/// each, as before.
pub(crate) struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
    /// A request went out on this agent: the next may reuse its connection.
    used: bool,
}

impl Client {
    /// A client with `config`'s timeouts and limits.
    pub(crate) fn new(config: &ClientConfig) -> Client {
        Client {
            agent: agent(config),
            config: config.clone(),
            used: false,
        }
    }

    /// As [`get`]; `limit` bounds this request's total time further. A
    /// request that fails without an answer on a connection kept from an
    /// earlier one (the tracker may have closed it just then) is tried once
    /// more on a new connection.
    pub(crate) fn get(&mut self, url: &str, limit: Option<Duration>) -> Result<Vec<u8>> {
        let reused = std::mem::replace(&mut self.used, true);
        match self.get_once(url, limit) {
            Err(e) if reused && (e.is_unreachable() || matches!(e, Error::Http(_))) => {
                log::debug!(
                    "{}: kept connection failed ({e}); reconnecting",
                    host_of(url)
                );
                self.agent = agent(&self.config);
                self.get_once(url, limit)
            }
            other => other,
        }
    }

    /// Announces over HTTP on this client's connections.
    pub(crate) fn announce(
        &mut self,
        base: &str,
        params: &AnnounceParams,
        limit: Option<Duration>,
    ) -> Result<AnnounceResponse> {
        let body = self.get(&announce_url(base, params), limit)?;
        parse_announce(&body, self.config.max_response_size)
    }

    fn get_once(&self, url: &str, limit: Option<Duration>) -> Result<Vec<u8>> {
        let request = self.agent.get(url);
        let call = match limit {
            Some(limit) => {
                let global = limit.min(total_timeout(&self.config));
                request
                    .config()
                    .timeout_global(Some(global.max(Duration::from_millis(1))))
                    .build()
                    .call()
            }
            None => request.call(),
        };
        let mut resp = call.map_err(|e| map_ureq(e, url))?;
        let status = resp.status().as_u16();
        let max = self.config.max_response_size;
        if let Some(len) = resp.body().content_length() {
            if len > max as u64 {
                return Err(Error::TooLarge { limit: max });
            }
        }
        // Read one byte past the limit so an oversized body is detected
        // without buffering more than the limit.
        let mut body = Vec::new();
        let reader = resp.body_mut().as_reader();
        reader
            .take(max as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| map_io(e, url))?;
        if body.len() > max {
            return Err(Error::TooLarge { limit: max });
        }
        if !(200..300).contains(&status) {
            return Err(
                match decode_body(&body, max).ok().as_ref().and_then(failure) {
                    Some(f) => f,
                    None => Error::HttpStatus { status },
                },
            );
        }
        Ok(body)
    }
}

/// The longest one request may take under `config`.
fn total_timeout(config: &ClientConfig) -> Duration {
    config
        .connect_timeout
        .saturating_add(config.read_timeout.saturating_mul(2))
}

fn agent(config: &ClientConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        .user_agent(config.user_agent.as_str())
        .timeout_connect(Some(config.connect_timeout))
        .timeout_recv_response(Some(config.read_timeout))
        .timeout_recv_body(Some(config.read_timeout))
        .timeout_global(Some(total_timeout(config)))
        .build()
        .into()
}

fn map_io(e: std::io::Error, url: &str) -> Error {
    // ureq's reader wraps its own errors in io::Error.
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::Timeout,
        _ => match e.downcast::<ureq::Error>() {
            Ok(u) => map_ureq(u, url),
            Err(e) => Error::Io(e),
        },
    }
}

fn map_ureq(e: ureq::Error, url: &str) -> Error {
    match e {
        ureq::Error::Timeout(_) => Error::Timeout,
        ureq::Error::ConnectionFailed => Error::Connect,
        ureq::Error::HostNotFound => Error::Resolve {
            host: host_of(url).to_string(),
        },
        ureq::Error::TlsRequired => Error::TlsUnsupported {
            url: url.to_string(),
        },
        ureq::Error::StatusCode(status) => Error::HttpStatus { status },
        ureq::Error::BodyExceedsLimit(limit) => Error::TooLarge {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        },
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => Error::Connect,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Error::Timeout,
            _ => Error::Io(io),
        },
        ureq::Error::BadUri(_) => Error::BadUrl {
            url: url.to_string(),
            reason: "rejected by the http client",
        },
        other => Error::Http(Box::new(other)),
    }
}

/// The host part of `scheme://host:port/...`, for error messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// Announces over HTTP.
pub(crate) fn announce(
    base: &str,
    params: &AnnounceParams,
    config: &ClientConfig,
) -> Result<AnnounceResponse> {
    let body = get(&announce_url(base, params), config)?;
    parse_announce(&body, config.max_response_size)
}

/// Scrapes over HTTP.
pub(crate) fn scrape(
    announce: &str,
    info_hashes: &[InfoHash],
    config: &ClientConfig,
) -> Result<Vec<(InfoHash, ScrapeStats)>> {
    let scrape = scrape_url(announce).ok_or_else(|| Error::BadUrl {
        url: announce.to_string(),
        reason: "tracker does not support scrape",
    })?;
    let body = get(&scrape_query(&scrape, info_hashes), config)?;
    parse_scrape(&body, info_hashes, config.max_response_size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::AnnounceEvent;
    use bittern_wire::PeerId;

    fn params() -> AnnounceParams {
        let mut ih = [0u8; 20];
        ih[0] = 0x12;
        ih[1] = b' ';
        ih[2] = b'a';
        ih[19] = 0xff;
        AnnounceParams {
            info_hash: InfoHash(ih),
            peer_id: PeerId(*b"-BI0001-abcdefghijkl"),
            port: 6881,
            uploaded: 10,
            downloaded: 20,
            left: 30,
            event: AnnounceEvent::Started,
            numwant: Some(50),
            key: 0xabc,
            tracker_id: Some(b"t&1".to_vec()),
        }
    }

    #[test]
    fn announce_url_encodes_raw_bytes() {
        let url = announce_url("http://t.example/announce", &params());
        assert_eq!(
            url,
            "http://t.example/announce?info_hash=%12%20a%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%FF\
             &peer_id=-BI0001-abcdefghijkl&port=6881&uploaded=10&downloaded=20&left=30&compact=1\
             &key=00000abc&event=started&numwant=50&trackerid=t%261"
        );
        let mut p = params();
        p.event = AnnounceEvent::None;
        p.numwant = None;
        p.tracker_id = None;
        let url = announce_url("http://t/a?passkey=x", &p);
        assert!(url.starts_with("http://t/a?passkey=x&info_hash="));
        assert!(!url.contains("event="));
        assert!(!url.contains("numwant="));
    }

    #[test]
    fn scrape_url_follows_bep48() {
        let cases = [
            (
                "http://example.com/announce",
                Some("http://example.com/scrape"),
            ),
            (
                "http://example.com/x/announce",
                Some("http://example.com/x/scrape"),
            ),
            (
                "http://example.com/announce.php",
                Some("http://example.com/scrape.php"),
            ),
            ("http://example.com/a", None),
            (
                "http://example.com/announce?x2%0644",
                Some("http://example.com/scrape?x2%0644"),
            ),
            (
                "http://example.com/announce?x=2/4",
                Some("http://example.com/scrape?x=2/4"),
            ),
            ("http://example.com/x%064announce", None),
            ("http://announce", None),
        ];
        for (a, s) in cases {
            assert_eq!(scrape_url(a).as_deref(), s, "{a}");
        }
        assert_eq!(
            scrape_query("http://h/scrape", &[InfoHash([1; 20]), InfoHash([2; 20])]),
            format!(
                "http://h/scrape?info_hash={}&info_hash={}",
                "%01".repeat(20),
                "%02".repeat(20)
            )
        );
    }

    #[test]
    fn parses_compact_and_dictionary_peers() {
        let compact = b"d8:completei5e10:incompletei3e8:intervali1800e12:min intervali60e\
5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x506:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\
10:tracker id2:ab15:warning message4:careee";
        let r = parse_announce(compact, 1 << 16).unwrap();
        assert_eq!(r.interval, Duration::from_secs(1800));
        assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
        assert_eq!((r.complete, r.incomplete), (Some(5), Some(3)));
        assert_eq!(r.tracker_id.as_deref(), Some(&b"ab"[..]));
        assert_eq!(r.warning.as_deref(), Some("care"));
        let want: Vec<SocketAddr> = vec![
            "127.0.0.1:6881".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            "[::1]:1".parse().unwrap(),
        ];
        assert_eq!(r.peers, want);

        let dict = b"d8:intervali900e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881eed2:ip3:::14:porti2eed2:ip4:nope4:porti1eed2:ip9:127.0.0.14:porti99999eeee";
        let r = parse_announce(dict, 1 << 16).unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "[::1]:2".parse().unwrap()
            ]
        );
        assert_eq!(r.complete, None);
    }

    #[test]
    fn rejects_bad_replies_with_typed_errors() {
        assert!(matches!(
            parse_announce(b"d14:failure reason9:not founde", 100),
            Err(Error::Failure(f)) if f == "not found"
        ));
        assert!(matches!(
            parse_announce(b"<html>oops</html>", 100),
            Err(Error::Bencode(_))
        ));
        assert!(matches!(parse_announce(b"", 100), Err(Error::Bencode(_))));
        assert!(matches!(
            parse_announce(b"d8:intervali", 100),
            Err(Error::Bencode(_))
        ));
        assert!(matches!(
            parse_announce(b"li1ee", 100),
            Err(Error::BadResponse(_))
        ));
        assert!(matches!(
            parse_announce(b"d5:peersi1ee", 100),
            Err(Error::BadResponse(_))
        ));
        assert!(matches!(
            parse_announce(&[b'x'; 101], 100),
            Err(Error::TooLarge { limit: 100 })
        ));
        // A string claiming more than the limit is refused before allocation.
        assert!(parse_announce(b"d5:peers99999999999:", 100).is_err());
        // Trailing newline tolerated; negative interval clamps to zero.
        let r = parse_announce(b"d8:intervali-5ee\n", 100).unwrap();
        assert_eq!(r.interval, Duration::ZERO);
        assert!(r.peers.is_empty());
        assert!(matches!(
            parse_scrape(b"de", &[], 100),
            Err(Error::BadResponse(_))
        ));
    }

    #[test]
    fn scrape_reply_filters_and_orders() {
        let body = format!(
            "d5:filesd20:{}d8:completei1e10:downloadedi2e10:incompletei3ee20:{}d8:completei4eeee",
            "\u{1}".repeat(20),
            "\u{2}".repeat(20)
        );
        let all = parse_scrape(body.as_bytes(), &[], 1000).unwrap();
        assert_eq!(all.len(), 2);
        let some = parse_scrape(
            body.as_bytes(),
            &[InfoHash([2; 20]), InfoHash([1; 20])],
            1000,
        )
        .unwrap();
        assert_eq!(
            some,
            vec![
                (
                    InfoHash([2; 20]),
                    ScrapeStats {
                        complete: 4,
                        downloaded: 0,
                        incomplete: 0
                    }
                ),
                (
                    InfoHash([1; 20]),
                    ScrapeStats {
                        complete: 1,
                        downloaded: 2,
                        incomplete: 3
                    }
                ),
            ]
        );
    }
}
