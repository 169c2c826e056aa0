//! An IP filter (a blocklist): address ranges a session never connects to
//! nor accepts connections from, whatever found the peer (tracker, PEX,
//! DHT, LSD, a magnet's `x.pe`, an incoming connection).
//!
//! Ranges are kept sorted and merged, one list per family, so a lookup is
//! a binary search: O(log n) for the hundreds of thousands of ranges of a
//! public list. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked
//! up as the IPv4 address they carry.
//!
//! [`IpFilter::parse`] reads the common text formats, one range a line:
//! - P2P / PeerGuardian: `name:1.2.3.4-1.2.3.255` (the name may contain
//!   colons: the range is the longest tail after a colon that reads as
//!   one);
//! - eMule DAT: `1.2.3.4 - 1.2.3.255 , 000 , name` (an access level of 128
//!   or more means "allowed" and is skipped, as eMule does);
//! - a bare range `a-b`, a single address, or CIDR `a/len`, IPv4 or IPv6.
//!
//! Blank lines and `#` comments are skipped; lines that parse as none of
//! these are counted and skipped, never fatal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Ranges of addresses to refuse. Cheap to look up, built once per list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpFilter {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// What [`IpFilter::parse`] made of a text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The filter of every range read.
    pub filter: IpFilter,
    /// Ranges read (before merging).
    pub ranges: usize,
    /// Lines that were neither a range, blank nor a comment.
    pub rejected: usize,
    /// Whether reading stopped at `max_ranges`.
    pub truncated: bool,
}

impl IpFilter {
    /// An empty filter: blocks nothing.
    pub fn new() -> IpFilter {
        IpFilter::default()
    }

    /// A filter of `ranges` (inclusive; a range given backwards is turned
    /// round; mixed families are skipped).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (IpAddr, IpAddr)>) -> IpFilter {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (a, b) in ranges {
            match (canonical(a), canonical(b)) {
                (IpAddr::V4(a), IpAddr::V4(b)) => {
                    let (a, b) = (u32::from(a), u32::from(b));
                    v4.push((a.min(b), a.max(b)));
                }
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    let (a, b) = (u128::from(a), u128::from(b));
                    v6.push((a.min(b), a.max(b)));
                }
                _ => {}
            }
        }
        IpFilter {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Reads a list in any of the formats of the module doc, keeping at
    /// most `max_ranges` ranges (the rest is dropped and `truncated` set).
    pub fn parse(text: &str, max_ranges: usize) -> Parsed {
        let mut ranges = Vec::new();
        let mut rejected = 0;
        let mut truncated = false;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
                continue;
            }
            match parse_line(line) {
                Some(Some(r)) => {
                    if ranges.len() >= max_ranges {
                        truncated = true;
                        break;
                    }
                    ranges.push(r);
                }
                Some(None) => {} // an "allowed" eMule line
                None => rejected += 1,
            }
        }
        let count = ranges.len();
        Parsed {
            filter: IpFilter::from_ranges(ranges),
            ranges: count,
            rejected,
            truncated,
        }
    }

    /// Whether `ip` is in a blocked range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Merged ranges held (Transmission's `blocklist-size` counts rules;
    /// this counts what is left after merging overlaps).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether it blocks nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every merged range, IPv4 first, in order.
    pub fn ranges(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        let v4 = self
            .v4
            .iter()
            .map(|&(a, b)| (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into()));
        let v6 = self
            .v6
            .iter()
            .map(|&(a, b)| (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into()));
        v4.chain(v6)
    }

    /// The filter as text [`parse`](Self::parse) reads back: one
    /// `first-last` range a line.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.len() * 32);
        for (a, b) in self.ranges() {
            out.push_str(&format!("{a}-{b}\n"));
        }
        out
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge<T: Copy + Ord + num_like::Succ>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1.succ() => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out.shrink_to_fit();
    out
}

/// Binary search of sorted, disjoint ranges.
fn find<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before x.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && x <= ranges[i - 1].1
}

mod num_like {
    /// `x + 1`, saturating (merging `[a, MAX]` with anything after).
    pub trait Succ {
        fn succ(self) -> Self;
    }
    impl Succ for u32 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
}

/// One line: `Some(Some(range))`, `Some(None)` for a line that is a
/// range but not a block (eMule access level >= 128), `None` if it is no
/// range at all.
fn parse_line(line: &str) -> Option<Option<(IpAddr, IpAddr)>> {
    // eMule DAT: "first - last , level , name".
    if let Some((range, rest)) = line.split_once(',') {
        if let Some(r) = parse_range(range) {
            let level: u32 = rest.split(',').next()?.trim().parse().ok()?;
            return Some((level < 128).then_some(r));
        }
    }
    if let Some(r) = parse_range(line) {
        return Some(Some(r));
    }
    // P2P: "name:first-last"; the name may hold colons, an IPv6 range
    // does too: the longest tail after a colon that parses.
    line.match_indices(':')
        .find_map(|(i, _)| parse_range(&line[i + 1..]))
        .map(Some)
}

/// `a-b` (spaces allowed), `a/len`, or a single address.
fn parse_range(s: &str) -> Option<(IpAddr, IpAddr)> {
    let s = s.trim();
    if s.is_empty() || s.len() > 100 {
        return None;
    }
    if let Some((a, b)) = s.split_once('-') {
        let (a, b) = (addr(a)?, addr(b)?);
        return (a.is_ipv4() == b.is_ipv4()).then_some((a, b));
    }
    if let Some((a, len)) = s.split_once('/') {
        let a = addr(a)?;
        let len: u32 = len.trim().parse().ok()?;
        return match a {
            IpAddr::V4(v) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                let first = u32::from(v) & mask;
                Some((
                    Ipv4Addr::from(first).into(),
                    Ipv4Addr::from(first | !mask).into(),
                ))
            }
            IpAddr::V6(v) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
                let first = u128::from(v) & mask;
                Some((
                    Ipv6Addr::from(first).into(),
                    Ipv6Addr::from(first | !mask).into(),
                ))
            }
            _ => None,
        };
    }
    let a = addr(s)?;
    Some((a, a))
}

/// An address; IPv4 with leading zeros (`001.002.003.004`, common in
/// eMule lists) read as decimal.
fn addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<IpAddr>() {
        return Some(a);
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts
        .next()
        .is_none()
        .then(|| Ipv4Addr::from(octets).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn formats_are_read() {
        let text = "\
# comment
Some org:1.2.3.0-1.2.3.255
with:colons:in name:10.0.0.1-10.0.0.3
001.002.004.000 - 001.002.004.255 , 000 , eMule name, with comma
5.5.5.0 - 5.5.5.255 , 200 , allowed by eMule's level
2001:db8::-2001:db8::ffff
v6 name:2001:db9::1-2001:db9::2
192.168.0.0/16
::ffff:9.9.9.9

garbage line
1.2.3.4-
300.1.1.1-300.1.1.2
1.1.1.1-::1
";
        let p = IpFilter::parse(text, 1000);
        assert_eq!((p.ranges, p.rejected, p.truncated), (7, 4, false));
        let f = &p.filter;
        for blocked in [
            "1.2.3.0",
            "1.2.3.255",
            "10.0.0.2",
            "1.2.4.17",
            "2001:db8::10",
            "2001:db9::2",
            "192.168.77.1",
            "9.9.9.9",
            "::ffff:1.2.3.9",
        ] {
            assert!(f.contains(ip(blocked)), "{blocked} is blocked");
        }
        for free in [
            "1.2.2.255",
            "1.2.5.0",
            "10.0.0.4",
            "5.5.5.5",
            "2001:db8::1:0",
            "127.0.0.1",
            "::1",
        ] {
            assert!(!f.contains(ip(free)), "{free} is not blocked");
        }
        // 1.2.3.0/24 and 1.2.4.0/24 are adjacent: merged.
        assert_eq!(f.len(), 6);
        // The stored text reads back the same.
        let again = IpFilter::parse(&f.to_text(), 1000);
        assert_eq!(&again.filter, f);
        assert_eq!(again.rejected, 0);
    }

    #[test]
    fn merged_lookups_match_a_linear_scan() {
        // Pseudo-random overlapping ranges against a naive check.
        let mut x: u32 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let ranges: Vec<(u32, u32)> = (0..500)
            .map(|_| {
                let a = next() % 100_000;
                (a, a + next() % 300)
            })
            .collect();
        let f = IpFilter::from_ranges(
            ranges
                .iter()
                .map(|&(a, b)| (Ipv4Addr::from(a).into(), Ipv4Addr::from(b).into())),
        );
        assert!(f.len() < 500, "overlaps merged");
        for probe in 0..100_400u32 {
            let naive = ranges.iter().any(|&(a, b)| a <= probe && probe <= b);
            assert_eq!(f.contains(Ipv4Addr::from(probe).into()), naive, "{probe}");
        }
    }

    #[test]
    fn hostile_input_is_bounded_and_never_fatal() {
        let long = "x".repeat(1 << 20);
        let text = format!(
            "{long}\n\u{0}\u{ffff}:1.1.1.1\n:::::\n-\n,\n, ,\n1.1.1.1/99\n::/0\n0.0.0.0-255.255.255.255\n"
        );
        let p = IpFilter::parse(&text, 1000);
        assert!(p.filter.contains(ip("8.8.8.8")) && p.filter.contains(ip("2001::1")));
        assert_eq!(p.filter.len(), 2, "everything, merged");
        let many: String = (0..50u32)
            .map(|i| format!("n:10.0.{i}.0-10.0.{i}.1\n"))
            .collect();
        let p = IpFilter::parse(&many, 10);
        assert_eq!((p.ranges, p.truncated), (10, true));
        assert!(p.filter.contains(ip("10.0.9.1")) && !p.filter.contains(ip("10.0.10.1")));
    }
}
