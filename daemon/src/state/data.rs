//! A torrent's data on disk: moving it (`torrent-set-location` with
//! `move`), across filesystems too, and deleting it (`torrent-remove`
//! with `delete-local-data`).

use std::path::{Path, PathBuf};

use bittern_wire::Metainfo;
use log::warn;

use super::{unix_now, Entry, Ids, Torrents};
use crate::backend::Backend;
use crate::settings::Settings;

impl<B: Backend> Torrents<B> {
    /// Points the selected torrents at `location`: with `move_data` their
    /// data is moved there first (renamed; a torrent whose data cannot be
    /// moved stays where it was and the error is returned), else the data
    /// is looked for there (a recheck).
    ///
    /// # Errors
    /// A move failed.
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
        self.flush(&mut inner);
        result
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
            (Some(m), true) => move_torrent_data(m, &e.record.save_dir, location),
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

/// Moves a torrent's data (its file, or its top directory) from `from` to
/// `to` by renaming. Nothing there yet (a torrent that never got data) is
/// not an error.
pub(super) fn move_torrent_data(m: &Metainfo, from: &Path, to: &Path) -> Result<(), String> {
    let top = if m.info.multi_file {
        PathBuf::from(&m.info.name)
    } else {
        m.info
            .files
            .first()
            .map(|f| m.info.disk_path(f))
            .unwrap_or_default()
    };
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
    let name = dst
        .file_name()
        .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dst.with_file_name(format!(".{name}.bittern-move"));
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
