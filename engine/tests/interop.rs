//! Interop with real clients on 127.0.0.1: bittern leeching from a
//! libtorrent seeder, seeding to a libtorrent leecher, and seeding to
//! `aria2c` through the embedded tracker. Every transfer is checked byte for
//! byte against the source files.
//!
//! libtorrent runs in Debian's `/usr/bin/python3` (the only Python that can
//! import `python3-libtorrent`) through the scripts in `testkit/scripts/`,
//! which turn DHT, LSD, UPnP and NAT-PMP off and listen on 127.0.0.1 only.
//! A missing tool skips the test loudly, or fails it when
//! `BITTERN_REQUIRE_INTEROP=1`.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bittern_engine::{SeedGoal, SessionConfig, TorrentHandle, TorrentOptions, TorrentState};
use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_wire::{Bitfield, ExtensionHandshake, Message, Metainfo, MetainfoBuilder};

use crate::fake::{Got, Wire};
use crate::util::*;

pub(crate) const PYTHON: &str = "/usr/bin/python3";
pub(crate) const ARIA2C: &str = "/usr/bin/aria2c";

/// Files of odd sizes whose boundaries fall inside pieces, so the other
/// client's piece-to-file mapping is exercised too.
pub(crate) const FILES: &[(&str, u64)] = &[
    ("a.bin", 1_500_001),
    ("sub/b.bin", 700_000),
    ("sub/c.txt", 3),
    ("d.bin", 1_048_576 + 77),
];

/// Engine logs for debugging: `RUST_LOG=bittern_engine=debug`.
pub(crate) fn init_log() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// True when Debian's Python can import libtorrent.
pub(crate) fn have_libtorrent() -> bool {
    if !have_tool(PYTHON) {
        return false;
    }
    let ok = Command::new(PYTHON)
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    bittern_testkit::require(
        "python3-libtorrent (import libtorrent in /usr/bin/python3)",
        ok,
    )
}

pub(crate) fn script(name: &str) -> PathBuf {
    bittern_testkit::libtorrent::script(name)
}

/// Writes `.torrent` bytes for `meta` (optionally with an announce URL) to
/// `dir/<name>.torrent`; the re-parsed file must keep the info hash.
pub(crate) fn write_torrent(
    dir: &Path,
    meta: &Metainfo,
    announce: Option<&str>,
) -> (Metainfo, PathBuf) {
    let info = &meta.info;
    let mut b = MetainfoBuilder::new(info.name.clone())
        .piece_length(info.piece_length)
        .pieces(info.pieces.clone());
    b = if info.multi_file {
        b.files(info.files.iter().map(|f| (f.path.clone(), f.length)))
    } else {
        b.single_file(info.total_length())
    };
    if let Some(url) = announce {
        b = b.announce(url);
    }
    let bytes = b.build().unwrap();
    let parsed = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(parsed.info_hash, meta.info_hash);
    let path = dir.join(format!("{}.torrent", info.name));
    std::fs::write(&path, bytes).unwrap();
    (parsed, path)
}

/// A free TCP port on 127.0.0.1 (for clients that cannot take port 0).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed on drop; stdout lines arrive on a channel, stderr
/// goes to a log file shown when something fails.
pub(crate) struct Proc {
    name: &'static str,
    child: Child,
    pub(crate) lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name,
            child,
            lines,
            log,
        }
    }

    /// The rest of the first stdout line starting with `prefix`.
    pub(crate) fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                    eprintln!("{}: {line}", self.name);
                }
                Err(e) => self.fail(&format!("no {prefix:?} line ({e:?})")),
            }
        }
    }

    pub(crate) fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                self.fail("did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub(crate) fn fail(&self, why: &str) -> ! {
        panic!(
            "{}: {why}; last lines of {}:\n{}",
            self.name,
            self.log.display(),
            self.tail()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn python(script_name: &str, args: &[&OsStr]) -> Command {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script(script_name)).args(args);
    cmd
}

/// Waits for `state`, failing with the other client's log on error or
/// timeout.
pub(crate) fn wait_for(t: &TorrentHandle, state: TorrentState, limit: Duration, other: &Proc) {
    init_log();
    let start = Instant::now();
    loop {
        let s = t.status();
        if s.state == state {
            return;
        }
        if let TorrentState::Error(e) = &s.state {
            other.fail(&format!("bittern torrent failed: {e}"));
        }
        if start.elapsed() > limit {
            other.fail(&format!("bittern timed out waiting for {state:?}: {s:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn seed(
    session: &bittern_engine::Session,
    meta: &Metainfo,
    dir: &Path,
) -> TorrentHandle {
    let s = session
        .add_torrent(meta.clone(), dir, TorrentOptions::default())
        .unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    assert_eq!(s.status().pieces_have, meta.info.piece_count());
    s
}

#[test]
fn bittern_leeches_from_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(src.path(), "from_lt", FILES, 64 * 1024, 21);
    let (meta, torrent) = write_torrent(work.path(), &meta, None);

    let mut lt = Proc::spawn(
        "libtorrent seeder",
        python("lt_seed.py", &[torrent.as_os_str(), src.path().as_os_str()]),
        work.path().join("lt_seed.log"),
    );
    let port: u16 = lt
        .expect_line("PORT ", Duration::from_secs(30))
        .parse()
        .unwrap();

    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    wait_for(&l, TorrentState::Stopped, Duration::from_secs(60), &lt);
    let st = l.status();
    assert_eq!(st.have_bytes, meta.info.total_length());
    assert_eq!(st.hash_failures, 0);
    assert!(st.downloaded >= meta.info.total_length());
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    eprintln!(
        "libtorrent -> bittern: {} bytes in {:?}",
        meta.info.total_length(),
        start.elapsed()
    );
}

/// libtorrent listening on `[::1]` only; bittern, listening on `[::1]`
/// only too, is given that address and downloads everything over IPv6.
#[test]
fn bittern_leeches_from_libtorrent_over_ipv6_loopback() {
    if !crate::ipv6::have_ipv6_loopback() || !have_libtorrent() {
        return;
    }
    init_log();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(src.path(), "lt_v6", FILES, 64 * 1024, 24);
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let mut lt = Proc::spawn(
        "libtorrent seeder on [::1]",
        python(
            "lt_seed.py",
            &[
                torrent.as_os_str(),
                src.path().as_os_str(),
                OsStr::new("[::1]:0"),
            ],
        ),
        work.path().join("lt_seed6.log"),
    );
    let port: u16 = lt
        .expect_line("PORT ", Duration::from_secs(30))
        .parse()
        .unwrap();
    let v6 = std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST);
    let leecher = bittern_engine::Session::new(SessionConfig {
        listen: SocketAddr::new(v6, 0),
        ..config()
    })
    .unwrap();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::new(v6, port)],
        seed_goal: SeedGoal::Forever,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    let seen = wait_state_seeing_peers(&l, TorrentState::Seeding, Duration::from_secs(60));
    assert_eq!(
        seen.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
        vec![SocketAddr::new(v6, port)]
    );
    // Its extension handshake names the scripts' user agent.
    assert_eq!(seen[0].1.as_deref(), Some("bittern-interop-test"));
    assert!(l.status().downloaded >= meta.info.total_length());
    assert_eq!(l.status().hash_failures, 0);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
}

#[test]
fn bittern_seeds_to_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "to_lt.bin",
        &[("to_lt.bin", 4 * 1024 * 1024 + 4321)],
        256 * 1024,
        22,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let seeder = session();
    let s = seed(&seeder, &meta, src.path());

    let port = seeder.local_addr().port().to_string();
    let mut lt = Proc::spawn(
        "libtorrent leecher",
        python(
            "lt_leech.py",
            &[
                torrent.as_os_str(),
                dst.path().as_os_str(),
                OsStr::new(&port),
                OsStr::new("50"),
            ],
        ),
        work.path().join("lt_leech.log"),
    );
    let got: u64 = lt
        .expect_line("DONE ", Duration::from_secs(60))
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
    assert_uploaded(&s, meta.info.total_length());
    eprintln!(
        "bittern -> libtorrent: {} bytes in {:?} (bittern counted {} uploaded)",
        meta.info.total_length(),
        start.elapsed(),
        s.status().uploaded
    );
}

#[test]
fn bittern_seeds_to_aria2c_through_tracker() {
    if !have_tool(ARIA2C) {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let tracker = TrackerServer::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ServerConfig::default(),
    )
    .unwrap();
    let url = tracker.announce_url();
    let meta = make_torrent(src.path(), "to_aria2", FILES, 128 * 1024, 23);
    let (meta, torrent) = write_torrent(work.path(), &meta, Some(&url));

    let seeder = bittern_engine::Session::new(SessionConfig {
        announce: true,
        ..config()
    })
    .unwrap();
    let s = seed(&seeder, &meta, src.path());
    // aria2c gets peers only from its first announce, so the tracker must
    // know our seeder before aria2c starts.
    wait_for_seeder_on_tracker(&url, &meta);

    let mut cmd = Command::new(ARIA2C);
    cmd.args([
        "--no-conf=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--enable-peer-exchange=false",
        "--bt-enable-lpd=false",
        "--seed-time=0",
        "--bt-stop-timeout=60",
        "--summary-interval=0",
        "--check-integrity=true",
        "--console-log-level=warn",
        "--log-level=info",
    ])
    .arg(format!("--listen-port={}", free_port()))
    .arg(format!("--dir={}", dst.path().display()))
    .arg(format!(
        "--log={}",
        work.path().join("aria2c.log").display()
    ))
    .arg(&torrent);
    let mut aria = Proc::spawn("aria2c", cmd, work.path().join("aria2c.out"));
    let status = aria.wait(Duration::from_secs(60));
    if !status.success() {
        let log = std::fs::read_to_string(work.path().join("aria2c.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "aria2c.log (last lines, newest first):\n{}",
            tail.join("\n")
        );
        aria.fail(&format!("exited with {status}"));
    }
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    assert_uploaded(&s, meta.info.total_length());
    eprintln!(
        "bittern -> aria2c: {} bytes in {:?} (bittern counted {} uploaded)",
        meta.info.total_length(),
        start.elapsed(),
        s.status().uploaded
    );
    drop(seeder);
    tracker.shutdown();
}

/// Polls the tracker's scrape until it counts one seeder for `meta`.
pub(crate) fn wait_for_seeder_on_tracker(url: &str, meta: &Metainfo) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let cfg = bittern_tracker::ClientConfig::default();
    loop {
        let seeders = bittern_tracker::scrape(url, &[meta.info_hash], &cfg)
            .ok()
            .and_then(|r| r.first().map(|(_, st)| st.complete))
            .unwrap_or(0);
        if seeders >= 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the seeder never registered with the tracker"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The tests' temp dirs (one helper for every test module).
pub(crate) use crate::util::tempdir;

/// What libtorrent and aria2c put on the wire, scripted so it is checked
/// without them: the extension handshake before the piece set (libtorrent),
/// HAVE NONE then later BITFIELDs and HAVE ALL in place of batches of HAVEs
/// (aria2c). bittern must take the late sets as updates and download.
#[test]
fn late_piece_sets_are_updates() {
    init_log();
    let (src, dst) = (tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "late.bin",
        &[("late.bin", 20 * 16384 + 100)],
        32 * 1024,
        24,
    );
    let data = std::fs::read(src.path().join("late.bin")).unwrap();
    let pieces = meta.info.piece_count();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (info_hash, piece_len) = (meta.info_hash, meta.info.piece_length as usize);
    let peer = std::thread::spawn(move || {
        let mut w = Wire::accept(&listener, info_hash).unwrap();
        let ext = ExtensionHandshake {
            v: Some("scripted".into()),
            ..ExtensionHandshake::default()
        };
        w.send(Message::Extended {
            id: 0,
            payload: &ext.encode(),
        })
        .unwrap();
        w.send(Message::HaveNone).unwrap();
        w.send(Message::KeepAlive).unwrap();
        let mut half = Bitfield::new(pieces);
        for i in 0..pieces / 2 {
            half.set(i);
        }
        w.send(Message::Bitfield(half.as_bytes())).unwrap();
        w.send(Message::Have(pieces as u32 - 1)).unwrap();
        w.send(Message::HaveAll).unwrap();
        w.send(Message::Unchoke).unwrap();
        let mut served = 0usize;
        while let Ok(got) = w.recv() {
            if let Got::Request {
                index,
                begin,
                length,
            } = got
            {
                let at = index as usize * piece_len + begin as usize;
                let block = &data[at..at + length as usize];
                w.send(Message::Piece {
                    index,
                    begin,
                    data: block,
                })
                .unwrap();
                served += length as usize;
            }
        }
        served
    });
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![addr],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(30));
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    drop(leecher);
    let served = peer.join().unwrap();
    assert!(served as u64 >= meta.info.total_length(), "served {served}");
}

/// The seeder counted at least the whole torrent as uploaded, also when
/// the leecher hung up right after finishing.
pub(crate) fn assert_uploaded(s: &bittern_engine::TorrentHandle, total: u64) {
    let start = std::time::Instant::now();
    while s.status().uploaded < total && start.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        s.status().uploaded >= total,
        "uploaded {} of {total}",
        s.status().uploaded
    );
}

pub(crate) const TRANSMISSION: &str = "/usr/bin/transmission-cli";

/// transmission-cli with its stdout unbuffered: it writes its status
/// line with `\r` and no flush, so to a file the line that says
/// "Seeding" arrives only when stdio's 4 KiB buffer fills, some 40 s
/// later (more under load), and tests that wait for it time out.
pub(crate) fn transmission_cli() -> Command {
    let mut c = Command::new("/usr/bin/stdbuf");
    c.args(["-o0", TRANSMISSION]);
    c
}
pub(crate) const MKTORRENT: &str = "/usr/bin/mktorrent";

/// A process killed on drop whose stdout and stderr go to files.
pub(crate) struct Logged {
    pub(crate) child: Child,
    pub(crate) out: PathBuf,
    pub(crate) err: PathBuf,
}

impl Logged {
    /// The last 2,000 bytes of its output (`\r`-separated status lines
    /// made readable) and its log.
    pub(crate) fn tail(&self) -> String {
        let read = |p: &Path| {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            let start = t.len().saturating_sub(2000);
            let start = (start..t.len())
                .find(|&i| t.is_char_boundary(i))
                .unwrap_or(t.len());
            t[start..].replace('\r', "\n")
        };
        format!("stdout:\n{}\nstderr:\n{}", read(&self.out), read(&self.err))
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `transmission-cli` 3.00 seeding `torrent` from `dir` on 127.0.0.1:`port`
/// as issue 17 found it: a fresh config with DHT, LPD, PEX, uTP and port
/// forwarding off, encryption tolerated (plain preferred). Returns once it
/// has verified the data and says it is seeding.
fn transmission_seeder(torrent: &Path, dir: &Path, port: u16, work: &Path) -> Logged {
    transmission_seeder_with(torrent, dir, port, work, false)
}

/// [`transmission_seeder`], with Local Peer Discovery (BEP 14) on when
/// `lpd` (only ever inside a private network namespace).
pub(crate) fn transmission_seeder_with(
    torrent: &Path,
    dir: &Path,
    port: u16,
    work: &Path,
    lpd: bool,
) -> Logged {
    let conf = work.join("tr-conf");
    std::fs::create_dir_all(&conf).unwrap();
    let settings = format!(
        r#"{{"dht-enabled": false, "lpd-enabled": {lpd}, "pex-enabled": false,
 "utp-enabled": false, "port-forwarding-enabled": false,
 "bind-address-ipv4": "127.0.0.1", "bind-address-ipv6": "::1", "encryption": 0,
 "rename-partial-files": false, "peer-port": {port}, "download-dir": "{dir}",
 "incomplete-dir-enabled": false, "speed-limit-down-enabled": false,
 "speed-limit-up-enabled": false, "ratio-limit-enabled": false,
 "start-added-torrents": true}}"#,
        dir = dir.display()
    );
    std::fs::write(conf.join("settings.json"), settings).unwrap();
    let out = work.join("tr.out");
    let err = work.join("tr.err");
    let child = transmission_cli()
        .arg("-g")
        .arg(&conf)
        .arg("-w")
        .arg(dir)
        .args(["-p", &port.to_string(), "-et", "-M", "-D", "-U"])
        .arg(torrent)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start transmission-cli: {e}"));
    let t = Logged { child, out, err };
    let start = Instant::now();
    while !std::fs::read_to_string(&t.out)
        .unwrap_or_default()
        .contains("Seeding")
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "transmission-cli did not start seeding; {}",
            t.tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t
}

/// Issue 17: with transmission-cli seeding 64 MiB (256 KiB pieces, torrent
/// by mktorrent), bittern stopped one block short and waited for ever.
#[test]
fn bittern_leeches_from_transmission() {
    let present = |tool: &str| {
        bittern_testkit::require(
            &format!("{tool} (Debian transmission-cli, mktorrent)"),
            Path::new(tool).exists(),
        )
    };
    if !present(TRANSMISSION) || !present(MKTORRENT) {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let size: usize = 64 << 20;
    let file = src.path().join("t64.bin");
    {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut data = vec![0u8; size];
        rng.fill(&mut data[..]);
        std::fs::write(&file, &data).unwrap();
    }
    let torrent = work.path().join("t64.torrent");
    let made = Command::new(MKTORRENT)
        .args(["-l", "18", "-o"])
        .arg(&torrent)
        .arg(&file)
        .output()
        .unwrap();
    assert!(made.status.success(), "mktorrent: {made:?}");
    let meta = Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    assert_eq!(meta.info.piece_count(), 256);

    let port = free_port();
    let tr = transmission_seeder(&torrent, src.path(), port, work.path());
    let leecher = session();
    let opts = TorrentOptions {
        peers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst.path(), opts).unwrap();
    // Transmission unchokes at its next 10 s choke round.
    let limit = Duration::from_secs(120);
    let begun = Instant::now();
    loop {
        let s = l.status();
        if s.state == TorrentState::Stopped {
            break;
        }
        assert!(
            !matches!(s.state, TorrentState::Error(_)) && begun.elapsed() < limit,
            "bittern did not finish: {s:?}; transmission-cli {}",
            tr.tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = l.status();
    assert_eq!(st.have_bytes, size as u64);
    assert_eq!(st.pieces_have, 256);
    assert_eq!(st.hash_failures, 0);
    assert_same(src.path(), dst.path(), &meta.info.file_paths());
    eprintln!(
        "transmission-cli -> bittern: {size} bytes in {:?}",
        start.elapsed()
    );
}

/// A libtorrent leecher downloads everything from a bittern super-seeder
/// (BEP 16), which shows it one piece at a time: alone in the swarm, the
/// next piece comes once it announced the last.
#[test]
fn bittern_super_seeds_to_libtorrent() {
    if !have_libtorrent() {
        return;
    }
    init_log();
    let start = Instant::now();
    let (src, dst, work) = (tempdir(), tempdir(), tempdir());
    let meta = make_torrent(
        src.path(),
        "ss_lt.bin",
        &[("ss_lt.bin", 2 * 1024 * 1024 + 99)],
        128 * 1024,
        23,
    );
    let (meta, torrent) = write_torrent(work.path(), &meta, None);
    let seeder = session();
    let opts = TorrentOptions {
        super_seed: true,
        ..TorrentOptions::default()
    };
    let s = seeder.add_torrent(meta.clone(), src.path(), opts).unwrap();
    wait_state(&s, TorrentState::Seeding, Duration::from_secs(20));
    let port = seeder.local_addr().port().to_string();
    let mut lt = Proc::spawn(
        "libtorrent leecher (super-seeded)",
        python(
            "lt_leech.py",
            &[
                torrent.as_os_str(),
                dst.path().as_os_str(),
                OsStr::new(&port),
                OsStr::new("60"),
            ],
        ),
        work.path().join("lt_leech.log"),
    );
    let got: u64 = lt
        .expect_line("DONE ", Duration::from_secs(70))
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
    eprintln!(
        "bittern super-seeder -> libtorrent: {} bytes in {:?}",
        meta.info.total_length(),
        start.elapsed()
    );
}
