//! Test support shared by the bittern workspace's tests (a dev-dependency
//! only; never published).
//!
//! Some tests need something a machine may lack: a real client installed,
//! root to mount a tmpfs, a temp dir on a disk rather than in memory, a
//! kernel call. Every such test asks [`require`] (or a helper built on it)
//! and follows one rule: when the thing is missing the test prints a loud
//! skip notice and returns, unless [`REQUIRE_ENV`] is `1`, in which case
//! it fails. `scripts/test.sh` (and so CI, which runs as root) sets it, so
//! CI never passes a test that did not run.
//!
//! It is also the one home of the fixtures the suites share: seeded random
//! files, ports, polling, isolated re-runs ([`fixture`], re-exported here),
//! the child processes tests drive ([`procs`]), and the real clients:
//! libtorrent through the one copy of each helper script in
//! `testkit/scripts/` ([`libtorrent`]), transmission-cli ([`transmission`])
//! and aria2c ([`aria2`]).

pub mod aria2;
pub mod fixture;
pub mod libtorrent;
pub mod netns;
pub mod opentracker;
pub mod procs;
pub mod transmission;
pub mod webdriver;

pub use fixture::*;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The variable that turns every skip into a failure when set to `1`.
pub const REQUIRE_ENV: &str = "BITTERN_REQUIRE_INTEROP";

/// Whether missing prerequisites fail tests (`BITTERN_REQUIRE_INTEROP=1`)
/// rather than skip them.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).as_deref() == Ok("1")
}

/// Returns `available`; when it is false, panics if [`required`], else
/// prints a loud skip notice naming `what` (the caller then returns).
///
/// ```
/// if !bittern_testkit::require("a tool", true) {
///     return;
/// }
/// ```
#[track_caller]
pub fn require(what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if required() {
        panic!("{what} is required ({REQUIRE_ENV}=1) but unavailable");
    }
    eprintln!("\n*** SKIPPED: {what} is not available on this machine ***\n");
    false
}

/// Whether an executable named `name` is on `PATH` (or is itself an
/// existing path, when it contains a `/`).
pub fn on_path(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

/// Whether this process runs as root (so it can mount a tmpfs).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `path` lies on a tmpfs (whose pages never go to disk).
pub fn is_tmpfs(path: &Path) -> io::Result<bool> {
    const TMPFS_MAGIC: libc::c_long = 0x0102_1994;
    let c = cstring(path)?;
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut fs) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width varies by target
    Ok(fs.f_type as libc::c_long == TMPFS_MAGIC)
}

/// A temp dir on a real filesystem, not tmpfs, for tests that measure the
/// page cache's dirty pages or writeback: the default temp dir, else
/// `/var/tmp`. `None` (after [`require`]) when both are on tmpfs.
#[track_caller]
pub fn disk_tempdir() -> Option<tempfile::TempDir> {
    let candidates = [std::env::temp_dir(), PathBuf::from("/var/tmp")];
    let found = candidates
        .iter()
        .find(|d| is_tmpfs(d).is_ok_and(|t| !t))
        .map(|d| {
            tempfile::tempdir_in(d)
                .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", d.display()))
        });
    let ok = found.is_some();
    if require("a temp dir off tmpfs (TMPDIR or /var/tmp on a disk)", ok) {
        found
    } else {
        None
    }
}

/// A tmpfs mounted over a directory for one test, unmounted (lazily, so a
/// file left open cannot keep it) on drop.
#[derive(Debug)]
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `"2m"`) at
    /// `dir`. Needs root: `None` (after [`require`]) when the mount fails.
    #[track_caller]
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        match mount(dir, size, 0) {
            Ok(()) => Some(Tmpfs(dir.to_path_buf())),
            Err(e) => {
                let what = format!("mounting a tmpfs at {} ({e}; needs root)", dir.display());
                require(&what, false);
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Grows or shrinks it to `size`; panics when the kernel refuses.
    pub fn resize(&self, size: &str) {
        if let Err(e) = mount(&self.0, size, libc::MS_REMOUNT) {
            panic!("remounting {} with size={size}: {e}", self.0.display());
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = cstring(&self.0) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn mount(dir: &Path, size: &str, flags: libc::c_ulong) -> io::Result<()> {
    let target = cstring(dir)?;
    let fstype = c"tmpfs";
    let opts = CString::new(format!("size={size}"))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            opts.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_passes_what_is_available() {
        assert!(require("something present", true));
    }

    #[test]
    fn a_tmpfs_mount_is_a_tmpfs_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let Some(fs) = Tmpfs::mount(dir.path(), "1m") else {
            return;
        };
        assert!(is_tmpfs(fs.path()).unwrap());
        fs.resize("2m");
        assert!(is_tmpfs(fs.path()).unwrap());
        drop(fs);
        assert_eq!(
            is_tmpfs(dir.path()).unwrap(),
            is_tmpfs(&std::env::temp_dir()).unwrap()
        );
    }

    #[test]
    fn a_disk_tempdir_is_off_tmpfs() {
        if let Some(d) = disk_tempdir() {
            assert!(!is_tmpfs(d.path()).unwrap());
        }
    }
}
