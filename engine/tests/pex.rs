//! Peer exchange (BEP 11): three peers A, B, C where C is given only A,
//! learns B from A's `ut_pex` and completes from B once A is gone, with
//! bittern or libtorrent as A (and libtorrent as C); the message bittern
//! sends, read by a scripted peer; hostile senders (a 10,000-peer
//! message, messages too often, PEX on a private torrent).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use bittern_engine::{
    SeedGoal, Session, SessionConfig, TorrentEvent, TorrentHandle, TorrentOptions, TorrentState,
    Violation,
};
use bittern_wire::{
    Extension, ExtensionHandshake, Message, Metainfo, MetainfoBuilder, PexFlags, PexMessage,
};

use crate::fake::{Got, Wire};
use crate::interop::{have_libtorrent, write_torrent, Proc};
use crate::util::*;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn session_with(f: impl FnOnce(&mut SessionConfig)) -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut c = config();
    f(&mut c);
    Session::new(c).unwrap()
}

fn seed_in(s: &Session, meta: &Metainfo, dir: &Path, peers: Vec<SocketAddr>) -> TorrentHandle {
    let t = s
        .add_torrent(
            meta.clone(),
            dir,
            TorrentOptions {
                peers,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_state(&t, TorrentState::Seeding, Duration::from_secs(20));
    t
}

/// Waits until `cond` holds, polling; panics naming `what` after `limit`.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts C, given only A, and waits until it has learnt B's listen
/// address, which only A's PEX can tell it (its known peers grow from one
/// to two), and has dialled B there; C is not done yet.
fn c_learns_b(
    meta: &Metainfo,
    dst: &Path,
    a: SocketAddr,
    b: SocketAddr,
) -> (Session, TorrentHandle) {
    let c = session();
    let t = c
        .add_torrent(
            meta.clone(),
            dst,
            TorrentOptions {
                peers: vec![a],
                seed_goal: SeedGoal::None,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_until("C to learn B through PEX", Duration::from_secs(30), || {
        t.status().peers_known >= 2 && t.peers().iter().any(|p| p.addr == b)
    });
    let st = t.status();
    assert!(
        st.have_bytes < meta.info.total_length(),
        "C was done before A stopped: {st:?}"
    );
    (c, t)
}

// A is a leecher with nothing yet, downloading from B: a peer that
// lists B, without making C's download depend on it. (A seed limited in
// upload would queue its PEX messages behind rate-limited blocks, as
// libtorrent does too.) B serves slowly enough that C cannot finish before
// A is gone.

/// B: a seed serving 512 KiB/s in all, with PEX off, so that it never
/// hears of C and dials it: C reaches B only by dialling the address A's
/// PEX gave it.
fn slow_seed(meta: &Metainfo, src: &Path) -> (Session, TorrentHandle) {
    let b = session_with(|c| {
        c.upload_limit = Some(512 << 10);
        c.pex = false;
    });
    let t = seed_in(&b, meta, src, vec![]);
    (b, t)
}

#[test]
fn c_learns_b_from_a_and_completes_from_b_after_a_stops() {
    let (src, dst_a, dst) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "pex.bin",
        &[("pex.bin", 4 << 20)],
        64 * 1024,
        71,
    );
    let (b, _tb) = slow_seed(&meta, src.path());
    let a = session();
    let ta = a
        .add_torrent(
            meta.clone(),
            dst_a.path(),
            TorrentOptions {
                peers: vec![b.local_addr()],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_until("A to reach B", Duration::from_secs(10), || {
        ta.peers()
            .iter()
            .any(|p| p.addr == b.local_addr() && p.client.is_some())
    });
    let (c, tc) = c_learns_b(&meta, dst.path(), a.local_addr(), b.local_addr());
    drop(a);
    wait_state(&tc, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert_eq!(tc.status().hash_failures, 0);
    drop(c);
}

/// The same with libtorrent (PEX on by default: its `ut_pex` plugin) as A,
/// so the message format is proven against a real client.
#[test]
fn c_learns_b_from_libtorrent_pex() {
    if !have_libtorrent() {
        return;
    }
    let (src, dst_a, dst, work) = (tempdir(), tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "ltpex.bin",
        &[("ltpex.bin", 4 << 20)],
        64 * 1024,
        72,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let (b, tb) = slow_seed(&meta, src.path());
    let b_port = b.local_addr().port().to_string();
    let (lt, port) = bittern_testkit::libtorrent::spawn_with_port(
        "libtorrent A",
        bittern_testkit::libtorrent::leech_cmd(&torrent, dst_a.path(), &b_port, 120),
        work.path().join("lt_a.log"),
    );
    wait_until("libtorrent to reach B", Duration::from_secs(20), || {
        tb.peers()
            .iter()
            .any(|p| p.client.as_deref() == Some("bittern-interop-test"))
    });
    let (c, tc) = c_learns_b(&meta, dst.path(), local(port), b.local_addr());
    drop(lt);
    wait_for_stopped(&tc);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    drop(c);
}

fn wait_for_stopped(t: &TorrentHandle) {
    wait_state(t, TorrentState::Stopped, Duration::from_secs(60));
}

/// bittern as A, libtorrent as C: libtorrent learns B from bittern's PEX
/// (our encoding read by a real client) and completes from B after A is
/// gone.
#[test]
fn libtorrent_learns_b_from_bittern_pex() {
    if !have_libtorrent() {
        return;
    }
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "topex.bin",
        &[("topex.bin", 4 << 20)],
        64 * 1024,
        73,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let (b, _tb) = slow_seed(&meta, src.path());
    let dst_a = tempdir();
    let a = session();
    let ta = a
        .add_torrent(
            meta.clone(),
            dst_a.path(),
            TorrentOptions {
                peers: vec![b.local_addr()],
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_until("A to reach B", Duration::from_secs(10), || {
        ta.peers()
            .iter()
            .any(|p| p.addr == b.local_addr() && p.client.is_some())
    });
    let a_port = a.local_addr().port().to_string();
    let mut lt = Proc::spawn(
        "libtorrent C",
        bittern_testkit::libtorrent::leech_cmd(&torrent, dst.path(), &a_port, 90),
        work.path().join("lt_c.log"),
    );
    // libtorrent connects to B's listen port, which only our PEX told it.
    let b_entry = format!("127.0.0.1:{}", b.local_addr().port());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lt.expect_line("PEERS", deadline.saturating_duration_since(Instant::now()));
        if line.split_whitespace().any(|p| p == b_entry) {
            break;
        }
    }
    drop(a);
    let got: u64 = lt
        .expect_line("DONE ", Duration::from_secs(90))
        .parse()
        .unwrap();
    assert!(
        got >= meta.info.total_length(),
        "libtorrent downloaded {got}"
    );
    let status = lt.wait(Duration::from_secs(20));
    if !status.success() {
        lt.fail(&format!("exited with {status}"));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}

// ---- the message bittern sends, read by scripted peers ------------------

/// Our extension handshake advertising `ut_pex` under `pex_id` and the
/// listen port `p`.
fn ext_handshake(pex_id: u8, p: Option<u16>) -> Vec<u8> {
    ext_handshake_e(pex_id, p, false)
}

/// [`ext_handshake`], saying `e` (supports encryption) when `e`.
fn ext_handshake_e(pex_id: u8, p: Option<u16>, e: bool) -> Vec<u8> {
    let mut hs = ExtensionHandshake {
        e,
        ..ExtensionHandshake::default()
    };
    if pex_id != 0 {
        hs.m.insert("ut_pex".into(), pex_id);
    }
    hs.p = p;
    hs.v = Some("scripted".into());
    let mut out = Vec::new();
    Message::Extended {
        id: 0,
        payload: &hs.encode(),
    }
    .encode(&mut out);
    out
}

/// Reads until an extended message of id `id`, or `None` when none comes
/// within `limit` (or the connection ends).
fn next_extended(w: &mut Wire, id: u8, limit: Duration) -> Option<Vec<u8>> {
    let start = Instant::now();
    w.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while start.elapsed() < limit {
        match w.recv() {
            Ok(Got::Extended { id: got, payload }) if got == id => return Some(payload),
            Ok(_) => {}
            Err(e) if bittern_testkit::is_timeout(&e) => {}
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn bittern_sends_pex_with_flags_and_never_the_peer_itself() {
    let src = tempdir();
    let meta = make_torrent(
        src.path(),
        "send.bin",
        &[("send.bin", 300_000)],
        16 * 1024,
        74,
    );
    let (a, ta) = seeding(&meta, src.path());
    // A dials a bittern seed B: listed at its address, reachable, a seed.
    let (b, _tb) = seeding(&meta, src.path());
    ta.add_peers(vec![b.local_addr()]).unwrap();
    wait_until("A to reach B", Duration::from_secs(10), || {
        ta.peers()
            .iter()
            .any(|p| p.addr == b.local_addr() && p.client.is_some())
    });
    // Two scripted peers dial A, each saying its listen port (a listener
    // it holds); only the second wants ut_pex messages.
    let l1 = TcpListener::bind("127.0.0.1:0").unwrap();
    let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let (p1, p2) = (l1.local_addr().unwrap(), l2.local_addr().unwrap());
    let (mut w2, _) = Wire::connect(a.local_addr(), meta.info_hash).unwrap();
    // w2 says `e`: it supports encryption (though it dialled in the clear).
    w2.send_raw(&ext_handshake_e(0, Some(p2.port()), true))
        .unwrap();
    wait_until("A to hear the second peer", Duration::from_secs(10), || {
        ta.peers()
            .iter()
            .any(|p| p.client.as_deref() == Some("scripted"))
    });
    let (mut w1, _) = Wire::connect(a.local_addr(), meta.info_hash).unwrap();
    w1.send_raw(&ext_handshake(9, Some(p1.port()))).unwrap();
    let w1_addr = w1.stream.local_addr().unwrap();

    let payload = next_extended(&mut w1, 9, Duration::from_secs(10)).expect("a ut_pex message");
    let msg = PexMessage::decode(&payload).unwrap();
    assert!(msg.dropped.is_empty());
    // w2 at its listen port (it dialled A: not known to be reachable;
    // it said `e`: encryption), B at its own (A dialled it: reachable; a
    // seed; the connection is MSE-encrypted); never w1 itself, under
    // either of its addresses, nor A.
    let mut added = msg.added.clone();
    added.sort_by_key(|(a, _)| *a);
    let mut want = vec![
        (
            p2,
            PexFlags {
                encryption: true,
                ..PexFlags::default()
            },
        ),
        (
            b.local_addr(),
            PexFlags {
                seed: true,
                reachable: true,
                encryption: true,
                ..PexFlags::default()
            },
        ),
    ];
    want.sort_by_key(|(a, _)| *a);
    assert_eq!(added, want);
    assert!(!added.iter().any(|(x, _)| *x == p1 || *x == w1_addr));
    // The wire bytes: IPv4 lists and one flag byte per added peer, and the
    // IPv6 lists present (empty), as libtorrent sends them.
    let d = bittern_wire::bencode::decode(&payload).unwrap();
    let get = |k: &str| {
        d.get(k.as_bytes())
            .and_then(|v| v.as_bytes())
            .map(<[u8]>::len)
    };
    assert_eq!(get("added"), Some(12));
    assert_eq!(get("added.f"), Some(2));
    assert_eq!(get("added6"), Some(0));
    assert_eq!(get("dropped"), Some(0));
    // At most one message a minute: nothing more for a while, although a
    // third peer joins meanwhile.
    let (mut w3, _) = Wire::connect(a.local_addr(), meta.info_hash).unwrap();
    w3.send_raw(&ext_handshake(0, Some(4242))).unwrap();
    assert!(
        next_extended(&mut w1, 9, Duration::from_secs(4)).is_none(),
        "a second ut_pex within a minute"
    );
    drop((w2, w3));
}

/// A PEX `added.f` uTP flag (`0x04`): the peer is dialled over uTP first
/// (its TCP port is open too, so the default TCP-first dial would reach it
/// over TCP), and bittern passes the flag on in its own PEX messages.
#[test]
fn a_pex_utp_flag_makes_the_peer_dialled_over_utp_and_is_passed_on() {
    let src = tempdir();
    let meta = make_torrent(
        src.path(),
        "utp.bin",
        &[("utp.bin", 1 << 20)],
        16 * 1024,
        75,
    );
    let b = session_with(|c| c.utp = true);
    let _tb = seed_in(&b, &meta, src.path(), Vec::new());
    // A leeches slowly, so that it is still connected to B when asked.
    let a = session_with(|c| {
        c.utp = true;
        c.download_limit = Some(64 << 10);
    });
    let dst = tempdir();
    let ta = a
        .add_torrent(
            meta.clone(),
            dst.path(),
            TorrentOptions {
                seed_goal: SeedGoal::None,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_state(&ta, TorrentState::Downloading, Duration::from_secs(20));
    // A scripted peer tells A about B, flagged uTP.
    let (mut w, _) = Wire::connect(a.local_addr(), meta.info_hash).unwrap();
    w.send_raw(&ext_handshake(9, None)).unwrap();
    let m = PexMessage {
        added: vec![(
            b.local_addr(),
            PexFlags {
                utp: true,
                ..PexFlags::default()
            },
        )],
        ..PexMessage::default()
    };
    let mut frame = Vec::new();
    Message::Extended {
        id: Extension::UtPex.local_id(),
        payload: &m.encode(),
    }
    .encode(&mut frame);
    w.send_raw(&frame).unwrap();
    wait_until("A to reach B", Duration::from_secs(20), || {
        ta.peers()
            .iter()
            .any(|p| p.addr == b.local_addr() && p.client.is_some())
    });
    let pb = ta
        .peers()
        .into_iter()
        .find(|p| p.addr == b.local_addr())
        .unwrap();
    assert!(pb.utp, "B was dialled over tcp: {pb:?}");
    // A second scripted peer that wants PEX hears of B with 0x04 (and
    // seed, reachable).
    let (mut w2, _) = Wire::connect(a.local_addr(), meta.info_hash).unwrap();
    w2.send_raw(&ext_handshake(7, None)).unwrap();
    let payload = next_extended(&mut w2, 7, Duration::from_secs(10)).expect("a ut_pex message");
    let msg = PexMessage::decode(&payload).unwrap();
    let f = msg
        .added
        .iter()
        .find(|(x, _)| *x == b.local_addr())
        .map(|(_, f)| *f)
        .expect("B listed");
    assert!(f.utp && f.seed && f.reachable, "{f:?}");
    assert_eq!(f.to_byte() & 0x16, 0x16);
    drop((w, w2));
}

// ---- hostile senders ----------------------------------------------------

/// A listener that records the connections made to it.
struct Trap {
    addr: SocketAddr,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Trap {
    fn new() -> Trap {
        // On an address of its own in 127/8: a port of 127.0.0.1 freed by
        // one test and taken by a trap can be dialled by that test's
        // session (4 such hits failed `pex_sent_too_often_...` at load 30
        // while the leecher's log showed no dial of those traps).
        let ip = std::net::Ipv4Addr::new(127, 77, rand::random(), rand::random::<u8>().max(1));
        let l = TcpListener::bind((ip, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                if c.is_ok() {
                    h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
        Trap { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A `ut_pex` message (our id for it is 1) adding `added` loopback peers.
fn pex_frame(added: &[SocketAddr]) -> Vec<u8> {
    let m = PexMessage {
        added: added.iter().map(|a| (*a, PexFlags::default())).collect(),
        ..PexMessage::default()
    };
    let mut out = Vec::new();
    Message::Extended {
        id: Extension::UtPex.local_id(),
        payload: &m.encode(),
    }
    .encode(&mut out);
    out
}

/// A leecher downloading from an honest seeder, and a scripted peer
/// connected to it that has sent its extension handshake.
fn leecher_with_hostile(
    meta: &Metainfo,
    src: &Path,
    dst: &Path,
) -> (Session, Session, TorrentHandle, Wire) {
    let (seeder, _) = seeding(meta, src);
    // Slow enough that the hostile peer acts while the download runs.
    let leecher = session_with(|c| c.download_limit = Some(1 << 20));
    let t = leecher
        .add_torrent(
            meta.clone(),
            dst,
            TorrentOptions {
                peers: vec![seeder.local_addr()],
                seed_goal: SeedGoal::None,
                ..TorrentOptions::default()
            },
        )
        .unwrap();
    wait_state(&t, TorrentState::Downloading, Duration::from_secs(20));
    let (mut w, _) = Wire::connect(leecher.local_addr(), meta.info_hash).unwrap();
    w.send_raw(&ext_handshake(5, None)).unwrap();
    (seeder, leecher, t, w)
}

/// Whether a `PeerViolation` matching `want` was emitted.
fn violated(t: &TorrentHandle, want: fn(&Violation) -> bool) -> bool {
    t.events()
        .try_iter()
        .any(|e| matches!(e, TorrentEvent::PeerViolation { violation, .. } if want(&violation)))
}

#[test]
fn a_ten_thousand_peer_pex_message_drops_its_sender_and_dials_none() {
    let (src, dst) = (tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "flood.bin",
        &[("flood.bin", 3 << 20)],
        64 * 1024,
        75,
    );
    let (_seeder, _leecher, t, mut w) = leecher_with_hostile(&meta, src.path(), dst.path());
    let trap = Trap::new();
    // 10,000 loopback peers (nothing here may point off the machine), the
    // trap first: a single dial would show.
    let mut added = vec![trap.addr];
    for i in 1..10_000u32 {
        let [_, _, x, y] = i.to_be_bytes();
        added.push(SocketAddr::from(([127, 9, x, y], 6881)));
    }
    let frame = pex_frame(&added);
    assert!(frame.len() > 60_000);
    w.send_raw(&frame).unwrap();
    assert!(
        w.closed_within(Duration::from_secs(5)),
        "the flooding peer is dropped"
    );
    wait_state(&t, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert!(violated(
        &t,
        |v| matches!(v, Violation::PexFlood { peers } if *peers >= 10_000)
    ));
    assert_eq!(trap.hits(), 0, "nothing of the flood was dialled");
    assert_eq!(t.status().peers_known, 1, "{:?}", t.status());
}

#[test]
fn pex_sent_too_often_is_ignored_then_its_sender_dropped() {
    let (src, dst) = (tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "often.bin",
        &[("often.bin", 3 << 20)],
        64 * 1024,
        76,
    );
    let (_seeder, _leecher, t, mut w) = leecher_with_hostile(&meta, src.path(), dst.path());
    // The first message is heard: its peer is dialled.
    let first = Trap::new();
    w.send_raw(&pex_frame(&[first.addr])).unwrap();
    wait_until(
        "the first PEX peer to be dialled",
        Duration::from_secs(10),
        || first.hits() > 0,
    );
    // The next ones, all within a second, are ignored, and past the limit
    // the sender is dropped.
    let later: Vec<Trap> = (0..4).map(|_| Trap::new()).collect();
    for trap in &later {
        if w.send_raw(&pex_frame(&[trap.addr])).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        w.closed_within(Duration::from_secs(5)),
        "the sender is dropped"
    );
    wait_state(&t, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert!(violated(&t, |v| matches!(v, Violation::PexTooOften)));
    assert_eq!(
        later.iter().map(Trap::hits).sum::<usize>(),
        0,
        "peers of messages sent too soon are not dialled"
    );
}

/// A private variant of `meta` (same files, its own info hash).
fn private(meta: &Metainfo) -> Metainfo {
    let info = &meta.info;
    let bytes = MetainfoBuilder::new(info.name.clone())
        .piece_length(info.piece_length)
        .pieces(info.pieces.clone())
        .single_file(info.total_length())
        .private(true)
        .build()
        .unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.info.private);
    m
}

/// A scripted peer that speaks `ut_pex` (id 5) joins a leecher and sends
/// it a message naming a trap. Returns whether the leecher offered
/// `ut_pex`, sent a message, and dialled the trap; checks the download.
fn pex_with_leecher(meta: &Metainfo, src: &Path) -> (bool, bool, usize) {
    let dst = tempdir();
    let (_seeder, _leecher, t, mut w) = leecher_with_hostile(meta, src, dst.path());
    let hs = loop {
        if let Got::Extended { id: 0, payload } = w.recv().unwrap() {
            break ExtensionHandshake::decode(&payload).unwrap();
        }
    };
    let offered = hs.id_for(Extension::UtPex).is_some();
    assert!(hs.id_for(Extension::UtMetadata).is_some());
    let trap = Trap::new();
    w.send_raw(&pex_frame(&[trap.addr])).unwrap();
    // The leecher has a peer to tell of (its seeder) and this one said
    // it speaks ut_pex: a message comes about a second later, if any.
    let sent = next_extended(&mut w, 5, Duration::from_secs(4)).is_some();
    // A dial of the trap, if any, comes in the controller's own time
    // (seconds on a loaded machine); a private torrent's never comes.
    let start = Instant::now();
    while trap.hits() == 0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let hits = trap.hits();
    let known = t.status().peers_known;
    assert_eq!(known, 1 + usize::from(hits > 0), "{:?}", t.status());
    wait_state(&t, TorrentState::Stopped, Duration::from_secs(60));
    assert_same(src, dst.path(), &meta.info.file_paths());
    (offered, sent, hits)
}

#[test]
fn no_pex_on_a_private_torrent_either_way() {
    let src = tempdir();
    let public = make_torrent(
        src.path(),
        "priv.bin",
        &[("priv.bin", 3 << 20)],
        64 * 1024,
        77,
    );
    // The same exchange on the public torrent: offered, sent and heard.
    let (offered, sent, hits) = pex_with_leecher(&public, src.path());
    assert!(
        offered && sent && hits > 0,
        "public: {offered} {sent} {hits}"
    );
    // BEP 27: the private one neither offers ut_pex, nor sends a message,
    // nor dials what the peer sends anyway.
    let (offered, sent, hits) = pex_with_leecher(&private(&public), src.path());
    assert!(!offered, "ut_pex offered on a private torrent");
    assert!(!sent, "a ut_pex message sent on a private torrent");
    assert_eq!(hits, 0, "a PEX peer of a private torrent was dialled");
}

// ---- upload_only (BEP 21) after completion ------------------------------

/// A leecher tells a connected peer it is upload-only once its download
/// completes: a second extension handshake with `upload_only` 1, after a
/// first one (at connect) without it, as libtorrent does.
#[test]
fn completion_resends_the_extension_handshake_with_upload_only() {
    let src = tempdir();
    let dst = tempdir();
    let meta = make_torrent(src.path(), "uo.bin", &[("uo.bin", 600_000)], 16 * 1024, 21);
    let (seeder, _seeding) = seeding(&meta, src.path());
    let (leecher, t, mut w) = {
        // Slow enough that the scripted peer is connected before the end.
        let leecher = session_with(|c| c.download_limit = Some(256 << 10));
        let t = leecher
            .add_torrent(
                meta.clone(),
                dst.path(),
                TorrentOptions {
                    peers: vec![seeder.local_addr()],
                    ..TorrentOptions::default()
                },
            )
            .unwrap();
        wait_state(&t, TorrentState::Downloading, Duration::from_secs(20));
        let (mut w, _) = Wire::connect(leecher.local_addr(), meta.info_hash).unwrap();
        w.send_raw(&ext_handshake(0, None)).unwrap();
        (leecher, t, w)
    };
    let first = next_extended(&mut w, 0, Duration::from_secs(10)).expect("an extension handshake");
    let first = ExtensionHandshake::decode(&first).unwrap();
    assert!(!first.upload_only, "a leecher said upload_only");
    assert_ne!(
        t.status().state,
        TorrentState::Seeding,
        "completed before the scripted peer was heard: the test proves nothing"
    );
    let raw =
        next_extended(&mut w, 0, Duration::from_secs(30)).expect("a second extension handshake");
    assert_eq!(t.status().state, TorrentState::Seeding);
    let second = ExtensionHandshake::decode(&raw).unwrap();
    assert!(second.upload_only, "no upload_only after completion");
    assert_eq!(second.metadata_size, first.metadata_size);
    assert_eq!(second.p, Some(leecher.local_addr().port()));
    // On the wire as libtorrent writes it: the key with the integer 1.
    assert!(raw.windows(17).any(|x| x == b"11:upload_onlyi1e"));
    drop((w, seeder));
}
