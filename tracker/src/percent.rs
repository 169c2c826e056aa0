//! Percent-encoding of raw bytes for tracker query strings (RFC 3986).

use std::fmt::Write as _;

/// Encodes `bytes` for use in a URL query: unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) are kept, every other byte becomes `%XX`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes a percent-encoded query component into raw bytes. `+` is a
/// space, as in HTML forms. Returns `None` for a malformed `%` escape.
pub fn decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = hex_val(*s.get(i + 1)?)?;
                let lo = hex_val(*s.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_and_binary_bytes() {
        assert_eq!(encode(b"aZ09-._~"), "aZ09-._~");
        assert_eq!(
            encode(&[0x00, 0xff, b' ', b'+', b'&', b'%']),
            "%00%FF%20%2B%26%25"
        );
    }

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(encode(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn decode_handles_plus_lowercase_and_errors() {
        assert_eq!(decode(b"a+b%2f%2F").unwrap(), b"a b//");
        assert_eq!(decode(b"%"), None);
        assert_eq!(decode(b"%4"), None);
        assert_eq!(decode(b"%zz"), None);
    }
}
