//! [`MetainfoBuilder`]: canonical `.torrent` bytes for a new torrent.

use std::collections::BTreeMap;

use super::v2::{self, MetaVersion};
use super::{path, Metainfo, MetainfoError, MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};
use crate::bencode::{self, Value};

/// Builds the bytes of a new `.torrent` file.
///
/// Piece hashes are supplied by the caller (bittern-storage hashes file
/// content). The output is canonical bencode and re-parses with
/// [`Metainfo::from_bytes`] to the same info hash.
///
/// ```
/// use bittern_wire::{Metainfo, MetainfoBuilder};
///
/// let bytes = MetainfoBuilder::new("hello.txt")
///     .single_file(5)
///     .piece_length(16384)
///     .pieces(vec![[0u8; 20]])
///     .announce("http://127.0.0.1:6969/announce")
///     .build()
///     .unwrap();
/// let m = Metainfo::from_bytes(&bytes).unwrap();
/// assert_eq!(m.info.total_length(), 5);
/// ```
///
/// # v2 and hybrid torrents
///
/// [`MetainfoBuilder::version`] selects the format. For
/// [`MetaVersion::V2`] and [`MetaVersion::Hybrid`] give each file's
/// `pieces root` ([`MetainfoBuilder::pieces_roots`], `None` for empty
/// files) and the piece layers of files longer than one piece
/// ([`MetainfoBuilder::piece_layers`]); bittern-storage's
/// `merkle::hash_files_v2` computes both. Files must be added in `file
/// tree` order (component lists in ascending byte order) and without
/// padding files: a hybrid's v1 list gets BEP 47 padding after every
/// non-empty file that does not end on a piece boundary (the last one
/// included, as libtorrent 2.0.8 writes it), so its SHA-1 `pieces` must
/// be over that piece-aligned layout.
#[derive(Debug, Clone, Default)]
pub struct MetainfoBuilder {
    name: String,
    single_length: Option<u64>,
    files: Vec<(Vec<String>, u64, Option<String>)>,
    piece_length: u64,
    pieces: Vec<[u8; 20]>,
    tiers: Vec<Vec<String>>,
    private: bool,
    comment: Option<String>,
    created_by: Option<String>,
    creation_date: Option<i64>,
    url_list: Vec<String>,
    source: Option<String>,
    version: Option<MetaVersion>,
    roots: Vec<Option<[u8; 32]>>,
    layers: BTreeMap<[u8; 32], Vec<[u8; 32]>>,
}

fn s(v: &str) -> Value {
    Value::from(v)
}

fn int(v: u64) -> Result<Value, MetainfoError> {
    i64::try_from(v)
        .map(Value::Int)
        .map_err(|_| MetainfoError::LengthOverflow)
}

impl MetainfoBuilder {
    /// A torrent called `name` (the file name for a single-file torrent,
    /// the directory name for a multi-file one).
    pub fn new(name: impl Into<String>) -> Self {
        MetainfoBuilder {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Make it a single-file torrent of `length` bytes.
    #[must_use]
    pub fn single_file(mut self, length: u64) -> Self {
        self.single_length = Some(length);
        self
    }

    /// Add a file to a multi-file torrent (`path` under the torrent root).
    #[must_use]
    pub fn file(mut self, path: Vec<String>, length: u64) -> Self {
        self.files.push((path, length, None));
        self
    }

    /// Add a BEP 47 padding file of `length` bytes (`attr` = `p`).
    #[must_use]
    pub fn pad_file(mut self, length: u64) -> Self {
        self.files.push((
            vec![".pad".into(), length.to_string()],
            length,
            Some("p".into()),
        ));
        self
    }

    /// Add several files to a multi-file torrent.
    #[must_use]
    pub fn files(mut self, files: impl IntoIterator<Item = (Vec<String>, u64)>) -> Self {
        self.files
            .extend(files.into_iter().map(|(p, l)| (p, l, None)));
        self
    }

    /// Bytes per piece.
    #[must_use]
    pub fn piece_length(mut self, len: u64) -> Self {
        self.piece_length = len;
        self
    }

    /// SHA-1 of each piece, in order.
    #[must_use]
    pub fn pieces(mut self, hashes: Vec<[u8; 20]>) -> Self {
        self.pieces = hashes;
        self
    }

    /// Tracker tiers (BEP 12); replaces any set before.
    #[must_use]
    pub fn trackers(mut self, tiers: Vec<Vec<String>>) -> Self {
        self.tiers = tiers;
        self
    }

    /// Add one tracker as a tier of its own.
    #[must_use]
    pub fn announce(mut self, url: impl Into<String>) -> Self {
        self.tiers.push(vec![url.into()]);
        self
    }

    /// BEP 27 private flag.
    #[must_use]
    pub fn private(mut self, private: bool) -> Self {
        self.private = private;
        self
    }

    /// `comment`.
    #[must_use]
    pub fn comment(mut self, c: impl Into<String>) -> Self {
        self.comment = Some(c.into());
        self
    }

    /// `created by`.
    #[must_use]
    pub fn created_by(mut self, c: impl Into<String>) -> Self {
        self.created_by = Some(c.into());
        self
    }

    /// `creation date` in seconds since the Unix epoch.
    #[must_use]
    pub fn creation_date(mut self, secs: i64) -> Self {
        self.creation_date = Some(secs);
        self
    }

    /// Web seeds (BEP 19).
    #[must_use]
    pub fn url_list(mut self, urls: Vec<String>) -> Self {
        self.url_list = urls;
        self
    }

    /// The format to write (v1 when not set).
    #[must_use]
    pub fn version(mut self, version: MetaVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// The v2 `pieces root` of each file, in the order added (`None` for
    /// empty files).
    #[must_use]
    pub fn pieces_roots(mut self, roots: Vec<Option<[u8; 32]>>) -> Self {
        self.roots = roots;
        self
    }

    /// The v2 piece layers, by `pieces root` (entries for files of at most
    /// one piece are left out of the output).
    #[must_use]
    pub fn piece_layers(mut self, layers: BTreeMap<[u8; 32], Vec<[u8; 32]>>) -> Self {
        self.layers = layers;
        self
    }

    /// `source` tag inside `info`.
    #[must_use]
    pub fn source(mut self, s: impl Into<String>) -> Self {
        self.source = Some(s.into());
        self
    }

    /// The files as (path under the root, length), single-file included.
    fn plain_files(&self) -> Vec<(Vec<String>, u64)> {
        match self.single_length {
            Some(len) => vec![(vec![self.name.clone()], len)],
            None => self.files.iter().map(|f| (f.0.clone(), f.1)).collect(),
        }
    }

    /// The v2 fields: `file tree`, `meta version`, and for hybrids the
    /// padded v1 file list.
    fn v2_fields(
        &self,
        info: &mut BTreeMap<Vec<u8>, Value>,
        hybrid: bool,
    ) -> Result<(), MetainfoError> {
        let k = |s: &str| s.as_bytes().to_vec();
        let bad = |path: &[String], reason| MetainfoError::InvalidFileTree {
            path: path.join("/"),
            reason,
        };
        if self.files.iter().any(|f| f.2.is_some()) {
            return Err(bad(&[], "padding files are added by the builder"));
        }
        let files = self.plain_files();
        if files.is_empty() {
            return Err(MetainfoError::NoFiles);
        }
        if self.roots.len() != files.len() {
            return Err(bad(&[], "one pieces root per file needed"));
        }
        let mut tree = BTreeMap::new();
        for (i, ((p, len), root)) in files.iter().zip(&self.roots).enumerate() {
            if i > 0 && files[i - 1].0 >= *p {
                return Err(bad(p, "files not in file tree order"));
            }
            let mut leaf = BTreeMap::new();
            leaf.insert(k("length"), int(*len)?);
            match root {
                Some(r) if *len > 0 => {
                    leaf.insert(k("pieces root"), Value::Bytes(r.to_vec()));
                }
                None if *len == 0 => {}
                _ => return Err(bad(p, "a pieces root exactly for non-empty files")),
            }
            let mut node = &mut tree;
            for c in &p[..p.len().saturating_sub(1)] {
                let next = node
                    .entry(c.as_bytes().to_vec())
                    .or_insert_with(|| Value::Dict(BTreeMap::new()));
                node = match next {
                    Value::Dict(d) if !d.contains_key(&b""[..]) => d,
                    _ => return Err(bad(p, "both a file and a directory")),
                };
            }
            let name = p.last().map(|c| c.as_bytes().to_vec()).unwrap_or_default();
            let file = BTreeMap::from([(Vec::new(), Value::Dict(leaf))]);
            if node.insert(name, Value::Dict(file)).is_some() {
                return Err(bad(p, "both a file and a directory"));
            }
        }
        info.insert(k("file tree"), Value::Dict(tree));
        info.insert(k("meta version"), Value::Int(2));
        if hybrid && self.single_length.is_none() {
            let mut list = Vec::with_capacity(files.len() * 2);
            for (p, len) in &files {
                let mut f = BTreeMap::new();
                f.insert(k("length"), int(*len)?);
                f.insert(k("path"), Value::List(p.iter().map(|c| s(c)).collect()));
                list.push(Value::Dict(f));
                let pad = v2::pad_after(*len, self.piece_length);
                if pad > 0 {
                    let mut f = BTreeMap::new();
                    f.insert(k("attr"), s("p"));
                    f.insert(k("length"), int(pad)?);
                    f.insert(k("path"), Value::List(vec![s(".pad"), s(&pad.to_string())]));
                    list.push(Value::Dict(f));
                }
            }
            info.insert(k("files"), Value::List(list));
        }
        Ok(())
    }

    fn info_value(&self) -> Result<Value, MetainfoError> {
        let mut info = BTreeMap::new();
        let k = |s: &str| s.as_bytes().to_vec();
        let version = self.version.unwrap_or(MetaVersion::V1);
        if version.has_v2() {
            self.v2_fields(&mut info, version == MetaVersion::Hybrid)?;
        }
        match (self.single_length, self.files.is_empty()) {
            _ if version == MetaVersion::V2 => {}
            _ if info.contains_key(&k("files")) => {}
            (Some(len), true) => {
                info.insert(k("length"), int(len)?);
            }
            (None, false) => {
                let mut list = Vec::with_capacity(self.files.len());
                for (p, len, attr) in &self.files {
                    let mut f = BTreeMap::new();
                    f.insert(k("length"), int(*len)?);
                    f.insert(k("path"), Value::List(p.iter().map(|c| s(c)).collect()));
                    if let Some(a) = attr {
                        f.insert(k("attr"), s(a));
                    }
                    list.push(Value::Dict(f));
                }
                info.insert(k("files"), Value::List(list));
            }
            (None, true) => return Err(MetainfoError::NoFiles),
            (Some(_), false) => return Err(MetainfoError::WrongType("files")),
        }
        info.insert(k("name"), s(&self.name));
        info.insert(k("piece length"), int(self.piece_length)?);
        if version.has_v1() {
            info.insert(k("pieces"), Value::Bytes(self.pieces.concat()));
        }
        if self.private {
            info.insert(k("private"), Value::Int(1));
        }
        if let Some(src) = &self.source {
            info.insert(k("source"), s(src));
        }
        Ok(Value::Dict(info))
    }

    /// The canonical `.torrent` bytes.
    ///
    /// # Errors
    /// The [`MetainfoError`] that parsing the result would give (unsafe
    /// names, piece count not matching, no files, ...), or
    /// [`MetainfoError::UnsafePath`] for a name that sanitising would alter.
    pub fn build(&self) -> Result<Vec<u8>, MetainfoError> {
        self.build_parsed().map(|(bytes, _)| bytes)
    }

    /// [`MetainfoBuilder::build`], with the [`Metainfo`] its bytes parse
    /// to: the check that the result parses is that parse, so a caller
    /// that needs both (torrent creation) does not parse the torrent
    /// again (with its piece layers hashed to their roots, the 1,000-file
    /// v2 set's second parse was a fortieth of `bittern create`'s CPU).
    ///
    /// # Errors
    /// As [`MetainfoBuilder::build`].
    pub fn build_parsed(&self) -> Result<(Vec<u8>, Metainfo), MetainfoError> {
        if !(MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&self.piece_length) {
            return Err(MetainfoError::InvalidPieceLength(
                i64::try_from(self.piece_length).unwrap_or(i64::MAX),
            ));
        }
        let names = std::iter::once(&self.name).chain(self.files.iter().flat_map(|f| &f.0));
        for c in names {
            match path::sanitize_component(c) {
                Ok(clean) if clean == *c => {}
                Ok(_) => {
                    return Err(MetainfoError::UnsafePath {
                        path: c.clone(),
                        reason: "characters that are not allowed in a file name".into(),
                    })
                }
                Err(r) => {
                    return Err(MetainfoError::UnsafePath {
                        path: c.clone(),
                        reason: r.to_string(),
                    })
                }
            }
        }
        let info = self.info_value()?;
        let mut top = BTreeMap::new();
        let k = |s: &str| s.as_bytes().to_vec();
        let urls: Vec<&String> = self.tiers.iter().flatten().collect();
        if let Some(first) = urls.first() {
            top.insert(k("announce"), s(first));
        }
        if urls.len() > 1 {
            let tiers = self
                .tiers
                .iter()
                .filter(|t| !t.is_empty())
                .map(|t| Value::List(t.iter().map(|u| s(u)).collect()))
                .collect();
            top.insert(k("announce-list"), Value::List(tiers));
        }
        if let Some(c) = &self.comment {
            top.insert(k("comment"), s(c));
        }
        if let Some(c) = &self.created_by {
            top.insert(k("created by"), s(c));
        }
        if let Some(d) = self.creation_date {
            top.insert(k("creation date"), Value::Int(d));
        }
        if !self.url_list.is_empty() {
            top.insert(
                k("url-list"),
                Value::List(self.url_list.iter().map(|u| s(u)).collect()),
            );
        }
        top.insert(k("info"), info);
        if self.version.is_some_and(MetaVersion::has_v2) {
            let layers: BTreeMap<Vec<u8>, Value> = self
                .plain_files()
                .iter()
                .zip(&self.roots)
                .filter(|((_, len), _)| *len > self.piece_length)
                .filter_map(|(_, root)| {
                    let root = (*root)?;
                    let layer = self.layers.get(&root)?;
                    Some((root.to_vec(), Value::Bytes(layer.concat())))
                })
                .collect();
            top.insert(k("piece layers"), Value::Dict(layers));
        }
        let bytes = bencode::encode(&Value::Dict(top));
        // the same checks a reader applies (the piece layers against the
        // roots too)
        let parsed = Metainfo::from_bytes(&bytes)?;
        Ok((bytes, parsed))
    }

    /// [`MetainfoBuilder::build`] and parse the result.
    ///
    /// # Errors
    /// As [`MetainfoBuilder::build`].
    pub fn build_metainfo(&self) -> Result<Metainfo, MetainfoError> {
        self.build_parsed().map(|(_, m)| m)
    }
}
