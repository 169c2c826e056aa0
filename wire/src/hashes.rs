//! BitTorrent v2 (BEP 52) merkle hash exchange: the payloads of `hash
//! request` (id 21), `hashes` (id 22) and `hash reject` (id 23).
//!
//! A request names a file by its `pieces root` and asks for `length`
//! hashes of one layer of its tree (`base_layer` layers above the 16 KiB
//! leaves, from `index`), plus the uncle hashes of `proof_layers` layers
//! above it, so the answer can be checked against the root. The first
//! `log2(length) - 1` proof layers lie inside the requested hashes and are
//! omitted from the answer ([`HashRequest::proof_hash_count`]).
//!
//! Wire layout (all integers big-endian `u32`): `pieces_root[32]
//! base_layer index length proof_layers`, then for `hashes` the base-layer
//! hashes followed by the uncles, nearest the base first.

use thiserror::Error;

use crate::message::{Message, MessageError};

/// Message id of `hash request`.
pub(crate) const HASH_REQUEST: u8 = 21;
/// Message id of `hashes`.
pub(crate) const HASHES: u8 = 22;
/// Message id of `hash reject`.
pub(crate) const HASH_REJECT: u8 = 23;

/// Most hashes a request may ask for: BEP 52 says it SHOULD NOT exceed
/// 512, but libtorrent asks for a whole piece's leaves at once and serves
/// up to 8,192 (a 128 MiB piece), so this follows libtorrent.
pub const MAX_HASH_REQUEST_LENGTH: u32 = 8192;

/// The 48-byte payload of `hash request` and `hash reject`, and the head
/// of `hashes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashRequest {
    /// The file's merkle root (its `pieces root`).
    pub pieces_root: [u8; 32],
    /// Layers above the leaves of the requested hashes (0 = leaves).
    pub base_layer: u32,
    /// Offset of the first requested hash in that layer.
    pub index: u32,
    /// Number of base-layer hashes.
    pub length: u32,
    /// Ancestor layers whose uncles are wanted, counting the omitted ones.
    pub proof_layers: u32,
}

/// Why a hash request's shape breaks BEP 52's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HashRequestError {
    /// `length` is below 2 or not a power of two.
    #[error("length {0} is not a power of two of at least 2")]
    BadLength(u32),
    /// `length` exceeds [`MAX_HASH_REQUEST_LENGTH`].
    #[error("length {0} exceeds {MAX_HASH_REQUEST_LENGTH}")]
    TooLong(u32),
    /// `index` is not a multiple of `length`.
    #[error("index {index} is not a multiple of length {length}")]
    Unaligned {
        /// The index.
        index: u32,
        /// The length.
        length: u32,
    },
    /// The request reaches outside a tree of the given size.
    #[error("outside the file's tree")]
    OutOfTree,
}

/// `ceil(log2(n))`, 0 for `n <= 1`.
fn ceil_log2(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl HashRequest {
    /// Payload bytes.
    pub const LEN: usize = 48;

    /// The 48 payload bytes.
    pub fn to_bytes(&self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[..32].copy_from_slice(&self.pieces_root);
        b[32..36].copy_from_slice(&self.base_layer.to_be_bytes());
        b[36..40].copy_from_slice(&self.index.to_be_bytes());
        b[40..44].copy_from_slice(&self.length.to_be_bytes());
        b[44..48].copy_from_slice(&self.proof_layers.to_be_bytes());
        b
    }

    /// Parses the 48 payload bytes.
    pub fn from_bytes(b: &[u8; 48]) -> Self {
        let mut pieces_root = [0u8; 32];
        pieces_root.copy_from_slice(&b[..32]);
        HashRequest {
            pieces_root,
            base_layer: be32(&b[32..36]),
            index: be32(&b[36..40]),
            length: be32(&b[40..44]),
            proof_layers: be32(&b[44..48]),
        }
    }

    /// Uncle hashes a `hashes` answer carries: the proof layers minus the
    /// `log2(length) - 1` that lie inside the requested hashes.
    pub fn proof_hash_count(&self) -> u32 {
        self.proof_layers
            .saturating_sub(ceil_log2(self.length).saturating_sub(1))
    }

    /// Hashes in a `hashes` answer: `length` plus the uncles.
    pub fn hash_count(&self) -> u64 {
        u64::from(self.length) + u64::from(self.proof_hash_count())
    }

    /// Checks BEP 52's rules on the shape: `length` a power of two from 2
    /// to [`MAX_HASH_REQUEST_LENGTH`], `index` a multiple of it.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn check(&self) -> Result<(), HashRequestError> {
        if self.length < 2 || !self.length.is_power_of_two() {
            return Err(HashRequestError::BadLength(self.length));
        }
        if self.length > MAX_HASH_REQUEST_LENGTH {
            return Err(HashRequestError::TooLong(self.length));
        }
        if !self.index.is_multiple_of(self.length) {
            return Err(HashRequestError::Unaligned {
                index: self.index,
                length: self.length,
            });
        }
        Ok(())
    }

    /// [`HashRequest::check`], and that the request fits a file tree of
    /// `leaves` 16 KiB leaves (padded to a power of two), as libtorrent
    /// validates it: the base layer is below the root, the hashes lie
    /// inside the base layer, and the proof stops below the root (the root
    /// has no uncle).
    ///
    /// # Errors
    /// As [`HashRequest::check`], or [`HashRequestError::OutOfTree`].
    pub fn check_in_tree(&self, leaves: u64) -> Result<(), HashRequestError> {
        self.check()?;
        let height = if leaves <= 1 {
            0
        } else {
            64 - (leaves - 1).leading_zeros()
        };
        let width = |layer: u32| 1u64.checked_shl(height - layer).unwrap_or(u64::MAX);
        let fits = self.base_layer < height
            && u64::from(self.index) + u64::from(self.length) <= width(self.base_layer)
            && u64::from(self.base_layer) + u64::from(self.proof_layers) < u64::from(height);
        if fits {
            Ok(())
        } else {
            Err(HashRequestError::OutOfTree)
        }
    }
}

/// The payload of `hashes`: the request it answers and its hashes,
/// borrowed from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hashes<'a> {
    /// The request answered (echoed by the sender).
    pub request: HashRequest,
    /// `request.hash_count()` hashes of 32 bytes, base layer first.
    hashes: &'a [u8],
}

impl<'a> Hashes<'a> {
    /// Pairs `request` with its answer's hash bytes; `None` unless
    /// `hashes` is exactly [`HashRequest::hash_count`] hashes of 32 bytes.
    pub fn new(request: HashRequest, hashes: &'a [u8]) -> Option<Self> {
        (hashes.len().is_multiple_of(32) && hashes.len() as u64 / 32 == request.hash_count())
            .then_some(Hashes { request, hashes })
    }

    /// All hashes, base layer then uncles, as raw bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.hashes
    }

    /// The base-layer hashes.
    pub fn base(&self) -> impl ExactSizeIterator<Item = [u8; 32]> + 'a {
        let n = self.request.length as usize * 32;
        to_hashes(&self.hashes[..n])
    }

    /// The uncle hashes, nearest the base layer first.
    pub fn proof(&self) -> impl ExactSizeIterator<Item = [u8; 32]> + 'a {
        let n = self.request.length as usize * 32;
        to_hashes(&self.hashes[n..])
    }
}

fn to_hashes(b: &[u8]) -> impl ExactSizeIterator<Item = [u8; 32]> + '_ {
    b.chunks_exact(32).map(|c| {
        let mut h = [0u8; 32];
        h.copy_from_slice(c);
        h
    })
}

/// Decodes the body of message 21, 22 or 23 (after the id byte).
pub(crate) fn decode(id: u8, body: &[u8]) -> Result<Message<'_>, MessageError> {
    let bad = || MessageError::BadLength {
        id,
        len: body.len(),
    };
    let head: &[u8; 48] = body
        .get(..HashRequest::LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(bad)?;
    let request = HashRequest::from_bytes(head);
    let rest = &body[HashRequest::LEN..];
    match id {
        HASH_REQUEST if rest.is_empty() => Ok(Message::HashRequest(request)),
        HASH_REJECT if rest.is_empty() => Ok(Message::HashReject(request)),
        HASHES => Hashes::new(request, rest)
            .map(Message::Hashes)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Appends the body of a hash message (after the id byte) to `out`.
pub(crate) fn encode_body(msg: &Message<'_>, out: &mut Vec<u8>) {
    match msg {
        Message::HashRequest(r) | Message::HashReject(r) => out.extend_from_slice(&r.to_bytes()),
        Message::Hashes(h) => {
            out.extend_from_slice(&h.request.to_bytes());
            out.extend_from_slice(h.hashes);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{decode_message, DEFAULT_MAX_FRAME};

    fn req(length: u32, proof_layers: u32) -> HashRequest {
        HashRequest {
            pieces_root: [7; 32],
            base_layer: 2,
            index: 4,
            length,
            proof_layers,
        }
    }

    fn frame(id: u8, body: &[u8]) -> Vec<u8> {
        let mut f = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        f.push(id);
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn exact_bytes_and_round_trips() {
        let r = req(4, 5);
        let mut want = vec![0, 0, 0, 49, 21];
        want.extend_from_slice(&[7; 32]);
        want.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 5]);
        let mut out = Vec::new();
        Message::HashRequest(r).encode(&mut out);
        assert_eq!(out, want);
        assert_eq!(Message::HashRequest(r).encoded_len(), 53);
        assert_eq!(
            decode_message(&out, DEFAULT_MAX_FRAME),
            Ok(Some((Message::HashRequest(r), 53)))
        );
        let mut out = Vec::new();
        Message::HashReject(r).encode(&mut out);
        want[4] = 23;
        assert_eq!(out, want);
        assert_eq!(
            decode_message(&out, DEFAULT_MAX_FRAME),
            Ok(Some((Message::HashReject(r), 53)))
        );
        // 4 base hashes + 5 proof layers, the first log2(4)-1 = 1 implied
        assert_eq!((r.proof_hash_count(), r.hash_count()), (4, 8));
        let hashes: Vec<u8> = (0..8u8).flat_map(|i| [i; 32]).collect();
        let h = Hashes::new(r, &hashes).unwrap();
        let mut out = Vec::new();
        Message::Hashes(h).encode(&mut out);
        assert_eq!(out.len(), 4 + 1 + 48 + 8 * 32);
        assert_eq!(&out[..5], &[0, 0, 1, 49, 22]);
        assert_eq!(Message::Hashes(h).encoded_len(), out.len());
        let (m, used) = decode_message(&out, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!((m, used), (Message::Hashes(h), out.len()));
        let Message::Hashes(back) = m else {
            unreachable!()
        };
        assert_eq!(
            back.base().collect::<Vec<_>>(),
            [[0; 32], [1; 32], [2; 32], [3; 32]]
        );
        assert_eq!(back.proof().map(|p| p[0]).collect::<Vec<_>>(), [4, 5, 6, 7]);
        assert_eq!(back.raw(), &hashes[..]);
        // partial frames ask for more
        for cut in 0..out.len() {
            assert_eq!(decode_message(&out[..cut], DEFAULT_MAX_FRAME), Ok(None));
        }
    }

    #[test]
    fn proof_counts() {
        // length 2: nothing implied; length 512: 8 implied
        assert_eq!(req(2, 3).hash_count(), 5);
        assert_eq!(req(512, 8).hash_count(), 512);
        assert_eq!(req(512, 10).hash_count(), 514);
        assert_eq!(req(1, 3).hash_count(), 4);
        assert_eq!(
            req(u32::MAX, u32::MAX).hash_count(),
            2 * u64::from(u32::MAX) - 31
        );
    }

    #[test]
    fn hostile_lengths() {
        let r = req(4, 5);
        let body = r.to_bytes();
        // request and reject: exactly 48 bytes
        for id in [21u8, 23] {
            for len in [0usize, 1, 47, 49, 80] {
                let mut b = body.to_vec();
                b.resize(len, 0);
                assert_eq!(
                    decode_message(&frame(id, &b), DEFAULT_MAX_FRAME),
                    Err(MessageError::BadLength { id, len }),
                    "id {id} len {len}"
                );
            }
        }
        // hashes: a whole number of hashes, exactly as many as asked
        for n in [0usize, 7, 9, 100] {
            let mut b = body.to_vec();
            b.resize(48 + 32 * n, 1);
            assert_eq!(
                decode_message(&frame(22, &b), DEFAULT_MAX_FRAME),
                Err(MessageError::BadLength {
                    id: 22,
                    len: b.len()
                })
            );
        }
        let mut b = body.to_vec();
        b.resize(48 + 32 * 8 - 1, 1);
        assert!(decode_message(&frame(22, &b), DEFAULT_MAX_FRAME).is_err());
        assert!(decode_message(&frame(22, &body[..40]), DEFAULT_MAX_FRAME).is_err());
        // a request claiming 2^32 hashes cannot make a reader allocate: the
        // frame bound stops it before the body is buffered
        let huge = req(u32::MAX, u32::MAX).to_bytes();
        let mut f = frame(22, &huge);
        f[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_message(&f, DEFAULT_MAX_FRAME),
            Err(MessageError::FrameTooLong { .. })
        ));
        assert!(decode_message(&frame(22, &huge), DEFAULT_MAX_FRAME).is_err());
    }

    #[test]
    fn request_rules() {
        assert_eq!(req(4, 0).check(), Ok(()));
        assert_eq!(req(3, 0).check(), Err(HashRequestError::BadLength(3)));
        assert_eq!(req(1, 0).check(), Err(HashRequestError::BadLength(1)));
        assert_eq!(req(16384, 0).check(), Err(HashRequestError::TooLong(16384)));
        assert_eq!(
            req(8, 0).check(),
            Err(HashRequestError::Unaligned {
                index: 4,
                length: 8
            })
        );
        // a tree of 64 leaves (height 6): base 2 has 16 nodes, and proofs
        // from it reach layer 5 at most (the root's children)
        assert_eq!(req(4, 3).check_in_tree(64), Ok(()));
        assert_eq!(
            req(4, 4).check_in_tree(64),
            Err(HashRequestError::OutOfTree)
        );
        let end = HashRequest {
            index: 12,
            ..req(4, 0)
        };
        assert_eq!(end.check_in_tree(64), Ok(()));
        assert_eq!(end.check_in_tree(48), Ok(())); // padded to 64
        let over = HashRequest {
            index: 16,
            length: 16,
            ..req(4, 0)
        };
        assert_eq!(over.check_in_tree(64), Err(HashRequestError::OutOfTree));
        let far = HashRequest {
            index: 16,
            ..req(4, 0)
        };
        assert_eq!(far.check_in_tree(64), Err(HashRequestError::OutOfTree));
        let high = HashRequest {
            base_layer: 6,
            index: 0,
            ..req(2, 0)
        };
        assert_eq!(high.check_in_tree(64), Err(HashRequestError::OutOfTree));
        assert_eq!(req(4, 0).check_in_tree(1), Err(HashRequestError::OutOfTree));
        assert_eq!(
            HashRequest {
                base_layer: u32::MAX,
                ..req(4, u32::MAX)
            }
            .check_in_tree(u64::MAX),
            Err(HashRequestError::OutOfTree)
        );
    }

    proptest::proptest! {
        /// Any header with any number of hashes: decoding never panics,
        /// and what decodes re-encodes to the same bytes.
        #[test]
        fn prop_any_hash_frame(
            id in 21u8..=23,
            base in 0u32..40,
            index in proptest::prelude::any::<u32>(),
            length in 0u32..600,
            proof in 0u32..40,
            n in 0usize..40,
        ) {
            let r = HashRequest { pieces_root: [3; 32], base_layer: base, index, length, proof_layers: proof };
            let mut body = r.to_bytes().to_vec();
            body.resize(48 + 32 * n, 9);
            let f = frame(id, &body);
            if let Ok(Some((m, used))) = decode_message(&f, DEFAULT_MAX_FRAME) {
                let mut out = Vec::new();
                m.encode(&mut out);
                proptest::prop_assert_eq!(&out[..], &f[..used]);
                if let Message::Hashes(h) = m {
                    proptest::prop_assert_eq!(h.base().len() + h.proof().len(), n);
                    proptest::prop_assert_eq!(h.request.hash_count(), n as u64);
                }
            }
        }
    }
}
