//! Startup checking and resume state: what is on disk, and what we may
//! claim to have after a crash.
//!
//! Resume state only ever vouches for pieces that were flushed to disk
//! before it was written: `save` flushes first, then captures file sizes and
//! modification times, then writes the file atomically. At startup every
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

/// Which pieces are valid on disk.
pub(super) fn startup(
    storage: &Storage,
    session: &SessionShared,
    resume_file: &Path,
    info_hash: InfoHash,
    published: &Published,
) -> Result<Vec<bool>, bittern_storage::Error> {
    let count = storage.layout().piece_count();
    let vouched = match ResumeState::load(resume_file) {
        Ok(state) => {
            let v = state.vouched(storage, info_hash.0);
            debug!(
                "resume state vouches for {} pieces",
                v.iter().filter(|x| **x).count()
            );
            v
        }
        Err(e) => {
            if resume_file.exists() {
                info!("ignoring resume state {}: {e}", resume_file.display());
            }
            vec![false; count]
        }
    };
    let to_check: Vec<usize> = (0..count).filter(|i| !vouched[*i]).collect();
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
    Ok(have)
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
    if let Some(dir) = resume_file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| bittern_storage::Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    ResumeState::capture(storage, info_hash.0, have)?.save(resume_file)?;
    Ok(Vec::new())
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
