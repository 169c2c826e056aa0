//! `bittern swarm`: a self-contained loopback demonstration and benchmark.
//!
//! Random data in a temporary directory, a torrent announcing to the
//! embedded tracker, one seeder session and N leecher sessions in this
//! process (all on 127.0.0.1, ephemeral ports), a live display, then a
//! byte-for-byte check of every leecher's copy and the throughput.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use bittern_engine::{
    SeedGoal, Session, SessionConfig, TorrentError, TorrentHandle, TorrentOptions, TorrentState,
    TorrentStatus,
};
use bittern_tracker::server::ServerConfig;
use bittern_wire::{Metainfo, MetainfoBuilder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::args::{PieceLength, SwarmArgs};
use crate::create::auto_piece_length;
use crate::exit::{coded, Code, WithCode};
use crate::progress::{self, Display};
use crate::run::open_session;
use crate::signals::Stop;
use crate::tracker;
use crate::units::{format_duration, format_size};

const NAME: &str = "swarm.bin";
const CHUNK: usize = 1 << 20;

fn loopback_config() -> SessionConfig {
    SessionConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..SessionConfig::default()
    }
}

/// Writes `size` random bytes to `path`.
fn write_random(path: &Path, size: u64) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(CHUNK, file);
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    let mut buf = vec![0u8; CHUNK];
    let bar = progress::bytes_bar(false, size, "generating");
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        rng.fill(&mut buf[..n]);
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
        bar.set(size - left);
    }
    bar.finish();
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Whether the files at `a` and `b` hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> anyhow::Result<bool> {
    let open = |p: &Path| File::open(p).with_context(|| format!("cannot open {}", p.display()));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn make_torrent(
    src: &Path,
    size: u64,
    piece_length: u64,
    announce: String,
) -> anyhow::Result<Metainfo> {
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("bittern-swarm-hash-{i}"))
        .build()
        .context("cannot start hashing threads")?;
    let bar = progress::bytes_bar(false, size, "hashing");
    let hashes = bittern_storage::hash_files(
        &[(src.to_path_buf(), size)],
        piece_length,
        &pool,
        &|done, _| bar.set((done as u64 * piece_length).min(size)),
    )
    .context("hashing failed")?;
    bar.finish();
    MetainfoBuilder::new(NAME)
        .single_file(size)
        .piece_length(piece_length)
        .pieces(hashes)
        .announce(announce)
        .created_by(concat!("bittern/", env!("CARGO_PKG_VERSION")))
        .build_metainfo()
        .context("cannot build the torrent")
}

fn is_complete(s: &TorrentStatus) -> bool {
    s.wanted_bytes > 0 && s.have_bytes >= s.wanted_bytes
}

fn failed(s: &TorrentStatus) -> Option<&TorrentError> {
    match &s.state {
        TorrentState::Error(e) => Some(e),
        _ => None,
    }
}

/// Everything that runs, so that it can be stopped whatever happens.
struct Swarm {
    seeder: Session,
    leechers: Vec<Session>,
}

impl Swarm {
    fn shutdown(mut self) {
        // Stop the leechers in parallel: each waits for its stop announce.
        std::thread::scope(|s| {
            for l in &mut self.leechers {
                s.spawn(|| l.shutdown());
            }
            s.spawn(|| self.seeder.shutdown());
        });
    }
}

/// Runs `bittern swarm`.
///
/// # Errors
/// A leecher with wrong data ([`Code::BadData`]), a stalled swarm, or any
/// setup failure.
pub fn run(args: &SwarmArgs, stop: &Stop) -> anyhow::Result<Code> {
    if args.size == 0 {
        return Err(coded(Code::Usage, anyhow!("--size must be above zero")));
    }
    let piece_length = match args.piece_length {
        PieceLength::Auto => auto_piece_length(args.size),
        PieceLength::Fixed(n) => n,
    };
    let tmp = tempfile::Builder::new()
        .prefix("bittern-swarm-")
        .tempdir()
        .context("cannot create a temporary directory")
        .code(Code::Filesystem)?;
    let seed_dir = tmp.path().join("seeder");
    std::fs::create_dir_all(&seed_dir).context("cannot create the seeder directory")?;
    let src = seed_dir.join(NAME);
    progress::note(&format!(
        "swarm: {} of random data, {} leechers, {} pieces of {}, in {}",
        format_size(args.size),
        args.leechers,
        args.size.div_ceil(piece_length),
        format_size(piece_length),
        tmp.path().display()
    ));
    write_random(&src, args.size)?;

    let server_config = ServerConfig {
        interval: Duration::from_secs(10),
        min_interval: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let server = tracker::start(SocketAddr::from(([127, 0, 0, 1], 0)), server_config)?;
    let m = make_torrent(&src, args.size, piece_length, server.announce_url())?;

    let seeder = open_session(loopback_config())?;
    let seeder_addr = seeder.local_addr();
    let seed = seeder
        .add_torrent(m.clone(), &seed_dir, TorrentOptions::default())
        .context("cannot start the seeder")?;
    let mut swarm = Swarm {
        seeder,
        leechers: Vec::new(),
    };
    let result = drive(&mut swarm, &seed, seeder_addr, &m, tmp.path(), args, stop);
    swarm.shutdown();
    server.shutdown();
    let outcome = result?;
    let Some(times) = outcome else {
        progress::note("swarm interrupted");
        return Ok(Code::Interrupted);
    };
    report(&times, &m, tmp.path(), &src, &seed, args)
}

/// Per leecher: its handle and when it completed.
type Finish = Vec<(TorrentHandle, Duration)>;

/// Starts the leechers once the seeder is ready and waits for them all.
/// `Ok(None)` when interrupted.
fn drive(
    swarm: &mut Swarm,
    seed: &TorrentHandle,
    seeder_addr: SocketAddr,
    m: &Metainfo,
    root: &Path,
    args: &SwarmArgs,
    stop: &Stop,
) -> anyhow::Result<Option<Finish>> {
    let started = Instant::now();
    loop {
        let s = seed.status();
        if let Some(e) = failed(&s) {
            return Err(anyhow!("seeder failed: {e}"));
        }
        if s.state == TorrentState::Seeding {
            break;
        }
        if s.state != TorrentState::Checking {
            return Err(anyhow!("seeder is {:?} instead of seeding", s.state));
        }
        if stop.requested() {
            return Ok(None);
        }
        if started.elapsed() > args.stall_timeout {
            return Err(anyhow!(
                "seeder still checking after {:?}",
                args.stall_timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut handles = Vec::new();
    for k in 0..args.leechers {
        let dir = root.join(format!("leecher-{}", k + 1));
        std::fs::create_dir_all(&dir).context("cannot create a leecher directory")?;
        let session = open_session(loopback_config())?;
        let options = TorrentOptions {
            seed_goal: SeedGoal::Forever,
            peers: vec![seeder_addr],
            ..TorrentOptions::default()
        };
        let h = session
            .add_torrent(m.clone(), dir, options)
            .context("cannot start a leecher")?;
        swarm.leechers.push(session);
        handles.push(h);
    }
    let start = Instant::now();
    let mut labels: Vec<String> = (1..=args.leechers)
        .map(|k| format!("leecher {k}"))
        .collect();
    labels.push("seeder".into());
    let mut display = Display::new(labels);
    let mut done: Vec<Option<Duration>> = vec![None; handles.len()];
    let (mut last_have, mut last_change) = (0u64, Instant::now());
    loop {
        let mut statuses: Vec<TorrentStatus> = handles.iter().map(TorrentHandle::status).collect();
        for (i, s) in statuses.iter().enumerate() {
            if let Some(e) = failed(s) {
                display.finish();
                return Err(anyhow!("leecher {} failed: {e}", i + 1));
            }
            if done[i].is_none() && is_complete(s) {
                done[i] = Some(start.elapsed());
            }
        }
        let have: u64 = statuses.iter().map(|s| s.have_bytes).sum();
        statuses.push(seed.status());
        display.update(&statuses, false);
        if done.iter().all(Option::is_some) {
            display.update(&statuses, true);
            display.finish();
            break;
        }
        if stop.requested() {
            display.finish();
            return Ok(None);
        }
        if have != last_have {
            (last_have, last_change) = (have, Instant::now());
        } else if last_change.elapsed() > args.stall_timeout {
            display.finish();
            return Err(anyhow!(
                "swarm stalled: no progress for {} ({} of {} bytes)",
                format_duration(args.stall_timeout),
                have,
                args.size * u64::from(args.leechers)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(
        handles
            .into_iter()
            .zip(done)
            .map(|(h, d)| (h, d.unwrap_or_default()))
            .collect(),
    ))
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-6)
}

fn report(
    times: &Finish,
    m: &Metainfo,
    root: &Path,
    src: &Path,
    seed: &TorrentHandle,
    args: &SwarmArgs,
) -> anyhow::Result<Code> {
    let size = m.info.total_length();
    let mut all_ok = true;
    println!(
        "swarm: {} ({} pieces of {}) from 1 seeder to {} leechers on 127.0.0.1",
        format_size(size),
        m.info.piece_count(),
        format_size(m.info.piece_length),
        args.leechers
    );
    for (k, (h, took)) in times.iter().enumerate() {
        let copy = root.join(format!("leecher-{}", k + 1)).join(NAME);
        let ok = same_bytes(src, &copy)?;
        all_ok &= ok;
        let s = h.status();
        println!(
            "leecher {}: {} in {:.2} s = {:.1} MB/s, uploaded {} to others, data {}",
            k + 1,
            format_size(size),
            took.as_secs_f64(),
            mb_per_s(size, *took),
            format_size(s.uploaded),
            if ok { "OK" } else { "WRONG" }
        );
    }
    let wall = times.iter().map(|t| t.1).max().unwrap_or_default();
    let total = size * times.len() as u64;
    println!(
        "total: {} delivered in {:.2} s = {:.1} MB/s; seeder uploaded {}",
        format_size(total),
        wall.as_secs_f64(),
        mb_per_s(total, wall),
        format_size(seed.status().uploaded)
    );
    if all_ok {
        println!(
            "swarm OK: every leecher's data is byte-identical to the source (1 MB = 10^6 bytes)"
        );
        Ok(Code::Ok)
    } else {
        Err(coded(
            Code::BadData,
            anyhow!("a leecher's data differs from the source"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_files_compare() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_random(&a, 3 * CHUNK as u64 + 17).unwrap();
        assert_eq!(std::fs::metadata(&a).unwrap().len(), 3 * CHUNK as u64 + 17);
        std::fs::copy(&a, &b).unwrap();
        assert!(same_bytes(&a, &b).unwrap());
        let mut bytes = std::fs::read(&b).unwrap();
        bytes[CHUNK + 5] ^= 1;
        std::fs::write(&b, &bytes).unwrap();
        assert!(!same_bytes(&a, &b).unwrap());
        // random, not zeros
        assert!(std::fs::read(&a).unwrap().iter().any(|&x| x != 0));
    }
}
