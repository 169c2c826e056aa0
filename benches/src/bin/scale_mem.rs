//! Heap cost of idle torrents: N tiny complete torrents (64 KiB, 16 KiB
//! pieces, one tracker on loopback) loaded into one session with resume
//! state, then the live heap and RssAnon per torrent once all seed.
//!
//! `cargo run --release -p bittern-benches --bin scale_mem -- [N]`
//!
//! A counting global allocator gives the live bytes and allocations; the
//! figures are differences against the empty session, divided by N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bittern_engine::{Session, SessionConfig, TorrentOptions, TorrentState};
use bittern_tracker::server::{ServerConfig, TrackerServer};
use bittern_wire::{Metainfo, MetainfoBuilder};

/// The system allocator, counting what is live.
struct Counting;

static BYTES: AtomicI64 = AtomicI64::new(0);
static BLOCKS: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is passed on to `System` unchanged; only counters are
// added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as the caller promised for `layout`.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        BYTES.fetch_add(new as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as the caller promised.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap() -> (i64, i64) {
    (
        BYTES.load(Ordering::Relaxed),
        BLOCKS.load(Ordering::Relaxed),
    )
}

fn proc_status(field: &str) -> u64 {
    bittern_testkit::proc_status(field)
}

const SIZE: u64 = 64 * 1024;
const PIECE: u64 = 16 * 1024;

/// Writes `n` torrents' data under `dir` and returns their metainfo files.
fn make_set(dir: &std::path::Path, n: usize, announce: &str) -> Vec<Vec<u8>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    (0..n)
        .map(|i| {
            let name = format!("t{i:05}.bin");
            let data: Vec<u8> = (0..SIZE)
                .map(|j| (j as u8).wrapping_mul(31) ^ (i as u8) ^ ((i >> 8) as u8))
                .collect();
            let path = dir.join(&name);
            std::fs::write(&path, &data).expect("write data");
            let hashes = bittern_storage::hash_files(&[(path, SIZE)], PIECE, &pool, &|_, _| {})
                .expect("hash");
            MetainfoBuilder::new(&name)
                .announce(announce)
                .piece_length(PIECE)
                .pieces(hashes)
                .single_file(SIZE)
                .build()
                .expect("metainfo")
        })
        .collect()
}

fn load(cfg: &SessionConfig, set: &[Vec<u8>], dir: &std::path::Path) -> (Session, f64) {
    let session = Session::new(cfg.clone()).expect("session");
    let start = Instant::now();
    let handles: Vec<_> = set
        .iter()
        .map(|b| {
            let m = Metainfo::from_bytes(b).expect("parse");
            session
                .add_torrent(m, dir, TorrentOptions::default())
                .expect("add")
        })
        .collect();
    while !handles
        .iter()
        .all(|h| h.with_status(|s| s.state == TorrentState::Seeding))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // As the CLI does: take the events nobody shows.
    for h in &handles {
        h.events().try_iter().for_each(drop);
    }
    (session, start.elapsed().as_secs_f64())
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let tracker = TrackerServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        ServerConfig::default(),
    )
    .expect("tracker");
    let dir = tempfile::tempdir_in("/dev/shm").expect("tempdir");
    let set = make_set(dir.path(), n, &tracker.announce_url());
    let mut cfg = SessionConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        announce: true,
        ..SessionConfig::default()
    };
    // `SCALE_MEM_STOP_DEADLINE=0` leaves the `stopped` announces out of
    // the stop times: only the torrents' own stops (resume saves) count.
    if let Some(secs) = std::env::var("SCALE_MEM_STOP_DEADLINE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        cfg.timing.stop_announce_deadline = Duration::from_secs_f64(secs);
    }
    let (mut first, t1) = load(&cfg, &set, dir.path());
    // Every torrent of the first start has resume state to write.
    let start = Instant::now();
    first.shutdown();
    let stop1 = start.elapsed().as_secs_f64();
    drop(first);
    std::thread::sleep(Duration::from_millis(500));
    let (h0, rss0) = (heap(), proc_status("RssAnon:"));
    let (mut second, t2) = load(&cfg, &set, dir.path());
    std::thread::sleep(Duration::from_secs(5));
    let (h1, rss1) = (heap(), proc_status("RssAnon:"));
    let per = |a: i64, b: i64| (b - a) as f64 / n as f64;
    println!(
        "n {n}: seeding after {t1:.2} s (first), {t2:.2} s (resume); per torrent: heap {:.0} B in {:.1} blocks, RssAnon {:.0} B; threads {}",
        per(h0.0, h1.0),
        per(h0.1, h1.1),
        per(rss0 as i64 * 1024, rss1 as i64 * 1024),
        proc_status("Threads:")
    );
    if let Some(secs) = std::env::var("SCALE_MEM_IDLE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Idle CPU of the whole process over `secs` (utime, stime).
        let cpu = || {
            let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            let f: Vec<u64> = s
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (
                f.get(10).copied().unwrap_or(0),
                f.get(11).copied().unwrap_or(0),
            )
        };
        let a = cpu();
        std::thread::sleep(Duration::from_secs(secs));
        let b = cpu();
        println!(
            "idle {secs} s: user {:.2} s, system {:.2} s",
            (b.0 - a.0) as f64 / 100.0,
            (b.1 - a.1) as f64 / 100.0
        );
    }
    if std::env::var_os("SCALE_MEM_EXIT").is_some() {
        // Everything still live, for a heap profiler's "leaked" report.
        std::process::exit(0);
    }
    let start = Instant::now();
    second.shutdown();
    println!(
        "stopped in {stop1:.2} s (first start: every torrent saves resume state), {:.2} s (second: nothing to save)",
        start.elapsed().as_secs_f64()
    );
}
