//! Atomic file creation: write to a temporary file beside the target, fsync, then rename.

use std::io::Write;
use std::path::Path;

use super::MediaError;
use super::target::{WriteOptions, check_target, temp_prefix};

/// Writes `bytes` to `path` so that `path` either does not change or holds the
/// complete new content. The temporary file lives in the destination folder (so
/// the rename cannot cross file systems) and is removed on every error path.
/// Without `opts.overwrite` an existing path is never replaced, also when it appears
/// while writing (the final rename refuses to replace); with it, only a regular file is.
pub(crate) fn write_atomically(
    path: &Path,
    bytes: &[u8],
    opts: &WriteOptions,
) -> Result<(), MediaError> {
    let path = &check_target(path, opts.overwrite)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.file_name().is_none() {
        return Err(MediaError::invalid(path, "the path has no file name"));
    }
    let mut builder = tempfile::Builder::new();
    let prefix = temp_prefix(opts.owner.as_deref());
    builder.prefix(&prefix).suffix(".tmp");
    // Temporary files are private (0600); the finished file gets the usual 0666 & !umask.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(parent)
        .map_err(|e| MediaError::io(path, e))?;
    tmp.write_all(bytes).map_err(|e| MediaError::io(path, e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| MediaError::io(path, e))?;
    crate::faults::point("temp-written");
    // On failure the NamedTempFile inside the error is dropped, which deletes it.
    let persisted = if opts.overwrite {
        tmp.persist(path)
    } else {
        tmp.persist_noclobber(path)
    };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists if !opts.overwrite => MediaError::Exists {
            path: path.to_path_buf(),
        },
        _ => MediaError::io(path, e.error),
    })?;
    // Make the rename itself durable. Failing to sync a directory is not fatal
    // (some file systems refuse it); the file content is already synced.
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn overwrite() -> WriteOptions {
        WriteOptions {
            overwrite: true,
            owner: None,
        }
    }

    #[test]
    fn writes_and_replaces_content_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomically(&p, b"one", &WriteOptions::default()).unwrap();
        let err = write_atomically(&p, b"two!", &WriteOptions::default()).unwrap_err();
        assert!(matches!(err, MediaError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomically(&p, b"two!", &overwrite()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two!");
        assert_eq!(entries(dir.path()), vec!["a.bin"]);
    }

    #[test]
    fn a_refused_replacement_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"mine").unwrap();
        let opts = WriteOptions::owned_by("job-1");
        assert!(write_atomically(&p, b"new", &opts).is_err());
        assert_eq!(temp_prefix(opts.owner.as_deref()), ".aivideo-job-1-");
        assert_eq!(entries(dir.path()), vec!["x"]);
        assert_eq!(std::fs::read(&p).unwrap(), b"mine");
    }

    #[test]
    fn failed_rename_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("occupied");
        std::fs::create_dir(target.join("")).unwrap();
        std::fs::write(target.join("x"), b"x").unwrap();
        let err = write_atomically(&target, b"data", &overwrite()).unwrap_err();
        assert!(matches!(err, MediaError::NotAFile { .. }), "{err}");
        assert!(err.to_string().contains("occupied"), "{err}");
        assert_eq!(entries(dir.path()), vec!["occupied"]);
    }

    #[test]
    fn missing_folder_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/a.bin");
        let err = write_atomically(&p, b"x", &WriteOptions::default()).unwrap_err();
        assert!(err.to_string().contains("no/such/dir/a.bin"), "{err}");
    }
}
