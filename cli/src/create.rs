//! `bittern create`: walk the input, hash it in parallel, write the torrent.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use bittern_wire::{MetaVersion, Metainfo, MetainfoBuilder};

use crate::args::{CreateArgs, PieceLength};
use crate::exit::{coded, Code, WithCode};
use crate::progress;
use crate::units::format_size;

/// Smallest piece size `auto` picks.
pub const MIN_AUTO_PIECE: u64 = 16 << 10;
/// Largest piece size `auto` picks.
pub const MAX_AUTO_PIECE: u64 = 16 << 20;

/// A power-of-two piece size giving 1,000 to 2,000 pieces for `total`
/// bytes, clamped to 16 KiB..16 MiB: the smallest power of two not below
/// `total / 2000`.
pub fn auto_piece_length(total: u64) -> u64 {
    let target = total.div_ceil(2000).max(1);
    target
        .checked_next_power_of_two()
        .unwrap_or(MAX_AUTO_PIECE)
        .clamp(MIN_AUTO_PIECE, MAX_AUTO_PIECE)
}

/// What to hash: files on disk, and their paths inside the torrent.
#[derive(Debug)]
pub struct Source {
    /// Torrent name (file name or directory name).
    pub name: String,
    /// `None` for a single file, else each file's components under the root.
    pub files: Option<Vec<Vec<String>>>,
    /// Disk path and length of each file, in torrent order.
    pub disk: Vec<(PathBuf, u64)>,
}

impl Source {
    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.disk.iter().map(|(_, l)| l).sum()
    }
}

fn utf8_name(p: &Path) -> anyhow::Result<String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            coded(
                Code::Usage,
                anyhow!("{} has no usable UTF-8 file name", p.display()),
            )
        })
}

/// Collects the files under `path`: a single file, or every file of a
/// directory, sorted by path. Symlinks are followed only while they stay
/// inside the directory.
///
/// # Errors
/// [`Code::Usage`] for a missing path, a symlink leaving the directory, a
/// symlink loop, a non-UTF-8 name, or no data at all.
pub fn collect(path: &Path) -> anyhow::Result<Source> {
    let meta = std::fs::metadata(path).map_err(|e| {
        coded(
            Code::Usage,
            anyhow!("cannot read {}: {}", path.display(), e),
        )
    })?;
    let root = std::fs::canonicalize(path).map_err(|e| {
        coded(
            Code::Usage,
            anyhow!("cannot read {}: {}", path.display(), e),
        )
    })?;
    let name = utf8_name(&root)?;
    let source = if meta.is_file() {
        Source {
            name,
            files: None,
            disk: vec![(root, meta.len())],
        }
    } else if meta.is_dir() {
        let mut files = Vec::new();
        let mut disk = Vec::new();
        let mut active = HashSet::new();
        walk(
            &root,
            &root,
            root.clone(),
            &mut Vec::new(),
            &mut active,
            &mut files,
            &mut disk,
        )?;
        if files.is_empty() {
            return Err(coded(
                Code::Usage,
                anyhow!("{} contains no files", path.display()),
            ));
        }
        Source {
            name,
            files: Some(files),
            disk,
        }
    } else {
        return Err(coded(
            Code::Usage,
            anyhow!("{} is not a regular file or directory", path.display()),
        ));
    };
    if source.total() == 0 {
        return Err(coded(
            Code::Usage,
            anyhow!("{} holds no data (0 bytes)", path.display()),
        ));
    }
    Ok(source)
}

/// Walks directory `dir`, whose canonical path is `real_dir`.
///
/// Entries that are not symlinks are taken from the directory listing
/// (`d_type`, one `fstatat` per file for its length): their canonical path
/// is `real_dir/name`, so only symlinks need a `canonicalize` (a `readlink`
/// per path component) to check where they lead.
fn walk(
    root: &Path,
    dir: &Path,
    real_dir: PathBuf,
    prefix: &mut Vec<String>,
    active: &mut HashSet<PathBuf>,
    files: &mut Vec<Vec<String>>,
    disk: &mut Vec<(PathBuf, u64)>,
) -> anyhow::Result<()> {
    if !active.insert(real_dir.clone()) {
        return Err(coded(
            Code::Usage,
            anyhow!("symlink loop at {}", dir.display()),
        ));
    }
    let mut entries = std::fs::read_dir(dir)
        .and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read directory {}", dir.display()))
        .code(Code::Usage)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let p = entry.path();
        let name = utf8_name(&p)?;
        let cannot =
            |e: std::io::Error| coded(Code::Usage, anyhow!("cannot read {}: {}", p.display(), e));
        let kind = entry.file_type().map_err(cannot)?;
        let (real, meta) = if kind.is_symlink() {
            let real = std::fs::canonicalize(&p).map_err(cannot)?;
            if !real.starts_with(root) {
                return Err(coded(
                    Code::Usage,
                    anyhow!(
                        "{} is a symlink leading out of {} (to {})",
                        p.display(),
                        root.display(),
                        real.display()
                    ),
                ));
            }
            let meta = std::fs::metadata(&real).map_err(cannot)?;
            (real, meta)
        } else {
            let meta = entry.metadata().map_err(cannot)?;
            (real_dir.join(entry.file_name()), meta)
        };
        prefix.push(name);
        if meta.is_dir() {
            walk(root, &p, real, prefix, active, files, disk)?;
        } else if meta.is_file() {
            files.push(prefix.clone());
            disk.push((real, meta.len()));
        } else {
            return Err(coded(
                Code::Usage,
                anyhow!("{} is not a regular file", p.display()),
            ));
        }
        prefix.pop();
    }
    active.remove(&real_dir);
    Ok(())
}

fn check_url(url: &str, what: &str, schemes: &[&str]) -> anyhow::Result<()> {
    if schemes.iter().any(|s| url.starts_with(s)) && url.len() > url.find("://").unwrap_or(0) + 3 {
        Ok(())
    } else {
        Err(coded(
            Code::Usage,
            anyhow!(
                "invalid {what} URL {url:?} (must start with {})",
                schemes.join(" or ")
            ),
        ))
    }
}

/// Builds the torrent bytes for `source` (hashing it on `threads`).
///
/// # Errors
/// Hashing failures (a file changed or vanished), or a name the metainfo
/// format refuses.
pub fn build(
    source: &Source,
    args: &CreateArgs,
    quiet: bool,
) -> anyhow::Result<(Vec<u8>, Metainfo)> {
    for t in &args.trackers {
        check_url(t, "tracker", &["http://", "https://", "udp://"])?;
    }
    for w in &args.web_seeds {
        check_url(w, "web seed", &["http://", "https://"])?;
    }
    let total = source.total();
    let piece_length = match args.piece_length {
        PieceLength::Auto => auto_piece_length(total),
        PieceLength::Fixed(n) => n,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("bittern-create-{i}"))
        .build()
        .context("cannot start hashing threads")?;
    let version = if args.v2 {
        MetaVersion::V2
    } else if args.hybrid {
        MetaVersion::Hybrid
    } else {
        MetaVersion::V1
    };
    let bar = progress::bytes_bar(quiet, total, "hashing");
    let set = |done: usize| bar.set(((done as u64) * piece_length).min(total));
    let mut v2 = None;
    let mut hashes = Vec::new();
    // v2 and hybrid: every file starts a piece, so the lanes see zero
    // padding after each file that does not end on a piece boundary (the
    // hybrid's BEP 47 padding files, hashed by its SHA-1 pieces)
    let mut inputs = Vec::with_capacity(source.disk.len() * 2);
    for (path, len) in &source.disk {
        inputs.push((Some(path.clone()), *len));
        let pad = (piece_length - len % piece_length) % piece_length;
        if source.files.is_some() && pad > 0 {
            inputs.push((None, pad));
        }
    }
    if version == MetaVersion::Hybrid {
        // one read for both: SHA-1 pieces and SHA-256 trees
        let (pieces, files) =
            bittern_storage::hash_files_hybrid(&inputs, piece_length, &pool, &|done, _| set(done))
                .context("hashing failed")?;
        hashes = pieces;
        v2 = Some(files);
    } else if version.has_v2() {
        let files =
            bittern_storage::hash_files_v2_aligned(&inputs, piece_length, &pool, &|done, _| {
                set(done)
            })
            .context("hashing failed")?;
        v2 = Some(files);
    } else {
        hashes =
            bittern_storage::hash_files(&source.disk, piece_length, &pool, &|done, _| set(done))
                .context("hashing failed")?;
    }
    bar.finish();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut b = MetainfoBuilder::new(source.name.clone())
        .piece_length(piece_length)
        .pieces(hashes)
        .trackers(args.trackers.iter().map(|t| vec![t.clone()]).collect())
        .private(args.private)
        .url_list(args.web_seeds.clone())
        .created_by(concat!("bittern/", env!("CARGO_PKG_VERSION")))
        .creation_date(i64::try_from(now).unwrap_or(0));
    b = match &source.files {
        None => b.single_file(total),
        Some(files) => b.files(
            files
                .iter()
                .cloned()
                .zip(source.disk.iter().map(|(_, l)| *l)),
        ),
    };
    if let Some(c) = &args.comment {
        b = b.comment(c.clone());
    }
    if let Some(s) = &args.source {
        b = b.source(s.clone());
    }
    if let Some(files) = v2 {
        let layers = files
            .iter()
            .filter_map(|f| Some((f.root?, f.piece_layer.clone())))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        b = b
            .version(version)
            .pieces_roots(files.iter().map(|f| f.root).collect())
            .piece_layers(layers);
    }
    // parsed once, as the builder's own check
    b.build_parsed()
        .map_err(|e| coded(Code::Usage, anyhow!("cannot make a torrent of this: {e}")))
}

/// Runs `bittern create`.
///
/// # Errors
/// See [`collect`] and [`build`]; writing the output file.
pub fn run(args: &CreateArgs, quiet: bool) -> anyhow::Result<Code> {
    let start = Instant::now();
    let source = collect(&args.path)?;
    log::debug!(
        "create: walked {} file(s) in {:?}",
        source.disk.len(),
        start.elapsed()
    );
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.torrent", source.name)));
    if output.exists() && !args.force {
        return Err(coded(
            Code::Usage,
            anyhow!(
                "{} already exists (use --force to overwrite)",
                output.display()
            ),
        ));
    }
    let hashing = Instant::now();
    let (bytes, m) = build(&source, args, quiet)?;
    let writing = Instant::now();
    std::fs::write(&output, &bytes)
        .with_context(|| format!("cannot write {}", output.display()))
        .code(Code::Filesystem)?;
    log::debug!(
        "create: hashed and built in {:?}, wrote in {:?}",
        writing - hashing,
        writing.elapsed()
    );
    println!("created {}", output.display());
    println!("name:       {}", m.info.name);
    println!("info hash:  {}", m.info_hash.to_hex());
    if let Some(v2) = m.info_hash_v2 {
        println!("v2 hash:    {v2}");
    }
    println!(
        "size:       {} in {} file(s)",
        format_size(source.total()),
        source.disk.len()
    );
    println!(
        "pieces:     {} x {}",
        m.info.piece_count(),
        format_size(m.info.piece_length)
    );
    Ok(Code::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_piece_length_targets_1000_to_2000_pieces() {
        for total in [
            40 << 20,
            64 << 20,
            100_000_000,
            700 << 20,
            1 << 30,
            3_000_000_000,
            20 << 30,
        ] {
            let p = auto_piece_length(total);
            assert!(p.is_power_of_two());
            let n = total.div_ceil(p);
            assert!((1000..=2000).contains(&n), "{total}: {p} gives {n} pieces");
        }
        assert_eq!(auto_piece_length(1), MIN_AUTO_PIECE);
        assert_eq!(auto_piece_length(10 << 20), MIN_AUTO_PIECE);
        assert_eq!(auto_piece_length(1 << 40), MAX_AUTO_PIECE);
        assert_eq!(auto_piece_length(u64::MAX), MAX_AUTO_PIECE);
        assert_eq!(auto_piece_length(64 << 20), 64 << 10);
    }

    #[test]
    fn walk_is_sorted_and_refuses_escaping_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        std::fs::create_dir_all(root.join("b/deep")).unwrap();
        std::fs::write(root.join("z.txt"), b"zz").unwrap();
        std::fs::write(root.join("a.txt"), b"a").unwrap();
        std::fs::write(root.join("b/deep/x"), b"xxx").unwrap();
        std::fs::write(root.join(".hidden"), b"h").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        let s = collect(&root).unwrap();
        assert_eq!(s.name, "share");
        let names: Vec<String> = s.files.unwrap().iter().map(|p| p.join("/")).collect();
        assert_eq!(names, [".hidden", "a.txt", "b/deep/x", "link", "z.txt"]);
        assert_eq!(s.disk.iter().map(|d| d.1).sum::<u64>(), 8);

        std::fs::write(dir.path().join("outside"), b"secret").unwrap();
        std::os::unix::fs::symlink("../outside", root.join("escape")).unwrap();
        let e = collect(&root).unwrap_err();
        assert!(format!("{e:#}").contains("leading out of"), "{e:#}");
        std::fs::remove_file(root.join("escape")).unwrap();

        std::os::unix::fs::symlink("..", root.join("b/up")).unwrap();
        let e = collect(&root).unwrap_err();
        assert!(format!("{e:#}").contains("symlink loop"), "{e:#}");
    }

    #[test]
    fn single_file_and_empty_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("one.bin");
        std::fs::write(&f, vec![7u8; 100]).unwrap();
        let s = collect(&f).unwrap();
        assert!(s.files.is_none());
        assert_eq!((s.name.as_str(), s.total()), ("one.bin", 100));
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(collect(&empty).is_err());
        std::fs::write(empty.join("zero"), b"").unwrap();
        assert!(collect(&empty).is_err());
        assert!(collect(&dir.path().join("missing")).is_err());
    }
}
