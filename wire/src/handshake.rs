//! The 68-byte BitTorrent handshake (BEP 3) and its reserved bits.

use thiserror::Error;

use crate::id::{InfoHash, PeerId};

const PROTOCOL: &[u8; 20] = b"\x13BitTorrent protocol";

/// A handshake that is not the BitTorrent protocol.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first 20 bytes are not `\x13BitTorrent protocol`.
    #[error("not a BitTorrent handshake")]
    BadProtocol,
}

/// The opening message of every peer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// Extension bits; see the `supports_*` methods.
    pub reserved: [u8; 8],
    /// The torrent this connection is for.
    pub info_hash: InfoHash,
    /// The sender's id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// Bytes on the wire.
    pub const LEN: usize = 68;
    /// Reserved byte and bit of the DHT flag (BEP 5).
    const DHT: (usize, u8) = (7, 0x01);
    /// Fast extension (BEP 6).
    const FAST: (usize, u8) = (7, 0x04);
    /// Extension protocol (BEP 10).
    const EXTENDED: (usize, u8) = (5, 0x10);
    /// BitTorrent v2 (BEP 52): the 4th most significant bit of the last
    /// byte.
    const V2: (usize, u8) = (7, 0x10);

    /// A handshake announcing the fast extension and the extension
    /// protocol (bittern supports both); DHT off (see [`Handshake::with_dht`]).
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut reserved = [0u8; 8];
        reserved[Self::FAST.0] |= Self::FAST.1;
        reserved[Self::EXTENDED.0] |= Self::EXTENDED.1;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// Set or clear the DHT bit.
    #[must_use]
    pub fn with_dht(mut self, on: bool) -> Self {
        if on {
            self.reserved[Self::DHT.0] |= Self::DHT.1;
        } else {
            self.reserved[Self::DHT.0] &= !Self::DHT.1;
        }
        self
    }

    /// Set or clear the v2 upgrade bit (BEP 52): sent with the v1 info hash
    /// of a hybrid torrent, it offers to continue with the v2 hash.
    /// libtorrent drops a peer that sets it for a torrent without v2, so
    /// set it only for v2 and hybrid torrents.
    #[must_use]
    pub fn with_v2(mut self, on: bool) -> Self {
        if on {
            self.reserved[Self::V2.0] |= Self::V2.1;
        } else {
            self.reserved[Self::V2.0] &= !Self::V2.1;
        }
        self
    }

    /// The 68 wire bytes.
    pub fn encode(&self) -> [u8; 68] {
        let mut out = [0u8; 68];
        out[..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Parse 68 wire bytes.
    ///
    /// # Errors
    /// [`HandshakeError::BadProtocol`] if the protocol string is wrong.
    pub fn decode(buf: &[u8; 68]) -> Result<Self, HandshakeError> {
        if &buf[..20] != PROTOCOL {
            return Err(HandshakeError::BadProtocol);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let mut ih = [0u8; 20];
        ih.copy_from_slice(&buf[28..48]);
        let mut pid = [0u8; 20];
        pid.copy_from_slice(&buf[48..68]);
        Ok(Handshake {
            reserved,
            info_hash: InfoHash(ih),
            peer_id: PeerId(pid),
        })
    }

    /// Parse only the first 48 bytes (protocol, reserved, info hash): a
    /// listener can route a connection before the peer id arrives.
    ///
    /// # Errors
    /// [`HandshakeError::BadProtocol`] if the protocol string is wrong.
    pub fn decode_prefix(buf: &[u8; 48]) -> Result<([u8; 8], InfoHash), HandshakeError> {
        if &buf[..20] != PROTOCOL {
            return Err(HandshakeError::BadProtocol);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let mut ih = [0u8; 20];
        ih.copy_from_slice(&buf[28..48]);
        Ok((reserved, InfoHash(ih)))
    }

    fn bit(&self, (byte, mask): (usize, u8)) -> bool {
        self.reserved[byte] & mask != 0
    }

    /// BEP 6 fast extension.
    pub fn supports_fast(&self) -> bool {
        self.bit(Self::FAST)
    }

    /// BEP 10 extension protocol.
    pub fn supports_extended(&self) -> bool {
        self.bit(Self::EXTENDED)
    }

    /// BEP 5 DHT.
    pub fn supports_dht(&self) -> bool {
        self.bit(Self::DHT)
    }

    /// BEP 52 v2 upgrade bit (`reserved[7] & 0x10`).
    pub fn supports_v2(&self) -> bool {
        self.bit(Self::V2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes_and_round_trip() {
        let h = Handshake::new(InfoHash([1; 20]), PeerId(*b"-BT0100-abcdefghijkl"));
        let b = h.encode();
        assert_eq!(&b[..20], b"\x13BitTorrent protocol");
        assert_eq!(&b[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(&b[28..48], &[1; 20]);
        assert_eq!(&b[48..], b"-BT0100-abcdefghijkl");
        let back = Handshake::decode(&b).unwrap();
        assert_eq!(back, h);
        assert!(back.supports_fast() && back.supports_extended() && !back.supports_dht());
        let d = h.with_dht(true);
        assert_eq!(d.encode()[27], 0x05);
        assert!(d.supports_dht());
        assert!(!d.with_dht(false).supports_dht());
        // v2 bit: reserved[7] & 0x10, independent of the others
        assert!(!h.supports_v2());
        let v = d.with_v2(true);
        assert_eq!(v.encode()[27], 0x15);
        assert!(v.supports_v2() && v.supports_dht() && v.supports_fast());
        assert_eq!(Handshake::decode(&v.encode()).unwrap(), v);
        assert_eq!(v.with_v2(false).encode()[27], 0x05);
        let mut prefix = [0u8; 48];
        prefix.copy_from_slice(&b[..48]);
        assert_eq!(
            Handshake::decode_prefix(&prefix),
            Ok((h.reserved, h.info_hash))
        );
    }

    #[test]
    fn bad_protocol() {
        let mut b = Handshake::new(InfoHash([1; 20]), PeerId([2; 20])).encode();
        b[0] = 18;
        assert_eq!(Handshake::decode(&b), Err(HandshakeError::BadProtocol));
    }
}
