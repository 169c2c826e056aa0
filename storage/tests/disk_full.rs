//! A full disk is a typed error, not a crash, and loses nothing verified.
//!
//! Mounts a 2 MiB tmpfs (needs root / CAP_SYS_ADMIN); when that is not
//! possible the test is skipped with the reason printed, or fails under
//! `BITTERN_REQUIRE_INTEROP=1`.

use std::sync::Arc;

use bittern_storage::{Backend, Error, FilePool, Storage};
use bittern_testkit::Tmpfs;

use crate::util::*;

#[test]
fn disk_full_is_an_error_and_keeps_verified_pieces() {
    for backend in [Backend::Mmap, Backend::PositionedIo] {
        let dir = tempfile::tempdir().unwrap();
        let Some(_mount) = Tmpfs::mount(dir.path(), "2m") else {
            return;
        };
        let ballast = dir.path().join("ballast");
        std::fs::write(&ballast, vec![1u8; 1 << 20]).unwrap();
        let root = dir.path().join("t");
        // File 0 (512 KiB) fits beside the ballast, file 1 (768 KiB) does not.
        let lengths = [512 * 1024u64, 768 * 1024];
        let data = random_bytes(1280 * 1024, 11);
        let pl = 256 * 1024;
        let s = Storage::new(
            layout(&lengths, pl, &data),
            root,
            Arc::new(FilePool::new(4)),
            backend,
        )
        .unwrap();
        let write_piece = |p: usize| -> Result<(), Error> {
            let piece = &data[p * pl as usize..(p + 1) * pl as usize];
            for (b, block) in piece.chunks(16384).enumerate() {
                s.write_block(p, (b * 16384) as u64, block)?;
            }
            s.flush_piece(p)
        };
        write_piece(0).unwrap();
        write_piece(1).unwrap();
        let r = write_piece(2);
        assert!(
            matches!(r, Err(Error::DiskFull { .. })),
            "{backend:?}: {r:?}"
        );
        // Still alive, and the verified pieces are intact.
        let pool = rayon_pool(2);
        let v = s.verify_all(&pool, &|_, _| {}).unwrap();
        assert_eq!(v, vec![true, true, false, false, false], "{backend:?}");
        // Free space and finish.
        std::fs::remove_file(&ballast).unwrap();
        for p in 2..5 {
            write_piece(p).unwrap();
        }
        assert_eq!(s.verify_all(&pool, &|_, _| {}).unwrap(), vec![true; 5]);
        drop(s);
    }
}
