//! The daemon's RPC surface: an HTTP request (head and body, read by
//! `Conn::read_request` from the input as a stream) and the JSON body
//! (`Rpc::call`, in front of an engine that keeps nothing). No panic;
//! every reply is a JSON object with a string `result`, and echoes a
//! numeric `tag`. Methods that touch the filesystem outside the store or
//! the network (session-set, torrent-add, set-location, rename, remove,
//! port-test, blocklist-update) are left out: this runs on a shared host.
#![no_main]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use bittern_daemon::http::{Conn, Limits};
use bittern_daemon::{Backend, BackendError, Rpc, Start, Store, Torrents};
use bittern_engine::{PeerInfo, TorrentStatus};
use bittern_wire::InfoHash;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// An engine that refuses nothing and holds nothing.
struct Nothing;

impl Backend for Nothing {
    fn start(&self, _: Start) -> Result<(), BackendError> {
        Ok(())
    }
    fn remove(&self, _: InfoHash) {}
    fn pause(&self, _: InfoHash) -> Result<(), BackendError> {
        Err(BackendError::NotRunning)
    }
    fn resume(&self, _: InfoHash) -> Result<(), BackendError> {
        Err(BackendError::NotRunning)
    }
    fn reannounce(&self, _: InfoHash) -> Result<(), BackendError> {
        Err(BackendError::NotRunning)
    }
    fn set_limits(
        &self,
        _: InfoHash,
        _: Option<u64>,
        _: Option<u64>,
        _: bool,
    ) -> Result<(), BackendError> {
        Ok(())
    }
    fn set_session_limits(&self, _: Option<u64>, _: Option<u64>) {}
    fn status(&self, _: InfoHash) -> Option<TorrentStatus> {
        None
    }
    fn peers(&self, _: InfoHash) -> Vec<PeerInfo> {
        Vec::new()
    }
    fn torrent_file(&self, _: InfoHash) -> Option<Vec<u8>> {
        None
    }
    fn peer_port(&self) -> u16 {
        0
    }
    fn shutdown(&self) {}
}

/// The input as a stream, in chunks of at most 7 bytes (the parser must
/// not depend on where reads end); writes are swallowed.
struct Input<'a>(&'a [u8]);

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(buf.len()).min(7);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

impl Write for Input<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const LEFT_OUT: &[&str] = &[
    "session-set",
    "torrent-add",
    "torrent-set-location",
    "torrent-rename-path",
    "torrent-remove",
    "port-test",
    "blocklist-update",
    "session-close",
];

fn rpc() -> &'static Rpc<Nothing> {
    static RPC: OnceLock<Rpc<Nothing>> = OnceLock::new();
    RPC.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bittern-fuzz-rpc-{}", std::process::id()));
        let store = Store::open(&dir).expect("a store in the temp dir");
        Rpc::new(Torrents::open(Nothing, store).expect("an empty store opens"))
    })
}

fn call(body: &[u8]) {
    if let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) {
        if let Some(m) = req.get("method").and_then(Value::as_str) {
            if LEFT_OUT.contains(&m) {
                return;
            }
        }
    }
    let reply = rpc().call(body, "fuzz-session");
    let obj = reply.as_object().expect("a reply is an object");
    assert!(obj.get("result").is_some_and(Value::is_string), "{reply}");
    if let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) {
        if let Some(tag) = req.get("tag").filter(|t| t.is_u64()) {
            assert_eq!(obj.get("tag"), Some(tag));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // first byte: 0 = a JSON body alone, else an HTTP request
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        call(rest);
        return;
    }
    let limits = Limits {
        max_head: 4096,
        max_body: 64 << 10,
        ..Limits::default()
    };
    let mut conn = Conn::new(Input(rest), IpAddr::V4(Ipv4Addr::LOCALHOST));
    for _ in 0..4 {
        match conn.read_request(&limits) {
            Ok((req, keep_alive)) => {
                assert!(req.body.len() <= limits.max_body);
                assert!(req.headers.iter().all(|(n, _)| *n == n.to_lowercase()));
                call(&req.body);
                if !keep_alive {
                    break;
                }
            }
            Err(_) => break,
        }
    }
});
