//! Helpers for engine tests: random data, torrents, sessions on loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bittern_engine::{
    SeedGoal, Session, SessionConfig, Timing, TorrentEvent, TorrentHandle, TorrentOptions,
    TorrentState,
};
use bittern_storage::{Backend, FilePool, FileSpec, Layout, ResumeState, Storage};
use bittern_wire::{Metainfo, MetainfoBuilder};
use rand::{Rng, SeedableRng};

/// Writes `files` (relative path, size) of seeded random bytes under
/// `dir/name` (multi-file) or `dir/name` as one file, and builds the torrent.
pub fn make_torrent(
    dir: &Path,
    name: &str,
    files: &[(&str, u64)],
    piece_length: u64,
    seed: u64,
) -> Metainfo {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let multi = files.len() != 1 || files[0].0 != name;
    let mut disk = Vec::new();
    let mut entries = Vec::new();
    for (path, size) in files {
        let full = if multi {
            dir.join(name).join(path)
        } else {
            dir.join(name)
        };
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        let mut data = vec![0u8; *size as usize];
        rng.fill(&mut data[..]);
        std::fs::write(&full, &data).unwrap();
        disk.push((full, *size));
        entries.push((
            path.split('/').map(str::to_string).collect::<Vec<_>>(),
            *size,
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let hashes = bittern_storage::hash_files(&disk, piece_length, &pool, &|_, _| {}).unwrap();
    let mut b = MetainfoBuilder::new(name)
        .piece_length(piece_length)
        .pieces(hashes);
    b = if multi {
        b.files(entries)
    } else {
        b.single_file(files[0].1)
    };
    let bytes = b.build().unwrap();
    Metainfo::from_bytes(&bytes).unwrap()
}

/// Session config for tests: loopback, ephemeral port, no trackers.
pub fn config() -> SessionConfig {
    SessionConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        announce: false,
        timing: Timing {
            choke_interval: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            ..Timing::default()
        },
        ..SessionConfig::default()
    }
}

pub fn session() -> Session {
    let _ = env_logger::builder().is_test(true).try_init();
    Session::new(config()).unwrap()
}

/// A session seeding `meta` from `dir`, checked and ready.
pub fn seeding(meta: &Metainfo, dir: &Path) -> (Session, TorrentHandle) {
    let seeder = session();
    let t = seeder
        .add_torrent(meta.clone(), dir, TorrentOptions::default())
        .unwrap();
    wait_state(&t, TorrentState::Seeding, Duration::from_secs(20));
    (seeder, t)
}

/// Where a torrent saved into `dst` keeps its resume state.
pub fn resume_path(dst: &Path, meta: &Metainfo) -> PathBuf {
    dst.join(".bittern")
        .join(format!("{}.resume", meta.info_hash.to_hex()))
}

/// The pieces the resume file under `save_dir` vouches for now, read with
/// bittern-storage's public API over `meta`'s files as the engine lays
/// them out (panics when the file is absent or does not parse).
pub fn vouched_pieces(meta: &Metainfo, save_dir: &Path) -> Vec<bool> {
    let path = resume_path(save_dir, meta);
    let state = ResumeState::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    state.vouched(&storage_for(meta, save_dir), meta.info_hash.0)
}

/// A `Storage` over `meta`'s files under `save_dir`, laid out as the
/// engine lays them out (`DIR/<name>` for a multi-file torrent).
pub fn storage_for(meta: &Metainfo, save_dir: &Path) -> Storage {
    let info = &meta.info;
    let files = info
        .files
        .iter()
        .map(|f| FileSpec {
            path: f.relative_path(),
            length: f.length,
            padding: f.padding,
        })
        .collect();
    let layout = Layout::new(files, info.piece_length, info.pieces.clone()).unwrap();
    let root = if info.multi_file {
        save_dir.join(&info.name)
    } else {
        save_dir.to_path_buf()
    };
    Storage::new(
        layout,
        root,
        Arc::new(FilePool::default()),
        Backend::default(),
    )
    .unwrap()
}

/// Downloads `meta` into `dst` from `seeder` with no seeding goal and
/// waits until the torrent has stopped (panics after 60 s).
pub fn leech_until_stopped(
    leecher: &Session,
    meta: &Metainfo,
    dst: &Path,
    seeder: SocketAddr,
) -> TorrentHandle {
    let opts = TorrentOptions {
        peers: vec![seeder],
        seed_goal: SeedGoal::None,
        ..TorrentOptions::default()
    };
    let l = leecher.add_torrent(meta.clone(), dst, opts).unwrap();
    wait_state(&l, TorrentState::Stopped, Duration::from_secs(60));
    l
}

/// Waits for the torrent's startup check and returns how many pieces it
/// found (resume state plus recheck); panics after 20 s.
pub fn checked_pieces(t: &TorrentHandle) -> usize {
    loop {
        match t.events().recv_timeout(Duration::from_secs(20)) {
            Ok(TorrentEvent::Checked { pieces }) => return pieces,
            Ok(_) => {}
            Err(e) => panic!("no check result: {e}"),
        }
    }
}

/// Waits until the torrent reaches `state` (panics on error or timeout).
pub fn wait_state(t: &TorrentHandle, state: TorrentState, limit: Duration) {
    let start = Instant::now();
    loop {
        let s = t.status();
        if s.state == state {
            return;
        }
        if let TorrentState::Error(e) = &s.state {
            panic!("torrent failed: {e}");
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {state:?}; status: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts two directory trees hold identical files named by `paths`.
#[track_caller]
pub fn assert_same(a: &Path, b: &Path, paths: &[PathBuf]) {
    bittern_testkit::assert_same_files(a, b, paths);
}

/// True when the Debian tool is present; when it is missing, fail if
/// BITTERN_REQUIRE_INTEROP=1, else skip loudly ([`bittern_testkit::require`]).
#[allow(dead_code)]
pub fn have_tool(path: &str) -> bool {
    bittern_testkit::require(path, Path::new(path).exists())
}

/// A fresh temp dir (removed on drop).
#[allow(dead_code)]
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Waits like [`wait_state`], recording every peer (address and client
/// name) the torrent had connected meanwhile.
#[allow(dead_code)]
pub fn wait_state_seeing_peers(
    t: &TorrentHandle,
    state: TorrentState,
    limit: Duration,
) -> Vec<(SocketAddr, Option<String>)> {
    let start = Instant::now();
    let mut seen: Vec<(SocketAddr, Option<String>)> = Vec::new();
    loop {
        for p in t.peers() {
            match seen.iter_mut().find(|(a, _)| *a == p.addr) {
                Some(entry) => {
                    if entry.1.is_none() {
                        entry.1 = p.client;
                    }
                }
                None => seen.push((p.addr, p.client)),
            }
        }
        let s = t.status();
        if s.state == state {
            return seen;
        }
        if let TorrentState::Error(e) = &s.state {
            panic!("torrent failed: {e}");
        }
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {state:?}; status: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
