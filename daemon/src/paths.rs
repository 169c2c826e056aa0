//! Directories clients name (`download-dir`, `incomplete-dir`, a new
//! `location`): made absolute against the daemon's working directory, with
//! no `..` component, and, when the daemon has a data root
//! (`bittern daemon --data-root`), inside it once every symlink on the way
//! is resolved, so that no path, however spelled, leads a client outside.

use std::path::{Component, Path, PathBuf};

/// `path` made absolute against the daemon's working directory.
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path))
    }
}

/// `path` with every symlink of its longest existing ancestor resolved
/// (the rest, not there yet, appended as it is).
fn resolved(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => {
                return Ok(rest.iter().rev().fold(real, |p: PathBuf, c| p.join(c)));
            }
            Err(e) => {
                let Some(name) = existing.file_name().map(|n| n.to_os_string()) else {
                    return Err(e);
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(e);
                }
            }
        }
    }
}

/// A client's directory, checked (see the module doc).
///
/// # Errors
/// Empty, with a NUL, with a `..` component, or outside `root`.
pub fn checked_dir(root: Option<&Path>, path: &str) -> Result<PathBuf, String> {
    if path.is_empty() || path.contains('\0') {
        return Err("invalid directory".into());
    }
    let abs = absolute(Path::new(path));
    if abs.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{path}: `..` is not allowed in a directory"));
    }
    if let Some(root) = root {
        let real_root = root
            .canonicalize()
            .map_err(|e| format!("cannot resolve the data root {}: {e}", root.display()))?;
        let real = resolved(&abs).map_err(|e| format!("cannot resolve {path}: {e}"))?;
        if !real.starts_with(&real_root) {
            return Err(format!(
                "{path} is outside the data root {}",
                root.display()
            ));
        }
    }
    Ok(abs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_stay_under_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("in")).unwrap();
        std::fs::create_dir_all(tmp.path().join("out")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("out"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("in"), root.join("inlink")).unwrap();
        let ok = |p: PathBuf| checked_dir(Some(&root), p.to_str().unwrap());
        assert!(ok(root.join("in")).is_ok());
        assert!(ok(root.join("in/not/yet")).is_ok(), "need not exist");
        assert!(
            ok(root.join("inlink/x")).is_ok(),
            "a symlink staying inside"
        );
        assert!(ok(root.join("link")).unwrap_err().contains("outside"));
        assert!(ok(root.join("link/new/dir"))
            .unwrap_err()
            .contains("outside"));
        assert!(ok(tmp.path().join("out")).unwrap_err().contains("outside"));
        assert!(ok(root.join("in/../../out")).unwrap_err().contains(".."));
        assert!(checked_dir(None, "/a/../b").unwrap_err().contains(".."));
        assert_eq!(checked_dir(None, "/srv/x").unwrap(), Path::new("/srv/x"));
        assert!(checked_dir(None, "").is_err());
    }
}
