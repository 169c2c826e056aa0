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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bittern_storage::{Layout, ResumeState, Storage};
use bittern_wire::InfoHash;
use log::{debug, info};

use super::Published;
use crate::session::SessionShared;
use crate::shared::HaveSet;
use crate::status::FileStatus;

/// Bytes rechecked between two looks at the cancel flag (about 10 ms of
/// hashing in a release build); other torrents' checks queued on the pool get
/// their turn between chunks too.
const CHECK_CHUNK: u64 = 16 << 20;

/// A torrent's startup check, run on the hashing pool (never on the
/// controller): resume state, one `lstat` per file, a parallel recheck of
/// what the state does not vouch for, and for a complete torrent its empty
/// files. An idle seed then keeps no file open.
pub(crate) struct StartupJob {
    pub storage: Arc<Storage>,
    pub session: Arc<SessionShared>,
    pub resume_file: PathBuf,
    pub info_hash: InfoHash,
    pub published: Arc<Published>,
    /// Wanted pieces, and wanted files (empty: all).
    pub wanted: Vec<bool>,
    pub wanted_files: Vec<bool>,
    /// Set by a stop: the check ends early and reports nothing.
    pub cancel: Arc<AtomicBool>,
}

/// What a startup check found.
pub(crate) struct Checked {
    /// Had and durable pieces (see [`startup`]).
    pub pieces: Result<(Vec<bool>, Vec<bool>), bittern_storage::Error>,
    /// Creating the empty wanted files of a complete torrent.
    pub files: Result<(), bittern_storage::Error>,
}

impl StartupJob {
    /// Runs the check; `None` when cancelled.
    pub(crate) fn run(self) -> Option<Checked> {
        if self.cancel.load(Ordering::Relaxed) {
            return None;
        }
        let pieces = startup(
            &self.storage,
            &self.session,
            &self.resume_file,
            self.info_hash,
            &self.published,
            &self.cancel,
        );
        if self.cancel.load(Ordering::Relaxed) {
            return None;
        }
        let complete = pieces
            .as_ref()
            .is_ok_and(|(have, _)| have.iter().zip(&self.wanted).all(|(h, w)| *h || !*w));
        let files = if complete {
            create_empty_files(&self.storage, &self.wanted_files)
        } else {
            Ok(())
        };
        if complete {
            // Seeding opens files when a peer asks for data.
            self.storage.release_files();
        }
        Some(Checked { pieces, files })
    }
}

/// Which pieces are valid on disk, and which of them are known to be
/// durable (vouched for by resume state as flushed; see
/// [`ResumeState::vouched_durable`]). Pieces found by hashing may still be
/// in the page cache only, and are not counted as durable. Stops early
/// (with what it has) once `cancel` is set.
fn startup(
    storage: &Storage,
    session: &SessionShared,
    resume_file: &Path,
    info_hash: InfoHash,
    published: &Published,
    cancel: &AtomicBool,
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
    let total = to_check.len();
    let mut have = vouched;
    // In chunks, so that a stop does not wait for a long recheck.
    let per_chunk = (CHECK_CHUNK / storage.layout().piece_length().max(1)).max(1) as usize;
    for (n, chunk) in to_check.chunks(per_chunk).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        let base = n * per_chunk;
        let progress = |done: usize, _: usize| {
            let mut s = published.status.lock();
            s.progress = if total == 0 {
                1.0
            } else {
                (base + done) as f64 / total as f64
            };
        };
        let checked = storage.verify_pieces(chunk, &session.hashers, &progress)?;
        for (i, ok) in chunk.iter().zip(checked) {
            have[*i] = ok;
        }
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

/// A file sync ends with a device cache flush, which costs about what
/// writing this many bytes does: stopping a completed 1,000-file torrent
/// (256 MiB) spent 250 ms in `fdatasync`s with almost nothing left to
/// write, about 0.25 ms a file, and the disk here writes ~1 GB/s.
const STOP_SYNC_COST_PER_FILE: u64 = 256 << 10;

/// The resume save at a stop, run by the stop job off the controller.
pub(crate) struct StopSave {
    pub storage: Arc<Storage>,
    pub resume_file: PathBuf,
    pub info_hash: InfoHash,
    pub have: Vec<bool>,
    pub durable: Vec<bool>,
    /// `SessionConfig::stop_flush_limit`.
    pub flush_limit: u64,
}

impl StopSave {
    /// Records the verified pieces without waiting long for the disk:
    /// flushed first when less than `flush_limit` of flush work is left
    /// (or the kernel cannot say how much), else recorded unflushed,
    /// stamped with this boot's id. An exit right after a fast download
    /// (many GiB still on their way to a slow disk) then takes
    /// milliseconds, while the resume state still never vouches for data
    /// a crash may have lost. Pieces found gone on the way are left out.
    pub(crate) fn run(mut self) -> Result<(), bittern_storage::Error> {
        let had: Vec<usize> = (0..self.have.len()).filter(|&i| self.have[i]).collect();
        // What the flush would cost, in bytes to write: what is still on
        // its way to disk, plus a device cache flush per file synced.
        let files = self.storage.file_count(&had)? as u64;
        let cost = self
            .storage
            .unflushed_bytes(&had)?
            .map(|n| n.saturating_add(files.saturating_mul(STOP_SYNC_COST_PER_FILE)));
        match cost {
            Some(n) if n >= self.flush_limit && bittern_storage::boot_id().is_some() => {
                save_unflushed(
                    &self.storage,
                    &self.resume_file,
                    self.info_hash,
                    &self.have,
                    &self.durable,
                )?;
                info!(
                    "{}: recorded {} pieces without waiting for the disk ({} files to sync, \
                     about {} MiB of flush work)",
                    &self.info_hash.to_hex()[..8],
                    had.len(),
                    files,
                    n >> 20
                );
                Ok(())
            }
            _ => {
                for _ in 0..3 {
                    let missing =
                        save(&self.storage, &self.resume_file, self.info_hash, &self.have)?;
                    if missing.is_empty() {
                        return Ok(());
                    }
                    for piece in missing {
                        self.have[piece] = false;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Whether the torrent has wanted zero-length files (which no piece
/// writes, so completion creates them).
pub(super) fn has_empty_files(storage: &Storage, wanted_files: &[bool]) -> bool {
    storage
        .layout()
        .files()
        .iter()
        .enumerate()
        .any(|(i, f)| f.length == 0 && !f.padding && wanted_files.get(i).copied().unwrap_or(true))
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
