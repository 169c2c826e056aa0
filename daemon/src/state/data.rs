//! A torrent's data on disk: moving it (`torrent-set-location` with
//! `move`), across filesystems too, and deleting it (`torrent-remove`
//! with `delete-local-data`).

use std::path::{Path, PathBuf};

use bittern_wire::Metainfo;
use log::warn;

use super::{unix_now, Entry, Ids, Torrents};
use crate::backend::Backend;
use crate::settings::Settings;
use crate::store::{Pending, Record, Store};

impl<B: Backend> Torrents<B> {
    /// Points the selected torrents at `location`: with `move_data` their
    /// data is moved there first (renamed; a torrent whose data cannot be
    /// moved stays where it was and the error is returned), else the data
    /// is looked for there (a recheck).
    ///
    /// # Errors
    /// A move failed, or the new place cannot be saved.
    pub fn set_location(&self, ids: &Ids, location: &Path, move_data: bool) -> Result<(), String> {
        std::fs::create_dir_all(location)
            .map_err(|e| format!("cannot create {}: {e}", location.display()))?;
        let mut inner = self.inner.lock();
        let settings = inner.settings.clone();
        let mut result = Ok(());
        for i in inner.select(ids) {
            let e = &mut inner.entries[i];
            if e.record.save_dir == location {
                continue;
            }
            if let Err(err) = self.relocate(&settings, e, location, move_data) {
                result = Err(err);
            }
        }
        let saved = self.flush(&mut inner);
        result.and(saved)
    }

    /// Points one torrent at `location`, moving its data there first with
    /// `move_data`; it stops for that and starts again (where it was, when
    /// the move failed).
    pub(super) fn relocate(
        &self,
        settings: &Settings,
        e: &mut Entry,
        location: &Path,
        move_data: bool,
    ) -> Result<(), String> {
        let status = self.backend.status(e.hash);
        e.record = e.folded(status.as_ref());
        self.backend.remove(e.hash);
        let moved = match (&e.metainfo, move_data) {
            (Some(m), true) => move_recorded(&self.store, &mut e.record, m, location),
            _ => Ok(()),
        };
        if moved.is_ok() {
            e.record.save_dir = location.to_path_buf();
            e.record.final_dir = None;
            e.record.edit_date = unix_now();
        }
        self.launch(settings, e);
        e.dirty = true;
        moved
    }
}

/// Moves a torrent's data like [`move_torrent_data`], with the move
/// written in its record first ([`Record::pending`], cleared here; the
/// caller saves the record with its new place).
///
/// # Errors
/// The record cannot be written (nothing moves then), or the move failed.
pub(super) fn move_recorded(
    store: &Store,
    record: &mut Record,
    m: &Metainfo,
    to: &Path,
) -> Result<(), String> {
    let top = top_of(m);
    let dst = to.join(&top);
    // Refused before the record is written: both existing at a load then
    // means a copy across filesystems was whole and its source's removal
    // was cut short.
    if std::fs::symlink_metadata(&dst).is_ok() {
        return Err(format!("{} already exists", dst.display()));
    }
    record.pending = Some(Pending {
        src: record.save_dir.join(&top),
        dst,
        save_dir: Some(to.to_path_buf()),
        rename: None,
    });
    let saved = store.save(record);
    record.pending = None;
    saved.map_err(|e| format!("cannot record the move: {e}"))?;
    move_torrent_data(m, &record.save_dir, to)
}

/// Settles a record loaded with a move or rename pending (a crash came
/// between the data moving and the record saying so): when the data is
/// at the destination, or at neither place (nothing to move), the change
/// happened and the record takes it; when it is only at the source, it
/// did not. Both there (the destination is refused up front) is a move
/// across filesystems whose whole copy was in place when the removal of
/// its source was cut: that removal is finished. Returns whether the
/// record changed.
pub(super) fn settle(record: &mut Record) -> bool {
    let Some(p) = record.pending.take() else {
        return false;
    };
    let there = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if p.save_dir.is_some() {
        // A copy across filesystems cut short leaves its partial copy.
        let partial = partial_copy(&p.dst);
        if there(&partial) {
            warn!(
                "removing {}, left by an interrupted move",
                partial.display()
            );
            if let Err(e) = remove_any(&partial) {
                warn!("cannot remove {}: {e}", partial.display());
            }
        }
    }
    let (src, dst) = (there(&p.src), there(&p.dst));
    if src && dst && p.save_dir.is_some() {
        warn!(
            "{}: removing {}, left by an interrupted move to {}",
            record.info_hash,
            p.src.display(),
            p.dst.display()
        );
        if let Err(e) = remove_any(&p.src) {
            warn!("cannot remove {}: {e}", p.src.display());
        }
    } else if src {
        return true;
    }
    if let Some(dir) = p.save_dir {
        record.save_dir = dir;
        record.final_dir = None;
    }
    if let Some(r) = p.rename {
        if record.renames.last() != Some(&r) {
            record.renames.push(r);
        }
    }
    log::info!(
        "{}: finished recording an interrupted move to {}",
        record.info_hash,
        p.dst.display()
    );
    true
}

/// The file (single-file) or top directory holding a torrent's data.
fn top_of(m: &Metainfo) -> PathBuf {
    if m.info.multi_file {
        PathBuf::from(&m.info.name)
    } else {
        m.info
            .files
            .first()
            .map(|f| m.info.disk_path(f))
            .unwrap_or_default()
    }
}

/// Moves a torrent's data (its file, or its top directory) from `from` to
/// `to` by renaming. Nothing there yet (a torrent that never got data) is
/// not an error.
pub(super) fn move_torrent_data(m: &Metainfo, from: &Path, to: &Path) -> Result<(), String> {
    let top = top_of(m);
    let (src, dst) = (from.join(&top), to.join(&top));
    if dst.exists() {
        return Err(format!("{} already exists", dst.display()));
    }
    match std::fs::rename(&src, &dst) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => copy_then_remove(&src, &dst),
        Err(e) => Err(format!(
            "cannot move {} to {}: {e}",
            src.display(),
            dst.display()
        )),
    }
}

/// A move across filesystems: `src` is copied to a hidden name beside
/// `dst` (every file synced), renamed to `dst` in one step, and only then
/// removed. A failure before that rename leaves `src` whole and removes
/// the partial copy; a crash leaves at worst a hidden partial copy.
fn copy_then_remove(src: &Path, dst: &Path) -> Result<(), String> {
    let tmp = partial_copy(dst);
    let err =
        |what: &str, p: &Path, e: std::io::Error| format!("cannot {what} {}: {e}", p.display());
    if std::fs::symlink_metadata(&tmp).is_ok() {
        remove_any(&tmp).map_err(|e| err("clear", &tmp, e))?;
    }
    if let Err(e) = copy_tree(src, &tmp) {
        let _ = remove_any(&tmp);
        return Err(err("copy", src, e));
    }
    std::fs::rename(&tmp, dst).map_err(|e| err("rename", &tmp, e))?;
    if let Some(parent) = dst.parent() {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    remove_any(src).map_err(|e| err("remove", src, e))
}

/// Where a move across filesystems copies to before renaming into `dst`.
fn partial_copy(dst: &Path) -> PathBuf {
    let name = dst
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    dst.with_file_name(format!(".{name}.bittern-move"))
}

/// Copies a file, or a directory recursively (symlinks as symlinks).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(src)?;
    if meta.is_dir() {
        std::fs::create_dir(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)
    } else {
        std::fs::copy(src, dst)?;
        std::fs::File::open(dst)?.sync_all()
    }
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(p)?.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

/// Deletes a removed torrent's files, then the directories of a
/// multi-file torrent that became empty (never above its root).
pub(super) fn delete_local_data(m: &Metainfo, save_dir: &Path) {
    for f in m.info.files.iter().filter(|f| !f.padding) {
        let p = save_dir.join(m.info.disk_path(f));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot delete {}: {e}", p.display()),
        }
    }
    if m.info.multi_file {
        let root = save_dir.join(&m.info.name);
        let mut dirs: Vec<PathBuf> = m
            .info
            .files
            .iter()
            .flat_map(|f| {
                let mut p = root.join(f.relative_path());
                let mut out = Vec::new();
                while p.pop() && p.starts_with(&root) {
                    out.push(p.clone());
                }
                out
            })
            .collect();
        // Deepest first; `remove_dir` only removes empty ones.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs.dedup();
        for d in dirs {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Rename;

    fn pending(t: &Path, rename: Option<Rename>) -> Record {
        Record {
            info_hash: "aa".into(),
            save_dir: t.join("a"),
            pending: Some(Pending {
                src: t.join("a/top"),
                dst: t.join("b/top"),
                save_dir: rename.is_none().then(|| t.join("b")),
                rename,
            }),
            ..Record::default()
        }
    }

    #[test]
    fn an_interrupted_move_is_settled_by_where_the_data_is() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        std::fs::create_dir_all(t.join("a/top")).unwrap();
        std::fs::create_dir_all(t.join("b")).unwrap();
        // Still at the source: the move did not happen.
        let mut r = pending(t, None);
        assert!(settle(&mut r));
        assert_eq!((r.save_dir.clone(), r.pending.clone()), (t.join("a"), None));
        // At the destination: it did.
        std::fs::rename(t.join("a/top"), t.join("b/top")).unwrap();
        let mut r = pending(t, None);
        assert!(settle(&mut r));
        assert_eq!(r.save_dir, t.join("b"));
        assert!(!settle(&mut r), "nothing pending any more");
        // Both there: a whole copy across filesystems, its source's
        // removal cut short; the removal is finished.
        std::fs::create_dir_all(t.join("a/top/half")).unwrap();
        std::fs::create_dir_all(t.join("b/.top.bittern-move/x")).unwrap();
        let mut r = pending(t, None);
        assert!(settle(&mut r));
        assert_eq!(r.save_dir, t.join("b"));
        assert!(!t.join("a/top").exists() && t.join("b/top").exists());
        assert!(
            !t.join("b/.top.bittern-move").exists(),
            "partial copy removed"
        );
        // A rename is added once, however often it is settled.
        let rename = Rename {
            path: vec!["top".into()],
            name: "new".into(),
        };
        let mut r = pending(t, Some(rename.clone()));
        r.renames.push(rename.clone());
        r.pending.as_mut().unwrap().rename = Some(rename.clone());
        assert!(settle(&mut r));
        assert_eq!(r.renames, [rename]);
        assert_eq!(r.save_dir, t.join("a"), "a rename keeps the save dir");
    }
}
