//! Integration tests for bittern-storage.

mod concurrency;
mod create;
mod disk_full;
mod flush;
mod merkle;
mod send;
mod util;
mod vectored;
