//! Startup checking and resume state: what is on disk, and what we may
//! claim to have after a crash.
//!
//! Resume state only ever vouches for pieces that were flushed to disk
//! before it was written: `save` flushes first, then captures file sizes and
//! modification times, then writes the file atomically. (`save_unflushed`
//! records pieces not flushed yet, trusted only on the same boot.) At
//! startup every
//! piece the state cannot vouch for (file changed since, state missing,
//! corrupt or for another torrent) is rechecked by hashing.

use std::path::Path;

use bittern_storage::{Layout, ResumeState, Storage};
use bittern_wire::InfoHash;
use log::{debug, info};

use super::Published;
use crate::session::SessionShared;
use crate::shared::HaveSet;
use crate::status::FileStatus;

/// Which pieces are valid on disk, and which of them are known to be
/// durable (vouched for by resume state as flushed; see
/// [`ResumeState::vouched_durable`]). Pieces found by hashing may still be
/// in the page cache only, and are not counted as durable.
pub(super) fn startup(
    storage: &Storage,
    session: &SessionShared,
    resume_file: &Path,
    info_hash: InfoHash,
    published: &Published,
) -> Result<(Vec<bool>, Vec<bool>), bittern_storage::Error> {
    let count = storage.layout().piece_count();
    let (vouched, durable) = match ResumeState::load(resume_file) {
        Ok(state) => {
            let v = state.vouched(storage, info_hash.0);
            let d = state.vouched_durable(storage, info_hash.0);
            debug!(
                "resume state vouches for {} pieces ({} durable)",
                v.iter().filter(|x| **x).count(),
                d.iter().filter(|x| **x).count()
            );
            (v, d)
        }
        Err(e) => {
            if resume_file.exists() {
                info!("ignoring resume state {}: {e}", resume_file.display());
            }
            (vec![false; count], vec![false; count])
        }
    };
    let absent = absent_pieces(storage);
    let to_check: Vec<usize> = (0..count).filter(|i| !vouched[*i] && !absent[*i]).collect();
    let progress = |done: usize, total: usize| {
        let mut s = published.status.lock();
        s.progress = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
    };
    let checked = storage.verify_pieces(&to_check, &session.hashers, &progress)?;
    let mut have = vouched;
    for (i, ok) in to_check.iter().zip(checked) {
        have[*i] = ok;
    }
    Ok((have, durable))
}

/// Pieces that cannot be on disk because a file they need does not exist
/// or is too short (one `lstat` per file): a fresh download skips hashing
/// them, which would otherwise open (and fail to open) a file per piece.
/// Anything else, symlinks included, is left to the real check.
fn absent_pieces(storage: &Storage) -> Vec<bool> {
    let layout = storage.layout();
    let mut absent = vec![false; layout.piece_count()];
    let plen = layout.piece_length().max(1);
    for (f, spec) in layout.files().iter().enumerate() {
        let Some(path) = storage.file_path(f).filter(|_| !spec.padding) else {
            continue;
        };
        // Bytes of the file that are there: none when it is missing, its
        // length when it is a regular file shorter than expected.
        let present = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Ok(m) if m.is_file() && m.len() < spec.length => m.len(),
            _ => continue,
        };
        let first = ((layout.file_start(f) + present) / plen) as usize;
        let pieces = layout.file_pieces(f);
        if let Some(s) = absent.get_mut(first.max(pieces.start)..pieces.end) {
            s.fill(true);
        }
    }
    absent
}

/// Makes every had piece durable, then records them. Pieces whose data is
/// gone (file deleted or truncated) are returned instead and nothing is
/// written: the caller marks them missing and saves again.
pub(super) fn save(
    storage: &Storage,
    resume_file: &Path,
    info_hash: InfoHash,
    have: &[bool],
) -> Result<Vec<usize>, bittern_storage::Error> {
    let had: Vec<usize> = (0..have.len()).filter(|i| have[*i]).collect();
    let missing = storage.flush_pieces(&had)?;
    if !missing.is_empty() {
        return Ok(missing);
    }
    write_resume(
        &ResumeState::capture(storage, info_hash.0, have)?,
        resume_file,
    )?;
    Ok(Vec::new())
}

/// Records the had pieces without flushing them: the state carries this
/// boot's id and is trusted only until the system restarts, after which
/// it vouches only for `durable` (see [`ResumeState::capture_unflushed`]).
pub(super) fn save_unflushed(
    storage: &Storage,
    resume_file: &Path,
    info_hash: InfoHash,
    have: &[bool],
    durable: &[bool],
) -> Result<(), bittern_storage::Error> {
    write_resume(
        &ResumeState::capture_unflushed(storage, info_hash.0, have, durable)?,
        resume_file,
    )
}

fn write_resume(state: &ResumeState, resume_file: &Path) -> Result<(), bittern_storage::Error> {
    if let Some(dir) = resume_file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| bittern_storage::Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    state.save(resume_file)
}

/// Creates the wanted zero-length files, which no piece ever writes.
pub(super) fn create_empty_files(
    storage: &Storage,
    wanted_files: &[bool],
) -> Result<(), bittern_storage::Error> {
    for (i, f) in storage.layout().files().iter().enumerate() {
        if f.length == 0 && !f.padding && wanted_files.get(i).copied().unwrap_or(true) {
            storage.allocate_file(i)?;
        }
    }
    Ok(())
}

/// Per-file progress from the verified pieces.
pub(super) fn file_status(
    layout: &Layout,
    have: &HaveSet,
    wanted_files: &[bool],
    multi_file: bool,
    name: &str,
) -> Vec<FileStatus> {
    let mut out = Vec::with_capacity(layout.files().len());
    let mut start = 0u64;
    let plen = layout.piece_length();
    for (f, spec) in layout.files().iter().enumerate() {
        let end = start + spec.length;
        let mut done = 0;
        for p in layout.file_pieces(f) {
            if have.contains(p) {
                let ps = p as u64 * plen;
                let pe = ps + layout.piece_len(p);
                done += pe.min(end) - ps.max(start);
            }
        }
        if !spec.padding {
            let path = if multi_file {
                Path::new(name).join(&spec.path)
            } else {
                spec.path.clone()
            };
            out.push(FileStatus {
                path,
                length: spec.length,
                done,
                wanted: wanted_files.get(f).copied().unwrap_or(true),
            });
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use bittern_storage::{Backend, FilePool, FileSpec, Layout, Storage};

    use super::absent_pieces;

    #[test]
    fn missing_and_short_files_mark_exactly_their_pieces_absent() {
        let dir = tempfile::tempdir().unwrap();
        // Pieces of 100 bytes: a (0..250) present, b (250..400) missing,
        // c (400..430) padding, d (430..700) only 120 bytes long, e empty.
        let files = [
            ("a", 250, false),
            ("b", 150, false),
            ("c", 30, true),
            ("d", 270, false),
            ("e", 0, false),
        ];
        let specs = files
            .iter()
            .map(|&(p, length, padding)| FileSpec {
                path: PathBuf::from(p),
                length,
                padding,
            })
            .collect();
        let layout = Layout::new(specs, 100, vec![[0u8; 20]; 7]).unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 250]).unwrap();
        std::fs::write(dir.path().join("d"), vec![1u8; 120]).unwrap();
        let s = Storage::new(
            layout,
            dir.path().to_path_buf(),
            Arc::new(FilePool::new(4)),
            Backend::PositionedIo,
        )
        .unwrap();
        // b spans pieces 2 and 3; d is short from byte 550: pieces 5 and 6.
        assert_eq!(
            absent_pieces(&s),
            vec![false, false, true, true, false, true, true]
        );
    }
}
