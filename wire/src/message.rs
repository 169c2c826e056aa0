//! Peer wire messages (BEP 3, BEP 6 fast extension, BEP 10 extended, BEP
//! 52 hash messages in [`crate::hashes`]), as a sans-IO codec.
//!
//! Frames are `<u32 length><u8 id><payload>`; length 0 is a keep-alive.
//! [`decode_message`] borrows from the caller's buffer, so a `piece`
//! message's block is never copied by the codec; [`piece_header`] gives
//! the 13 header bytes to send ahead of a borrowed block in a vectored
//! write.

use thiserror::Error;

use crate::hashes::{self, HashRequest, Hashes};

/// Largest accepted length prefix by default: 1 MiB.
///
/// Ordinary frames are far smaller (a 16 KiB block is 16,393 bytes), but a
/// bitfield needs one byte per 8 pieces (1 MiB covers 8 million pieces) and
/// some clients send blocks of up to 128 KiB; BEP 9 metadata messages are a
/// 16 KiB block plus a small dictionary. Callers who know the torrent can
/// pass a tighter bound.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Where a block lies: piece `index`, byte offset `begin`, `length` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// Piece index.
    pub index: u32,
    /// Byte offset within the piece.
    pub begin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// One peer wire message, borrowing its payload from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Zero-length frame.
    KeepAlive,
    /// id 0
    Choke,
    /// id 1
    Unchoke,
    /// id 2
    Interested,
    /// id 3
    NotInterested,
    /// id 4: the sender now has this piece.
    Have(u32),
    /// id 5: raw bitfield bytes; check them with [`crate::Bitfield::from_wire`].
    Bitfield(&'a [u8]),
    /// id 6
    Request(BlockRef),
    /// id 7: a block of data.
    Piece {
        /// Piece index.
        index: u32,
        /// Byte offset within the piece.
        begin: u32,
        /// The block.
        data: &'a [u8],
    },
    /// id 8
    Cancel(BlockRef),
    /// id 9: the sender's DHT port.
    Port(u16),
    /// id 13 (BEP 6)
    Suggest(u32),
    /// id 14 (BEP 6)
    HaveAll,
    /// id 15 (BEP 6)
    HaveNone,
    /// id 16 (BEP 6): a request that will not be served.
    Reject(BlockRef),
    /// id 17 (BEP 6)
    AllowedFast(u32),
    /// id 20 (BEP 10): `id` 0 is the extension handshake.
    Extended {
        /// Extended message id (0 = handshake).
        id: u8,
        /// Bencoded payload (possibly followed by raw data).
        payload: &'a [u8],
    },
    /// id 21 (BEP 52): asks for merkle hashes of a file.
    HashRequest(HashRequest),
    /// id 22 (BEP 52): the hashes asked for, with their proof.
    Hashes(Hashes<'a>),
    /// id 23 (BEP 52): a hash request that will not be served.
    HashReject(HashRequest),
}

/// A frame that cannot be a valid message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The length prefix exceeds the bound given to [`decode_message`].
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLong {
        /// The declared length.
        len: u64,
        /// The bound.
        max: usize,
    },
    /// A message id bittern does not know.
    #[error("unknown message id {0}")]
    UnknownId(u8),
    /// A known id with a body of the wrong size.
    #[error("message id {id} with a {len}-byte body")]
    BadLength {
        /// Message id.
        id: u8,
        /// Body length (after the id byte).
        len: usize,
    },
}

mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST: u8 = 13;
    pub const HAVE_ALL: u8 = 14;
    pub const HAVE_NONE: u8 = 15;
    pub const REJECT: u8 = 16;
    pub const ALLOWED_FAST: u8 = 17;
    pub const EXTENDED: u8 = 20;
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn block(b: &[u8]) -> BlockRef {
    BlockRef {
        index: be32(&b[0..4]),
        begin: be32(&b[4..8]),
        length: be32(&b[8..12]),
    }
}

/// Decode one whole frame from the front of `buf`.
///
/// Returns `Ok(Some((message, bytes_consumed)))`, or `Ok(None)` when `buf`
/// does not yet hold a whole frame. A length prefix above `max_frame` is an
/// error as soon as its 4 bytes are present, so the caller never buffers an
/// oversized frame.
///
/// # Errors
/// [`MessageError`] for oversized frames, unknown ids and bodies of the
/// wrong size.
pub fn decode_message(
    buf: &[u8],
    max_frame: usize,
) -> Result<Option<(Message<'_>, usize)>, MessageError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = be32(prefix);
    if u64::from(len) > max_frame as u64 {
        return Err(MessageError::FrameTooLong {
            len: u64::from(len),
            max: max_frame,
        });
    }
    let len = len as usize;
    let Some(frame) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let used = 4 + len;
    let Some((&mid, body)) = frame.split_first() else {
        return Ok(Some((Message::KeepAlive, used)));
    };
    let want = |n: usize| {
        if body.len() == n {
            Ok(())
        } else {
            Err(MessageError::BadLength {
                id: mid,
                len: body.len(),
            })
        }
    };
    let msg = match mid {
        id::CHOKE => want(0).map(|()| Message::Choke)?,
        id::UNCHOKE => want(0).map(|()| Message::Unchoke)?,
        id::INTERESTED => want(0).map(|()| Message::Interested)?,
        id::NOT_INTERESTED => want(0).map(|()| Message::NotInterested)?,
        id::HAVE => want(4).map(|()| Message::Have(be32(body)))?,
        id::BITFIELD => Message::Bitfield(body),
        id::REQUEST => want(12).map(|()| Message::Request(block(body)))?,
        id::PIECE => {
            if body.len() < 8 {
                return Err(MessageError::BadLength {
                    id: mid,
                    len: body.len(),
                });
            }
            Message::Piece {
                index: be32(&body[0..4]),
                begin: be32(&body[4..8]),
                data: &body[8..],
            }
        }
        id::CANCEL => want(12).map(|()| Message::Cancel(block(body)))?,
        id::PORT => want(2).map(|()| Message::Port(u16::from_be_bytes([body[0], body[1]])))?,
        id::SUGGEST => want(4).map(|()| Message::Suggest(be32(body)))?,
        id::HAVE_ALL => want(0).map(|()| Message::HaveAll)?,
        id::HAVE_NONE => want(0).map(|()| Message::HaveNone)?,
        id::REJECT => want(12).map(|()| Message::Reject(block(body)))?,
        id::ALLOWED_FAST => want(4).map(|()| Message::AllowedFast(be32(body)))?,
        id::EXTENDED => {
            let Some((&eid, payload)) = body.split_first() else {
                return Err(MessageError::BadLength { id: mid, len: 0 });
            };
            Message::Extended { id: eid, payload }
        }
        hashes::HASH_REQUEST | hashes::HASHES | hashes::HASH_REJECT => hashes::decode(mid, body)?,
        other => return Err(MessageError::UnknownId(other)),
    };
    Ok(Some((msg, used)))
}

/// The 13 bytes that precede a block in a `piece` message: length prefix,
/// id 7, index, begin. Send them and the borrowed block with one vectored
/// write; nothing is copied.
pub fn piece_header(index: u32, begin: u32, len: u32) -> [u8; 13] {
    let mut h = [0u8; 13];
    h[0..4].copy_from_slice(&len.wrapping_add(9).to_be_bytes());
    h[4] = id::PIECE;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

fn frame_u32_len(n: usize) -> [u8; 4] {
    // frames bittern writes are far below 4 GiB; saturate rather than wrap
    u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes()
}

impl Message<'_> {
    /// Append the whole frame, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let simple = |out: &mut Vec<u8>, mid: u8, body: &[&[u8]]| {
            let n: usize = 1 + body.iter().map(|b| b.len()).sum::<usize>();
            out.reserve(4 + n);
            out.extend_from_slice(&frame_u32_len(n));
            out.push(mid);
            for b in body {
                out.extend_from_slice(b);
            }
        };
        let blk = |b: &BlockRef| {
            let mut a = [0u8; 12];
            a[0..4].copy_from_slice(&b.index.to_be_bytes());
            a[4..8].copy_from_slice(&b.begin.to_be_bytes());
            a[8..12].copy_from_slice(&b.length.to_be_bytes());
            a
        };
        match *self {
            Message::KeepAlive => out.extend_from_slice(&[0, 0, 0, 0]),
            Message::Choke => simple(out, id::CHOKE, &[]),
            Message::Unchoke => simple(out, id::UNCHOKE, &[]),
            Message::Interested => simple(out, id::INTERESTED, &[]),
            Message::NotInterested => simple(out, id::NOT_INTERESTED, &[]),
            Message::Have(i) => simple(out, id::HAVE, &[&i.to_be_bytes()]),
            Message::Bitfield(b) => simple(out, id::BITFIELD, &[b]),
            Message::Request(ref b) => simple(out, id::REQUEST, &[&blk(b)]),
            Message::Piece { index, begin, data } => {
                out.reserve(13 + data.len());
                out.extend_from_slice(&frame_u32_len(9 + data.len()));
                out.extend_from_slice(&piece_header(index, begin, 0)[4..]);
                out.extend_from_slice(data);
            }
            Message::Cancel(ref b) => simple(out, id::CANCEL, &[&blk(b)]),
            Message::Port(p) => simple(out, id::PORT, &[&p.to_be_bytes()]),
            Message::Suggest(i) => simple(out, id::SUGGEST, &[&i.to_be_bytes()]),
            Message::HaveAll => simple(out, id::HAVE_ALL, &[]),
            Message::HaveNone => simple(out, id::HAVE_NONE, &[]),
            Message::Reject(ref b) => simple(out, id::REJECT, &[&blk(b)]),
            Message::AllowedFast(i) => simple(out, id::ALLOWED_FAST, &[&i.to_be_bytes()]),
            Message::Extended { id: eid, payload } => {
                simple(out, id::EXTENDED, &[&[eid], payload]);
            }
            Message::HashRequest(_) | Message::Hashes(_) | Message::HashReject(_) => {
                let mid = match self {
                    Message::HashRequest(_) => hashes::HASH_REQUEST,
                    Message::Hashes(_) => hashes::HASHES,
                    _ => hashes::HASH_REJECT,
                };
                out.extend_from_slice(&frame_u32_len(self.encoded_len() - 4));
                out.push(mid);
                hashes::encode_body(self, out);
            }
        }
    }

    /// Frame length on the wire, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Bitfield(b) => 1 + b.len(),
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Port(_) => 3,
            Message::Extended { payload, .. } => 2 + payload.len(),
            Message::HashRequest(_) | Message::HashReject(_) => 1 + HashRequest::LEN,
            Message::Hashes(h) => 1 + HashRequest::LEN + h.raw().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: BlockRef = BlockRef {
        index: 1,
        begin: 0x4000,
        length: 0x4000,
    };

    fn all() -> Vec<(Message<'static>, Vec<u8>)> {
        vec![
            (Message::KeepAlive, vec![0, 0, 0, 0]),
            (Message::Choke, vec![0, 0, 0, 1, 0]),
            (Message::Unchoke, vec![0, 0, 0, 1, 1]),
            (Message::Interested, vec![0, 0, 0, 1, 2]),
            (Message::NotInterested, vec![0, 0, 0, 1, 3]),
            (Message::Have(0x01020304), vec![0, 0, 0, 5, 4, 1, 2, 3, 4]),
            (
                Message::Bitfield(&[0xf0, 0x80]),
                vec![0, 0, 0, 3, 5, 0xf0, 0x80],
            ),
            (
                Message::Request(B),
                vec![0, 0, 0, 13, 6, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (
                Message::Piece {
                    index: 2,
                    begin: 3,
                    data: b"abc",
                },
                vec![0, 0, 0, 12, 7, 0, 0, 0, 2, 0, 0, 0, 3, b'a', b'b', b'c'],
            ),
            (
                Message::Cancel(B),
                vec![0, 0, 0, 13, 8, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::Port(6881), vec![0, 0, 0, 3, 9, 0x1a, 0xe1]),
            (Message::Suggest(9), vec![0, 0, 0, 5, 13, 0, 0, 0, 9]),
            (Message::HaveAll, vec![0, 0, 0, 1, 14]),
            (Message::HaveNone, vec![0, 0, 0, 1, 15]),
            (
                Message::Reject(B),
                vec![0, 0, 0, 13, 16, 0, 0, 0, 1, 0, 0, 0x40, 0, 0, 0, 0x40, 0],
            ),
            (Message::AllowedFast(5), vec![0, 0, 0, 5, 17, 0, 0, 0, 5]),
            (
                Message::Extended {
                    id: 0,
                    payload: b"de",
                },
                vec![0, 0, 0, 4, 20, 0, b'd', b'e'],
            ),
        ]
    }

    #[test]
    fn every_message_has_exact_bytes_and_round_trips() {
        for (msg, bytes) in all() {
            let mut out = Vec::new();
            msg.encode(&mut out);
            assert_eq!(out, bytes, "{msg:?}");
            assert_eq!(msg.encoded_len(), bytes.len());
            assert_eq!(
                decode_message(&bytes, DEFAULT_MAX_FRAME),
                Ok(Some((msg, bytes.len())))
            );
        }
    }

    #[test]
    fn split_at_every_offset() {
        let msgs = all();
        let mut stream = Vec::new();
        for (m, _) in &msgs {
            m.encode(&mut stream);
        }
        for split in 0..=stream.len() {
            // feed the stream in two parts, as a socket would
            let mut buf: Vec<u8> = stream[..split].to_vec();
            let mut got = Vec::new();
            let mut rest = &stream[split..];
            loop {
                let mut used_total = 0;
                while let Some((m, used)) =
                    decode_message(&buf[used_total..], DEFAULT_MAX_FRAME).unwrap()
                {
                    let mut re = Vec::new();
                    m.encode(&mut re);
                    got.push(re);
                    used_total += used;
                }
                buf.drain(..used_total);
                if rest.is_empty() {
                    break;
                }
                buf.extend_from_slice(rest);
                rest = &[];
            }
            assert!(buf.is_empty());
            let want: Vec<Vec<u8>> = msgs.iter().map(|(_, b)| b.clone()).collect();
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn partial_frames_need_more() {
        for (_, bytes) in all() {
            for cut in 0..bytes.len() {
                assert_eq!(decode_message(&bytes[..cut], DEFAULT_MAX_FRAME), Ok(None));
            }
        }
    }

    #[test]
    fn hostile_frames() {
        // a 4 GiB length prefix is refused from its first 4 bytes
        assert_eq!(
            decode_message(&[0xff, 0xff, 0xff, 0xff], DEFAULT_MAX_FRAME),
            Err(MessageError::FrameTooLong {
                len: u64::from(u32::MAX),
                max: DEFAULT_MAX_FRAME
            })
        );
        assert_eq!(
            decode_message(&[0, 0, 0x40, 0x0e], 16 * 1024 + 13),
            Err(MessageError::FrameTooLong {
                len: 16 * 1024 + 14,
                max: 16 * 1024 + 13
            })
        );
        assert_eq!(
            decode_message(&[0, 0, 0, 1, 99], DEFAULT_MAX_FRAME),
            Err(MessageError::UnknownId(99))
        );
        assert_eq!(
            decode_message(&[0, 0, 0, 2, 0, 0], DEFAULT_MAX_FRAME),
            Err(MessageError::BadLength { id: 0, len: 1 })
        );
        assert_eq!(
            decode_message(&[0, 0, 0, 4, 4, 0, 0, 0], DEFAULT_MAX_FRAME),
            Err(MessageError::BadLength { id: 4, len: 3 })
        );
        assert_eq!(
            decode_message(&[0, 0, 0, 5, 7, 0, 0, 0, 0], DEFAULT_MAX_FRAME),
            Err(MessageError::BadLength { id: 7, len: 4 })
        );
        assert_eq!(
            decode_message(&[0, 0, 0, 1, 20], DEFAULT_MAX_FRAME),
            Err(MessageError::BadLength { id: 20, len: 0 })
        );
    }

    #[test]
    fn piece_header_matches_encoding() {
        let data = vec![7u8; 16384];
        let mut out = Vec::new();
        Message::Piece {
            index: 3,
            begin: 16384,
            data: &data,
        }
        .encode(&mut out);
        assert_eq!(&out[..13], &piece_header(3, 16384, 16384));
        assert_eq!(&out[13..], &data[..]);
    }

    fn arb_block() -> impl Strategy<Value = BlockRef> {
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(index, begin, length)| BlockRef {
            index,
            begin,
            length,
        })
    }

    /// Owned form of a message for proptest.
    #[derive(Debug, Clone)]
    enum Owned {
        Simple(u8),
        Have(u32),
        Bitfield(Vec<u8>),
        Request(BlockRef),
        Piece(u32, u32, Vec<u8>),
        Cancel(BlockRef),
        Port(u16),
        Suggest(u32),
        Reject(BlockRef),
        AllowedFast(u32),
        Extended(u8, Vec<u8>),
    }

    impl Owned {
        fn msg(&self) -> Message<'_> {
            match self {
                Owned::Simple(0) => Message::KeepAlive,
                Owned::Simple(1) => Message::Choke,
                Owned::Simple(2) => Message::Unchoke,
                Owned::Simple(3) => Message::Interested,
                Owned::Simple(4) => Message::NotInterested,
                Owned::Simple(5) => Message::HaveAll,
                Owned::Simple(_) => Message::HaveNone,
                Owned::Have(i) => Message::Have(*i),
                Owned::Bitfield(b) => Message::Bitfield(b),
                Owned::Request(b) => Message::Request(*b),
                Owned::Piece(i, b, d) => Message::Piece {
                    index: *i,
                    begin: *b,
                    data: d,
                },
                Owned::Cancel(b) => Message::Cancel(*b),
                Owned::Port(p) => Message::Port(*p),
                Owned::Suggest(i) => Message::Suggest(*i),
                Owned::Reject(b) => Message::Reject(*b),
                Owned::AllowedFast(i) => Message::AllowedFast(*i),
                Owned::Extended(id, p) => Message::Extended {
                    id: *id,
                    payload: p,
                },
            }
        }
    }

    fn arb_msg() -> impl Strategy<Value = Owned> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..64);
        prop_oneof![
            (0u8..7).prop_map(Owned::Simple),
            any::<u32>().prop_map(Owned::Have),
            bytes().prop_map(Owned::Bitfield),
            arb_block().prop_map(Owned::Request),
            (any::<u32>(), any::<u32>(), bytes()).prop_map(|(i, b, d)| Owned::Piece(i, b, d)),
            arb_block().prop_map(Owned::Cancel),
            any::<u16>().prop_map(Owned::Port),
            any::<u32>().prop_map(Owned::Suggest),
            arb_block().prop_map(Owned::Reject),
            any::<u32>().prop_map(Owned::AllowedFast),
            (any::<u8>(), bytes()).prop_map(|(i, p)| Owned::Extended(i, p)),
        ]
    }

    proptest! {
        #[test]
        fn prop_stream_round_trip(
            msgs in proptest::collection::vec(arb_msg(), 0..12),
            chunk in 1usize..40,
        ) {
            let mut stream = Vec::new();
            for m in &msgs {
                m.msg().encode(&mut stream);
            }
            // feed in chunks of `chunk` bytes
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                let mut off = 0;
                while let Some((m, used)) = decode_message(&buf[off..], DEFAULT_MAX_FRAME).unwrap() {
                    let mut re = Vec::new();
                    m.encode(&mut re);
                    got.extend(re);
                    off += used;
                }
                buf.drain(..off);
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, stream);
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                                     max in 0usize..100) {
            if let Ok(Some((m, used))) = decode_message(&bytes, max) {
                let mut re = Vec::new();
                m.encode(&mut re);
                prop_assert_eq!(&re[..], &bytes[..used]);
            }
        }
    }
}
