//! 20-byte identifiers: [`InfoHash`] and [`PeerId`].

use std::fmt;

use rand::Rng;
use thiserror::Error;

/// Error parsing a hex identifier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string was not exactly 40 characters long.
    #[error("expected 40 hex digits, got {0} characters")]
    BadLength(usize),
    /// A character was not a hex digit.
    #[error("invalid hex digit at position {0}")]
    BadDigit(usize),
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn parse_hex20(s: &str) -> Result<[u8; 20], IdError> {
    let b = s.as_bytes();
    if b.len() != 40 {
        return Err(IdError::BadLength(s.chars().count()));
    }
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        let hi = hex_value(b[2 * i]).ok_or(IdError::BadDigit(2 * i))?;
        let lo = hex_value(b[2 * i + 1]).ok_or(IdError::BadDigit(2 * i + 1))?;
        *byte = (hi << 4) | lo;
    }
    Ok(out)
}

/// Lowercase hex of any byte string.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

macro_rules! id20 {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 20]);

        impl $name {
            /// Lowercase hex, 40 characters.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }

            /// Parse 40 hex digits (either case).
            ///
            /// # Errors
            /// [`IdError`] if the length is wrong or a character is not a hex digit.
            pub fn from_hex(s: &str) -> Result<Self, IdError> {
                parse_hex20(s).map(Self)
            }

            /// The raw 20 bytes.
            pub fn as_bytes(&self) -> &[u8; 20] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl From<[u8; 20]> for $name {
            fn from(b: [u8; 20]) -> Self {
                Self(b)
            }
        }
    };
}

id20!(
    /// A v1 info hash: SHA-1 of the bencoded `info` dictionary exactly as it
    /// stands in the `.torrent` file.
    InfoHash
);

id20!(
    /// A peer id, sent in the handshake and to trackers.
    PeerId
);

impl PeerId {
    /// A fresh Azureus-style peer id: `prefix` (e.g. `b"-BT0100-"`, at most
    /// 20 bytes; longer prefixes are cut) followed by random alphanumerics.
    pub fn generate(prefix: &[u8]) -> PeerId {
        const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut id = [0u8; 20];
        let n = prefix.len().min(20);
        id[..n].copy_from_slice(&prefix[..n]);
        let mut rng = rand::rng();
        for b in &mut id[n..] {
            *b = ALNUM[rng.random_range(0..ALNUM.len())];
        }
        PeerId(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(h.to_hex(), "ab".repeat(20));
        assert_eq!(InfoHash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(InfoHash::from_hex(&"AB".repeat(20)).unwrap(), h);
        assert_eq!(format!("{h:?}"), format!("InfoHash({})", "ab".repeat(20)));
    }

    #[test]
    fn hex_errors() {
        assert_eq!(InfoHash::from_hex("abc"), Err(IdError::BadLength(3)));
        let mut s = "0".repeat(40);
        s.replace_range(7..8, "g");
        assert_eq!(InfoHash::from_hex(&s), Err(IdError::BadDigit(7)));
        // multi-byte characters never panic on slicing
        assert!(InfoHash::from_hex(&"é".repeat(20)).is_err());
    }

    #[test]
    fn generate_peer_id() {
        let a = PeerId::generate(b"-BT0100-");
        let b = PeerId::generate(b"-BT0100-");
        assert_eq!(&a.0[..8], b"-BT0100-");
        assert!(a.0[8..].iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(a, b);
        let long = PeerId::generate(&[b'x'; 30]);
        assert_eq!(long.0, [b'x'; 20]);
    }
}
