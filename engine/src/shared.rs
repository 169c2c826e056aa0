//! State shared between a torrent's controller and its peer threads
//! without going through a channel: which pieces we have (read by uploaders)
//! and which blocks have been written (so each block is written once and a
//! piece under verification is never written to).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

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
/// passed.
#[derive(Debug)]
pub(crate) struct BlockClaims {
    states: Vec<AtomicU8>,
    blocks_per_piece: usize,
    block_size: u32,
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
        }
    }

    fn slot(&self, piece: u32, begin: u32) -> Option<&AtomicU8> {
        if begin % self.block_size != 0 {
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
        match s.compare_exchange(FREE, WRITING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => TryClaim::Got,
            Err(WRITING) => TryClaim::Busy,
            Err(_) => TryClaim::Taken,
        }
    }

    /// Takes the right to write a block. False: the block is already
    /// written, so the piece may be hashed. While another thread is writing
    /// the block this waits for it to finish. A claim held far longer than
    /// any write takes can only be a bug; rather than report such a block
    /// as written, the waiter takes it over and writes it too (the piece's
    /// hash check decides which bytes count).
    pub(crate) fn claim(&self, piece: u32, begin: u32) -> bool {
        let Some(s) = self.slot(piece, begin) else {
            return false;
        };
        let start = std::time::Instant::now();
        loop {
            match s.compare_exchange(FREE, WRITING, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(WRITING) if start.elapsed() < std::time::Duration::from_secs(2) => {
                    std::thread::yield_now()
                }
                Err(WRITING) => {
                    log::warn!(
                        "block {begin} of piece {piece} was claimed for 2 s; taking it over"
                    );
                    return true;
                }
                Err(_) => return false,
            }
        }
    }

    /// The claimed block is on its way to disk.
    pub(crate) fn written(&self, piece: u32, begin: u32) {
        if let Some(s) = self.slot(piece, begin) {
            s.store(WRITTEN, Ordering::Release);
        }
    }

    /// Writing the claimed block failed: give the claim back.
    pub(crate) fn release(&self, piece: u32, begin: u32) {
        if let Some(s) = self.slot(piece, begin) {
            s.store(FREE, Ordering::Release);
        }
    }

    /// Marks every block of a piece written (a piece we already have).
    pub(crate) fn fill_piece(&self, piece: usize) {
        let start = piece * self.blocks_per_piece;
        for s in &self.states[start..start + self.blocks_per_piece] {
            s.store(WRITTEN, Ordering::Release);
        }
    }

    /// Frees every block of a piece (failed hash, or found missing on disk).
    pub(crate) fn reset_piece(&self, piece: usize) {
        let start = piece * self.blocks_per_piece;
        for s in &self.states[start..start + self.blocks_per_piece] {
            s.store(FREE, Ordering::Release);
        }
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
    fn a_claim_stuck_for_two_seconds_is_taken_over() {
        let c = BlockClaims::new(1, 16 * 1024, 16 * 1024);
        assert!(c.claim(0, 0));
        let start = std::time::Instant::now();
        assert!(c.claim(0, 0), "the waiter writes the block itself");
        assert!(start.elapsed() >= std::time::Duration::from_secs(2));
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
