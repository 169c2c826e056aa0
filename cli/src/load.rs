//! Turning command-line input into checked values: torrent files, magnet
//! links, peer addresses, save directories. Every failure here is a
//! [`Code::Usage`] or [`Code::Filesystem`] error naming the problem.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use bittern_storage::{FileSpec, Layout};
use bittern_wire::{Magnet, Metainfo};

use crate::exit::{coded, Code, WithCode};

/// Largest .torrent file we read (real ones are far below this).
const MAX_TORRENT_FILE: u64 = 64 << 20;

/// Reads and parses a `.torrent` file.
///
/// # Errors
/// [`Code::Usage`]: missing, unreadable, too large, or not a valid torrent.
pub fn read_torrent(path: &Path) -> anyhow::Result<Metainfo> {
    let meta = std::fs::metadata(path).map_err(|e| {
        coded(
            Code::Usage,
            anyhow!("cannot read {}: {}", path.display(), e),
        )
    })?;
    if meta.is_dir() {
        return Err(coded(
            Code::Usage,
            anyhow!("{} is a directory, not a torrent file", path.display()),
        ));
    }
    if meta.len() > MAX_TORRENT_FILE {
        return Err(coded(
            Code::Usage,
            anyhow!(
                "{} is not a torrent file (too large: {} bytes)",
                path.display(),
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        coded(
            Code::Usage,
            anyhow!("cannot read {}: {}", path.display(), e),
        )
    })?;
    Metainfo::from_bytes(&bytes).map_err(|e| {
        coded(
            Code::Usage,
            anyhow!("{} is not a valid torrent file: {}", path.display(), e),
        )
    })
}

/// A torrent given on the command line: a `.torrent` file or a magnet link.
#[derive(Debug)]
pub enum TorrentArg {
    /// A parsed `.torrent` file.
    Meta(Box<Metainfo>),
    /// A magnet link (the metadata comes from peers).
    Magnet(Box<Magnet>),
}

impl TorrentArg {
    /// The name shown before the metadata is known.
    pub fn label(&self) -> String {
        match self {
            TorrentArg::Meta(m) => m.info.name.clone(),
            TorrentArg::Magnet(m) => m
                .display_name
                .clone()
                .unwrap_or_else(|| m.swarm_hash().to_hex()),
        }
    }
}

/// A torrent given on the command line for `download`.
///
/// # Errors
/// As [`read_torrent`]; [`Code::Usage`] for a bad magnet link. v1,
/// v2-only and hybrid torrents and magnet links (`btih`, `btmh` or both)
/// are all taken (the engine checks v2 pieces against their merkle hashes).
pub fn torrent_arg(arg: &str) -> anyhow::Result<TorrentArg> {
    if arg.starts_with("magnet:") {
        let m = Magnet::parse(arg)
            .map_err(|e| coded(Code::Usage, anyhow!("invalid magnet link: {e}")))?;
        return Ok(TorrentArg::Magnet(Box::new(m)));
    }
    let m = read_torrent(Path::new(arg))?;
    Ok(TorrentArg::Meta(Box::new(m)))
}

/// Resolves `--peer HOST:PORT` values.
///
/// # Errors
/// [`Code::Usage`] for a value that is not `HOST:PORT` or does not resolve.
pub fn peers(values: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for v in values {
        let addrs: Vec<SocketAddr> = v
            .to_socket_addrs()
            .map_err(|e| {
                coded(
                    Code::Usage,
                    anyhow!("invalid peer {v:?}: {e} (want HOST:PORT)"),
                )
            })?
            .collect();
        match addrs.first() {
            Some(a) => out.push(*a),
            None => {
                return Err(coded(
                    Code::Usage,
                    anyhow!("peer {v:?} resolves to no address"),
                ))
            }
        }
    }
    Ok(out)
}

/// Makes sure `dir` exists (creating it) and that we can create files in
/// it, by creating and removing a probe file. Nothing else is touched.
///
/// # Errors
/// [`Code::Filesystem`] naming the directory and the reason.
pub fn writable_dir(dir: &Path) -> anyhow::Result<()> {
    let fail = |what: &str, e: std::io::Error| {
        coded(
            Code::Filesystem,
            anyhow!("save directory {} {what}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot be created", e))?;
    let probe = dir.join(format!(".bittern-probe-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| fail("is not writable", e))?;
    std::fs::remove_file(&probe).map_err(|e| fail("is not writable", e))?;
    Ok(())
}

/// The layout `bittern verify` checks: [`layout`] for v1 torrents, with
/// the merkle hashes added for hybrids, and the merkle hashes alone for
/// v2-only ones.
///
/// # Errors
/// A layout the storage crate refuses: for v2, files not on piece
/// boundaries or hashes that do not fit them ([`Code::Usage`]).
pub fn verify_layout(m: &Metainfo) -> anyhow::Result<Layout> {
    let files: Vec<FileSpec> = m
        .info
        .files
        .iter()
        .map(|f| FileSpec {
            path: m.info.disk_path(f),
            length: f.length,
            padding: f.padding,
        })
        .collect();
    let plen = m.info.piece_length;
    let v2_hashes = || -> Vec<Vec<[u8; 32]>> {
        m.info
            .files
            .iter()
            .map(|f| match (f.padding, f.pieces_root, m.piece_layer(f)) {
                (true, _, _) | (_, None, _) => Vec::new(),
                (false, Some(_), Some(layer)) => layer.to_vec(),
                (false, Some(root), None) => vec![root],
            })
            .collect()
    };
    let layout = match (m.info.version.has_v1(), m.info.version.has_v2()) {
        (true, false) => Layout::new(files, plen, m.info.pieces.clone()),
        (true, true) => {
            Layout::new(files, plen, m.info.pieces.clone()).and_then(|l| l.with_v2(&v2_hashes()))
        }
        (false, _) => Layout::new_v2(files, plen, &v2_hashes()),
    };
    layout
        .with_context(|| format!("{}: cannot lay out the torrent's pieces", m.info.name))
        .code(Code::Usage)
}

/// `dir` made absolute (for messages), falling back to it as given.
pub fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::code_of;

    #[test]
    fn bad_torrents_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.torrent");
        let e = read_torrent(&missing).unwrap_err();
        assert_eq!(code_of(&e), Code::Usage);
        assert!(format!("{e:#}").contains("cannot read"), "{e:#}");

        let junk = dir.path().join("junk.torrent");
        std::fs::write(&junk, b"hello").unwrap();
        let e = read_torrent(&junk).unwrap_err();
        assert_eq!(code_of(&e), Code::Usage);
        assert!(format!("{e:#}").contains("is not a valid torrent file"));

        let e = torrent_arg("magnet:?xt=urn:btih:nothex").unwrap_err();
        assert!(format!("{e:#}").contains("invalid magnet link"), "{e:#}");
        let ok = torrent_arg(
            "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&x.pe=127.0.0.1:7",
        )
        .unwrap();
        assert!(matches!(ok, TorrentArg::Magnet(_)));
        assert_eq!(ok.label(), "0123456789abcdef0123456789abcdef01234567");
    }

    #[test]
    fn peers_resolve() {
        let p = peers(&["127.0.0.1:7000".to_string()]).unwrap();
        assert_eq!(p, vec![SocketAddr::from(([127, 0, 0, 1], 7000))]);
        let p = peers(&["[::1]:7000".to_string()]).unwrap();
        assert_eq!(p, vec!["[::1]:7000".parse::<SocketAddr>().unwrap()]);
        let e = peers(&["127.0.0.1".to_string()]).unwrap_err();
        assert_eq!(code_of(&e), Code::Usage);
    }

    #[test]
    fn writable_dir_creates_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        writable_dir(&sub).unwrap();
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = writable_dir(&file.join("sub")).unwrap_err();
        assert_eq!(code_of(&e), Code::Filesystem);
    }
}
