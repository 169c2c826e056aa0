//! BEP 9 metadata exchange (`ut_metadata`): the message codec, and
//! [`MetadataAssembler`], the pure state object that fetches an info
//! dictionary in 16 KiB pieces from several peers and checks it against the
//! info hash.
//!
//! # Size bound
//! A peer announces `metadata_size` in its extension handshake; bittern
//! refuses anything above [`MAX_METADATA_SIZE`] (8 MiB) before allocating.
//! An info dictionary costs about 20 bytes per piece plus the file list, so
//! 8 MiB holds 400,000 piece hashes (100 GiB at 256 KiB pieces, 6 TiB at
//! 16 MiB) or a list of about 100,000 files. libtorrent's long-standing
//! default is 4 MiB; we take twice that so the few very large multi-file
//! torrents that libtorrent users raise the limit for still work, while a
//! hostile `metadata_size` of 4 GiB costs nothing. The assembler allocates
//! exactly `metadata_size` bytes (never more than the bound) when it is
//! created, and nothing more until the hash has been checked.
//!
//! # v2
//! [`MetadataHash`] names what the finished bytes are checked against: v1
//! (SHA-1 of the info dictionary, `btih`) or v2 (SHA-256 of it, `btmh`,
//! BEP 52), without changing the assembler.

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, Limits, Value};
use crate::id::InfoHash;

/// Bytes per metadata piece (BEP 9); only the last piece may be shorter.
pub const METADATA_PIECE_LEN: usize = 16 * 1024;

/// Largest `metadata_size` bittern fetches: 8 MiB (see the module docs).
pub const MAX_METADATA_SIZE: u64 = 8 << 20;

/// Requests one peer may have outstanding by default; see
/// [`MetadataAssembler::set_per_peer_limit`].
pub const DEFAULT_PER_PEER_LIMIT: usize = 16;

const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

/// A `ut_metadata` message or fetch step that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The bencoded header is broken or over the limits.
    #[error("ut_metadata message is not bencode")]
    Bencode(#[from] bencode::Error),
    /// The header is not a dictionary.
    #[error("ut_metadata message is not a dictionary")]
    NotADict,
    /// A required key is absent or of the wrong type or range.
    #[error("ut_metadata message lacks a valid {0:?}")]
    MissingField(&'static str),
    /// A `msg_type` BEP 9 does not define; BEP 9 says to ignore the
    /// message, so the engine should not drop the peer for this.
    #[error("unknown ut_metadata msg_type {0}")]
    UnknownType(i64),
    /// A request or reject followed by raw bytes.
    #[error("{0} bytes after a ut_metadata request or reject")]
    TrailingData(usize),
    /// `metadata_size` above [`MAX_METADATA_SIZE`].
    #[error("metadata size {size} exceeds the limit of {max}")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// `metadata_size` of zero.
    #[error("metadata size is zero")]
    Empty,
    /// A piece index past the end of the metadata.
    #[error("metadata piece {piece} out of range ({count} pieces)")]
    OutOfRange {
        /// The index received.
        piece: u32,
        /// How many pieces there are.
        count: usize,
    },
    /// A data piece of the wrong length.
    #[error("metadata piece {piece} has {len} bytes, expected {want}")]
    WrongLength {
        /// The index.
        piece: u32,
        /// Bytes received.
        len: usize,
        /// Bytes a piece at this index must have.
        want: usize,
    },
    /// Data or a reject for a piece we did not ask this peer for.
    #[error("unsolicited metadata piece {piece}")]
    Unsolicited {
        /// The index.
        piece: u32,
    },
    /// A data message whose `total_size` is not the size being fetched.
    #[error("metadata total_size {got} differs from {want}")]
    SizeMismatch {
        /// The message's `total_size`.
        got: u64,
        /// The size being fetched.
        want: u64,
    },
    /// The metadata was already complete and handed out.
    #[error("metadata fetch already finished")]
    Finished,
}

/// One `ut_metadata` message, borrowing a data message's piece from the
/// payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    /// `msg_type` 0: please send this piece.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// `msg_type` 1: a piece, sent raw after the bencoded header.
    Data {
        /// Piece index.
        piece: u32,
        /// Size of the whole info dictionary.
        total_size: u64,
        /// The piece's bytes.
        data: &'a [u8],
    },
    /// `msg_type` 2: the sender will not send this piece.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

/// Header limits: three small integers, so tiny; the whole payload may
/// still hold a 16 KiB piece (and more, which the assembler rejects).
fn limits() -> Limits {
    Limits {
        max_depth: 2,
        max_len: 1 << 20,
        max_string_len: 256,
        max_items: 64,
    }
}

impl<'a> MetadataMessage<'a> {
    /// Read an extended message payload sent under our `ut_metadata` id.
    ///
    /// # Errors
    /// [`MetadataError`] for a broken header, a missing or negative
    /// `msg_type`/`piece`, a data message without `total_size`, raw bytes
    /// after a request or reject, or an unknown `msg_type`.
    pub fn decode(payload: &'a [u8]) -> Result<Self, MetadataError> {
        let (v, used) = bencode::decode_prefix(payload, &limits())?;
        let d = v.as_dict().ok_or(MetadataError::NotADict)?;
        let int = |k: &'static str| {
            d.get(k.as_bytes())
                .and_then(Value::as_int)
                .ok_or(MetadataError::MissingField(k))
        };
        let msg_type = int("msg_type")?;
        let piece =
            u32::try_from(int("piece")?).map_err(|_| MetadataError::MissingField("piece"))?;
        let rest = &payload[used..];
        let no_rest = || {
            if rest.is_empty() {
                Ok(())
            } else {
                Err(MetadataError::TrailingData(rest.len()))
            }
        };
        match msg_type {
            MSG_REQUEST => no_rest().map(|()| MetadataMessage::Request { piece }),
            MSG_REJECT => no_rest().map(|()| MetadataMessage::Reject { piece }),
            MSG_DATA => {
                let total_size = u64::try_from(int("total_size")?)
                    .map_err(|_| MetadataError::MissingField("total_size"))?;
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: rest,
                })
            }
            other => Err(MetadataError::UnknownType(other)),
        }
    }

    /// The answer to a request for `piece` of the info dictionary `info`
    /// we serve: its data, or a reject past the end. (Refusing a private
    /// torrent's metadata is not required by BEP 27 and is the caller's
    /// choice.)
    pub fn answer(info: &'a [u8], piece: u32) -> Self {
        match metadata_piece(info, piece) {
            Some(data) => MetadataMessage::Data {
                piece,
                total_size: info.len() as u64,
                data,
            },
            None => MetadataMessage::Reject { piece },
        }
    }

    /// Append the payload (canonical header, then a data message's piece);
    /// wrap it in `Message::Extended` with the peer's `ut_metadata` id.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut d = std::collections::BTreeMap::new();
        let (t, piece) = match *self {
            MetadataMessage::Request { piece } => (MSG_REQUEST, piece),
            MetadataMessage::Data {
                piece, total_size, ..
            } => {
                d.insert(
                    b"total_size".to_vec(),
                    Value::Int(i64::try_from(total_size).unwrap_or(i64::MAX)),
                );
                (MSG_DATA, piece)
            }
            MetadataMessage::Reject { piece } => (MSG_REJECT, piece),
        };
        d.insert(b"msg_type".to_vec(), Value::Int(t));
        d.insert(b"piece".to_vec(), Value::Int(i64::from(piece)));
        out.extend_from_slice(&bencode::encode(&Value::Dict(d)));
        if let MetadataMessage::Data { data, .. } = self {
            out.extend_from_slice(data);
        }
    }
}

/// How many 16 KiB pieces `size` bytes of metadata take.
pub fn metadata_piece_count(size: u64) -> usize {
    usize::try_from(size.div_ceil(METADATA_PIECE_LEN as u64)).unwrap_or(usize::MAX)
}

/// The bytes of piece `piece` of an info dictionary we serve, or `None`
/// past its end (answer with a reject).
pub fn metadata_piece(info: &[u8], piece: u32) -> Option<&[u8]> {
    let start = usize::try_from(piece)
        .ok()?
        .checked_mul(METADATA_PIECE_LEN)?;
    if start >= info.len() {
        return None;
    }
    info.get(start..info.len().min(start + METADATA_PIECE_LEN))
}

/// What the finished metadata must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetadataHash {
    /// v1: SHA-1 of the bencoded info dictionary (`urn:btih`).
    V1(InfoHash),
    /// v2: SHA-256 of the bencoded info dictionary (`urn:btmh:1220`, BEP
    /// 52), all 32 bytes.
    V2([u8; 32]),
}

impl MetadataHash {
    /// Whether `info` is the dictionary this hash names.
    pub fn verify(&self, info: &[u8]) -> bool {
        match self {
            MetadataHash::V1(h) => Sha1::digest(info).as_slice() == h.0.as_slice(),
            MetadataHash::V2(h) => sha2::Sha256::digest(info).as_slice() == h.as_slice(),
        }
    }
}

/// Result of a data piece the assembler accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted<P> {
    /// Stored; more pieces are needed.
    Stored,
    /// Another peer's copy arrived first; this one was dropped.
    Duplicate,
    /// The last piece: the whole info dictionary, hash checked.
    Complete(Vec<u8>),
    /// The last piece arrived but the hash does not match. Every piece is
    /// wanted again; `contributors` (each once) sent the pieces, and at
    /// least one of them lied: drop them and fetch from others.
    HashFailed {
        /// The peers whose pieces made up the bad copy.
        contributors: Vec<P>,
    },
}

#[derive(Debug, Clone)]
struct Slot<P> {
    /// Peers asked for this piece and not yet answered.
    asked: Vec<P>,
    /// Who sent the stored copy.
    have: Option<P>,
}

/// Fetches one info dictionary from several peers at once.
///
/// Pure state: the engine asks it which piece to request from which peer
/// ([`next_request`](Self::next_request)), feeds it the answers
/// ([`accept`](Self::accept), [`reject`](Self::reject)) and tells it when a
/// peer is gone ([`peer_gone`](Self::peer_gone)). `P` is the engine's peer
/// key. Pieces are handed out missing-first; once every piece is asked
/// for, a peer may be given a piece another peer is already fetching, so a
/// stalled peer cannot hold the fetch up (the later copy is a
/// [`Accepted::Duplicate`]).
#[derive(Debug, Clone)]
pub struct MetadataAssembler<P> {
    hash: MetadataHash,
    size: usize,
    /// `size` bytes, allocated up front (bounded by [`MAX_METADATA_SIZE`]).
    buf: Vec<u8>,
    slots: Vec<Slot<P>>,
    have: usize,
    /// Peers that rejected a request: not asked until `allow_again`.
    refused: Vec<P>,
    per_peer_limit: usize,
    finished: bool,
}

impl<P: Clone + PartialEq> MetadataAssembler<P> {
    /// Start fetching `size` bytes (a peer's `metadata_size`) that must
    /// match `hash`.
    ///
    /// # Errors
    /// [`MetadataError::TooLarge`] above [`MAX_METADATA_SIZE`],
    /// [`MetadataError::Empty`] for zero. Nothing is allocated then.
    pub fn new(hash: MetadataHash, size: u64) -> Result<Self, MetadataError> {
        if size == 0 {
            return Err(MetadataError::Empty);
        }
        if size > MAX_METADATA_SIZE {
            return Err(MetadataError::TooLarge {
                size,
                max: MAX_METADATA_SIZE,
            });
        }
        let count = metadata_piece_count(size);
        let size = usize::try_from(size).map_err(|_| MetadataError::TooLarge {
            size,
            max: MAX_METADATA_SIZE,
        })?;
        Ok(MetadataAssembler {
            hash,
            size,
            buf: vec![0; size],
            slots: vec![
                Slot {
                    asked: Vec::new(),
                    have: None,
                };
                count
            ],
            have: 0,
            refused: Vec::new(),
            per_peer_limit: DEFAULT_PER_PEER_LIMIT,
            finished: false,
        })
    }

    /// At most `limit` (at least 1) outstanding requests per peer.
    pub fn set_per_peer_limit(&mut self, limit: usize) {
        self.per_peer_limit = limit.max(1);
    }

    /// The metadata size being fetched.
    pub fn size(&self) -> u64 {
        self.size as u64
    }

    /// The hash the result is checked against.
    pub fn hash(&self) -> MetadataHash {
        self.hash
    }

    /// How many pieces the metadata has.
    pub fn piece_count(&self) -> usize {
        self.slots.len()
    }

    /// How many pieces are stored (of the current attempt).
    pub fn pieces_have(&self) -> usize {
        self.have
    }

    /// Requests `peer` has outstanding.
    pub fn in_flight(&self, peer: &P) -> usize {
        self.slots.iter().filter(|s| s.asked.contains(peer)).count()
    }

    /// Whether `peer` rejected a request (and so is not asked again).
    pub fn has_refused(&self, peer: &P) -> bool {
        self.refused.contains(peer)
    }

    /// The length piece `piece` must have.
    fn piece_len(&self, piece: usize) -> usize {
        (self.size - piece * METADATA_PIECE_LEN).min(METADATA_PIECE_LEN)
    }

    /// The next piece to request from `peer`, recorded as asked; `None` if
    /// the peer is at its limit, refused before, or there is nothing it
    /// could usefully fetch. Call until `None` to fill its pipeline.
    pub fn next_request(&mut self, peer: &P) -> Option<u32> {
        if self.finished
            || self.refused.contains(peer)
            || self.in_flight(peer) >= self.per_peer_limit
        {
            return None;
        }
        let pick = |s: &Slot<P>, max_asked: usize| {
            s.have.is_none() && s.asked.len() <= max_asked && !s.asked.contains(peer)
        };
        // missing and unasked first, then the least-asked missing piece
        let i = match self.slots.iter().position(|s| pick(s, 0)) {
            Some(i) => i,
            None => {
                let min = self
                    .slots
                    .iter()
                    .filter(|s| pick(s, usize::MAX))
                    .map(|s| s.asked.len())
                    .min()?;
                self.slots.iter().position(|s| pick(s, min))?
            }
        };
        self.slots[i].asked.push(peer.clone());
        u32::try_from(i).ok()
    }

    fn check_index(&self, piece: u32) -> Result<usize, MetadataError> {
        usize::try_from(piece)
            .ok()
            .filter(|&i| i < self.slots.len())
            .ok_or(MetadataError::OutOfRange {
                piece,
                count: self.slots.len(),
            })
    }

    /// Take `peer` off the askers of `piece`, or say it was never asked.
    fn unask(&mut self, peer: &P, piece: u32) -> Result<usize, MetadataError> {
        let i = self.check_index(piece)?;
        let asked = &mut self.slots[i].asked;
        let at = asked
            .iter()
            .position(|p| p == peer)
            .ok_or(MetadataError::Unsolicited { piece })?;
        asked.swap_remove(at);
        Ok(i)
    }

    /// A data message from `peer`.
    ///
    /// # Errors
    /// [`MetadataError::SizeMismatch`] if `total_size` is not the size
    /// being fetched, [`MetadataError::OutOfRange`],
    /// [`MetadataError::Unsolicited`] if `peer` was not asked for `piece`,
    /// [`MetadataError::WrongLength`] (the request then counts as
    /// answered), [`MetadataError::Finished`] after completion. Each means
    /// the peer misbehaved; nothing is stored.
    pub fn accept(
        &mut self,
        peer: &P,
        piece: u32,
        total_size: u64,
        data: &[u8],
    ) -> Result<Accepted<P>, MetadataError> {
        if self.finished {
            return Err(MetadataError::Finished);
        }
        if total_size != self.size as u64 {
            return Err(MetadataError::SizeMismatch {
                got: total_size,
                want: self.size as u64,
            });
        }
        let i = self.unask(peer, piece)?;
        if self.slots[i].have.is_some() {
            return Ok(Accepted::Duplicate);
        }
        let want = self.piece_len(i);
        if data.len() != want {
            return Err(MetadataError::WrongLength {
                piece,
                len: data.len(),
                want,
            });
        }
        let start = i * METADATA_PIECE_LEN;
        self.buf[start..start + want].copy_from_slice(data);
        self.slots[i].have = Some(peer.clone());
        self.have += 1;
        if self.have < self.slots.len() {
            return Ok(Accepted::Stored);
        }
        if self.hash.verify(&self.buf) {
            self.finished = true;
            for s in &mut self.slots {
                s.asked.clear();
            }
            return Ok(Accepted::Complete(std::mem::take(&mut self.buf)));
        }
        let mut contributors: Vec<P> = Vec::new();
        for s in &mut self.slots {
            if let Some(p) = s.have.take() {
                if !contributors.contains(&p) {
                    contributors.push(p);
                }
            }
        }
        self.have = 0;
        Ok(Accepted::HashFailed { contributors })
    }

    /// A reject from `peer`: the piece is wanted from others, and `peer` is
    /// not asked again until [`allow_again`](Self::allow_again). Returns
    /// `true` when `peer` has now refused everything it was still asked and
    /// never sent a piece (the engine may drop it as useless).
    ///
    /// # Errors
    /// [`MetadataError::OutOfRange`], or [`MetadataError::Unsolicited`]
    /// for a piece `peer` was not asked for.
    pub fn reject(&mut self, peer: &P, piece: u32) -> Result<bool, MetadataError> {
        self.unask(peer, piece)?;
        if !self.refused.contains(peer) {
            self.refused.push(peer.clone());
        }
        let contributed = self.slots.iter().any(|s| s.have.as_ref() == Some(peer));
        Ok(self.in_flight(peer) == 0 && !contributed)
    }

    /// Ask `peer` again after a reject. BEP 9 lets a peer reject when it
    /// is busy, not only when it lacks the metadata, so the engine may
    /// call this after a back-off (libtorrent waits 20 s) when no other
    /// peer can serve.
    pub fn allow_again(&mut self, peer: &P) {
        self.refused.retain(|p| p != peer);
    }

    /// `peer` disconnected: its outstanding pieces are wanted from others.
    /// Pieces it already sent stay (the hash check judges them).
    pub fn peer_gone(&mut self, peer: &P) {
        for s in &mut self.slots {
            s.asked.retain(|p| p != peer);
        }
        self.refused.retain(|p| p != peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fake info dictionary of `len` bytes and its v1 hash.
    fn info(len: usize) -> (Vec<u8>, MetadataHash) {
        let b: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let h = MetadataHash::V1(InfoHash(Sha1::digest(&b).into()));
        (b, h)
    }

    fn enc(m: &MetadataMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    #[test]
    fn messages_exact_bytes_and_round_trip() {
        let r = MetadataMessage::Request { piece: 3 };
        assert_eq!(enc(&r), b"d8:msg_typei0e5:piecei3ee");
        let j = MetadataMessage::Reject { piece: 0 };
        assert_eq!(enc(&j), b"d8:msg_typei2e5:piecei0ee");
        let d = MetadataMessage::Data {
            piece: 1,
            total_size: 20000,
            data: b"raw\x00bytes e",
        };
        assert_eq!(
            enc(&d),
            b"d8:msg_typei1e5:piecei1e10:total_sizei20000eeraw\x00bytes e"
        );
        for m in [r, j, d] {
            let b = enc(&m);
            assert_eq!(MetadataMessage::decode(&b), Ok(m));
        }
        // a data message with an empty piece
        let e = MetadataMessage::Data {
            piece: 0,
            total_size: 1,
            data: b"",
        };
        assert_eq!(MetadataMessage::decode(&enc(&e)), Ok(e));
    }

    #[test]
    fn malformed_messages() {
        use MetadataError as E;
        let cases: &[(&[u8], E)] = &[
            (b"le", E::NotADict),
            (b"d5:piecei0ee", E::MissingField("msg_type")),
            (b"d8:msg_typei0ee", E::MissingField("piece")),
            (b"d8:msg_typei0e5:piecei-1ee", E::MissingField("piece")),
            (
                b"d8:msg_typei0e5:piecei4294967296ee",
                E::MissingField("piece"),
            ),
            (b"d8:msg_typei1e5:piecei0ee", E::MissingField("total_size")),
            (
                b"d8:msg_typei1e5:piecei0e10:total_sizei-3ee",
                E::MissingField("total_size"),
            ),
            (b"d8:msg_typei7e5:piecei0ee", E::UnknownType(7)),
            (b"d8:msg_typei0e5:piecei0eexyz", E::TrailingData(3)),
            (b"d8:msg_typei2e5:piecei0eex", E::TrailingData(1)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                MetadataMessage::decode(bytes).as_ref(),
                Err(want),
                "{bytes:?}"
            );
        }
        for bad in [
            &b""[..],
            b"d8:msg_type",
            b"d3:keyd3:keyd3:keyi1eeee",
            b"d1:x999:e",
        ] {
            assert!(
                matches!(MetadataMessage::decode(bad), Err(E::Bencode(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serving_pieces() {
        let (b, _) = info(2 * METADATA_PIECE_LEN + 5);
        assert_eq!(metadata_piece_count(b.len() as u64), 3);
        assert_eq!(metadata_piece(&b, 0), Some(&b[..METADATA_PIECE_LEN]));
        assert_eq!(metadata_piece(&b, 2), Some(&b[2 * METADATA_PIECE_LEN..]));
        assert_eq!(metadata_piece(&b, 3), None);
        assert_eq!(metadata_piece(&b, u32::MAX), None);
        assert_eq!(metadata_piece_count(METADATA_PIECE_LEN as u64), 1);
        assert_eq!(metadata_piece_count(1), 1);
        assert_eq!(
            MetadataMessage::answer(&b, 2),
            MetadataMessage::Data {
                piece: 2,
                total_size: b.len() as u64,
                data: &b[2 * METADATA_PIECE_LEN..]
            }
        );
        assert_eq!(
            MetadataMessage::answer(&b, 3),
            MetadataMessage::Reject { piece: 3 }
        );
    }

    #[test]
    fn size_bound_is_checked_before_allocating() {
        let (_, h) = info(1);
        assert!(matches!(
            MetadataAssembler::<u8>::new(h, 4 << 30),
            Err(MetadataError::TooLarge { size, max: MAX_METADATA_SIZE }) if size == 4 << 30
        ));
        assert!(MetadataAssembler::<u8>::new(h, u64::MAX).is_err());
        assert!(MetadataAssembler::<u8>::new(h, MAX_METADATA_SIZE + 1).is_err());
        assert_eq!(
            MetadataAssembler::<u8>::new(h, 0).err(),
            Some(MetadataError::Empty)
        );
        let a = MetadataAssembler::<u8>::new(h, MAX_METADATA_SIZE).unwrap();
        assert_eq!(a.piece_count(), 512);
    }

    /// Serve every request from `peer` out of `bytes`.
    fn serve(a: &mut MetadataAssembler<u8>, peer: u8, bytes: &[u8]) -> Vec<Accepted<u8>> {
        let mut out = Vec::new();
        while let Some(p) = a.next_request(&peer) {
            let d = metadata_piece(bytes, p).unwrap();
            out.push(a.accept(&peer, p, bytes.len() as u64, d).unwrap());
        }
        out
    }

    /// A `btmh` magnet's metadata is checked with SHA-256 over all 32
    /// bytes: the dictionary passes, one changed byte (or a hash that only
    /// shares the truncated 20 bytes) fails.
    #[test]
    fn v2_metadata_checked_by_sha256() {
        use sha2::Digest as _;
        let (b, _) = info(METADATA_PIECE_LEN + 7);
        let full: [u8; 32] = sha2::Sha256::digest(&b).into();
        let h = MetadataHash::V2(full);
        assert!(h.verify(&b));
        let mut bad = b.clone();
        bad[5] ^= 1;
        assert!(!h.verify(&bad));
        let mut other = full;
        other[31] ^= 1;
        assert!(!MetadataHash::V2(other).verify(&b));
        let mut a = MetadataAssembler::new(h, b.len() as u64).unwrap();
        let got = serve(&mut a, 1, &b);
        assert!(matches!(got.last(), Some(Accepted::Complete(x)) if *x == b));
    }

    #[test]
    fn several_peers_assemble_and_hash_checks() {
        let (b, h) = info(3 * METADATA_PIECE_LEN + 100);
        let mut a = MetadataAssembler::new(h, b.len() as u64).unwrap();
        a.set_per_peer_limit(2);
        // peers 1 and 2 each get two different pieces
        let p1: Vec<u32> = std::iter::from_fn(|| a.next_request(&1)).collect();
        let p2: Vec<u32> = std::iter::from_fn(|| a.next_request(&2)).collect();
        assert_eq!(p1, vec![0, 1]);
        assert_eq!(p2, vec![2, 3]);
        assert_eq!(a.in_flight(&1), 2);
        for (peer, list) in [(1u8, &p1), (2, &p2)] {
            for &p in list.iter() {
                let r = a.accept(&peer, p, b.len() as u64, metadata_piece(&b, p).unwrap());
                if a.pieces_have() < 4 {
                    assert_eq!(r, Ok(Accepted::Stored));
                } else {
                    assert_eq!(r, Ok(Accepted::Complete(b.clone())));
                }
            }
        }
        assert_eq!(a.next_request(&3), None);
        assert_eq!(
            a.accept(&1, 0, b.len() as u64, &b[..METADATA_PIECE_LEN]),
            Err(MetadataError::Finished)
        );
    }

    #[test]
    fn hostile_data_is_refused_and_nothing_stored() {
        let (b, h) = info(METADATA_PIECE_LEN + 10);
        let n = b.len() as u64;
        let mut a = MetadataAssembler::new(h, n).unwrap();
        // unsolicited: nobody asked peer 9
        assert_eq!(
            a.accept(&9, 0, n, &b[..METADATA_PIECE_LEN]),
            Err(MetadataError::Unsolicited { piece: 0 })
        );
        assert_eq!(
            a.reject(&9, 0),
            Err(MetadataError::Unsolicited { piece: 0 })
        );
        assert_eq!(a.next_request(&1), Some(0));
        assert_eq!(a.next_request(&1), Some(1));
        // out of range, wrong total size, wrong length
        assert_eq!(
            a.accept(&1, 2, n, &b[..10]),
            Err(MetadataError::OutOfRange { piece: 2, count: 2 })
        );
        assert_eq!(
            a.accept(&1, u32::MAX, n, &b[..10]),
            Err(MetadataError::OutOfRange {
                piece: u32::MAX,
                count: 2
            })
        );
        assert_eq!(
            a.accept(&1, 1, 4 << 30, &b[..10]),
            Err(MetadataError::SizeMismatch {
                got: 4 << 30,
                want: n
            })
        );
        assert_eq!(
            a.accept(&1, 1, n, &b[..11]),
            Err(MetadataError::WrongLength {
                piece: 1,
                len: 11,
                want: 10
            })
        );
        // the wrong-length answer used up the request
        assert_eq!(
            a.accept(&1, 1, n, &b[METADATA_PIECE_LEN..]),
            Err(MetadataError::Unsolicited { piece: 1 })
        );
        assert_eq!(a.pieces_have(), 0);
        // a longer-than-a-piece first piece is refused too
        let mut long = b[..METADATA_PIECE_LEN].to_vec();
        long.push(0);
        assert!(matches!(
            a.accept(&1, 0, n, &long),
            Err(MetadataError::WrongLength { .. })
        ));
        assert_eq!(a.pieces_have(), 0);
    }

    #[test]
    fn hash_failure_names_contributors_and_refetch_succeeds() {
        let (b, h) = info(3 * METADATA_PIECE_LEN);
        let n = b.len() as u64;
        let mut a = MetadataAssembler::new(h, n).unwrap();
        a.set_per_peer_limit(1);
        let liar = {
            let mut l = b.clone();
            l[METADATA_PIECE_LEN + 5] ^= 1; // corrupt piece 1
            l
        };
        // honest 1 gets piece 0, liar 2 piece 1, honest 3 piece 2
        for (peer, src) in [(1u8, &b), (2, &liar), (3, &b)] {
            let p = a.next_request(&peer).unwrap();
            let r = a
                .accept(&peer, p, n, metadata_piece(src, p).unwrap())
                .unwrap();
            if peer == 3 {
                assert_eq!(
                    r,
                    Accepted::HashFailed {
                        contributors: vec![1, 2, 3]
                    }
                );
            }
        }
        assert_eq!(a.pieces_have(), 0);
        // the engine drops the liar; honest peers fetch again
        a.peer_gone(&2);
        a.set_per_peer_limit(8);
        let r = serve(&mut a, 1, &b);
        assert_eq!(r.last(), Some(&Accepted::Complete(b.clone())));
    }

    #[test]
    fn rejects_and_stalled_peers() {
        let (b, h) = info(2 * METADATA_PIECE_LEN);
        let n = b.len() as u64;
        let mut a = MetadataAssembler::new(h, n).unwrap();
        assert_eq!(a.next_request(&1), Some(0));
        assert_eq!(a.next_request(&1), Some(1));
        assert_eq!(
            a.reject(&1, 2),
            Err(MetadataError::OutOfRange { piece: 2, count: 2 })
        );
        assert_eq!(a.reject(&1, 0), Ok(false)); // piece 1 still asked
        assert_eq!(a.reject(&1, 1), Ok(true)); // refused everything
        assert!(a.has_refused(&1));
        assert_eq!(a.next_request(&1), None);
        a.allow_again(&1);
        assert_eq!(a.next_request(&1), Some(0));
        a.peer_gone(&1);
        // peer 2 is slow with piece 0; when nothing is unasked, peer 3 may
        // fetch the same piece and the late copy is a duplicate
        assert_eq!(a.next_request(&2), Some(0));
        assert_eq!(a.next_request(&2), Some(1));
        assert_eq!(a.next_request(&2), None);
        assert_eq!(a.next_request(&3), Some(0));
        assert_eq!(
            a.accept(&3, 0, n, metadata_piece(&b, 0).unwrap()),
            Ok(Accepted::Stored)
        );
        assert_eq!(
            a.accept(&2, 0, n, metadata_piece(&b, 0).unwrap()),
            Ok(Accepted::Duplicate)
        );
        // peer 2 disconnects: its piece 1 goes to peer 3
        a.peer_gone(&2);
        assert_eq!(a.in_flight(&2), 0);
        assert_eq!(a.next_request(&3), Some(1));
        assert_eq!(
            a.accept(&3, 1, n, metadata_piece(&b, 1).unwrap()),
            Ok(Accepted::Complete(b))
        );
    }
}
