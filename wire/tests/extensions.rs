//! BEP 9/10/11 through the public API: a metadata fetch carried in real
//! frames (split at every byte), and live against libtorrent on loopback:
//! its extension handshake decodes, it serves our `ut_metadata` requests
//! and the assembled dictionary has the torrent's info hash, and its
//! `ut_pex` message decodes to the peers it is connected to; and the
//! reverse: libtorrent fetches metadata we serve, and dials a peer named
//! only in our `ut_pex` message.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use bittern_wire::{
    decode_message, metadata_piece, Accepted, Extension, ExtensionHandshake, Handshake, InfoHash,
    Message, MetadataAssembler, MetadataHash, MetadataMessage, Metainfo, MetainfoBuilder, PeerId,
    PexMessage, DEFAULT_MAX_FRAME, METADATA_PIECE_LEN,
};

use crate::util::{data_dir, have_tool, PYTHON};

fn frame(ext_id: u8, m: &MetadataMessage<'_>) -> Vec<u8> {
    let mut payload = Vec::new();
    m.encode(&mut payload);
    let mut out = Vec::new();
    Message::Extended {
        id: ext_id,
        payload: &payload,
    }
    .encode(&mut out);
    out
}

/// Decode every frame of `stream` fed in two parts split at `at`, the way
/// a peer thread's buffer fills; returns the ut_metadata messages as owned
/// (piece, total_size, data) triples.
fn decode_split(stream: &[u8], at: usize) -> Vec<(u32, u64, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for part in [&stream[..at], &stream[at..]] {
        buf.extend_from_slice(part);
        let mut used_total = 0;
        while let Some((msg, used)) = decode_message(&buf[used_total..], DEFAULT_MAX_FRAME).unwrap()
        {
            used_total += used;
            let Message::Extended { id, payload } = msg else {
                panic!("unexpected {msg:?}");
            };
            assert_eq!(Extension::from_local_id(id), Some(Extension::UtMetadata));
            match MetadataMessage::decode(payload).unwrap() {
                MetadataMessage::Data {
                    piece,
                    total_size,
                    data,
                } => out.push((piece, total_size, data.to_vec())),
                other => panic!("unexpected {other:?}"),
            }
        }
        buf.drain(..used_total);
    }
    assert!(buf.is_empty());
    out
}

#[test]
fn metadata_fetch_through_frames_split_everywhere() {
    let torrent = std::fs::read(data_dir().join("lt-hybrid.torrent")).unwrap();
    let m = Metainfo::from_bytes(&torrent).unwrap();
    let info = &m.info_bytes;
    let n = info.len() as u64;
    let pieces = info.len().div_ceil(METADATA_PIECE_LEN);
    // pad with a fake second piece when the fixture is small, so two peers
    // share the work: the fake dictionary is the real one plus spaces
    let mut bytes = info.clone();
    if pieces < 2 {
        bytes.resize(METADATA_PIECE_LEN + 100, b' ');
    }
    let (n, hash) = if pieces < 2 {
        use sha1::{Digest, Sha1};
        (
            bytes.len() as u64,
            MetadataHash::V1(InfoHash(Sha1::digest(&bytes).into())),
        )
    } else {
        (n, MetadataHash::V1(m.info_hash))
    };
    let mut a = MetadataAssembler::new(hash, n).unwrap();
    a.set_per_peer_limit(1);
    let p1 = a.next_request(&1u8).unwrap();
    let p2 = a.next_request(&2u8).unwrap();
    assert_ne!(p1, p2);
    let local = Extension::UtMetadata.local_id();
    let mut stream = Vec::new();
    for p in [p1, p2] {
        stream.extend(frame(
            local,
            &MetadataMessage::Data {
                piece: p,
                total_size: n,
                data: metadata_piece(&bytes, p).unwrap(),
            },
        ));
    }
    let whole = decode_split(&stream, stream.len());
    for at in 0..=stream.len() {
        assert_eq!(decode_split(&stream, at), whole, "split at {at}");
    }
    let mut done = None;
    for ((piece, total, data), peer) in whole.into_iter().zip([1u8, 2]) {
        if let Accepted::Complete(b) = a.accept(&peer, piece, total, &data).unwrap() {
            done = Some(b);
        }
    }
    assert_eq!(done.as_deref(), Some(&bytes[..]));
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A libtorrent session on 127.0.0.1 holding one torrent (with no data:
/// metadata is served all the same). Killed on drop.
struct LtPeer {
    _child: Guard,
    port: u16,
    _out: BufReader<ChildStdout>,
}

const LT_SCRIPT: &str = r#"
import sys, time, libtorrent as lt
ses = lt.session({
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
    "enable_natpmp": False, "listen_interfaces": "127.0.0.1:0",
    "outgoing_interfaces": "127.0.0.1", "enable_outgoing_utp": False,
    "enable_incoming_utp": False, "allow_multiple_connections_per_ip": True,
    "user_agent": "bittern-interop-test",
})
atp = lt.add_torrent_params()
atp.ti = lt.torrent_info(sys.argv[1])
atp.save_path = sys.argv[2]
atp.flags &= ~lt.torrent_flags.auto_managed
atp.flags &= ~lt.torrent_flags.paused
h = ses.add_torrent(atp)
deadline = time.monotonic() + 10
# wait until listening and past the file check (which may refuse peers)
while time.monotonic() < deadline and (
    not ses.listen_port()
    or h.status().state not in (lt.torrent_status.downloading, lt.torrent_status.seeding)
):
    time.sleep(0.05)
print(ses.listen_port(), flush=True)
sys.stdin.read()
"#;

fn start_lt(torrent: &std::path::Path, save: &std::path::Path) -> LtPeer {
    let mut child = Guard(
        Command::new(PYTHON)
            .args(["-c", LT_SCRIPT])
            .arg(torrent)
            .arg(save)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or(0);
    assert_ne!(port, 0, "libtorrent gave no port: {line:?}");
    LtPeer {
        _child: child,
        port,
        _out: out,
    }
}

/// A torrent of `count` fake piece hashes (1,100 take two metadata
/// pieces); libtorrent needs no data to serve its metadata.
fn big_torrent(dir: &std::path::Path, count: u32) -> (std::path::PathBuf, Metainfo) {
    let hashes = (0..count)
        .map(|i| {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&i.to_be_bytes());
            h
        })
        .collect();
    let bytes = MetainfoBuilder::new("meta.bin")
        .single_file(u64::from(count) * 16384)
        .piece_length(16384)
        .pieces(hashes)
        .build()
        .unwrap();
    let path = dir.join("meta.torrent");
    std::fs::write(&path, &bytes).unwrap();
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(m.info_bytes.len() > METADATA_PIECE_LEN);
    (path, m)
}

/// A peer connection driven by hand: handshake, extension handshake, and
/// a frame reader.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(port: u16, info_hash: InfoHash, ours: &ExtensionHandshake) -> (Conn, Handshake) {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut c = Conn { s, buf: Vec::new() };
        let hs = Handshake::new(info_hash, PeerId::generate(b"-BT0100-"));
        c.s.write_all(&hs.encode()).unwrap();
        let mut out = Vec::new();
        Message::Extended {
            id: 0,
            payload: &ours.encode(),
        }
        .encode(&mut out);
        Message::Interested.encode(&mut out);
        c.s.write_all(&out).unwrap();
        let mut theirs = [0u8; 68];
        c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.s.read_exact(&mut theirs).unwrap();
        c.s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        (c, Handshake::decode(&theirs).unwrap())
    }

    fn send_ext(&mut self, id: u8, payload: &[u8]) {
        let mut out = Vec::new();
        Message::Extended { id, payload }.encode(&mut out);
        self.s.write_all(&out).unwrap();
    }

    /// The next extended message (id, payload), reading until `deadline`;
    /// other messages are skipped.
    fn next_extended(&mut self, deadline: Instant) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((msg, used)) = decode_message(&self.buf, DEFAULT_MAX_FRAME).unwrap() {
                let got = match msg {
                    Message::Extended { id, payload } => Some((id, payload.to_vec())),
                    _ => None,
                };
                self.buf.drain(..used);
                if got.is_some() {
                    return got;
                }
                continue;
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if bittern_testkit::is_timeout(&e) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

#[test]
fn libtorrent_serves_metadata_to_the_assembler() {
    if !have_tool("libtorrent") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (torrent, m) = big_torrent(dir.path(), 16_400);
    let lt = start_lt(&torrent, dir.path());
    let ours = ExtensionHandshake {
        v: Some("bittern-test".into()),
        ..ExtensionHandshake::with_all_extensions()
    };
    let (mut c, theirs) = Conn::open(lt.port, m.info_hash, &ours);
    assert_eq!(theirs.info_hash, m.info_hash);
    assert!(theirs.supports_extended());
    let deadline = Instant::now() + Duration::from_secs(20);

    // libtorrent's extension handshake
    let (id, payload) = c.next_extended(deadline).expect("extension handshake");
    assert_eq!(id, 0);
    let lt_hs = ExtensionHandshake::decode(&payload).unwrap();
    let lt_meta = lt_hs.id_for(Extension::UtMetadata).expect("ut_metadata");
    assert!(lt_hs.id_for(Extension::UtPex).is_some(), "{lt_hs:?}");
    assert_eq!(lt_hs.metadata_size, Some(m.info_bytes.len() as u64));
    assert_eq!(lt_hs.yourip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert!(lt_hs.reqq.is_some_and(|r| r > 0));
    assert!(lt_hs
        .v
        .as_deref()
        .is_some_and(|v| v.contains("bittern-interop-test")));

    // fetch every piece, then ask for one past the end
    let size = lt_hs.metadata_size.unwrap();
    let mut a = MetadataAssembler::new(MetadataHash::V1(m.info_hash), size).unwrap();
    // 21 pieces, fetched with the default pipeline (16 requests in
    // flight, refilled as data arrives): libtorrent serves it without a
    // single reject
    assert_eq!(a.piece_count(), 21);
    let mut out = Vec::new();
    let mut done = None;
    let mut most_in_flight = 0;
    while done.is_none() {
        while let Some(p) = a.next_request(&0u8) {
            out.clear();
            MetadataMessage::Request { piece: p }.encode(&mut out);
            c.send_ext(lt_meta, &out);
        }
        most_in_flight = most_in_flight.max(a.in_flight(&0));
        let (id, payload) = c.next_extended(deadline).expect("metadata data");
        assert_eq!(Extension::from_local_id(id), Some(Extension::UtMetadata));
        match MetadataMessage::decode(&payload).unwrap() {
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => match a.accept(&0, piece, total_size, data).unwrap() {
                Accepted::Complete(b) => done = Some(b),
                Accepted::Stored => {}
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(most_in_flight, 16);
    assert_eq!(done.as_deref(), Some(&m.info_bytes[..]));

    out.clear();
    MetadataMessage::Request { piece: 99 }.encode(&mut out);
    c.send_ext(lt_meta, &out);
    let (id, payload) = c.next_extended(deadline).expect("reject");
    assert_eq!(id, Extension::UtMetadata.local_id());
    let got = MetadataMessage::decode(&payload);
    assert!(
        got == Ok(MetadataMessage::Reject { piece: 99 }),
        "not a reject: {} bytes",
        payload.len()
    );
}

#[test]
fn libtorrent_pex_message_decodes_to_its_peers() {
    if !have_tool("libtorrent") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (torrent, m) = big_torrent(dir.path(), 1100);
    let lt = start_lt(&torrent, dir.path());
    // B tells libtorrent its listen port (a real listener, never accepted
    // from), so libtorrent may pass B on; then A connects and waits
    let b_listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b_port = b_listen.local_addr().unwrap().port();
    let ours = |p: u16| ExtensionHandshake {
        p: Some(p),
        ..ExtensionHandshake::with_all_extensions()
    };
    let (mut b, _) = Conn::open(lt.port, m.info_hash, &ours(b_port));
    let deadline = Instant::now() + Duration::from_secs(20);
    assert_eq!(b.next_extended(deadline).map(|(id, _)| id), Some(0));
    let a_listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a_port = a_listen.local_addr().unwrap().port();
    let (mut a, _) = Conn::open(lt.port, m.info_hash, &ours(a_port));
    let pex_id = Extension::UtPex.local_id();
    let msg = loop {
        let (id, payload) = a.next_extended(deadline).expect("a ut_pex message");
        if id == pex_id {
            break PexMessage::decode(&payload).unwrap();
        }
    };
    let b_addr = SocketAddr::from(([127, 0, 0, 1], b_port));
    assert!(
        msg.added.iter().any(|(x, _)| *x == b_addr),
        "{msg:?} lacks {b_addr}"
    );
    // libtorrent (2.0) may list A's own listen address back to A (it
    // dials the `p` it was told, and our listener's backlog completes the
    // TCP connect), so whoever consumes PEX must skip its own addresses.
    // Our builder never does that: fed libtorrent's list, it leaves A out.
    let a_addr = SocketAddr::from(([127, 0, 0, 1], a_port));
    let mut diff = bittern_wire::PexDiff::new(SocketAddr::from(([127, 0, 0, 1], 1)));
    diff.add_own_addr(a_addr);
    let ours = diff
        .build(Instant::now(), &msg.added)
        .expect("something to send");
    assert!(ours.added.iter().all(|(x, _)| *x != a_addr));
    assert!(ours.added.iter().any(|(x, _)| *x == b_addr));
    assert_eq!(msg.overflow, 0);
    // our encoder writes what libtorrent wrote, up to key order/empties
    assert_eq!(PexMessage::decode(&msg.encode()), Ok(msg));
    drop(b);
}

const LT_MAGNET_SCRIPT: &str = r#"
import hashlib, sys, time, libtorrent as lt
ses = lt.session({
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
    "enable_natpmp": False, "listen_interfaces": "127.0.0.1:0",
    "outgoing_interfaces": "127.0.0.1", "enable_outgoing_utp": False,
    "enable_incoming_utp": False, "allow_multiple_connections_per_ip": True,
    # plaintext (pe_disabled = 2): this test speaks the unencrypted protocol
    "out_enc_policy": 2, "in_enc_policy": 2,
})
atp = lt.parse_magnet_uri(sys.argv[1])
atp.save_path = sys.argv[2]
atp.flags &= ~lt.torrent_flags.auto_managed
atp.flags &= ~lt.torrent_flags.paused
h = ses.add_torrent(atp)
h.connect_peer(("127.0.0.1", int(sys.argv[3])))
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not h.status().has_metadata:
    time.sleep(0.05)
if not h.status().has_metadata:
    print("no metadata", flush=True)
    sys.exit(1)
ti = h.torrent_file()
info = ti.info_section() if hasattr(ti, "info_section") else ti.metadata()
print(hashlib.sha1(bytes(info)).hexdigest(), len(info), flush=True)
"#;

#[test]
fn libtorrent_fetches_metadata_we_serve() {
    if !have_tool("libtorrent") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = big_torrent(dir.path(), 1100);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let magnet = bittern_wire::Magnet {
        info_hash: Some(m.info_hash),
        ..bittern_wire::Magnet::default()
    };
    let mut child = Guard(
        Command::new(PYTHON)
            .args(["-c", LT_MAGNET_SCRIPT, &magnet.to_uri()])
            .arg(dir.path())
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // accept libtorrent's connection (bounded wait)
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "libtorrent never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut c = Conn { s, buf: Vec::new() };
    let mut theirs = [0u8; 68];
    c.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.s.read_exact(&mut theirs).unwrap();
    c.s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(Handshake::decode(&theirs).unwrap().info_hash, m.info_hash);
    c.s.write_all(&Handshake::new(m.info_hash, PeerId::generate(b"-BT0100-")).encode())
        .unwrap();
    let ours = ExtensionHandshake {
        metadata_size: Some(m.info_bytes.len() as u64),
        ..ExtensionHandshake::with_all_extensions()
    };
    c.send_ext(0, &ours.encode());
    // answer every ut_metadata request until libtorrent has the metadata
    // and hangs up
    let mut lt_meta = None;
    let mut served = 0;
    while let Some((id, payload)) = c.next_extended(deadline) {
        if id == 0 {
            lt_meta = ExtensionHandshake::decode(&payload)
                .unwrap()
                .id_for(Extension::UtMetadata);
            continue;
        }
        if Extension::from_local_id(id) != Some(Extension::UtMetadata) {
            continue;
        }
        let MetadataMessage::Request { piece } = MetadataMessage::decode(&payload).unwrap() else {
            panic!("libtorrent sent a non-request");
        };
        let mut out = Vec::new();
        MetadataMessage::answer(&m.info_bytes, piece).encode(&mut out);
        c.send_ext(lt_meta.expect("ut_metadata id before requests"), &out);
        served += 1;
    }
    let mut out = String::new();
    if let Some(o) = child.0.stdout.as_mut() {
        o.read_to_string(&mut out).unwrap();
    }
    assert_eq!(
        out.trim(),
        format!("{} {}", m.info_hash.to_hex(), m.info_bytes.len()),
        "served {served} pieces"
    );
    assert!(served >= 2);
}

#[test]
fn libtorrent_dials_a_peer_from_our_pex_message() {
    if !have_tool("libtorrent") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (torrent, m) = big_torrent(dir.path(), 1100);
    let lt = start_lt(&torrent, dir.path());
    // a peer nobody but our PEX message names
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap();
    target.set_nonblocking(true).unwrap();

    let (mut c, _) = Conn::open(
        lt.port,
        m.info_hash,
        &ExtensionHandshake::with_all_extensions(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let (id, payload) = c.next_extended(deadline).expect("extension handshake");
    assert_eq!(id, 0);
    let lt_pex = ExtensionHandshake::decode(&payload)
        .unwrap()
        .id_for(Extension::UtPex)
        .expect("ut_pex");
    let mut diff = bittern_wire::PexDiff::new(c.s.local_addr().unwrap());
    let msg = diff
        .build(
            Instant::now(),
            &[(
                target_addr,
                bittern_wire::PexFlags {
                    reachable: true,
                    ..Default::default()
                },
            )],
        )
        .unwrap();
    c.send_ext(lt_pex, &msg.encode());
    loop {
        match target.accept() {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "libtorrent never dialled the PEX peer"
                );
                // keep our connection drained so libtorrent keeps it
                let _ = c.next_extended(Instant::now() + Duration::from_millis(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}
