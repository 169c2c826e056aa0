//! BEP 9 magnet links: `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<url>&x.pe=<peer>`,
//! with the BEP 52 v2 form `xt=urn:btmh:1220<sha-256 hex>` (alone, or
//! beside `btih` in a hybrid link), `ws` web seeds and `xl` exact length.
//! Unknown parameters are ignored.

use std::net::SocketAddr;

use thiserror::Error;

use crate::id::InfoHash;

/// A magnet link that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MagnetError {
    /// It does not start with `magnet:?`.
    #[error("not a magnet link")]
    NotMagnet,
    /// Neither an `xt=urn:btih:` nor an `xt=urn:btmh:1220` parameter.
    #[error("no `xt=urn:btih:` or `xt=urn:btmh:` info hash")]
    MissingInfoHash,
    /// The btih value is neither 40 hex nor 32 base32 characters.
    #[error("invalid btih info hash {0:?}")]
    BadInfoHash(String),
    /// A SHA-256 (`1220`) btmh value that is not 64 hex digits.
    #[error("invalid btmh info hash {0:?}")]
    BadV2InfoHash(String),
    /// A `%` not followed by two hex digits.
    #[error("invalid percent escape in {0:?}")]
    BadEscape(String),
}

/// A parsed magnet link. At least one of `info_hash` and `info_hash_v2`
/// is present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Magnet {
    /// The v1 info hash, from `xt=urn:btih:` (hex or base32).
    pub info_hash: Option<InfoHash>,
    /// The v2 info hash (SHA-256 of the info dictionary), from
    /// `xt=urn:btmh:1220<64 hex>`. bittern cannot fetch a v2-only torrent
    /// yet; the value is kept so a hybrid link round-trips.
    pub info_hash_v2: Option<[u8; 32]>,
    /// `dn`, the display name.
    pub display_name: Option<String>,
    /// `xl`, the exact total length in bytes, if given and a number.
    pub exact_length: Option<u64>,
    /// Every `tr`, in order, without duplicates or empty values.
    pub trackers: Vec<String>,
    /// Every `ws` web seed URL, in order, without duplicates or empty values.
    pub web_seeds: Vec<String>,
    /// Every `x.pe` peer as written (`a.b.c.d:p`, `[v6]:p`, `host:p`), in
    /// order; [`Magnet::peer_addrs`] reads them.
    pub peers: Vec<String>,
}

/// An `x.pe` peer: an address, or a host name kept as a string to be
/// resolved by whoever dials it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MagnetPeer {
    /// `a.b.c.d:port` or `[v6]:port`.
    Addr(SocketAddr),
    /// `name:port`.
    Host {
        /// The host name.
        host: String,
        /// The port (never 0).
        port: u16,
    },
}

impl MagnetPeer {
    /// Read one `x.pe` value; `None` if it has no valid non-zero port or
    /// an empty or bracketed-but-invalid host.
    pub fn parse(s: &str) -> Option<MagnetPeer> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return (a.port() != 0).then_some(MagnetPeer::Addr(a));
        }
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse::<u16>().ok().filter(|&p| p != 0)?;
        let bad = |c: char| c.is_whitespace() || matches!(c, '[' | ']' | ':' | '/' | '@');
        if host.is_empty() || host.contains(bad) {
            return None;
        }
        Some(MagnetPeer::Host {
            host: host.to_owned(),
            port,
        })
    }
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, MagnetError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(unhex);
                let lo = b.get(i + 2).copied().and_then(unhex);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(MagnetError::BadEscape(s.to_owned())),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn percent_encode(s: &str, out: &mut String) {
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
}

fn parse_btih(v: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(v.to_owned());
    match v.len() {
        40 => InfoHash::from_hex(v).map_err(|_| bad()),
        32 => {
            let bytes = data_encoding::BASE32
                .decode(v.to_ascii_uppercase().as_bytes())
                .map_err(|_| bad())?;
            let arr: [u8; 20] = bytes.try_into().map_err(|_| bad())?;
            Ok(InfoHash(arr))
        }
        _ => Err(bad()),
    }
}

/// The 32 bytes of a `btmh` multihash if it is SHA-256 (`0x12`, length
/// `0x20`); `Ok(None)` for another hash function.
fn parse_btmh(v: &str) -> Result<Option<[u8; 32]>, MagnetError> {
    let Some(hex) = v.get(..4).filter(|p| *p == "1220").map(|_| &v[4..]) else {
        return Ok(None);
    };
    let bad = || MagnetError::BadV2InfoHash(v.to_owned());
    let b = hex.as_bytes();
    if b.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let hi = unhex(b[2 * i]).ok_or_else(bad)?;
        let lo = unhex(b[2 * i + 1]).ok_or_else(bad)?;
        *o = hi << 4 | lo;
    }
    Ok(Some(out))
}

fn strip_prefix_ci<'a>(v: &'a str, prefix: &str) -> Option<&'a str> {
    v.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &v[prefix.len()..])
}

fn push_unique(list: &mut Vec<String>, v: String) {
    if !v.is_empty() && !list.contains(&v) {
        list.push(v);
    }
}

impl Magnet {
    /// The 20-byte hash that names the swarm in the peer handshake and to
    /// trackers: the v1 hash, or for a v2-only link the SHA-256 truncated
    /// to 20 bytes (BEP 52).
    pub fn swarm_hash(&self) -> InfoHash {
        match (self.info_hash, self.info_hash_v2) {
            (Some(h), _) => h,
            (None, Some(v2)) => {
                let mut h = [0u8; 20];
                h.copy_from_slice(&v2[..20]);
                InfoHash(h)
            }
            (None, None) => InfoHash::default(),
        }
    }

    /// The `x.pe` peers that parse ([`MagnetPeer::parse`]), in order.
    pub fn peer_addrs(&self) -> Vec<MagnetPeer> {
        self.peers
            .iter()
            .filter_map(|p| MagnetPeer::parse(p))
            .collect()
    }

    /// Parse a magnet URI.
    ///
    /// # Errors
    /// [`MagnetError`] if it is not a magnet link, has no usable v1 info
    /// hash, or has a broken percent escape.
    pub fn parse(uri: &str) -> Result<Self, MagnetError> {
        let query = uri
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &uri[8..])
            .ok_or(MagnetError::NotMagnet)?;
        let mut m = Magnet::default();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = param.split_once('=').unwrap_or((param, ""));
            // `xt.1`, `tr.2`: numbered variants mean the same
            let key = key.split_once('.').map_or(key, |(k, n)| {
                if n.bytes().all(|b| b.is_ascii_digit()) {
                    k
                } else {
                    key
                }
            });
            match key {
                "xt" => {
                    let v = percent_decode(raw, false)?;
                    if let Some(h) = strip_prefix_ci(&v, "urn:btih:") {
                        if m.info_hash.is_none() {
                            m.info_hash = Some(parse_btih(h)?);
                        }
                    } else if let Some(h) = strip_prefix_ci(&v, "urn:btmh:") {
                        if m.info_hash_v2.is_none() {
                            m.info_hash_v2 = parse_btmh(h)?;
                        }
                    }
                }
                "dn" => m.display_name = Some(percent_decode(raw, true)?),
                "xl" => m.exact_length = percent_decode(raw, false)?.parse().ok(),
                "tr" => push_unique(&mut m.trackers, percent_decode(raw, false)?),
                "ws" => push_unique(&mut m.web_seeds, percent_decode(raw, false)?),
                "x.pe" => m.peers.push(percent_decode(raw, false)?),
                _ => {}
            }
        }
        if m.info_hash.is_none() && m.info_hash_v2.is_none() {
            return Err(MagnetError::MissingInfoHash);
        }
        Ok(m)
    }

    /// Format as a URI (hex info hashes, values percent-encoded); parsing
    /// it gives back an equal [`Magnet`] (one with neither hash formats to
    /// a link that does not parse).
    pub fn to_uri(&self) -> String {
        let mut s = String::from("magnet:?");
        let mut sep = "";
        if let Some(h) = self.info_hash {
            s.push_str(&format!("xt=urn:btih:{}", h.to_hex()));
            sep = "&";
        }
        if let Some(h) = self.info_hash_v2 {
            s.push_str(&format!("{sep}xt=urn:btmh:1220{}", crate::id::to_hex(&h)));
        }
        if let Some(dn) = &self.display_name {
            s.push_str("&dn=");
            percent_encode(dn, &mut s);
        }
        if let Some(xl) = self.exact_length {
            s.push_str(&format!("&xl={xl}"));
        }
        for t in &self.trackers {
            s.push_str("&tr=");
            percent_encode(t, &mut s);
        }
        for w in &self.web_seeds {
            s.push_str("&ws=");
            percent_encode(w, &mut s);
        }
        for p in &self.peers {
            s.push_str("&x.pe=");
            percent_encode(p, &mut s);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    const V2: &str = "caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e";

    fn v2_bytes() -> [u8; 32] {
        parse_btmh(&format!("1220{V2}")).unwrap().unwrap()
    }

    #[test]
    fn parses_hex_and_base32() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Some+File%20%C3%A9&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce\
             &tr=udp://127.0.0.1:6969&tr=udp://127.0.0.1:6969&x.pe=127.0.0.1:6881&foo=bar"
        ))
        .unwrap();
        assert_eq!(m.info_hash.unwrap().to_hex(), HEX);
        assert_eq!(m.info_hash_v2, None);
        assert_eq!(m.display_name.as_deref(), Some("Some File é"));
        assert_eq!(
            m.trackers,
            vec!["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"]
        );
        assert_eq!(m.peers, vec!["127.0.0.1:6881"]);

        let b32 = data_encoding::BASE32.encode(&InfoHash::from_hex(HEX).unwrap().0);
        assert_eq!(b32.len(), 32);
        let m2 = Magnet::parse(&format!("MAGNET:?xt=urn:btih:{}", b32.to_lowercase())).unwrap();
        assert_eq!(m2.info_hash.unwrap().to_hex(), HEX);
        assert_eq!(m2.display_name, None);
        assert_eq!(m2.swarm_hash().to_hex(), HEX);
    }

    #[test]
    fn v2_alone_and_hybrid() {
        let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{V2}&dn=x")).unwrap();
        assert_eq!(m.info_hash, None);
        assert_eq!(crate::id::to_hex(&m.info_hash_v2.unwrap()), V2);
        // the swarm is named by the first 20 bytes of the SHA-256
        assert_eq!(m.swarm_hash().to_hex(), V2[..40]);

        let h = Magnet::parse(&format!(
            "magnet:?xt=urn:btmh:1220{}&xt=urn:btih:{HEX}&xt=urn:btmh:1220{}",
            V2.to_uppercase(),
            "0".repeat(64)
        ))
        .unwrap();
        assert_eq!(h.info_hash.unwrap().to_hex(), HEX);
        assert_eq!(h.info_hash_v2, Some(v2_bytes()));
        assert_eq!(h.swarm_hash().to_hex(), HEX);
        // another multihash function is not an error, just not used
        let other =
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1114abcd")).unwrap();
        assert_eq!(other.info_hash_v2, None);
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btmh:1114abcd"),
            Err(MagnetError::MissingInfoHash)
        );
    }

    #[test]
    fn web_seeds_length_and_peers() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&ws=http%3A%2F%2F127.0.0.1%2Fa&ws=&ws=http://127.0.0.1/b\
             &xl=1048576&x.pe=127.0.0.1:6881&x.pe=%5B%3A%3A1%5D:6882&x.pe=[::1]:6883\
             &x.pe=seed.example:51413&x.pe=nonsense&x.pe=127.0.0.1:0&x.pe=[::1:1&kt=a+b&so=0-3"
        ))
        .unwrap();
        assert_eq!(
            m.web_seeds,
            vec!["http://127.0.0.1/a", "http://127.0.0.1/b"]
        );
        assert_eq!(m.exact_length, Some(1 << 20));
        assert_eq!(m.peers.len(), 7);
        assert_eq!(
            m.peer_addrs(),
            vec![
                MagnetPeer::Addr("127.0.0.1:6881".parse().unwrap()),
                MagnetPeer::Addr("[::1]:6882".parse().unwrap()),
                MagnetPeer::Addr("[::1]:6883".parse().unwrap()),
                MagnetPeer::Host {
                    host: "seed.example".into(),
                    port: 51413
                },
            ]
        );
        let bad_xl = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xl=-1")).unwrap();
        assert_eq!(bad_xl.exact_length, None);
    }

    #[test]
    fn round_trip() {
        let m = Magnet {
            info_hash: Some(InfoHash::from_hex(HEX).unwrap()),
            info_hash_v2: Some(v2_bytes()),
            display_name: Some("a b&c=d/é".into()),
            exact_length: Some(12345),
            trackers: vec!["http://127.0.0.1:6969/announce?x=1&y=2".into()],
            web_seeds: vec!["http://127.0.0.1:8080/files/".into()],
            peers: vec!["[::1]:6881".into(), "127.0.0.1:1".into(), "host:2".into()],
        };
        let uri = m.to_uri();
        assert!(uri.starts_with(&format!(
            "magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{V2}&dn=a%20b%26c%3Dd%2F%C3%A9&xl=12345"
        )));
        assert_eq!(Magnet::parse(&uri).unwrap(), m);
        // v2 only
        let v2 = Magnet {
            info_hash: None,
            ..m
        };
        let uri = v2.to_uri();
        assert!(uri.starts_with(&format!("magnet:?xt=urn:btmh:1220{V2}&dn=")));
        assert_eq!(Magnet::parse(&uri).unwrap(), v2);
    }

    #[test]
    fn errors() {
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(Magnet::parse("magn"), Err(MagnetError::NotMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x"),
            Err(MagnetError::MissingInfoHash)
        );
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btih:abc"),
            Err(MagnetError::BadInfoHash("abc".into()))
        );
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%zz")),
            Err(MagnetError::BadEscape(_))
        ));
        assert!(Magnet::parse("magnet:?xt=urn:btih:ééééééééééééééééééééé").is_err());
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btmh:1220abc"),
            Err(MagnetError::BadV2InfoHash("1220abc".into()))
        );
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{}", "é".repeat(32))),
            Err(MagnetError::BadV2InfoHash(_))
        ));
    }
}
