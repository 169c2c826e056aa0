//! Reading a file's pages through a memory map in user space without dying
//! when another program truncates the file.
//!
//! Touching a mapped page that lies past the end of its file raises
//! `SIGBUS`, and the default action ends the process. Verification hashes
//! pieces straight from read-only maps (no copy into a buffer), so a file
//! cut by another program in the middle of a hash would kill a session
//! that is otherwise careful to turn every IO failure into an error.
//!
//! [`guarded`] closes that: while it runs, this thread's reads of the
//! ranges it was given are watched. A `SIGBUS` for an address inside one of
//! them is answered by placing a page of zeros over the faulting page
//! (`mmap` with `MAP_FIXED`, which is a plain system call and safe in a
//! signal handler); the read then completes with zeros and [`guarded`]
//! reports the range as faulted, so the caller throws the result away and
//! reports an error. The map that received the zero page no longer shows
//! the file and must not be used again (the caller drops it).
//!
//! Any other `SIGBUS` (another thread, another address, a `kill`) goes to
//! the handler that was installed before ours (Rust's runtime installs one
//! to report stack overflows); with none, the default action is restored and
//! the fault repeats, ending the process as it would have without us.
//!
//! The handler is installed process-wide on first use. If some other code
//! later replaces it, [`available`] notices and callers fall back to
//! positioned reads rather than read a map unguarded.

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

use crate::sha::LANES;

thread_local! {
    /// The address ranges `[start, end)` this thread is reading under
    /// guard; `(0, 0)` when unused. Const-initialised and without a
    /// destructor, so the signal handler can read them without any lazy
    /// initialisation.
    static RANGES: [Cell<(usize, usize)>; LANES] = const { [const { Cell::new((0, 0)) }; LANES] };
    /// Bit `i` set: a read in range `i` faulted and got zeros.
    static FAULTED: Cell<u8> = const { Cell::new(0) };
}

static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// The `SIGBUS` disposition in place before ours, for faults not ours.
struct Prev(std::cell::UnsafeCell<Option<libc::sigaction>>);
// SAFETY: written once inside `INSTALL.call_once`, before our handler is
// installed (the only reader), never written again.
unsafe impl Sync for Prev {}
static PREV: Prev = Prev(std::cell::UnsafeCell::new(None));

/// True when the guard is installed and still the process's `SIGBUS`
/// handler (one `sigaction` query). Installs it on the first call.
pub(crate) fn available() -> bool {
    INSTALL.call_once(|| INSTALLED.store(install(), Ordering::Release));
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

/// Runs `read` (which may touch the bytes of `ranges`, slices of file
/// maps) with those ranges guarded, and returns its result and, per range,
/// whether a read in it faulted. A faulted range was read as zeros in
/// place of the missing pages; the map holding it now has zero pages in it.
///
/// Only guards when [`available`] said so; callers check that first.
pub(crate) fn guarded<R>(ranges: [&[u8]; LANES], read: impl FnOnce() -> R) -> (R, [bool; LANES]) {
    RANGES.with(|r| {
        for (slot, range) in r.iter().zip(ranges) {
            let start = range.as_ptr() as usize;
            slot.set((start, start + range.len()));
        }
    });
    FAULTED.with(|f| f.set(0));
    // The handler runs on this thread: the compiler must not move the
    // guarded reads above the stores to `RANGES`, nor below the clearing.
    compiler_fence(Ordering::SeqCst);
    let out = read();
    compiler_fence(Ordering::SeqCst);
    RANGES.with(|r| r.iter().for_each(|slot| slot.set((0, 0))));
    let bits = FAULTED.with(|f| f.replace(0));
    (out, std::array::from_fn(|i| bits & (1 << i) != 0))
}

fn handler_address() -> libc::sighandler_t {
    on_sigbus as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t
}

fn install() -> bool {
    // SAFETY: plain libc calls with valid pointers. `PREV` is written
    // before the handler that reads it is installed.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE);
        if page > 0 {
            PAGE.store(page as usize, Ordering::Relaxed);
        }
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
            return false;
        }
        *PREV.0.get() = Some(old);
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = handler_address();
        new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut new.sa_mask);
        libc::sigaction(libc::SIGBUS, &new, std::ptr::null_mut()) == 0
    }
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    // Faults from memory accesses only (a `kill` carries no address).
    if code > 0 {
        let hit = RANGES.with(|r| {
            r.iter().position(|slot| {
                let (start, end) = slot.get();
                start <= addr && addr < end
            })
        });
        if let Some(i) = hit {
            let page = PAGE.load(Ordering::Relaxed);
            let base = addr & !(page - 1);
            // SAFETY: `base` is a page of a file map this thread is reading
            // under `guarded`; replacing it with zeros is what the guard
            // promises the caller. errno is saved and restored around the
            // call, as a handler must.
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
                FAULTED.with(|f| f.set(f.get() | (1 << i)));
                return;
            }
        }
    }
    // Not ours: hand it on.
    // SAFETY: `PREV` was set before this handler was installed; the
    // previous handler is called with the arguments the kernel gave us, in
    // the form its flags declare.
    unsafe {
        match &*PREV.0.get() {
            Some(prev)
                if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN =>
            {
                if prev.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        std::mem::transmute(prev.sa_sigaction);
                    f(sig, info, ctx);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(prev.sa_sigaction);
                    f(sig);
                }
            }
            // Default (or ignored, which cannot stop a fault from repeating):
            // restore the default and return; the access faults again and
            // the process ends with SIGBUS as it would have without us.
            _ => {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapOptions;
    use std::io::Write;

    fn mapped_then_cut() -> (tempfile::NamedTempFile, memmap2::Mmap) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; 64 * 1024]).unwrap();
        f.flush().unwrap();
        // SAFETY: test: the file is cut below on purpose.
        let map = unsafe { MmapOptions::new().map(f.as_file()).unwrap() };
        f.as_file().set_len(8 * 1024).unwrap();
        (f, map)
    }

    /// A read past the new end of a cut file completes with zeros and is
    /// reported for its range only; the bytes still in the file read as
    /// they are.
    #[test]
    fn a_read_past_a_cut_end_is_reported_not_fatal() {
        assert!(available());
        let (_f, map) = mapped_then_cut();
        let (head, tail) = map.split_at(32 * 1024);
        let (sums, faulted) = guarded([head, tail, &[]], || {
            let a: u64 = head.iter().map(|&b| u64::from(b)).sum();
            let b: u64 = tail.iter().map(|&b| u64::from(b)).sum();
            (a, b)
        });
        // The first 8 KiB are still file data; the rest of `head` faulted.
        assert_eq!(sums, (8 * 1024 * 7, 0));
        assert_eq!(faulted, [true, true, false]);
        // The guard is off again: nothing stays registered.
        let (_, faulted) = guarded([&[], &[], &[]], || ());
        assert_eq!(faulted, [false; LANES]);
    }

    /// Reads inside the file fault nowhere.
    #[test]
    fn reads_inside_the_file_are_not_flagged() {
        assert!(available());
        let (_f, map) = mapped_then_cut();
        let head = &map[..8 * 1024];
        let (sum, faulted) = guarded([&[], head, &[]], || {
            head.iter().map(|&b| u64::from(b)).sum::<u64>()
        });
        assert_eq!(sum, 8 * 1024 * 7);
        assert_eq!(faulted, [false; LANES]);
    }

    /// An unguarded read past the end still ends the process with SIGBUS:
    /// the guard hands faults that are not its own on. Checked in a child
    /// process (this test binary, running only the test below).
    #[test]
    fn an_unguarded_fault_still_kills() {
        use std::os::unix::process::ExitStatusExt;
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigbus::tests::child_reads_unguarded",
                "--test-threads=1",
            ])
            .env("BITTERN_SIGBUS_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGBUS), "{out:?}");
    }

    #[test]
    fn child_reads_unguarded() {
        if std::env::var_os("BITTERN_SIGBUS_CHILD").is_none() {
            return;
        }
        // No core file from the expected crash.
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain setrlimit with a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
        assert!(available());
        let (_f, map) = mapped_then_cut();
        // Guarded elsewhere in the map first, so our handler is the one
        // that sees the unguarded fault and must pass it on.
        let (_, faulted) = guarded([&map[..4096], &[], &[]], || map[0]);
        assert_eq!(faulted, [false; LANES]);
        let v = std::hint::black_box(&map[40 * 1024]);
        println!("read {v} past the end: the guard swallowed a fault that was not its own");
    }
}
