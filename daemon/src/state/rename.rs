//! `torrent-rename-path`: renaming a torrent's file or folder (or its top
//! name) on disk and in the daemon's view of its metainfo. The info hash
//! stays; the record keeps the list of renames, replayed on the parsed
//! metainfo at every load.
//!
//! Refused: a new name that is empty, `.`, `..`, or holds a `/` or NUL; a
//! path that names nothing in the torrent; a target that exists; and a
//! rename whose source folder resolves (through symlinks) outside the
//! torrent's save directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bittern_wire::Metainfo;
use log::info;
use serde::{Deserialize, Serialize};

use super::{Ids, Torrents};
use crate::backend::Backend;

/// One rename, as `torrent-rename-path` asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rename {
    /// The renamed path's components, the torrent's name first.
    pub path: Vec<String>,
    /// Its new last component.
    pub name: String,
}

/// Whether `name` can be one path component.
fn valid_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Applies `rename` to `m`'s names.
///
/// # Errors
/// An invalid new name, or a path naming nothing in the torrent.
pub fn apply(m: &mut Metainfo, rename: &Rename) -> Result<(), String> {
    if !valid_component(&rename.name) {
        return Err("invalid name".into());
    }
    let comps = &rename.path;
    if comps.first() != Some(&m.info.name) || comps.iter().any(|c| !valid_component(c)) {
        return Err("invalid path".into());
    }
    if comps.len() == 1 {
        m.info.name = rename.name.clone();
        if !m.info.multi_file {
            if let Some(f) = m.info.files.first_mut() {
                f.path = vec![rename.name.clone()];
            }
        }
        return Ok(());
    }
    let rel = &comps[1..];
    let mut matched = false;
    if m.info.multi_file {
        for f in &mut m.info.files {
            if f.path.len() >= rel.len() && f.path[..rel.len()] == *rel {
                f.path[rel.len() - 1] = rename.name.clone();
                matched = true;
            }
        }
    }
    if matched {
        Ok(())
    } else {
        Err("invalid path".into())
    }
}

/// Renames `src` to `dst` under `root` on disk. Nothing at `src` (no data
/// yet) is fine.
fn rename_on_disk(root: &Path, src: &Path, dst: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(src).is_err() {
        return Ok(());
    }
    let parent = src.parent().unwrap_or(root);
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", root.display()))?;
    let real_parent = parent
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", parent.display()))?;
    if !real_parent.starts_with(&real_root) {
        return Err(format!(
            "{} leads outside {} through a symlink",
            parent.display(),
            root.display()
        ));
    }
    if std::fs::symlink_metadata(dst).is_ok() {
        return Err(format!("{} already exists", dst.display()));
    }
    std::fs::rename(src, dst)
        .map_err(|e| format!("cannot rename {} to {}: {e}", src.display(), dst.display()))
}

impl<B: Backend> Torrents<B> {
    /// Renames `path` (the torrent's name, or a file or folder under it,
    /// `/`-separated) of the one torrent `ids` selects to `name`: on disk
    /// (the torrent stops for it and starts again), in its metainfo as
    /// clients see it, and in its record. Returns its id.
    ///
    /// # Errors
    /// Not exactly one torrent, or see the module doc; nothing changes then.
    pub fn rename_path(&self, ids: &Ids, path: &str, name: &str) -> Result<i64, String> {
        let mut inner = self.inner.lock();
        let picked = inner.select(ids);
        let [i] = picked[..] else {
            return Err("torrent-rename-path requires 1 torrent".into());
        };
        let settings = inner.settings.clone();
        let e = &mut inner.entries[i];
        let rename = Rename {
            path: path
                .trim_matches('/')
                .split('/')
                .map(str::to_string)
                .collect(),
            name: name.to_string(),
        };
        let Some(meta) = &e.metainfo else {
            return Err("the torrent's metadata is not fetched yet".into());
        };
        let mut renamed = (**meta).clone();
        apply(&mut renamed, &rename)?;
        let root = e.record.save_dir.clone();
        let src: PathBuf = rename.path.iter().fold(root.clone(), |p, c| p.join(c));
        let dst = src.with_file_name(&rename.name);
        // The engine lets go of the files first.
        let status = self.backend.status(e.hash);
        e.record = e.folded(status.as_ref());
        self.backend.remove(e.hash);
        // The rename is recorded before it happens (see Record::pending);
        // a target already there is refused before that, so that both
        // existing at a load means the rename did not happen.
        let moved = if std::fs::symlink_metadata(&dst).is_ok() {
            Err(format!("{} already exists", dst.display()))
        } else {
            e.record.pending = Some(crate::store::Pending {
                src: src.clone(),
                dst: dst.clone(),
                save_dir: None,
                rename: Some(rename.clone()),
            });
            let recorded = self.store.save(&e.record);
            e.record.pending = None;
            recorded
                .map_err(|err| format!("cannot record the rename: {err}"))
                .and_then(|()| rename_on_disk(&root, &src, &dst))
        };
        if moved.is_ok() {
            info!("renamed {} to {}", src.display(), dst.display());
            e.metainfo = Some(Arc::new(renamed));
            e.record.renames.push(rename);
            e.record.edit_date = super::unix_now();
        }
        self.launch(&settings, e);
        e.dirty = true;
        let id = e.id;
        // A failed save leaves the pending record, which the next start
        // settles from where the data is: the rename holds either way.
        let _ = self.flush(&mut inner);
        moved.map(|()| id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bittern_wire::MetainfoBuilder;

    fn multi() -> Metainfo {
        let v = |p: &[&str]| p.iter().map(|s| s.to_string()).collect();
        MetainfoBuilder::new("top")
            .file(v(&["sub", "a.bin"]), 10)
            .file(v(&["sub", "b.bin"]), 10)
            .file(v(&["c.bin"]), 10)
            .piece_length(16384)
            .pieces(vec![[1; 20]])
            .build_metainfo()
            .unwrap()
    }

    fn r(path: &[&str], name: &str) -> Rename {
        Rename {
            path: path.iter().map(|s| s.to_string()).collect(),
            name: name.into(),
        }
    }

    #[test]
    fn renames_folders_files_and_the_top() {
        let mut m = multi();
        let hash = m.info_hash;
        apply(&mut m, &r(&["top", "sub"], "dir")).unwrap();
        apply(&mut m, &r(&["top", "c.bin"], "c2.bin")).unwrap();
        apply(&mut m, &r(&["top"], "new")).unwrap();
        assert_eq!(
            m.info.file_paths(),
            [
                PathBuf::from("new/dir/a.bin"),
                "new/dir/b.bin".into(),
                "new/c2.bin".into()
            ]
        );
        assert_eq!(m.info_hash, hash);
        for bad in [
            r(&["top", "sub"], ".."),
            r(&["top"], "a/b"),
            r(&["top"], ""),
        ] {
            assert_eq!(apply(&mut multi(), &bad).unwrap_err(), "invalid name");
        }
        for bad in [
            r(&["top", "nope"], "x"),
            r(&["other"], "x"),
            r(&["top", ".."], "x"),
        ] {
            assert_eq!(apply(&mut multi(), &bad).unwrap_err(), "invalid path");
        }
    }
}
