//! A full disk is a typed error, not a crash, and loses nothing verified.
//!
//! Mounts a 2 MiB tmpfs (needs root / CAP_SYS_ADMIN); when that is not
//! possible the test is skipped with the reason printed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bittern_storage::{Backend, Error, FilePool, Storage};

use crate::util::*;

/// Unmounts on drop, so a failing test never leaves the mount behind.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        let c = |s: &[u8]| CString::new(s).unwrap();
        let target = c(dir.as_os_str().as_bytes());
        let (src, fstype, opts) = (
            c(b"tmpfs"),
            c(b"tmpfs"),
            c(format!("size={size}").as_bytes()),
        );
        // SAFETY: all pointers are valid NUL-terminated strings for the call.
        let r = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                opts.as_ptr().cast(),
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error().to_string());
        }
        Ok(Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid NUL-terminated path. MNT_DETACH so a lingering open
        // file cannot keep the mount alive.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn disk_full_is_an_error_and_keeps_verified_pieces() {
    for backend in [Backend::Mmap, Backend::PositionedIo] {
        let dir = tempfile::tempdir().unwrap();
        let _mount = match Mount::tmpfs(dir.path(), "2m") {
            Ok(m) => m,
            Err(e) => {
                eprintln!(
                    "SKIPPED disk_full test: cannot mount tmpfs at {} ({e}); needs root",
                    dir.path().display()
                );
                return;
            }
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
