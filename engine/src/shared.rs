//! State shared between a torrent's controller and its peer threads
//! without going through a channel: which pieces we have (read by uploaders)
//! and which blocks have been written (so each block is written once and a
//! piece under verification is never written to).

use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex};

/// A fixed-size set of piece indices, readable from any thread.
#[derive(Debug)]
pub(crate) struct HaveSet {
    words: Vec<AtomicU64>,
    len: usize,
}

impl HaveSet {
    pub(crate) fn new(len: usize) -> Self {
        HaveSet {
            words: (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            len,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        i < self.len && self.words[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }

    pub(crate) fn insert(&self, i: usize) {
        if i < self.len {
            self.words[i / 64].fetch_or(1 << (i % 64), Ordering::Release);
        }
    }

    pub(crate) fn remove(&self, i: usize) {
        if i < self.len {
            self.words[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Release);
        }
    }

    /// The set as a wire bitfield.
    pub(crate) fn to_bitfield(&self) -> bittern_wire::Bitfield {
        let mut b = bittern_wire::Bitfield::new(self.len);
        for i in 0..self.len {
            if self.contains(i) {
                b.set(i);
            }
        }
        b
    }
}

/// The outcome of [`BlockClaims::try_claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryClaim {
    /// Ours to write.
    Got,
    /// Another thread is writing it now.
    Busy,
    /// Already written (or not a block of this torrent).
    Taken,
}

const FREE: u8 = 0;
const WRITING: u8 = 1;
const WRITTEN: u8 = 2;

/// One state byte per block: free, being written, written.
///
/// A peer thread must `claim` a block before writing it; only one claim
/// succeeds until the controller `reset_piece`s it after a failed hash.
/// Once every block of a piece is written, no thread can write the piece
/// again, so a piece is never modified while it is hashed or after it
/// passed. A claim is never taken over: whoever holds one writes the block
/// or gives the claim back (the peer reader's `Run` does so on every exit
/// path), and holds it only while it decodes one read's frames and writes
/// them, never while it sleeps (rate limits) or waits for anything else.
#[derive(Debug)]
pub(crate) struct BlockClaims {
    states: Vec<AtomicU8>,
    blocks_per_piece: usize,
    block_size: u32,
    /// Threads parked in [`claim`](Self::claim); a claim's end wakes them
    /// only when there are any (endgame duplicates are rare).
    waiters: AtomicUsize,
    parked: Mutex<()>,
    wake: Condvar,
}

impl BlockClaims {
    pub(crate) fn new(piece_count: usize, piece_length: u64, block_size: u32) -> Self {
        let blocks_per_piece = piece_length.div_ceil(u64::from(block_size)) as usize;
        BlockClaims {
            states: (0..piece_count * blocks_per_piece)
                .map(|_| AtomicU8::new(FREE))
                .collect(),
            blocks_per_piece,
            block_size,
            waiters: AtomicUsize::new(0),
            parked: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    fn slot(&self, piece: u32, begin: u32) -> Option<&AtomicU8> {
        if !begin.is_multiple_of(self.block_size) {
            return None;
        }
        let b = (begin / self.block_size) as usize;
        if b >= self.blocks_per_piece {
            return None;
        }
        self.states.get(piece as usize * self.blocks_per_piece + b)
    }

    /// Takes the right to write a block without waiting: `Busy` when
    /// another thread is writing it right now. A thread holding claims it
    /// has not written yet must use this (not [`claim`](Self::claim)), or
    /// two such threads could wait on each other.
    pub(crate) fn try_claim(&self, piece: u32, begin: u32) -> TryClaim {
        let Some(s) = self.slot(piece, begin) else {
            return TryClaim::Taken;
        };
        match s.compare_exchange(FREE, WRITING, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => TryClaim::Got,
            Err(WRITING) => TryClaim::Busy,
            Err(_) => TryClaim::Taken,
        }
    }

    /// Takes the right to write a block. False: the block is already
    /// written, so the piece may be hashed. While another thread holds the
    /// claim this sleeps until that thread writes the block (false) or
    /// gives the claim back (then the claim is ours). The caller must hold
    /// no unwritten claims itself.
    pub(crate) fn claim(&self, piece: u32, begin: u32) -> bool {
        let Some(s) = self.slot(piece, begin) else {
            return false;
        };
        // Announce the waiter before looking at the state, and the ends of
        // claims store the state before looking for waiters (both SeqCst):
        // either the end sees this waiter and wakes it under the lock, or
        // this thread sees the ended claim. No wakeup is lost.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let mut parked = self.parked.lock();
        let got = loop {
            match s.compare_exchange(FREE, WRITING, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break true,
                Err(WRITING) => self.wake.wait(&mut parked),
                Err(_) => break false,
            }
        };
        drop(parked);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        got
    }

    /// Wakes the threads parked in `claim` (after a state change).
    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _parked = self.parked.lock();
            self.wake.notify_all();
        }
    }

    /// The claimed block is on its way to disk.
    pub(crate) fn written(&self, piece: u32, begin: u32) {
        if let Some(s) = self.slot(piece, begin) {
            s.store(WRITTEN, Ordering::SeqCst);
            self.wake_waiters();
        }
    }

    /// Writing the claimed block failed: give the claim back.
    pub(crate) fn release(&self, piece: u32, begin: u32) {
        if let Some(s) = self.slot(piece, begin) {
            s.store(FREE, Ordering::SeqCst);
            self.wake_waiters();
        }
    }

    /// Marks every block of a piece written (a piece we already have).
    pub(crate) fn fill_piece(&self, piece: usize) {
        let start = piece * self.blocks_per_piece;
        for s in &self.states[start..start + self.blocks_per_piece] {
            s.store(WRITTEN, Ordering::SeqCst);
        }
        self.wake_waiters();
    }

    /// Frees every block of a piece (failed hash, or found missing on disk).
    pub(crate) fn reset_piece(&self, piece: usize) {
        let start = piece * self.blocks_per_piece;
        for s in &self.states[start..start + self.blocks_per_piece] {
            s.store(FREE, Ordering::SeqCst);
        }
        self.wake_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn have_set_bits() {
        let h = HaveSet::new(130);
        assert!(!h.contains(129));
        h.insert(129);
        h.insert(0);
        h.insert(500); // out of range: ignored
        assert!(h.contains(129) && h.contains(0) && !h.contains(64));
        let b = h.to_bitfield();
        assert_eq!(b.count_ones(), 2);
        h.remove(0);
        assert!(!h.contains(0));
    }

    #[test]
    fn a_waiting_claim_sleeps_until_the_holder_writes_or_gives_back() {
        use std::sync::Arc;
        use std::time::Duration;
        let c = Arc::new(BlockClaims::new(1, 32 * 1024, 16 * 1024));
        // Held for longer than any timeout the old claim had: the waiter
        // neither takes it over nor spins (it sleeps on the condvar).
        assert!(c.claim(0, 0));
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.claim(0, 0))
        };
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!waiter.is_finished(), "a live claim was taken over");
        c.written(0, 0);
        assert!(
            !waiter.join().unwrap(),
            "a written block is not claimed again"
        );
        // Given back: the waiter gets it.
        assert!(c.claim(0, 16384));
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.claim(0, 16384))
        };
        std::thread::sleep(Duration::from_millis(50));
        c.release(0, 16384);
        assert!(
            waiter.join().unwrap(),
            "a released claim goes to the waiter"
        );
        assert_eq!(c.try_claim(0, 16384), TryClaim::Busy);
    }

    #[test]
    fn claims_are_exclusive_until_reset() {
        let c = BlockClaims::new(3, 32 * 1024, 16 * 1024);
        assert!(c.claim(1, 16384));
        assert_eq!(c.try_claim(1, 16384), TryClaim::Busy);
        c.written(1, 16384);
        assert!(!c.claim(1, 16384));
        assert!(!c.claim(1, 100), "unaligned begin is never claimable");
        assert!(!c.claim(1, 32768), "past the piece");
        assert!(!c.claim(3, 0), "past the torrent");
        c.reset_piece(1);
        assert!(c.claim(1, 16384));
        c.release(1, 16384);
        assert!(c.claim(1, 16384));
        c.fill_piece(2);
        assert!(!c.claim(2, 0));
        assert_eq!(c.try_claim(2, 0), TryClaim::Taken);
        c.reset_piece(2);
        assert_eq!(c.try_claim(2, 0), TryClaim::Got);
        assert_eq!(c.try_claim(2, 0), TryClaim::Busy);
        c.written(2, 0);
        assert_eq!(c.try_claim(2, 0), TryClaim::Taken);
    }
}
