//! The magnet benchmark's stall, reproduced: a metadata fetch whose
//! connection was up (the seed counted it) while the fetch showed "0
//! peers" and never asked it anything.
//!
//! Cause: `MetadataFetch::new` dialled the magnet's `x.pe` peers on the
//! thread calling `add_magnet`, before the controller thread had taken the
//! fetch in. When the controller was slow to get to that command (a busy
//! or loaded machine), the connection's `Ready` and extension handshake
//! could be handled first, as events of an unknown torrent, and dropped:
//! the connection then sat unused until the 300 s idle timeout.
//!
//! Here the controller is held up deterministically: this binary's logger
//! sleeps 1.5 s on the controller thread's "fetching metadata" line of a
//! first magnet, while eight more magnets, each naming a scripted peer,
//! are added. Every one of them must ask that peer for metadata. (A
//! binary of its own: the logger is process-wide.)

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bittern_engine::{Encryption, SeedGoal, Session, SessionConfig, TorrentOptions};
use bittern_wire::{
    decode_message, ExtensionHandshake, Handshake, InfoHash, Magnet, Message, PeerId,
};

/// The torrent whose "fetching metadata" line holds the controller.
const HELD: InfoHash = InfoHash([0; 20]);

struct Gate;

impl log::Log for Gate {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let text = record.args().to_string();
        if text.starts_with(&format!("{}: fetching metadata", &HELD.to_hex()[..8])) {
            std::thread::sleep(Duration::from_millis(1500));
        }
    }

    fn flush(&self) {}
}

/// Serves one connection: handshakes (ours announces `ut_metadata` as 3
/// and a size), then records the info hash once bittern asks for a
/// metadata piece.
fn serve(mut s: TcpStream, asked: &Mutex<HashSet<InfoHash>>) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs)?;
    let theirs = Handshake::decode(&hs).map_err(std::io::Error::other)?;
    let mut out = Handshake::new(theirs.info_hash, PeerId([7; 20]))
        .encode()
        .to_vec();
    let mut ext = ExtensionHandshake::default();
    ext.m.insert("ut_metadata".into(), 3);
    ext.metadata_size = Some(20_000);
    Message::Extended {
        id: 0,
        payload: &ext.encode(),
    }
    .encode(&mut out);
    s.write_all(&out)?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        while let Some((m, used)) = decode_message(&buf, 1 << 20).map_err(std::io::Error::other)? {
            if let Message::Extended { id: 3, .. } = m {
                asked.lock().unwrap().insert(theirs.info_hash);
            }
            buf.drain(..used);
        }
        let n = s.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[test]
fn events_of_a_fetch_connection_are_not_lost_while_the_controller_is_busy() {
    log::set_boxed_logger(Box::new(Gate)).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer: SocketAddr = listener.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(HashSet::new()));
    {
        let asked = asked.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let asked = asked.clone();
                std::thread::spawn(move || serve(s, &asked));
            }
        });
    }
    let session = Session::new(SessionConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        announce: false,
        encryption: Encryption::Disable,
        ..SessionConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = TorrentOptions {
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let magnet = |h: InfoHash, peers: &str| {
        Magnet::parse(&format!("magnet:?xt=urn:btih:{}{peers}", h.to_hex())).unwrap()
    };
    let mut handles = vec![session
        .add_magnet(&magnet(HELD, ""), dir.path(), options.clone())
        .unwrap()];
    let want: Vec<InfoHash> = (1..=8u8).map(|i| InfoHash([i; 20])).collect();
    for h in &want {
        let t = session
            .add_magnet(
                &magnet(*h, &format!("&x.pe={peer}")),
                dir.path(),
                options.clone(),
            )
            .unwrap();
        handles.push(t);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while asked.lock().unwrap().len() < want.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let asked = asked.lock().unwrap();
    let never: Vec<String> = want
        .iter()
        .filter(|h| !asked.contains(h))
        .map(|h| {
            let s = handles
                .iter()
                .find(|t| t.info_hash() == *h)
                .map(|t| t.status());
            format!(
                "{}: {:?}",
                &h.to_hex()[..8],
                s.map(|s| (s.peers_connected, s.peers_connecting))
            )
        })
        .collect();
    assert!(
        never.is_empty(),
        "never asked for metadata (peers, connecting): {never:?}"
    );
}
