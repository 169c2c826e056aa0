//! Message Stream Encryption / Protocol Encryption (MSE/PE), the
//! obfuscated BitTorrent handshake, as sans-IO state machines.
//!
//! ```text
//! 1 A->B: Ya, PadA
//! 2 B->A: Yb, PadB
//! 3 A->B: HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!         ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B->A: ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5 A->B: ENCRYPT2(payload)
//! ```
//!
//! Y is a 768-bit Diffie–Hellman public key (96 bytes), S the shared
//! secret (96 bytes, left-padded), SKEY the info hash, HASH SHA-1, VC
//! eight zero bytes, pads 0 to 512 random bytes. ENCRYPT is RC4 keyed
//! with `HASH('keyA', S, SKEY)` (A to B) or `HASH('keyB', S, SKEY)` (B to
//! A), the first 1024 keystream bytes discarded; ENCRYPT2 is RC4 when
//! `crypto_select` chose RC4 and plaintext when it chose plaintext (the
//! initial payload IA is encrypted either way).
//!
//! [`Initiator`] (A, dialling out, knows the info hash) and [`Responder`]
//! (B, the listen port, finds the torrent from `req2 ^ req3` with a
//! lookup over every torrent's [`ObfuscatedHashes`]) both take received
//! bytes with `feed` and hand back bytes to send with `output`. When the
//! handshake ends, `feed` returns [`Established`]: the chosen [`Crypto`],
//! the two [`Cipher`]s for the rest of the connection and the payload
//! bytes already received, decrypted. [`EncryptedStream`] (or the split
//! [`EncryptedReader`]/[`EncryptedWriter`]) wraps a socket with them, and
//! [`handshake`] drives a state machine over a blocking stream.
//!
//! A listen port also receives plain BitTorrent handshakes: [`detect`]
//! tells the two apart from the first bytes.
//!
//! # Example
//!
//! ```
//! use bittern_wire::mse::{
//!     Crypto, CryptoSet, Initiator, InitiatorConfig, ObfuscatedHashes, Responder,
//!     ResponderConfig,
//! };
//! use bittern_wire::InfoHash;
//!
//! let ih = InfoHash([7; 20]);
//! let served: ObfuscatedHashes = [ih].into_iter().collect();
//! let config = InitiatorConfig { provide: CryptoSet::RC4, initial_payload: b"hi".to_vec() };
//! let mut a = Initiator::new(ih, config);
//! let mut b = Responder::new(|h| served.find(h), ResponderConfig::default());
//!
//! // in real use each output goes over the socket and each feed takes
//! // whatever a read returned
//! assert!(b.feed(&a.output()).unwrap().is_none()); // Ya, PadA
//! assert!(a.feed(&b.output()).unwrap().is_none()); // Yb, PadB
//! let at_b = b.feed(&a.output()).unwrap().unwrap(); // req1 .. IA
//! let mut at_a = a.feed(&b.output()).unwrap().unwrap(); // VC, select, PadD
//!
//! assert_eq!((at_b.info_hash, at_b.crypto), (ih, Crypto::Rc4));
//! assert_eq!(at_b.received, b"hi");
//! let mut msg = *b"secret";
//! at_a.encrypt.apply(&mut msg);
//! assert_ne!(&msg, b"secret");
//! let mut at_b = at_b;
//! at_b.decrypt.apply(&mut msg);
//! assert_eq!(&msg, b"secret");
//! ```

mod bignum;
mod dh;
mod initiator;
mod responder;
mod stream;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::id::InfoHash;
use crate::rc4::Rc4;

pub use initiator::{Initiator, InitiatorConfig};
pub use responder::{ObfuscatedHashes, Responder, ResponderConfig};
pub use stream::{
    handshake, EncryptedReader, EncryptedStream, EncryptedWriter, HandshakeIoError, MseHandshake,
};

/// Bytes of a Diffie–Hellman public key on the wire.
pub const KEY_LEN: usize = 96;
/// The longest PadA, PadB, PadC or PadD.
pub const MAX_PAD: usize = 512;
/// Keystream bytes MSE discards before use.
pub const DISCARD: usize = 1024;
/// The verification constant: eight zero bytes.
const VC: [u8; 8] = [0; 8];

/// A stream method `crypto_provide` offers and `crypto_select` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Crypto {
    /// Obfuscated handshake, then a plaintext stream (bit 0x01).
    Plaintext,
    /// RC4 for the whole stream (bit 0x02).
    Rc4,
}

impl Crypto {
    /// The wire bit.
    pub const fn bit(self) -> u32 {
        match self {
            Crypto::Plaintext => 0x01,
            Crypto::Rc4 => 0x02,
        }
    }
}

/// A set of [`Crypto`] methods (`crypto_provide`'s bitfield).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CryptoSet(u32);

impl CryptoSet {
    /// Plaintext only.
    pub const PLAINTEXT: CryptoSet = CryptoSet(0x01);
    /// RC4 only: what Transmission (default) and qBittorrent offer.
    pub const RC4: CryptoSet = CryptoSet(0x02);
    /// Both.
    pub const BOTH: CryptoSet = CryptoSet(0x03);

    /// The set from wire bits (unknown bits kept, ignored by `contains`).
    pub const fn from_bits(bits: u32) -> CryptoSet {
        CryptoSet(bits)
    }

    /// The wire bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether `c` is in the set.
    pub const fn contains(self, c: Crypto) -> bool {
        self.0 & c.bit() != 0
    }
}

/// Why an MSE handshake failed. Each ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MseError {
    /// The peer's public key is outside `[2, P-2]`.
    #[error("peer sent a degenerate diffie-hellman key")]
    BadPublicKey,
    /// The responder found no `HASH('req1', S)` within 512 pad bytes.
    #[error("no req1 sync within the 512-byte pad limit")]
    SyncNotFound,
    /// The initiator found no encrypted VC within 512 pad bytes.
    #[error("no encrypted vc within the 512-byte pad limit")]
    VcNotFound,
    /// `req2 ^ req3` matched none of our torrents.
    #[error("obfuscated info hash matches no torrent")]
    UnknownTorrent,
    /// The decrypted verification constant was not zero (wrong key).
    #[error("verification constant mismatch")]
    BadVc,
    /// The peer offers none of the methods we allow.
    #[error("no common crypto method (peer provides {provided:#x})")]
    NoCommonCrypto {
        /// The peer's `crypto_provide`.
        provided: u32,
    },
    /// `crypto_select` is not exactly one method that we offered.
    #[error("peer selected crypto {selected:#x}, not one we provided")]
    BadSelect {
        /// The peer's `crypto_select`.
        selected: u32,
    },
    /// PadC or PadD is longer than 512 bytes.
    #[error("pad of {len} bytes exceeds 512")]
    PadTooLong {
        /// The declared length.
        len: usize,
    },
    /// `feed` was called after the handshake ended.
    #[error("handshake already finished")]
    Finished,
}

/// A stream cipher for one direction after the handshake: RC4 or
/// nothing (plaintext).
#[derive(Clone)]
pub struct Cipher(Option<Rc4>);

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Cipher(rc4)"
        } else {
            "Cipher(plaintext)"
        })
    }
}

impl Cipher {
    /// The pass-through cipher.
    pub fn plaintext() -> Cipher {
        Cipher(None)
    }

    /// An RC4 cipher at its current keystream position.
    pub fn rc4(rc4: Rc4) -> Cipher {
        Cipher(Some(rc4))
    }

    /// Whether this cipher changes bytes (RC4) or passes them through.
    pub fn is_encrypting(&self) -> bool {
        self.0.is_some()
    }

    /// Encrypt or decrypt `data` in place.
    pub fn apply(&mut self, data: &mut [u8]) {
        if let Some(rc4) = &mut self.0 {
            rc4.apply(data);
        }
    }
}

/// The outcome of a finished handshake.
#[derive(Debug)]
pub struct Established {
    /// The torrent (the initiator's SKEY, or the one the responder found).
    pub info_hash: InfoHash,
    /// The stream method both sides use from here on.
    pub crypto: Crypto,
    /// Applies to every byte we send from here on.
    pub encrypt: Cipher,
    /// Applies to every byte we receive from here on.
    pub decrypt: Cipher,
    /// Payload the peer already sent, decrypted, to be read before the
    /// socket: for the responder the initial payload IA (usually the
    /// peer's BitTorrent handshake) and anything after it; for the
    /// initiator whatever followed PadD.
    pub received: Vec<u8>,
}

impl Established {
    /// Wrap a stream: reads yield [`Established::received`] first, then
    /// decrypted socket bytes; writes are encrypted.
    pub fn into_stream<S: std::io::Read + std::io::Write>(self, inner: S) -> EncryptedStream<S> {
        EncryptedStream::new(inner, self)
    }

    /// Wrap two halves of one connection (e.g. a `TcpStream` and its
    /// `try_clone`) for separate reader and writer threads.
    pub fn into_split<R: std::io::Read, W: std::io::Write>(
        self,
        reader: R,
        writer: W,
    ) -> (EncryptedReader<R>, EncryptedWriter<W>) {
        (
            EncryptedReader::new(reader, self.decrypt, self.received),
            EncryptedWriter::new(writer, self.encrypt),
        )
    }
}

/// What the first bytes of an incoming connection are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// Too few bytes to tell yet.
    NeedMore,
    /// A plain BitTorrent handshake (`\x13BitTorrent protocol`).
    Plaintext,
    /// Anything else: an MSE public key (feed it to a [`Responder`]).
    Encrypted,
}

/// Tell a plain BitTorrent handshake from an MSE one by its first bytes.
///
/// A random Ya starts with 19 once in 256, so this decides on the whole
/// 20-byte protocol string, as soon as a byte differs from it.
pub fn detect(prefix: &[u8]) -> Detected {
    const PROTOCOL: &[u8; 20] = b"\x13BitTorrent protocol";
    let n = prefix.len().min(PROTOCOL.len());
    if prefix[..n] != PROTOCOL[..n] {
        Detected::Encrypted
    } else if n == PROTOCOL.len() {
        Detected::Plaintext
    } else {
        Detected::NeedMore
    }
}

/// SHA-1 over the concatenated parts.
fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HASH('req2', SKEY)`: how the responder's table knows a torrent.
pub fn req2(info_hash: &InfoHash) -> [u8; 20] {
    hash(&[b"req2", &info_hash.0])
}

/// `HASH('req1', S)`.
fn req1(s: &[u8; KEY_LEN]) -> [u8; 20] {
    hash(&[b"req1", s])
}

/// `HASH('req3', S)`.
fn req3(s: &[u8; KEY_LEN]) -> [u8; 20] {
    hash(&[b"req3", s])
}

/// The RC4 for A-to-B (`key_a`) or B-to-A bytes, 1024 bytes discarded.
fn stream_key(name: &[u8; 4], s: &[u8; KEY_LEN], skey: &InfoHash) -> Rc4 {
    Rc4::new_discard(&hash(&[name, s, &skey.0]), DISCARD)
}

/// Random pad length, 0 to 512 inclusive.
fn pad_len<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> usize {
    use rand::Rng;
    rng.random_range(0..=MAX_PAD)
}

#[cfg(test)]
mod tests;
