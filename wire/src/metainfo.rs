//! `.torrent` files: [`Metainfo`], [`Info`], [`FileEntry`], and
//! [`MetainfoBuilder`] for writing new ones.
//!
//! Supported: single- and multi-file torrents (BEP 3), `announce-list`
//! tiers (BEP 12), `private` (BEP 27), `url-list` web seeds (BEP 19),
//! `attr` and padding files (BEP 47), `name.utf-8`/`path.utf-8`, and
//! BitTorrent v2 (BEP 52): `meta version` 2, `file tree`, `pieces root`,
//! `piece layers` (checked against each file's root), the v2 info hash
//! ([`InfoHashV2`]), and hybrid torrents, whose v1 and v2 halves must
//! describe the same files ([`MetainfoError::HybridMismatch`] otherwise).
//!
//! # v2 and hybrid torrents
//!
//! [`Info::files`] is always the flat, piece-aligned file list: a hybrid's
//! v1 `files` (BEP 47 padding included), or for a v2-only torrent the
//! `file tree` files with padding entries inserted so every file starts on
//! a piece boundary (as libtorrent shows them). [`FileEntry::pieces_root`]
//! holds each file's merkle root. [`Metainfo::info_hash`] is the 20 bytes
//! that stand for the torrent on the wire: the SHA-1 for v1 and hybrid
//! torrents, the truncated SHA-256 for v2-only ones;
//! [`Metainfo::info_hash_v2`] is the full SHA-256.
//!
//! The info hash is the SHA-1 of the `info` value exactly as its bytes
//! stand in the file ([`crate::bencode::dict_value_span`]), never of a
//! re-encoding, so a file with unsorted keys keeps its real hash.
//!
//! # Where files go on disk
//!
//! [`FileEntry::path`] holds the components *under the torrent's root*.
//! For a single-file torrent that is `[name]` and the file is
//! `<save_dir>/<name>`; for a multi-file torrent the files are
//! `<save_dir>/<name>/<path...>`. [`Info::disk_path`] returns that full
//! relative path; every component has been checked (see
//! [Path safety](self#path-safety)), so joining it under `save_dir` can
//! never escape it.
//!
//! # Path safety
//!
//! Empty, `.` and `..` components and absolute components (leading `/` or
//! `\`, or `C:`) are errors; `/`, `\`, NUL and control characters inside a
//! component become `_`; invalid UTF-8 is converted lossily.

mod builder;
mod path;
mod v2;

use std::collections::BTreeMap;
use std::path::PathBuf;

use sha1::{Digest, Sha1};
use thiserror::Error;

pub use builder::MetainfoBuilder;
pub use v2::{InfoHashV2, MetaVersion};

use crate::bencode::{self, Limits, Value};
use crate::id::InfoHash;
use path::{sanitize_component, text};

/// Smallest accepted piece length.
pub const MIN_PIECE_LENGTH: u64 = 1;
/// Largest accepted piece length (512 MiB; real torrents use up to 64 MiB).
pub const MAX_PIECE_LENGTH: u64 = 512 << 20;

/// A `.torrent` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MetainfoError {
    /// Not valid bencode (or over the reading limits).
    #[error("invalid bencode")]
    Bencode(#[from] bencode::Error),
    /// The top level or `info` is not a dictionary.
    #[error("`{0}` is not a dictionary")]
    NotADict(&'static str),
    /// A required key is missing.
    #[error("missing `{0}`")]
    MissingField(&'static str),
    /// A key holds a value of the wrong type.
    #[error("`{0}` has the wrong type")]
    WrongType(&'static str),
    /// Piece length zero, negative or beyond [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} out of range")]
    InvalidPieceLength(i64),
    /// `pieces` is not a whole number of 20-byte hashes.
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    /// The number of hashes does not match the total length.
    #[error("{got} piece hashes for {expected} pieces")]
    PieceCountMismatch {
        /// Pieces implied by total length and piece length.
        expected: u64,
        /// Hashes present.
        got: usize,
    },
    /// A file length is negative.
    #[error("negative file length {0}")]
    NegativeLength(i64),
    /// The file lengths overflow 64 bits.
    #[error("total length overflows")]
    LengthOverflow,
    /// A multi-file torrent with no files.
    #[error("multi-file torrent without files")]
    NoFiles,
    /// A `meta version` other than 1 or 2.
    #[error("unsupported meta version {0}")]
    UnsupportedMetaVersion(i64),
    /// A malformed v2 `file tree`.
    #[error("invalid file tree at {path:?}: {reason}")]
    InvalidFileTree {
        /// Where in the tree, components joined by `/`.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A file's entry in `piece layers` is missing or does not match its
    /// `pieces root`.
    #[error("piece layer of {path:?}: {reason}")]
    InvalidPieceLayer {
        /// The file, components joined by `/`.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A hybrid torrent whose v1 `files` and v2 `file tree` do not describe
    /// the same files in the same order with the same lengths and
    /// piece-aligning padding.
    #[error("v1 and v2 halves disagree at file {file}: {reason}")]
    HybridMismatch {
        /// Index of the file in the v2 `file tree` order.
        file: usize,
        /// What differs.
        reason: &'static str,
    },
    /// A name or path component that could escape the download directory.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The offending path, lossily as text.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileEntry {
    /// Checked components relative to the torrent root; `[name]` for a
    /// single-file torrent. See [`Info::disk_path`] for the on-disk path.
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
    /// A BEP 47 padding file (`attr` contains `p`): never written to disk,
    /// all zeros.
    pub padding: bool,
    /// The raw BEP 47 `attr` string, if any (`p` pad, `x` executable,
    /// `h` hidden, `l` symlink).
    pub attr: Option<String>,
    /// The v2 `pieces root` (merkle root of the file's 16 KiB blocks);
    /// `None` for v1-only torrents, empty files and padding.
    pub pieces_root: Option<[u8; 32]>,
}

impl FileEntry {
    /// The components joined as a relative path (never absolute, never
    /// containing `..`).
    pub fn relative_path(&self) -> PathBuf {
        self.path.iter().collect()
    }
}

/// The `info` dictionary, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The suggested file (single-file) or directory (multi-file) name,
    /// sanitised.
    pub name: String,
    /// Bytes per piece (the last piece may be shorter).
    pub piece_length: u64,
    /// SHA-1 of each piece (empty for v2-only torrents).
    pub pieces: Vec<[u8; 20]>,
    /// The files in torrent order (padding files included).
    pub files: Vec<FileEntry>,
    /// BEP 27: only use the torrent's trackers.
    pub private: bool,
    /// `source` tag (private trackers use it to change the info hash).
    pub source: Option<String>,
    /// Multi-file layout (`files` list) rather than a single `length`.
    pub multi_file: bool,
    /// v1, v2 or hybrid.
    pub version: MetaVersion,
}

impl Info {
    /// Sum of file lengths (padding included).
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    /// Number of pieces (of the flat, padded layout).
    pub fn piece_count(&self) -> usize {
        usize::try_from(self.total_length().div_ceil(self.piece_length)).unwrap_or(usize::MAX)
    }

    /// Length of piece `index` (the last one may be short); 0 if out of range.
    pub fn piece_len(&self, index: usize) -> u64 {
        let start = (index as u64).saturating_mul(self.piece_length);
        let total = self.total_length();
        if start >= total {
            return 0;
        }
        (total - start).min(self.piece_length)
    }

    /// Where `file` lives relative to the save directory: `<name>` for a
    /// single-file torrent, `<name>/<path...>` for a multi-file one.
    pub fn disk_path(&self, file: &FileEntry) -> PathBuf {
        if self.multi_file {
            let mut p = PathBuf::from(&self.name);
            p.extend(&file.path);
            p
        } else {
            file.relative_path()
        }
    }

    /// [`Info::disk_path`] of every file, in order.
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| self.disk_path(f)).collect()
    }
}

/// A parsed `.torrent` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The torrent's 20-byte id on the wire (handshake, trackers, DHT):
    /// SHA-1 of [`Metainfo::info_bytes`] for v1 and hybrid torrents, the
    /// truncated [`Metainfo::info_hash_v2`] for v2-only ones.
    pub info_hash: InfoHash,
    /// SHA-256 of [`Metainfo::info_bytes`], for v2 and hybrid torrents.
    pub info_hash_v2: Option<InfoHashV2>,
    /// Checked `piece layers`: each `pieces root` of a file longer than one
    /// piece, mapped to its hashes (one per piece of that file).
    pub piece_layers: BTreeMap<[u8; 32], Vec<[u8; 32]>>,
    /// The checked `info` dictionary.
    pub info: Info,
    /// The `announce` URL.
    pub announce: Option<String>,
    /// Tracker tiers (BEP 12); when the file has only `announce`, one tier
    /// holding it.
    pub announce_list: Vec<Vec<String>>,
    /// Web seeds (BEP 19).
    pub url_list: Vec<String>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
    /// The exact bytes of the `info` value in the file (served to peers
    /// by BEP 9).
    pub info_bytes: Vec<u8>,
}

/// Reading limits for `.torrent` files.
fn limits() -> Limits {
    Limits {
        max_depth: 32,
        ..Limits::default()
    }
}

fn get<'a>(d: &'a Value, k: &str) -> Option<&'a Value> {
    d.get(k.as_bytes())
}

/// A text field: `key.utf-8` if present and valid, else `key` (lossy).
fn text_field(d: &Value, key: &'static str) -> Result<Option<String>, MetainfoError> {
    if let Some(s) = get(d, &format!("{key}.utf-8")).and_then(Value::as_str) {
        return Ok(Some(s.to_owned()));
    }
    match get(d, key) {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(text(b))),
        Some(_) => Err(MetainfoError::WrongType(key)),
    }
}

/// Optional text that is ignored, not an error, when of the wrong type.
fn loose_text(d: &Value, key: &str) -> Option<String> {
    get(d, &format!("{key}.utf-8"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| get(d, key).and_then(Value::as_bytes).map(text))
}

fn length(v: Option<&Value>, key: &'static str) -> Result<u64, MetainfoError> {
    let i = v.ok_or(MetainfoError::MissingField(key))?;
    let i = i.as_int().ok_or(MetainfoError::WrongType(key))?;
    u64::try_from(i).map_err(|_| MetainfoError::NegativeLength(i))
}

fn unsafe_path(path: &[String], reason: path::Unsafe) -> MetainfoError {
    MetainfoError::UnsafePath {
        path: path.join("/"),
        reason: reason.to_string(),
    }
}

fn parse_files(info: &Value, name: &str) -> Result<(Vec<FileEntry>, bool), MetainfoError> {
    let Some(files) = get(info, "files") else {
        let len = length(get(info, "length"), "length")?;
        let attr = get(info, "attr").and_then(Value::as_bytes).map(text);
        let padding = attr.as_deref().is_some_and(|a| a.contains('p'));
        return Ok((
            vec![FileEntry {
                path: vec![name.to_owned()],
                length: len,
                padding,
                attr,
                pieces_root: None,
            }],
            false,
        ));
    };
    let list = files.as_list().ok_or(MetainfoError::WrongType("files"))?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    let mut out = Vec::with_capacity(list.len());
    for f in list {
        if f.as_dict().is_none() {
            return Err(MetainfoError::WrongType("files"));
        }
        let len = length(get(f, "length"), "length")?;
        let comps = match get(f, "path.utf-8").and_then(Value::as_list) {
            Some(l) if l.iter().all(|c| c.as_str().is_some()) => l,
            _ => get(f, "path")
                .ok_or(MetainfoError::MissingField("path"))?
                .as_list()
                .ok_or(MetainfoError::WrongType("path"))?,
        };
        let raw: Vec<String> = comps
            .iter()
            .map(|c| {
                c.as_bytes()
                    .map(text)
                    .ok_or(MetainfoError::WrongType("path"))
            })
            .collect::<Result<_, _>>()?;
        if raw.is_empty() {
            return Err(unsafe_path(&raw, path::Unsafe::Empty));
        }
        let path = raw
            .iter()
            .map(|c| sanitize_component(c).map_err(|r| unsafe_path(&raw, r)))
            .collect::<Result<Vec<_>, _>>()?;
        let attr = get(f, "attr").and_then(Value::as_bytes).map(text);
        let padding = attr.as_deref().is_some_and(|a| a.contains('p'));
        out.push(FileEntry {
            path,
            length: len,
            padding,
            attr,
            pieces_root: None,
        });
    }
    Ok((out, true))
}

impl Info {
    /// Check an `info` dictionary: v1, v2 (`meta version` 2 with a `file
    /// tree`, piece length a power of two of at least 16 KiB) or hybrid
    /// (both, describing the same files). `piece layers` live outside
    /// `info` and are checked by [`Metainfo::from_bytes`]; an `info` from
    /// BEP 9 metadata has none.
    ///
    /// # Errors
    /// [`MetainfoError`] naming the first problem found.
    pub fn from_value(info: &Value) -> Result<Self, MetainfoError> {
        if info.as_dict().is_none() {
            return Err(MetainfoError::NotADict("info"));
        }
        let raw_name = text_field(info, "name")?.ok_or(MetainfoError::MissingField("name"))?;
        let name = sanitize_component(&raw_name).map_err(|r| unsafe_path(&[raw_name], r))?;
        let pl = get(info, "piece length")
            .ok_or(MetainfoError::MissingField("piece length"))?
            .as_int()
            .ok_or(MetainfoError::WrongType("piece length"))?;
        let piece_length = u64::try_from(pl)
            .ok()
            .filter(|p| (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(p))
            .ok_or(MetainfoError::InvalidPieceLength(pl))?;
        let v2 = match get(info, "meta version").map(Value::as_int) {
            None | Some(Some(1)) => false,
            Some(Some(2)) => true,
            Some(Some(v)) => return Err(MetainfoError::UnsupportedMetaVersion(v)),
            Some(None) => return Err(MetainfoError::WrongType("meta version")),
        };
        if v2 && (piece_length < v2::BLOCK_LEN || !piece_length.is_power_of_two()) {
            return Err(MetainfoError::InvalidPieceLength(pl));
        }
        let tree = match get(info, "file tree") {
            Some(t) if v2 => {
                let raw_name = get(info, "name").and_then(Value::as_bytes).unwrap_or(b"");
                Some(v2::parse_file_tree(t, raw_name)?)
            }
            None if v2 => return Err(MetainfoError::MissingField("file tree")),
            _ => None,
        };
        let pieces_raw = match (get(info, "pieces"), &tree) {
            (Some(p), _) => p.as_bytes().ok_or(MetainfoError::WrongType("pieces"))?,
            (None, Some((tree, single))) => {
                let files = v2::v2_files(tree, piece_length);
                check_total(&files)?;
                return Ok(Info {
                    name,
                    piece_length,
                    pieces: Vec::new(),
                    files,
                    private: get(info, "private").and_then(Value::as_int) == Some(1),
                    source: loose_text(info, "source"),
                    multi_file: !*single,
                    version: MetaVersion::V2,
                });
            }
            (None, None) => return Err(MetainfoError::MissingField("pieces")),
        };
        if pieces_raw.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultipleOf20(pieces_raw.len()));
        }
        let (mut files, multi_file) = parse_files(info, &name)?;
        let version = match &tree {
            Some((tree, single)) => {
                if *single == multi_file {
                    return Err(MetainfoError::HybridMismatch {
                        file: 0,
                        reason: "single-file in one half, multi-file in the other",
                    });
                }
                v2::check_hybrid(&mut files, tree, piece_length)?;
                MetaVersion::Hybrid
            }
            None => MetaVersion::V1,
        };
        let total = check_total(&files)?;
        let expected = total.div_ceil(piece_length);
        let got = pieces_raw.len() / 20;
        if expected != got as u64 {
            return Err(MetainfoError::PieceCountMismatch { expected, got });
        }
        let pieces = pieces_raw
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Info {
            name,
            piece_length,
            pieces,
            files,
            private: get(info, "private").and_then(Value::as_int) == Some(1),
            source: loose_text(info, "source"),
            multi_file,
            version,
        })
    }
}

/// Checks that the file lengths add up without overflow.
fn check_total(files: &[FileEntry]) -> Result<u64, MetainfoError> {
    files
        .iter()
        .try_fold(0u64, |acc, f| acc.checked_add(f.length))
        .ok_or(MetainfoError::LengthOverflow)
}

/// Strings of a list, skipping anything else.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Bytes(b) => vec![text(b)],
        Value::List(l) => l.iter().filter_map(Value::as_bytes).map(text).collect(),
        _ => Vec::new(),
    }
}

impl Metainfo {
    /// Parse and check a `.torrent` file.
    ///
    /// # Errors
    /// [`MetainfoError`] naming the first problem found.
    pub fn from_bytes(buf: &[u8]) -> Result<Self, MetainfoError> {
        Self::parse(buf, true)
    }

    /// As [`Metainfo::from_bytes`], for an info dictionary fetched from a
    /// magnet link (BEP 9): `piece layers` live outside the info
    /// dictionary, so a v2 or hybrid file's layer may be missing (it is
    /// then fetched with hash requests, BEP 52; see
    /// [`Metainfo::piece_layer`]). Layers that are present are checked as
    /// in a `.torrent`.
    ///
    /// # Errors
    /// As [`Metainfo::from_bytes`], but for missing piece layers.
    pub fn from_bytes_without_layers(buf: &[u8]) -> Result<Self, MetainfoError> {
        Self::parse(buf, false)
    }

    fn parse(buf: &[u8], need_layers: bool) -> Result<Self, MetainfoError> {
        let limits = limits();
        let top = bencode::decode_with(buf, &limits)?;
        if top.as_dict().is_none() {
            return Err(MetainfoError::NotADict("torrent"));
        }
        let span = bencode::dict_value_span(buf, b"info", &limits)?
            .ok_or(MetainfoError::MissingField("info"))?;
        let info_bytes = &buf[span];
        let info_value = get(&top, "info").ok_or(MetainfoError::MissingField("info"))?;
        let info = Info::from_value(info_value)?;
        let (info_hash, info_hash_v2, piece_layers) = if info.version.has_v2() {
            let layers = v2::parse_piece_layers(
                get(&top, "piece layers"),
                &info.files,
                info.piece_length,
                need_layers,
            )?;
            let v2 = InfoHashV2::of(info_bytes);
            let wire = if info.version.has_v1() {
                InfoHash(Sha1::digest(info_bytes).into())
            } else {
                v2.truncated()
            };
            (wire, Some(v2), layers)
        } else {
            let sha1 = InfoHash(Sha1::digest(info_bytes).into());
            (sha1, None, BTreeMap::new())
        };

        let announce = get(&top, "announce").and_then(Value::as_bytes).map(text);
        let mut announce_list: Vec<Vec<String>> = get(&top, "announce-list")
            .and_then(Value::as_list)
            .map(|tiers| {
                tiers
                    .iter()
                    .map(strings)
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if announce_list.is_empty() {
            if let Some(a) = announce.as_ref().filter(|a| !a.is_empty()) {
                announce_list.push(vec![a.clone()]);
            }
        }
        Ok(Metainfo {
            info_hash,
            info_hash_v2,
            piece_layers,
            info,
            announce,
            announce_list,
            url_list: get(&top, "url-list").map(strings).unwrap_or_default(),
            comment: loose_text(&top, "comment"),
            created_by: loose_text(&top, "created by"),
            creation_date: get(&top, "creation date").and_then(Value::as_int),
            info_bytes: info_bytes.to_vec(),
        })
    }

    /// The SHA-1 info hash, for v1 and hybrid torrents.
    pub fn info_hash_v1(&self) -> Option<InfoHash> {
        self.info.version.has_v1().then_some(self.info_hash)
    }

    /// Every 20-byte id the torrent may be met under on the wire (BEP 52):
    /// [`Metainfo::info_hash`] first, then for a hybrid the truncated v2
    /// hash too. A listener routes incoming handshakes by both; a peer that
    /// connects with the v1 hash and the v2 bit may be answered with
    /// either.
    pub fn wire_hashes(&self) -> Vec<InfoHash> {
        let mut out = vec![self.info_hash];
        if let Some(v2) = self.info_hash_v2.map(|h| h.truncated()) {
            if v2 != self.info_hash {
                out.push(v2);
            }
        }
        out
    }

    /// The piece layer of `file` (`None` for files of at most one piece,
    /// whose root stands for their only piece, and for v1 torrents).
    pub fn piece_layer(&self, file: &FileEntry) -> Option<&[[u8; 32]]> {
        self.piece_layers.get(&file.pieces_root?).map(Vec::as_slice)
    }

    /// Tracker tiers to announce to, in order, each URL once (BEP 12:
    /// `announce-list` when present, else `announce`).
    pub fn trackers(&self) -> Vec<Vec<String>> {
        let mut seen = std::collections::HashSet::new();
        self.announce_list
            .iter()
            .map(|tier| {
                tier.iter()
                    .filter(|u| !u.is_empty() && seen.insert(u.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MetainfoBuilder {
        MetainfoBuilder::new("dir")
            .file(vec!["a.txt".into()], 10)
            .file(vec!["sub".into(), "b.bin".into()], 20)
            .piece_length(16)
            .pieces(vec![[1; 20], [2; 20]])
            .trackers(vec![
                vec!["http://127.0.0.1:1/a".into(), "http://127.0.0.1:2/a".into()],
                vec!["http://127.0.0.1:1/a".into(), "udp://127.0.0.1:3".into()],
            ])
            .comment("c")
            .created_by("bittern")
            .creation_date(1_700_000_000)
            .url_list(vec!["http://127.0.0.1:8/ws/".into()])
            .source("SRC")
            .private(true)
    }

    #[test]
    fn build_parse_round_trip() {
        let bytes = sample().build().unwrap();
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(m.info.name, "dir");
        assert!(m.info.multi_file && m.info.private);
        assert_eq!(m.info.source.as_deref(), Some("SRC"));
        assert_eq!(m.info.total_length(), 30);
        assert_eq!(
            (
                m.info.piece_count(),
                m.info.piece_len(0),
                m.info.piece_len(1)
            ),
            (2, 16, 14)
        );
        assert_eq!(m.info.piece_len(2), 0);
        assert_eq!(
            m.info.file_paths(),
            vec![PathBuf::from("dir/a.txt"), PathBuf::from("dir/sub/b.bin")]
        );
        assert_eq!(m.announce.as_deref(), Some("http://127.0.0.1:1/a"));
        assert_eq!(m.announce_list.len(), 2);
        assert_eq!(
            m.trackers(),
            vec![
                vec![
                    "http://127.0.0.1:1/a".to_string(),
                    "http://127.0.0.1:2/a".to_string()
                ],
                vec!["udp://127.0.0.1:3".to_string()]
            ]
        );
        assert_eq!(m.comment.as_deref(), Some("c"));
        assert_eq!(m.created_by.as_deref(), Some("bittern"));
        assert_eq!(m.creation_date, Some(1_700_000_000));
        assert_eq!(m.url_list, vec!["http://127.0.0.1:8/ws/"]);
        assert_eq!(m.info_hash, InfoHash(Sha1::digest(&m.info_bytes).into()));
        // canonical: decode + encode gives the same bytes
        assert_eq!(bencode::encode(&bencode::decode(&bytes).unwrap()), bytes);
        // single-file
        let one = MetainfoBuilder::new("f.bin")
            .single_file(5)
            .piece_length(4)
            .pieces(vec![[0; 20]; 2])
            .announce("http://127.0.0.1:6969/announce")
            .build_metainfo()
            .unwrap();
        assert!(!one.info.multi_file);
        assert_eq!(one.info.files[0].path, vec!["f.bin"]);
        assert_eq!(one.info.file_paths(), vec![PathBuf::from("f.bin")]);
        assert_eq!(
            one.announce_list,
            vec![vec!["http://127.0.0.1:6969/announce".to_string()]]
        );
    }

    #[test]
    fn info_hash_is_over_raw_unsorted_bytes() {
        // keys out of order inside info: the hash must be of these bytes
        let info = b"d6:lengthi3e4:name1:x6:pieces20:aaaaaaaaaaaaaaaaaaaa12:piece lengthi4ee";
        let mut file = b"d4:info".to_vec();
        file.extend_from_slice(info);
        file.push(b'e');
        let m = Metainfo::from_bytes(&file).unwrap();
        assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(info)));
        assert_eq!(m.info_bytes, info);
        let reencoded = bencode::encode(&bencode::decode(info).unwrap());
        assert_ne!(reencoded, info.to_vec());
    }

    fn with_info(info: &str) -> Result<Metainfo, MetainfoError> {
        Metainfo::from_bytes(format!("d4:info{info}e").as_bytes())
    }

    fn multi(files: &str) -> String {
        format!("d5:files{files}4:name1:d12:piece lengthi16e6:pieces20:aaaaaaaaaaaaaaaaaaaae")
    }

    #[test]
    fn hostile_metainfo() {
        let p20 = "6:pieces20:aaaaaaaaaaaaaaaaaaaa";
        assert_eq!(
            with_info(&format!("d6:lengthi3e4:name1:x12:piece lengthi0e{p20}e")),
            Err(MetainfoError::InvalidPieceLength(0))
        );
        assert_eq!(
            with_info(&format!("d6:lengthi3e4:name1:x12:piece lengthi-16e{p20}e")),
            Err(MetainfoError::InvalidPieceLength(-16))
        );
        assert_eq!(
            with_info("d6:lengthi3e4:name1:x12:piece lengthi4e6:pieces19:aaaaaaaaaaaaaaaaaaae"),
            Err(MetainfoError::PiecesNotMultipleOf20(19))
        );
        assert_eq!(
            with_info(&format!("d6:lengthi99e4:name1:x12:piece lengthi4e{p20}e")),
            Err(MetainfoError::PieceCountMismatch {
                expected: 25,
                got: 1
            })
        );
        assert_eq!(
            with_info(&format!("d6:lengthi-3e4:name1:x12:piece lengthi4e{p20}e")),
            Err(MetainfoError::NegativeLength(-3))
        );
        assert!(matches!(
            with_info(&multi("ld6:lengthi3e4:pathl2:..6:passwdeee")),
            Err(MetainfoError::UnsafePath { .. })
        ));
        assert!(matches!(
            with_info(&multi("ld6:lengthi3e4:pathl4:/etc6:passwdeee")),
            Err(MetainfoError::UnsafePath { .. })
        ));
        assert!(matches!(
            with_info(&multi("ld6:lengthi3e4:pathleee")),
            Err(MetainfoError::UnsafePath { .. })
        ));
        assert!(matches!(
            with_info(&multi("ld6:lengthi3e4:pathl1:a0:eee")),
            Err(MetainfoError::UnsafePath { .. })
        ));
        assert!(matches!(
            with_info(&format!("d6:lengthi3e4:name2:..12:piece lengthi4e{p20}e")),
            Err(MetainfoError::UnsafePath { .. })
        ));
        assert_eq!(with_info(&multi("le")), Err(MetainfoError::NoFiles));
        assert_eq!(
            with_info(&multi(
                "ld6:lengthi9223372036854775807e4:pathl1:aeed6:lengthi9223372036854775807e4:pathl1:ceed6:lengthi9e4:pathl1:beee"
            )),
            Err(MetainfoError::LengthOverflow)
        );
        assert_eq!(
            Metainfo::from_bytes(b"de"),
            Err(MetainfoError::MissingField("info"))
        );
        assert_eq!(
            Metainfo::from_bytes(b"le"),
            Err(MetainfoError::NotADict("torrent"))
        );
        assert_eq!(with_info("i1e"), Err(MetainfoError::NotADict("info")));
        // separators inside a name are replaced, not trusted
        let m = with_info(&multi("ld6:lengthi3e4:pathl5:AC/DC2:a\0eee")).unwrap();
        assert_eq!(m.info.files[0].path, vec!["AC_DC", "a_"]);
        // a truncated real file is a typed error at every cut
        let bytes = sample().build().unwrap();
        for cut in 0..bytes.len() {
            assert!(Metainfo::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn utf8_keys_and_padding() {
        let mut file = b"d4:info".to_vec();
        file.extend_from_slice(
            b"d5:filesld4:attr1:p6:lengthi6e4:pathl4:.pad1:6eed6:lengthi10e4:pathl3:\xff\xfexe\
              10:path.utf-8l6:\xc3\xa9.txteee4:name1:d12:piece lengthi16e\
              6:pieces20:aaaaaaaaaaaaaaaaaaaaee",
        );
        let m = Metainfo::from_bytes(&file).unwrap();
        assert!(m.info.files[0].padding);
        assert_eq!(m.info.files[0].attr.as_deref(), Some("p"));
        assert_eq!(m.info.files[1].path, vec!["é.txt"]);
        assert!(!m.info.files[1].padding);
        // without path.utf-8, invalid UTF-8 is converted lossily
        assert_eq!(m.info.files[1].length, 10);
        let mut file = b"d4:info".to_vec();
        file.extend_from_slice(multi("ld6:lengthi3e4:pathl3:@@xeee").as_bytes());
        file.push(b'e');
        let at = file.windows(3).position(|w| w == b"@@x").unwrap();
        file[at] = 0xff;
        file[at + 1] = 0x7f;
        let m = Metainfo::from_bytes(&file).unwrap();
        assert_eq!(m.info.files[0].path, vec!["\u{fffd}_x"]);
    }

    #[test]
    fn v2_builder_round_trip_and_refusals() {
        use sha2::{Digest, Sha256};
        // two one-block files: each root is the SHA-256 of its content
        let root = |d: &[u8]| -> [u8; 32] { Sha256::digest(d).into() };
        let b = || {
            MetainfoBuilder::new("d")
                .piece_length(16384)
                .file(vec!["a".into()], 3)
                .file(vec!["b".into(), "c".into()], 0)
                .file(vec!["b".into(), "d".into()], 5)
                .pieces_roots(vec![Some(root(b"abc")), None, Some(root(b"hello"))])
        };
        let v2 = b().version(MetaVersion::V2).build_metainfo().unwrap();
        assert_eq!(v2.info.version, MetaVersion::V2);
        assert!(v2.info.pieces.is_empty() && v2.info.multi_file);
        assert_eq!(v2.info_hash, v2.info_hash_v2.unwrap().truncated());
        assert_eq!(v2.info.files.len(), 4); // a, pad, b/c, b/d
        assert_eq!(v2.info.files[1].length, 16384 - 3);
        assert_eq!(v2.info.files[3].pieces_root, Some(root(b"hello")));
        let hy = b()
            .version(MetaVersion::Hybrid)
            .pieces(vec![[0; 20]; 2])
            .build_metainfo()
            .unwrap();
        assert_eq!(hy.info.version, MetaVersion::Hybrid);
        assert_eq!(hy.info_hash_v1(), Some(hy.info_hash));
        let ids = hy.wire_hashes();
        assert_eq!(
            ids,
            vec![hy.info_hash, hy.info_hash_v2.unwrap().truncated()]
        );
        assert_eq!(v2.wire_hashes(), vec![v2.info_hash]);
        // tail padding included, as libtorrent 2.0.8 writes it
        assert_eq!(hy.info.total_length(), 2 * 16384);
        let bad = |r: Result<Vec<u8>, MetainfoError>| match r {
            Err(MetainfoError::InvalidFileTree { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        let v = MetaVersion::V2;
        assert_eq!(
            bad(b().version(v).pieces_roots(vec![None]).build()),
            "one pieces root per file needed"
        );
        assert_eq!(
            bad(b().version(v).pieces_roots(vec![None, None, None]).build()),
            "a pieces root exactly for non-empty files"
        );
        assert_eq!(
            bad(b()
                .version(v)
                .file(vec!["a".into()], 0)
                .pieces_roots(vec![Some(root(b"abc")), None, Some(root(b"hello")), None])
                .build()),
            "files not in file tree order"
        );
        assert_eq!(
            bad(b().version(v).pad_file(3).build()),
            "padding files are added by the builder"
        );
        assert_eq!(
            b().version(v).piece_length(32768 + 16384).build(),
            Err(MetainfoError::InvalidPieceLength(49152))
        );
        // a file that is also a directory
        assert_eq!(
            bad(MetainfoBuilder::new("d")
                .piece_length(16384)
                .file(vec!["a".into()], 0)
                .file(vec!["a".into(), "b".into()], 0)
                .pieces_roots(vec![None, None])
                .version(v)
                .build()),
            "both a file and a directory"
        );
    }

    #[test]
    fn builder_refuses_bad_input() {
        let b = || {
            MetainfoBuilder::new("n")
                .piece_length(16)
                .pieces(vec![[0; 20]])
        };
        assert!(matches!(
            b().file(vec!["..".into()], 3).build(),
            Err(MetainfoError::UnsafePath { .. })
        ));
        assert!(matches!(
            b().file(vec!["a/b".into()], 3).build(),
            Err(MetainfoError::UnsafePath { .. })
        ));
        assert_eq!(b().build(), Err(MetainfoError::NoFiles));
        assert_eq!(
            b().single_file(100).build(),
            Err(MetainfoError::PieceCountMismatch {
                expected: 7,
                got: 1
            })
        );
        assert_eq!(
            b().single_file(3).piece_length(0).build(),
            Err(MetainfoError::InvalidPieceLength(0))
        );
        let padded = b()
            .file(vec!["x".into()], 3)
            .pad_file(13)
            .build_metainfo()
            .unwrap();
        assert!(padded.info.files[1].padding);
        assert_eq!(padded.info.files[1].path, vec![".pad", "13"]);
    }
}
