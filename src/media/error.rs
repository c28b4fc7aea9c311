//! The error type of the media module: every variant names the file it concerns.

use std::path::PathBuf;

/// Errors from writing, probing and decoding videos and images.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The frames or parameters handed to a writer cannot be encoded.
    #[error("cannot write {path}: {reason}")]
    InvalidInput { path: PathBuf, reason: String },

    /// The file extension names no supported image format.
    #[error(
        "cannot write image {path}: unsupported extension {extension:?}; supported: jpg, jpeg, png, webp"
    )]
    UnsupportedFormat { path: PathBuf, extension: String },

    /// Creating, writing, syncing or renaming a file failed (the OS error is the source).
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The H.264 encoder or decoder reported an error.
    #[error("H.264 codec error for {path}: {reason}")]
    Codec { path: PathBuf, reason: String },

    /// The MP4 file is malformed or uses features this reader does not support.
    #[error("cannot read MP4 {path}: {reason}")]
    Container { path: PathBuf, reason: String },

    /// The requested frame index or time lies outside the video.
    #[error("{selector} is out of range for {path}: valid {valid}")]
    OutOfRange {
        path: PathBuf,
        selector: String,
        valid: String,
    },

    /// Something already exists at the path and replacing it was not allowed.
    #[error("{path} already exists")]
    Exists { path: PathBuf },

    /// The path names something that is not a regular file (a folder, a device, ...).
    #[error("{path} is {kind}, not a regular file")]
    NotAFile { path: PathBuf, kind: &'static str },

    /// Image encoding failed.
    #[error("cannot encode image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
}

impl MediaError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn invalid(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn codec(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Self::Codec {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn container(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Self::Container {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}
