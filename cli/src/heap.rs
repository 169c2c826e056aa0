//! The process's malloc policy. bittern runs one thread per peer
//! connection; glibc gives threads their own arenas (up to 8 per core)
//! and keeps what each arena once held: after a burst (10,000 torrents
//! loaded, a large RPC reply, a swarm that came and went) the freed
//! memory stays resident. Measured by two 6-minute daemon soaks run side
//! by side (benches/RESULTS-soak.md): after every torrent was removed,
//! 65.4 MiB RssAnon stayed with glibc's defaults, 25.4 MiB with two
//! arenas and the trim below (the empty daemon: 3.4 MiB); the peak under
//! churn fell from 64.3 to 46.5 MiB.
//!
//! So the binary caps the arenas at [`ARENAS`] (unless the user set
//! `MALLOC_ARENA_MAX`, which glibc reads itself and we leave alone), fixes
//! the mmap threshold at [`MMAP_THRESHOLD`] (unless `MALLOC_MMAP_THRESHOLD_`
//! or a glibc tunable sets it) and hands free pages back to the kernel once
//! a minute, and 5 s after a bulk removal in the daemon ([`Trimmer`]). The fixed threshold took a soak emptied of its
//! torrents from 10.9 to 8.5 MiB RssAnon (RESULTS-soak.md, issue 25).
//! Peer threads spend their time in blocking IO, not in malloc, so a
//! few arenas are not a point of contention. Other allocators: no-op.

use std::time::{Duration, Instant};

/// Arenas the process may use (glibc's default would be 8 per core).
pub const ARENAS: i32 = 2;

/// Blocks at least this large get their own mapping, handed back to the
/// kernel when freed. Setting it also turns off glibc's moving threshold,
/// which after a few MB-sized blocks were freed (the RPC's replies) puts
/// later ones in the arenas and lets their free tops stay resident, since
/// `malloc_trim` does not trim the top of a thread arena.
pub const MMAP_THRESHOLD: i32 = 512 * 1024;

/// How often [`Trimmer::tick`] returns free memory to the kernel.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// After a bulk removal (see [`Trimmer::torrents`]), the trim waits this
/// long: the torrents' stops (last resume saves, file releases) free their
/// memory in the seconds after the removal returned.
pub const TRIM_AFTER_REMOVAL: Duration = Duration::from_secs(5);

/// Torrents that must go at once, and at least half of those held, for a
/// removal to count as bulk.
const BULK_REMOVAL: usize = 64;

/// Caps malloc's arenas; call first thing in `main`, before any thread.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets a tunable of glibc's allocator; it
            // is called before any other thread exists.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, ARENAS);
            }
        }
        let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("threshold"));
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() && !tuned {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// Returns every arena's free pages to the kernel now.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the arenas' own locks; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Calls [`trim`] at most once per [`TRIM_EVERY`], from a loop that
/// already wakes up regularly, and soon after a bulk removal.
#[derive(Debug)]
pub struct Trimmer {
    last: Instant,
    /// Most torrents held since the last trim.
    peak: usize,
    /// A trim due early (a bulk removal).
    soon: Option<Instant>,
}

impl Default for Trimmer {
    fn default() -> Self {
        Trimmer {
            last: Instant::now(),
            peak: 0,
            soon: None,
        }
    }
}

impl Trimmer {
    /// Trims when a minute has passed since the last trim, or when a trim
    /// is due after a bulk removal. True if it trimmed.
    pub fn tick(&mut self) -> bool {
        let now = Instant::now();
        let due =
            now.duration_since(self.last) >= TRIM_EVERY || self.soon.is_some_and(|at| now >= at);
        if due {
            trim();
            self.last = now;
            self.soon = None;
            self.peak = 0;
        }
        due
    }

    /// Tells the trimmer how many torrents the session holds now: when at
    /// least half of those it held since the last trim, and
    /// [`BULK_REMOVAL`] or more, are gone (a user emptied the daemon), the
    /// next trim comes [`TRIM_AFTER_REMOVAL`] later instead of up to a
    /// minute later.
    pub fn torrents(&mut self, n: usize) {
        self.peak = self.peak.max(n);
        let gone = self.peak - n;
        if self.soon.is_none() && gone >= BULK_REMOVAL && gone * 2 >= self.peak {
            self.soon = Some(Instant::now() + TRIM_AFTER_REMOVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_removal_brings_the_trim_forward() {
        let mut t = Trimmer::default();
        t.torrents(2000);
        t.torrents(1990);
        assert!(t.soon.is_none(), "ten removed is not bulk");
        t.torrents(1200);
        assert!(t.soon.is_none(), "800 of 2,000 is not half");
        t.torrents(0);
        let at = t.soon.expect("emptied: a trim soon");
        assert!(at <= Instant::now() + TRIM_AFTER_REMOVAL);
        assert!(!t.tick(), "not before the delay");
        t.soon = Some(Instant::now());
        assert!(t.tick());
        assert_eq!((t.peak, t.soon), (0, None));
        // A small session emptied waits for the minute.
        t.torrents(40);
        t.torrents(0);
        assert!(t.soon.is_none());
        assert!(!t.tick());
    }
}
