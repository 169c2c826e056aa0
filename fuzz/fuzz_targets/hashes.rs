//! BEP 52 hash messages (hash request 21, hashes 22, hash reject 23)
//! against real merkle trees (`bittern_storage::merkle`).
//!
//! Input: `[leaves_lo, leaves_hi, base, index(4), length_log, proof,
//! flip(2), frame...]`. A tree of 1..=1024 leaves is built; the request
//! the next bytes describe is answered by the tree exactly when wire's
//! `check_in_tree` accepts it; an answer has `hash_count` hashes, goes
//! through encode/decode unchanged, and folds to the tree's own node (to
//! the root when the proof is full); one flipped bit anywhere in it never
//! folds to that node. Then `frame` is decoded as a peer message: no
//! panic, re-encodes to the input bytes, and a `hashes` message that folds
//! to a node of the tree carries that node's true hashes (no forgery).
//! A `LayerTree` built from the tree's piece layer (pieces of 1 to 8
//! leaves) answers every request exactly as the whole tree does.
#![no_main]

use bittern_storage::merkle::{
    fold_hashes, hashes_prove_root, sha256, Hash256, LayerTree, MerkleTree, BLOCK_LEN,
};
use bittern_wire::hashes::{HashRequest, Hashes};
use bittern_wire::{decode_message, Message, DEFAULT_MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fn split(raw: &[u8], n: usize) -> (Vec<Hash256>, Vec<Hash256>) {
    let all: Vec<Hash256> = raw
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap_or([0; 32]))
        .collect();
    let (a, b) = all.split_at(n.min(all.len()));
    (a.to_vec(), b.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let [l0, l1, base, i0, i1, i2, i3, len_log, proof, f0, f1, frame @ ..] = data else {
        return;
    };
    let leaves = 1 + u64::from(u16::from_le_bytes([*l0, *l1]) % 1024);
    let tree = MerkleTree::from_leaves(
        (0..leaves)
            .map(|i| sha256(&[*l0, *l1, i as u8, (i >> 8) as u8]))
            .collect(),
    )
    .expect("at least one leaf");
    let root = tree.root();
    let req = HashRequest {
        pieces_root: root,
        base_layer: u32::from(*base % 16),
        // small indices mostly, any u32 sometimes
        index: if *i3 & 0x80 == 0 {
            u32::from(u16::from_le_bytes([*i0, *i1]) % 2048)
        } else {
            u32::from_le_bytes([*i0, *i1, *i2, *i3])
        },
        length: 1u32.checked_shl(u32::from(*len_log % 40)).unwrap_or(0)
            + u32::from(*len_log >= 224),
        proof_layers: u32::from(*proof % 16),
    };
    let answer = tree.hashes(
        req.base_layer,
        u64::from(req.index),
        u64::from(req.length),
        req.proof_layers,
    );
    assert_eq!(
        answer.is_some(),
        req.check_in_tree(leaves).is_ok(),
        "{req:?} in a tree of {leaves} leaves"
    );
    // a seeder holding only the piece layer (pieces of 2^ph leaves) and
    // reading leaves per piece gives the same answer
    let ph = u32::from(*proof >> 4) % 4;
    let plen = BLOCK_LEN << ph;
    let all = tree.layer(0);
    let nodes = if leaves > 1 << ph {
        tree.piece_layer(plen).expect("valid piece length")
    } else {
        vec![root]
    };
    let seeder = LayerTree::new(leaves * BLOCK_LEN, plen, &nodes)
        .expect("valid piece length")
        .expect("one node per piece");
    assert_eq!(seeder.root(), root);
    let served = seeder
        .hashes(
            req.base_layer,
            u64::from(req.index),
            u64::from(req.length),
            req.proof_layers,
            |p| {
                let start = (p << ph) as usize;
                Ok(all[start..(start + (1 << ph)).min(all.len())].to_vec())
            },
        )
        .expect("leaves never fail");
    assert_eq!(served, answer);
    if let Some(hs) = answer {
        assert_eq!(hs.len() as u64, req.hash_count());
        let raw: Vec<u8> = hs.iter().flatten().copied().collect();
        let msg = Message::Hashes(Hashes::new(req, &raw).expect("exact count"));
        let mut out = Vec::new();
        msg.encode(&mut out);
        let (back, used) = decode_message(&out, DEFAULT_MAX_FRAME)
            .expect("decodes")
            .expect("whole");
        assert_eq!((back, used), (msg, out.len()));
        let n = req.length as usize;
        let (layer, idx, node) =
            fold_hashes(req.base_layer, u64::from(req.index), &hs[..n], &hs[n..]).expect("folds");
        assert_eq!(tree.node(layer, idx), Some(node));
        let full = layer == tree.height();
        assert_eq!(
            hashes_prove_root(leaves, &root, req.base_layer, u64::from(req.index), &hs[..n], &hs[n..]),
            full
        );
        // one flipped bit anywhere breaks the proof
        let bit = usize::from(u16::from_le_bytes([*f0, *f1])) % (raw.len() * 8);
        let mut bad = raw.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let (bn, bu) = split(&bad, n);
        let folded = fold_hashes(req.base_layer, u64::from(req.index), &bn, &bu).expect("folds");
        assert_ne!(folded.2, node);
    }

    // any frame: no panic, exact re-encoding, no forged proof
    if let Ok(Some((m, used))) = decode_message(frame, DEFAULT_MAX_FRAME) {
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(out, &frame[..used]);
        if let Message::Hashes(h) = m {
            let r = h.request;
            let n = r.length as usize;
            let (nodes, uncles) = split(h.raw(), n);
            if let Some((layer, idx, node)) =
                fold_hashes(r.base_layer, u64::from(r.index), &nodes, &uncles)
            {
                if tree.node(layer, idx) == Some(node) {
                    let truth = tree.hashes(
                        r.base_layer,
                        u64::from(r.index),
                        u64::from(r.length),
                        r.proof_layers,
                    );
                    assert_eq!(truth.as_deref(), Some(&[nodes, uncles].concat()[..]));
                }
            }
        }
    }
});
