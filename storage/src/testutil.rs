//! Shared test helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::{Rng, SeedableRng};

use crate::{hash_blocks, Backend, FilePool, FileSpec, Layout, Storage};

/// A xorshift generator: `next(m)` is a number below `m`.
pub(crate) fn numbers(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |m| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % m
    }
}

/// Deterministic pseudo-random bytes.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

/// A layout over `lengths` (files `f0`, `f1`, ... or padding where `pad[i]`)
/// whose hashes match `data`.
pub(crate) fn layout_for(lengths: &[(u64, bool)], pl: u64, data: &[u8]) -> Layout {
    let files = lengths
        .iter()
        .enumerate()
        .map(|(i, &(length, padding))| FileSpec {
            path: PathBuf::from(format!("d{}/f{i}", i % 3)),
            length,
            padding,
        })
        .collect();
    let hashes = data.chunks(pl as usize).map(|c| hash_blocks([c])).collect();
    Layout::new(files, pl, hashes).unwrap()
}

/// Data with zeros in the padding files' ranges.
pub(crate) fn data_for(lengths: &[(u64, bool)], seed: u64) -> Vec<u8> {
    let total: u64 = lengths.iter().map(|l| l.0).sum();
    let mut data = random_bytes(total as usize, seed);
    let mut pos = 0usize;
    for &(l, pad) in lengths {
        if pad {
            data[pos..pos + l as usize].fill(0);
        }
        pos += l as usize;
    }
    data
}

pub(crate) fn storage(layout: Layout, root: &Path, max_open: usize, backend: Backend) -> Storage {
    Storage::new(
        layout,
        root.to_path_buf(),
        Arc::new(FilePool::new(max_open)),
        backend,
    )
    .unwrap()
}

/// Writes every piece of `data` in blocks of `block` bytes.
pub(crate) fn write_all(s: &Storage, data: &[u8], block: usize) {
    let pl = s.layout().piece_length() as usize;
    for (p, piece) in data.chunks(pl).enumerate() {
        for (b, chunk) in piece.chunks(block).enumerate() {
            s.write_block(p, (b * block) as u64, chunk).unwrap();
        }
    }
}

pub(crate) fn rayon_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}
