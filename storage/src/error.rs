//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a resume file was rejected by [`ResumeState::load`](crate::ResumeState::load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResumeCorruption {
    /// The file does not start with the resume magic bytes.
    BadMagic,
    /// The format version is not one this build reads.
    UnsupportedVersion(u32),
    /// The file length does not match the counts in its header.
    BadLength,
    /// The trailing SHA-1 checksum does not match the content.
    BadChecksum,
    /// Bits past the last piece are set in the have-bitfield.
    SpareBits,
    /// A field holds a value outside its domain (e.g. a flag byte that is not 0 or 1).
    BadField,
}

/// Everything that can go wrong in storage.
///
/// Every variant that concerns a file carries the absolute path it was
/// working on, so the engine can report it without extra context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The filesystem has no space left (`ENOSPC` or `EDQUOT`).
    #[error("disk full while writing {path}")]
    DiskFull {
        /// The file being reserved or written.
        path: PathBuf,
    },
    /// The operating system refused access (`EACCES` / `EPERM` / `EROFS`).
    #[error("permission denied: {path}")]
    PermissionDenied {
        /// The file or directory that was refused.
        path: PathBuf,
    },
    /// A path that should be a regular file is a directory.
    #[error("{path} is a directory")]
    IsADirectory {
        /// The offending path.
        path: PathBuf,
    },
    /// A path that should be a regular file is something else (FIFO, socket, device).
    #[error("{path} is not a regular file")]
    NotARegularFile {
        /// The offending path.
        path: PathBuf,
    },
    /// The file exists but is shorter than the torrent says it is.
    #[error("{path} is {actual} bytes, expected {expected}")]
    FileTooShort {
        /// The short file.
        path: PathBuf,
        /// Length from the layout.
        expected: u64,
        /// Length found on disk.
        actual: u64,
    },
    /// The file (or one of its parent directories) does not exist.
    #[error("{path} does not exist")]
    FileMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// The path is unsafe: absolute, contains `..`, or goes through a
    /// symbolic link, so it could leave the download directory.
    #[error("path {path} escapes the download directory")]
    PathEscapes {
        /// The offending path (relative as given, or absolute where a symlink was met).
        path: PathBuf,
    },
    /// A piece index or a block range outside the torrent.
    #[error("piece {piece} range {offset}+{len} is out of range")]
    OutOfRange {
        /// Piece index asked for.
        piece: usize,
        /// Offset inside the piece.
        offset: u64,
        /// Length asked for.
        len: u64,
    },
    /// The number of piece hashes does not match the total length and piece length.
    #[error("layout needs {expected} piece hashes, got {actual}")]
    PieceCountMismatch {
        /// Pieces implied by the total length.
        expected: usize,
        /// Hashes given.
        actual: usize,
    },
    /// The piece length is zero.
    #[error("piece length must be positive")]
    ZeroPieceLength,
    /// A v2 (BEP 52) piece length that is not a power of two of at least
    /// 16 KiB.
    #[error("v2 piece length {0} is not a power of two of at least 16 KiB")]
    InvalidV2PieceLength(u64),
    /// A v2 (BEP 52) layout whose piece does not lie in exactly one file
    /// (v2 files start on piece boundaries).
    #[error("piece {piece} does not lie in exactly one file, as v2 needs")]
    NotPieceAligned {
        /// The first piece found shared, or covered by no file.
        piece: usize,
    },
    /// The total length overflows `u64` (or the address space).
    #[error("torrent is too large")]
    TooLarge,
    /// Two files in the layout have the same path.
    #[error("duplicate file path {path}")]
    DuplicatePath {
        /// The repeated path.
        path: PathBuf,
    },
    /// A have-list or file list does not match the layout it is used with.
    #[error("expected {expected} entries, got {actual}")]
    LengthMismatch {
        /// Entries the layout needs.
        expected: usize,
        /// Entries given.
        actual: usize,
    },
    /// The resume file is damaged or not a resume file.
    #[error("corrupt resume file {path}: {reason:?}")]
    CorruptResume {
        /// The resume file.
        path: PathBuf,
        /// What check failed.
        reason: ResumeCorruption,
    },
    /// Any other IO error, with the path it happened on.
    #[error("io error on {path}")]
    Io {
        /// The path being accessed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Classify an IO error on `path` into a typed variant.
    pub(crate) fn from_io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::DiskFull { path },
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                Error::PermissionDenied { path }
            }
            Some(libc::EISDIR) => Error::IsADirectory { path },
            Some(libc::ENOENT) => Error::FileMissing { path },
            Some(libc::ELOOP) => Error::PathEscapes { path },
            _ => Error::Io { path, source },
        }
    }

    /// True for errors that mean "the data is simply not there" (missing or
    /// short file): verification reports such pieces as not had instead of failing.
    pub fn is_missing_data(&self) -> bool {
        matches!(self, Error::FileMissing { .. } | Error::FileTooShort { .. })
    }
}
