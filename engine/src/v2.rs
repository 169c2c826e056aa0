//! BitTorrent v2 (BEP 52) in the engine: the storage layout of v2-only and
//! hybrid torrents (their pieces checked against the merkle hashes), the
//! handshake's info hash on an upgraded connection, and serving hash
//! requests (21) from the torrent's piece layers, with a hash reject (23)
//! for whatever cannot be answered.
//!
//! v2-only torrents download with their pieces checked against the merkle
//! hashes; from a magnet link, the piece layers the info dictionary lacks
//! are fetched with hash requests first ([`layers`]); a failed piece is
//! pinned on the sender of its bad 16 KiB block ([`blame`]), and with
//! `SessionConfig::v2_leaves_ahead` each block is also checked against
//! its piece's proven leaves as it arrives ([`blocks`]).

use std::collections::HashMap;

use bittern_storage::merkle::{Hash256, LayerTree};
use bittern_storage::{FileSpec, Layout, Storage};
use bittern_wire::hashes::HashRequest;
use bittern_wire::hashes::Hashes;
use bittern_wire::{Handshake, InfoHash, Message, Metainfo};

use crate::peer::PeerContext;
use log::debug;

pub(crate) mod blame;
pub(crate) mod blocks;
pub(crate) mod layers;

/// The storage layout of `metainfo`'s `files`: SHA-1 pieces for v1, merkle
/// hashes added for hybrids, merkle hashes alone for v2-only torrents.
/// A v2-only torrent's last piece is a whole piece, its tail past the last
/// file a padding file of zeros after the torrent's files (libtorrent
/// counts v2-only torrents so: it requests, and serves, whole last pieces).
///
/// # Errors
/// What [`Layout::new`] / [`Layout::with_v2`] / [`Layout::new_v2`] return
/// (files not on piece boundaries, hashes that do not fit them).
pub(crate) fn layout(
    metainfo: &Metainfo,
    files: Vec<FileSpec>,
) -> Result<Layout, bittern_storage::Error> {
    let info = &metainfo.info;
    let plen = info.piece_length;
    let v2_hashes = || -> Vec<Vec<Hash256>> {
        info.files
            .iter()
            .map(
                |f| match (f.padding, f.pieces_root, metainfo.piece_layer(f)) {
                    (true, _, _) | (_, None, _) => Vec::new(),
                    (false, Some(_), Some(layer)) => layer.to_vec(),
                    (false, Some(root), None) => vec![root],
                },
            )
            .collect()
    };
    match (info.version.has_v1(), info.version.has_v2()) {
        (true, false) => Layout::new(files, plen, info.pieces.clone()),
        // a hybrid from a magnet link has no piece layers: its SHA-1 half
        (true, true) if lacks_layers(metainfo) => Layout::new(files, plen, info.pieces.clone()),
        (true, true) => Layout::new(files, plen, info.pieces.clone())?.with_v2(&v2_hashes()),
        (false, _) => {
            let mut files = files;
            let mut hashes = v2_hashes();
            let total: u64 = files.iter().map(|f| f.length).sum();
            let tail = total.next_multiple_of(plen.max(1)) - total;
            if tail > 0 {
                files.push(FileSpec {
                    path: std::path::PathBuf::from(".pad").join(tail.to_string()),
                    length: tail,
                    padding: true,
                });
                hashes.push(Vec::new());
            }
            Layout::new_v2(files, plen, &hashes)
        }
    }
}

/// Whether a file longer than one piece has no piece layer in `m` (the
/// info dictionary came from a magnet link).
fn lacks_layers(m: &Metainfo) -> bool {
    m.info.files.iter().any(|f| {
        !f.padding
            && f.pieces_root.is_some()
            && f.length > m.info.piece_length
            && m.piece_layer(f).is_none()
    })
}

/// The pieces of a v2-only layout whose file ends before the piece does
/// (each file starts a piece, BEP 52), with the file's bytes in them: a
/// leecher asks for those bytes only, never for the padding after them
/// (libtorrent sends it as zeros when asked: a 1,000-file torrent of
/// 256 MiB in 4 MiB pieces was 4 GiB on the wire). Hybrids keep whole
/// pieces: their SHA-1 covers the BEP 47 padding.
pub(crate) fn short_pieces(layout: &Layout) -> Vec<(u32, u64)> {
    if layout.has_v1() || !layout.has_v2() {
        return Vec::new();
    }
    let plen = layout.piece_length();
    let mut out = Vec::new();
    for (i, f) in layout.files().iter().enumerate() {
        if f.padding || f.length == 0 {
            continue;
        }
        let Some(last) = layout.file_pieces(i).last() else {
            continue;
        };
        let end = layout.file_start(i) + f.length;
        let n = end.saturating_sub(last as u64 * plen);
        if n > 0 && n < layout.piece_len(last) {
            if let Ok(piece) = u32::try_from(last) {
                out.push((piece, n));
            }
        }
    }
    out
}

/// The info hash to answer an incoming handshake `theirs` with, for a
/// torrent met under `ours` (its [`Metainfo::info_hash`]) and, for v2 and
/// hybrid torrents, `v2` (its truncated v2 hash). A peer that named the
/// torrent by its v2 hash gets that hash back; a peer that named a hybrid
/// by its v1 hash with the upgrade bit set gets the v2 hash (BEP 52's
/// upgrade); everyone else gets `ours`.
pub(crate) fn answer_hash(theirs: &Handshake, ours: InfoHash, v2: Option<InfoHash>) -> InfoHash {
    match v2 {
        Some(v2) if theirs.info_hash == v2 => v2,
        Some(v2) if theirs.info_hash == ours && theirs.supports_v2() => v2,
        _ => ours,
    }
}

/// Whether a connection whose handshake from the peer was `theirs` is a
/// v2 one (BEP 52) for a torrent met under `ours` with truncated v2 hash
/// `v2`: the hash the two handshakes settled on is the v2 one (we
/// dialled and they answered with it, or they came in and we answered
/// with it, see [`answer_hash`]). libtorrent decides the same way, and
/// drops a connection that sends hash requests without it; a peer that
/// set the v2 bit but answered our v1 hash (libtorrent does under MSE,
/// where the stream is already tied to the v1 hash) is a v1 connection.
pub(crate) fn is_v2_connection(
    theirs: &Handshake,
    incoming: bool,
    ours: InfoHash,
    v2: Option<InfoHash>,
) -> bool {
    let Some(v2) = v2 else {
        return false;
    };
    let settled = if incoming {
        answer_hash(theirs, ours, Some(v2))
    } else {
        theirs.info_hash
    };
    settled == v2
}

/// One file's tree, for answering hash requests about it.
#[derive(Debug)]
struct ServedFile {
    tree: LayerTree,
    /// The torrent piece holding the file's first byte.
    first_piece: usize,
    /// 16 KiB leaves of the file (before padding to a power of two).
    leaves: u64,
    /// Layer of the piece nodes in the file's tree (below it, nodes are
    /// hashed from disk).
    piece_height: u32,
    /// The file's length.
    length: u64,
    /// Torrent pieces holding the file's bytes.
    pieces: usize,
}

/// Most file data one hash request may make us read from disk to hash
/// nodes below the piece layer (at least one piece is always allowed):
/// bounds what a peer's request costs, and covers libtorrent's requests
/// (one piece's leaves, after a hash failure).
const MAX_READ_PER_REQUEST: u64 = 16 << 20;

/// Answers hash requests for a v2 or hybrid torrent: each file's tree
/// above the piece layer from the layout's merkle hashes, the leaves below
/// it hashed from disk when a request reaches them.
#[derive(Debug)]
pub(crate) struct HashServer {
    files: HashMap<Hash256, ServedFile>,
    piece_length: u64,
    /// Each served file's first piece and root, by first piece.
    by_piece: Vec<(usize, Hash256)>,
    /// Proven leaves of pieces being downloaded ([`blocks`]).
    known: parking_lot::Mutex<blocks::KnownLeaves>,
}

impl HashServer {
    /// The server of `layout`'s files; `None` for a layout without merkle
    /// hashes (v1).
    pub(crate) fn new(layout: &Layout) -> Option<Self> {
        if !layout.has_v2() {
            return None;
        }
        let plen = layout.piece_length();
        let mut files = HashMap::new();
        for (i, f) in layout.files().iter().enumerate() {
            if f.padding || f.length == 0 {
                continue;
            }
            let pieces = layout.file_pieces(i);
            let nodes: Vec<Hash256> = pieces
                .clone()
                .filter_map(|p| layout.piece_hash_v2(p))
                .collect();
            match LayerTree::new(f.length, plen, &nodes) {
                Ok(Some(tree)) => {
                    files.insert(
                        tree.root(),
                        ServedFile {
                            first_piece: pieces.start,
                            leaves: bittern_storage::merkle::block_count(f.length),
                            piece_height: bittern_storage::merkle::piece_layer_height(plen)
                                .unwrap_or(0)
                                .min(tree.height()),
                            tree,
                            length: f.length,
                            pieces: pieces.len(),
                        },
                    );
                }
                other => debug!("file {i}: no merkle tree to serve: {other:?}"),
            }
        }
        let mut by_piece: Vec<(usize, Hash256)> =
            files.iter().map(|(r, f)| (f.first_piece, *r)).collect();
        by_piece.sort_unstable();
        Some(HashServer {
            by_piece,
            files,
            piece_length: plen,
            known: parking_lot::Mutex::default(),
        })
    }

    /// The hash request for the 16 KiB leaves under torrent piece
    /// `piece` (see [`blame::leaf_request`]); `None` for a piece of no
    /// file here or of one block.
    pub(crate) fn leaf_request(&self, piece: usize) -> Option<HashRequest> {
        let (root, f) = self.file_of_piece(piece)?;
        blame::leaf_request(
            root,
            f.length,
            self.piece_length,
            (piece - f.first_piece) as u64,
        )
    }

    /// The served file holding torrent piece `piece`, and its root.
    fn file_of_piece(&self, piece: usize) -> Option<(Hash256, &ServedFile)> {
        let i = self.by_piece.partition_point(|(first, _)| *first <= piece);
        let (_, root) = self.by_piece.get(i.checked_sub(1)?)?;
        let f = self.files.get(root)?;
        (piece < f.first_piece + f.pieces).then_some((*root, f))
    }

    /// The hashes answering `req` (base layer, then uncles), or `None` to
    /// reject it: an unknown `pieces root`, a request that breaks BEP 52's
    /// rules or reaches outside the file's tree, or leaves below the piece
    /// layer that are not on disk or do not hash to the piece layer.
    pub(crate) fn answer(&self, storage: &Storage, req: &HashRequest) -> Option<Vec<Hash256>> {
        // One piece's leaves (what a bittern leecher asks of every piece,
        // `blocks`): from the leaves known, else hashed from disk once.
        let leaf_piece = self.piece_of_leaf_request(req);
        if let Some(known) = leaf_piece.and_then(|p| self.cached_leaves(p)) {
            return Some(known.to_vec());
        }
        let answer = self.answer_from_tree(storage, req)?;
        if let Some(p) = leaf_piece {
            self.cache_leaves(p, &answer);
        }
        Some(answer)
    }

    fn answer_from_tree(&self, storage: &Storage, req: &HashRequest) -> Option<Vec<Hash256>> {
        let file = self.files.get(&req.pieces_root)?;
        req.check_in_tree(file.leaves).ok()?;
        if req.base_layer < file.piece_height {
            // pieces whose leaves are read: the requested nodes' (the
            // uncles below the piece layer lie in the same pieces)
            let per_piece = 1u64 << (file.piece_height - req.base_layer);
            let pieces = u64::from(req.length).div_ceil(per_piece);
            if pieces > 1 && pieces * self.piece_length > MAX_READ_PER_REQUEST {
                return None;
            }
        }
        let leaves = |p: u64| {
            let piece = usize::try_from(p)
                .ok()
                .and_then(|p| p.checked_add(file.first_piece))
                .ok_or(bittern_storage::Error::OutOfRange {
                    piece: usize::MAX,
                    offset: 0,
                    len: 0,
                })?;
            storage.piece_leaves_v2(piece)
        };
        match file.tree.hashes(
            req.base_layer,
            u64::from(req.index),
            u64::from(req.length),
            req.proof_layers,
            leaves,
        ) {
            Ok(answer) => answer,
            Err(e) => {
                debug!("hash request: leaves unreadable: {e}");
                None
            }
        }
    }
}

/// Appends the answer to the peer's hash request `req` to `out`: `hashes`
/// when the torrent is v2 and `req` can be answered, else `hash reject`.
pub(crate) fn encode_answer(ctx: &PeerContext, req: &HashRequest, out: &mut Vec<u8>) {
    let answer = ctx
        .v2
        .as_ref()
        .and_then(|(_, server)| server.answer(&ctx.storage, req));
    let raw: Option<Vec<u8>> = answer.map(|hashes| hashes.concat());
    match raw.as_deref().and_then(|raw| Hashes::new(*req, raw)) {
        Some(hashes) => Message::Hashes(hashes).encode(out),
        None => {
            debug!("{}: rejecting hash request {req:?}", ctx.key.0);
            Message::HashReject(*req).encode(out);
        }
    }
}
