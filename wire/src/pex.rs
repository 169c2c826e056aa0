//! BEP 11 peer exchange (`ut_pex`): the message codec, with a bounded
//! decoder, and [`PexDiff`], the pure per-peer builder of what to send.
//!
//! # Bounds
//! An honest sender puts at most 50 peers in `added` (and 50 in
//! `dropped`) per message, at most once a minute. The decoder keeps the
//! first [`PEX_MAX_DECODED`] entries of each list (IPv4 first, then IPv6)
//! and reports how many it left out in [`PexMessage::overflow`]; it never
//! fails for a long list, so one message of 10,000 peers costs a bounded
//! result, and the engine reads a non-zero `overflow` as a flood and drops
//! the sender. The payload itself is bounded by the frame limit.
//!
//! PEX must never be used on private torrents (BEP 27), in either
//! direction; that is the engine's check, as this module does not know
//! the torrent.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::bencode::{self, Limits, Value};
use crate::compact::{compact_len, compact_remainder, encode_compact, iter_compact};

/// Most peers [`PexDiff`] puts in one message's `added` (and `dropped`),
/// as other clients do.
pub const PEX_MAX_ADDED: usize = 50;

/// Most entries the decoder keeps per list (`added` and `dropped`, IPv4
/// and IPv6 together): twice the 50 an honest sender uses, so a slightly
/// generous client is still heard in full.
pub const PEX_MAX_DECODED: usize = 2 * PEX_MAX_ADDED;

/// Least time between two PEX messages to one peer (BEP 11).
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);

/// A `ut_pex` payload that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PexError {
    /// Not bencode, or over the limits.
    #[error("ut_pex message is not bencode")]
    Bencode(#[from] bencode::Error),
    /// Not a dictionary.
    #[error("ut_pex message is not a dictionary")]
    NotADict,
    /// A compact list whose length is not a multiple of its entry size.
    #[error("ut_pex {key} has {len} bytes, not a multiple of {entry}")]
    BadLength {
        /// The key (`added`, `dropped6`, ...).
        key: &'static str,
        /// Its length in bytes.
        len: usize,
        /// Entry size: 6 or 18.
        entry: usize,
    },
}

/// What a PEX sender says about one added peer (the `added.f` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PexFlags {
    /// 0x01: prefers encrypted connections.
    pub encryption: bool,
    /// 0x02: a seed or partial seed (upload only).
    pub seed: bool,
    /// 0x04: supports uTP.
    pub utp: bool,
    /// 0x08: supports `ut_holepunch`.
    pub holepunch: bool,
    /// 0x10: reachable (the sender made an outgoing connection to it).
    pub reachable: bool,
}

impl PexFlags {
    /// Read an `added.f` byte; unknown bits are ignored.
    pub fn from_byte(b: u8) -> Self {
        PexFlags {
            encryption: b & 0x01 != 0,
            seed: b & 0x02 != 0,
            utp: b & 0x04 != 0,
            holepunch: b & 0x08 != 0,
            reachable: b & 0x10 != 0,
        }
    }

    /// The `added.f` byte.
    pub fn to_byte(self) -> u8 {
        u8::from(self.encryption)
            | u8::from(self.seed) << 1
            | u8::from(self.utp) << 2
            | u8::from(self.holepunch) << 3
            | u8::from(self.reachable) << 4
    }
}

/// One `ut_pex` message; IPv4 and IPv6 peers share the lists and are
/// split by family on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PexMessage {
    /// Peers the sender is now connected to, with their flags.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers the sender is no longer connected to.
    pub dropped: Vec<SocketAddr>,
    /// Decoded entries left out because a list was over
    /// [`PEX_MAX_DECODED`]; 0 for an honest sender. Not encoded.
    pub overflow: usize,
}

/// The payload is at most a frame; strings may be as long as the frame so
/// a long list is counted, not refused.
fn limits() -> Limits {
    Limits {
        max_depth: 4,
        max_len: 1 << 20,
        max_string_len: 1 << 20,
        max_items: 1_000,
    }
}

/// The compact list under `key`, checked for whole entries.
fn compact<'a>(
    d: &'a BTreeMap<Vec<u8>, Value>,
    key: &'static str,
    v6: bool,
) -> Result<&'a [u8], PexError> {
    let b = d
        .get(key.as_bytes())
        .and_then(Value::as_bytes)
        .unwrap_or_default();
    if compact_remainder(b, v6) != 0 {
        return Err(PexError::BadLength {
            key,
            len: b.len(),
            entry: compact_len(v6),
        });
    }
    Ok(b)
}

impl PexMessage {
    /// Read a payload sent under our `ut_pex` id. Entries with port 0 are
    /// skipped; a missing or short `added.f` reads as no flags; absent
    /// lists are empty; unknown keys are ignored.
    ///
    /// # Errors
    /// [`PexError`] if it is not a bencoded dictionary or a compact list is
    /// cut mid-entry.
    pub fn decode(payload: &[u8]) -> Result<Self, PexError> {
        let v = bencode::decode_with(payload, &limits())?;
        let d = v.as_dict().ok_or(PexError::NotADict)?;
        let mut m = PexMessage::default();
        for (key, fkey, v6) in [("added", "added.f", false), ("added6", "added6.f", true)] {
            let list = compact(d, key, v6)?;
            let flags = d
                .get(fkey.as_bytes())
                .and_then(Value::as_bytes)
                .unwrap_or_default();
            for (i, a) in iter_compact(list, v6).enumerate() {
                if a.port() == 0 {
                    continue;
                }
                if m.added.len() == PEX_MAX_DECODED {
                    m.overflow += 1;
                    continue;
                }
                let f = flags
                    .get(i)
                    .copied()
                    .map_or_else(PexFlags::default, PexFlags::from_byte);
                m.added.push((a, f));
            }
        }
        for (key, v6) in [("dropped", false), ("dropped6", true)] {
            for a in iter_compact(compact(d, key, v6)?, v6) {
                if a.port() == 0 {
                    continue;
                }
                if m.dropped.len() == PEX_MAX_DECODED {
                    m.overflow += 1;
                } else {
                    m.dropped.push(a);
                }
            }
        }
        Ok(m)
    }

    /// The bencoded payload: all six lists (empty ones too, as libtorrent
    /// sends), `added.f`/`added6.f` one byte per entry. `overflow` is not
    /// sent.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = BTreeMap::new();
        for v6 in [false, true] {
            let sfx = if v6 { "6" } else { "" };
            let (mut added, mut flags, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
            for (a, f) in self.added.iter().filter(|(a, _)| a.is_ipv6() == v6) {
                encode_compact(*a, &mut added);
                flags.push(f.to_byte());
            }
            for a in self.dropped.iter().filter(|a| a.is_ipv6() == v6) {
                encode_compact(*a, &mut dropped);
            }
            d.insert(format!("added{sfx}").into_bytes(), Value::Bytes(added));
            d.insert(format!("added{sfx}.f").into_bytes(), Value::Bytes(flags));
            d.insert(format!("dropped{sfx}").into_bytes(), Value::Bytes(dropped));
        }
        bencode::encode(&Value::Dict(d))
    }
}

/// What one peer has been told: builds each PEX message to it as the
/// difference between our current peer set and what it already knows.
///
/// Never tells the peer about itself (its connected address and, once
/// known, its listen address), puts at most [`PEX_MAX_ADDED`] peers in
/// `added` and in `dropped` (the rest wait for the next message), and
/// sends at most once per [`PEX_INTERVAL`]. Memory is bounded by the
/// current set, which the engine bounds by its connection limit.
#[derive(Debug, Clone, Default)]
pub struct PexDiff {
    /// Addresses that are the peer itself.
    own: Vec<SocketAddr>,
    /// What the peer believes we are connected to.
    told: BTreeMap<SocketAddr, PexFlags>,
    last_sent: Option<Instant>,
}

impl PexDiff {
    /// A builder for the peer at `addr` (the address we see it at).
    pub fn new(addr: SocketAddr) -> Self {
        PexDiff {
            own: vec![addr],
            ..PexDiff::default()
        }
    }

    /// Another address of the peer itself (e.g. its IP with the listen
    /// port from its extension handshake `p`); never sent to it.
    pub fn add_own_addr(&mut self, addr: SocketAddr) {
        if !self.own.contains(&addr) {
            self.own.push(addr);
            if self.told.remove(&addr).is_some() {
                log::trace!("pex: {addr} turned out to be the peer itself");
            }
        }
    }

    /// How many peers the peer has been told about and not told dropped.
    pub fn told_len(&self) -> usize {
        self.told.len()
    }

    /// The message to send now, given our current peers, or `None` if it
    /// is too soon after the last one or nothing changed. A returned
    /// message counts as sent at `now`.
    pub fn build(
        &mut self,
        now: Instant,
        current: &[(SocketAddr, PexFlags)],
    ) -> Option<PexMessage> {
        if self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) < PEX_INTERVAL)
        {
            return None;
        }
        let mut msg = PexMessage::default();
        let mut seen = HashSet::with_capacity(current.len());
        for &(a, f) in current {
            if !seen.insert(a) || self.own.contains(&a) {
                continue;
            }
            if msg.added.len() < PEX_MAX_ADDED && !self.told.contains_key(&a) {
                msg.added.push((a, f));
            }
        }
        msg.dropped = self
            .told
            .keys()
            .filter(|a| !seen.contains(*a))
            .take(PEX_MAX_ADDED)
            .copied()
            .collect();
        if msg.added.is_empty() && msg.dropped.is_empty() {
            return None;
        }
        for a in &msg.dropped {
            self.told.remove(a);
        }
        for &(a, f) in &msg.added {
            self.told.insert(a, f);
        }
        self.last_sent = Some(now);
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flags_bits() {
        let f = PexFlags {
            encryption: true,
            seed: false,
            utp: true,
            holepunch: false,
            reachable: true,
        };
        assert_eq!(f.to_byte(), 0x15);
        assert_eq!(PexFlags::from_byte(0x15), f);
        for b in 0..=0x1f {
            assert_eq!(PexFlags::from_byte(b).to_byte(), b);
        }
        // unknown high bits are dropped
        assert_eq!(PexFlags::from_byte(0xe2).to_byte(), 0x02);
    }

    #[test]
    fn exact_bytes_and_round_trip() {
        let m = PexMessage {
            added: vec![
                (a("127.0.0.1:6881"), PexFlags::from_byte(0x12)),
                (a("[::1]:6882"), PexFlags::from_byte(0x04)),
            ],
            dropped: vec![a("127.0.0.2:80")],
            overflow: 0,
        };
        let b = m.encode();
        let mut want = b"d5:added6:\x7f\x00\x00\x01\x1a\xe17:added.f1:\x126:added618:".to_vec();
        want.extend_from_slice(&[0; 15]);
        want.extend_from_slice(
            b"\x01\x1a\xe28:added6.f1:\x047:dropped6:\x7f\x00\x00\x02\x00\x508:dropped60:e",
        );
        assert_eq!(b, want);
        assert_eq!(PexMessage::decode(&b), Ok(m));
        assert_eq!(PexMessage::decode(b"de"), Ok(PexMessage::default()));
    }

    #[test]
    fn lenient_flags_port_zero_and_unknown_keys() {
        // two peers, one flag byte, a port-0 entry, unknown key
        let p = b"d5:added18:\x7f\x00\x00\x01\x00\x01\x7f\x00\x00\x02\x00\x00\x7f\x00\x00\x03\x00\x037:added.f1:\x021:xi1ee";
        let m = PexMessage::decode(p).unwrap();
        assert_eq!(
            m.added,
            vec![
                (a("127.0.0.1:1"), PexFlags::from_byte(2)),
                (a("127.0.0.3:3"), PexFlags::default())
            ]
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(PexMessage::decode(b"le"), Err(PexError::NotADict));
        assert!(matches!(
            PexMessage::decode(b"d5:added"),
            Err(PexError::Bencode(_))
        ));
        assert_eq!(
            PexMessage::decode(b"d5:added5:abcdee"),
            Err(PexError::BadLength {
                key: "added",
                len: 5,
                entry: 6
            })
        );
        assert_eq!(
            PexMessage::decode(b"d8:dropped66:abcdefe"),
            Err(PexError::BadLength {
                key: "dropped6",
                len: 6,
                entry: 18
            })
        );
    }

    #[test]
    fn ten_thousand_peers_decode_bounded() {
        let mut added = Vec::new();
        let mut dropped6 = Vec::new();
        for i in 0..10_000u32 {
            let [_, _, x, y] = i.to_be_bytes();
            encode_compact(SocketAddr::from(([10, 0, x, y], 1000)), &mut added);
            encode_compact(
                SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 1, i as u16], 1)),
                &mut dropped6,
            );
        }
        let mut d = BTreeMap::new();
        d.insert(b"added".to_vec(), Value::Bytes(added));
        d.insert(b"dropped6".to_vec(), Value::Bytes(dropped6));
        let payload = bencode::encode(&Value::Dict(d));
        assert!(payload.len() < 1 << 20);
        let m = PexMessage::decode(&payload).unwrap();
        assert_eq!(m.added.len(), PEX_MAX_DECODED);
        assert_eq!(m.dropped.len(), PEX_MAX_DECODED);
        assert_eq!(m.overflow, 2 * (10_000 - PEX_MAX_DECODED));
        assert_eq!(m.added[0].0, a("10.0.0.0:1000"));
    }

    #[test]
    fn diff_builder() {
        let t0 = Instant::now();
        let me = a("127.0.0.9:7000");
        let mut d = PexDiff::new(me);
        let peers: Vec<(SocketAddr, PexFlags)> = (1..=60)
            .map(|i| {
                (
                    SocketAddr::from(([127, 0, 0, 1], 6000 + i)),
                    PexFlags::default(),
                )
            })
            .chain([(me, PexFlags::default())])
            .collect();
        // first message: 50 added, never the peer itself
        let m1 = d.build(t0, &peers).unwrap();
        assert_eq!(m1.added.len(), PEX_MAX_ADDED);
        assert!(m1.dropped.is_empty());
        assert!(m1.added.iter().all(|(x, _)| *x != me));
        // not again within a minute
        assert_eq!(d.build(t0 + Duration::from_secs(59), &peers), None);
        // a minute later: the 10 left over; then nothing changed
        let t1 = t0 + PEX_INTERVAL;
        let m2 = d.build(t1, &peers).unwrap();
        assert_eq!(m2.added.len(), 10);
        assert_eq!(d.told_len(), 60);
        assert_eq!(d.build(t1 + PEX_INTERVAL, &peers), None);
        // three leave, one joins
        let mut now: Vec<_> = peers[3..].to_vec();
        now.push((a("[::1]:9000"), PexFlags::from_byte(0x10)));
        let m3 = d.build(t1 + PEX_INTERVAL, &now).unwrap();
        assert_eq!(m3.added, vec![(a("[::1]:9000"), PexFlags::from_byte(0x10))]);
        assert_eq!(m3.dropped, vec![peers[0].0, peers[1].0, peers[2].0]);
        assert_eq!(d.told_len(), 58);
        // the peer's listen address learned later is taken back out
        let listen = peers[10].0;
        d.add_own_addr(listen);
        assert_eq!(d.told_len(), 57);
        let m4 = d.build(t1 + 3 * PEX_INTERVAL, &now);
        assert_eq!(m4, None);
        // a message built by the diff decodes to itself
        let b = m3.encode();
        assert_eq!(PexMessage::decode(&b), Ok(m3));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn arb_addr() -> impl Strategy<Value = SocketAddr> {
            prop_oneof![
                (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
                (any::<[u8; 16]>(), 1u16..).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            ]
        }

        proptest! {
            #[test]
            fn prop_round_trip(
                added in proptest::collection::vec((arb_addr(), 0u8..32), 0..PEX_MAX_DECODED),
                dropped in proptest::collection::vec(arb_addr(), 0..PEX_MAX_DECODED),
            ) {
                // the decoder orders IPv4 before IPv6 within each list
                let mut added: Vec<_> =
                    added.into_iter().map(|(a, f)| (a, PexFlags::from_byte(f))).collect();
                added.sort_by_key(|(a, _)| a.is_ipv6());
                let mut dropped = dropped;
                dropped.sort_by_key(SocketAddr::is_ipv6);
                let m = PexMessage { added, dropped, overflow: 0 };
                prop_assert_eq!(PexMessage::decode(&m.encode()), Ok(m));
            }

            #[test]
            fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
                if let Ok(m) = PexMessage::decode(&bytes) {
                    prop_assert!(m.added.len() <= PEX_MAX_DECODED);
                }
            }
        }
    }
}
