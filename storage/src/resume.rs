//! [`ResumeState`]: which pieces were verified, and what the files looked
//! like when that was recorded.
//!
//! # File format (version 3, little-endian)
//! ```text
//! magic        8   b"BTRNRSM\0"
//! version      4   u32 = 2
//! id          20   caller's torrent id (info hash)
//! piece_count  8   u64
//! file_count   8   u64
//! boot        16   all zero: the had pieces were flushed to disk before
//!                  capture; otherwise the boot id of the system whose page
//!                  cache held them (see below)
//! have         ceil(piece_count / 8) bytes, piece 0 = high bit of byte 0,
//!                  spare bits zero
//! durable      the same shape: the had pieces known to be on disk (all
//!                  of `have` when `boot` is zero)
//! files        file_count x 45 bytes:
//!                  present u8 (0/1), size u64, mtime_sec i64, mtime_nsec u32,
//!                  ctime_sec i64, ctime_nsec u32, inode u64
//!                  (all zero when absent)
//! checksum    20   SHA-1 of every byte before it
//! ```
//! Version 1 files (no `boot` field, always flushed) and version 2 files
//! (no `durable` field: an unflushed one knows of nothing durable) are
//! still read.
//! Saved atomically: written to `<path>.tmp`, fsynced, renamed over
//! `<path>`, then the directory is fsynced. A crash leaves either the old or
//! the new file, never a torn one; the checksum catches anything else.
//!
//! A piece is vouched for only if it was had **and** every file it touches
//! still has the recorded size, mtime, ctime and inode (ctime and inode
//! catch tools that restore mtime, such as `rsync -t` or `touch -d`).
//!
//! Two ways to capture:
//! - [`ResumeState::capture`] after [`Storage::flush_pieces`] of every had
//!   piece: the state holds across crashes and reboots.
//! - [`ResumeState::capture_unflushed`] without flushing (an exit that
//!   should not wait for the disk): the state records the current boot id
//!   (`/proc/sys/kernel/random/boot_id`). Until the system restarts the
//!   page cache is what every reader sees, so the pieces are as good as
//!   written. After a restart the data may never have reached the disk,
//!   and the state vouches only for the pieces the caller says an earlier
//!   flush made durable (`durable`: flushed, and never written since), if
//!   their files still carry the stamps recorded at capture.
//!
//! Remaining hole: a change within the filesystem's timestamp granularity
//! right after capture, by a writer that keeps size and inode.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::error::{Error, Result, ResumeCorruption};
use crate::storage::Storage;

const MAGIC: &[u8; 8] = b"BTRNRSM\0";
const VERSION: u32 = 3;
const HEADER_V1: usize = 8 + 4 + 20 + 8 + 8;
const BOOT: usize = 16;
const STAMP: usize = 1 + 8 + 8 + 4 + 8 + 4 + 8;
/// Larger resume files are rejected before reading them.
const MAX_FILE: u64 = 512 << 20;

/// What a data file looked like when the state was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Length in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Status change time, seconds (cannot be set back by user tools).
    pub ctime_sec: i64,
    /// Status change time, nanoseconds.
    pub ctime_nsec: u32,
    /// Inode number (a file replaced by rename gets a new one).
    pub inode: u64,
}

impl FileStamp {
    fn from_stat(st: &libc::stat) -> Option<FileStamp> {
        if (st.st_mode & libc::S_IFMT) != libc::S_IFREG {
            return None;
        }
        Some(FileStamp {
            size: st.st_size as u64,
            mtime_sec: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as u32,
            ctime_sec: st.st_ctime,
            ctime_nsec: st.st_ctime_nsec as u32,
            inode: st.st_ino,
        })
    }
}

/// Resume data for one torrent; see the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeState {
    /// Caller-chosen torrent id (the info hash); a state is only used for the same id.
    pub id: [u8; 20],
    /// Pieces in the torrent.
    pub piece_count: usize,
    /// Pieces verified at capture time (and flushed, unless
    /// `unflushed_boot` is set).
    pub have: Vec<bool>,
    /// The had pieces known to be on disk at capture: all of `have` for a
    /// flushed capture; for an unflushed one, those an earlier flush made
    /// durable (a verified piece is never written again).
    pub durable: Vec<bool>,
    /// One stamp per layout file; `None` for a padding or absent file.
    pub files: Vec<Option<FileStamp>>,
    /// `None`: the had pieces were flushed to disk before capture. `Some`:
    /// they were not; the boot id of the system that held them in its page
    /// cache (on another boot the state vouches only for `durable`).
    pub unflushed_boot: Option<[u8; 16]>,
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, a UUID), or `None`
/// where the system does not say.
pub fn boot_id() -> Option<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let hex: Vec<u8> = text.trim().bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        id[i] = u8::from_str_radix(s, 16).ok()?;
    }
    // All zero is how the file format says "flushed".
    (id != [0; 16]).then_some(id)
}

fn current_stamps(storage: &Storage) -> Vec<Option<FileStamp>> {
    storage
        .layout()
        .files()
        .iter()
        .map(|f| {
            if f.padding {
                return None;
            }
            match storage.stat_file(&f.path) {
                Ok(Some(st)) => FileStamp::from_stat(&st),
                _ => None,
            }
        })
        .collect()
}

impl ResumeState {
    /// Records `have` with the current stamps of `storage`'s files. Call it
    /// only after flushing the had pieces.
    ///
    /// # Errors
    /// [`Error::LengthMismatch`] when `have` is not one bool per piece.
    pub fn capture(storage: &Storage, id: [u8; 20], have: &[bool]) -> Result<ResumeState> {
        let piece_count = storage.layout().piece_count();
        if have.len() != piece_count {
            return Err(Error::LengthMismatch {
                expected: piece_count,
                actual: have.len(),
            });
        }
        Ok(ResumeState {
            id,
            piece_count,
            have: have.to_vec(),
            durable: have.to_vec(),
            files: current_stamps(storage),
            unflushed_boot: None,
        })
    }

    /// As [`capture`](Self::capture), for had pieces that may not have
    /// been flushed yet: the state records this boot's id. Once the system
    /// has restarted it vouches only for `durable` pieces (those of `have`
    /// an earlier [`Storage::flush_pieces`] made durable; pass all false
    /// when unsure).
    ///
    /// # Errors
    /// As [`capture`](Self::capture), also for `durable`; [`Error::Io`]
    /// when the system has no boot id to record (the caller must flush and
    /// use `capture`).
    pub fn capture_unflushed(
        storage: &Storage,
        id: [u8; 20],
        have: &[bool],
        durable: &[bool],
    ) -> Result<ResumeState> {
        let boot = boot_id().ok_or_else(|| Error::Io {
            path: PathBuf::from("/proc/sys/kernel/random/boot_id"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no boot id"),
        })?;
        let mut st = ResumeState::capture(storage, id, have)?;
        if durable.len() != st.piece_count {
            return Err(Error::LengthMismatch {
                expected: st.piece_count,
                actual: durable.len(),
            });
        }
        st.durable = have.iter().zip(durable).map(|(h, d)| *h && *d).collect();
        st.unflushed_boot = Some(boot);
        Ok(st)
    }

    /// Encodes the state (format in the module doc).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_V1 + BOOT + 2 * self.piece_count.div_ceil(8) + self.files.len() * STAMP + 20,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&(self.piece_count as u64).to_le_bytes());
        out.extend_from_slice(&(self.files.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.unflushed_boot.unwrap_or([0; BOOT]));
        for set in [&self.have, &self.durable] {
            let mut bits = vec![0u8; self.piece_count.div_ceil(8)];
            for (i, _) in set.iter().enumerate().filter(|(_, h)| **h) {
                if i < self.piece_count {
                    bits[i / 8] |= 0x80 >> (i % 8);
                }
            }
            out.extend_from_slice(&bits);
        }
        for f in &self.files {
            let s = f.unwrap_or(FileStamp {
                size: 0,
                mtime_sec: 0,
                mtime_nsec: 0,
                ctime_sec: 0,
                ctime_nsec: 0,
                inode: 0,
            });
            out.push(f.is_some() as u8);
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.mtime_sec.to_le_bytes());
            out.extend_from_slice(&s.mtime_nsec.to_le_bytes());
            out.extend_from_slice(&s.ctime_sec.to_le_bytes());
            out.extend_from_slice(&s.ctime_nsec.to_le_bytes());
            out.extend_from_slice(&s.inode.to_le_bytes());
        }
        let sum: [u8; 20] = Sha1::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Decodes and validates bytes produced by [`ResumeState::to_bytes`];
    /// `path` is only used in errors.
    ///
    /// # Errors
    /// [`Error::CorruptResume`] with the failed check.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<ResumeState> {
        let bad = |reason| Error::CorruptResume {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < HEADER_V1 + 20 || &bytes[..8] != MAGIC {
            return Err(bad(if bytes.len() >= 8 && &bytes[..8] != MAGIC {
                ResumeCorruption::BadMagic
            } else {
                ResumeCorruption::BadLength
            }));
        }
        let mut r = Reader { bytes, pos: 8 };
        let version = u32::from_le_bytes(r.take()?);
        // Header bytes, and how many piece bitfields follow it.
        let (header, sets) = match version {
            1 => (HEADER_V1, 1),
            2 => (HEADER_V1 + BOOT, 1),
            VERSION => (HEADER_V1 + BOOT, 2),
            _ => return Err(bad(ResumeCorruption::UnsupportedVersion(version))),
        };
        let id: [u8; 20] = r.take()?;
        let piece_count = u64::from_le_bytes(r.take()?);
        let file_count = u64::from_le_bytes(r.take()?);
        // Check the total length before allocating anything sized by the header.
        let expected = piece_count
            .div_ceil(8)
            .checked_mul(sets)
            .ok_or(bad(ResumeCorruption::BadLength))?
            .checked_add(
                file_count
                    .checked_mul(STAMP as u64)
                    .ok_or(bad(ResumeCorruption::BadLength))?,
            )
            .and_then(|n| n.checked_add((header + 20) as u64));
        if expected != Some(bytes.len() as u64) {
            return Err(bad(ResumeCorruption::BadLength));
        }
        let body = bytes.len() - 20;
        let sum: [u8; 20] = Sha1::digest(&bytes[..body]).into();
        if sum[..] != bytes[body..] {
            return Err(bad(ResumeCorruption::BadChecksum));
        }
        let unflushed_boot = if version == 1 {
            None
        } else {
            let boot: [u8; BOOT] = r.take()?;
            (boot != [0; BOOT]).then_some(boot)
        };
        // Lengths fit: they are bounded by bytes.len().
        let piece_count = piece_count as usize;
        let mut bitfield = || -> Result<Vec<bool>> {
            let bits = r.slice(piece_count.div_ceil(8))?;
            if !piece_count.is_multiple_of(8) {
                let spare = bits[bits.len() - 1] & (0xFF >> (piece_count % 8));
                if spare != 0 {
                    return Err(bad(ResumeCorruption::SpareBits));
                }
            }
            Ok((0..piece_count)
                .map(|i| bits[i / 8] & (0x80 >> (i % 8)) != 0)
                .collect())
        };
        let have = bitfield()?;
        let durable = match (sets, unflushed_boot) {
            (2, _) => bitfield()?,
            (_, None) => have.clone(),
            (_, Some(_)) => vec![false; piece_count],
        };
        if durable.iter().zip(&have).any(|(d, h)| *d && !*h) {
            return Err(bad(ResumeCorruption::BadField));
        }
        let mut files = Vec::with_capacity(file_count as usize);
        for _ in 0..file_count {
            let present: [u8; 1] = r.take()?;
            let stamp = FileStamp {
                size: u64::from_le_bytes(r.take()?),
                mtime_sec: i64::from_le_bytes(r.take()?),
                mtime_nsec: u32::from_le_bytes(r.take()?),
                ctime_sec: i64::from_le_bytes(r.take()?),
                ctime_nsec: u32::from_le_bytes(r.take()?),
                inode: u64::from_le_bytes(r.take()?),
            };
            files.push(match present[0] {
                0 => None,
                1 => Some(stamp),
                _ => return Err(bad(ResumeCorruption::BadField)),
            });
        }
        Ok(ResumeState {
            id,
            piece_count,
            have,
            durable,
            files,
            unflushed_boot,
        })
    }

    /// Saves atomically to `path` (temporary file, fsync, rename, fsync of
    /// the directory).
    ///
    /// # Errors
    /// IO errors (typed: [`Error::DiskFull`], [`Error::PermissionDenied`], ...).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| Error::from_io(p, e)
        };
        let result = (|| {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&self.to_bytes()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            drop(f);
            std::fs::rename(&tmp, path).map_err(io(path))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }

    /// Loads and validates a resume file.
    ///
    /// # Errors
    /// [`Error::FileMissing`] when absent; [`Error::CorruptResume`] when any
    /// check fails (magic, version, length, checksum, spare bits).
    pub fn load(path: &Path) -> Result<ResumeState> {
        let f = File::open(path).map_err(|e| Error::from_io(path, e))?;
        let len = f.metadata().map_err(|e| Error::from_io(path, e))?.len();
        if len > MAX_FILE {
            return Err(Error::CorruptResume {
                path: path.to_path_buf(),
                reason: ResumeCorruption::BadLength,
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        f.take(MAX_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::from_io(path, e))?;
        ResumeState::from_bytes(&bytes, path)
    }

    /// The pieces this state can vouch for in `storage` now: had at capture
    /// **and** every file they touch has the same stamp as then (and is at
    /// least as long as the layout says). Everything else must be rechecked
    /// (see [`Storage::verify_pieces`]). All false when `id` or the geometry
    /// differ. A state captured unflushed on another boot vouches only for
    /// its durable pieces.
    pub fn vouched(&self, storage: &Storage, id: [u8; 20]) -> Vec<bool> {
        if self.unflushed_boot.is_some_and(|b| boot_id() != Some(b)) {
            self.vouch(storage, id, &self.durable)
        } else {
            self.vouch(storage, id, &self.have)
        }
    }

    /// Those of [`vouched`](Self::vouched) known to be on disk: all of
    /// them for a flushed capture, the durable ones for an unflushed one
    /// (what a new unflushed capture may pass on as durable).
    pub fn vouched_durable(&self, storage: &Storage, id: [u8; 20]) -> Vec<bool> {
        self.vouch(storage, id, &self.durable)
    }

    fn vouch(&self, storage: &Storage, id: [u8; 20], set: &[bool]) -> Vec<bool> {
        let layout = storage.layout();
        let n = layout.piece_count();
        if id != self.id
            || self.piece_count != n
            || set.len() != n
            || self.files.len() != layout.files().len()
        {
            return vec![false; n];
        }
        let now = current_stamps(storage);
        let ok: Vec<bool> = layout
            .files()
            .iter()
            .zip(now.iter().zip(&self.files))
            .map(|(spec, (now, then))| {
                spec.padding
                    || (now.is_some() && now == then && now.is_some_and(|s| s.size >= spec.length))
            })
            .collect();
        (0..n)
            .map(|p| set[p] && layout.spans(p, 0, layout.piece_len(p)).all(|s| ok[s.file]))
            .collect()
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn slice(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Error::CorruptResume {
                path: PathBuf::new(),
                reason: ResumeCorruption::BadLength,
            });
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.slice(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::Backend;
    use std::time::Duration;

    fn setup(dir: &Path) -> (Storage, Vec<u8>) {
        let lens = vec![
            (3000u64, false),
            (100, true),
            (5000, false),
            (0, false),
            (2000, false),
        ];
        let data = data_for(&lens, 9);
        let s = storage(layout_for(&lens, 1024, &data), dir, 4, Backend::Mmap);
        write_all(&s, &data, 1024);
        for p in 0..s.layout().piece_count() {
            s.flush_piece(p).unwrap();
        }
        (s, data)
    }

    #[test]
    fn round_trip_and_vouch() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = setup(dir.path());
        let n = s.layout().piece_count();
        let have: Vec<bool> = (0..n).map(|p| p % 3 != 1).collect();
        let st = ResumeState::capture(&s, [7; 20], &have).unwrap();
        assert!(st.files[0].is_some() && st.files[1].is_none() && st.files[3].is_none());
        let path = dir.path().join("state.resume");
        st.save(&path).unwrap();
        assert!(!dir.path().join("state.resume.tmp").exists());
        let back = ResumeState::load(&path).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.vouched(&s, [7; 20]), have);
        // Another torrent's state vouches for nothing.
        assert_eq!(back.vouched(&s, [8; 20]), vec![false; n]);
        assert!(matches!(
            ResumeState::capture(&s, [7; 20], &have[1..]),
            Err(Error::LengthMismatch { .. })
        ));
        assert!(matches!(
            ResumeState::load(&dir.path().join("nope")),
            Err(Error::FileMissing { .. })
        ));
    }

    #[test]
    fn every_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = setup(dir.path());
        let have = vec![true; s.layout().piece_count()];
        let bytes = ResumeState::capture(&s, [1; 20], &have).unwrap().to_bytes();
        let p = Path::new("x");
        for cut in 0..bytes.len() {
            assert!(matches!(
                ResumeState::from_bytes(&bytes[..cut], p),
                Err(Error::CorruptResume { .. })
            ));
        }
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(
                    matches!(
                        ResumeState::from_bytes(&b, p),
                        Err(Error::CorruptResume { .. })
                    ),
                    "flip at {i}"
                );
            }
        }
        let mut b = bytes.clone();
        b.push(0);
        assert!(matches!(
            ResumeState::from_bytes(&b, p),
            Err(Error::CorruptResume {
                reason: ResumeCorruption::BadLength,
                ..
            })
        ));
        // A huge header count is rejected without allocating.
        let mut b = bytes.clone();
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            ResumeState::from_bytes(&b, p),
            Err(Error::CorruptResume { .. })
        ));
    }

    #[test]
    fn unflushed_state_holds_on_this_boot_only() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = setup(dir.path());
        let n = s.layout().piece_count();
        let have: Vec<bool> = (0..n).map(|p| p % 2 == 0).collect();
        // Flushed earlier: pieces 0 and 4 of those had, and 1 (not had
        // now, so not passed on).
        let durable: Vec<bool> = (0..n).map(|p| p % 4 == 0 || p == 1).collect();
        let kept: Vec<bool> = (0..n).map(|p| p % 4 == 0).collect();
        let Some(boot) = boot_id() else {
            // No boot id here: capture_unflushed must refuse, not guess.
            assert!(ResumeState::capture_unflushed(&s, [3; 20], &have, &durable).is_err());
            return;
        };
        assert!(matches!(
            ResumeState::capture_unflushed(&s, [3; 20], &have, &durable[1..]),
            Err(Error::LengthMismatch { .. })
        ));
        let st = ResumeState::capture_unflushed(&s, [3; 20], &have, &durable).unwrap();
        assert_eq!(st.unflushed_boot, Some(boot));
        assert_eq!(st.durable, kept);
        let path = dir.path().join("u.resume");
        st.save(&path).unwrap();
        let back = ResumeState::load(&path).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.vouched(&s, [3; 20]), have);
        assert_eq!(back.vouched_durable(&s, [3; 20]), kept);
        // The same state from another boot: the data may never have
        // reached the disk, so only what an earlier flush made durable is
        // vouched for.
        let mut other = back.clone();
        other.unflushed_boot = Some([0x5a; 16]);
        let bytes = other.to_bytes();
        let other = ResumeState::from_bytes(&bytes, &path).unwrap();
        assert_eq!(other.unflushed_boot, Some([0x5a; 16]));
        assert_eq!(other.vouched(&s, [3; 20]), kept);
        // ... and only while their files are as they were at capture.
        s.release_files();
        std::thread::sleep(Duration::from_millis(20));
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("d0/f0"))
                .unwrap();
            f.write_all_at(b"X", 10).unwrap();
        }
        let v = other.vouched(&s, [3; 20]);
        let f0 = s.layout().file_pieces(0);
        assert_eq!(
            v,
            (0..n)
                .map(|p| kept[p] && !f0.contains(&p))
                .collect::<Vec<_>>()
        );
        assert!(
            kept[0] && f0.contains(&0),
            "the test must cover a kept piece"
        );
        // A flushed capture records no boot and holds on any boot.
        let flushed = ResumeState::capture(&s, [3; 20], &have).unwrap();
        let back = ResumeState::from_bytes(&flushed.to_bytes(), &path).unwrap();
        assert_eq!(back.unflushed_boot, None);
        assert_eq!(back.vouched(&s, [3; 20]), have);
    }

    #[test]
    fn version_1_and_2_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = setup(dir.path());
        let n = s.layout().piece_count();
        let have: Vec<bool> = (0..n).map(|p| p != 2).collect();
        let st = ResumeState::capture(&s, [4; 20], &have).unwrap();
        let v3 = st.to_bytes();
        let bits = n.div_ceil(8);
        let have_at = HEADER_V1 + BOOT;
        // Older layouts from the version 3 bytes: version 1 without the
        // boot and durable fields, version 2 without the durable field.
        let older = |version: u32, boot: Option<[u8; 16]>| {
            let mut b = Vec::new();
            b.extend_from_slice(&v3[..8]);
            b.extend_from_slice(&version.to_le_bytes());
            b.extend_from_slice(&v3[12..HEADER_V1]);
            if version == 2 {
                b.extend_from_slice(&boot.unwrap_or([0; BOOT]));
            }
            b.extend_from_slice(&v3[have_at..have_at + bits]);
            b.extend_from_slice(&v3[have_at + 2 * bits..v3.len() - 20]);
            let sum: [u8; 20] = Sha1::digest(&b).into();
            b.extend_from_slice(&sum);
            ResumeState::from_bytes(&b, Path::new("old"))
        };
        let back = older(1, None).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.vouched(&s, [4; 20]), have);
        let back = older(2, None).unwrap();
        assert_eq!(back, st);
        // A version 2 unflushed state knows of nothing durable.
        let back = older(2, Some([0x5a; 16])).unwrap();
        assert_eq!(back.have, have);
        assert_eq!(back.durable, vec![false; n]);
        assert_eq!(back.vouched(&s, [4; 20]), vec![false; n]);
        // An unknown version is refused.
        let mut v4 = v3.clone();
        v4[8..12].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(
            ResumeState::from_bytes(&v4, Path::new("v4")),
            Err(Error::CorruptResume {
                reason: ResumeCorruption::UnsupportedVersion(4),
                ..
            })
        ));
    }

    #[test]
    fn stale_files_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let (s, data) = setup(dir.path());
        let n = s.layout().piece_count();
        let st = ResumeState::capture(&s, [2; 20], &vec![true; n]).unwrap();
        assert_eq!(st.vouched(&s, [2; 20]), vec![true; n]);
        s.release_files();
        std::thread::sleep(Duration::from_millis(20));
        // In-place modification of file 2 (pieces 3..=7), same size.
        let f2 = dir.path().join("d2/f2");
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&f2).unwrap();
            f.write_all_at(b"X", 10).unwrap();
        }
        let v = st.vouched(&s, [2; 20]);
        let expect: Vec<bool> = (0..n)
            .map(|p| !s.layout().file_pieces(2).contains(&p))
            .collect();
        assert_eq!(v, expect);
        // Replacement with mtime restored (rsync -t style): new inode, not trusted.
        let f0 = dir.path().join("d0/f0");
        let old = std::fs::metadata(&f0).unwrap().modified().unwrap();
        let tmp = dir.path().join("d0/tmp");
        std::fs::write(&tmp, &data[..3000]).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::rename(&tmp, &f0).unwrap();
        let v = st.vouched(&s, [2; 20]);
        for p in s.layout().file_pieces(0) {
            assert!(!v[p]);
        }
        // Deleted file: not trusted.
        std::fs::remove_file(dir.path().join("d1/f4")).unwrap();
        let v = st.vouched(&s, [2; 20]);
        for p in s.layout().file_pieces(4) {
            assert!(!v[p]);
        }
    }
}
