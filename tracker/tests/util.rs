//! Shared test helpers.

use std::time::Duration;

use bittern_tracker::{AnnounceEvent, AnnounceParams, ClientConfig};
use bittern_wire::{InfoHash, PeerId};

/// Client settings that make every hostile case end in well under a second.
pub fn fast_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(400),
        max_response_size: 64 * 1024,
        udp_base_timeout: Duration::from_millis(60),
        udp_max_tries: 3,
        user_agent: "bittern-test".into(),
    }
}

pub fn params(hash: u8, peer: u8, port: u16, left: u64, event: AnnounceEvent) -> AnnounceParams {
    AnnounceParams {
        info_hash: InfoHash([hash; 20]),
        peer_id: PeerId([peer; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: Some(50),
        key: u32::from(peer),
        tracker_id: None,
    }
}

/// A port that nothing listens on (bound then released).
pub fn closed_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A UDP port that nothing listens on.
pub fn closed_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// True if `tool` is installed; otherwise skips loudly, or fails when
/// `BITTERN_REQUIRE_INTEROP=1` ([`bittern_testkit::require`]).
pub fn have_tool(tool: &str) -> bool {
    let found =
        bittern_testkit::on_path(tool) || std::path::Path::new("/usr/bin").join(tool).is_file();
    bittern_testkit::require(tool, found)
}

/// Times `f` and asserts it finished within `limit`.
pub fn within<T>(limit: Duration, f: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took <= limit, "took {took:?}, limit {limit:?}");
    out
}
