//! bittern-daemon's integration tests: contract tests replaying the
//! Transmission transcripts against the RPC over a fake engine, and
//! persistence across restarts, the web page's routes, `/metrics` and
//! the watch directory.

mod attack;
mod blocklist;
mod browser;
mod contract;
mod features;
mod magnet;
mod persist;
mod rpc_doc;
mod server;
mod util;
mod watch;
mod web;
