//! Local Service Discovery (BEP 14) messages: the `BT-SEARCH` datagram
//! multicast on `239.192.152.143:6771` (and `[ff15::efc0:988f]:6771`).
//!
//! [`LsdAnnounce::encode`] writes exactly what libtorrent 2.0 sends
//! (lower-case hex, a `cookie` line, and the trailing blank lines):
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n
//! Infohash: <40 hex>\r\n[Infohash: ...\r\n]cookie: <cookie>\r\n\r\n\r\n
//! ```
//!
//! Transmission finds headers by case-sensitive search for `"Port: "`,
//! `"Infohash: "` and `"cookie: "`, so those spellings are kept byte for
//! byte. [`LsdAnnounce::parse`] is lenient the other way: header names in
//! any case, hashes in either case (Transmission sends upper case), LF or
//! CRLF line ends; hashes that are not 40 hex digits are skipped, as
//! libtorrent skips them. The peer's address is the datagram's source
//! address, never a header.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::InfoHash;

/// The LSD port.
pub const LSD_PORT: u16 = 6771;
/// The IPv4 multicast group (organisation-local scope).
pub const LSD_GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
/// The IPv6 multicast group (site-local scope).
pub const LSD_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f);
/// The largest datagram BEP 14 allows; [`LsdAnnounce::encode_many`] splits
/// to stay under it.
pub const MAX_DATAGRAM: usize = 1400;

/// The IPv4 group and port.
pub fn group_v4() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(LSD_GROUP_V4, LSD_PORT))
}

/// The IPv6 group and port.
pub fn group_v6() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(LSD_GROUP_V6, LSD_PORT, 0, 0))
}

/// Why a datagram is not an LSD announce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LsdError {
    /// The first line is not `BT-SEARCH * HTTP/1.x` (x ≥ 1).
    #[error("not a bt-search request")]
    NotBtSearch,
    /// No `Port` header, or one that is not a port number 1-65535.
    #[error("missing or invalid port header")]
    BadPort,
    /// No `Infohash` header with 40 hex digits.
    #[error("no valid infohash header")]
    NoInfoHash,
    /// Not UTF-8 text.
    #[error("datagram is not text")]
    NotText,
}

/// One `BT-SEARCH` announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsdAnnounce {
    /// The announcer's BitTorrent listen port.
    pub port: u16,
    /// The torrents announced (v1 info hashes, or truncated v2 ones).
    pub info_hashes: Vec<InfoHash>,
    /// An opaque token the sender uses to recognise its own announces
    /// looped back to it.
    pub cookie: Option<String>,
}

/// `Host` header value for a group address: `239.192.152.143:6771` or
/// `[ff15::efc0:988f]:6771`.
fn host(group: SocketAddr) -> String {
    group.to_string()
}

impl LsdAnnounce {
    /// The datagram for `group` (see [`group_v4`], [`group_v6`]), in
    /// libtorrent's exact format. Does not split: see
    /// [`encode_many`](Self::encode_many).
    pub fn encode(&self, group: SocketAddr) -> Vec<u8> {
        let mut s = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: {}\r\nPort: {}\r\n",
            host(group),
            self.port
        );
        for h in &self.info_hashes {
            s.push_str("Infohash: ");
            s.push_str(&h.to_hex());
            s.push_str("\r\n");
        }
        if let Some(c) = &self.cookie {
            s.push_str("cookie: ");
            s.push_str(c);
            s.push_str("\r\n");
        }
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    /// Datagrams announcing every hash of `self`, as many hashes per
    /// datagram as fit in [`MAX_DATAGRAM`] bytes (at least one each).
    pub fn encode_many(&self, group: SocketAddr) -> Vec<Vec<u8>> {
        let empty = LsdAnnounce {
            info_hashes: Vec::new(),
            ..self.clone()
        };
        let base = empty.encode(group).len();
        // "Infohash: " + 40 + CRLF
        let per = (MAX_DATAGRAM.saturating_sub(base) / 52).max(1);
        self.info_hashes
            .chunks(per)
            .map(|c| {
                LsdAnnounce {
                    info_hashes: c.to_vec(),
                    ..empty.clone()
                }
                .encode(group)
            })
            .collect()
    }

    /// Parses a datagram.
    ///
    /// # Errors
    /// [`LsdError`] when it is not a `BT-SEARCH` request with a port and at
    /// least one valid info hash.
    pub fn parse(datagram: &[u8]) -> Result<LsdAnnounce, LsdError> {
        let text = std::str::from_utf8(datagram).map_err(|_| LsdError::NotText)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next().unwrap_or("");
        let version = first
            .strip_prefix("BT-SEARCH * HTTP/")
            .ok_or(LsdError::NotBtSearch)?;
        let (major, minor) = version
            .trim()
            .split_once('.')
            .ok_or(LsdError::NotBtSearch)?;
        let minor_ok = minor.parse::<u32>().is_ok_and(|m| m >= 1);
        if major != "1" || !minor_ok {
            return Err(LsdError::NotBtSearch);
        }
        let mut port = None;
        let mut info_hashes = Vec::new();
        let mut cookie = None;
        for line in lines {
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("port") {
                port = value.parse::<u16>().ok().filter(|&p| p != 0);
                if port.is_none() {
                    return Err(LsdError::BadPort);
                }
            } else if name.eq_ignore_ascii_case("infohash") {
                if let Ok(h) = InfoHash::from_hex(value) {
                    if !info_hashes.contains(&h) {
                        info_hashes.push(h);
                    }
                }
            } else if name.eq_ignore_ascii_case("cookie") {
                cookie = Some(value.to_string());
            }
        }
        let port = port.ok_or(LsdError::BadPort)?;
        if info_hashes.is_empty() {
            return Err(LsdError::NoInfoHash);
        }
        Ok(LsdAnnounce {
            port,
            info_hashes,
            cookie,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ih(hex: &str) -> InfoHash {
        InfoHash::from_hex(hex).unwrap()
    }

    const H: &str = "5891ecf3651c5dd3ea8beb4b0a36dcd5e6e57e1d";

    #[test]
    fn encodes_exactly_as_libtorrent() {
        let a = LsdAnnounce {
            port: 36892,
            info_hashes: vec![ih(H)],
            cookie: Some("7d67ae0b".into()),
        };
        let want = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 36892\r\n\
             Infohash: {H}\r\ncookie: 7d67ae0b\r\n\r\n\r\n"
        );
        assert_eq!(a.encode(group_v4()), want.as_bytes());
        assert_eq!(LsdAnnounce::parse(want.as_bytes()), Ok(a.clone()));
        let v6 = String::from_utf8(a.encode(group_v6())).unwrap();
        assert!(v6.contains("Host: [ff15::efc0:988f]:6771\r\n"), "{v6}");
    }

    #[test]
    fn parses_transmission_upper_case_and_odd_header_case() {
        // Transmission 3.00: upper-case hex, no cookie.
        let upper = H.to_ascii_uppercase();
        let msg = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\n\
             Infohash: {upper}\r\n\r\n\r\n"
        );
        let a = LsdAnnounce::parse(msg.as_bytes()).unwrap();
        assert_eq!(a.port, 51413);
        assert_eq!(a.info_hashes, vec![ih(H)]);
        assert_eq!(a.cookie, None);
        let odd = format!("BT-SEARCH * HTTP/1.1\nPORT:  7\nINFOHASH:{H}\nCookie: x\n\n");
        let a = LsdAnnounce::parse(odd.as_bytes()).unwrap();
        assert_eq!((a.port, a.cookie.as_deref()), (7, Some("x")));
    }

    #[test]
    fn several_hashes_bad_ones_skipped() {
        let other = "00112233445566778899aabbccddeeff00112233";
        let msg = format!(
            "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: {H}\r\nInfohash: abc\r\n\
             Infohash: {other}\r\nInfohash: {H}\r\nInfohash: {}zz\r\n\r\n",
            &H[..38]
        );
        let a = LsdAnnounce::parse(msg.as_bytes()).unwrap();
        assert_eq!(a.info_hashes, vec![ih(H), ih(other)]);
    }

    #[test]
    fn rejects() {
        let ok_tail = format!("Port: 1\r\nInfohash: {H}\r\n\r\n");
        for (head, err) in [
            ("M-SEARCH * HTTP/1.1\r\n", LsdError::NotBtSearch),
            ("BT-SEARCH * HTTP/1.0\r\n", LsdError::NotBtSearch),
            ("BT-SEARCH * HTTP/2.0\r\n", LsdError::NotBtSearch),
            ("bt-search * HTTP/1.1\r\n", LsdError::NotBtSearch),
        ] {
            let m = format!("{head}{ok_tail}");
            assert_eq!(LsdAnnounce::parse(m.as_bytes()), Err(err), "{head}");
        }
        let cases = [
            (
                format!("BT-SEARCH * HTTP/1.1\r\nInfohash: {H}\r\n\r\n"),
                LsdError::BadPort,
            ),
            (
                format!("BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: {H}\r\n\r\n"),
                LsdError::BadPort,
            ),
            (
                format!("BT-SEARCH * HTTP/1.1\r\nPort: 70000\r\nInfohash: {H}\r\n\r\n"),
                LsdError::BadPort,
            ),
            (
                "BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n\r\n".to_string(),
                LsdError::NoInfoHash,
            ),
            // Headers after the blank line are not headers.
            (
                format!("BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n\r\nInfohash: {H}\r\n"),
                LsdError::NoInfoHash,
            ),
        ];
        for (m, err) in cases {
            assert_eq!(LsdAnnounce::parse(m.as_bytes()), Err(err), "{m:?}");
        }
        assert_eq!(LsdAnnounce::parse(&[0xff, 0xfe]), Err(LsdError::NotText));
    }

    #[test]
    fn encode_many_splits_under_the_limit() {
        let hashes: Vec<InfoHash> = (0..100u8).map(|i| InfoHash([i; 20])).collect();
        let a = LsdAnnounce {
            port: 6881,
            info_hashes: hashes.clone(),
            cookie: Some("abc".into()),
        };
        let grams = a.encode_many(group_v4());
        assert!(grams.len() > 1);
        let mut back = Vec::new();
        for g in &grams {
            assert!(g.len() <= MAX_DATAGRAM, "{}", g.len());
            back.extend(LsdAnnounce::parse(g).unwrap().info_hashes);
        }
        assert_eq!(back, hashes);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let base = LsdAnnounce {
            port: 1,
            info_hashes: vec![ih(H)],
            cookie: Some("c".into()),
        }
        .encode(group_v4());
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut m = base.clone();
            let cut = (seed % (m.len() as u64 + 1)) as usize;
            m.truncate(cut);
            if !m.is_empty() {
                let i = (seed >> 20) as usize % m.len();
                m[i] = (seed >> 40) as u8;
            }
            let _ = LsdAnnounce::parse(&m);
        }
        for i in 0..=base.len() {
            let _ = LsdAnnounce::parse(&base[..i]);
        }
    }
}
