//! BitTorrent v2 (BEP 52) parts of a `.torrent`: the `file tree`, the
//! `piece layers` and their check against each file's `pieces root`, the
//! v2 info hash, and the check that a hybrid torrent's v1 and v2 halves
//! describe the same files.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use super::path::{sanitize_component, text};
use super::{FileEntry, MetainfoError};
use crate::bencode::Value;
use crate::id::{to_hex, IdError, InfoHash};

/// Bytes per merkle leaf.
pub(crate) const BLOCK_LEN: u64 = 16 * 1024;

/// A v2 info hash: SHA-256 of the bencoded `info` dictionary exactly as it
/// stands in the `.torrent` file. Its first 20 bytes
/// ([`InfoHashV2::truncated`]) stand for the torrent in the peer
/// handshake, to trackers and in the DHT.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct InfoHashV2(pub [u8; 32]);

impl InfoHashV2 {
    /// SHA-256 of `info_bytes`.
    pub fn of(info_bytes: &[u8]) -> Self {
        InfoHashV2(Sha256::digest(info_bytes).into())
    }

    /// The first 20 bytes: the torrent's id on the wire.
    pub fn truncated(&self) -> InfoHash {
        let mut h = [0u8; 20];
        h.copy_from_slice(&self.0[..20]);
        InfoHash(h)
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parse 64 hex digits (either case).
    ///
    /// # Errors
    /// [`IdError`] if the length is wrong or a character is not a hex digit.
    pub fn from_hex(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(IdError::BadLength(s.chars().count()));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let digit = |j: usize| {
                char::from(b[j])
                    .to_digit(16)
                    .map(|d| d as u8)
                    .ok_or(IdError::BadDigit(j))
            };
            *byte = (digit(2 * i)? << 4) | digit(2 * i + 1)?;
        }
        Ok(InfoHashV2(out))
    }
}

impl fmt::Debug for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHashV2({})", self.to_hex())
    }
}

impl fmt::Display for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Which formats a torrent carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaVersion {
    /// BEP 3 only: SHA-1 `pieces`.
    V1,
    /// BEP 52 only (`meta version` 2, `file tree`, no `pieces`).
    V2,
    /// Both: `pieces` and `files`/`length` (with BEP 47 padding) plus the
    /// v2 fields, describing the same files.
    Hybrid,
}

impl MetaVersion {
    /// Has SHA-1 piece hashes (v1 or hybrid).
    pub fn has_v1(self) -> bool {
        self != MetaVersion::V2
    }

    /// Has the v2 fields (v2 or hybrid).
    pub fn has_v2(self) -> bool {
        self != MetaVersion::V1
    }

    /// The `meta version` number: 1 for v1, 2 otherwise.
    pub fn number(self) -> u8 {
        if self.has_v2() {
            2
        } else {
            1
        }
    }
}

/// One file of a `file tree`, in tree order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeFile {
    /// Checked components.
    pub path: Vec<String>,
    pub length: u64,
    pub root: Option<[u8; 32]>,
}

fn tree_error(path: &[String], reason: &'static str) -> MetainfoError {
    MetainfoError::InvalidFileTree {
        path: path.join("/"),
        reason,
    }
}

/// The files of a `file tree` in order (nested dicts sorted by key), and
/// whether it is a single-file torrent (one file at the top, named like
/// the torrent).
pub(crate) fn parse_file_tree(
    tree: &Value,
    raw_name: &[u8],
) -> Result<(Vec<TreeFile>, bool), MetainfoError> {
    let dict = tree
        .as_dict()
        .ok_or(MetainfoError::WrongType("file tree"))?;
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(dict, &mut path, &mut out)?;
    if out.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let single = dict.len() == 1
        && out.len() == 1
        && out[0].path.len() == 1
        && dict.keys().next().map(Vec::as_slice) == Some(raw_name);
    Ok((out, single))
}

fn walk(
    dir: &BTreeMap<Vec<u8>, Value>,
    path: &mut Vec<String>,
    out: &mut Vec<TreeFile>,
) -> Result<(), MetainfoError> {
    for (key, node) in dir {
        if key.is_empty() {
            return Err(tree_error(path, "a file entry beside other names"));
        }
        let raw = text(key);
        let comp = sanitize_component(&raw).map_err(|r| MetainfoError::UnsafePath {
            path: format!("{}/{raw}", path.join("/")),
            reason: r.to_string(),
        })?;
        path.push(comp);
        let node = node
            .as_dict()
            .ok_or_else(|| tree_error(path, "not a dictionary"))?;
        match node.get(&b""[..]) {
            Some(file) if node.len() == 1 => out.push(tree_file(file, path)?),
            Some(_) => return Err(tree_error(path, "both a file and a directory")),
            None => walk(node, path, out)?,
        }
        path.pop();
    }
    Ok(())
}

fn tree_file(file: &Value, path: &[String]) -> Result<TreeFile, MetainfoError> {
    let length = match file.get(b"length").map(|v| v.as_int()) {
        None => return Err(tree_error(path, "missing length")),
        Some(None) => return Err(tree_error(path, "length is not an integer")),
        Some(Some(l)) => u64::try_from(l).map_err(|_| MetainfoError::NegativeLength(l))?,
    };
    let root = match file.get(b"pieces root") {
        // an empty file has no root; one given anyway is ignored
        _ if length == 0 => None,
        None => return Err(tree_error(path, "missing pieces root")),
        Some(v) => Some(
            v.as_bytes()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| tree_error(path, "pieces root is not 32 bytes"))?,
        ),
    };
    Ok(TreeFile {
        path: path.to_vec(),
        length,
        root,
    })
}

/// The bytes of padding that align the end of a `length`-byte file to a
/// piece boundary (0 for empty files and whole pieces).
pub(crate) fn pad_after(length: u64, piece_length: u64) -> u64 {
    match length % piece_length {
        0 => 0,
        r => piece_length - r,
    }
}

/// A BEP 47 padding file entry.
pub(crate) fn pad_entry(length: u64) -> FileEntry {
    FileEntry {
        path: vec![".pad".into(), length.to_string()],
        length,
        padding: true,
        attr: Some("p".into()),
        pieces_root: None,
    }
}

/// The flat file list of a v2-only torrent: every file starts on a piece
/// boundary, so padding entries (never on disk) follow each file that
/// does not end on one, unless only empty files follow.
pub(crate) fn v2_files(tree: &[TreeFile], piece_length: u64) -> Vec<FileEntry> {
    let last_data = tree.iter().rposition(|f| f.length > 0);
    let mut out = Vec::with_capacity(tree.len() * 2);
    for (i, f) in tree.iter().enumerate() {
        let pad = pad_after(f.length, piece_length);
        out.push(FileEntry {
            path: f.path.clone(),
            length: f.length,
            padding: false,
            attr: None,
            pieces_root: f.root,
        });
        if pad > 0 && last_data.is_some_and(|l| i < l) {
            out.push(pad_entry(pad));
        }
    }
    out
}

/// Checks that a hybrid's v1 file list (`v1`, padding included) describes
/// the `tree` files in the same order, with the same paths and lengths,
/// each non-empty file followed by exactly the padding that aligns the
/// next one to a piece (optional after the last), and nothing else. Then
/// copies each file's root into its v1 entry.
pub(crate) fn check_hybrid(
    v1: &mut [FileEntry],
    tree: &[TreeFile],
    piece_length: u64,
) -> Result<(), MetainfoError> {
    let mismatch =
        |file: usize, reason: &'static str| MetainfoError::HybridMismatch { file, reason };
    let last_data = tree.iter().rposition(|f| f.length > 0);
    let mut i = 0;
    for (k, f2) in tree.iter().enumerate() {
        let f1 = v1
            .get_mut(i)
            .ok_or(mismatch(k, "missing from the v1 files"))?;
        if f1.padding {
            return Err(mismatch(k, "unexpected padding file"));
        }
        if f1.path != f2.path {
            return Err(mismatch(k, "different path"));
        }
        if f1.length != f2.length {
            return Err(mismatch(k, "different length"));
        }
        f1.pieces_root = f2.root;
        i += 1;
        let need = pad_after(f2.length, piece_length);
        if need == 0 {
            continue;
        }
        match v1.get(i) {
            Some(p) if p.padding && p.length == need => i += 1,
            Some(p) if p.padding => return Err(mismatch(k, "wrong padding after it")),
            _ if last_data.is_some_and(|l| k < l) => {
                return Err(mismatch(k, "no padding after it"))
            }
            _ => {}
        }
    }
    if i != v1.len() {
        return Err(mismatch(tree.len(), "extra entries in the v1 files"));
    }
    Ok(())
}

/// The parent of two merkle nodes.
fn hash_pair(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// The root over `layer` (nodes `height` layers above the 16 KiB
/// leaves), padded to a power of two with all-zero-subtree roots.
pub(crate) fn layer_root(layer: &[[u8; 32]], height: u32) -> [u8; 32] {
    let mut pad = [0u8; 32];
    for _ in 0..height {
        pad = hash_pair(&pad, &pad);
    }
    let mut nodes = layer.to_vec();
    while nodes.len() > 1 {
        nodes = nodes
            .chunks(2)
            .map(|c| hash_pair(&c[0], c.get(1).unwrap_or(&pad)))
            .collect();
        pad = hash_pair(&pad, &pad);
    }
    nodes.first().copied().unwrap_or(pad)
}

/// Reads and checks `piece layers` against the files' roots: each file
/// longer than one piece needs its layer (a multiple of 32 bytes, one hash
/// per piece, hashing up to its `pieces root`). Layers for roots of no
/// such file are dropped. Unless `need_all`, a missing layer is left out
/// (metadata from a magnet link).
pub(crate) fn parse_piece_layers(
    layers: Option<&Value>,
    files: &[FileEntry],
    piece_length: u64,
    need_all: bool,
) -> Result<BTreeMap<[u8; 32], Vec<[u8; 32]>>, MetainfoError> {
    let empty = BTreeMap::new();
    let dict = match layers {
        None => &empty,
        Some(v) => v
            .as_dict()
            .ok_or(MetainfoError::WrongType("piece layers"))?,
    };
    // Identical files share a root; files of different lengths cannot (a
    // layer checked against one would be used for the other).
    let mut lengths = BTreeMap::new();
    for f in files {
        let Some(root) = f.pieces_root else { continue };
        if *lengths.entry(root).or_insert(f.length) != f.length {
            return Err(MetainfoError::InvalidPieceLayer {
                path: f.path.join("/"),
                reason: "its pieces root is another file's, of another length",
            });
        }
    }
    let height = (piece_length / BLOCK_LEN).trailing_zeros();
    let mut out = BTreeMap::new();
    for f in files.iter().filter(|f| f.length > piece_length) {
        let Some(root) = f.pieces_root else { continue };
        if out.contains_key(&root) {
            continue; // identical files share a root and a layer
        }
        let bad = |reason: &'static str| MetainfoError::InvalidPieceLayer {
            path: f.path.join("/"),
            reason,
        };
        let Some(raw) = dict.get(&root[..]) else {
            if need_all {
                return Err(bad("missing"));
            }
            continue;
        };
        let raw = raw.as_bytes().ok_or_else(|| bad("not a string"))?;
        if raw.len() % 32 != 0 {
            return Err(bad("length not a multiple of 32"));
        }
        if raw.len() as u64 / 32 != f.length.div_ceil(piece_length) {
            return Err(bad("wrong number of hashes for the file's pieces"));
        }
        let layer: Vec<[u8; 32]> = raw
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        if layer_root(&layer, height) != root {
            return Err(bad("does not hash to the pieces root"));
        }
        out.insert(root, layer);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hash_v2_hex_and_truncation() {
        let h = InfoHashV2::of(b"d4:name1:xe");
        assert_eq!(InfoHashV2::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(InfoHashV2::from_hex(&h.to_hex().to_uppercase()).unwrap(), h);
        assert_eq!(h.truncated().0[..], h.0[..20]);
        assert_eq!(InfoHashV2::from_hex("ab"), Err(IdError::BadLength(2)));
        let mut s = "0".repeat(64);
        s.replace_range(9..10, "x");
        assert_eq!(InfoHashV2::from_hex(&s), Err(IdError::BadDigit(9)));
        assert!(InfoHashV2::from_hex(&"é".repeat(32)).is_err());
    }

    /// Found by the `metainfo` fuzz target: two files of different lengths
    /// naming one `pieces root` passed, and the layer checked against the
    /// longer file was then the shorter one's too.
    #[test]
    fn one_root_for_files_of_different_lengths_is_refused() {
        let file = |name: &str, length: u64| FileEntry {
            path: vec![name.into()],
            length,
            padding: false,
            attr: None,
            pieces_root: Some([7; 32]),
        };
        let plen = 16 * 1024;
        let err = parse_piece_layers(None, &[file("a", 81), file("b", 23_893)], plen, false);
        assert!(
            matches!(err, Err(MetainfoError::InvalidPieceLayer { ref path, .. }) if path == "b"),
            "{err:?}"
        );
        // identical files may share it
        assert!(parse_piece_layers(None, &[file("a", 81), file("b", 81)], plen, false).is_ok());
    }

    #[test]
    fn layer_root_pads_with_subtree_roots() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        let pad1 = hash_pair(&[0; 32], &[0; 32]);
        // three nodes one layer up: the fourth is pad(1)
        assert_eq!(
            layer_root(&[a, b, c], 1),
            hash_pair(&hash_pair(&a, &b), &hash_pair(&c, &pad1))
        );
        assert_eq!(layer_root(&[a], 5), a);
        assert_eq!(layer_root(&[a, b], 0), hash_pair(&a, &b));
    }
}
