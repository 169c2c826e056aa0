//! BEP 21 partial seeds, with scripted peers: a peer that says
//! `upload_only` is not interested in us whatever its INTERESTED says, is
//! counted as a seed of what it has.

use std::time::{Duration, Instant};

use bittern_engine::{TorrentOptions, TorrentState};
use bittern_wire::{Bitfield, ExtensionHandshake, Message};

use crate::fake::{Got, Wire};
use crate::util::{make_torrent, session, wait_state};

/// Our extension handshake, saying `upload_only` when `upload_only`.
fn ext_handshake(upload_only: bool) -> Vec<u8> {
    let hs = ExtensionHandshake {
        upload_only,
        v: Some(if upload_only { "partial" } else { "leecher" }.into()),
        ..ExtensionHandshake::default()
    };
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: &hs.encode(),
    }
    .encode(&mut out);
    out
}

/// Whether `w` is unchoked after `limit`: the last of CHOKE and UNCHOKE
/// it got (a peer is unchoked idly as soon as it connects, before its
/// extension handshake is read, so the first word is not the last).
fn unchoked_after(w: &mut Wire, limit: Duration) -> bool {
    let start = Instant::now();
    let mut unchoked = false;
    w.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while start.elapsed() < limit {
        match w.recv() {
            Ok(Got::Other(m)) if m == "Unchoke" => unchoked = true,
            Ok(Got::Other(m)) if m == "Choke" => unchoked = false,
            Ok(_) => {}
            Err(e) if bittern_testkit::is_timeout(&e) => {}
            Err(e) => panic!("connection ended: {e}"),
        }
    }
    unchoked
}

#[test]
fn upload_only_peer_is_not_interested_and_counts_as_a_seed() {
    let src = tempfile::tempdir().unwrap();
    let pieces = 8u64;
    let plen = 1u64 << 16;
    let meta = make_torrent(src.path(), "p.bin", &[("p.bin", pieces * plen)], plen, 21);
    // bittern has the first half (so it has something to upload).
    let dst = tempfile::tempdir().unwrap();
    let data = std::fs::read(src.path().join("p.bin")).unwrap();
    std::fs::write(dst.path().join("p.bin"), &data[..(4 * plen) as usize]).unwrap();
    let s = session();
    let t = s
        .add_torrent(meta.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&t, TorrentState::Downloading, Duration::from_secs(20));
    assert_eq!(t.status().pieces_have, 4);

    // Two peers with the second half, both INTERESTED; one says
    // `upload_only`.
    let mut bits = Bitfield::new(pieces as usize);
    for i in 4..pieces as usize {
        bits.set(i);
    }
    let mut wires = Vec::new();
    for upload_only in [true, false] {
        let (mut w, theirs) = Wire::connect(s.local_addr(), meta.info_hash).unwrap();
        assert!(theirs.supports_extended());
        w.send_raw(&ext_handshake(upload_only)).unwrap();
        w.send(Message::Bitfield(bits.as_bytes())).unwrap();
        w.send(Message::Interested).unwrap();
        wires.push(w);
    }
    let (partial, leecher) = wires.split_at_mut(1);
    assert!(
        unchoked_after(&mut leecher[0], Duration::from_secs(3)),
        "the interested leecher is unchoked"
    );
    assert!(
        !unchoked_after(&mut partial[0], Duration::from_secs(2)),
        "an upload-only peer is not interested in us (BEP 21): choked"
    );
    let st = t.status();
    let peer = |name: &str| {
        t.peers()
            .into_iter()
            .find(|p| p.client.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} connected"))
    };
    let (p, l) = (peer("partial"), peer("leecher"));
    assert!(
        p.seed,
        "an upload-only peer is a seed of what it has: {p:?}"
    );
    assert!(!l.seed, "half a piece set is no seed: {l:?}");
    assert!(p.am_choking && !l.am_choking, "{p:?} {l:?}");
    assert_eq!(p.pieces, 4);
    assert_eq!(st.seeds_connected, 1, "{st:?}");
}

/// Our extension handshake from `w` (skipping what comes before it).
fn their_ext_handshake(w: &mut Wire) -> ExtensionHandshake {
    w.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    loop {
        match w.recv().expect("bittern's extension handshake") {
            Got::Extended { id: 0, payload } => {
                return ExtensionHandshake::decode(&payload).expect("a valid handshake")
            }
            _ => continue,
        }
    }
}

/// libtorrent's `upload_only` message under bittern's id 3.
fn upload_only_msg(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Message::Extended { id: 3, payload }.encode(&mut out);
    out
}

/// Polls the peer list until the peer named `name` has `seed == want`.
fn wait_seed(t: &bittern_engine::TorrentHandle, name: &str, want: bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let seed = t
            .peers()
            .into_iter()
            .find(|p| p.client.as_deref() == Some(name))
            .map(|p| p.seed);
        if seed == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn upload_only_message_turns_a_leecher_into_a_seed_and_back() {
    let src = tempfile::tempdir().unwrap();
    let pieces = 8u64;
    let plen = 1u64 << 16;
    let meta = make_torrent(src.path(), "u.bin", &[("u.bin", pieces * plen)], plen, 22);
    let dst = tempfile::tempdir().unwrap();
    let data = std::fs::read(src.path().join("u.bin")).unwrap();
    std::fs::write(dst.path().join("u.bin"), &data[..(4 * plen) as usize]).unwrap();
    let s = session();
    let t = s
        .add_torrent(meta.clone(), dst.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&t, TorrentState::Downloading, Duration::from_secs(20));

    // A leecher with the second half, interested, that does not say
    // `upload_only` in its handshake (libtorrent before it completes).
    let (mut w, _) = Wire::connect(s.local_addr(), meta.info_hash).unwrap();
    w.send_raw(&ext_handshake(false)).unwrap();
    let ours = their_ext_handshake(&mut w);
    assert_eq!(
        ours.m.get("upload_only"),
        Some(&3),
        "libtorrent only sends upload_only to peers listing it: {:?}",
        ours.m
    );
    let mut bits = Bitfield::new(pieces as usize);
    for i in 4..pieces as usize {
        bits.set(i);
    }
    w.send(Message::Bitfield(bits.as_bytes())).unwrap();
    w.send(Message::Interested).unwrap();
    assert!(
        unchoked_after(&mut w, Duration::from_secs(3)),
        "the interested leecher is unchoked"
    );
    assert!(wait_seed(&t, "leecher", false), "a leecher at first");

    // An empty payload is ignored (no seed, connection kept).
    w.send_raw(&upload_only_msg(&[])).unwrap();
    // libtorrent completes: upload_only 1.
    w.send_raw(&upload_only_msg(&[1])).unwrap();
    assert!(
        wait_seed(&t, "leecher", true),
        "upload_only 1 makes it a seed: {:?}",
        t.peers()
    );
    assert!(
        !unchoked_after(&mut w, Duration::from_secs(3)),
        "an upload-only peer holds no choke slot, whatever its INTERESTED says"
    );
    assert_eq!(t.status().seeds_connected, 1, "{:?}", t.status());

    // upload_only 0: it wants pieces again.
    w.send_raw(&upload_only_msg(&[0])).unwrap();
    assert!(
        wait_seed(&t, "leecher", false),
        "upload_only 0 makes it a leecher again: {:?}",
        t.peers()
    );
    assert!(
        unchoked_after(&mut w, Duration::from_secs(3)),
        "interested again: unchoked"
    );
    assert_eq!(t.status().seeds_connected, 0, "{:?}", t.status());
}
