//! The idle form of a torrent: what only a torrent with peers (or web
//! seeds, or a download under way) needs is built when it first does and
//! dropped when it is idle again, so that a session of 10,000 idle seeds
//! holds little more than their piece sets.
//!
//! - the `PiecePicker` ([`LazyPicker`]): built from the had and wanted
//!   pieces when anything asks for it (a peer's piece set, a request, a
//!   piece passing or found gone); dropped by [`Controller::go_idle`] when
//!   the torrent has every wanted piece, no peer and no web seed, and the
//!   picker holds nothing a new one would not (`PiecePicker::is_idle`).
//!   While it is dropped every wanted piece is had: nothing takes a piece
//!   out of `have` without building it first.
//! - the `Swarm` (candidates, failed and redialled addresses, bans,
//!   bad-data counts, pending per-block blame and the v2 leaves asked
//!   ahead of their blocks): built by the first address or peer, dropped
//!   when every part of it is empty again (so nothing it knew is lost: a
//!   ban, a blame or a leaf ask in flight keeps it alive).
//! - the `Choker`, built by the first rechoke (see `Controller::choker`).
//! - the transfer `Rates`, made by the first byte moved and dropped once
//!   the quiet ticks after the last peer left are over (published as 0).
//! - the inline-hash table (with the first peer thread), the verification
//!   queue (with the first completed piece) and the persist job's lost
//!   pieces (while it runs) are made when first needed too.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::candidates::Candidates;
use super::Controller;
use crate::picker::{BadDataGuard, PickerConfig, PiecePicker};
use crate::rate::RateMeasure;
use crate::shared::HaveSet;

/// A `PiecePicker` built on first use (see the module doc).
pub(super) struct LazyPicker {
    picker: Option<Box<PiecePicker>>,
    piece_count: usize,
    piece_length: u64,
    total_length: u64,
    sequential: bool,
    seed: u64,
    /// Pieces shorter than their place (`PiecePicker::set_short_pieces`).
    short: Box<[(u32, u64)]>,
}

impl LazyPicker {
    /// Pieces the pickers it builds take as shorter than their place
    /// (sorted by piece): those that end in padding (`v2::short_pieces`
    /// for a v2-only torrent, `padding::padding_tails` for a hybrid's BEP
    /// 47 padding files).
    pub(super) fn set_short_pieces(&mut self, short: Vec<(u32, u64)>) {
        self.short = short.into_boxed_slice();
        self.picker = None;
    }

    /// The bytes of `piece` that are fetched, when it ends in padding.
    pub(super) fn short_len(&self, piece: usize) -> Option<u64> {
        let piece = u32::try_from(piece).ok()?;
        let i = self.short.binary_search_by_key(&piece, |&(p, _)| p).ok()?;
        Some(self.short[i].1)
    }

    pub(super) fn new(
        piece_count: usize,
        piece_length: u64,
        total_length: u64,
        sequential: bool,
        seed: u64,
    ) -> Self {
        LazyPicker {
            picker: None,
            piece_count,
            piece_length,
            total_length,
            sequential,
            seed,
            short: Box::default(),
        }
    }

    /// The picker, built from `have` and `wanted` if it was dropped.
    pub(super) fn get(&mut self, have: &HaveSet, wanted: &[bool]) -> &mut PiecePicker {
        let (count, length, total, sequential) = (
            self.piece_count,
            self.piece_length,
            self.total_length,
            self.sequential,
        );
        if self.picker.is_none() {
            // A new stream of random choices for each build.
            self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        let seed = self.seed;
        let short = &self.short;
        self.picker.get_or_insert_with(|| {
            let mut p = PiecePicker::new(
                count,
                length,
                total,
                PickerConfig {
                    sequential,
                    ..PickerConfig::default()
                },
                seed,
            );
            p.set_short_pieces(short);
            for i in 0..count {
                if have.contains(i) {
                    p.set_have(i);
                }
            }
            p.set_wanted(wanted);
            Box::new(p)
        })
    }

    /// The picker, if built.
    pub(super) fn built(&self) -> Option<&PiecePicker> {
        self.picker.as_deref()
    }

    /// Every wanted piece is had (always so while the picker is dropped).
    pub(super) fn is_complete(&self) -> bool {
        self.built().is_none_or(PiecePicker::is_complete)
    }

    /// Bytes of wanted pieces not had (none while the picker is dropped).
    pub(super) fn wanted_left_bytes(&self) -> u64 {
        self.built().map_or(0, PiecePicker::wanted_left_bytes)
    }

    /// Requests in flight to `peer`.
    pub(super) fn outstanding(&self, peer: crate::picker::PeerKey) -> usize {
        self.built().map_or(0, |p| p.outstanding(peer))
    }

    /// A peer left: its requests and picks are forgotten (nothing to
    /// forget while the picker is dropped).
    pub(super) fn peer_gone(&mut self, peer: crate::picker::PeerKey) {
        if let Some(p) = self.picker.as_deref_mut() {
            p.peer_gone(peer);
        }
    }

    /// A peer's pieces no longer count (none counted while the picker is
    /// dropped: it is dropped only when no peer is).
    pub(super) fn peer_lost_bitfield(&mut self, bits: &bittern_wire::Bitfield) {
        if let Some(p) = self.picker.as_deref_mut() {
            p.peer_lost_bitfield(bits);
        }
    }

    fn drop_if_idle(&mut self) {
        if self
            .picker
            .as_deref()
            .is_some_and(|p| p.is_complete() && p.is_idle())
        {
            self.picker = None;
        }
    }
}

/// What a torrent knows of the swarm beyond its connections (see the
/// module doc).
#[derive(Default)]
pub(super) struct Swarm {
    /// Addresses to dial and peers known, from every source.
    pub candidates: Candidates,
    pub failed: HashMap<SocketAddr, Instant>,
    /// Outgoing peers being dialled again after a working connection
    /// broke: failed attempts since (see `peer_gone`).
    pub redials: HashMap<SocketAddr, u32>,
    pub banned: HashSet<SocketAddr>,
    pub bad_data: BadDataGuard<SocketAddr>,
    /// Block hashes of v2 pieces that just failed (see `blame.rs`).
    pub failed_leaves: HashMap<usize, Vec<bittern_storage::merkle::Hash256>>,
    /// Failed v2 pieces waiting for their leaves (see `blame.rs`).
    pub blames: HashMap<usize, super::blame::Asked>,
    /// v2 pieces whose leaves were asked ahead of their blocks, and when
    /// (see `blame.rs`; an entry expires after the request timeout).
    pub leaf_asks: HashMap<usize, Instant>,
}

impl Swarm {
    fn is_empty(&self) -> bool {
        self.candidates.is_unused()
            && self.failed.is_empty()
            && self.redials.is_empty()
            && self.banned.is_empty()
            && self.bad_data.is_empty()
            && self.failed_leaves.is_empty()
            && self.blames.is_empty()
            && self.leaf_asks.is_empty()
    }
}

/// A torrent's transfer rates (see the module doc).
pub(super) struct Rates {
    pub down: RateMeasure,
    pub up: RateMeasure,
}

/// Which of [`Rates`] bytes count in.
#[derive(Clone, Copy)]
pub(super) enum Direction {
    Down,
    Up,
}

/// The window of the torrent's rates.
const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(20);

impl Controller {
    /// Counts `n` bytes moved in `direction`; the rates are made by the
    /// first byte.
    pub(super) fn count_rate(&mut self, direction: Direction, n: u64, now: Instant) {
        if n == 0 && self.rates.is_none() {
            return;
        }
        let rates = self.rates.get_or_insert_with(|| {
            Box::new(Rates {
                down: RateMeasure::new(RATE_WINDOW, now),
                up: RateMeasure::new(RATE_WINDOW, now),
            })
        });
        match direction {
            Direction::Down => rates.down.add(n, now),
            Direction::Up => rates.up.add(n, now),
        }
    }

    /// Drops what an idle torrent does not need (see the module doc).
    /// Called after every event.
    pub(super) fn go_idle(&mut self) {
        if !self.peers.is_empty() || self.webseeds.is_some() {
            return;
        }
        self.picker.drop_if_idle();
        // The rates fall to zero over the quiet ticks after the last peer
        // left (see `peer_gone`); then they are dropped.
        if self.quiet_until.is_none_or(|t| t <= Instant::now()) {
            self.rates = None;
        }
        if self.swarm.as_deref().is_some_and(Swarm::is_empty) {
            self.swarm = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::picker::{PeerKey, PickRequest};

    #[test]
    fn an_idle_torrent_holds_a_small_controller() {
        // Picker, swarm, choker and rates are boxed and built on demand:
        // what every idle torrent holds inline stays well under 1 KiB.
        assert!(
            // 864 B after issue 19's cuts, 904 with the corrupt-bytes
            // counter (`TorrentStatus::corrupt`); a guard against growth.
            std::mem::size_of::<Controller>() <= 912,
            "{}",
            std::mem::size_of::<Controller>()
        );
        assert!(std::mem::size_of::<LazyPicker>() * 4 < std::mem::size_of::<PiecePicker>());
    }

    #[test]
    fn the_picker_is_rebuilt_from_have_and_wanted_and_dropped_only_when_idle() {
        let have = HaveSet::new(4);
        let wanted = [true, true, false, true];
        let mut lazy = LazyPicker::new(4, 16384, 4 * 16384, false, 7);
        assert!(lazy.built().is_none());
        for i in [0, 1] {
            have.insert(i);
        }
        let p = lazy.get(&have, &wanted);
        assert!(p.have(0) && p.have(1) && !p.have(3));
        assert!(!p.is_wanted(2));
        assert_eq!(p.wanted_left_bytes(), 16384);
        // A download under way: requests in flight keep it.
        let mut all = bittern_wire::Bitfield::new(4);
        for i in 0..4 {
            all.set(i);
        }
        p.peer_bitfield(&all);
        let mut blocks = Vec::new();
        let req = PickRequest {
            bits: &all,
            choked: false,
            allowed_fast: &[],
            max: 4,
            endgame: true,
            now: Instant::now(),
        };
        p.pick(PeerKey(1), &req, &mut blocks);
        assert!(!blocks.is_empty());
        lazy.drop_if_idle();
        assert!(lazy.built().is_some());
        // Piece 3 passes and the peer leaves: nothing left to keep.
        let p = lazy.get(&have, &wanted);
        p.piece_passed(3);
        have.insert(3);
        lazy.peer_lost_bitfield(&all);
        lazy.peer_gone(PeerKey(1));
        lazy.drop_if_idle();
        assert!(lazy.built().is_none());
        assert!(lazy.is_complete());
        assert_eq!(lazy.wanted_left_bytes(), 0);
        // Built again, it knows every had piece.
        let p = lazy.get(&have, &wanted);
        assert!(p.is_complete() && p.have(3));
    }
}
