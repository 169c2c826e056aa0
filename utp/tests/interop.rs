//! Interop with libtorrent 2.0.x (Debian's python3-libtorrent) over uTP
//! only, on 127.0.0.1. libtorrent has TCP disabled both ways, so nothing
//! can fall back; its peer flags must show the uTP bit. The BitTorrent side
//! here is a minimal hand-written peer (handshake, bitfield, interested,
//! unchoke, request, piece) — enough to move and check real pieces.
//!
//! Skipped loudly when libtorrent is missing, failed under
//! `BITTERN_REQUIRE_INTEROP=1`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_utp::{Multiplexer, MuxConfig, Transmit, UtpSocket, UtpStream};
use sha1::{Digest, Sha1};

const PYTHON: &str = "/usr/bin/python3";
const BLOCK: usize = 16 * 1024;

fn libtorrent_available() -> bool {
    bittern_testkit::libtorrent::available()
}

/// The libtorrent process; killed on drop so a failing test leaves nothing.
struct Partner {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Partner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Ready {
    port: u16,
    info_hash: [u8; 20],
    piece_len: usize,
    hashes: Vec<[u8; 20]>,
}

fn hex20(s: &str) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex from the script");
    }
    out
}

impl Partner {
    fn spawn(args: &[&str]) -> Self {
        let script = bittern_testkit::libtorrent::script("lt_utp.py");
        let mut child = Command::new(PYTHON)
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self, prefix: &str) -> Vec<String> {
        let mut l = String::new();
        loop {
            l.clear();
            let n = self.stdout.read_line(&mut l).expect("read partner stdout");
            assert!(n > 0, "partner exited before printing {prefix}");
            if l.starts_with(prefix) {
                return l.split_whitespace().skip(1).map(str::to_owned).collect();
            }
        }
    }

    fn ready(&mut self) -> Ready {
        let f = self.line("READY");
        Ready {
            port: f[0].parse().expect("port"),
            info_hash: hex20(&f[1]),
            piece_len: f[2].parse().expect("piece length"),
            hashes: f[3..].iter().map(|h| hex20(h)).collect(),
        }
    }
}

fn payload(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let mut x = 0x1234_5678_9abc_def1u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let path = dir.join("payload.bin");
    std::fs::write(&path, &data).expect("write payload");
    (path, data)
}

fn handshake(s: &mut UtpStream, info_hash: &[u8; 20]) -> io::Result<()> {
    let mut hs = Vec::with_capacity(68);
    hs.push(19);
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0; 8]);
    hs.extend_from_slice(info_hash);
    hs.extend_from_slice(b"-BT0001-utpinterop01");
    s.write_all(&hs)?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)?;
    assert_eq!(&theirs[..20], &hs[..20], "handshake protocol string");
    assert_eq!(&theirs[28..48], info_hash, "handshake info hash");
    Ok(())
}

/// One message: `None` for keep-alive, else (id, payload).
fn read_msg(s: &mut UtpStream) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Ok(None);
    }
    assert!(len <= BLOCK + 13 || len < 1 << 20, "message of {len} bytes");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let id = body.remove(0);
    Ok(Some((id, body)))
}

fn write_msg(s: &mut UtpStream, id: u8, payload: &[u8]) -> io::Result<()> {
    let mut m = Vec::with_capacity(5 + payload.len());
    m.extend_from_slice(&(payload.len() as u32 + 1).to_be_bytes());
    m.push(id);
    m.extend_from_slice(payload);
    s.write_all(&m)
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize
}

/// Interested, wait for unchoke, then request every block with at most 64
/// outstanding; returns the assembled bytes and the time since the unchoke.
fn download(s: &mut UtpStream, r: &Ready, len: usize) -> io::Result<(Vec<u8>, Duration)> {
    write_msg(s, 2, &[])?;
    loop {
        if let Some((1, _)) = read_msg(s)? {
            break;
        }
    }
    let unchoked = Instant::now();
    let mut blocks = Vec::new();
    for piece in 0..r.hashes.len() {
        let plen = r.piece_len.min(len - piece * r.piece_len);
        for begin in (0..plen).step_by(BLOCK) {
            blocks.push([piece, begin, BLOCK.min(plen - begin)]);
        }
    }
    let mut got = vec![0u8; len];
    let (mut next, mut outstanding) = (0, 0);
    while next < blocks.len() || outstanding > 0 {
        while next < blocks.len() && outstanding < 64 {
            let p: Vec<u8> = blocks[next]
                .iter()
                .flat_map(|&v| (v as u32).to_be_bytes())
                .collect();
            write_msg(s, 6, &p)?;
            next += 1;
            outstanding += 1;
        }
        if let Some((7, b)) = read_msg(s)? {
            let at = u32_at(&b, 0) * r.piece_len + u32_at(&b, 4);
            got[at..at + b.len() - 8].copy_from_slice(&b[8..]);
            outstanding -= 1;
        }
    }
    Ok((got, unchoked.elapsed()))
}

fn check_pieces(got: &[u8], data: &[u8], r: &Ready) {
    for (i, want) in r.hashes.iter().enumerate() {
        let piece = &got[i * r.piece_len..data.len().min((i + 1) * r.piece_len)];
        assert_eq!(&Sha1::digest(piece)[..], want, "piece {i} fails its SHA-1");
    }
    assert!(got == data, "bytes differ from the file");
}

#[test]
fn libtorrent_seeds_and_bittern_downloads_every_piece_over_utp() {
    if !libtorrent_available() {
        return;
    }
    // BITTERN_UTP_INTEROP_MIB=256 with --release for a throughput figure.
    let mib = std::env::var("BITTERN_UTP_INTEROP_MIB")
        .ok()
        .and_then(|v| v.parse().ok());
    lt_seed_download(mib.unwrap_or(8) << 20, |addr| {
        UtpStream::connect(addr, Duration::from_secs(10))
    });
}

/// The same through a lossy socket on our side: about 1 in 25 datagrams we
/// receive and 1 in 20 of the data packets we send are dropped, so
/// libtorrent must act on our selective ACKs and we on its retransmissions.
/// libtorrent gives a connection up when one packet is lost 3 times
/// (`utp_num_resends`, counting lost ACKs), so the shim drops no ACKs and no
/// packet more than twice: failures here are ours.
#[test]
fn libtorrent_seeds_through_a_lossy_socket_and_every_piece_still_arrives() {
    if !libtorrent_available() {
        return;
    }
    let udp = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
    // Without big buffers the kernel adds its own (bursty) drops, and
    // libtorrent gives a connection up after 3 losses of one packet.
    bittern_utp::tune_socket(&udp, bittern_utp::SOCKET_BUFFER);
    udp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let lossy = Arc::new(Lossy {
        udp: udp.clone(),
        sent: AtomicUsize::new(0),
        sacks: AtomicUsize::new(0),
        drops: Default::default(),
    });
    let mux = Multiplexer::new(lossy.clone(), udp.local_addr().ok(), MuxConfig::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (udp, mux, stop) = (udp.clone(), mux.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            // libtorrent drops a connection after 3 lost transmissions of one
            // packet (utp_num_resends), so never drop the same one 3 times.
            let mut drops = std::collections::HashMap::<u16, u32>::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok((len, from)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if rng.is_multiple_of(25) {
                    if let Ok(p) = bittern_utp::Packet::decode(&buf[..len]) {
                        let n = drops.entry(p.header.seq_nr).or_default();
                        *n += 1;
                        if *n <= 2 {
                            continue;
                        }
                    }
                }
                mux.handle_datagram(from, &buf[..len]);
                mux.flush();
            }
        })
    };
    lt_seed_download(4 << 20, |addr| mux.connect(addr, Duration::from_secs(10)));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let sacks = lossy.sacks.load(Ordering::Relaxed);
    eprintln!(
        "lossy: {} datagrams sent, {sacks} with a selective ACK",
        lossy.sent.load(Ordering::Relaxed)
    );
    assert!(sacks > 0, "the loss should have produced selective ACKs");
}

struct Lossy {
    udp: Arc<UdpSocket>,
    sent: AtomicUsize,
    sacks: AtomicUsize,
    drops: std::sync::Mutex<std::collections::HashMap<u16, u32>>,
}

impl Transmit for Lossy {
    fn send_to(&self, d: &[u8], to: SocketAddr) -> io::Result<()> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        let p = bittern_utp::Packet::decode(d).expect("we send valid packets");
        if p.sack.is_some() {
            self.sacks.fetch_add(1, Ordering::Relaxed);
        }
        // Only our data (the requests), and one packet at most twice: a
        // lost ACK makes libtorrent count a transmission as failed too.
        if n.is_multiple_of(20) && p.header.ty == bittern_utp::PacketType::Data {
            let mut drops = self.drops.lock().expect("drop table");
            let count = drops.entry(p.header.seq_nr).or_default();
            *count += 1;
            if *count <= 2 {
                return Ok(());
            }
        }
        self.udp.send_to(d, to).map(|_| ())
    }
}

/// libtorrent seeds `size` (+ a ragged tail) bytes; `connect` opens our side;
/// every piece is downloaded and checked, and libtorrent must flag uTP.
fn lt_seed_download(size: usize, connect: impl Fn(SocketAddr) -> io::Result<UtpStream>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data) = payload(dir.path(), size + 12_345);
    let mut lt = Partner::spawn(&["seed", path.to_str().expect("utf-8 path"), "60"]);
    let r = lt.ready();
    assert_eq!(r.hashes.len(), data.len().div_ceil(r.piece_len));

    let addr: SocketAddr = ([127, 0, 0, 1], r.port).into();
    // libtorrent reports the torrent seeding a moment before it attaches
    // peers; until then it closes connections with reason 2
    // (torrent_removed). Retry a few times.
    let mut attempt = 0;
    let mut s = loop {
        attempt += 1;
        let mut s = connect(addr).expect("utp connect to lt");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        match handshake(&mut s, &r.info_hash) {
            Ok(()) => break s,
            Err(e) if attempt < 5 => {
                eprintln!("handshake attempt {attempt} failed ({e}), retrying");
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => {
                drop(lt.stdin.take()); // let libtorrent print its alerts first
                let peers = lt.line("PEERS");
                panic!("handshake with libtorrent failed: {e} (partner: {peers:?})");
            }
        }
    };
    let (got, elapsed) = download(&mut s, &r, data.len()).expect("download from libtorrent");
    check_pieces(&got, &data, &r);
    eprintln!(
        "lt -> bittern over utp: {} bytes in {:.2} s after the unchoke",
        data.len(),
        elapsed.as_secs_f64()
    );
    drop(lt.stdin.take());
    let peers = lt.line("PEERS");
    assert_eq!(
        peers[0], "utp=1",
        "libtorrent did not flag the peer as uTP: {peers:?}"
    );
    assert_eq!(peers[1], "tcp=0");
    drop(s);
}

#[test]
fn libtorrent_downloads_from_a_bittern_utp_listener() {
    if !libtorrent_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mib = std::env::var("BITTERN_UTP_INTEROP_MIB")
        .ok()
        .and_then(|v| v.parse().ok());
    let (path, data) = payload(dir.path(), (mib.unwrap_or(8) << 20) + 777);
    let mut lt = Partner::spawn(&[
        "leech",
        path.to_str().expect("utf-8 path"),
        out.to_str().expect("utf-8 path"),
        "60",
    ]);
    let r = lt.ready();
    let listener = UtpSocket::bind("127.0.0.1:0").expect("bind");
    let mut stdin = lt.stdin.take().expect("stdin");
    writeln!(stdin, "PEER {}", listener.local_addr()).unwrap();
    stdin.flush().unwrap();

    let mut s = listener
        .accept_timeout(Duration::from_secs(15))
        .expect("libtorrent connects in");
    let connected = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let info_hash = r.info_hash;
    let piece_len = r.piece_len;
    let served = data.clone();
    let server = std::thread::spawn(move || -> io::Result<usize> {
        handshake(&mut s, &info_hash)?;
        let pieces = served.len().div_ceil(piece_len);
        let mut bitfield = vec![0u8; pieces.div_ceil(8)];
        for i in 0..pieces {
            bitfield[i / 8] |= 0x80 >> (i % 8);
        }
        write_msg(&mut s, 5, &bitfield)?;
        write_msg(&mut s, 1, &[])?;
        let mut bytes = 0;
        loop {
            let msg = match read_msg(&mut s) {
                Ok(m) => m,
                Err(_) => return Ok(bytes), // libtorrent hung up when done
            };
            if let Some((6, b)) = msg {
                let (index, begin, len) = (u32_at(&b, 0), u32_at(&b, 4), u32_at(&b, 8));
                let at = index * piece_len + begin;
                let mut p = b[..8].to_vec();
                p.extend_from_slice(&served[at..at + len]);
                write_msg(&mut s, 7, &p)?;
                bytes += len;
            }
        }
    });
    let done = lt.line("DONE");
    eprintln!(
        "bittern -> lt over utp: {} bytes, done {:.2} s after libtorrent connected",
        data.len(),
        connected.elapsed().as_secs_f64()
    );
    assert_eq!(done[0], "utp=1", "libtorrent did not use uTP: {done:?}");
    assert_eq!(
        done[1], "progress=1.000",
        "libtorrent did not finish: {done:?}"
    );
    let downloaded = std::fs::read(out.join("payload.bin")).expect("libtorrent's file");
    assert!(downloaded == data, "libtorrent's copy differs");
    drop(lt);
    let served = server.join().expect("server thread").expect("serving");
    assert!(served >= data.len());
}

/// Transmission 3.00 (libutp) seeds; bittern dials its peer port over uTP
/// (it has no TCP, so this is uTP by construction) and downloads every
/// piece. Transmission cannot disable TCP, so it can only be tested this way
/// round without a bittern seeder that dials out.
#[test]
fn transmission_seeds_and_bittern_downloads_every_piece_over_utp() {
    if !libtorrent_available() {
        return; // the torrent is made with libtorrent
    }
    let present = Command::new("transmission-cli")
        .arg("--version")
        .output()
        .is_ok();
    if !bittern_testkit::require("transmission-cli (Debian transmission-cli)", present) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, data) = payload(dir.path(), (4 << 20) + 4321);
    let torrent = dir.path().join("t.torrent");
    let mut mk = Partner::spawn(&["make", path.to_str().unwrap(), torrent.to_str().unwrap()]);
    let r = mk.ready();
    drop(mk);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(
        conf.join("settings.json"),
        format!(
            r#"{{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
                "utp-enabled": true, "port-forwarding-enabled": false,
                "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1",
                "encryption": 0, "peer-port": {port}, "message-level": 1}}"#
        ),
    )
    .unwrap();
    let child = Command::new("transmission-cli")
        .arg("-g")
        .arg(&conf)
        .arg("-w")
        .arg(dir.path())
        .args(["-p", &port.to_string(), "-et"])
        .arg(&torrent)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn transmission-cli");
    let _guard = Killed(child);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (got, elapsed) = loop {
        // Transmission verifies the data before it talks to peers; until
        // then connects fail or the handshake is closed.
        let attempt = (|| -> io::Result<(Vec<u8>, Duration)> {
            let mut s = UtpStream::connect(addr, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(25)))?; // > one choker tick
            handshake(&mut s, &r.info_hash)?;
            download(&mut s, &r, data.len())
        })();
        match attempt {
            Ok(v) => break v,
            Err(e) if Instant::now() < deadline => {
                eprintln!("transmission not ready ({e}), retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("no uTP download from transmission: {e}"),
        }
    };
    check_pieces(&got, &data, &r);
    // Transmission unchokes on its 10 s choker tick; time from the unchoke.
    eprintln!(
        "transmission -> bittern over utp: {} bytes in {:.2} s after the unchoke",
        data.len(),
        elapsed.as_secs_f64()
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
