//! bittern-storage: piece <-> file layout, a bounded [`FilePool`] of open
//! (optionally memory-mapped) files, block IO, parallel SHA-1 verification
//! and crash-safe resume state.
//!
//! It depends on no other bittern crate: the engine describes a torrent as a
//! plain [`Layout`] (files, piece length, piece hashes), so tools and
//! benches use this crate alone.
//!
//! - [`Layout`] maps a piece or block to the [`Span`]s of files that hold it.
//! - [`FilePool`] is one per session, shared as `Arc<FilePool>`: a hard LRU
//!   bound on open files and maps.
//! - [`Storage`] is one per torrent: `write_block`, `read_block`,
//!   `hash_piece`, `flush_piece`, `verify_all` on a rayon pool. Files are
//!   only ever opened below the root, never through a symlink.
//! - [`Storage::block_source`] + [`send_vectored`] upload blocks with one
//!   kernel copy: `writev` from read-only maps of the files.
//! - [`hash_blocks`] hashes a piece still held in memory; [`hash_files`]
//!   hashes files for torrent creation. Both hash pieces three at a time
//!   side by side ([`Storage::hash_pieces`], [`hash_many`]; [`HASH_LANES`]):
//!   SHA-1 is about 2x faster per core than one at a time on CPUs with the
//!   SHA extensions.
//! - [`AlignedBuf`]: page-aligned buffers for everything the kernel copies
//!   file or socket data into (see its docs for why).
//! - [`merkle`]: BitTorrent v2 per-file SHA-256 merkle trees: roots, piece
//!   layers, proofs, piece and block verification, and
//!   [`merkle::hash_files_v2`] for creating v2 torrents. A [`Layout`] may
//!   carry v2 hashes ([`Layout::new_v2`], [`Layout::with_v2`] for hybrids):
//!   [`Storage::verify_pieces_v2`] checks pieces against them, and
//!   [`Storage::verify_pieces`] does so for a v2-only layout.
//!   [`merkle::LayerTree`] answers BEP 52 hash requests from a file's piece
//!   layer plus [`Storage::piece_leaves_v2`] for nodes below it.
//! - [`ResumeState`] records verified pieces with each file's size and
//!   mtime, saved atomically, and vouches only for what still matches.
//!
//! # Backends
//! [`Backend::Mmap`] and [`Backend::PositionedIo`] implement the same API.
//! See `file.rs` for how the map backend avoids `SIGBUS` (reservation with
//! `fallocate`, a length check before every mapped access) and the race it
//! leaves open.
//!
//! **The default is [`Backend::PositionedIo`]**, chosen from one run of
//! the storage benchmark (`cargo bench -p bittern-benches --bench storage`,
//! 2-core machine shared with other jobs, 16 KiB blocks over 65 files):
//!
//! | case | pread/pwrite | mmap | ratio |
//! |---|---|---|---|
//! | download pattern: new files, random order, pool 64 | 1.00 GiB/s | 0.39 GiB/s | pread 2.6x |
//! | write seq / random, pool 16 (< file count) | 2.59 / 1.17 | 0.84 / 0.55 | pread 3.1x / 2.1x |
//! | read seq / random, pool 16 | 3.44 / 1.59 | 3.00 / 0.65 | pread 1.1x / 2.5x |
//! | rewrite seq / random, pool 128 (all mapped, pages faulted) | 2.87 / 2.71 | 4.59 / 4.19 | mmap 1.6x / 1.5x |
//! | read seq / random, pool 128 | 4.71 / 4.32 | 6.69 / 5.63 | mmap 1.4x / 1.3x |
//! | verify 128 MiB page-cached, 2 threads | 2.60 | 2.81 | mmap 1.08x |
//!
//! Writing a download touches every page once: with mmap each first touch
//! is a page fault (plus `page_mkwrite` on the filesystem), and with a pool
//! smaller than the working set every eviction is an `munmap` (TLB
//! shootdown) followed by fresh faults; a `pwrite` is one syscall and a
//! copy. mmap only wins once every file stays mapped and its pages are
//! already faulted in (long seeding of a torrent with few files), by
//! 1.3-1.6x. Positioned IO also cannot die of `SIGBUS`: its only maps are
//! read-only, read by the kernel (uploads) or by hashing under a `SIGBUS`
//! guard. Pick [`Backend::Mmap`] explicitly for that seeding case.
//!
//! # Hash sources and the `SIGBUS` guard
//! Hashing reads file bytes with `pread` into page-aligned buffers by
//! default ([`HashSource::Read`]). [`HashSource::Map`]
//! ([`Storage::with_hash_source`]) hashes straight from read-only maps
//! instead, one copy less per verified byte: in a transfer the copy
//! competes with the network path for the CPU (1 GiB bittern to bittern,
//! leecher CPU 1.32 against 1.68 s; engine/DESIGN.md "Measured choices").
//! For a recheck of page-cached data (`bittern verify`, 1 GiB, 256 KiB
//! pieces, 2 threads) maps cost 0.51 s of CPU (system 0.02) against 0.62 s
//! (system 0.17) for aligned reads, and they do not depend on how fast
//! the CPU copies into a given destination (see [`AlignedBuf`]); so
//! `bittern verify` and the engine pick maps, and reads are the fallback.
//!
//! [`hash_files`] (torrent creation) runs the same lanes and picks maps
//! whenever the guard is installed, for the same reason: `bittern create`
//! of 1 GiB (256 KiB pieces, 11 alternating runs on a shared 2-core Intel
//! Xeon with SHA-NI) took median CPU 0.62 s (user 0.54, system 0.08)
//! from maps against 0.71 s (user 0.50, system 0.22) with aligned
//! `pread`, and 0.81 s (user 0.61, system 0.21) for `mktorrent -t 2`.
//! Bulk hashing (verification of many pieces, creation) also drops the
//! page-table entries of the map pages it hashed, group by group
//! (`madvise(MADV_DONTNEED)`; the page cache keeps the pages): otherwise
//! the thread that drops a 1 GiB map at the end tears down 262,144
//! entries alone after both hashing threads have finished, about 30 ms
//! of serial CPU (perf, `bittern verify` of 1 GiB) that is now spread
//! over the hashing threads.
//!
//! A file cut by another program while it is hashed from a map would
//! raise `SIGBUS`, so maps are read only under a guard that **the program
//! must install itself**, once, from `main`: [`install_sigbus_guard`]
//! (the `bittern` binary does). The crate never changes a signal
//! disposition on its own. Without the guard (or if other code replaced
//! it later), [`HashSource::Map`] falls back to reads. The guard handles
//! only faults in the bytes a thread of this crate is hashing at that
//! moment (the page reads as zeros, every piece that read it fails with
//! [`Error::FileTooShort`], in any thread) and passes every other `SIGBUS`
//! to the handler installed before it, run as the kernel would have run it
//! (its `SA_RESETHAND`, `sa_mask` and `SA_SIGINFO` honoured).
//!
//! The guarded path is Linux-only (it relies on `mmap` being a raw system
//! call, async-signal-safe, and on glibc/musl's `__errno_location`); the
//! crate as a whole builds for Linux only (`fallocate`,
//! `sync_file_range`, `cachestat`).
//!
//! Either way, files shorter than 256 KiB are read and written with
//! positioned IO: mapping a file of a few pages (`mmap`, a fault, an
//! `munmap` with a TLB shootdown) costs more than copying it. On the
//! 1,000-file `dir256` set (734 files under 64 KiB) that made `bittern
//! verify` use about 5% less CPU. Creation keeps the same threshold (not
//! measured apart): in a perf profile of `bittern create` of `dir256`,
//! the 190 files of 256 KiB or more (241.5 MiB) cost 19% of the CPU in
//! page faults, the 810 smaller ones (14.5 MiB) 5.6% in `pread`, a cost
//! per file rather than per byte, which a map (an `mmap`, a fault and an
//! `munmap` in place of one `pread`) would not lower.
//!
//! # Environment
//! - `BITTERN_NO_AVX512=1`: never hash through the sixteen-lane AVX-512
//!   SHA-1 / SHA-256 kernels, even on a CPU that has AVX-512F and
//!   AVX-512BW; hashing takes the paths a CPU without AVX-512 takes (the
//!   SHA extensions where present, else the portable `sha1`/`sha2`
//!   crates). The hashes are the same either way; this exists to measure
//!   on one machine what a machine without AVX-512 gets
//!   (`benches/v2/tools_bench.py --extra-bittern-env`). Read once, at the
//!   first hash of the process; any value but empty, `0`, `false`, `no`
//!   and `off` turns AVX-512 off.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use bittern_storage::{hash_blocks, Backend, FilePool, FileSpec, Layout, Storage};
//!
//! # fn main() -> Result<(), bittern_storage::Error> {
//! let dir = std::env::temp_dir().join(format!("bittern-doc-{}", std::process::id()));
//! let data = b"hello, world";
//! let files = vec![
//!     FileSpec { path: "a.txt".into(), length: 5, padding: false },
//!     FileSpec { path: "sub/b.txt".into(), length: 7, padding: false },
//! ];
//! let hashes = vec![hash_blocks([&data[..8]]), hash_blocks([&data[8..]])];
//! let layout = Layout::new(files, 8, hashes)?;
//! let storage = Storage::new(layout, dir.clone(), Arc::new(FilePool::default()), Backend::default())?;
//! storage.write_block(0, 0, &data[..8])?; // spans a.txt and sub/b.txt
//! storage.write_block(1, 0, &data[8..])?;
//! storage.flush_piece(0)?;
//! let mut buf = [0u8; 4];
//! storage.read_block(0, 3, &mut buf)?;
//! assert_eq!(&buf, b"lo, ");
//! let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
//! assert_eq!(storage.verify_all(&pool, &|_, _| {})?, vec![true, true]);
//! # drop(storage);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod avx512;
mod backend;
mod buf;
mod error;
mod file;
mod hash;
mod lanes;
mod layout;
pub mod merkle;
mod path;
mod pool;
#[cfg(all(test, target_arch = "x86_64"))]
mod rates;
mod resume;
mod send;
mod sha;
mod sha256;
mod sigbus;
mod storage;
#[cfg(test)]
mod testutil;
mod verify_v2;
#[cfg(all(test, target_arch = "x86_64"))]
mod wide_tests;

pub use buf::{AlignedBuf, PAGE_ALIGN};
pub use error::{Error, Result, ResumeCorruption};
#[doc(hidden)]
pub use hash::set_read_buffer_offset;
pub use hash::{
    hash_blocks, hash_files, hash_files_hybrid, hash_files_padded, hash_files_v2_aligned,
    hash_many, PieceHasher,
};
pub use layout::{FileSpec, Layout, Span, Spans};
pub use pool::{FilePool, DEFAULT_MAX_OPEN};
pub use resume::{boot_id, FileStamp, ResumeState};
pub use send::{send_vectored, BlockSource, Chunk, SendError};
pub use storage::{Backend, HashSource, Storage};

/// Installs, process-wide, the `SIGBUS` guard that lets hashing read files
/// through maps ([`HashSource::Map`]) without dying when another program
/// truncates a file mid-hash. Call it once from the program's `main`, before
/// threads that install their own `SIGBUS` handlers; a library must not
/// call it on its host's behalf. The handler in place before it keeps every
/// fault that is not a guarded read of this crate, run as the kernel would
/// have run it (its `SA_RESETHAND`, `sa_mask`, `SA_NODEFER` and
/// `SA_SIGINFO` honoured; on the guard's signal stack).
///
/// Idempotent while the guard is still the handler. Linux only.
///
/// # Errors
/// The `sigaction` error; `EBUSY` when the guard was installed before and
/// other code has since replaced it (it is not installed again in front of
/// a handler that may chain back to it).
pub fn install_sigbus_guard() -> std::io::Result<()> {
    sigbus::install()
}

/// True when [`install_sigbus_guard`] installed the guard and it is still
/// the process's `SIGBUS` handler, so [`HashSource::Map`] reads maps.
pub fn sigbus_guard_installed() -> bool {
    sigbus::available()
}

/// How many pieces [`Storage::hash_pieces`] (and [`hash_many`]) hash side
/// by side: callers that batch pieces for verification batch this many.
pub const HASH_LANES: usize = sha::LANES;

/// The rayon version this crate's verification API takes a `ThreadPool` from.
pub use rayon;
