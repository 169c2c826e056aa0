//! KRPC (BEP 5) decoder and node: never panic; whatever decodes re-encodes
//! to a fixed point (decode(encode(m)) == m); a node fed the datagram
//! counts it as received, and as malformed exactly when it does not decode.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use bittern_dht::{Config, Message, Node};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = Message::decode(data);
    if let Ok(m) = &decoded {
        let e = m.encode();
        assert_eq!(Message::decode(&e).as_ref(), Ok(m));
    }
    let config = Config { seed: Some(1), ..Config::default() };
    let mut node = Node::new(config, Instant::now());
    let from = SocketAddr::from(([127, 0, 0, 1], 6881));
    node.handle_datagram(from, data, Instant::now());
    let s = node.stats();
    assert_eq!(s.received, 1);
    assert_eq!(s.malformed, u64::from(decoded.is_err()));
    while let Some(t) = node.poll_transmit() {
        // every reply and ping we send is itself valid KRPC
        assert!(Message::decode(&t.bytes).is_ok());
    }
});
