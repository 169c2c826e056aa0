//! End-to-end tests of the `bittern` binary: every test runs the built
//! executable, on loopback only, in temporary directories.

mod crash;
mod daemon;
mod daemon_attack;
mod daemon_crash;
mod daemon_live;
mod daemon_magnet;
mod daemon_net;
mod daemon_settings;
mod dht;
mod dht_aria2;
mod errors;
mod interop;
mod soak_short;
mod torrents;
mod transfer;
mod util;
mod verify_v2;
mod web;
mod webseed;
