//! bittern-daemon's integration tests: contract tests replaying the
//! Transmission transcripts against the RPC over a fake engine, and
//! persistence across restarts.

mod contract;
mod persist;
mod server;
mod util;
