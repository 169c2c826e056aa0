//! BEP 42 (DHT security extension): node ids tied to the node's external
//! IP address.
//!
//! The first 21 bits of a secure id are the top 21 bits of
//! `crc32c((ip & mask) | r << 29)` (IPv4: the 4 octets masked with
//! `03 0f 3f ff`; IPv6: the first 8 octets masked with
//! `01 03 07 0f 1f 3f 7f ff`; `r` is 3 random bits, the low bits of the
//! id's last byte). The rest of the id is random. A node whose id does not
//! match its IP may be kept out of the routing table; addresses on local
//! networks (10/8, 172.16/12, 192.168/16, 169.254/16, 127/8, and for IPv6
//! loopback, link-local and unique-local) are exempt, so loopback tests
//! and LANs work with any id.

use std::net::IpAddr;

use rand::Rng;

use crate::id::NodeId;

const V4_MASK: [u8; 4] = [0x03, 0x0f, 0x3f, 0xff];
const V6_MASK: [u8; 8] = [0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff];

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: it runs
/// on at most 8 bytes per id.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
        }
    }
    !crc
}

/// The crc of `ip` masked and with `r` (3 bits) in the top bits.
fn ip_crc(ip: IpAddr, r: u8) -> u32 {
    let mut buf = [0u8; 8];
    let n = match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                buf[i] = o & V4_MASK[i];
            }
            4
        }
        IpAddr::V6(v6) => {
            for (i, o) in v6.octets().iter().take(8).enumerate() {
                buf[i] = o & V6_MASK[i];
            }
            8
        }
    };
    buf[0] |= (r & 7) << 5;
    crc32c(&buf[..n])
}

/// A secure id for `ip` whose last byte is `last` (its low 3 bits are
/// BEP 42's `r`); the other free bits come from `rng`.
pub fn secure_id_with(ip: IpAddr, last: u8, rng: &mut impl Rng) -> NodeId {
    let crc = ip_crc(ip, last & 7);
    let mut id = [0u8; 20];
    rng.fill(&mut id[..]);
    id[0] = (crc >> 24) as u8;
    id[1] = (crc >> 16) as u8;
    id[2] = ((crc >> 8) as u8 & 0xf8) | (id[2] & 0x07);
    id[19] = last;
    NodeId(id)
}

/// A random secure id for `ip`.
pub fn secure_id(ip: IpAddr, rng: &mut impl Rng) -> NodeId {
    let last: u8 = rng.random();
    secure_id_with(ip, last, rng)
}

/// Whether `id` is a valid BEP 42 id for `ip` (its first 21 bits match).
pub fn is_secure(id: &NodeId, ip: IpAddr) -> bool {
    let crc = ip_crc(ip, id.0[19] & 7);
    id.0[0] == (crc >> 24) as u8
        && id.0[1] == (crc >> 16) as u8
        && (id.0[2] & 0xf8) == ((crc >> 8) as u8 & 0xf8)
}

/// Whether BEP 42 exempts `ip` (a local-network address: any id goes).
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            o[0] == 10
                || o[0] == 127
                || (o[0] == 172 && (o[1] & 0xf0) == 16)
                || (o[0] == 192 && o[1] == 168)
                || (o[0] == 169 && o[1] == 254)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_exempt(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback() || (s[0] & 0xffc0) == 0xfe80 || (s[0] & 0xfe00) == 0xfc00
        }
    }
}

/// Whether a node with `id` at `ip` passes BEP 42 (exempt or secure).
pub fn id_allowed(id: &NodeId, ip: IpAddr) -> bool {
    is_exempt(ip) || is_secure(id, ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn hex(s: &str) -> [u8; 20] {
        let mut out = [0u8; 20];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// BEP 42's table: IP, rand, example node id.
    const VECTORS: [(&str, u8, &str); 5] = [
        (
            "124.31.75.21",
            1,
            "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401",
        ),
        (
            "21.75.31.124",
            86,
            "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256",
        ),
        (
            "65.23.51.170",
            22,
            "a5d43220bc8f112a3d426c84764f8c2a1150e616",
        ),
        (
            "84.124.73.14",
            65,
            "1b0321dd1bb1fe518101ceef99462b947a01ff41",
        ),
        (
            "43.213.53.83",
            90,
            "e56f6cbf5b7c4be0237986d5243b87aa6d51305a",
        ),
    ];

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn bep42_test_vectors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        for (ip, rand, example) in VECTORS {
            let ip: IpAddr = ip.parse().unwrap();
            let example = NodeId(hex(example));
            assert!(is_secure(&example, ip), "{ip}: example id not accepted");
            assert!(!is_exempt(ip));
            let ours = secure_id_with(ip, rand, &mut rng);
            // the first 21 bits and the last byte are fixed by ip and rand
            assert_eq!(ours.0[..2], example.0[..2], "{ip}");
            assert_eq!(ours.0[2] & 0xf8, example.0[2] & 0xf8, "{ip}");
            assert_eq!(ours.0[19], rand, "{ip}");
            assert!(is_secure(&ours, ip));
            // any one of the 21 bits flipped, or another r, fails
            for bit in 0..21 {
                let mut bad = example;
                bad.0[bit / 8] ^= 0x80 >> (bit % 8);
                assert!(!is_secure(&bad, ip), "{ip}: bit {bit} flipped still valid");
            }
            let mut other_r = example;
            other_r.0[19] ^= 1;
            assert!(!is_secure(&other_r, ip), "{ip}: another r still valid");
            // the 139 free bits are free
            let mut free = example;
            free.0[2] ^= 0x07;
            free.0[10] ^= 0xff;
            free.0[19] ^= 0xf8;
            assert!(is_secure(&free, ip));
        }
        // the example ids belong to their own address only
        let ip: IpAddr = VECTORS[1].0.parse().unwrap();
        assert!(!is_secure(&NodeId(hex(VECTORS[0].2)), ip));
    }

    #[test]
    fn ipv6_ids_and_exemptions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let id = secure_id(ip, &mut rng);
        assert!(is_secure(&id, ip));
        // only the first 8 octets count
        assert!(is_secure(&id, "2001:db8:1:2:ffff::1".parse().unwrap()));
        assert!(!is_secure(&id, "2001:db9:1:2:3:4:5:6".parse().unwrap()));
        let random = NodeId([0x77; 20]);
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.3.4",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(id_allowed(&random, ip.parse().unwrap()), "{ip} is exempt");
        }
        for ip in ["172.32.0.1", "8.8.8.8", "2001:db8::1", "11.0.0.1"] {
            assert!(!is_exempt(ip.parse().unwrap()), "{ip} is not exempt");
        }
    }
}
