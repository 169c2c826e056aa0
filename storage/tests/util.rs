//! Shared helpers for the integration tests.

use std::path::PathBuf;

use bittern_storage::{hash_blocks, FileSpec, Layout};
use rand::{Rng, SeedableRng};

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

/// A layout of files `dir{i % 10}/file{i}` with the given lengths, hashed from `data`.
pub fn layout(lengths: &[u64], pl: u64, data: &[u8]) -> Layout {
    let files = lengths
        .iter()
        .enumerate()
        .map(|(i, &length)| FileSpec {
            path: PathBuf::from(format!("dir{}/file{i}", i % 10)),
            length,
            padding: false,
        })
        .collect();
    let hashes = data.chunks(pl as usize).map(|c| hash_blocks([c])).collect();
    Layout::new(files, pl, hashes).unwrap()
}

pub fn rayon_pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

/// A temp dir on tmpfs (`/dev/shm`) when there is one: creating and
/// unlinking thousands of files on a busy ext4 costs seconds.
pub fn fast_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}
