//! What to request next: mainline's `PiecePicker` together with the
//! `Downloader`'s block bookkeeping (which blocks are requested from which
//! connection), as pure logic.
//!
//! The torrent's controller owns one [`PiecePicker`]. It reports what peers
//! have ([`peer_has`](PiecePicker::peer_has),
//! [`peer_bitfield`](PiecePicker::peer_bitfield)), asks for requests to send
//! ([`pick`](PiecePicker::pick)), and reports what came back
//! ([`block_received`](PiecePicker::block_received),
//! [`request_lost`](PiecePicker::request_lost),
//! [`peer_gone`](PiecePicker::peer_gone)), asks which requests are overdue
//! ([`expire`](PiecePicker::expire)) and how hash checks went
//! ([`piece_passed`](PiecePicker::piece_passed),
//! [`piece_failed`](PiecePicker::piece_failed)).
//!
//! # Order of picks
//!
//! 1. Blocks of pieces already started, strictly first (rarest started piece
//!    first), so pieces complete and can be shared quickly.
//! 2. A new piece: at random while fewer than `random_first` pieces are
//!    complete (a new peer gets something to trade quickly), then rarest
//!    first over the availability counts. Among equally rare pieces the one
//!    right after the last new piece requested from the same peer wins if
//!    the peer has it, else one at random: each source is asked for
//!    stretches of the data from random starting points, so it reads its
//!    files (and, with many small files, opens them) in order instead of
//!    all over the torrent, while rarity still decides first. With
//!    `sequential`, the lowest index instead.
//! 3. Endgame: once every missing block of the wanted pieces is requested,
//!    blocks already requested from other peers are handed out again; when
//!    one copy arrives, [`block_received`](PiecePicker::block_received) names
//!    the other peers to send CANCEL to.
//!
//! # Request deadlines
//!
//! Every request records when it was sent and its place in the peer's
//! queue (peers serve requests in the order they came). A request that is
//! never answered must not be lost, so each one has a deadline, checked by
//! [`expire`](PiecePicker::expire) with the time passed in: a request sent
//! behind `k` others to the same peer is due `grace + (k + 1) * per_block`
//! after it was sent, where `per_block` comes from the peer's measured
//! rate at the time of the check, so a deep queue to a slow peer is not
//! called lost and a peer that slows down gets more time. An
//! overdue request is released like a rejected one: the block goes back to
//! the picker (to any peer that has it, the same one too when it is the
//! only one), and the caller sends CANCEL and counts the peer's drops.
//!
//! # Piece states
//!
//! A piece is *had* (verified), *pickable* (wanted, not had, no block
//! requested or received: it sits in the availability buckets), or
//! *started* (some block requested or received). A started piece whose
//! blocks have all arrived awaits its hash check and is never picked. A
//! started piece with nothing requested and nothing received falls back to
//! pickable. Unwanted pieces are never picked.

mod avail;
mod baddata;
mod reserve;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bittern_wire::{Bitfield, BlockRef};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::fasthash::FastMap;
use avail::Availability;
pub use baddata::BadDataGuard;

/// Identifies one connection within a torrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

/// Size of a requested block (all but the last block of the torrent).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// Picker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickerConfig {
    /// Pick new pieces at random until this many pieces are had (4).
    pub random_first: usize,
    /// Pick the lowest index instead of the rarest (streaming).
    pub sequential: bool,
    /// Enter endgame (duplicate requests) at the end.
    pub endgame: bool,
}

impl Default for PickerConfig {
    fn default() -> Self {
        PickerConfig {
            random_first: 4,
            sequential: false,
            endgame: true,
        }
    }
}

/// What one call of [`PiecePicker::pick`] may hand out to a peer.
#[derive(Debug, Clone, Copy)]
pub struct PickRequest<'a> {
    /// The peer's pieces.
    pub bits: &'a Bitfield,
    /// The peer chokes us: only pieces in `allowed_fast` (BEP 6).
    pub choked: bool,
    /// The peer's allowed-fast pieces.
    pub allowed_fast: &'a [u32],
    /// At most this many new requests.
    pub max: usize,
    /// May get endgame duplicates (false for a snubbed peer, which is not
    /// trusted to finish the torrent).
    pub endgame: bool,
    /// When the requests are sent (starts their deadlines).
    pub now: Instant,
}

/// How long a peer may take to answer a request (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// Slack every request gets.
    pub grace: Duration,
    /// Time one block takes at the peer's rate.
    pub per_block: Duration,
}

/// A request in flight: its order among all requests, when it went out
/// and how many requests to the same peer were ahead of it then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sent {
    seq: u64,
    at: Instant,
    ahead: usize,
}

/// What [`PiecePicker::block_received`] made of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockReceived {
    /// The block was needed and is now recorded as received.
    Stored {
        /// All blocks of the piece are in: verify it, then call
        /// [`PiecePicker::piece_passed`] or [`PiecePicker::piece_failed`].
        piece_complete: bool,
        /// Other peers this block was also requested from (endgame): send
        /// them CANCEL. Their requests are already forgotten.
        cancel: Vec<PeerKey>,
    },
    /// The block had already arrived from someone else (an endgame race or a
    /// late reply to a CANCEL), or its piece is already had: discard it.
    Duplicate,
    /// Not a block of this torrent's geometry, or of a piece not in
    /// progress: nobody asked for it.
    Unrequested,
}

/// One block of a started piece.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Free,
    /// Requested from these peers (more than one only in endgame).
    Requested(Vec<PeerKey>),
    /// Arrived from this peer.
    Received(PeerKey),
}

/// A started piece.
#[derive(Debug, Clone)]
struct Partial {
    blocks: Vec<Block>,
    /// Blocks in state `Free`.
    free: usize,
    /// Blocks in state `Received`.
    received: usize,
}

impl Partial {
    fn is_complete(&self) -> bool {
        self.received == self.blocks.len()
    }

    fn is_idle(&self) -> bool {
        self.free == self.blocks.len()
    }
}

/// The piece picker and block bookkeeping for one torrent. See the module
/// docs.
#[derive(Debug, Clone)]
pub struct PiecePicker {
    piece_count: usize,
    piece_length: u64,
    total_length: u64,
    config: PickerConfig,
    rng: SmallRng,
    have: Bitfield,
    wanted: Vec<bool>,
    /// Wanted pieces not had.
    wanted_missing: usize,
    /// Bytes of wanted pieces not had.
    wanted_left: u64,
    avail: Availability,
    /// A fixed random permutation of the pieces (random-first order).
    scrambled: Vec<u32>,
    started: BTreeMap<u32, Partial>,
    /// Per peer, the new piece most recently started for it, whose
    /// successor wins ties in rarest-first order. Dropped in `peer_gone`.
    last_new: FastMap<PeerKey, u32>,
    /// Requests in flight per peer: (piece, block index) and when sent.
    outstanding: HashMap<PeerKey, FastMap<(u32, u32), Sent>>,
    /// Numbers requests in the order they are made.
    next_seq: u64,
    /// Pieces whose bytes end before their place in the piece space does,
    /// with their length (see [`PiecePicker::set_short_pieces`]).
    short: FastMap<u32, u64>,
}

impl PiecePicker {
    /// A picker for `piece_count` pieces of `piece_length` bytes (the last
    /// one holds the rest of `total_length`). Everything is wanted, nothing
    /// is had. `seed` fixes the random choices, for reproducible tests.
    ///
    /// Geometry is expected to be consistent (as a parsed metainfo
    /// guarantees); a short or overlong `total_length` is clamped into the
    /// last piece rather than panicking.
    pub fn new(
        piece_count: usize,
        piece_length: u64,
        total_length: u64,
        config: PickerConfig,
        seed: u64,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut scrambled: Vec<u32> = (0..piece_count as u32).collect();
        scrambled.shuffle(&mut rng);
        let mut picker = PiecePicker {
            piece_count,
            piece_length: piece_length.max(1),
            total_length,
            config,
            rng,
            have: Bitfield::new(piece_count),
            wanted: vec![true; piece_count],
            wanted_missing: piece_count,
            wanted_left: 0,
            avail: Availability::new(piece_count),
            scrambled,
            started: BTreeMap::new(),
            last_new: FastMap::default(),
            outstanding: HashMap::new(),
            next_seq: 0,
            short: FastMap::default(),
        };
        picker.wanted_left = (0..piece_count).map(|p| picker.piece_size(p)).sum();
        for i in 0..picker.scrambled.len() {
            let p = picker.scrambled[i] as usize;
            picker.avail.insert(p, &mut picker.rng);
        }
        picker
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> usize {
        self.piece_count
    }

    /// Makes each of `sizes`' pieces `(piece, length)` that long: its
    /// blocks past `length` are never requested nor waited for. A v2-only
    /// torrent's file ends its last piece (BEP 52: the next file starts a
    /// new piece); the padding after it carries no payload. Call it on a
    /// new picker; lengths that are zero or not shorter are ignored.
    pub fn set_short_pieces(&mut self, sizes: &[(u32, u64)]) {
        for &(piece, length) in sizes {
            let p = piece as usize;
            if p < self.piece_count && length > 0 && length < self.piece_size(p) {
                if self.wanted[p] && !self.have.get(p) {
                    self.wanted_left -= self.piece_size(p) - length;
                }
                self.short.insert(piece, length);
            }
        }
    }

    /// Size of `piece` in bytes (the last piece may be shorter).
    pub fn piece_size(&self, piece: usize) -> u64 {
        if let Some(&n) = self.short.get(&(piece as u32)) {
            return n;
        }
        if piece + 1 < self.piece_count {
            self.piece_length
        } else {
            let before = self.piece_length * piece as u64;
            self.total_length
                .saturating_sub(before)
                .clamp(1, self.piece_length)
        }
    }

    /// Number of blocks in `piece`.
    pub fn blocks_in_piece(&self, piece: usize) -> usize {
        self.piece_size(piece).div_ceil(u64::from(BLOCK_SIZE)) as usize
    }

    /// Block `block` of `piece` (the last block of a piece may be shorter).
    pub fn block_ref(&self, piece: usize, block: usize) -> BlockRef {
        let begin = block as u64 * u64::from(BLOCK_SIZE);
        let length = (self.piece_size(piece) - begin).min(u64::from(BLOCK_SIZE));
        BlockRef {
            index: piece as u32,
            begin: begin as u32,
            length: length as u32,
        }
    }

    /// Map a block to (piece, block index) if it is exactly one of ours.
    fn locate(&self, b: BlockRef) -> Option<(u32, usize)> {
        let piece = b.index as usize;
        if piece >= self.piece_count || !b.begin.is_multiple_of(BLOCK_SIZE) {
            return None;
        }
        let i = (b.begin / BLOCK_SIZE) as usize;
        (i < self.blocks_in_piece(piece) && self.block_ref(piece, i) == b).then_some((b.index, i))
    }

    /// Set which pieces are wanted (e.g. from file selection, see
    /// [`pieces_wanted_by_files`]). Entries missing from a short slice count
    /// as unwanted. Started pieces that become unwanted get no new requests;
    /// blocks already in flight are still accepted.
    pub fn set_wanted(&mut self, wanted: &[bool]) {
        for p in 0..self.piece_count {
            let w = wanted.get(p).copied().unwrap_or(false);
            if w == self.wanted[p] {
                continue;
            }
            self.wanted[p] = w;
            if self.have.get(p) {
                continue;
            }
            let size = self.piece_size(p);
            if w {
                self.wanted_missing += 1;
                self.wanted_left += size;
                if !self.started.contains_key(&(p as u32)) {
                    self.avail.insert(p, &mut self.rng);
                }
            } else {
                self.wanted_missing -= 1;
                self.wanted_left -= size;
                self.avail.remove(p);
            }
        }
    }

    /// Whether `piece` is wanted.
    pub fn is_wanted(&self, piece: usize) -> bool {
        self.wanted.get(piece).copied().unwrap_or(false)
    }

    /// We have `piece` verified (found at startup, or after a hash pass).
    /// Out-of-range indices are ignored.
    pub fn set_have(&mut self, piece: usize) {
        if piece >= self.piece_count || self.have.get(piece) {
            return;
        }
        self.have.set(piece);
        if self.wanted[piece] {
            self.wanted_missing -= 1;
            self.wanted_left -= self.piece_size(piece);
        }
        self.avail.remove(piece);
        if let Some(partial) = self.started.remove(&(piece as u32)) {
            self.forget_requests(piece as u32, &partial);
        }
    }

    /// Undoes [`set_have`](Self::set_have): the piece's data turned out to
    /// be gone (file deleted or truncated), so it must be fetched again.
    pub fn unset_have(&mut self, piece: usize) {
        if piece >= self.piece_count || !self.have.get(piece) {
            return;
        }
        self.have.clear(piece);
        if self.wanted[piece] {
            self.wanted_missing += 1;
            self.wanted_left += self.piece_size(piece);
            self.avail.insert(piece, &mut self.rng);
        }
    }

    /// Whether we have `piece` verified.
    pub fn have(&self, piece: usize) -> bool {
        self.have.get(piece)
    }

    /// The pieces we have, for BITFIELD messages.
    pub fn have_bitfield(&self) -> &Bitfield {
        &self.have
    }

    /// Every wanted piece is had.
    pub fn is_complete(&self) -> bool {
        self.wanted_missing == 0
    }

    /// Bytes of wanted pieces we do not have yet.
    pub fn wanted_left_bytes(&self) -> u64 {
        self.wanted_left
    }

    /// How many connected peers have `piece` (0 when out of range).
    pub fn availability(&self, piece: usize) -> u32 {
        if piece < self.piece_count {
            self.avail.count(piece)
        } else {
            0
        }
    }

    /// A peer announced `piece` (HAVE). Out-of-range indices are ignored.
    pub fn peer_has(&mut self, piece: usize) {
        if piece < self.piece_count {
            self.avail.inc(piece, &mut self.rng);
        }
    }

    /// A peer announced these pieces (BITFIELD; HAVE ALL as a full field).
    pub fn peer_bitfield(&mut self, bits: &Bitfield) {
        for p in bits.iter_ones().take_while(|&p| p < self.piece_count) {
            self.avail.inc(p, &mut self.rng);
        }
    }

    /// A peer with these pieces disconnected.
    pub fn peer_lost_bitfield(&mut self, bits: &Bitfield) {
        for p in bits.iter_ones().take_while(|&p| p < self.piece_count) {
            self.avail.dec(p, &mut self.rng);
        }
    }

    /// Whether `piece` is one we want and lack (for a HAVE).
    pub fn is_piece_interesting(&self, piece: usize) -> bool {
        piece < self.piece_count && self.wanted[piece] && !self.have.get(piece)
    }

    /// Whether a peer with `bits` has a wanted piece we lack.
    pub fn is_interesting(&self, bits: &Bitfield) -> bool {
        bits.iter_ones().any(|p| self.is_piece_interesting(p))
    }

    /// Nothing in flight, nothing started, no peer counted: the picker
    /// holds nothing that a new one given the same had and wanted pieces
    /// would not (so a torrent may drop it and build it again).
    pub fn is_idle(&self) -> bool {
        self.outstanding.is_empty()
            && self.started.is_empty()
            && self.last_new.is_empty()
            && (0..self.piece_count).all(|p| self.avail.count(p) == 0)
    }

    /// Requests in flight to `peer`.
    pub fn outstanding(&self, peer: PeerKey) -> usize {
        self.outstanding.get(&peer).map_or(0, FastMap::len)
    }

    /// The blocks in flight to `peer`, sorted.
    pub fn outstanding_blocks(&self, peer: PeerKey) -> Vec<BlockRef> {
        let mut v: Vec<BlockRef> = self
            .outstanding
            .get(&peer)
            .into_iter()
            .flat_map(FastMap::keys)
            .map(|&(p, i)| self.block_ref(p as usize, i as usize))
            .collect();
        v.sort();
        v
    }

    /// Every missing block of the wanted pieces is requested or received
    /// (and endgame is enabled).
    pub fn in_endgame(&self) -> bool {
        self.config.endgame
            && !self.is_complete()
            && self.avail.len() == 0
            && self
                .started
                .iter()
                .all(|(&p, s)| s.free == 0 || !self.wanted[p as usize])
    }

    /// Choose up to `req.max` new block requests for `peer`, append them to
    /// `out` and record them as requested from `peer` at `req.now`. While
    /// `req.choked`, only pieces in `req.allowed_fast` (BEP 6) are picked.
    /// See the module docs for the order.
    pub fn pick(&mut self, peer: PeerKey, req: &PickRequest<'_>, out: &mut Vec<BlockRef>) {
        let PickRequest {
            bits,
            choked,
            allowed_fast,
            max,
            endgame,
            now,
        } = *req;
        let allowed = |p: usize| !choked || allowed_fast.contains(&(p as u32));
        let first = out.len();
        let mut need = max;
        // 1. Started pieces, strictly first.
        while need > 0 {
            let best = self
                .started
                .iter()
                .filter(|(&p, s)| {
                    let p = p as usize;
                    s.free > 0 && self.wanted[p] && bits.get(p) && allowed(p)
                })
                .map(|(&p, _)| p)
                .min_by_key(|&p| {
                    let rank = if self.config.sequential {
                        0
                    } else {
                        self.avail.count(p as usize)
                    };
                    (rank, p)
                });
            let Some(p) = best else { break };
            need -= self.take_free(peer, p, need, out);
        }
        // 2. New pieces.
        while need > 0 {
            let Some(p) = self.choose_new(peer, bits, choked, allowed_fast) else {
                break;
            };
            self.avail.remove(p);
            self.last_new.insert(peer, p as u32);
            let blocks = vec![Block::Free; self.blocks_in_piece(p)];
            let free = blocks.len();
            self.started.insert(
                p as u32,
                Partial {
                    blocks,
                    free,
                    received: 0,
                },
            );
            need -= self.take_free(peer, p as u32, need, out);
        }
        // 3. Endgame duplicates.
        if need > 0 && endgame && self.in_endgame() {
            self.pick_duplicates(peer, bits, &allowed, need, out);
        }
        // Stamp the new requests in the order they go out, each behind
        // those already queued at the peer.
        let set = self.outstanding.entry(peer).or_default();
        for b in &out[first..] {
            let key = (b.index, b.begin / BLOCK_SIZE);
            let ahead = set.len();
            set.insert(
                key,
                Sent {
                    seq: self.next_seq,
                    at: now,
                    ahead,
                },
            );
            self.next_seq += 1;
        }
    }

    /// A new piece for a peer with `bits`: random first, rarest first, or
    /// sequential.
    fn choose_new(
        &mut self,
        peer: PeerKey,
        bits: &Bitfield,
        choked: bool,
        allowed_fast: &[u32],
    ) -> Option<usize> {
        if choked {
            // Only the (few) allowed-fast pieces: rarest of them.
            return allowed_fast
                .iter()
                .map(|&p| p as usize)
                .filter(|&p| p < self.piece_count && self.avail.contains(p) && bits.get(p))
                .min_by_key(|&p| (self.avail.count(p), p));
        }
        if self.config.sequential {
            return self.avail.ascending().find(|&p| bits.get(p));
        }
        if self.have.count_ones() < self.config.random_first {
            let n = self.scrambled.len();
            if n == 0 {
                return None;
            }
            let start = self.rng.random_range(0..n);
            return (0..n)
                .map(|k| self.scrambled[(start + k) % n] as usize)
                .find(|&p| self.avail.contains(p) && bits.get(p));
        }
        let rarest = self.avail.rarest().find(|&p| bits.get(p))?;
        // Prefer the successor of this peer's last new piece when it is as
        // rare.
        let next = self.last_new.get(&peer).map(|&p| p as usize + 1);
        Some(match next {
            Some(n)
                if n < self.piece_count
                    && self.avail.contains(n)
                    && bits.get(n)
                    && self.avail.count(n) <= self.avail.count(rarest) =>
            {
                n
            }
            _ => rarest,
        })
    }

    /// Request up to `need` free blocks of started piece `p` from `peer`.
    /// Returns how many.
    fn take_free(&mut self, peer: PeerKey, p: u32, need: usize, out: &mut Vec<BlockRef>) -> usize {
        let Some(partial) = self.started.get_mut(&p) else {
            return 0;
        };
        let mut taken = Vec::new();
        for (i, b) in partial.blocks.iter_mut().enumerate() {
            if taken.len() == need {
                break;
            }
            if *b == Block::Free {
                *b = Block::Requested(vec![peer]);
                taken.push(i as u32);
            }
        }
        partial.free -= taken.len();
        out.extend(
            taken
                .iter()
                .map(|&i| self.block_ref(p as usize, i as usize)),
        );
        taken.len()
    }

    /// Endgame: request blocks already requested from others.
    fn pick_duplicates(
        &mut self,
        peer: PeerKey,
        bits: &Bitfield,
        allowed: &dyn Fn(usize) -> bool,
        need: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let mut cands: Vec<(usize, u32, u32)> = Vec::new();
        for (&p, s) in &self.started {
            let pu = p as usize;
            if !self.wanted[pu] || !bits.get(pu) || !allowed(pu) {
                continue;
            }
            for (i, b) in s.blocks.iter().enumerate() {
                if let Block::Requested(v) = b {
                    if !v.contains(&peer) {
                        cands.push((v.len(), p, i as u32));
                    }
                }
            }
        }
        // Spread peers over different blocks: random order, then the blocks
        // with fewest copies in flight first.
        cands.shuffle(&mut self.rng);
        cands.sort_by_key(|&(copies, _, _)| copies);
        for &(_, p, i) in cands.iter().take(need) {
            if let Some(Block::Requested(v)) = self
                .started
                .get_mut(&p)
                .and_then(|s| s.blocks.get_mut(i as usize))
            {
                v.push(peer);
            }
        }
        for &(_, p, i) in cands.iter().take(need) {
            out.push(self.block_ref(p as usize, i as usize));
        }
    }

    /// A block arrived from `peer`. See [`BlockReceived`].
    pub fn block_received(&mut self, peer: PeerKey, block: BlockRef) -> BlockReceived {
        let Some((p, i)) = self.locate(block) else {
            return BlockReceived::Unrequested;
        };
        if let Some(set) = self.outstanding.get_mut(&peer) {
            set.remove(&(p, i as u32));
        }
        let Some(partial) = self.started.get_mut(&p) else {
            return if self.have.get(p as usize) {
                BlockReceived::Duplicate
            } else {
                BlockReceived::Unrequested
            };
        };
        let mut cancel = Vec::new();
        match std::mem::replace(&mut partial.blocks[i], Block::Received(peer)) {
            old @ Block::Received(_) => {
                partial.blocks[i] = old;
                return BlockReceived::Duplicate;
            }
            // Released (choke, reject, disconnect) but sent anyway: still
            // useful.
            Block::Free => partial.free -= 1,
            Block::Requested(v) => cancel = v.into_iter().filter(|&o| o != peer).collect(),
        }
        partial.received += 1;
        let piece_complete = partial.is_complete();
        for o in &cancel {
            if let Some(set) = self.outstanding.get_mut(o) {
                set.remove(&(p, i as u32));
            }
        }
        BlockReceived::Stored {
            piece_complete,
            cancel,
        }
    }

    /// The request of `block` from `peer` is void (REJECT, or we sent
    /// CANCEL): the block becomes pickable again unless another peer has it
    /// requested too.
    pub fn request_lost(&mut self, peer: PeerKey, block: BlockRef) {
        if let Some((p, i)) = self.locate(block) {
            self.release(peer, p, i as u32);
        }
    }

    fn release(&mut self, peer: PeerKey, p: u32, i: u32) {
        if let Some(set) = self.outstanding.get_mut(&peer) {
            set.remove(&(p, i));
        }
        let Some(partial) = self.started.get_mut(&p) else {
            return;
        };
        if let Some(Block::Requested(v)) = partial.blocks.get_mut(i as usize) {
            v.retain(|&o| o != peer);
            if v.is_empty() {
                partial.blocks[i as usize] = Block::Free;
                partial.free += 1;
            }
        }
        if partial.is_idle() {
            self.started.remove(&p);
            let pu = p as usize;
            if self.wanted[pu] && !self.have.get(pu) {
                self.avail.insert(pu, &mut self.rng);
            }
        }
    }

    /// Releases every request to `peer` that is overdue at `now` under
    /// `deadline` (see the module docs) and returns them, oldest first:
    /// the blocks are pickable again (unless requested from another peer
    /// too, in endgame). The caller sends CANCEL for each.
    pub fn expire(&mut self, peer: PeerKey, now: Instant, deadline: Deadline) -> Vec<BlockRef> {
        let Some(set) = self.outstanding.get(&peer) else {
            return Vec::new();
        };
        let mut overdue: Vec<(u64, (u32, u32))> = set
            .iter()
            .filter(|(_, s)| {
                let ahead = u32::try_from(s.ahead).unwrap_or(u32::MAX);
                let due = s.at + deadline.grace + deadline.per_block.saturating_mul(ahead + 1);
                now >= due
            })
            .map(|(&key, s)| (s.seq, key))
            .collect();
        overdue.sort_unstable();
        for &(_, (p, i)) in &overdue {
            self.release(peer, p, i);
        }
        overdue
            .into_iter()
            .map(|(_, (p, i))| self.block_ref(p as usize, i as usize))
            .collect()
    }

    /// `peer` choked us (without the fast extension) or disconnected: all
    /// its requests are void. Returns them, sorted.
    pub fn peer_gone(&mut self, peer: PeerKey) -> Vec<BlockRef> {
        self.last_new.remove(&peer);
        let Some(set) = self.outstanding.remove(&peer) else {
            return Vec::new();
        };
        let mut lost: Vec<(u32, u32)> = set.into_keys().collect();
        lost.sort_unstable();
        for &(p, i) in &lost {
            self.release(peer, p, i);
        }
        lost.into_iter()
            .map(|(p, i)| self.block_ref(p as usize, i as usize))
            .collect()
    }

    /// `piece` passed its hash check: it is had.
    pub fn piece_passed(&mut self, piece: usize) {
        self.set_have(piece);
    }

    /// Who sent each block of the started `piece` (`None` for a block not
    /// received from a peer), before [`PiecePicker::piece_failed`] forgets
    /// them: a v2 piece's failure is pinned on single blocks.
    pub fn block_senders(&self, piece: usize) -> Vec<Option<PeerKey>> {
        let Some(partial) = self.started.get(&(piece as u32)) else {
            return Vec::new();
        };
        partial
            .blocks
            .iter()
            .map(|b| match b {
                Block::Received(p) => Some(*p),
                _ => None,
            })
            .collect()
    }

    /// `piece` failed its hash check: all its blocks are pickable again.
    /// Returns the peers that sent its blocks (sorted, unique), for a
    /// [`BadDataGuard`].
    pub fn piece_failed(&mut self, piece: usize) -> Vec<PeerKey> {
        if piece >= self.piece_count {
            return Vec::new();
        }
        let Some(partial) = self.started.remove(&(piece as u32)) else {
            return Vec::new();
        };
        self.forget_requests(piece as u32, &partial);
        let mut senders: Vec<PeerKey> = partial
            .blocks
            .iter()
            .filter_map(|b| {
                if let Block::Received(p) = b {
                    Some(*p)
                } else {
                    None
                }
            })
            .collect();
        senders.sort_unstable();
        senders.dedup();
        if self.wanted[piece] && !self.have.get(piece) {
            self.avail.insert(piece, &mut self.rng);
        }
        senders
    }

    /// Drop in-flight requests of a started piece from the per-peer sets.
    fn forget_requests(&mut self, p: u32, partial: &Partial) {
        for (i, b) in partial.blocks.iter().enumerate() {
            if let Block::Requested(v) = b {
                for o in v {
                    if let Some(set) = self.outstanding.get_mut(o) {
                        set.remove(&(p, i as u32));
                    }
                }
            }
        }
    }
}

/// Which pieces to want given a file selection: a piece is wanted if any
/// byte of it belongs to a wanted file, so pieces shared between a skipped
/// and a wanted file are fetched. `files` are (length, wanted) in torrent
/// order; zero-length files touch no piece.
pub fn pieces_wanted_by_files(piece_length: u64, files: &[(u64, bool)]) -> Vec<bool> {
    let piece_length = piece_length.max(1);
    let total: u64 = files.iter().map(|f| f.0).sum();
    let mut wanted = vec![false; total.div_ceil(piece_length) as usize];
    let mut offset = 0u64;
    for &(len, want) in files {
        if want && len > 0 {
            let first = offset / piece_length;
            let last = (offset + len - 1) / piece_length;
            for w in &mut wanted[first as usize..=last as usize] {
                *w = true;
            }
        }
        offset += len;
    }
    wanted
}

#[cfg(test)]
mod tests;
