//! Hashing pieces while their blocks are still in hand.
//!
//! The peer thread that writes a block also feeds it to the piece's SHA-1
//! when the block is the next one in order, so a piece that arrived in
//! order (the usual case: one peer, requests in order, one TCP stream) is
//! verified the moment its last block lands, without reading it back from
//! disk and without waking the hashing pool. A piece whose blocks arrived
//! out of order falls back to a read-back check on the pool.
//!
//! Hashing runs outside the lock: a feeder takes the piece's state out of
//! the map, hashes, and puts it back. Anything unexpected meanwhile (another
//! block of the same piece) marks the piece `Broken`, which only means
//! "verify by reading back".

use std::collections::HashMap;

use bittern_storage::PieceHasher;
use parking_lot::Mutex;

enum State {
    /// Bytes `0..next` have been fed.
    Hashing { next: u64, hasher: PieceHasher },
    /// Out of order: verify by reading the piece back.
    Broken,
}

/// Per-torrent in-progress piece hashes.
#[derive(Default)]
pub(crate) struct InlineHashes {
    states: Mutex<HashMap<u32, State>>,
}

impl InlineHashes {
    /// Feeds a block just written at `begin` of `piece`.
    pub(crate) fn feed(&self, piece: u32, begin: u32, data: &[u8]) {
        let taken = self.states.lock().remove(&piece);
        let (next, mut hasher) = match taken {
            Some(State::Hashing { next, hasher }) if next == u64::from(begin) => (next, hasher),
            None if begin == 0 => (0, PieceHasher::new()),
            _ => {
                self.states.lock().insert(piece, State::Broken);
                return;
            }
        };
        hasher.update(data);
        let mut states = self.states.lock();
        // Someone touched the piece while we hashed: give up on it.
        let state = if states.contains_key(&piece) {
            State::Broken
        } else {
            State::Hashing {
                next: next + data.len() as u64,
                hasher,
            }
        };
        states.insert(piece, state);
    }

    /// The piece's hash if all of its `len` bytes were fed in order, with
    /// `zeros` zero bytes after them (the BEP 47 padding that ends a
    /// hybrid torrent's piece: never downloaded, see `padding.rs`).
    /// More than [`MAX_ZEROS`] of padding gives `None` too: hashing it
    /// here would hold the controller thread that calls this, so such a
    /// piece is read back on the hashing pool instead.
    pub(crate) fn finish(&self, piece: u32, len: u64, zeros: u64) -> Option<[u8; 20]> {
        // Out of the lock before hashing: readers feed other pieces meanwhile.
        let taken = self.states.lock().remove(&piece);
        match taken {
            Some(State::Hashing { next, mut hasher }) if next == len && zeros <= MAX_ZEROS => {
                static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];
                let mut left = zeros;
                while left > 0 {
                    let n = left.min(ZEROS.len() as u64);
                    hasher.update(&ZEROS[..n as usize]);
                    left -= n;
                }
                Some(hasher.finish())
            }
            _ => None,
        }
    }

    /// Forgets a piece (its blocks are being fetched again).
    pub(crate) fn reset(&self, piece: u32) {
        self.states.lock().remove(&piece);
    }
}

/// Most padding [`InlineHashes::finish`] hashes itself (a few dozen
/// microseconds with SHA-NI).
const MAX_ZEROS: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_blocks_give_the_hash() {
        let h = InlineHashes::default();
        let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        h.feed(3, 0, &data[..16384]);
        h.feed(3, 16384, &data[16384..32768]);
        assert_eq!(h.finish(3, 40_000, 0), None, "not all bytes fed");
        h.feed(3, 0, &data[..16384]);
        h.feed(3, 16384, &data[16384..32768]);
        h.feed(3, 32768, &data[32768..]);
        assert_eq!(
            h.finish(3, 40_000, 0),
            Some(bittern_storage::hash_blocks([&data[..]]))
        );
    }

    #[test]
    fn out_of_order_falls_back() {
        let h = InlineHashes::default();
        let data = vec![7u8; 32768];
        h.feed(1, 16384, &data[16384..]);
        h.feed(1, 0, &data[..16384]);
        assert_eq!(h.finish(1, 32768, 0), None);
        h.feed(2, 0, &data[..16384]);
        h.feed(2, 0, &data[..16384]); // a duplicate is also out of order
        assert_eq!(h.finish(2, 32768, 0), None);
        h.feed(4, 0, &data[..16384]);
        h.reset(4);
        h.feed(4, 16384, &data[16384..]);
        assert_eq!(h.finish(4, 32768, 0), None);
    }

    /// A hybrid piece that ends in padding: its file's bytes fed, the
    /// zeros after them added by `finish` (40,000 of 81,920 bytes).
    #[test]
    fn padding_after_the_bytes_is_hashed_as_zeros() {
        let h = InlineHashes::default();
        let mut piece: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
        h.feed(5, 0, &piece[..16384]);
        h.feed(5, 16384, &piece[16384..32768]);
        h.feed(5, 32768, &piece[32768..]);
        piece.resize(81_920, 0);
        assert_eq!(
            h.finish(5, 40_000, 41_920),
            Some(bittern_storage::hash_blocks([&piece[..]]))
        );
    }

    /// Long padding is left to the hashing pool (`None`), and the piece's
    /// state is gone either way.
    #[test]
    fn long_padding_is_left_to_the_pool() {
        let h = InlineHashes::default();
        h.feed(6, 0, &[1u8; 16384]);
        assert_eq!(h.finish(6, 16384, MAX_ZEROS + 1), None);
        assert_eq!(h.finish(6, 16384, 0), None, "state dropped");
    }
}
