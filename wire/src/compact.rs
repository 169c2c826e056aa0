//! Compact peer addresses: 6 bytes for IPv4 (BEP 23) and 18 bytes for IPv6
//! (BEP 7), each an address followed by a big-endian port, as used in
//! tracker replies, `ut_pex` messages (BEP 11) and the DHT.
//!
//! Decoding never fails: a buffer's trailing partial entry is reported by
//! [`compact_remainder`] so a caller can decide whether that is an error.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Bytes in one compact IPv4 peer (4 address + 2 port).
pub const COMPACT_V4_LEN: usize = 6;
/// Bytes in one compact IPv6 peer (16 address + 2 port).
pub const COMPACT_V6_LEN: usize = 18;

/// The compact entry length for an address family.
pub fn compact_len(v6: bool) -> usize {
    if v6 {
        COMPACT_V6_LEN
    } else {
        COMPACT_V4_LEN
    }
}

/// Append the compact form of `addr` (6 or 18 bytes, by its family).
pub fn encode_compact(addr: SocketAddr, out: &mut Vec<u8>) {
    match addr {
        SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Read one 6-byte compact IPv4 peer.
pub fn decode_compact_v4(b: &[u8; COMPACT_V4_LEN]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(b[0], b[1], b[2], b[3]),
        u16::from_be_bytes([b[4], b[5]]),
    )
}

/// Read one 18-byte compact IPv6 peer.
pub fn decode_compact_v6(b: &[u8; COMPACT_V6_LEN]) -> SocketAddrV6 {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&b[..16]);
    SocketAddrV6::new(Ipv6Addr::from(ip), u16::from_be_bytes([b[16], b[17]]), 0, 0)
}

/// Iterate the whole entries of a compact list (IPv4 when `v6` is false,
/// IPv6 otherwise). A trailing partial entry is skipped; see
/// [`compact_remainder`].
pub fn iter_compact(buf: &[u8], v6: bool) -> impl Iterator<Item = SocketAddr> + '_ {
    buf.chunks_exact(compact_len(v6)).map(move |c| {
        if v6 {
            let mut b = [0u8; COMPACT_V6_LEN];
            b.copy_from_slice(c);
            SocketAddr::V6(decode_compact_v6(&b))
        } else {
            let mut b = [0u8; COMPACT_V4_LEN];
            b.copy_from_slice(c);
            SocketAddr::V4(decode_compact_v4(&b))
        }
    })
}

/// How many bytes at the end of `buf` do not form a whole entry.
pub fn compact_remainder(buf: &[u8], v6: bool) -> usize {
    buf.len() % compact_len(v6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_exact_bytes() {
        let mut out = Vec::new();
        encode_compact("127.0.0.1:6881".parse().unwrap(), &mut out);
        assert_eq!(out, [127, 0, 0, 1, 0x1a, 0xe1]);
        out.clear();
        encode_compact("[::1]:443".parse().unwrap(), &mut out);
        let mut want = [0u8; 18];
        want[15] = 1;
        want[16] = 0x01;
        want[17] = 0xbb;
        assert_eq!(out, want);
    }

    #[test]
    fn round_trip_and_remainder() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "10.1.2.3:65535".parse().unwrap(),
        ];
        let mut buf = Vec::new();
        for a in &addrs {
            encode_compact(*a, &mut buf);
        }
        buf.push(9); // a stray byte
        assert_eq!(iter_compact(&buf, false).collect::<Vec<_>>(), addrs);
        assert_eq!(compact_remainder(&buf, false), 1);

        let six: Vec<SocketAddr> = vec![
            "[::1]:6881".parse().unwrap(),
            "[2001:db8::7]:80".parse().unwrap(),
        ];
        let mut buf = Vec::new();
        for a in &six {
            encode_compact(*a, &mut buf);
        }
        assert_eq!(buf.len(), 36);
        assert_eq!(iter_compact(&buf, true).collect::<Vec<_>>(), six);
        assert_eq!(compact_remainder(&buf, true), 0);
        // the same bytes read as IPv4 are six entries
        assert_eq!(iter_compact(&buf, false).count(), 6);
    }
}
