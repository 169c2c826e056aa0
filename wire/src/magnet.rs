//! BEP 9 magnet links: `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<url>&x.pe=<peer>`.

use thiserror::Error;

use crate::id::InfoHash;

/// A magnet link that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MagnetError {
    /// It does not start with `magnet:?`.
    #[error("not a magnet link")]
    NotMagnet,
    /// No `xt=urn:btih:` parameter.
    #[error("no `xt=urn:btih:` info hash")]
    MissingInfoHash,
    /// The btih value is neither 40 hex nor 32 base32 characters.
    #[error("invalid btih info hash {0:?}")]
    BadInfoHash(String),
    /// A `%` not followed by two hex digits.
    #[error("invalid percent escape in {0:?}")]
    BadEscape(String),
}

/// A parsed magnet link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// From `xt=urn:btih:` (hex or base32).
    pub info_hash: InfoHash,
    /// `dn`, the display name.
    pub display_name: Option<String>,
    /// Every `tr`, in order, without duplicates.
    pub trackers: Vec<String>,
    /// Every `x.pe` peer address (`host:port`), in order.
    pub peers: Vec<String>,
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

impl Magnet {
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
        let mut info_hash = None;
        let mut display_name = None;
        let mut trackers: Vec<String> = Vec::new();
        let mut peers = Vec::new();
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
                    if let Some(h) = v
                        .get(..9)
                        .filter(|p| p.eq_ignore_ascii_case("urn:btih:"))
                        .map(|_| &v[9..])
                    {
                        if info_hash.is_none() {
                            info_hash = Some(parse_btih(h)?);
                        }
                    }
                }
                "dn" => display_name = Some(percent_decode(raw, true)?),
                "tr" => {
                    let t = percent_decode(raw, false)?;
                    if !t.is_empty() && !trackers.contains(&t) {
                        trackers.push(t);
                    }
                }
                "x.pe" => peers.push(percent_decode(raw, false)?),
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::MissingInfoHash)?,
            display_name,
            trackers,
            peers,
        })
    }

    /// Format as a URI (hex info hash, values percent-encoded).
    pub fn to_uri(&self) -> String {
        let mut s = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        if let Some(dn) = &self.display_name {
            s.push_str("&dn=");
            percent_encode(dn, &mut s);
        }
        for t in &self.trackers {
            s.push_str("&tr=");
            percent_encode(t, &mut s);
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

    #[test]
    fn parses_hex_and_base32() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Some+File%20%C3%A9&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce\
             &tr=udp://127.0.0.1:6969&tr=udp://127.0.0.1:6969&x.pe=127.0.0.1:6881&foo=bar"
        ))
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("Some File é"));
        assert_eq!(
            m.trackers,
            vec!["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"]
        );
        assert_eq!(m.peers, vec!["127.0.0.1:6881"]);

        let b32 = data_encoding::BASE32.encode(&InfoHash::from_hex(HEX).unwrap().0);
        assert_eq!(b32.len(), 32);
        let m2 = Magnet::parse(&format!("MAGNET:?xt=urn:btih:{}", b32.to_lowercase())).unwrap();
        assert_eq!(m2.info_hash.to_hex(), HEX);
        assert_eq!(m2.display_name, None);
    }

    #[test]
    fn round_trip() {
        let m = Magnet {
            info_hash: InfoHash::from_hex(HEX).unwrap(),
            display_name: Some("a b&c=d/é".into()),
            trackers: vec!["http://127.0.0.1:6969/announce?x=1&y=2".into()],
            peers: vec!["[::1]:6881".into()],
        };
        let uri = m.to_uri();
        assert!(uri.starts_with(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c%3Dd%2F%C3%A9"
        )));
        assert_eq!(Magnet::parse(&uri).unwrap(), m);
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
        // v2-only links are not usable by a v1 client
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btmh:1220caf1e1c30e81cb361b9ee167c4aa64228a7fa4fa9f6105232b28ad099f3a302e"),
            Err(MagnetError::MissingInfoHash)
        );
    }
}
