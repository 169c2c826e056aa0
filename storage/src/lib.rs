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
//!   side by side ([`Storage::hash_pieces`], [`hash_many`]; [`HASH_LANES`];
//!   [`hash_pair`] for two): SHA-1 is about 2x (three) and 1.7x (two)
//!   faster per core than one at a time on CPUs with the SHA extensions.
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
//! # The `SIGBUS` guard
//! With [`Backend::PositionedIo`], verification hashes file data straight
//! from read-only maps instead of copying it out with `pread` first (one
//! copy less per verified byte: about 5% less CPU for four leechers on a
//! 2-core machine). A file cut by another program while it is hashed would
//! raise `SIGBUS`, so on first use the crate installs a process-wide
//! `SIGBUS` handler. It handles only faults in the bytes a thread of this
//! crate is hashing at that moment (the page reads as zeros, the piece
//! fails with [`Error::FileTooShort`]) and passes every other `SIGBUS` to
//! the handler installed before it. If other code replaces the handler
//! later, hashing notices and goes back to `pread`.
//!
//! Either way, files shorter than 256 KiB are read and written with
//! positioned IO: mapping a file of a few pages (`mmap`, a fault, an
//! `munmap` with a TLB shootdown) costs more than copying it. On the
//! 1,000-file `dir256` set (734 files under 64 KiB) that made `bittern
//! verify` use about 5% less CPU.
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

mod error;
mod file;
mod hash;
mod layout;
mod path;
mod pool;
mod resume;
mod send;
mod sha;
mod sigbus;
mod storage;
#[cfg(test)]
mod testutil;

pub use error::{Error, Result, ResumeCorruption};
pub use hash::{hash_blocks, hash_files, hash_many, hash_pair, PieceHasher};
pub use layout::{FileSpec, Layout, Span, Spans};
pub use pool::{FilePool, DEFAULT_MAX_OPEN};
pub use resume::{boot_id, FileStamp, ResumeState};
pub use send::{send_vectored, BlockSource, Chunk, SendError};
pub use storage::{Backend, Storage};

/// How many pieces [`Storage::hash_pieces`] (and [`hash_many`]) hash side
/// by side: callers that batch pieces for verification batch this many.
pub const HASH_LANES: usize = sha::LANES;

/// The rayon version this crate's verification API takes a `ThreadPool` from.
pub use rayon;
