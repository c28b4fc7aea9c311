//! Where a writer may put a file: a new path, or, only when the caller allows replacing, an
//! existing regular file. Never a folder, a device, a pipe, a socket or a dangling link.

use std::path::{Path, PathBuf};

use super::MediaError;

/// How a file is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Replace an existing regular file at the path (otherwise an existing path is refused,
    /// also when it appears while the file is being written).
    pub overwrite: bool,
    /// Who writes the file (a job id): temporary files are named `.aivideo-<owner>-*.tmp`, so
    /// that a cleanup after a crash finds exactly this owner's leftovers.
    pub owner: Option<String>,
}

impl WriteOptions {
    /// New files only, owned by `owner`.
    pub fn owned_by(owner: &str) -> WriteOptions {
        WriteOptions {
            overwrite: false,
            owner: Some(owner.to_string()),
        }
    }
}

/// What kind of thing exists at a path, for messages.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_file() {
        "a file"
    } else {
        "not a regular file"
    }
}

/// Checks that `path` may be written: it does not exist, or (with `overwrite`) it is a
/// regular file or a link to one. Returns the path to write: the link's target for a link,
/// so that replacing a file through a link keeps the link.
pub fn check_target(path: &Path, overwrite: bool) -> Result<PathBuf, MediaError> {
    if path.file_name().is_none() || path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(MediaError::NotAFile {
            path: path.to_path_buf(),
            kind: "a folder",
        });
    }
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(MediaError::io(path, e)),
    };
    let meta = if link.file_type().is_symlink() {
        match std::fs::metadata(path) {
            Ok(m) => m,
            Err(_) => {
                return Err(MediaError::NotAFile {
                    path: path.to_path_buf(),
                    kind: "a link to nothing",
                });
            }
        }
    } else {
        link
    };
    if !meta.is_file() {
        return Err(MediaError::NotAFile {
            path: path.to_path_buf(),
            kind: kind_of(&meta),
        });
    }
    if !overwrite {
        return Err(MediaError::Exists {
            path: path.to_path_buf(),
        });
    }
    std::fs::canonicalize(path).map_err(|e| MediaError::io(path, e))
}

/// Whether `a` and `b` name the same file: the same inode when both exist, else the same
/// absolute path.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        return (ma.dev(), ma.ino()) == (mb.dev(), mb.ino());
    }
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    abs(a) == abs(b)
}

/// The temporary-file prefix for `owner`'s files.
pub(crate) fn temp_prefix(owner: Option<&str>) -> String {
    match owner {
        Some(o) => format!(".aivideo-{o}-"),
        None => ".aivideo-".to_string(),
    }
}

/// Removes `owner`'s leftover temporary files (`.aivideo-<owner>-*.tmp`) from `dir`; returns
/// how many were removed. A missing folder has none.
pub fn remove_temp_files(dir: &Path, owner: &str) -> std::io::Result<usize> {
    let prefix = temp_prefix(Some(owner));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".tmp") && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_paths_pass_and_existing_files_need_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.mp4");
        assert_eq!(check_target(&p, false).unwrap(), p);
        std::fs::write(&p, b"x").unwrap();
        assert!(matches!(
            check_target(&p, false),
            Err(MediaError::Exists { .. })
        ));
        assert_eq!(
            check_target(&p, true).unwrap(),
            std::fs::canonicalize(&p).unwrap()
        );
    }

    #[test]
    fn folders_devices_and_dangling_links_are_refused_even_with_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let kind = |p: &Path| match check_target(p, true) {
            Err(MediaError::NotAFile { kind, .. }) => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(kind(dir.path()), "a folder");
        assert_eq!(kind(&dir.path().join("sub/")), "a folder");
        assert_eq!(kind(Path::new("/dev/null")), "a device");
        let dangling = dir.path().join("dangling.mp4");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert_eq!(kind(&dangling), "a link to nothing");
    }

    #[test]
    fn a_link_to_a_file_is_replaced_through_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.mp4");
        std::fs::write(&real, b"x").unwrap();
        let link = dir.path().join("link.mp4");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            check_target(&link, false),
            Err(MediaError::Exists { .. })
        ));
        assert_eq!(
            check_target(&link, true).unwrap(),
            std::fs::canonicalize(&real).unwrap()
        );
        assert!(same_file(&real, &link));
    }

    #[test]
    fn same_file_by_inode_or_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        assert!(same_file(&a, &dir.path().join("a")));
        assert!(!same_file(&a, &b));
        std::fs::write(&a, b"x").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        assert!(same_file(&a, &b));
    }

    #[test]
    fn only_the_owners_temporary_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            ".aivideo-job1-abc.tmp",
            ".aivideo-job1-def.tmp",
            ".aivideo-job2-abc.tmp",
            "job1.mp4",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(remove_temp_files(dir.path(), "job1").unwrap(), 2);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".aivideo-job2-abc.tmp", "job1.mp4"]);
        assert_eq!(
            remove_temp_files(&dir.path().join("gone"), "job1").unwrap(),
            0
        );
    }
}
