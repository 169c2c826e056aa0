//! Hostile inputs through the public API: each is a typed error, never a
//! panic, and nothing large is allocated.

use bittern_wire::bencode::{self, Error as BError};
use bittern_wire::{decode_message, MessageError, Metainfo, MetainfoError, DEFAULT_MAX_FRAME};

use crate::util::data_dir;

fn sample() -> Vec<u8> {
    std::fs::read(data_dir().join("sample.torrent")).unwrap()
}

/// Replace the first occurrence of `from` with `to` (bencode tokens, so the
/// result stays valid bencode).
fn patch(buf: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = buf.windows(from.len()).position(|w| w == from).unwrap();
    let mut out = buf[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&buf[at + from.len()..]);
    out
}

#[test]
fn four_gib_length_prefixes() {
    assert_eq!(
        decode_message(&[0xff, 0xff, 0xff, 0xff, 0x07], DEFAULT_MAX_FRAME),
        Err(MessageError::FrameTooLong {
            len: 0xffff_ffff,
            max: DEFAULT_MAX_FRAME
        })
    );
    assert_eq!(
        decode_message(&[0x00, 0x10, 0x00, 0x01], DEFAULT_MAX_FRAME),
        Err(MessageError::FrameTooLong {
            len: (1 << 20) + 1,
            max: DEFAULT_MAX_FRAME
        })
    );
    // a 4 GiB string in a torrent
    let t = patch(&sample(), b"7:comment14:", b"7:comment4294967296:");
    assert!(matches!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::Bencode(BError::StringTooLong {
            len: 4294967296,
            ..
        }))
    ));
}

#[test]
fn hundred_thousand_deep_nesting() {
    let mut deep = vec![b'l'; 100_000];
    deep.extend(vec![b'e'; 100_000]);
    assert_eq!(bencode::decode(&deep), Err(BError::TooDeep(64)));
    // the same nesting as the value of a torrent key
    let mut t = b"d7:comment".to_vec();
    t.extend_from_slice(&deep);
    t.extend_from_slice(b"e");
    assert_eq!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::Bencode(BError::TooDeep(32)))
    );
    // and as an extension handshake payload
    assert!(bittern_wire::ExtensionHandshake::decode(&deep).is_err());
}

#[test]
fn negative_lengths() {
    let t = patch(&sample(), b"6:lengthi81e", b"6:lengthi-81e");
    assert_eq!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::NegativeLength(-81))
    );
    assert!(matches!(
        bencode::decode(b"-1:a"),
        Err(BError::InvalidByte { pos: 0, byte: b'-' })
    ));
    let t = patch(
        &sample(),
        b"12:piece lengthi32768e",
        b"12:piece lengthi-32768e",
    );
    assert_eq!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::InvalidPieceLength(-32768))
    );
}

#[test]
fn pieces_of_the_wrong_size() {
    let s = sample();
    let m = Metainfo::from_bytes(&s).unwrap();
    let n = m.info.pieces.len() * 20;
    // one byte short
    let at = s.windows(8).position(|w| w == b"6:pieces").unwrap() + 8;
    let mut t = s[..at].to_vec();
    t.extend_from_slice(format!("{}:", n - 1).as_bytes());
    let body = at + format!("{n}:").len();
    t.extend_from_slice(&s[body..body + n - 1]);
    t.extend_from_slice(&s[body + n..]);
    assert_eq!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::PiecesNotMultipleOf20(n - 1))
    );
    // one hash too many
    let mut t = s[..at].to_vec();
    t.extend_from_slice(format!("{}:", n + 20).as_bytes());
    t.extend_from_slice(&s[body..body + n]);
    t.extend_from_slice(&[0u8; 20]);
    t.extend_from_slice(&s[body + n..]);
    assert_eq!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::PieceCountMismatch {
            expected: n as u64 / 20,
            got: n / 20 + 1
        })
    );
}

#[test]
fn escaping_paths() {
    let s = sample();
    for (from, to) in [
        (&b"4:data"[..], &b"2:.."[..]),
        (b"4:data", b"4:/etc"),
        (b"4:data", b"3:C:x"),
        (b"4:data", b"0:"),
        (b"4:name6:sample", b"4:name2:.."),
        (b"4:name6:sample", b"4:name4:/tmp"),
    ] {
        let t = patch(&s, from, to);
        match Metainfo::from_bytes(&t) {
            Err(MetainfoError::UnsafePath { .. }) => {}
            other => panic!("{}: {other:?}", String::from_utf8_lossy(to)),
        }
    }
    // separators inside a component are made harmless, not trusted
    let t = patch(&s, b"4:data", b"4:a/..");
    let m = Metainfo::from_bytes(&t).unwrap();
    for p in m.info.file_paths() {
        assert!(p.is_relative());
        assert!(
            p.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{p:?}"
        );
    }
}

/// Issue 18's hostile extension inputs, each arriving in a real frame.
mod extensions {
    use bittern_wire::{
        decode_message, encode_compact, Extension, ExtensionError, ExtensionHandshake, InfoHash,
        Message, MetadataAssembler, MetadataError, MetadataHash, MetadataMessage, PexMessage,
        DEFAULT_MAX_FRAME, PEX_MAX_DECODED,
    };

    fn extended(id: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Message::Extended { id, payload }.encode(&mut out);
        out
    }

    fn payload(frame: &[u8]) -> (u8, &[u8]) {
        match decode_message(frame, DEFAULT_MAX_FRAME).unwrap().unwrap().0 {
            Message::Extended { id, payload } => (id, payload),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn four_gib_metadata_size_is_refused_without_allocating() {
        let f = extended(0, b"d1:md11:ut_metadatai3ee13:metadata_sizei4294967296ee");
        let (_, p) = payload(&f);
        let hs = ExtensionHandshake::decode(p).unwrap();
        assert_eq!(hs.metadata_size, Some(4 << 30));
        // were this allocated, the test process would need 4 GiB
        assert!(matches!(
            MetadataAssembler::<u8>::new(MetadataHash::V1(InfoHash([1; 20])), 4 << 30),
            Err(MetadataError::TooLarge { .. })
        ));
        // i64::MAX and a negative size: the first is refused, the second absent
        let hs = ExtensionHandshake::decode(b"d13:metadata_sizei9223372036854775807ee").unwrap();
        assert!(MetadataAssembler::<u8>::new(
            MetadataHash::V1(InfoHash([1; 20])),
            hs.metadata_size.unwrap()
        )
        .is_err());
        let hs = ExtensionHandshake::decode(b"d13:metadata_sizei-1ee").unwrap();
        assert_eq!(hs.metadata_size, None);
    }

    #[test]
    fn out_of_range_and_unsolicited_metadata() {
        let mut a =
            MetadataAssembler::<u8>::new(MetadataHash::V1(InfoHash([1; 20])), 40_000).unwrap();
        // unsolicited data: never asked
        let mut p = Vec::new();
        MetadataMessage::Data {
            piece: 0,
            total_size: 40_000,
            data: &[0; 16384],
        }
        .encode(&mut p);
        let f = extended(Extension::UtMetadata.local_id(), &p);
        let MetadataMessage::Data {
            piece,
            total_size,
            data,
        } = MetadataMessage::decode(payload(&f).1).unwrap()
        else {
            panic!("not data");
        };
        assert_eq!(
            a.accept(&7, piece, total_size, data),
            Err(MetadataError::Unsolicited { piece: 0 })
        );
        // out of range: piece 3 of a 3-piece dictionary, and 2^32-1
        a.next_request(&7).unwrap();
        for piece in [3, u32::MAX] {
            assert!(matches!(
                a.accept(&7, piece, 40_000, &[0; 10]),
                Err(MetadataError::OutOfRange { .. })
            ));
        }
        assert_eq!(a.pieces_have(), 0);
    }

    #[test]
    fn ten_thousand_peer_pex_in_one_frame() {
        let mut added = Vec::new();
        for i in 0..10_000u32 {
            let [_, b, c, d] = i.to_be_bytes();
            encode_compact(([127, b, c, d], 6881).into(), &mut added);
        }
        let mut p = format!("d5:added{}:", added.len()).into_bytes();
        p.extend_from_slice(&added);
        p.push(b'e');
        let f = extended(Extension::UtPex.local_id(), &p);
        assert!(f.len() < DEFAULT_MAX_FRAME);
        let m = PexMessage::decode(payload(&f).1).unwrap();
        assert_eq!(m.added.len(), PEX_MAX_DECODED);
        assert_eq!(m.overflow, 10_000 - PEX_MAX_DECODED);
    }

    #[test]
    fn malformed_extension_handshakes() {
        for bad in [
            &b"le"[..],
            b"i5e",
            b"4:spam",
            b"d1:md11:ut_metadatai3ee",
            b"d1:md11:ut_metadatai3eeextra",
            b"\xff\xff",
        ] {
            let f = extended(0, bad);
            let err = ExtensionHandshake::decode(payload(&f).1);
            assert!(
                matches!(
                    err,
                    Err(ExtensionError::NotADict | ExtensionError::Bencode(_))
                ),
                "{bad:?}: {err:?}"
            );
        }
        // nesting past depth 8 is refused, not recursed into
        let deep = [b"d1:m".as_slice(), &b"l".repeat(100), &b"e".repeat(101)].concat();
        assert!(ExtensionHandshake::decode(&deep).is_err());
    }
}

/// The `metainfo` fuzz target's crash of 2026-12-04 (two files of
/// different lengths under one `pieces root`): refused, not accepted.
#[test]
fn fuzz_crash_shared_root_of_different_lengths_is_refused() {
    let data = include_bytes!("../../fuzz/seeds/metainfo/regress-shared-root-lengths");
    let err = bittern_wire::Metainfo::from_bytes(data).unwrap_err();
    assert!(err.to_string().contains("pieces root"), "{err}");
}
