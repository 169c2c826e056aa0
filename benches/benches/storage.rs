//! criterion benches for bittern-storage.
//!
//! Run: `cargo bench -p bittern-benches --bench storage`.
//!
//! - `sha1/hash_blocks_16KiB`: cache-hot SHA-1 rate of one core, to compare
//!   with `openssl speed -evp sha1 -bytes 16384`.
//! - `sha1/two_pieces_256KiB/{one_by_one,side_by_side}`: two pieces hashed
//!   one after the other against side by side (`hash_many` of two).
//! - `sha1/three_pieces_256KiB/{pair_then_one,side_by_side}`: three pieces
//!   as a pair plus one against three side by side (`hash_many`).
//! - `sha256/leaf_16KiB`: cache-hot SHA-256 rate of one core over the v2
//!   merkle leaves, to compare with `openssl speed -evp sha256 -bytes
//!   16384`; `sha256/leaves_64KiB/{one_by_one,side_by_side}`: four leaves
//!   hashed one after the other against four in lockstep
//!   (`merkle::leaf_hashes`); `sha256/tree_1MiB`: a whole merkle tree over 1 MiB (64
//!   leaves plus 63 interior 64-byte hashes), `merkle::MerkleTree::from_data`.
//! - `verify/{map,read}/{1,N}threads`: full recheck of a page-cached
//!   128 MiB file (256 KiB pieces) by hash source (`HashSource::Map`:
//!   straight from guarded read-only maps; `HashSource::Read`: `pread` into
//!   page-aligned buffers), single thread vs a rayon pool of all cores.
//! - `verify_read_offset/{0,16}`: the same recheck of a page-cached 256 MiB
//!   file with `HashSource::Read`, the read buffers starting on a page
//!   boundary (0, what storage does) or 16 bytes past one (where the
//!   allocator puts a `Vec` of 128 KiB or more). On CPUs whose kernel copy
//!   is slow for such destinations the ratio shows it (issue 17: AMD EPYC,
//!   about 5x the system time); elsewhere it stays near 1. 256 MiB rather
//!   than 1 GiB to keep `cargo bench` short.
//! - `blocks/write_fresh/{mmap,pread}/pool64`: 16 KiB blocks in random
//!   order into new files (as a download does: every page touched once).
//! - `blocks/{write,read}_{seq,random}/{mmap,pread}/pool{16,128}`: 16 KiB
//!   blocks over 65 files through a `FilePool` of 16 (smaller than the file
//!   count: evictions) and of 128 (every file stays open).
//!
//! Note: `openssl speed` divides by user CPU time unless given `-elapsed`,
//! while criterion reports wall time; compare with `-elapsed` on a loaded
//! machine.
//! - `verify/v2/{1,N}threads`: the same recheck against BEP 52 merkle
//!   hashes (`Storage::verify_all_v2`: SHA-256 of 16 KiB leaves up to each
//!   piece's node, read with `pread`), to compare with `verify/map` and
//!   `verify/read` (SHA-1) in the same run.
//! - `create/hash_files/N threads`: torrent-creation hashing of the 128 MiB
//!   file; `create/hash_files_v2/N threads`: its v2 merkle root and piece
//!   layer (`merkle::hash_files_v2`).
//!
//! Inputs are deterministic (seeded) and live in a temp dir.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bittern_storage::merkle::hash_files_v2;
use bittern_storage::rayon;
use bittern_storage::{
    hash_blocks, hash_files, hash_many, Backend, FilePool, FileSpec, HashSource, Layout, Storage,
};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const MIB: usize = 1 << 20;
const BLOCK: usize = 16 * 1024;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

fn layout(lengths: &[u64], pl: u64, data: &[u8]) -> Layout {
    let files = lengths
        .iter()
        .enumerate()
        .map(|(i, &length)| FileSpec {
            path: PathBuf::from(format!("f{i}")),
            length,
            padding: false,
        })
        .collect();
    let hashes = data.chunks(pl as usize).map(|c| hash_blocks([c])).collect();
    Layout::new(files, pl, hashes).expect("layout")
}

fn backends() -> [(&'static str, Backend); 2] {
    [("mmap", Backend::Mmap), ("pread", Backend::PositionedIo)]
}

fn sha1_rate(c: &mut Criterion) {
    let buf = random_bytes(BLOCK, 1);
    let mut g = c.benchmark_group("sha1");
    g.throughput(Throughput::Bytes(BLOCK as u64));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("hash_blocks_16KiB", |b| {
        b.iter(|| hash_blocks([black_box(&buf[..])]))
    });
    // Two 256 KiB pieces: one after the other (the reference) against side
    // by side, the way verification and creation hash them.
    let a = random_bytes(256 * 1024, 2);
    let z = random_bytes(256 * 1024, 3);
    g.throughput(Throughput::Bytes(2 * 256 * 1024));
    g.bench_function("two_pieces_256KiB/one_by_one", |b| {
        b.iter(|| {
            (
                hash_blocks([black_box(&a[..])]),
                hash_blocks([black_box(&z[..])]),
            )
        })
    });
    g.bench_function("two_pieces_256KiB/side_by_side", |b| {
        b.iter(|| hash_many(black_box(&[&a[..], &z[..]])))
    });
    // Three: two side by side plus one alone (the two-lane way) against
    // all three side by side (`hash_many`, what verification does).
    let y = random_bytes(256 * 1024, 4);
    g.throughput(Throughput::Bytes(3 * 256 * 1024));
    g.bench_function("three_pieces_256KiB/pair_then_one", |b| {
        b.iter(|| {
            (
                hash_many(black_box(&[&a[..], &z[..]])),
                hash_blocks([black_box(&y[..])]),
            )
        })
    });
    g.bench_function("three_pieces_256KiB/side_by_side", |b| {
        b.iter(|| hash_many(black_box(&[&a[..], &z[..], &y[..]])))
    });
    g.finish();
}

fn sha256_rate(c: &mut Criterion) {
    use bittern_storage::merkle::{leaf_hashes, sha256, MerkleTree};
    let buf = random_bytes(BLOCK, 1);
    let mut g = c.benchmark_group("sha256");
    g.throughput(Throughput::Bytes(BLOCK as u64));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("leaf_16KiB", |b| b.iter(|| sha256(black_box(&buf[..]))));
    let four = random_bytes(4 * BLOCK, 3);
    g.throughput(Throughput::Bytes(4 * BLOCK as u64));
    g.bench_function("leaves_64KiB/one_by_one", |b| {
        b.iter(|| {
            four.chunks(BLOCK)
                .map(|c| sha256(black_box(c)))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("leaves_64KiB/side_by_side", |b| {
        b.iter(|| leaf_hashes(black_box(&four[..])))
    });
    let mib = random_bytes(MIB, 5);
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function("tree_1MiB", |b| {
        b.iter(|| MerkleTree::from_data(black_box(&mib[..])).map(|t| t.root()))
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let size = 128 * MIB;
    let pl = 256 * 1024u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(size, 2);
    std::fs::write(dir.path().join("f0"), &data).expect("write data");
    let layout = layout(&[size as u64], pl, &data);
    drop(data);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    // Maps are read only under the SIGBUS guard, which a program installs.
    bittern_storage::install_sigbus_guard().expect("sigbus guard");
    for (name, source) in [("map", HashSource::Map), ("read", HashSource::Read)] {
        let s = Storage::new(
            layout.clone(),
            dir.path().to_path_buf(),
            Arc::new(FilePool::default()),
            Backend::PositionedIo,
        )
        .expect("storage")
        .with_hash_source(source);
        for threads in [1, cores] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool");
            g.bench_function(BenchmarkId::new(name, format!("{threads}threads")), |b| {
                b.iter(|| {
                    let v = s.verify_all(&pool, &|_, _| {}).expect("verify");
                    assert!(v.iter().all(|&ok| ok));
                })
            });
        }
    }
    // v2 (BEP 52) merkle verification of the same file: SHA-256 of 16 KiB
    // leaves, pread into the scratch buffer (the v2 path has no map source)
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .build()
        .expect("pool");
    let fh = hash_files_v2(
        &[(dir.path().join("f0"), size as u64)],
        pl,
        &pool,
        &|_, _| {},
    )
    .expect("v2 hashes")
    .remove(0);
    let v2 = Layout::new_v2(
        layout.files().to_vec(),
        pl,
        std::slice::from_ref(&fh.piece_layer),
    )
    .expect("v2 layout");
    let s = Storage::new(
        v2,
        dir.path().to_path_buf(),
        Arc::new(FilePool::default()),
        Backend::PositionedIo,
    )
    .expect("storage");
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        g.bench_function(BenchmarkId::new("v2", format!("{threads}threads")), |b| {
            b.iter(|| {
                let v = s.verify_all_v2(&pool, &|_, _| {}).expect("verify");
                assert!(v.iter().all(|&ok| ok));
            })
        });
    }
    g.finish();
    let mut g = c.benchmark_group("create");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    let files = vec![(dir.path().join("f0"), size as u64)];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cores)
        .build()
        .expect("pool");
    g.bench_function(format!("hash_files/{cores}threads"), |b| {
        b.iter(|| hash_files(&files, pl, &pool, &|_, _| {}).expect("hash"))
    });
    g.bench_function(format!("hash_files_v2/{cores}threads"), |b| {
        b.iter(|| hash_files_v2(&files, pl, &pool, &|_, _| {}).expect("hash"))
    });
    g.finish();
}

fn blocks(c: &mut Criterion) {
    let files = 64usize;
    let file_len = 256 * 1024u64;
    let total = files * file_len as usize;
    let pl = 256 * 1024u64;
    // Pieces are offset by half a file so blocks cross file boundaries
    // and consecutive blocks hit different pool entries.
    let mut lengths = vec![file_len; files];
    lengths[0] = file_len / 2;
    lengths.push(file_len / 2);
    let data = random_bytes(total, 3);
    let layout = layout(&lengths, pl, &data);
    let n = layout.piece_count();
    let seq: Vec<(usize, usize)> = (0..n)
        .flat_map(|p| (0..pl as usize / BLOCK).map(move |b| (p, b * BLOCK)))
        .collect();
    let mut random = seq.clone();
    random.shuffle(&mut rand::rngs::StdRng::seed_from_u64(4));
    let mut g = c.benchmark_group("blocks");
    g.throughput(Throughput::Bytes(total as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    // A download writes every page once: new files, first-touch page
    // faults (mmap) or page-cache allocation (pwrite), default pool size.
    for (name, backend) in backends() {
        g.bench_function(
            BenchmarkId::new("write_fresh", format!("{name}/pool64")),
            |b| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir().expect("tempdir");
                        let s = Storage::new(
                            layout.clone(),
                            dir.path().to_path_buf(),
                            Arc::new(FilePool::default()),
                            backend,
                        )
                        .expect("storage");
                        (dir, s)
                    },
                    |(dir, s)| {
                        for &(p, off) in random.iter() {
                            let g = p * pl as usize + off;
                            s.write_block(p, off as u64, &data[g..g + BLOCK])
                                .expect("write");
                        }
                        // Dropped (files closed, dir removed) outside the timing.
                        (dir, s)
                    },
                    BatchSize::PerIteration,
                )
            },
        );
    }
    for (name, backend) in backends() {
        for max_open in [16, 128] {
            let dir = tempfile::tempdir().expect("tempdir");
            let s = Storage::new(
                layout.clone(),
                dir.path().to_path_buf(),
                Arc::new(FilePool::new(max_open)),
                backend,
            )
            .expect("storage");
            // Prefill, so read benches (and the final check) do not depend
            // on the write benches having run (e.g. with a filter).
            for &(p, off) in seq.iter() {
                let g = p * pl as usize + off;
                s.write_block(p, off as u64, &data[g..g + BLOCK])
                    .expect("write");
            }
            let param = format!("{name}/pool{max_open}");
            for (order, list) in [("seq", &seq), ("random", &random)] {
                g.bench_function(BenchmarkId::new(format!("write_{order}"), &param), |b| {
                    b.iter(|| {
                        for &(p, off) in list.iter() {
                            let g = p * pl as usize + off;
                            s.write_block(p, off as u64, &data[g..g + BLOCK])
                                .expect("write");
                        }
                    })
                });
            }
            let mut buf = vec![0u8; BLOCK];
            for (order, list) in [("seq", &seq), ("random", &random)] {
                g.bench_function(BenchmarkId::new(format!("read_{order}"), &param), |b| {
                    b.iter(|| {
                        for &(p, off) in list.iter() {
                            s.read_block(p, off as u64, &mut buf).expect("read");
                            black_box(&buf);
                        }
                    })
                });
            }
            let pool = rayon::ThreadPoolBuilder::new().build().expect("pool");
            let v = s.verify_all(&pool, &|_, _| {}).expect("verify");
            assert!(v.iter().all(|&ok| ok));
        }
    }
    g.finish();
}

/// Verification with `pread` into buffers at page offset 0 and 16: the
/// kernel's copy to user space is the cost that moves.
fn verify_read_offset(c: &mut Criterion) {
    let size = 256 * MIB;
    let pl = 256 * 1024u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = random_bytes(size, 5);
    std::fs::write(dir.path().join("f0"), &data).expect("write data");
    let layout = layout(&[size as u64], pl, &data);
    drop(data);
    let s = Storage::new(
        layout,
        dir.path().to_path_buf(),
        Arc::new(FilePool::default()),
        Backend::PositionedIo,
    )
    .expect("storage")
    .with_hash_source(HashSource::Read);
    let pool = rayon::ThreadPoolBuilder::new().build().expect("pool");
    let mut g = c.benchmark_group("verify_read_offset");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    for offset in [0usize, 16] {
        bittern_storage::set_read_buffer_offset(offset);
        g.bench_function(offset.to_string(), |b| {
            b.iter(|| {
                let v = s.verify_all(&pool, &|_, _| {}).expect("verify");
                assert!(v.iter().all(|&ok| ok));
            })
        });
    }
    bittern_storage::set_read_buffer_offset(0);
    g.finish();
}

criterion_group!(
    benches,
    sha1_rate,
    sha256_rate,
    verify,
    verify_read_offset,
    blocks
);
criterion_main!(benches);
