//! Parsing of the embedded tracker's HTTP requests (pure, no IO).

use std::net::IpAddr;

use bittern_wire::{InfoHash, PeerId};

use crate::percent;
use crate::types::AnnounceEvent;

/// Why a request head could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The head is longer than the limit.
    #[error("request head too large")]
    TooLarge,
    /// The request line is malformed.
    #[error("malformed request line")]
    Malformed,
    /// A method other than GET (or HEAD).
    #[error("method not allowed")]
    Method,
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The path, without the query.
    pub path: String,
    /// Decoded query parameters, in order (keys may repeat).
    pub query: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses the head of an HTTP request once it is complete. Returns
/// `Ok(None)` while the blank line ending the head has not arrived and
/// the buffer is within `max_head` bytes.
///
/// # Errors
/// [`RequestError`] for an oversized or malformed head.
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<HttpRequest>, RequestError> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| {
        // Be lenient with bare LF line endings.
        buf.windows(2).position(|w| w == b"\n\n")
    });
    let Some(end) = end else {
        return if buf.len() > max_head {
            Err(RequestError::TooLarge)
        } else {
            Ok(None)
        };
    };
    if end > max_head {
        return Err(RequestError::TooLarge);
    }
    let line_end = buf
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(RequestError::Malformed)?;
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed);
    };
    if !version.starts_with(b"HTTP/1.") {
        return Err(RequestError::Malformed);
    }
    if method != b"GET" && method != b"HEAD" {
        return Err(RequestError::Method);
    }
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    let path = percent::decode(path).ok_or(RequestError::Malformed)?;
    let path = String::from_utf8(path).map_err(|_| RequestError::Malformed)?;
    Ok(Some(HttpRequest {
        path,
        query: parse_query(query).ok_or(RequestError::Malformed)?,
    }))
}

/// Splits and decodes `a=b&c=d`. Returns `None` on a malformed escape.
pub fn parse_query(q: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    q.split(|&b| b == b'&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = match kv.iter().position(|&b| b == b'=') {
                Some(i) => (&kv[..i], &kv[i + 1..]),
                None => (kv, &b""[..]),
            };
            Some((percent::decode(k)?, percent::decode(v)?))
        })
        .collect()
}

fn get<'a>(query: &'a [(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<&'a [u8]> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_slice())
}

fn number<T: std::str::FromStr>(query: &[(Vec<u8>, Vec<u8>)], key: &[u8]) -> Option<T> {
    std::str::from_utf8(get(query, key)?).ok()?.parse().ok()
}

fn id20(v: &[u8]) -> Option<[u8; 20]> {
    <[u8; 20]>::try_from(v).ok()
}

/// An announce's parameters as the tracker sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The peer.
    pub peer_id: PeerId,
    /// The peer's listening port.
    pub port: u16,
    /// Bytes uploaded.
    pub uploaded: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes left (0: a seeder).
    pub left: u64,
    /// Event.
    pub event: AnnounceEvent,
    /// Compact reply wanted (the default unless `compact=0`).
    pub compact: bool,
    /// Leave `peer id` out of dictionary-form peers.
    pub no_peer_id: bool,
    /// Peers wanted.
    pub numwant: Option<u32>,
    /// The `ip` parameter, if given and parseable.
    pub ip: Option<IpAddr>,
}

impl AnnounceRequest {
    /// Reads an announce from query parameters.
    ///
    /// # Errors
    /// A `failure reason` text for a missing or invalid required parameter.
    pub fn from_query(q: &[(Vec<u8>, Vec<u8>)]) -> Result<AnnounceRequest, &'static str> {
        let info_hash = get(q, b"info_hash")
            .and_then(id20)
            .ok_or("missing or invalid info_hash")?;
        let peer_id = get(q, b"peer_id")
            .and_then(id20)
            .ok_or("missing or invalid peer_id")?;
        let port: u16 = number(q, b"port").ok_or("missing or invalid port")?;
        if port == 0 {
            return Err("invalid port");
        }
        Ok(AnnounceRequest {
            info_hash: InfoHash(info_hash),
            peer_id: PeerId(peer_id),
            port,
            uploaded: number(q, b"uploaded").unwrap_or(0),
            downloaded: number(q, b"downloaded").unwrap_or(0),
            left: number(q, b"left").unwrap_or(0),
            event: get(q, b"event").map_or(AnnounceEvent::None, AnnounceEvent::from_http),
            compact: get(q, b"compact") != Some(b"0"),
            no_peer_id: get(q, b"no_peer_id").is_some_and(|v| v == b"1"),
            numwant: number(q, b"numwant"),
            ip: std::str::from_utf8(get(q, b"ip").unwrap_or(b""))
                .ok()
                .and_then(|s| s.parse().ok()),
        })
    }
}

/// The info hashes of a scrape (`info_hash` may repeat; none means all).
/// Values that are not 20 bytes are skipped.
pub fn scrape_hashes(q: &[(Vec<u8>, Vec<u8>)]) -> Vec<InfoHash> {
    q.iter()
        .filter(|(k, _)| k == b"info_hash")
        .filter_map(|(_, v)| id20(v).map(InfoHash))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_needs_blank_line_and_respects_limit() {
        assert_eq!(
            parse_head(b"GET /announce HTTP/1.1\r\nHost: x\r\n", 100),
            Ok(None)
        );
        assert_eq!(parse_head(&[b'a'; 101], 100), Err(RequestError::TooLarge));
        let mut long = b"GET /".to_vec();
        long.extend_from_slice(&[b'a'; 200]);
        long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(parse_head(&long, 100), Err(RequestError::TooLarge));
    }

    #[test]
    fn parses_request_line_and_query() {
        let req = parse_head(
            b"GET /announce?info_hash=%00%FFa&x&y=1+2 HTTP/1.1\r\nHost: h\r\n\r\n",
            1024,
        )
        .unwrap()
        .unwrap();
        assert_eq!(req.path, "/announce");
        assert_eq!(
            req.query,
            vec![
                (b"info_hash".to_vec(), vec![0, 0xff, b'a']),
                (b"x".to_vec(), vec![]),
                (b"y".to_vec(), b"1 2".to_vec()),
            ]
        );
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\n\r\n", 99),
            Err(RequestError::Method)
        );
        assert_eq!(
            parse_head(b"GET /\r\n\r\n", 99),
            Err(RequestError::Malformed)
        );
        assert_eq!(
            parse_head(b"GET / SPDY/3\r\n\r\n", 99),
            Err(RequestError::Malformed)
        );
        assert_eq!(
            parse_head(b"GET /?a=%G0 HTTP/1.0\r\n\r\n", 99),
            Err(RequestError::Malformed)
        );
        assert!(parse_head(b"GET / HTTP/1.0\n\n", 99).unwrap().is_some());
    }

    #[test]
    fn announce_from_query() {
        let ih = "%01".repeat(20);
        let pid = "-BT0001-aaaaaaaaaaaa";
        let q = parse_query(
            format!("info_hash={ih}&peer_id={pid}&port=6881&left=5&event=started&compact=0&numwant=7&ip=10.0.0.2")
                .as_bytes(),
        )
        .unwrap();
        let a = AnnounceRequest::from_query(&q).unwrap();
        assert_eq!(a.info_hash, InfoHash([1; 20]));
        assert_eq!(a.peer_id.0, *b"-BT0001-aaaaaaaaaaaa");
        assert_eq!((a.port, a.left, a.uploaded), (6881, 5, 0));
        assert_eq!(a.event, AnnounceEvent::Started);
        assert!(!a.compact);
        assert_eq!(a.numwant, Some(7));
        assert_eq!(a.ip, Some("10.0.0.2".parse().unwrap()));

        let q = parse_query(format!("info_hash={ih}&peer_id={pid}").as_bytes()).unwrap();
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err("missing or invalid port")
        );
        let q = parse_query(format!("info_hash=abc&peer_id={pid}&port=1").as_bytes()).unwrap();
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err("missing or invalid info_hash")
        );
    }

    #[test]
    fn scrape_hashes_repeat_and_skip_bad() {
        let q = parse_query(
            format!(
                "info_hash={}&info_hash=xx&info_hash={}",
                "%02".repeat(20),
                "%03".repeat(20)
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            scrape_hashes(&q),
            vec![InfoHash([2; 20]), InfoHash([3; 20])]
        );
    }
}
