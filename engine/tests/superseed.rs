//! Super-seeding (BEP 16) measured on loopback: one bittern seeder with a
//! slow uplink and several bittern leechers that know each other. The
//! seeder's upload over the torrent's size, with and without super-seeding.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_engine::{Session, TorrentOptions, TorrentState};

use crate::util::{assert_same, make_torrent, session};

const LEECHERS: usize = 4;

/// Runs one swarm; returns the seeder's uploaded bytes over the size and
/// how long the swarm took to complete.
fn swarm(super_seed: bool, seed: u64) -> (f64, Duration) {
    let src = tempfile::tempdir().unwrap();
    let size = 6u64 << 20;
    let meta = make_torrent(src.path(), "ss.bin", &[("ss.bin", size)], 64 << 10, seed);
    let seeder = session();
    let opts = TorrentOptions {
        super_seed,
        // A slow uplink: the case super-seeding is for.
        upload_limit: Some(3 << 20),
        ..TorrentOptions::default()
    };
    let st = seeder.add_torrent(meta.clone(), src.path(), opts).unwrap();
    crate::util::wait_state(&st, TorrentState::Seeding, Duration::from_secs(20));
    let start = Instant::now();
    let mut addrs: Vec<SocketAddr> = vec![seeder.local_addr()];
    let mut leechers: Vec<(Session, _, tempfile::TempDir)> = Vec::new();
    for _ in 0..LEECHERS {
        let s = session();
        let dst = tempfile::tempdir().unwrap();
        let o = TorrentOptions {
            peers: addrs.clone(),
            ..TorrentOptions::default()
        };
        let t = s.add_torrent(meta.clone(), dst.path(), o).unwrap();
        addrs.push(s.local_addr());
        leechers.push((s, t, dst));
    }
    loop {
        if leechers
            .iter()
            .all(|(_, t, _)| t.status().state == TorrentState::Seeding)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "swarm stuck: {:?}",
            leechers
                .iter()
                .map(|(_, t, _)| t.status())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    for (_, _, dst) in &leechers {
        assert_same(src.path(), dst.path(), &meta.info.file_paths());
    }
    // The seeder's count is sampled on its 250 ms tick.
    std::thread::sleep(Duration::from_millis(600));
    let up = st.status().uploaded;
    (up as f64 / size as f64, took)
}

#[test]
fn super_seeding_uploads_about_one_copy() {
    let (normal, t_normal) = swarm(false, 51);
    let (sup, t_sup) = swarm(true, 51);
    eprintln!(
        "seeder uploaded/size with {LEECHERS} leechers: normal {normal:.2} in {t_normal:?}, \
         super-seeding {sup:.2} in {t_sup:?}"
    );
    assert!(
        sup >= 1.0,
        "every piece left the seeder at least once: {sup}"
    );
    assert!(sup <= 1.5, "super-seeding sends close to one copy: {sup}");
    assert!(sup < normal, "less than normal seeding ({normal})");
}

/// A scripted peer against a super-seeder: it is shown nothing at first,
/// then one piece; a request for another piece is refused, the shown one
/// is served; once it announces the piece (and is the only peer), the next
/// one is shown.
#[test]
fn super_seeder_shows_one_piece_and_serves_only_that() {
    use crate::fake::{Got, Wire};
    use bittern_wire::{BlockRef, Message};

    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "one.bin", &[("one.bin", 1 << 20)], 64 << 10, 52);
    let seeder = session();
    let opts = TorrentOptions {
        super_seed: true,
        ..TorrentOptions::default()
    };
    let st = seeder.add_torrent(meta.clone(), src.path(), opts).unwrap();
    crate::util::wait_state(&st, TorrentState::Seeding, Duration::from_secs(20));
    let (mut w, hs) = Wire::connect(seeder.local_addr(), meta.info_hash).unwrap();
    assert!(hs.supports_fast());
    w.send(Message::HaveNone).unwrap();
    w.send(Message::Interested).unwrap();
    let n = meta.info.piece_count() as u32;
    let (mut shown, mut unchoked) = (None, false);
    while shown.is_none() || !unchoked {
        match w.recv().unwrap() {
            Got::Other(m) if m == "HaveAll" => panic!("a super-seeder claimed every piece"),
            Got::Bitfield(b) => assert!(b.iter().all(|&x| x == 0), "{b:?}"),
            Got::Have(p) => {
                assert!(shown.is_none(), "one piece at a time");
                shown = Some(p);
            }
            Got::Other(m) if m == "Unchoke" => unchoked = true,
            _ => {}
        }
    }
    let p = shown.unwrap();
    let q = (p + 1) % n;
    let block = |i: u32| BlockRef {
        index: i,
        begin: 0,
        length: 16 << 10,
    };
    w.send(Message::Request(block(q))).unwrap();
    w.send(Message::Request(block(p))).unwrap();
    let (mut rejected, mut served) = (false, false);
    while !(rejected && served) {
        match w.recv().unwrap() {
            Got::Other(m) if m == format!("{:?}", Message::Reject(block(q))) => rejected = true,
            Got::Piece { index, .. } => {
                assert_eq!(index, p, "only the shown piece is served");
                served = true;
            }
            Got::Have(x) => panic!("piece {x} shown before {p} spread"),
            _ => {}
        }
    }
    // We announce the piece; alone in the swarm, we get the next one.
    w.send(Message::Have(p)).unwrap();
    let next = loop {
        if let Got::Have(x) = w.recv().unwrap() {
            break x;
        }
    };
    assert_ne!(next, p);
}
