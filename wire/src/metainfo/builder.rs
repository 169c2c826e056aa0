//! [`MetainfoBuilder`]: canonical `.torrent` bytes for a new torrent.

use std::collections::BTreeMap;

use super::{path, Info, Metainfo, MetainfoError, MAX_PIECE_LENGTH, MIN_PIECE_LENGTH};
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

    /// `source` tag inside `info`.
    #[must_use]
    pub fn source(mut self, s: impl Into<String>) -> Self {
        self.source = Some(s.into());
        self
    }

    fn info_value(&self) -> Result<Value, MetainfoError> {
        let mut info = BTreeMap::new();
        let k = |s: &str| s.as_bytes().to_vec();
        match (self.single_length, self.files.is_empty()) {
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
        info.insert(k("pieces"), Value::Bytes(self.pieces.concat()));
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
        // the same checks a reader applies
        Info::from_value(&info)?;
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
        Ok(bencode::encode(&Value::Dict(top)))
    }

    /// [`MetainfoBuilder::build`] and parse the result.
    ///
    /// # Errors
    /// As [`MetainfoBuilder::build`].
    pub fn build_metainfo(&self) -> Result<Metainfo, MetainfoError> {
        Metainfo::from_bytes(&self.build()?)
    }
}
