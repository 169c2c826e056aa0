//! `bittern verify`: recheck every piece in parallel, report what is wrong.

use std::sync::Arc;

use anyhow::Context;
use bittern_storage::{Backend, FilePool, HashSource, Layout, Storage};
use bittern_wire::Metainfo;

use crate::args::VerifyArgs;
use crate::exit::{Code, WithCode};
use crate::load;
use crate::progress;
use crate::units::format_size;

/// A file that is not complete and correct.
#[derive(Debug, PartialEq, Eq)]
pub struct BadFile {
    /// Path under the save directory.
    pub path: String,
    /// Missing from disk altogether.
    pub missing: bool,
    /// Pieces touching this file that failed (torrent piece indices).
    pub bad_pieces: Vec<usize>,
}

/// Pieces that failed, and the files they touch.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// Pieces in the torrent.
    pub pieces: usize,
    /// Pieces missing or corrupt.
    pub bad: usize,
    /// Files holding any such piece.
    pub files: Vec<BadFile>,
    /// Hybrid torrents: pieces whose data matches one of the torrent's
    /// halves (SHA-1 pieces, v2 merkle hashes) but not the other, so the
    /// torrent itself is inconsistent. Counted as bad too.
    pub disagree: Vec<usize>,
}

/// Hashes everything of `m` under `dir` on a rayon pool with a progress
/// bar: the SHA-1 pieces of v1 torrents, the merkle hashes of v2-only ones
/// (BEP 52: per file, 16 KiB leaves), both for hybrids, where a piece
/// passes only when both halves agree it is good.
///
/// # Errors
/// IO errors other than missing or short files (those count as bad pieces).
pub fn check(m: &Metainfo, dir: &std::path::Path, quiet: bool) -> anyhow::Result<Report> {
    let layout = load::verify_layout(m)?;
    let storage = Storage::new(
        layout.clone(),
        dir.to_path_buf(),
        Arc::new(FilePool::default()),
        Backend::PositionedIo,
    )
    // Hash straight from read-only maps (main installs the SIGBUS guard;
    // without it storage reads with pread into page-aligned buffers). No
    // copy into a buffer at all: 1 GiB page-cached, 256 KiB pieces, 7
    // alternating runs, CPU 0.51 s (system 0.02) from maps against 0.62 s
    // (system 0.17) with aligned pread, and the copy's speed depends on
    // the CPU (issue 17: 5x the system time on AMD EPYC for a destination
    // 16 bytes past a page), while reading maps does not copy. A file cut
    // by another program mid-hash fails its pieces, never the process.
    // (v2 merkle checks and hybrids go through the same lanes and maps:
    // `Storage::verify_pieces_v2`, `Storage::verify_all_hybrid`.)
    .map(|s| s.with_hash_source(HashSource::Map))
    .with_context(|| format!("cannot open {}", dir.display()))
    .code(Code::Filesystem)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("bittern-verify-{i}"))
        .build()
        .context("cannot start hashing threads")?;
    let total = m.info.total_length();
    let plen = m.info.piece_length;
    let hybrid = layout.has_v1() && layout.has_v2();
    let passes = if hybrid {
        1
    } else {
        u64::from(layout.has_v1()) + u64::from(layout.has_v2())
    };
    let bar = progress::bytes_bar(quiet, total * passes, "verifying");
    let start = std::time::Instant::now();
    let (v1, v2) = if hybrid {
        // one read of each piece for both halves (SHA-1 and the merkle
        // leaves from the same buffer)
        let both = storage
            .verify_all_hybrid(&pool, &|done, _| bar.set((done as u64 * plen).min(total)))
            .context("verification failed")?;
        let (a, b): (Vec<bool>, Vec<bool>) = both.into_iter().unzip();
        (Some(a), Some(b))
    } else {
        two_passes(&storage, &pool, &bar, total, plen)?
    };
    log::debug!(
        "verify: hashed {} pieces ({passes} passes) in {:?}",
        layout.piece_count(),
        start.elapsed()
    );
    bar.finish();
    report(m, dir, &layout, v1, v2)
}

/// Each half's verdict per piece: (SHA-1, merkle), `None` for a half the
/// torrent lacks.
type Halves = (Option<Vec<bool>>, Option<Vec<bool>>);

/// The SHA-1 pass of a v1 torrent or the merkle pass of a v2-only one.
fn two_passes(
    storage: &Storage,
    pool: &rayon::ThreadPool,
    bar: &progress::Bar,
    total: u64,
    plen: u64,
) -> anyhow::Result<Halves> {
    let layout = storage.layout();
    let v1 = if layout.has_v1() {
        Some(
            storage
                .verify_all(pool, &|done, _| bar.set((done as u64 * plen).min(total)))
                .context("verification failed")?,
        )
    } else {
        None
    };
    let base = if v1.is_some() { total } else { 0 };
    let v2 = if layout.has_v2() {
        Some(
            storage
                .verify_all_v2(pool, &|done, _| {
                    bar.set(base + (done as u64 * plen).min(total))
                })
                .context("verification failed")?,
        )
    } else {
        None
    };
    Ok((v1, v2))
}

/// The report from each half's verdicts.
fn report(
    m: &Metainfo,
    dir: &std::path::Path,
    layout: &Layout,
    v1: Option<Vec<bool>>,
    v2: Option<Vec<bool>>,
) -> anyhow::Result<Report> {
    let (ok, disagree) = match (v1, v2) {
        (Some(a), Some(b)) => {
            let disagree = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
            (a.iter().zip(&b).map(|(x, y)| *x && *y).collect(), disagree)
        }
        (Some(a), None) | (None, Some(a)) => (a, Vec::new()),
        (None, None) => (Vec::new(), Vec::new()),
    };
    let bad = ok.iter().filter(|ok| !**ok).count();
    let mut files = Vec::new();
    for (i, f) in m.info.files.iter().enumerate() {
        if f.padding {
            continue;
        }
        let bad_pieces: Vec<usize> = layout.file_pieces(i).filter(|&p| !ok[p]).collect();
        let path = m.info.disk_path(f);
        // A missing file fails every piece it touches; only look for it
        // then (a stat per file would walk each path once more).
        let missing = f.length > 0 && !bad_pieces.is_empty() && !dir.join(&path).exists();
        if !bad_pieces.is_empty() || missing {
            files.push(BadFile {
                path: path.display().to_string(),
                missing,
                bad_pieces,
            });
        }
    }
    Ok(Report {
        pieces: ok.len(),
        bad,
        files,
        disagree,
    })
}

/// `pieces` (ascending) as ranges: `0-3, 7, 9-10`, at most `max` of them.
fn ranges(pieces: &[usize], max: usize) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < pieces.len() {
        let mut j = i;
        while j + 1 < pieces.len() && pieces[j + 1] == pieces[j] + 1 {
            j += 1;
        }
        if out.len() == max {
            out.push("...".into());
            break;
        }
        out.push(if i == j {
            pieces[i].to_string()
        } else {
            format!("{}-{}", pieces[i], pieces[j])
        });
        i = j + 1;
    }
    out.join(", ")
}

/// Runs `bittern verify`: exit 0 when every piece is present and correct,
/// [`Code::BadData`] otherwise.
///
/// # Errors
/// See [`check`]; an unreadable torrent.
pub fn run(args: &VerifyArgs, quiet: bool) -> anyhow::Result<Code> {
    let m = load::read_torrent(&args.torrent)?;
    let report = check(&m, &args.dir, quiet)?;
    if report.bad == 0 {
        println!(
            "{}: all {} pieces OK ({})",
            m.info.name,
            report.pieces,
            format_size(m.info.total_length())
        );
        return Ok(Code::Ok);
    }
    if !report.disagree.is_empty() {
        eprintln!(
            "error: {}: the torrent's v1 and v2 hashes disagree on {} pieces ({}): \
             the data matches one half of this hybrid torrent but not the other",
            m.info.name,
            report.disagree.len(),
            ranges(&report.disagree, 8)
        );
    }
    println!(
        "{}: {} bad pieces of {} (missing or corrupt)",
        m.info.name, report.bad, report.pieces
    );
    println!("incomplete files:");
    for f in &report.files {
        if f.missing {
            println!("  {} (missing)", f.path);
        } else {
            println!(
                "  {} ({} bad pieces: {})",
                f.path,
                f.bad_pieces.len(),
                ranges(&f.bad_pieces, 8)
            );
        }
    }
    Ok(Code::BadData)
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn piece_ranges() {
        assert_eq!(ranges(&[], 8), "");
        assert_eq!(ranges(&[4], 8), "4");
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10], 8), "0-3, 7, 9-10");
        assert_eq!(ranges(&[1, 3, 5, 7], 2), "1, 3, ...");
    }
}
