//! Engine integration tests: whole sessions on 127.0.0.1.

mod dht;
mod e2e;
mod encryption;
mod fake;
mod faults;
mod hostile;
mod interop;
mod interop_magnet;
mod ipv6;
mod lifecycle;
mod lost_requests;
mod lsd;
mod magnet;
mod magnet_stall;
mod partial_seed;
mod pex;
mod reliability;
mod scale;
mod superseed;
mod util;
mod utp;
mod v2blame;
mod v2magnet;
mod v2seed;
mod webseed;
mod webseed_session;
