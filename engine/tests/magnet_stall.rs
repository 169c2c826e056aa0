//! A metadata fetch never stalls on a connection that neither serves nor
//! fails: scripted peers that complete the BitTorrent handshake and then
//! stay silent, speak `ut_metadata` without a `metadata_size` (while
//! sending keep-alives), or never answer the handshake at all; and peers
//! offered right after a torrent is added reach it.
//!
//! Background: one run of the magnet benchmark stayed at "fetching
//! metadata (0 peers)" for 120 s while the libtorrent seeder counted one
//! connected peer. Before these fixes a connection up without an
//! extension handshake, or with one lacking `metadata_size`, held its
//! slot for the 300 s idle timeout (forever with keep-alives), counted as
//! a peer but never asked.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bittern_engine::{
    Encryption, SeedGoal, SessionConfig, TorrentHandle, TorrentOptions, TorrentState,
};
use bittern_wire::{ExtensionHandshake, InfoHash, Magnet, Message};

use crate::fake::Wire;
use crate::util::{assert_same, make_torrent, seeding, session, wait_state};

fn no_goal() -> TorrentOptions {
    TorrentOptions {
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    }
}

fn magnet_for(info_hash: InfoHash, peers: &[SocketAddr]) -> Magnet {
    let mut uri = format!("magnet:?xt=urn:btih:{}", info_hash.to_hex());
    for p in peers {
        uri.push_str(&format!("&x.pe={p}"));
    }
    Magnet::parse(&uri).unwrap()
}

/// How a scripted metadata peer behaves after the BitTorrent handshake.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Sends nothing at all (no extension handshake).
    Silent,
    /// Sends an extension handshake with `ut_metadata` but no
    /// `metadata_size`, then a keep-alive every 500 ms.
    NoSize,
}

/// A peer answering one connection's BitTorrent handshake (with the
/// extension bit) and then behaving as `script`. The thread returns how
/// long after the handshake bittern closed the connection, `None` if it
/// was still open after `patience`.
fn scripted_peer(
    info_hash: InfoHash,
    script: Script,
    patience: Duration,
) -> (SocketAddr, std::thread::JoinHandle<Option<Duration>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut w = Wire::accept(&listener, info_hash).ok()?;
        let start = Instant::now();
        if let Script::NoSize = script {
            let mut hs = ExtensionHandshake::default();
            hs.m.insert("ut_metadata".into(), 3);
            let mut out = Vec::new();
            Message::Extended {
                id: 0,
                payload: &hs.encode(),
            }
            .encode(&mut out);
            if w.send_raw(&out).is_err() {
                return Some(start.elapsed());
            }
        }
        let _ = w.stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 4096];
        while start.elapsed() < patience {
            match w.stream.read(&mut buf) {
                Ok(0) => return Some(start.elapsed()),
                Ok(_) => {}
                Err(e) if bittern_testkit::is_timeout(&e) => {}
                Err(_) => return Some(start.elapsed()),
            }
            if let Script::NoSize = script {
                // Keep-alives: an idle timeout alone never ends this one.
                if w.stream.write_all(&[0, 0, 0, 0]).is_err() {
                    return Some(start.elapsed());
                }
            }
        }
        None
    });
    (addr, t)
}

/// Waits until `t` shows `connected` peers (and `connecting` ones).
fn wait_peers(t: &TorrentHandle, connected: usize, connecting: usize, limit: Duration) {
    let start = Instant::now();
    loop {
        let s = t.status();
        if s.peers_connected == connected && s.peers_connecting == connecting {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "wanted {connected} peers and {connecting} connecting: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The scripted peer alone in the magnet: it is counted as a connected
/// peer, closed well before the idle timeout, and the fetch goes on with a
/// seeder offered afterwards: byte-identical download.
fn stalled_peer_is_closed_and_the_fetch_goes_on(script: Script) {
    let src = tempfile::tempdir().unwrap();
    let meta = make_torrent(src.path(), "st", &[("st", 300 << 14)], 1 << 14, 31);
    let (peer, peer_thread) = scripted_peer(meta.info_hash, script, Duration::from_secs(40));
    let dst = tempfile::tempdir().unwrap();
    let leecher = session();
    let t = leecher
        .add_magnet(&magnet_for(meta.info_hash, &[peer]), dst.path(), no_goal())
        .unwrap();
    // Connected, and honestly counted as such while it lasts.
    wait_peers(&t, 1, 0, Duration::from_secs(20));
    let closed = peer_thread.join().unwrap();
    assert!(
        closed.is_some(),
        "{script:?}: the connection was still open after 40 s"
    );
    assert_eq!(t.status().state, TorrentState::FetchingMetadata);
    wait_peers(&t, 0, 0, Duration::from_secs(10));
    let (seeder, _s) = seeding(&meta, src.path());
    t.add_peers(vec![seeder.local_addr()]).unwrap();
    wait_state(&t, TorrentState::Stopped, Duration::from_secs(60));
    assert_eq!(t.status().pieces_total, meta.info.piece_count());
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}

#[test]
fn a_metadata_peer_silent_after_its_handshake_is_closed_and_the_fetch_goes_on() {
    stalled_peer_is_closed_and_the_fetch_goes_on(Script::Silent);
}

#[test]
fn a_metadata_peer_without_metadata_size_is_closed_and_the_fetch_goes_on() {
    stalled_peer_is_closed_and_the_fetch_goes_on(Script::NoSize);
}

/// A peer that takes TCP connections and never answers the BitTorrent
/// handshake shows as connecting, not as a connected peer, and is given
/// up (no connection stays up).
#[test]
fn a_peer_stalling_the_handshake_shows_as_connecting_then_is_given_up() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                held.lock().unwrap().push(s);
            }
        });
    }
    let leecher = session();
    let dst = tempfile::tempdir().unwrap();
    let t = leecher
        .add_magnet(
            &magnet_for(InfoHash([0x5a; 20]), &[addr]),
            dst.path(),
            no_goal(),
        )
        .unwrap();
    wait_peers(&t, 0, 1, Duration::from_secs(10));
    // Test sessions dial with a 5 s connect timeout: two handshake tries
    // (MSE, then in the clear), each bounded.
    wait_peers(&t, 0, 0, Duration::from_secs(40));
    // The connections of that attempt (a retry comes 10 s later).
    let tried: Vec<_> = held.lock().unwrap().drain(..).collect();
    assert!(!tried.is_empty());
    let mut buf = [0u8; 1];
    for mut s in tried {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) => break !bittern_testkit::is_timeout(&e),
            }
        };
        assert!(closed, "a connection was left open");
    }
}

/// Peers offered the moment a torrent is added reach it: `add_peers` right
/// after `add_magnet` (a magnet's `x.pe` host names are offered the same
/// way once resolved) could be handled by the controller before the
/// torrent it names, and was then dropped. Every one of 24 fetches dials
/// the peer offered to it.
#[test]
fn peers_offered_right_after_adding_a_magnet_reach_it() {
    const N: u8 = 24;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut keep = Vec::new();
            for mut s in listener.incoming().flatten() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut hs = [0u8; 68];
                if s.read_exact(&mut hs).is_ok() {
                    seen.lock().unwrap().insert(hs[28..48].to_vec());
                }
                keep.push(s);
            }
        });
    }
    let leecher = bittern_engine::Session::new(SessionConfig {
        encryption: Encryption::Disable,
        ..crate::util::config()
    })
    .unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut handles = Vec::new();
    for i in 0..N {
        let t = leecher
            .add_magnet(&magnet_for(InfoHash([i; 20]), &[]), dst.path(), no_goal())
            .unwrap();
        t.add_peers(vec![addr]).unwrap();
        handles.push(t);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < usize::from(N) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = seen.lock().unwrap();
    let missing: Vec<u8> = (0..N).filter(|i| !seen.contains(&vec![*i; 20])).collect();
    assert!(missing.is_empty(), "never dialled for torrents {missing:?}");
}
