//! The uTP packet codec (BEP 29): a 20-byte header, a chain of extensions and
//! a payload. Sans-IO: [`Packet::decode`] borrows from the datagram and never
//! panics on any input; [`encode`] appends one packet to a buffer.
//!
//! Only the selective-ACK extension (type 1) is ever written. Extension type
//! 3 (libtorrent's close reason) makes libutp drop the whole packet
//! (transmission#6930), so the encoder cannot produce it; unknown extensions
//! are skipped by length on receive.

use thiserror::Error;

/// Size of the fixed uTP header.
pub const HEADER_LEN: usize = 20;

/// The protocol version this crate speaks (low nibble of byte 0).
pub const VERSION: u8 = 1;

/// Extension type of the selective ACK.
pub const EXT_SACK: u8 = 1;

/// The five uTP packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// ST_DATA: carries payload and advances `seq_nr`.
    Data = 0,
    /// ST_FIN: the last sequence number of the sender's stream.
    Fin = 1,
    /// ST_STATE: a bare ACK; it does not advance `seq_nr`.
    State = 2,
    /// ST_RESET: the sender has no state for this connection.
    Reset = 3,
    /// ST_SYN: opens a connection.
    Syn = 4,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::Data,
            1 => Self::Fin,
            2 => Self::State,
            3 => Self::Reset,
            4 => Self::Syn,
            _ => return None,
        })
    }
}

/// Why a datagram is not a valid uTP packet.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PacketError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("datagram of {0} bytes is shorter than a utp header")]
    TooShort(usize),
    /// The version nibble is not 1.
    #[error("unsupported utp version {0}")]
    BadVersion(u8),
    /// The type nibble is above 4.
    #[error("unknown utp packet type {0}")]
    BadType(u8),
    /// An extension header or body runs past the end of the datagram.
    #[error("utp extension chain runs past the end of the datagram")]
    TruncatedExtension,
}

/// The fixed header fields of a packet (byte 0 split into type and version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Packet type.
    pub ty: PacketType,
    /// Connection id: the receiver's `recv_id`.
    pub connection_id: u16,
    /// Sender's clock when sending, microseconds, wrapping.
    pub timestamp_us: u32,
    /// Sender's last measured one-way delay of packets from the receiver.
    pub timestamp_diff_us: u32,
    /// Free space in the sender's receive buffer, bytes.
    pub wnd_size: u32,
    /// Sequence number of this packet (next to send for ST_STATE).
    pub seq_nr: u16,
    /// Last in-order sequence number the sender received.
    pub ack_nr: u16,
}

/// A decoded packet borrowing its selective-ACK mask and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The fixed header.
    pub header: Header,
    /// The first selective-ACK bitmask, if any (any length is accepted; bit
    /// `i` — byte `i / 8`, LSB first — acknowledges `ack_nr + 2 + i`).
    pub sack: Option<&'a [u8]>,
    /// Bytes after the extension chain.
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decodes one datagram. Never panics; every malformed input is an error.
    ///
    /// # Errors
    /// [`PacketError`] when the datagram is not a well-formed uTP packet.
    pub fn decode(buf: &'a [u8]) -> Result<Self, PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::TooShort(buf.len()));
        }
        let version = buf[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::BadVersion(version));
        }
        let ty = PacketType::from_nibble(buf[0] >> 4).ok_or(PacketError::BadType(buf[0] >> 4))?;
        let u16_at = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let header = Header {
            ty,
            connection_id: u16_at(2),
            timestamp_us: u32_at(4),
            timestamp_diff_us: u32_at(8),
            wnd_size: u32_at(12),
            seq_nr: u16_at(16),
            ack_nr: u16_at(18),
        };
        let mut ext = buf[1];
        let mut at = HEADER_LEN;
        let mut sack = None;
        while ext != 0 {
            let hdr = buf.get(at..at + 2).ok_or(PacketError::TruncatedExtension)?;
            let (next, len) = (hdr[0], usize::from(hdr[1]));
            let body = buf
                .get(at + 2..at + 2 + len)
                .ok_or(PacketError::TruncatedExtension)?;
            if ext == EXT_SACK && sack.is_none() {
                sack = Some(body);
            }
            ext = next;
            at += 2 + len;
        }
        Ok(Packet {
            header,
            sack,
            payload: &buf[at..],
        })
    }
}

/// Writes `header` (no extensions) into the first [`HEADER_LEN`] bytes of
/// `out`, e.g. the room kept in front of a payload in one buffer: the same
/// bytes [`encode`] writes without a selective ACK.
///
/// # Panics
/// When `out` is shorter than [`HEADER_LEN`].
pub fn write_header(header: &Header, out: &mut [u8]) {
    let out = &mut out[..HEADER_LEN];
    out[0] = ((header.ty as u8) << 4) | VERSION;
    out[1] = 0;
    out[2..4].copy_from_slice(&header.connection_id.to_be_bytes());
    out[4..8].copy_from_slice(&header.timestamp_us.to_be_bytes());
    out[8..12].copy_from_slice(&header.timestamp_diff_us.to_be_bytes());
    out[12..16].copy_from_slice(&header.wnd_size.to_be_bytes());
    out[16..18].copy_from_slice(&header.seq_nr.to_be_bytes());
    out[18..20].copy_from_slice(&header.ack_nr.to_be_bytes());
}

/// Appends one encoded packet to `out`. A selective-ACK mask is padded with
/// zero bytes to a multiple of 4 (BEP 29) and truncated at 252 bytes (the
/// extension length is one byte).
pub fn encode(header: &Header, sack: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
    let sack = sack.filter(|m| !m.is_empty());
    out.push(((header.ty as u8) << 4) | VERSION);
    out.push(if sack.is_some() { EXT_SACK } else { 0 });
    out.extend_from_slice(&header.connection_id.to_be_bytes());
    out.extend_from_slice(&header.timestamp_us.to_be_bytes());
    out.extend_from_slice(&header.timestamp_diff_us.to_be_bytes());
    out.extend_from_slice(&header.wnd_size.to_be_bytes());
    out.extend_from_slice(&header.seq_nr.to_be_bytes());
    out.extend_from_slice(&header.ack_nr.to_be_bytes());
    if let Some(mask) = sack {
        let mask = &mask[..mask.len().min(252)];
        let padded = mask.len().div_ceil(4) * 4;
        out.push(0);
        out.push(padded as u8);
        out.extend_from_slice(mask);
        out.resize(out.len() + padded - mask.len(), 0);
    }
    out.extend_from_slice(payload);
}

/// Encoded size of a selective-ACK extension carrying `mask_len` mask bytes.
pub fn sack_ext_len(mask_len: usize) -> usize {
    if mask_len == 0 {
        0
    } else {
        2 + mask_len.min(252).div_ceil(4) * 4
    }
}

/// Cheap classifier for a socket shared with the DHT and the UDP tracker:
/// true when the datagram has a uTP header shape (at least 20 bytes, version
/// 1, a known type). KRPC packets start with `d` (0x64, version nibble 4) and
/// UDP tracker replies with a big-endian action 0..=3 (byte 0 is 0), so
/// neither matches.
pub fn looks_like_utp(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[0] & 0x0f == VERSION && datagram[0] >> 4 <= 4
}

/// Wrap-aware "a comes before b" for 16-bit sequence numbers.
pub fn seq_less(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) < 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(ty: PacketType) -> Header {
        Header {
            ty,
            connection_id: 0xbeef,
            timestamp_us: 0x0102_0304,
            timestamp_diff_us: 0xffff_fff0,
            wnd_size: 1 << 20,
            seq_nr: 65535,
            ack_nr: 7,
        }
    }

    #[test]
    fn write_header_writes_what_encode_writes() {
        for ty in [PacketType::Data, PacketType::Fin, PacketType::State] {
            let mut encoded = Vec::new();
            encode(&header(ty), None, b"payload", &mut encoded);
            let mut in_place = vec![0xaa; HEADER_LEN];
            in_place.extend_from_slice(b"payload");
            write_header(&header(ty), &mut in_place);
            assert_eq!(in_place, encoded);
        }
    }

    #[test]
    fn every_type_round_trips() {
        for ty in [
            PacketType::Data,
            PacketType::Fin,
            PacketType::State,
            PacketType::Reset,
            PacketType::Syn,
        ] {
            let mut out = Vec::new();
            encode(&header(ty), None, b"abc", &mut out);
            assert_eq!(out[0], ((ty as u8) << 4) | 1);
            assert_eq!(out.len(), 23);
            let p = Packet::decode(&out).unwrap();
            assert_eq!(p.header, header(ty));
            assert_eq!(p.sack, None);
            assert_eq!(p.payload, b"abc");
            assert!(looks_like_utp(&out));
        }
    }

    #[test]
    fn sack_is_padded_to_four_and_round_trips() {
        let mut out = Vec::new();
        encode(
            &header(PacketType::State),
            Some(&[0b101, 0x80]),
            b"",
            &mut out,
        );
        assert_eq!(out[1], EXT_SACK);
        assert_eq!(&out[20..26], &[0, 4, 0b101, 0x80, 0, 0]);
        assert_eq!(out.len(), 20 + sack_ext_len(2));
        let p = Packet::decode(&out).unwrap();
        assert_eq!(p.sack, Some(&[0b101, 0x80, 0, 0][..]));
        assert!(p.payload.is_empty());
    }

    #[test]
    fn sack_of_odd_length_and_unknown_extensions_are_accepted() {
        // libtorrent writes ceil(span/8) mask bytes; also an unknown ext 3
        // (close reason) before it must be skipped by length.
        let mut b = vec![0x21, 3];
        b.extend_from_slice(&[0; 18]);
        b.extend_from_slice(&[EXT_SACK, 4, 0, 0, 0, 9]); // ext 3: 4 bytes
        b.extend_from_slice(&[0, 3, 1, 2, 3]); // sack: 3 bytes
        b.extend_from_slice(b"xy");
        let p = Packet::decode(&b).unwrap();
        assert_eq!(p.sack, Some(&[1, 2, 3][..]));
        assert_eq!(p.payload, b"xy");
    }

    #[test]
    fn every_truncation_is_an_error_or_a_shorter_payload() {
        let mut out = Vec::new();
        encode(
            &header(PacketType::Data),
            Some(&[1, 2, 3, 4, 5]),
            b"payload",
            &mut out,
        );
        let ext_end = 20 + sack_ext_len(5);
        for cut in 0..out.len() {
            let r = Packet::decode(&out[..cut]);
            if cut < HEADER_LEN {
                assert_eq!(r, Err(PacketError::TooShort(cut)));
            } else if cut < ext_end {
                assert_eq!(r, Err(PacketError::TruncatedExtension));
            } else {
                assert_eq!(r.unwrap().payload, &b"payload"[..cut - ext_end]);
            }
        }
    }

    #[test]
    fn classifier_rejects_dht_and_tracker_packets() {
        assert!(!looks_like_utp(
            b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"
        ));
        let mut tracker = vec![0, 0, 0, 1];
        tracker.extend_from_slice(&[0; 16]);
        assert!(!looks_like_utp(&tracker));
        assert!(!looks_like_utp(&[0x41; 19]));
        assert!(!looks_like_utp(&[0x51; 20]));
        assert!(looks_like_utp(&[0x41; 20]));
    }

    #[test]
    fn seq_less_wraps() {
        assert!(seq_less(65535, 0));
        assert!(seq_less(65000, 100));
        assert!(!seq_less(100, 65000));
        assert!(!seq_less(5, 5));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(p) = Packet::decode(&bytes) {
                prop_assert!(looks_like_utp(&bytes));
                prop_assert!(p.payload.len() <= bytes.len() - HEADER_LEN);
            }
        }

        #[test]
        fn round_trip(ty in 0u8..5, id: u16, ts: u32, td: u32, wnd: u32, seq: u16, ack: u16,
                      mask in proptest::collection::vec(any::<u8>(), 0..40),
                      payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            let h = Header {
                ty: PacketType::from_nibble(ty).unwrap(),
                connection_id: id, timestamp_us: ts, timestamp_diff_us: td,
                wnd_size: wnd, seq_nr: seq, ack_nr: ack,
            };
            let mut out = Vec::new();
            encode(&h, Some(&mask), &payload, &mut out);
            let p = Packet::decode(&out).unwrap();
            prop_assert_eq!(p.header, h);
            prop_assert_eq!(p.payload, &payload[..]);
            match p.sack {
                None => prop_assert!(mask.is_empty()),
                Some(m) => {
                    prop_assert_eq!(m.len() % 4, 0);
                    prop_assert_eq!(&m[..mask.len()], &mask[..]);
                    prop_assert!(m[mask.len()..].iter().all(|&b| b == 0));
                }
            }
        }

        #[test]
        fn seq_less_is_antisymmetric_near_wrap(a: u16, d in 1u16..32000) {
            let b = a.wrapping_add(d);
            prop_assert!(seq_less(a, b));
            prop_assert!(!seq_less(b, a));
        }
    }
}
