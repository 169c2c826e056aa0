//! Whole pieces taken for a web seed: reserved in the picker so that
//! peers get their blocks only as endgame duplicates.

use super::{Block, Partial, PeerKey, PiecePicker};

impl PiecePicker {
    /// Whether `piece` is wanted, not had and not started: nothing of it
    /// requested or received (a web seed may take it whole).
    pub fn is_pickable(&self, piece: usize) -> bool {
        piece < self.piece_count && self.avail.contains(piece)
    }

    /// Takes a pickable `piece` whole for `owner` (a web seed): every
    /// block counts as requested from it, so peers get none of it until
    /// endgame, when they may duplicate its blocks like any other request.
    /// Its blocks come back with [`block_received`](Self::block_received)
    /// or [`release_piece`](Self::release_piece). False when the piece is
    /// not pickable.
    pub fn reserve(&mut self, owner: PeerKey, piece: usize) -> bool {
        if !self.is_pickable(piece) {
            return false;
        }
        self.avail.remove(piece);
        let blocks = vec![Block::Requested(vec![owner]); self.blocks_in_piece(piece)];
        self.started.insert(
            piece as u32,
            Partial {
                blocks,
                free: 0,
                received: 0,
            },
        );
        true
    }

    /// Gives back every block of `piece` still requested from `owner` (a
    /// web seed's run ended before it): pickable again unless requested
    /// from others too.
    pub fn release_piece(&mut self, owner: PeerKey, piece: usize) {
        if piece >= self.piece_count {
            return;
        }
        for i in 0..self.blocks_in_piece(piece) {
            self.release(owner, piece as u32, i as u32);
        }
    }
}
