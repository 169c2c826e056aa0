//! Quick in-process transfer measurement: one bittern seeder session to N
//! bittern leecher sessions on loopback, data in a temporary directory.
//!
//! `cargo run --release -p bittern-benches --bin transfer -- [SIZE_MIB] [PIECE_KIB] [LEECHERS]`
//!
//! Prints wall time, MB/s and the process's CPU seconds. The full
//! side-by-side benchmark against other clients is `benches/swarm.sh`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bittern_engine::{SeedGoal, Session, SessionConfig, TorrentOptions, TorrentState};
use bittern_wire::{Metainfo, MetainfoBuilder};

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU seconds per thread name prefix (from /proc/self/task).
fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let tick = 100.0; // USER_HZ
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let after = stat.rsplit(')').next().unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
                + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let key: String = comm
                .trim()
                .chars()
                .take_while(|c| *c != '-' || comm.starts_with("bittern"))
                .collect();
            *out.entry(key).or_insert(0.0) += ticks / tick;
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = env_logger::try_init();
    // As the bittern binary does: verification hashes from maps.
    bittern_storage::install_sigbus_guard()?;
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let size = args.first().copied().unwrap_or(256) * 1024 * 1024;
    let piece = args.get(1).copied().unwrap_or(256) * 1024;
    let leechers = args.get(2).copied().unwrap_or(1) as usize;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src)?;
    let mut data = vec![0u8; size as usize];
    let mut x = 0x9e3779b97f4a7c15u64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(src.join("data.bin"), &data)?;
    drop(data);
    let pool = rayon::ThreadPoolBuilder::new().build()?;
    let hashes =
        bittern_storage::hash_files(&[(src.join("data.bin"), size)], piece, &pool, &|_, _| {})?;
    let bytes = MetainfoBuilder::new("data.bin")
        .piece_length(piece)
        .pieces(hashes)
        .single_file(size)
        .build()?;
    let meta = Metainfo::from_bytes(&bytes)?;
    let config = || SessionConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        announce: false,
        storage_backend: if std::env::var_os("TRANSFER_MMAP").is_some() {
            bittern_storage::Backend::Mmap
        } else {
            bittern_storage::Backend::PositionedIo
        },
        inline_hashing: std::env::var_os("TRANSFER_INLINE").is_some(),
        mapped_upload: std::env::var_os("TRANSFER_COPY").is_none(),
        ..SessionConfig::default()
    };
    let seeder = Session::new(config())?;
    let s = seeder.add_torrent(meta.clone(), &src, TorrentOptions::default())?;
    while s.status().state != TorrentState::Seeding {
        std::thread::sleep(Duration::from_millis(10));
    }
    let sessions = (0..leechers)
        .map(|_| Session::new(config()))
        .collect::<Result<Vec<Session>, _>>()?;
    if std::env::var_os("TRANSFER_WAIT").is_some() {
        // Lets a profiler attach for the transfer alone.
        eprintln!("ready {}", std::process::id());
        std::thread::sleep(Duration::from_secs(2));
    }
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let handles: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut peers = vec![seeder.local_addr()];
            peers.extend(sessions[..i].iter().map(|s| s.local_addr()));
            let opts = TorrentOptions {
                peers,
                seed_goal: SeedGoal::Forever,
                ..TorrentOptions::default()
            };
            l.add_torrent(meta.clone(), dir.path().join(format!("l{i}")), opts)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut done = vec![None; leechers];
    while done.iter().any(Option::is_none) {
        for (i, h) in handles.iter().enumerate() {
            if done[i].is_none() && h.status().state == TorrentState::Seeding {
                done[i] = Some(t0.elapsed());
            }
            if let TorrentState::Error(e) = h.status().state {
                return Err(format!("leecher {i}: {e}").into());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
        if std::env::var_os("TRANSFER_TRACE").is_some() {
            let st = handles[0].status();
            let p = handles[0].peers();
            eprintln!(
                "{:>6} ms: {} bytes, pieces {}, peers {:?}",
                t0.elapsed().as_millis(),
                st.downloaded,
                st.pieces_have,
                p.iter()
                    .map(|p| (
                        p.peer_choking,
                        p.am_interested,
                        p.download_rate as u64,
                        p.outstanding
                    ))
                    .collect::<Vec<_>>()
            );
        }
    }
    let cpu = cpu_seconds() - cpu0;
    if std::env::var_os("TRANSFER_THREADS").is_some() {
        for (k, v) in thread_cpu() {
            eprintln!("  {k:<20} {v:.2} CPU s");
        }
    }
    let wall = done.iter().flatten().max().copied().unwrap_or_default();
    for (i, d) in done.iter().flatten().enumerate() {
        println!(
            "leecher {i}: {:.2} s, {:.0} MB/s",
            d.as_secs_f64(),
            size as f64 / d.as_secs_f64() / 1e6
        );
    }
    println!(
        "{} MiB, {} KiB pieces, {leechers} leecher(s): {:.2} s, {:.0} MB/s per leecher (slowest), {:.2} CPU s total ({:.2} CPU s/GiB moved)",
        size >> 20,
        piece >> 10,
        wall.as_secs_f64(),
        size as f64 / wall.as_secs_f64() / 1e6,
        cpu,
        cpu / (size as f64 * leechers as f64 / (1u64 << 30) as f64)
    );
    Ok(())
}
