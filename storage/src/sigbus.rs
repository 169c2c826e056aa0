//! Reading a file's pages through a memory map in user space without dying
//! when another program truncates the file. Linux only (the handler relies
//! on `mmap` being a raw system call, safe in a signal handler, and on
//! `__errno_location`).
//!
//! Touching a mapped page that lies past the end of its file raises
//! `SIGBUS`, and the default action ends the process. Verification can
//! hash pieces straight from read-only maps (no copy into a buffer), so a
//! file cut by another program in the middle of a hash would kill a
//! session that is otherwise careful to turn every IO failure into an
//! error.
//!
//! [`guarded`] closes that: while it runs, this thread's reads of the
//! ranges it was given are watched. A `SIGBUS` for an address inside one of
//! them is answered by placing a page of zeros over the faulting page
//! (`mmap` with `MAP_FIXED`); the read then completes with zeros and
//! [`guarded`] reports the range as faulted, so the caller throws the
//! result away and reports an error. Before the zero page goes in, the
//! handler lowers the range's *zero mark* (the file's, shared by every
//! thread reading that map) to the page's address, so any other reader
//! that hashed the zero page without faulting itself (another lane sharing
//! the page, another verifier thread) finds out when it checks its chunk,
//! and fails too instead of returning a wrong hash.
//!
//! Any other `SIGBUS` (another thread, another address, a `kill`) goes to
//! the handler that was installed before ours, run as the kernel would
//! have run it: with its `sa_mask` blocked (plus `SIGBUS` unless it asked
//! for `SA_NODEFER`), reset to the default first if it asked for
//! `SA_RESETHAND`, called with one argument or three as `SA_SIGINFO` says.
//! It runs on the stack our handler was given (we ask for `SA_ONSTACK`).
//! With no previous handler the default action is restored and the fault
//! repeats, ending the process as it would have without us.
//!
//! Nothing is installed unless the program asks: [`install`] (the public
//! `install_sigbus_guard`) is process-wide and meant to be called once by
//! the program's `main`, never by a library on its own. If some other code
//! later replaces the handler, [`available`] notices and callers fall back
//! to positioned reads rather than read a map unguarded.
//!
//! Limits, as with every such guard: the old disposition is read and ours
//! installed in two calls, so a handler installed by another thread in
//! between is dropped from the chain; the thread-locals are
//! const-initialised and read directly in an executable, but in a
//! `dlopen`ed library a thread's first access may go through
//! `__tls_get_addr`, which may allocate.

use std::sync::atomic::{compiler_fence, AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::sha::MAX_LANES as LANES;

thread_local! {
    /// The address ranges this thread is reading under guard: range `i` is
    /// `[RANGES[2i], RANGES[2i+1])`, `(0, 0)` when unused. Atomics (read
    /// and written `Relaxed`) because the signal handler reads them on
    /// this thread; const-initialised and without a destructor, so the
    /// handler touches no lazy initialisation.
    static RANGES: [AtomicUsize; 2 * LANES] = const { [const { AtomicUsize::new(0) }; 2 * LANES] };
    /// Range `i`'s zero mark (its file's): the handler lowers it to the
    /// address of a zero page before placing it in that range; null when
    /// unused.
    static POISON: [AtomicPtr<AtomicUsize>; LANES] =
        const { [const { AtomicPtr::new(std::ptr::null_mut()) }; LANES] };
    /// Bit `i` set: a read in range `i` faulted and got zeros.
    static FAULTED: AtomicU32 = const { AtomicU32::new(0) };
}

/// Set once our handler is installed (it stays set: if another handler
/// replaced ours, [`available`] sees that in the disposition).
static INSTALLED: AtomicBool = AtomicBool::new(false);
static INSTALL_LOCK: Mutex<()> = Mutex::new(());
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// The `SIGBUS` disposition in place before ours, for faults not ours.
struct Prev(libc::sigaction);
// SAFETY: plain data (a handler address, flags and a signal mask), written
// once before the handler that reads it is installed, never written again.
unsafe impl Sync for Prev {}
unsafe impl Send for Prev {}
static PREV: OnceLock<Prev> = OnceLock::new();

/// Installs the guard as the process's `SIGBUS` handler, chaining to the
/// one in place. Idempotent: a second call while ours is still the
/// handler does nothing; a call after someone replaced ours installs it
/// again in front of theirs only if no previous disposition was recorded
/// (the chain is recorded once), else fails with `EBUSY`.
pub(crate) fn install() -> std::io::Result<()> {
    let _one = INSTALL_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if available() {
        return Ok(());
    }
    if PREV.get().is_some() {
        // Ours was replaced: re-installing would chain to a handler that
        // may itself chain to us.
        return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
    }
    // SAFETY: plain libc calls with valid pointers. `PREV` is set before
    // the handler that reads it is installed.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE);
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let _ = PREV.set(Prev(old));
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler_address();
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut new.sa_mask);
        if libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    INSTALLED.store(true, Ordering::Release);
    Ok(())
}

/// True when the guard was installed ([`install`]) and is still the
/// process's `SIGBUS` handler (one `sigaction` query). Never installs.
pub(crate) fn available() -> bool {
    if !INSTALLED.load(Ordering::Acquire) {
        return false;
    }
    // SAFETY: querying the disposition only; `cur` is a valid out pointer.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == handler_address()
    }
}

/// One guarded range: the bytes a read may touch, and the mark to lower to
/// the address of any page of them replaced by zeros (for every reader of
/// that map).
#[derive(Clone, Copy, Default)]
pub(crate) struct Range<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) poison: Option<&'a AtomicUsize>,
}

/// Clears this thread's guarded ranges when dropped, so a panic inside the
/// guarded read cannot leave stale ranges armed (which would swallow a
/// later, unrelated fault at those addresses).
struct Armed;

impl Drop for Armed {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        RANGES.with(|r| r.iter().for_each(|slot| slot.store(0, Ordering::Relaxed)));
        POISON.with(|p| {
            p.iter()
                .for_each(|slot| slot.store(std::ptr::null_mut(), Ordering::Relaxed))
        });
        compiler_fence(Ordering::SeqCst);
    }
}

/// Runs `read` (which may touch the bytes of `ranges`, slices of file
/// maps) with those ranges guarded, and returns its result and, per range,
/// whether a read in it faulted. A faulted range was read as zeros in
/// place of the missing pages; the map holding it now has zero pages in
/// it, and the range's zero mark is at most the first zero page's address.
///
/// Only guards when [`available`] said so; callers check that first.
pub(crate) fn guarded<R, const N: usize>(
    ranges: [Range<'_>; N],
    read: impl FnOnce() -> R,
) -> (R, [bool; N]) {
    const { assert!(N <= LANES && LANES <= 32) };
    RANGES.with(|r| {
        for (i, range) in ranges.iter().enumerate() {
            let start = range.bytes.as_ptr() as usize;
            r[2 * i].store(start, Ordering::Relaxed);
            r[2 * i + 1].store(start + range.bytes.len(), Ordering::Relaxed);
        }
    });
    POISON.with(|p| {
        for (slot, range) in p.iter().zip(&ranges) {
            let flag = range
                .poison
                .map_or(std::ptr::null_mut(), |f| std::ptr::from_ref(f).cast_mut());
            slot.store(flag, Ordering::Relaxed);
        }
    });
    FAULTED.with(|f| f.store(0, Ordering::Relaxed));
    let armed = Armed;
    // The handler runs on this thread: the compiler must not move the
    // guarded reads above the stores to `RANGES`, nor below the clearing.
    compiler_fence(Ordering::SeqCst);
    let out = read();
    drop(armed);
    let bits = FAULTED.with(|f| f.swap(0, Ordering::Relaxed));
    (out, std::array::from_fn(|i| bits & (1 << i) != 0))
}

fn handler_address() -> libc::sighandler_t {
    on_sigbus as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Faults from memory accesses only (a `kill` carries no address).
    if code > 0 && recover(addr) {
        return;
    }
    // Not ours: hand it on.
    // SAFETY: `PREV` was set before this handler was installed.
    unsafe { chain(sig, info, ctx) }
}

/// If `addr` lies in a range this thread reads under guard: lowers the
/// range's zero mark, places a zero page over the faulting page, records
/// the fault and returns true.
fn recover(addr: usize) -> bool {
    let hit = RANGES.with(|r| {
        (0..LANES).find(|&i| {
            let start = r[2 * i].load(Ordering::Relaxed);
            let end = r[2 * i + 1].load(Ordering::Relaxed);
            start <= addr && addr < end
        })
    });
    let Some(i) = hit else {
        return false;
    };
    let page = PAGE.load(Ordering::Relaxed);
    let base = addr & !(page - 1);
    // Every reader of this map must learn that this page of it now reads
    // as zeros: mark it before the page goes in.
    let mark = POISON.with(|p| p[i].load(Ordering::Relaxed));
    // SAFETY: a non-null mark points to the `AtomicUsize` of an `OpenFile`
    // that `guarded`'s caller borrows for the whole guarded read.
    if let Some(mark) = unsafe { mark.as_ref() } {
        mark.fetch_min(base, Ordering::SeqCst);
    }
    // SAFETY: `base` is a page of a file map this thread is reading under
    // `guarded`; replacing it with zeros is what the guard promises the
    // caller. errno is saved and restored around the call, as a handler
    // must. `mmap` is a plain system call on Linux.
    let done = unsafe {
        let errno = *libc::__errno_location();
        let p = libc::mmap(
            base as *mut libc::c_void,
            page,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        );
        *libc::__errno_location() = errno;
        p != libc::MAP_FAILED
    };
    if done {
        FAULTED.with(|f| f.fetch_or(1 << i, Ordering::Relaxed));
    }
    done
}

/// Runs the disposition in place before ours for `sig`, emulating what
/// the kernel does for it: `SA_RESETHAND` (reset to the default first),
/// `sa_mask` and `SA_NODEFER` (signals blocked while it runs), and
/// `SA_SIGINFO` (which signature it has). With no handler to call, restores
/// the default and returns, so the access faults again and the process
/// ends as it would have without us.
///
/// # Safety
/// Only from the `SIGBUS` handler, with the arguments the kernel passed.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let Some(Prev(prev)) = PREV.get() else {
        libc::signal(sig, libc::SIG_DFL);
        return;
    };
    let handler = prev.sa_sigaction;
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Ignoring cannot stop a fault from repeating: default either way.
        libc::signal(sig, libc::SIG_DFL);
        return;
    }
    if prev.sa_flags & libc::SA_RESETHAND != 0 {
        // The kernel resets a one-shot handler before running it; a handler
        // that returns then sees the fault repeat under the default action.
        libc::signal(sig, libc::SIG_DFL);
    }
    let mut mask = prev.sa_mask;
    if prev.sa_flags & libc::SA_NODEFER == 0 {
        libc::sigaddset(&mut mask, sig);
    }
    let mut old: libc::sigset_t = std::mem::zeroed();
    // pthread_sigmask is async-signal-safe (a plain rt_sigprocmask).
    libc::pthread_sigmask(libc::SIG_BLOCK, &mask, &mut old);
    if prev.sa_flags & libc::SA_SIGINFO != 0 {
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            std::mem::transmute(handler);
        f(sig, info, ctx);
    } else {
        let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler);
        f(sig);
    }
    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapOptions;
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;

    fn mapped_then_cut() -> (tempfile::NamedTempFile, memmap2::Mmap) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 64 * 1024]).unwrap();
        f.flush().unwrap();
        // SAFETY: test: the file is cut below on purpose.
        let map = unsafe { MmapOptions::new().map(f.as_file()).unwrap() };
        f.as_file().set_len(8 * 1024).unwrap();
        (f, map)
    }

    fn plain(bytes: &[u8]) -> Range<'_> {
        Range {
            bytes,
            poison: None,
        }
    }

    /// A read past the new end of a cut file completes with zeros and is
    /// reported for its range only, with that range's poison flag raised;
    /// the bytes still in the file read as they are.
    #[test]
    fn a_read_past_a_cut_end_is_reported_not_fatal() {
        install().unwrap();
        assert!(available());
        let (_f, map) = mapped_then_cut();
        let (head, tail) = map.split_at(32 * 1024);
        let (p_head, p_tail) = (AtomicUsize::new(usize::MAX), AtomicUsize::new(usize::MAX));
        let ranges = [
            Range {
                bytes: head,
                poison: Some(&p_head),
            },
            Range {
                bytes: tail,
                poison: Some(&p_tail),
            },
            Range::default(),
        ];
        let (sums, faulted) = guarded(ranges, || {
            let a: u64 = head.iter().map(|&b| u64::from(b)).sum();
            let b: u64 = tail.iter().map(|&b| u64::from(b)).sum();
            (a, b)
        });
        // The first 8 KiB are still file data; the rest of `head` faulted.
        assert_eq!(sums, (8 * 1024 * 7, 0));
        assert_eq!(faulted, [true, true, false]);
        // The first zero page of each: just past the cut, and tail's start.
        let base = map.as_ptr() as usize;
        assert_eq!(p_head.load(Ordering::SeqCst), base + 8 * 1024);
        assert_eq!(p_tail.load(Ordering::SeqCst), base + 32 * 1024);
        // The guard is off again: nothing stays registered.
        let (_, faulted) = guarded([Range::default(); LANES], || ());
        assert_eq!(faulted, [false; LANES]);
    }

    /// Reads inside the file fault nowhere and poison nothing.
    #[test]
    fn reads_inside_the_file_are_not_flagged() {
        install().unwrap();
        let (_f, map) = mapped_then_cut();
        let head = &map[..8 * 1024];
        let poison = AtomicUsize::new(usize::MAX);
        let ranges = [
            Range::default(),
            Range {
                bytes: head,
                poison: Some(&poison),
            },
            Range::default(),
        ];
        let (sum, faulted) = guarded(ranges, || head.iter().map(|&b| u64::from(b)).sum::<u64>());
        assert_eq!(sum, 8 * 1024 * 7);
        assert_eq!(faulted, [false; 3]);
        assert_eq!(poison.load(Ordering::SeqCst), usize::MAX);
    }

    /// A panic inside the guarded read disarms the ranges all the same.
    #[test]
    fn a_panic_inside_guarded_disarms_the_ranges() {
        let bytes = [1u8; 64];
        let r = std::panic::catch_unwind(|| {
            guarded([plain(&bytes), plain(&bytes), plain(&bytes)], || {
                panic!("boom");
            })
        });
        assert!(r.is_err());
        let armed = RANGES.with(|r| r.iter().map(|s| s.load(Ordering::Relaxed)).sum::<usize>());
        let flags = POISON.with(|p| {
            p.iter()
                .filter(|s| !s.load(Ordering::Relaxed).is_null())
                .count()
        });
        assert_eq!((armed, flags), (0, 0));
    }

    /// Runs the test `name` of this binary alone in a child process with
    /// `BITTERN_SIGBUS_CHILD` set (the child part of a test that crashes).
    fn child(name: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1", "--nocapture"])
            .env("BITTERN_SIGBUS_CHILD", "1")
            .output()
            .unwrap()
    }

    /// True in the child process of a test; also turns off core files
    /// (the child is expected to crash).
    fn in_child() -> bool {
        if std::env::var_os("BITTERN_SIGBUS_CHILD").is_none() {
            return false;
        }
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain setrlimit with a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        true
    }

    /// Touches a mapped byte past the end of a cut file, unguarded.
    fn fault_unguarded() {
        let (_f, map) = mapped_then_cut();
        // Guarded elsewhere in the map first, so our handler is the one
        // that sees the unguarded fault and must pass it on.
        let (_, faulted) = guarded([plain(&map[..4096]), plain(&[]), plain(&[])], || map[0]);
        assert_eq!(faulted, [false; 3]);
        let v = std::hint::black_box(&map[40 * 1024]);
        println!("read {v} past the end: the fault was swallowed");
    }

    fn install_host(handler: libc::sighandler_t, flags: libc::c_int, mask: &[libc::c_int]) {
        // SAFETY: plain sigaction with a valid struct.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler;
            sa.sa_flags = flags;
            libc::sigemptyset(&mut sa.sa_mask);
            for &s in mask {
                libc::sigaddset(&mut sa.sa_mask, s);
            }
            assert_eq!(libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()), 0);
        }
    }

    fn current() -> libc::sigaction {
        // SAFETY: query only, valid out pointer.
        unsafe {
            let mut cur: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut cur);
            cur
        }
    }

    /// An unguarded read past the end still ends the process with SIGBUS:
    /// the guard hands faults that are not its own on.
    #[test]
    fn an_unguarded_fault_still_kills() {
        let out = child("sigbus::tests::child_reads_unguarded");
        assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
    }

    #[test]
    fn child_reads_unguarded() {
        if !in_child() {
            return;
        }
        install().unwrap();
        fault_unguarded();
    }

    static HOST_CALLS: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn host_log_and_return(_sig: libc::c_int) {
        let n = HOST_CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let msg = b"host handler called\n";
        // SAFETY: write and _exit are async-signal-safe.
        unsafe {
            libc::write(2, msg.as_ptr().cast(), msg.len());
            if n >= 10 {
                let msg = b"host handler looping\n";
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(9);
            }
        }
    }

    /// A host crash handler installed with `SA_RESETHAND` that logs and
    /// returns: the kernel would reset it before running it, so the
    /// repeated fault kills the process. Chained through the guard it must
    /// do the same, once, not loop (the review's `host_resethand`).
    #[test]
    fn a_resethand_host_handler_runs_once_and_the_fault_kills() {
        let out = child("sigbus::tests::child_resethand_host");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
        assert_eq!(stderr.matches("host handler called").count(), 1, "{stderr}");
    }

    #[test]
    fn child_resethand_host() {
        if !in_child() {
            return;
        }
        let host = host_log_and_return as extern "C" fn(libc::c_int) as libc::sighandler_t;
        install_host(host, libc::SA_RESETHAND, &[]);
        install().unwrap();
        fault_unguarded();
    }

    extern "C" fn host_reports_mask(
        _sig: libc::c_int,
        _info: *mut libc::siginfo_t,
        _ctx: *mut libc::c_void,
    ) {
        // SAFETY: rt_sigprocmask query and _exit, both async-signal-safe.
        unsafe {
            let mut cur: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
            let usr1 = libc::sigismember(&cur, libc::SIGUSR1) == 1;
            let bus = libc::sigismember(&cur, libc::SIGBUS) == 1;
            libc::_exit(if usr1 && bus { 42 } else { 43 });
        }
    }

    /// The host handler runs with its own `sa_mask` (SIGUSR1 here) and
    /// SIGBUS blocked, as the kernel would have run it, and gets its
    /// three arguments (`SA_SIGINFO`).
    #[test]
    fn a_chained_host_handler_runs_under_its_own_mask() {
        let out = child("sigbus::tests::child_masked_host");
        assert_eq!(out.status.code(), Some(42), "{out:?}");
    }

    #[test]
    fn child_masked_host() {
        if !in_child() {
            return;
        }
        let host = host_reports_mask
            as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t;
        install_host(host, libc::SA_SIGINFO, &[libc::SIGUSR1]);
        install().unwrap();
        fault_unguarded();
    }

    extern "C" fn host_exits(_sig: libc::c_int, _i: *mut libc::siginfo_t, _c: *mut libc::c_void) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(42) };
    }

    /// Without `install_sigbus_guard`, using the library (hashing from
    /// maps included) leaves the host's `SIGBUS` disposition exactly as it
    /// was, and hashing still gives the right answer (from reads); the
    /// host's own fault still reaches its handler (the review's
    /// `host_sigbus`).
    #[test]
    fn without_the_opt_in_the_host_disposition_is_untouched() {
        let out = child("sigbus::tests::child_host_untouched");
        assert_eq!(out.status.code(), Some(42), "{out:?}");
    }

    #[test]
    fn child_host_untouched() {
        use crate::testutil::*;
        use crate::{Backend, HashSource};
        if !in_child() {
            return;
        }
        let host = host_exits as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
            as libc::sighandler_t;
        let flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        install_host(host, flags, &[libc::SIGINT, libc::SIGUSR2]);
        let before = current();
        let dir = tempfile::tempdir().unwrap();
        let lens = [(1 << 20, false)];
        let data = data_for(&lens, 5);
        for backend in [Backend::PositionedIo, Backend::Mmap] {
            for source in [HashSource::Read, HashSource::Map] {
                let s = storage(layout_for(&lens, 1 << 18, &data), dir.path(), 4, backend)
                    .with_hash_source(source);
                write_all(&s, &data, 1 << 16);
                let ok = s.check_pieces(&[0, 1, 2, 3]);
                assert!(ok.iter().all(|r| matches!(r, Ok(true))), "{ok:?}");
            }
        }
        assert!(!available());
        let after = current();
        assert_eq!(after.sa_sigaction, host);
        assert_eq!(
            after.sa_flags & !0x0400_0000,
            before.sa_flags & !0x0400_0000
        );
        for s in [libc::SIGINT, libc::SIGUSR2, libc::SIGUSR1] {
            // SAFETY: sigismember on valid sets.
            let (a, b) = unsafe {
                (
                    libc::sigismember(&after.sa_mask, s),
                    libc::sigismember(&before.sa_mask, s),
                )
            };
            assert_eq!(a, b, "signal {s}");
        }
        let (_f, map) = mapped_then_cut();
        let v = std::hint::black_box(&map[40 * 1024]);
        println!("read {v} past the end: the host handler did not run");
    }
}
