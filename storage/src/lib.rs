//! bittern-storage: piece <-> file layout, a bounded `FilePool` of memory
//! mapped files, block IO and parallel SHA-1 verification.
//!
//! Not yet implemented.
#![deny(missing_docs)]
