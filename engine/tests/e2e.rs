//! bittern to bittern transfers.

use std::time::Duration;

use bittern_engine::{SeedGoal, TorrentOptions, TorrentState};

use crate::util::*;

#[test]
fn one_seeder_one_leecher_single_file() {
    transfer_single_file(false);
}

#[test]
fn one_seeder_one_leecher_hashing_inline() {
    transfer_single_file(true);
}

fn transfer_single_file(inline_hashing: bool) {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "data.bin",
        &[("data.bin", 3 * 1024 * 1024 + 12345)],
        256 * 1024,
        1,
    );
    let seeder = session();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    assert_eq!(s.status().pieces_have, meta.info.piece_count());

    let leecher = bittern_engine::Session::new(bittern_engine::SessionConfig {
        inline_hashing,
        ..config()
    })
    .unwrap();
    let l = leech_until_stopped(&leecher, &meta, dst.path(), seeder.local_addr());
    let st = l.status();
    assert_eq!(st.have_bytes, meta.info.total_length());
    assert!(st.downloaded >= meta.info.total_length());
    assert_same(src.path(), dst.path(), &["data.bin".into()]);
    // Resume state was written and vouches for everything.
    assert_eq!(
        vouched_pieces(&meta, dst.path()),
        vec![true; meta.info.piece_count()],
        "the resume state does not vouch for every piece"
    );
}

#[test]
fn multi_file_odd_sizes_with_skipped_file() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let files = [
        ("a.txt", 1),
        ("dir/b.bin", 70_001),
        ("dir/skip.bin", 200_000),
        ("c/d/e.dat", 33_333),
        ("empty", 0),
    ];
    let meta = make_torrent(src.path(), "multi", &files, 32 * 1024, 2);
    let seeder = session();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));

    let leecher = session();
    let wanted: Vec<bool> = meta
        .info
        .files
        .iter()
        .map(|f| !f.relative_path().ends_with("skip.bin"))
        .collect();
    let opts = TorrentOptions {
        peers: vec![seeder.local_addr()],
        seed_goal: SeedGoal::None,
        wanted_files: wanted,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    let root_a = src.path().join("multi");
    let root_b = dst.path().join("multi");
    assert_same(
        &root_a,
        &root_b,
        &["a.txt".into(), "dir/b.bin".into(), "c/d/e.dat".into()],
    );
    // The skipped file was not fetched in full: at most the pieces it shares
    // with its neighbours were written.
    let skipped = std::fs::read(root_b.join("dir/skip.bin")).unwrap_or_default();
    let orig = std::fs::read(root_a.join("dir/skip.bin")).unwrap();
    assert_ne!(skipped, orig, "a skipped file must not be downloaded whole");
    let st = l.status();
    assert!(
        st.downloaded < meta.info.total_length(),
        "downloaded {} of {}",
        st.downloaded,
        meta.info.total_length()
    );
}

#[test]
fn one_seeder_four_leechers_share_with_each_other() {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "swarm.bin",
        &[("swarm.bin", 8 * 1024 * 1024)],
        64 * 1024,
        3,
    );
    let mut seed_cfg = config();
    // A slow seeder forces leechers to trade pieces among themselves.
    seed_cfg.upload_limit = Some(2 * 1024 * 1024);
    let seeder = bittern_engine::Session::new(seed_cfg).unwrap();
    let s = seeder
        .add_torrent(meta.clone(), src.path(), TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));

    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let sessions: Vec<_> = (0..4).map(|_| session()).collect();
    let mut handles = Vec::new();
    for i in 0..4 {
        // Each leecher knows the seeder and the leechers started before it.
        let mut peers = vec![seeder.local_addr()];
        peers.extend(sessions[..i].iter().map(|s| s.local_addr()));
        let opts = TorrentOptions {
            peers,
            ..TorrentOptions::default()
        };
        handles.push(
            sessions[i]
                .add_torrent(meta.clone(), dirs[i].path(), opts)
                .unwrap(),
        );
    }
    for h in &handles {
        wait_state(h, TorrentState::Seeding, Duration::from_secs(120));
    }
    let leecher_upload: u64 = handles.iter().map(|h| h.status().uploaded).sum();
    let seeder_upload = s.status().uploaded;
    for d in &dirs {
        assert_same(src.path(), d.path(), &["swarm.bin".into()]);
    }
    assert!(
        leecher_upload > meta.info.total_length(),
        "leechers uploaded {leecher_upload} bytes to each other (seeder {seeder_upload})"
    );
}

/// Every verified piece is announced to the peer that served it, exactly
/// once, the last ones too: HAVEs wait up to 20 ms to go out in batches,
/// and a download that ends at completion must still send the last batch.
#[test]
fn every_verified_piece_is_announced_once() {
    use std::io::Read;

    use bittern_wire::{decode_message, Bitfield, Handshake, Message, PeerId};

    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "h.bin",
        &[("h.bin", 64 * 16 * 1024)],
        16 * 1024,
        21,
    );
    let data = std::fs::read(src.path().join("h.bin")).unwrap();
    let pieces = meta.info.piece_count();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let info_hash = meta.info_hash;
    // A seeder that serves every request and records the HAVEs it gets.
    let peer = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = crate::fake::accept_plain(&listener).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Handshake::new(info_hash, PeerId::generate(b"-FK0001-"))
            .encode()
            .to_vec();
        Message::Bitfield(Bitfield::full(pieces).as_bytes()).encode(&mut out);
        Message::Unchoke.encode(&mut out);
        s.write_all(&out).unwrap();
        let (mut buf, mut haves) = (Vec::new(), Vec::new());
        let mut tmp = vec![0u8; 1 << 16];
        while haves.len() < pieces {
            while let Some((m, used)) = decode_message(&buf, 1 << 20).unwrap() {
                let mut reply = Vec::new();
                match m {
                    Message::Have(i) => haves.push(i),
                    Message::Request(b) => {
                        let at = b.index as usize * 16 * 1024 + b.begin as usize;
                        Message::Piece {
                            index: b.index,
                            begin: b.begin,
                            data: &data[at..at + b.length as usize],
                        }
                        .encode(&mut reply);
                    }
                    _ => {}
                }
                buf.drain(..used);
                s.write_all(&reply).unwrap();
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        haves
    });
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![addr],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta, dst.path(), opts).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(30));
    assert_same(src.path(), dst.path(), &["h.bin".into()]);
    let mut announced = peer.join().unwrap();
    announced.sort_unstable();
    assert_eq!(announced, (0..pieces as u32).collect::<Vec<_>>());
}

/// A seeder told to dial a peer that is not listening yet keeps trying
/// with short waits (3 s, then doubling), as it would for a broken
/// connection, instead of the 30 s an address from a tracker waits.
#[test]
fn a_peer_given_by_hand_is_dialled_again_until_it_listens() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let meta = make_torrent(
        src.path(),
        "late.bin",
        &[("late.bin", 512 * 1024)],
        64 * 1024,
        32,
    );
    // A port nobody listens on yet (taken and released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let late = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let seeder = session();
    let opts = TorrentOptions {
        peers: vec![late],
        ..TorrentOptions::default()
    };
    let s = seeder.add_torrent(meta.clone(), src.path(), opts).unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    // Let the first dial fail.
    std::thread::sleep(Duration::from_millis(1500));
    let mut cfg = config();
    cfg.listen = late;
    let leecher = bittern_engine::Session::new(cfg).unwrap();
    let opts = TorrentOptions {
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    // Redialled within 3 s of the failure; well before the 30 s retry.
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(15));
    assert_same(src.path(), dst.path(), &["late.bin".into()]);
}
