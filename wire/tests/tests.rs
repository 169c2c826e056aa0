//! bittern-wire integration tests: committed fixtures and live runs of real
//! tools (mktorrent, transmission-create, libtorrent), hostile inputs, and
//! whole-API round trips.

mod api;
mod extensions;
mod fixtures;
mod hostile;
mod interop;
mod mse_interop;
mod mse_loopback;
mod util;
mod v2;
