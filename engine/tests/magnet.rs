//! Magnet links and the extension protocol: our BEP 10 handshake, serving
//! metadata (BEP 9), and fetching it from scripted and real peers.

use std::time::Duration;

use bittern_wire::{Extension, ExtensionHandshake, Message, MetadataMessage, METADATA_PIECE_LEN};

use crate::fake::{Got, Wire};
use crate::util::{make_torrent, seeding};

/// Reads messages until an extended one with id `id`.
fn recv_extended(w: &mut Wire, id: u8) -> Vec<u8> {
    loop {
        match w.recv().unwrap() {
            Got::Extended { id: got, payload } if got == id => return payload,
            _ => {}
        }
    }
}

#[test]
fn seed_sends_full_extension_handshake_and_serves_metadata() {
    let dir = tempfile::tempdir().unwrap();
    // Enough pieces for an info dictionary of two metadata pieces.
    let meta = make_torrent(dir.path(), "big", &[("big", 1700 << 14)], 1 << 14, 5);
    assert!(meta.info_bytes.len() > METADATA_PIECE_LEN);
    let (seeder, _t) = seeding(&meta, dir.path());
    let (mut w, theirs) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    assert!(theirs.supports_extended());
    // Our own handshake uses other ids than bittern's, as Transmission does.
    let mut ours = ExtensionHandshake::default();
    ours.m.insert("ut_metadata".into(), 7);
    ours.m.insert("ut_pex".into(), 9);
    ours.m.insert("lt_donthave".into(), 3);
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: &ours.encode(),
    }
    .encode(&mut out);
    w.send_raw(&out).unwrap();

    let hs = ExtensionHandshake::decode(&recv_extended(&mut w, 0)).unwrap();
    assert_eq!(hs.id_for(Extension::UtMetadata), Some(2));
    assert_eq!(hs.id_for(Extension::UtPex), Some(1));
    assert_eq!(hs.p, Some(seeder.local_addr().port()));
    assert!(hs.reqq.is_some_and(|q| q > 0));
    assert_eq!(hs.yourip, Some(std::net::IpAddr::from([127, 0, 0, 1])));
    assert_eq!(hs.metadata_size, Some(meta.info_bytes.len() as u64));
    assert!(hs.upload_only, "a seed says upload_only (BEP 21)");
    assert!(hs.v.as_deref().is_some_and(|v| v.starts_with("bittern")));

    // Ask for both pieces and one past the end, under bittern's id (2);
    // answers come under ours (7).
    let mut got = Vec::new();
    for piece in [1u32, 0, 2] {
        let mut p = Vec::new();
        MetadataMessage::Request { piece }.encode(&mut p);
        let mut out = Vec::new();
        Message::Extended { id: 2, payload: &p }.encode(&mut out);
        w.send_raw(&out).unwrap();
        let answer = recv_extended(&mut w, 7);
        match MetadataMessage::decode(&answer).unwrap() {
            MetadataMessage::Data {
                piece: p,
                total_size,
                data,
            } => {
                assert_eq!(p, piece);
                assert_eq!(total_size, meta.info_bytes.len() as u64);
                got.push((p, data.to_vec()));
            }
            MetadataMessage::Reject { piece: p } => {
                assert_eq!(
                    (p, piece),
                    (2, 2),
                    "only the piece past the end is rejected"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got.sort();
    let joined: Vec<u8> = got.into_iter().flat_map(|(_, d)| d).collect();
    assert_eq!(
        joined, meta.info_bytes,
        "the served pieces are the info dictionary"
    );
}

#[test]
fn malformed_extension_handshake_closes_only_that_peer() {
    let dir = tempfile::tempdir().unwrap();
    let meta = make_torrent(dir.path(), "f", &[("f", 100_000)], 1 << 14, 6);
    let (seeder, _t) = seeding(&meta, dir.path());
    let (mut bad, _) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    let (mut good, _) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: b"li1ee",
    }
    .encode(&mut out);
    bad.send_raw(&out).unwrap();
    assert!(bad.closed_within(Duration::from_secs(5)));
    // The other connection still works: it gets metadata.
    let mut ours = ExtensionHandshake::with_all_extensions();
    ours.v = Some("fake".into());
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: &ours.encode(),
    }
    .encode(&mut out);
    let mut p = Vec::new();
    MetadataMessage::Request { piece: 0 }.encode(&mut p);
    Message::Extended { id: 2, payload: &p }.encode(&mut out);
    good.send_raw(&out).unwrap();
    let answer = recv_extended(&mut good, 2);
    assert!(matches!(
        MetadataMessage::decode(&answer),
        Ok(MetadataMessage::Data { data, .. }) if data == meta.info_bytes.as_slice()
    ));
}
