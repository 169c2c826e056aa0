//! Small fixtures every suite wants: seeded random data on disk, a free
//! loopback port, polling with a deadline, byte-for-byte tree comparison,
//! and a test re-run alone in a child process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// `len` pseudo-random bytes from `seed` (the same bytes for the same
/// seed, on every machine).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    data
}

/// Writes [`random_bytes`]`(size, seed)` to `path` (creating its parents)
/// and returns them.
pub fn random_file(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    let data = random_bytes(size, seed);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    std::fs::write(path, &data).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    data
}

/// A free TCP port on 127.0.0.1 (for programs that cannot take port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after
/// `limit`.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "no {what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` every 20 ms for up to `limit`; whether it held (asked once
/// more at the deadline).
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Asserts that the files named by `paths` are byte-identical under the
/// directories `a` and `b` (panics naming a missing or differing one).
#[track_caller]
pub fn assert_same_files(a: &Path, b: &Path, paths: &[PathBuf]) {
    for p in paths {
        let x = std::fs::read(a.join(p)).unwrap_or_else(|e| panic!("{}: {e}", a.join(p).display()));
        let y = std::fs::read(b.join(p)).unwrap_or_else(|e| panic!("{}: {e}", b.join(p).display()));
        assert!(x == y, "{} differs", p.display());
    }
}

/// Set in the child that runs an isolated test.
const ISOLATED_ENV: &str = "BITTERN_ISOLATED_TEST";

/// Runs the test `name` (its full path in the test binary,
/// `module::test`) alone in a child process of the same binary, with the
/// extra environment `env`, and asserts it passed there: returns true, and
/// the caller (the parent) is done. In that child it returns false and the
/// caller runs the test body. For tests that measure the whole process
/// (threads, fds, memory), which the tests beside them would inflate.
#[track_caller]
pub fn isolated_with(name: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var(ISOLATED_ENV).as_deref() == Ok(name) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(ISOLATED_ENV, name)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot re-run the test binary for {name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "isolated {name} failed:\n{stdout}\n{stderr}"
    );
    true
}

/// A field (in its first unit, e.g. kB) of `/proc/self/status`, such as
/// `"VmRSS:"` or `"Threads:"`; 0 when absent.
pub fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// This process's resident set, KiB.
pub fn rss_kib() -> u64 {
    proc_status("VmRSS:")
}

/// How many file descriptors this process holds open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Threads of this process whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

/// This process's user + system CPU time (10 ms clock ticks).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the ")" of the command name; utime and stime are 14, 15
    let rest = stat.rsplit(')').next().unwrap_or("");
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Raises this process's soft limit on open files (to its hard limit, at
/// most 8192) so that 1,000 client sockets fit under a 1,024 default.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur = lim.rlim_max.min(8192).max(lim.rlim_cur);
        // SAFETY: a valid rlimit; failure leaves the old limit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// The venv interpreter with PyPI's transmission-rpc that
/// `scripts/test.sh` makes at `target/interop-venv`
/// (`BITTERN_TRPC_PYTHON` overrides).
pub fn trpc_python() -> PathBuf {
    std::env::var_os("BITTERN_TRPC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/interop-venv/bin/python")
        })
}

/// Whether [`trpc_python`] imports `transmission_rpc` ([`crate::require`]
/// decides skip or fail).
#[track_caller]
pub fn trpc_available() -> bool {
    let python = trpc_python();
    let available = std::process::Command::new(&python)
        .args(["-c", "import transmission_rpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    crate::require(
        &format!(
            "the Python transmission-rpc package at {} (scripts/test.sh makes the venv)",
            python.display()
        ),
        available,
    )
}

/// Whether `e` is a socket read or write timing out (`WouldBlock` or
/// `TimedOut`, as a read timeout reports), not a real failure.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// `len` deterministic pseudo-random bytes (xorshift32 from `seed`): cheap
/// filler for wire and format tests.
pub fn xorshift_bytes(seed: u32, len: usize) -> Vec<u8> {
    xorshift32_stream(seed.wrapping_mul(2_654_435_761).max(1), len)
}

/// `len` bytes, the low byte of each step of xorshift32 from the state
/// `x` (which must not be 0).
pub fn xorshift32_stream(mut x: u32, len: usize) -> Vec<u8> {
    low_bytes(len, || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        u64::from(x)
    })
}

/// The low byte of each of `len` values drawn from `next`.
fn low_bytes(len: usize, mut next: impl FnMut() -> u64) -> Vec<u8> {
    (0..len).map(|_| next() as u8).collect()
}

/// `len` bytes, the low byte of each step of xorshift64 from `seed | 1`.
pub fn xorshift64_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    low_bytes(len, || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_streams_are_the_known_sequences() {
        // the low bytes of the first steps of xorshift32 and xorshift64
        // from 1
        assert_eq!(xorshift32_stream(1, 3), vec![0x21, 0x01, 0xc5]);
        assert_eq!(xorshift64_bytes(3, 0), vec![0x41, 0x41, 0x29]);
        assert_eq!(random_bytes(64, 7), random_bytes(64, 7));
        assert_ne!(random_bytes(64, 7), random_bytes(64, 8));
    }
}
