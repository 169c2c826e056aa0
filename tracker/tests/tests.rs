//! Integration tests for bittern-tracker, all on 127.0.0.1.

mod announcer;
mod fake;
mod http_client;
mod opentracker;
mod server;
mod session;
mod udp_client;
mod util;
