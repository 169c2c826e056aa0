//! Engine integration tests: whole sessions on 127.0.0.1.

mod dht;
mod e2e;
mod encryption;
mod fake;
mod faults;
mod hostile;
mod interop;
mod lifecycle;
mod lost_requests;
mod lsd;
mod reliability;
mod scale;
mod util;
mod utp;
mod webseed;
