use super::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const B: u32 = BLOCK_SIZE;

fn cfg() -> PickerConfig {
    PickerConfig::default()
}

/// `n` pieces of `blocks` full blocks each.
fn picker(n: usize, blocks: u32, config: PickerConfig, seed: u64) -> PiecePicker {
    let plen = u64::from(blocks * B);
    PiecePicker::new(n, plen, plen * n as u64, config, seed)
}

fn full(n: usize) -> Bitfield {
    let mut b = Bitfield::new(n);
    for i in 0..n {
        b.set(i);
    }
    b
}

fn bits(n: usize, ones: &[usize]) -> Bitfield {
    let mut b = Bitfield::new(n);
    for &i in ones {
        b.set(i);
    }
    b
}

fn pick(p: &mut PiecePicker, peer: u64, bits: &Bitfield, max: usize) -> Vec<BlockRef> {
    let mut out = Vec::new();
    p.pick(PeerKey(peer), &req(bits, max), &mut out);
    out
}

/// An unchoked, trusted peer's request for `max` blocks, now.
fn req(bits: &Bitfield, max: usize) -> PickRequest<'_> {
    PickRequest {
        bits,
        choked: false,
        allowed_fast: &[],
        max,
        endgame: true,
        now: Instant::now(),
    }
}

fn pieces_of(blocks: &[BlockRef]) -> BTreeSet<u32> {
    blocks.iter().map(|b| b.index).collect()
}

fn stored(complete: bool, cancel: &[u64]) -> BlockReceived {
    BlockReceived::Stored {
        piece_complete: complete,
        cancel: cancel.iter().map(|&c| PeerKey(c)).collect(),
    }
}

#[test]
fn last_piece_and_last_block_are_shorter() {
    // 2 pieces of 40000 bytes and a last one of 20000.
    let mut p = PiecePicker::new(3, 40_000, 100_000, cfg(), 1);
    assert_eq!(p.piece_size(2), 20_000);
    assert_eq!(p.blocks_in_piece(0), 3);
    assert_eq!(p.blocks_in_piece(2), 2);
    let got: BTreeSet<BlockRef> = pick(&mut p, 1, &full(3), 100).into_iter().collect();
    let want: BTreeSet<BlockRef> = [
        (0, 0, B),
        (0, B, B),
        (0, 2 * B, 40_000 - 2 * B),
        (1, 0, B),
        (1, B, B),
        (1, 2 * B, 40_000 - 2 * B),
        (2, 0, B),
        (2, B, 20_000 - B),
    ]
    .into_iter()
    .map(|(index, begin, length)| BlockRef {
        index,
        begin,
        length,
    })
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        got.iter().map(|b| u64::from(b.length)).sum::<u64>(),
        100_000
    );
    assert_eq!(p.outstanding(PeerKey(1)), 8);
    assert_eq!(p.wanted_left_bytes(), 100_000);
    // A last piece that is a single short block.
    let q = PiecePicker::new(2, u64::from(B), u64::from(B) + 1, cfg(), 1);
    assert_eq!(
        q.block_ref(1, 0),
        BlockRef {
            index: 1,
            begin: 0,
            length: 1
        }
    );
}

/// A v2-only torrent's piece that ends in padding: only its file's bytes
/// are requested and counted, and they complete it.
#[test]
fn short_pieces_are_asked_for_their_bytes_only() {
    // 3 pieces of 40000 bytes; piece 0 holds 20000 bytes of a file
    let mut p = PiecePicker::new(3, 40_000, 120_000, cfg(), 1);
    p.set_short_pieces(&[(0, 20_000), (1, 40_000), (2, 0)]);
    assert_eq!(p.piece_size(0), 20_000);
    assert_eq!(p.piece_size(1), 40_000, "not shorter: ignored");
    assert_eq!(p.piece_size(2), 40_000, "empty: ignored");
    assert_eq!(p.blocks_in_piece(0), 2);
    assert_eq!(p.wanted_left_bytes(), 100_000);
    let got = pick(&mut p, 1, &full(3), 100);
    let of0: Vec<&BlockRef> = got.iter().filter(|b| b.index == 0).collect();
    assert_eq!(of0.len(), 2);
    assert_eq!(of0.iter().map(|b| u64::from(b.length)).sum::<u64>(), 20_000);
    for b in of0 {
        let r = p.block_received(PeerKey(1), *b);
        assert!(matches!(r, BlockReceived::Stored { .. }), "{r:?}");
    }
    p.piece_passed(0);
    assert_eq!(p.wanted_left_bytes(), 80_000);
}

#[test]
fn started_pieces_have_strict_priority() {
    for seed in 0..10 {
        let mut p = picker(50, 4, cfg(), seed);
        let all = full(50);
        p.peer_bitfield(&all);
        let first = pick(&mut p, 1, &all, 1);
        assert_eq!(first.len(), 1);
        let started = first[0].index;
        // Another peer first gets the three other blocks of that piece.
        let next = pick(&mut p, 2, &all, 3);
        assert_eq!(pieces_of(&next), BTreeSet::from([started]), "seed {seed}");
        assert!(!next.contains(&first[0]));
        // And only then a new piece.
        let more = pick(&mut p, 2, &all, 1);
        assert_ne!(more[0].index, started);
    }
}

#[test]
fn random_first_then_rarest_first() {
    let n = 30;
    let mut firsts = BTreeSet::new();
    for seed in 0..20 {
        let mut p = picker(n, 1, cfg(), seed);
        // Availability: piece 7 is rarest (1 peer), the rest have 3.
        for i in 0..n {
            for _ in 0..if i == 7 { 1 } else { 3 } {
                p.peer_has(i);
            }
        }
        // Random first: fewer than 4 pieces had.
        let got = pick(&mut p, 1, &full(n), 1);
        firsts.insert(got[0].index);
        p.peer_gone(PeerKey(1));
        // With 4 pieces had, the rarest wins every time.
        for had in [0, 1, 2, 3] {
            if had != 7 {
                p.set_have(had);
            }
        }
        p.set_have(29);
        let got = pick(&mut p, 1, &full(n), 1);
        assert_eq!(got[0].index, 7, "seed {seed}");
    }
    assert!(
        firsts.len() >= 8,
        "random first picks were not random: {firsts:?}"
    );
}

#[test]
fn rarest_first_breaks_ties_at_random_and_respects_peer_bits() {
    let n = 10;
    let mut chosen = BTreeSet::new();
    for seed in 0..30 {
        let config = PickerConfig {
            random_first: 0,
            ..cfg()
        };
        let mut p = picker(n, 1, config, seed);
        for i in 0..n {
            for _ in 0..if i == 2 || i == 5 { 1 } else { 4 } {
                p.peer_has(i);
            }
        }
        let got = pick(&mut p, 1, &full(n), 1)[0].index;
        assert!(got == 2 || got == 5);
        chosen.insert(got);
        // A peer without pieces 2 and 5 gets one of the others.
        let other = bits(n, &[0, 1, 3, 9]);
        let got = pick(&mut p, 2, &other, 1)[0].index;
        assert!([0, 1, 3, 9].contains(&got));
    }
    assert_eq!(chosen, BTreeSet::from([2, 5]));
}

#[test]
fn equal_rarity_continues_after_the_last_new_piece() {
    let n = 64;
    for seed in 0..10 {
        let config = PickerConfig {
            random_first: 0,
            ..cfg()
        };
        let mut p = picker(n, 1, config, seed);
        let all = full(n);
        p.peer_bitfield(&all);
        // One source, all pieces equally rare: after a random start the
        // picks run on in index order (wrapping to a new random start only
        // at the end of the torrent).
        let first = pick(&mut p, 1, &all, 1)[0].index as usize;
        let got: Vec<usize> = pick(&mut p, 1, &all, 8)
            .iter()
            .map(|b| b.index as usize)
            .collect();
        let run = n.min(first + 9) - first - 1;
        let expect: Vec<usize> = (first + 1..first + 1 + run).collect();
        assert_eq!(got[..run], expect[..], "seed {seed}, start {first}");

        // A rarer piece still comes first.
        let mut p = picker(
            n,
            1,
            PickerConfig {
                random_first: 0,
                ..cfg()
            },
            seed,
        );
        p.peer_bitfield(&all);
        p.peer_bitfield(&all);
        let rare = (first + 20) % n;
        p.peer_lost_bitfield(&bits(n, &[rare]));
        let a = pick(&mut p, 1, &all, 1)[0].index as usize;
        assert_eq!(a, rare, "seed {seed}");
        // Then the successor of that one.
        let b = pick(&mut p, 1, &all, 1)[0].index as usize;
        if rare + 1 < n {
            assert_eq!(b, rare + 1, "seed {seed}");
        }
        // Each peer runs on from its own last piece: peer 2 starts
        // somewhere and continues there, and peer 1 still continues after
        // `b` (unless peer 2 took that piece).
        let c = pick(&mut p, 2, &all, 1)[0].index as usize;
        let d = pick(&mut p, 2, &all, 1)[0].index as usize;
        if c + 1 < n && c + 1 != rare && c + 1 != b {
            assert_eq!(d, c + 1, "seed {seed}");
        }
        let e = pick(&mut p, 1, &all, 1)[0].index as usize;
        if b + 1 < n && ![c, d].contains(&(b + 1)) {
            assert_eq!(e, b + 1, "seed {seed}");
        }
    }
}

#[test]
fn sequential_picks_lowest_index() {
    let config = PickerConfig {
        sequential: true,
        ..cfg()
    };
    let mut p = picker(10, 2, config, 3);
    for i in 5..10 {
        p.peer_has(i); // rarer pieces further on must not matter
    }
    p.set_have(0);
    let got = pick(&mut p, 1, &full(10), 5);
    let idx: Vec<u32> = got.iter().map(|b| b.index).collect();
    assert_eq!(idx, vec![1, 1, 2, 2, 3]);
    let got = pick(&mut p, 2, &bits(10, &[3, 8, 9]), 3);
    assert_eq!(
        got.iter().map(|b| b.index).collect::<Vec<_>>(),
        vec![3, 8, 8]
    );
    // Peer 1 goes: pieces 1 and 2 are free again; piece 3 is still started
    // (peer 2 has a block of it), so it comes first, then the lowest.
    p.peer_gone(PeerKey(1));
    let got = pick(&mut p, 3, &full(10), 2);
    assert_eq!(got.iter().map(|b| b.index).collect::<Vec<_>>(), vec![3, 1]);
}

#[test]
fn never_picks_unwanted_or_had_pieces() {
    let n = 12;
    let mut p = picker(n, 2, cfg(), 9);
    let wanted: Vec<bool> = (0..n).map(|i| i % 3 != 0).collect();
    p.set_wanted(&wanted);
    p.set_have(1);
    p.set_have(3); // unwanted and had
    assert_eq!(p.wanted_left_bytes(), 7 * 2 * u64::from(B));
    let got = pick(&mut p, 1, &full(n), 1000);
    let pieces = pieces_of(&got);
    assert_eq!(pieces, BTreeSet::from([2, 4, 5, 7, 8, 10, 11]));
    assert!(!p.is_interesting(&bits(n, &[0, 1, 3, 6, 9])));
    assert!(p.is_interesting(&bits(n, &[0, 2])));
    for b in &got {
        let r = p.block_received(PeerKey(1), *b);
        assert!(matches!(r, BlockReceived::Stored { .. }));
        if r == stored(true, &[]) {
            p.piece_passed(b.index as usize);
        }
    }
    assert!(p.is_complete());
    assert_eq!(p.wanted_left_bytes(), 0);
    assert!(!p.have(0) && !p.have(6));
    assert!(pick(&mut p, 2, &full(n), 10).is_empty());
    // Wanting more later makes them pickable.
    p.set_wanted(&vec![true; n]);
    assert!(!p.is_complete());
    assert_eq!(
        pieces_of(&pick(&mut p, 2, &full(n), 100)),
        BTreeSet::from([0, 6, 9])
    );
}

#[test]
fn choked_peer_only_gets_allowed_fast_pieces() {
    let n = 20;
    let mut p = picker(n, 2, cfg(), 4);
    let mut out = Vec::new();
    let all = full(n);
    let choked = PickRequest {
        choked: true,
        ..req(&all, 10)
    };
    p.pick(PeerKey(1), &choked, &mut out);
    assert!(out.is_empty());
    let some = bits(n, &[4, 9]);
    let fast = PickRequest {
        choked: true,
        allowed_fast: &[4, 7, 99],
        ..req(&some, 10)
    };
    p.pick(PeerKey(1), &fast, &mut out);
    assert_eq!(pieces_of(&out), BTreeSet::from([4]));
    // Started piece 4 has no free blocks left; an unchoked peer gets others.
    assert!(!pieces_of(&pick(&mut p, 2, &full(n), 4)).contains(&4));
}

#[test]
fn endgame_duplicates_and_cancels() {
    let mut p = picker(2, 2, cfg(), 5);
    let all = full(2);
    let a = pick(&mut p, 1, &all, 10);
    assert_eq!(a.len(), 4);
    assert!(p.in_endgame());
    // A gets no duplicates of its own requests.
    assert!(pick(&mut p, 1, &all, 10).is_empty());
    let b = pick(&mut p, 2, &all, 3);
    assert_eq!(b.len(), 3);
    assert!(b.iter().all(|x| a.contains(x)));
    let c = pick(&mut p, 3, &all, 10);
    assert_eq!(c.len(), 4);
    // The block B did not get is first for C (fewest copies in flight).
    let lonely = a.iter().find(|x| !b.contains(x)).unwrap();
    assert_eq!(&c[0], lonely);
    // First arrival wins; the others are told to cancel.
    assert_eq!(p.block_received(PeerKey(2), b[0]), stored(false, &[1, 3]));
    assert_eq!(p.outstanding(PeerKey(1)), 3);
    assert_eq!(p.outstanding(PeerKey(2)), 2);
    assert_eq!(p.outstanding(PeerKey(3)), 3);
    // A late copy is a duplicate.
    assert_eq!(p.block_received(PeerKey(1), b[0]), BlockReceived::Duplicate);
    assert_eq!(p.block_received(PeerKey(3), b[0]), BlockReceived::Duplicate);
    // Finish everything from peer 3.
    let mut completes = 0;
    for x in c.iter().filter(|x| **x != b[0]) {
        if let BlockReceived::Stored { piece_complete, .. } = p.block_received(PeerKey(3), *x) {
            completes += usize::from(piece_complete);
        }
    }
    assert_eq!(completes, 2);
    assert_eq!(p.outstanding(PeerKey(1)), 0);
    assert_eq!(p.outstanding(PeerKey(2)), 0);
    p.piece_passed(0);
    p.piece_passed(1);
    assert!(p.is_complete() && !p.in_endgame());
}

#[test]
fn no_endgame_when_disabled_or_blocks_free() {
    let mut p = picker(
        2,
        2,
        PickerConfig {
            endgame: false,
            ..cfg()
        },
        5,
    );
    let all = full(2);
    assert_eq!(pick(&mut p, 1, &all, 10).len(), 4);
    assert!(!p.in_endgame());
    assert!(pick(&mut p, 2, &all, 10).is_empty());

    let mut p = picker(3, 2, cfg(), 5);
    // Piece 2 nobody has: not every missing block can be requested.
    let two = bits(3, &[0, 1]);
    p.peer_bitfield(&two);
    assert_eq!(pick(&mut p, 1, &two, 10).len(), 4);
    assert!(!p.in_endgame());
    assert!(pick(&mut p, 2, &two, 10).is_empty());
}

#[test]
fn lost_requests_become_pickable_again() {
    let mut p = picker(
        4,
        4,
        PickerConfig {
            random_first: 0,
            ..cfg()
        },
        6,
    );
    let all = full(4);
    p.peer_bitfield(&all);
    let a = pick(&mut p, 1, &all, 3);
    assert_eq!(pieces_of(&a).len(), 1);
    // REJECT of one block: the next pick (any peer) gets it back.
    p.request_lost(PeerKey(1), a[1]);
    assert_eq!(p.outstanding(PeerKey(1)), 2);
    let b = pick(&mut p, 2, &all, 2);
    assert_eq!(b[0], a[1]);
    assert_eq!(b[1].index, a[0].index);
    // Peer 1 goes away: its two remaining blocks come back.
    let mut lost = p.peer_gone(PeerKey(1));
    lost.sort();
    let mut want = vec![a[0], a[2]];
    want.sort();
    assert_eq!(lost, want);
    assert_eq!(p.outstanding(PeerKey(1)), 0);
    assert!(p.peer_gone(PeerKey(1)).is_empty());
    let c = pick(&mut p, 3, &all, 2);
    assert_eq!(
        c.iter().copied().collect::<BTreeSet<_>>(),
        want.into_iter().collect()
    );
    // A request_lost for something never requested changes nothing.
    p.request_lost(PeerKey(9), c[0]);
    p.request_lost(
        PeerKey(9),
        BlockRef {
            index: 77,
            begin: 0,
            length: 1,
        },
    );
    assert_eq!(p.outstanding(PeerKey(3)), 2);
}

#[test]
fn abandoned_piece_returns_to_the_pickable_set() {
    let mut p = picker(
        3,
        2,
        PickerConfig {
            sequential: true,
            ..cfg()
        },
        1,
    );
    let a = pick(&mut p, 1, &full(3), 2);
    assert_eq!(pieces_of(&a), BTreeSet::from([0]));
    p.peer_gone(PeerKey(1));
    // Piece 0 is pickable again, not a stuck "started" piece.
    assert!(!p.in_endgame());
    let b = pick(&mut p, 2, &bits(3, &[0]), 10);
    assert_eq!(b, a);
}

#[test]
fn late_block_after_release_is_still_accepted() {
    let mut p = picker(2, 2, cfg(), 2);
    let a = pick(&mut p, 1, &full(2), 2);
    assert_eq!(pieces_of(&a).len(), 1);
    p.request_lost(PeerKey(1), a[0]);
    // Peer 1 sends it anyway (choke race): useful data, stored.
    assert_eq!(p.block_received(PeerKey(1), a[0]), stored(false, &[]));
    assert_eq!(p.block_received(PeerKey(1), a[1]), stored(true, &[]));
    // Nothing left of that piece to pick.
    let b = pick(&mut p, 2, &bits(2, &[a[0].index as usize]), 10);
    assert!(b.is_empty());
}

#[test]
fn piece_failed_resets_and_names_contributors() {
    let mut p = picker(
        3,
        3,
        PickerConfig {
            sequential: true,
            ..cfg()
        },
        8,
    );
    let all = full(3);
    let a = pick(&mut p, 1, &all, 2); // piece 0 blocks 0, 1
    let b = pick(&mut p, 2, &all, 1); // piece 0 block 2
    assert_eq!(pieces_of(&a), BTreeSet::from([0]));
    assert_eq!(pieces_of(&b), BTreeSet::from([0]));
    assert_eq!(p.block_received(PeerKey(1), a[0]), stored(false, &[]));
    assert_eq!(p.block_received(PeerKey(2), b[0]), stored(false, &[]));
    assert_eq!(p.block_received(PeerKey(1), a[1]), stored(true, &[]));
    // Complete, awaiting its hash: not picked.
    assert_eq!(pieces_of(&pick(&mut p, 3, &all, 3)), BTreeSet::from([1]));
    assert_eq!(p.piece_failed(0), vec![PeerKey(1), PeerKey(2)]);
    assert!(!p.have(0));
    // All three blocks of piece 0 are pickable again (and it is lowest).
    let c = pick(&mut p, 3, &all, 3);
    assert_eq!(c, vec![a[0], a[1], b[0]]);
    for x in &c {
        p.block_received(PeerKey(3), *x);
    }
    assert_eq!(p.piece_failed(0), vec![PeerKey(3)]);
    assert!(p.piece_failed(0).is_empty()); // not in progress any more
    let d = pick(&mut p, 4, &all, 3);
    for x in &d {
        p.block_received(PeerKey(4), *x);
    }
    p.piece_passed(0);
    assert!(p.have(0) && p.have_bitfield().get(0));
    assert_eq!(p.wanted_left_bytes(), 2 * 3 * u64::from(B));
}

#[test]
fn bad_blocks_are_rejected_without_panicking() {
    let mut p = PiecePicker::new(2, 40_000, 60_000, cfg(), 1);
    let a = pick(&mut p, 1, &bits(2, &[0]), 1);
    let blk = a[0];
    let bad = [
        BlockRef {
            begin: blk.begin + 1,
            ..blk
        },
        BlockRef {
            length: blk.length - 1,
            ..blk
        },
        BlockRef { index: 2, ..blk },
        BlockRef {
            index: u32::MAX,
            ..blk
        },
        BlockRef {
            begin: 3 * B,
            ..blk
        },
        BlockRef {
            index: 1,
            begin: B,
            length: B,
        }, // last block of piece 1 is shorter
    ];
    for x in bad {
        assert_eq!(
            p.block_received(PeerKey(1), x),
            BlockReceived::Unrequested,
            "{x:?}"
        );
    }
    // Right geometry but piece 1 was never started.
    let other = BlockRef {
        index: 1,
        begin: 0,
        length: B,
    };
    assert_eq!(
        p.block_received(PeerKey(1), other),
        BlockReceived::Unrequested
    );
    assert_eq!(p.outstanding(PeerKey(1)), 1);
    p.set_have(1);
    assert_eq!(
        p.block_received(PeerKey(1), other),
        BlockReceived::Duplicate
    );
    // Out-of-range indices are ignored everywhere.
    p.peer_has(5);
    p.set_have(5);
    p.piece_passed(9);
    assert!(p.piece_failed(9).is_empty());
    assert!(!p.have(5));
    assert_eq!(p.availability(5), 0);
}

#[test]
fn availability_follows_peers() {
    let mut p = picker(5, 1, cfg(), 1);
    let x = bits(5, &[0, 2, 4]);
    let y = bits(5, &[2, 3]);
    p.peer_bitfield(&x);
    p.peer_bitfield(&y);
    p.peer_has(3);
    let counts: Vec<u32> = (0..5).map(|i| p.availability(i)).collect();
    assert_eq!(counts, vec![1, 0, 2, 2, 1]);
    p.peer_lost_bitfield(&x);
    p.peer_lost_bitfield(&x); // a second time never goes below zero
    let counts: Vec<u32> = (0..5).map(|i| p.availability(i)).collect();
    assert_eq!(counts, vec![0, 0, 0, 2, 0]);
}

#[test]
fn wanted_pieces_from_file_selection() {
    // Files of 10, 25, 5 bytes, pieces of 10: [0..10) [10..20) [20..30) [30..40).
    assert_eq!(
        pieces_wanted_by_files(10, &[(10, true), (25, false), (5, true)]),
        vec![true, false, false, true]
    );
    assert_eq!(
        pieces_wanted_by_files(10, &[(10, false), (0, true), (25, true), (5, false)]),
        vec![false, true, true, true]
    );
    assert_eq!(
        pieces_wanted_by_files(16, &[(7, false), (2, true), (30, false)]),
        vec![true, false, false]
    );
    assert!(pieces_wanted_by_files(16, &[]).is_empty());
}

/// A seeded random swarm: peers with partial bitfields request, receive,
/// reject and vanish; a few pieces fail their hash once. Every block must be
/// stored exactly once per attempt, no peer is asked twice for one block,
/// and the download completes.
#[test]
fn random_swarm_completes_with_consistent_bookkeeping() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    for seed in 0..8u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = 40;
        let plen = 3 * u64::from(B) + 100;
        let total = plen * (n as u64 - 1) + 5000;
        let mut p = PiecePicker::new(n, plen, total, cfg(), seed);
        let peers: Vec<Bitfield> = (0..5)
            .map(|k| {
                let mut b = Bitfield::new(n);
                for i in 0..n {
                    if i % 5 == k || rng.random_bool(0.5) {
                        b.set(i);
                    }
                }
                b
            })
            .collect();
        for b in &peers {
            p.peer_bitfield(b);
        }
        let mut inflight: Vec<Vec<BlockRef>> = vec![Vec::new(); peers.len()];
        let mut failed_once = BTreeSet::new();
        let mut steps = 0;
        while !p.is_complete() {
            steps += 1;
            assert!(steps < 20_000, "seed {seed}: no progress");
            let k = rng.random_range(0..peers.len());
            let key = PeerKey(k as u64);
            match rng.random_range(0..10) {
                0..=3 => {
                    let mut out = Vec::new();
                    p.pick(key, &req(&peers[k], 6), &mut out);
                    for b in &out {
                        assert!(peers[k].get(b.index as usize));
                        assert!(!inflight[k].contains(b), "asked twice for {b:?}");
                    }
                    inflight[k].extend(out);
                }
                4..=7 if !inflight[k].is_empty() => {
                    let i = rng.random_range(0..inflight[k].len());
                    let b = inflight[k].swap_remove(i);
                    match p.block_received(key, b) {
                        BlockReceived::Stored {
                            piece_complete,
                            cancel,
                        } => {
                            for c in cancel {
                                inflight[c.0 as usize].retain(|x| *x != b);
                            }
                            if piece_complete {
                                let piece = b.index as usize;
                                if piece.is_multiple_of(7) && failed_once.insert(piece) {
                                    assert!(!p.piece_failed(piece).is_empty());
                                } else {
                                    p.piece_passed(piece);
                                }
                            }
                        }
                        BlockReceived::Duplicate => {}
                        BlockReceived::Unrequested => panic!("requested block {b:?} refused"),
                    }
                }
                8 if !inflight[k].is_empty() => {
                    let b = inflight[k].pop().unwrap();
                    p.request_lost(key, b);
                }
                9 => {
                    let mut lost = p.peer_gone(key);
                    lost.sort();
                    inflight[k].sort();
                    assert_eq!(lost, inflight[k]);
                    inflight[k].clear();
                }
                _ => {}
            }
            for (j, f) in inflight.iter().enumerate() {
                assert_eq!(
                    p.outstanding(PeerKey(j as u64)),
                    f.len(),
                    "seed {seed} peer {j}"
                );
            }
        }
        assert_eq!(p.wanted_left_bytes(), 0);
        assert_eq!(p.have_bitfield().count_ones(), n);
        assert!(failed_once.len() >= 5, "{failed_once:?}");
    }
}

#[test]
fn unset_have_makes_a_piece_wanted_again() {
    let mut p = picker(4, 2, cfg(), 1);
    for i in 0..4 {
        p.set_have(i);
    }
    assert!(p.is_complete());
    p.peer_bitfield(&full(4));
    p.unset_have(2);
    assert!(!p.is_complete());
    assert!(!p.have(2));
    assert_eq!(p.wanted_left_bytes(), p.piece_size(2));
    let got = pick(&mut p, 1, &full(4), 10);
    assert_eq!(pieces_of(&got), BTreeSet::from([2]));
    p.unset_have(2); // not had: no effect
    assert_eq!(p.wanted_left_bytes(), p.piece_size(2));
}

fn at(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

fn pick_at(
    p: &mut PiecePicker,
    peer: u64,
    bits: &Bitfield,
    max: usize,
    now: Instant,
) -> Vec<BlockRef> {
    let mut out = Vec::new();
    p.pick(
        PeerKey(peer),
        &PickRequest {
            now,
            ..req(bits, max)
        },
        &mut out,
    );
    out
}

const D: Deadline = Deadline {
    grace: Duration::from_secs(1),
    per_block: Duration::from_millis(100),
};

#[test]
fn requests_expire_by_their_place_in_the_queue() {
    let t0 = Instant::now();
    let mut p = picker(1, 4, cfg(), 11);
    let all = full(1);
    let a = pick_at(&mut p, 1, &all, 4, t0);
    assert_eq!(a.len(), 4);
    let k = PeerKey(1);
    assert!(p.expire(k, t0, D).is_empty());
    // The one sent behind k others is due 1 s + (k + 1) * 100 ms after.
    assert!(p.expire(k, at(t0, 1099), D).is_empty());
    assert_eq!(p.expire(k, at(t0, 1100), D), vec![a[0]]);
    assert_eq!(p.outstanding(k), 3);
    assert_eq!(p.expire(k, at(t0, 1300), D), vec![a[1], a[2]]);
    assert_eq!(p.expire(k, at(t0, 1400), D), vec![a[3]]);
    assert_eq!(p.outstanding(k), 0);
    // Nothing is lost: the same peer gets every block again.
    let again = pick_at(&mut p, 1, &all, 10, at(t0, 1400));
    assert_eq!(again, a);
}

#[test]
fn a_request_queued_behind_others_gets_their_time_at_the_peers_rate() {
    let t0 = Instant::now();
    let mut p = picker(1, 4, cfg(), 12);
    let all = full(1);
    let k = PeerKey(1);
    let a = pick_at(&mut p, 1, &all, 2, t0);
    // Two more, half a second later, behind the first two.
    let b = pick_at(&mut p, 1, &all, 2, at(t0, 500));
    assert_eq!(p.block_received(k, a[0]), stored(false, &[]));
    assert_eq!(p.block_received(k, a[1]), stored(false, &[]));
    // b[0] was third in line: due 500 + 1000 + 3 * 100 ms.
    assert!(p.expire(k, at(t0, 1799), D).is_empty());
    assert_eq!(p.expire(k, at(t0, 1800), D), vec![b[0]]);
    // A slower peer (a second a block now) gets more time for b[1]: due
    // 500 + 1000 + 4 * 1000 ms.
    let slow = Deadline {
        per_block: Duration::from_secs(1),
        ..D
    };
    assert!(p.expire(k, at(t0, 5499), slow).is_empty());
    assert_eq!(p.expire(k, at(t0, 5500), slow), vec![b[1]]);
    // The late answer to a cancelled request is still taken.
    assert_eq!(p.block_received(k, b[0]), stored(false, &[]));
    assert_eq!(p.block_received(k, b[1]), stored(true, &[]));
}

#[test]
fn an_overdue_request_goes_to_another_peer_and_only_its_copy_is_released() {
    let t0 = Instant::now();
    let mut p = picker(1, 2, cfg(), 13);
    let all = full(1);
    let a = pick_at(&mut p, 1, &all, 2, t0);
    // Endgame: peer 2 is asked for the same blocks.
    let b = pick_at(&mut p, 2, &all, 2, at(t0, 10));
    assert_eq!(b.len(), 2);
    p.expire(PeerKey(1), t0, D);
    let lost = p.expire(PeerKey(1), at(t0, 5000), D);
    assert_eq!(lost, a);
    // Still requested from peer 2: nothing is free, and peer 2's copy
    // arrives with nobody to cancel.
    assert!(pick_at(&mut p, 3, &all, 2, at(t0, 5000)).len() <= 2);
    assert_eq!(p.outstanding(PeerKey(2)), 2);
    assert_eq!(p.block_received(PeerKey(2), b[0]).clone(), {
        let cancel: Vec<u64> = if p.outstanding(PeerKey(3)) > 0 {
            vec![3]
        } else {
            vec![]
        };
        stored(false, &cancel)
    });
}

#[test]
fn a_peer_not_trusted_for_endgame_gets_no_duplicates() {
    let t0 = Instant::now();
    let mut p = picker(1, 2, cfg(), 14);
    let all = full(1);
    assert_eq!(pick_at(&mut p, 1, &all, 2, t0).len(), 2);
    let mut out = Vec::new();
    let snubbed = PickRequest {
        endgame: false,
        ..req(&all, 2)
    };
    p.pick(PeerKey(2), &snubbed, &mut out);
    assert!(out.is_empty());
    assert_eq!(pick_at(&mut p, 3, &all, 2, t0).len(), 2);
}

#[test]
fn a_rejected_block_and_a_choke_give_blocks_back() {
    let t0 = Instant::now();
    let mut p = picker(2, 2, cfg(), 15);
    let all = full(2);
    let a = pick_at(&mut p, 1, &all, 4, t0);
    assert_eq!(a.len(), 4);
    // REJECT of one block: that block only is pickable again.
    p.request_lost(PeerKey(1), a[1]);
    assert_eq!(p.outstanding(PeerKey(1)), 3);
    let mut out = Vec::new();
    let no_dups = PickRequest {
        endgame: false,
        ..req(&all, 4)
    };
    p.pick(PeerKey(2), &no_dups, &mut out);
    assert_eq!(out, vec![a[1]]);
    // A CHOKE without the fast extension voids the rest.
    let mut lost = p.peer_gone(PeerKey(1));
    lost.sort();
    let mut rest = vec![a[0], a[2], a[3]];
    rest.sort();
    assert_eq!(lost, rest);
    // Their deadlines went with them.
    assert!(p.expire(PeerKey(1), at(t0, 60_000), D).is_empty());
    let mut again = Vec::new();
    p.pick(PeerKey(1), &no_dups, &mut again);
    again.sort();
    assert_eq!(again, rest);
}

#[test]
fn reserved_pieces_go_to_peers_only_in_endgame_and_come_back_on_release() {
    let ws = PeerKey(1 << 63);
    let mut p = picker(3, 2, cfg(), 5);
    assert!(p.reserve(ws, 1));
    assert!(!p.reserve(ws, 1), "a reserved piece is not pickable");
    assert!(!p.is_pickable(1));
    let all = full(3);
    // A peer gets pieces 0 and 2 only, then endgame duplicates of 1.
    let got = pick(&mut p, 7, &all, 4);
    assert_eq!(pieces_of(&got), BTreeSet::from([0, 2]));
    assert!(p.in_endgame());
    let dup = pick(&mut p, 7, &all, 4);
    assert_eq!(pieces_of(&dup), BTreeSet::from([1]));
    // The peer's copy of block 0 wins: the web seed is named for CANCEL.
    let b0 = p.block_ref(1, 0);
    assert_eq!(p.block_received(PeerKey(7), b0), stored(false, &[1 << 63]));
    // The web seed writes the piece: block 0 is a duplicate, block 1
    // completes it.
    assert_eq!(p.block_received(ws, b0), BlockReceived::Duplicate);
    let b1 = p.block_ref(1, 1);
    assert_eq!(p.block_received(ws, b1), stored(true, &[7]));
    assert_eq!(p.piece_failed(1), vec![PeerKey(7), ws]);

    // Released before anything arrived: pickable again.
    let mut p = picker(3, 2, cfg(), 5);
    assert!(p.reserve(ws, 2));
    p.release_piece(ws, 2);
    assert!(p.is_pickable(2));
    assert!(!p.in_endgame());
}
