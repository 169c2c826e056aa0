//! Many threads, many files, a pool far smaller than the file count.

use std::sync::Arc;

use bittern_storage::{Backend, FilePool, Storage};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::util::*;

#[test]
fn thousand_files_through_pool_of_16_from_four_threads() {
    for backend in [Backend::Mmap, Backend::PositionedIo] {
        let dir = fast_tempdir();
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let lengths: Vec<u64> = (0..1000)
            .map(|i| {
                if i % 50 == 0 {
                    0
                } else {
                    rng.random_range(1..3000)
                }
            })
            .collect();
        let total: u64 = lengths.iter().sum();
        let data = Arc::new(random_bytes(total as usize, 7));
        let pl = 16 * 1024;
        let layout = layout(&lengths, pl, &data);
        let pool = Arc::new(FilePool::new(16));
        let s = Arc::new(
            Storage::new(layout, dir.path().to_path_buf(), pool.clone(), backend).unwrap(),
        );
        let n = s.layout().piece_count();
        let block = 4096usize;
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = &s;
                let data = &data;
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                    let mut blocks: Vec<(usize, usize)> = (0..n)
                        .filter(|p| p % 4 == t as usize)
                        .flat_map(|p| {
                            let plen = s.layout().piece_len(p) as usize;
                            (0..plen.div_ceil(block)).map(move |b| (p, b * block))
                        })
                        .collect();
                    blocks.shuffle(&mut rng);
                    for (p, off) in blocks {
                        let plen = s.layout().piece_len(p) as usize;
                        let len = block.min(plen - off);
                        let g = p * pl as usize + off;
                        s.write_block(p, off as u64, &data[g..g + len]).unwrap();
                    }
                });
            }
        });
        assert!(pool.open_count() <= 16);
        // Concurrent random reads of blocks across file boundaries.
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let s = &s;
                let data = &data;
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(100 + t);
                    for _ in 0..300 {
                        let p = rng.random_range(0..n);
                        let plen = s.layout().piece_len(p);
                        let off = rng.random_range(0..plen);
                        let len = rng.random_range(1..=(plen - off).min(16384));
                        let mut buf = vec![0u8; len as usize];
                        s.read_block(p, off, &mut buf).unwrap();
                        let g = (p as u64 * pl + off) as usize;
                        assert_eq!(buf, &data[g..g + len as usize]);
                    }
                });
            }
        });
        assert!(pool.open_count() <= 16);
        let v = s.verify_all(&rayon_pool(2), &|_, _| {}).unwrap();
        assert_eq!(v, vec![true; n], "{backend:?}");
        // Flush a few pieces (each fsyncs ~100 files and their directories).
        for p in [0, n / 2, n - 1] {
            s.flush_piece(p).unwrap();
        }
        // Files on disk: exact lengths and contents (zero-length ones never created).
        let mut pos = 0usize;
        for (i, &l) in lengths.iter().enumerate() {
            let path = dir.path().join(format!("dir{}/file{i}", i % 10));
            if l == 0 {
                assert!(!path.exists());
            } else {
                assert_eq!(std::fs::read(&path).unwrap(), &data[pos..pos + l as usize]);
            }
            pos += l as usize;
        }
        s.release_files();
        assert_eq!(pool.open_count(), 0);
    }
}

#[test]
fn two_storages_share_one_pool() {
    let pool = Arc::new(FilePool::new(3));
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let lengths = [5000u64, 5000, 5000];
    let datas = [random_bytes(15000, 1), random_bytes(15000, 2)];
    let storages: Vec<Storage> = (0..2)
        .map(|i| {
            Storage::new(
                layout(&lengths, 4096, &datas[i]),
                dirs[i].path().to_path_buf(),
                pool.clone(),
                Backend::Mmap,
            )
            .unwrap()
        })
        .collect();
    for (s, d) in storages.iter().zip(&datas) {
        for (p, chunk) in d.chunks(4096).enumerate() {
            s.write_block(p, 0, chunk).unwrap();
        }
    }
    assert!(pool.open_count() <= 3);
    storages[0].release_files();
    for (s, d) in storages.iter().zip(&datas) {
        let mut buf = vec![0u8; 4096];
        s.read_block(1, 0, &mut buf).unwrap();
        assert_eq!(buf, &d[4096..8192]);
    }
    drop(storages);
    assert_eq!(pool.open_count(), 0);
}
