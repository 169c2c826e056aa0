//! How a [`Storage`](crate::Storage) reaches file bytes: the IO backend
//! and where hashing reads from.

/// How data files are accessed. Both give the same results; they differ in
/// speed and in failure modes (see the crate doc for the measured choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// Memory-mapped files (memmap2): blocks are copied straight between
    /// the peer buffer and the page cache and pieces are hashed in place.
    Mmap,
    /// Positioned IO (`pread`/`pwrite`): one syscall per span, never `SIGBUS`.
    #[default]
    PositionedIo,
}

/// Where hashing (verification, [`Storage::hash_piece`](crate::Storage::hash_piece) and friends) gets
/// file bytes from. Both give the same digests; they differ in cost and in
/// what they need from the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashSource {
    /// Positioned reads (`pread`) into page-aligned scratch buffers. Needs
    /// nothing from the process. The default.
    #[default]
    Read,
    /// Straight from read-only maps of the files, no copy, under the
    /// `SIGBUS` guard: used only while [`install_sigbus_guard`](crate::install_sigbus_guard)
    /// has installed it and it is still the process's handler, else
    /// hashing falls back to [`Read`](Self::Read) (logged at debug level).
    /// Files under 256 KiB are read all the same, and so is every file
    /// with [`Backend::Mmap`] (its own map also serves writes and must
    /// never take a zero page): pair `Map` with
    /// [`Backend::PositionedIo`]. Linux only.
    Map,
}
